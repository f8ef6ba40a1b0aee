/**
 * gc's orphan links: in each namespace it scanned, the links of vcnet's group (0x7663) that no record
 * claims, with what an attach added for them elsewhere (redirect filters to them, the ingress qdisc
 * those leave empty, a rate limit's htb on the pod link; and such an htb whose record and redirects
 * are both gone). What a process holds open (a VM's tap or
 * macvtap) is kept, whatever the records say; what vcnet never makes is left alone. A namespace's
 * removals go in one batch, the emptied ingress qdiscs in a second one (garbage-collector.ts runs
 * this for every namespace it scanned, once the records are read).
 */
import { closeSync, constants, openSync, readlinkSync, statSync } from 'node:fs';
import { safeReaddir } from '../../directory-entries.js';
import { appendTo } from '../../multimap.js';
import type { Link } from '../../netlink/codec/link.js';
import { CLSACT_INGRESS_PARENT, formatHandle, TC_H_INGRESS, TC_H_ROOT } from '../../netlink/codec/tc/message.js';
import type { Qdisc } from '../../netlink/codec/tc/qdisc.js';
import type { NetlinkHandle } from '../../netlink/handle.js';
import { heldDeviceAt } from '../../netns/held-device-fds.js';
import { pathOutlivingThisProcess } from '../../netns/namespace-holders.js';
import type { OpenedNamespace } from '../../netns/namespace-identity.js';
import { processIds } from '../../netns/processes.js';
import { ipCommandIn, namespaceNoCommandEnters, PIN_PATH_PLACEHOLDER, shellWord } from '../../shell-word.js';
import { testSeam } from '../../test-seams.js';
import { chainZeroOwnTables, isVcnetHtb, isVcnetRedirect } from '../foreign-filters.js';
import { commandOf, formatU32Handle } from '../plan/commands.js';
import { deviceNumbers, macvtapDevicesAtIndex, macvtapMajor } from '../plan/macvtap-index.js';
import { FILTER_PRIORITY, VCNET_LINK_GROUP, VCNET_LINK_KINDS } from '../plan/plan-attach.js';
import { lockNamespace, NamespaceBusyError } from '../state/namespace-lock.js';
import { claims as claimsLink, type RecordOwner } from '../state/owners.js';
import { failureOf, type GarbageItem, type GarbageReport, reportOutcomes } from './report.js';

/** A namespace gc looks in: opened, with a handle in it, and its links as listed before any record was read. */
export interface NamespaceScan {
  namespace: OpenedNamespace;
  handle: NetlinkHandle;
  links: Link[];
  /** Its qdiscs, listed with the links (undefined: the dump failed, and no htb is taken for a stray). */
  qdiscs: Qdisc[] | undefined;
}

/** What the records gc read say of one scanned namespace. */
export interface NamespaceClaims {
  /** A record gc could not read may be about this namespace: its links are counted, never looked at. */
  withheld: boolean;
  /** The links records made there (by ifindex when recorded, else by name); undefined when no record names it. */
  links: Array<{ name: string; index?: number }> | undefined;
  /** Of `links`, those of records gc left because another process is changing them right now. */
  changing: Array<{ name: string; index?: number }>;
  /** The filters records added there, each with its record's id. */
  filters: Array<RecordOwner['filters'][number] & { id: string }>;
  /** The htb root qdiscs (rate limits) records added there. */
  htbs: RecordOwner['htbs'];
  /** The namespace was named (`namespaces`, --netns): its orphans go even when no record names it. */
  named: boolean;
}

/**
 * The records' claims on one namespace: as read before its objects were listed again under its lock
 * (`claims`), and read afresh (`claimsNow`), which gc does only when there is something to remove.
 */
export interface NamespaceOwnership {
  claims: NamespaceClaims;
  claimsNow: () => NamespaceClaims;
}

/**
 * Step 4 of gc in one scanned namespace: its links of vcnet's group that no record claims. A link of
 * a kind vcnet never makes is left alone; one a process holds open is kept (`inUse`); the others are
 * orphans, removed with the redirect filters to them (a filter a record claims stays), the ingress
 * qdisc those leave empty, and a rate limit's htb on the link they were on. Only counted when a
 * record gc could not read may be about this namespace (`withheld`); only reported when no record
 * names the namespace and it was not named (`unclaimed`).
 *
 * A rate limit's htb of exactly vcnet's shape that no record claims, listed in the first look, on a
 * link no filter at vcnet's priorities is on or leads to, is never removed: Kata and operators make
 * the same shape, so it proves nothing about who made it. It is reported in `leftAlone` with what it
 * throttles and the tc command that removes it.
 *
 * A redirect of vcnet's (its priority, or the one attach took beside another tool's filters there:
 * isAttachPriority; its shape: a u32 match-all whose one action is a mirred egress redirect) to an
 * ifindex no link in the namespace has any more is collected the same way: its tap went without it
 * (deleted by hand, an attach or detach cut short), and it now drops every frame it matches, the
 * pod's whole ingress. Removing it can only let traffic through again.
 *
 * Judged and removed under the namespace's lock, taken without waiting: while an attach, detach or
 * vcnet-cni ADD/DEL holds it, the namespace is left for the next gc (`withheld`, `beingChanged`).
 * Once it is held, nothing is judged from an old look: the redirects are listed, then the links
 * (a link made after the first look could otherwise look like a redirect's gone target), then the
 * records are read again. An orphan is a link of the first look (made before the records of step 2
 * were read, so journaled in them) that neither those records nor today's claim, and that is still there.
 */
export async function collectNamespace(
  scan: NamespaceScan,
  ownership: NamespaceOwnership,
  report: GarbageReport,
  openMacvtaps: () => OpenMacvtapDevices | undefined,
): Promise<void> {
  const { namespace } = scan;
  const namespacePath = namespace.identity.path;
  const grouped = (links: readonly Link[]) => links.filter((link) => link.group === VCNET_LINK_GROUP);
  const withheld = (links: readonly Link[], beingChanged?: { reason: string }) => {
    let ours = grouped(links).filter((link) => VCNET_LINK_KINDS.has(link.kind ?? ''));
    report.kept += ours.length;
    if (beingChanged) {
      // The links of a record gc left as another process is changing it (an unfinished attach whose
      // namespace or sandbox is locked) are said with that record, in `beingChanged`, not twice.
      const changing = ours.filter((link) => ownership.claims.changing.some((recorded) => claimsLink(recorded, link)));
      if (changing.length > 0) {
        report.beingChanged.push({ namespacePath, links: changing.map((link) => link.name) });
        ours = ours.filter((link) => !changing.includes(link));
      }
      report.withheld.push({
        namespacePath,
        links: ours.map((link) => link.name),
        beingChanged: true,
        reason: beingChanged.reason,
      });
    } else if (ours.length > 0) report.withheld.push({ namespacePath, links: ours.map((link) => link.name) });
  };
  if (ownership.claims.withheld) {
    withheld(scan.links);
    return;
  }
  let lock: number;
  try {
    lock = await lockForCollection(namespace);
  } catch (error) {
    if (!(error instanceof NamespaceBusyError)) {
      report.failures.push({ namespacePath, ...failureOf(error) });
      return;
    }
    withheld(scan.links, {
      reason: `being changed right now by ${error.holder > 0 ? `process ${error.holder}` : 'another process (which one cannot be known)'} (an attach, detach or vcnet-cni ADD or DEL), so gc did not look at it; run gc again once that is done`,
    });
    return;
  }
  try {
    await collectLocked(scan, ownership, report, openMacvtaps, withheld);
  } finally {
    closeSync(lock);
  }
}

/**
 * The namespace's lock (namespace-lock.ts), on an fd of its own: taken without waiting, released by
 * closing that fd. NamespaceBusyError while another command holds it.
 */
async function lockForCollection(namespace: OpenedNamespace): Promise<number> {
  const fd = openSync(namespace.entryPath, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    await lockNamespace(fd, namespace.identity.path, 0);
    return fd;
  } catch (error) {
    closeSync(fd);
    throw error;
  }
}

/** The path gc's quoted commands enter a namespace by, and what is said when it is only a placeholder. */
interface QuotedEntry {
  path: string;
  /** Empty, or why `path` is PATH, for the end of the detail. */
  unreachable: string;
}

/**
 * Where the commands gc quotes for `namespace` enter it (pathOutlivingThisProcess): a path given as
 * this process's own (`--netns /proc/self/fd/3`) names nothing once gc exits, and another process's
 * fd or namespace in the shell it is pasted into; another process's socket or tap (`--netns
 * /proc/PID/fd/N`, where gc and list say such a namespace is held) no command can enter. None: PATH,
 * and why.
 */
function quotedEntry(namespace: OpenedNamespace): QuotedEntry {
  const { path: given } = namespace.identity;
  const path = pathOutlivingThisProcess(given, namespace.identity);
  if (path !== undefined) return { path, unreachable: '' };
  const held = heldDeviceAt(given);
  if (held !== undefined) return { path: PIN_PATH_PLACEHOLDER, unreachable: `; ${namespaceNoCommandEnters(held)}` };
  return {
    path: PIN_PATH_PLACEHOLDER,
    unreachable: `; ${PIN_PATH_PLACEHOLDER} stands for a path of the namespace: ${given} reaches it through this vcnet process, which a pasted command cannot, and nothing else gc found holds it, so it goes with what is in it when vcnet exits, unless a holder gc could not see keeps it: then pin it (\`ip netns attach NAME PID\` with a process in it, or \`mount --bind\` of an fd on it onto an empty file) and give that path`,
  };
}

async function collectLocked(
  scan: NamespaceScan,
  ownership: NamespaceOwnership,
  report: GarbageReport,
  openMacvtaps: () => OpenMacvtapDevices | undefined,
  withheld: (links: readonly Link[]) => void,
): Promise<void> {
  const { namespace, handle } = scan;
  const dryRun = report.dryRun;
  const namespacePath = namespace.identity.path;
  // The redirects first, the links after: every target a redirect names was made before it, so a
  // target missing from the later list is really gone.
  const redirects = await vcnetRedirects(handle);
  let links: Link[];
  try {
    links = await handle.links();
  } catch (error) {
    report.failures.push({ namespacePath, ...failureOf(error) });
    return;
  }
  const present = new Map(links.map((link) => [link.index, link]));
  const firstLook = ownership.claims;
  const grouped = links.filter((link) => link.group === VCNET_LINK_GROUP);
  // Orphan candidates come only from the first look: a link made since may belong to a record
  // written after step 2 read them. Today's links stand in for them (a VM may have opened a tap since).
  const listedBefore = new Set(scan.links.map((link) => link.index));
  const isClaimedBy = (claims: NamespaceClaims, link: Link) =>
    claims.links?.some((recorded) => claimsLink(recorded, link)) ?? false;
  let unclaimed = grouped.filter(
    (link) => VCNET_LINK_KINDS.has(link.kind ?? '') && listedBefore.has(link.index) && !isClaimedBy(firstLook, link),
  );
  const dangling = redirects.flatMap(({ index, priority, vcnetTarget: target }) => {
    const link = present.get(index);
    if (link === undefined || target === undefined || present.has(target)) return [];
    return [{ link, priority, target }];
  });
  // Htbs of a rate limit's shape with no record and no redirect (strayRateLimits), to report only:
  // links that may be orphans are passed over (an orphan's htb goes with it, a held one's stays).
  const unclaimedIndexes = new Set(unclaimed.map((link) => link.index));
  let strays = await strayRateLimits(handle, scan, {
    present,
    passOver: (link) => unclaimedIndexes.has(link.index) || isClaimedBy(firstLook, link),
    claimed: firstLook.htbs,
    redirects,
    goingWith: unclaimedIndexes,
  });
  // Something to remove: judged again against the records as they are now, read after both lists.
  let claims = firstLook;
  if (unclaimed.length > 0 || dangling.length > 0 || strays.length > 0) {
    claims = ownership.claimsNow();
    if (claims.withheld) {
      withheld(links);
      return;
    }
    unclaimed = unclaimed.filter((link) => !isClaimedBy(claims, link));
    strays = strays.filter(({ link }) => !isClaimedBy(claims, link) && !claimsHtb(claims.htbs, link));
    claims = { ...claims, filters: [...firstLook.filters, ...claims.filters] };
  }
  const names = claims.links;
  const isClaimed = (link: Link) => isClaimedBy(firstLook, link) || isClaimedBy(claims, link);
  // vcnet never makes a veth or a bridge: one in its group was moved there by someone else (a
  // tenant with CAP_NET_ADMIN in the pod), and deleting it would take the pod's own network.
  // Looked up once, when a command is quoted: for a path through this process it searches /proc.
  let entry: QuotedEntry | undefined;
  const entered = () => (entry ??= quotedEntry(namespace));
  for (const link of grouped) {
    if (VCNET_LINK_KINDS.has(link.kind ?? '') || isClaimed(link)) continue;
    const { path, unreachable } = entered();
    report.leftAlone.push({
      kind: 'link',
      namespacePath,
      name: link.name,
      detail: `a ${link.kind ?? 'link of no kind'} (ifindex ${link.index}) in vcnet's group 0x${VCNET_LINK_GROUP.toString(16)} that no record knows: vcnet never makes a ${link.kind ?? 'link of no kind'}, so gc leaves it (move it out of the group with \`${ipCommandIn(path)} link set dev ${shellWord(link.name)} group default\`, or find who put it there${unreachable})`,
    });
  }
  const ours = grouped.filter((link) => VCNET_LINK_KINDS.has(link.kind ?? ''));
  // A tap a VM holds is never removed, whatever the records say: the records gc sees may not be
  // all there are (another registry, a wiped /run, another mount).
  const orphans: Link[] = [];
  for (const link of unclaimed) {
    const holder = heldOpenBy(link, openMacvtaps);
    if (holder === undefined) orphans.push(link);
    else report.inUse.push({ namespacePath, name: link.name, detail: `in use by a process (${holder}), kept` });
  }
  report.kept += ours.length - orphans.length;
  const changing = ours.filter((link) => claims.changing.some((recorded) => claimsLink(recorded, link)));
  if (changing.length > 0) report.beingChanged.push({ namespacePath, links: changing.map((link) => link.name) });
  const orphanIndexes = new Set(orphans.map((link) => link.index));
  // A link held open is no orphan: its redirects stay, and so explain the htb they lead to.
  strays = strays.filter(({ link }) => !explainedByRedirect(link, redirects, orphanIndexes));
  // Never removed: vcnet's htb shape is Kata's, and any operator's who follows either, so it proves
  // nothing about who made it. An attach journals its htb before making it, so one of vcnet's has a
  // record (detach, or gc finishing the unfinished attach, takes it) or goes with the redirects gc
  // removes from its link; one with neither was made by someone else, or its record was deleted.
  for (const { link, shaping } of strays) {
    const { path, unreachable } = entered();
    const remove = commandOf(
      {
        op: 'delete-qdisc',
        link: { role: 'pod', name: link.name },
        kind: 'htb',
        parent: TC_H_ROOT,
        handle: shaping.handle,
      },
      { namespacePath: path },
    );
    report.leftAlone.push({
      kind: 'qdisc',
      namespacePath,
      name: link.name,
      detail: `htb root qdisc of the shape a vcnet rate limit makes (${shaping.description}), but no record claims it and no redirect of vcnet's is on ${link.name} or leads to it: Kata and operators make the same shape, so gc cannot tell it is vcnet's and leaves it; it holds what ${link.name} sends to ${shaping.rate} bit/s (if it is a lost attach's, \`${remove}\` removes it${unreachable})`,
    });
  }
  if (orphans.length === 0 && dangling.length === 0) return;
  if (names === undefined && !claims.named) {
    report.unclaimed.push({
      namespacePath,
      links: orphans.map((link) => link.name),
      ...(dangling.length > 0
        ? {
            filters: dangling.map(
              ({ link, priority, target }) =>
                `${link.name} ingress prio ${priority} (a redirect to ${goneDevice(target)}: it drops what arrives on ${link.name})`,
            ),
          }
        : {}),
    });
    return;
  }
  // Its target too: another's node beside vcnet's at that priority may redirect or mirror elsewhere.
  const isDangling = (link: Link, priority: number, target: number) =>
    dangling.some(
      (redirect) => redirect.link.index === link.index && redirect.priority === priority && redirect.target === target,
    );
  const recordedFilters = claims.filters;
  const claimedBy = (link: Link, parent: number, priority: number) =>
    recordedFilters.find(
      (filter) =>
        (filter.index !== undefined ? filter.index === link.index : filter.link === link.name) &&
        filter.parent >>> 16 === parent >>> 16 &&
        filter.priority === priority,
    );
  const batch = handle.changes();
  // One item per request of the batch, in order: an item is reported removed only when its
  // request was answered ok (reportOutcomes).
  const planned: GarbageItem[] = [];
  const emptiedIngress: Array<{ item: GarbageItem; link: Link; handle: number }> = [];
  for (const link of links) {
    if (orphanIndexes.has(link.index)) continue;
    let removedFilters = 0;
    const filtersLeft = await collectRedirectFilters(
      handle,
      link,
      (priority, target) => orphanIndexes.has(target) || isDangling(link, priority, target),
      (priority, parent, protocol, target, handles) => {
        const targetLink = links.find((candidate) => candidate.index === target);
        const redirect = targetLink
          ? `redirects to orphan ${targetLink.name}`
          : `redirects to ${goneDevice(target)} (every frame it matches is dropped)`;
        const owner = claimedBy(link, parent, priority);
        if (owner) {
          // A live record's filter, pointed at the orphan since: the record's detach settles it.
          report.leftAlone.push({
            kind: 'filter',
            namespacePath,
            name: link.name,
            detail: `prio ${priority} ${redirect}, but record ${owner.id} claims that filter: left for its detach`,
          });
          return false;
        }
        // One item per request: the whole priority, or each of the redirects' nodes beside another's.
        for (const node of handles ?? [undefined]) {
          planned.push({
            kind: 'filter',
            namespacePath,
            name: link.name,
            detail: `prio ${priority} ${redirect}${node === undefined ? '' : ` (its u32 node ${formatU32Handle(node)}; another tool's node at that priority stays)`}`,
          });
          batch.deleteFilter({
            index: link.index,
            parent,
            priority,
            protocol,
            ...(node === undefined ? {} : { handle: node, kind: 'u32' }),
          });
          removedFilters++;
        }
        return true;
      },
    );
    // The ingress qdisc tcfilter's attach added for those redirects goes with the last of them.
    // One that keeps another filter is someone's; one gc took nothing from is left as it is.
    if (removedFilters > 0 && filtersLeft === 0) {
      const ingress = await ingressQdiscOf(handle, link);
      if (ingress?.kind === 'ingress') {
        const item: GarbageItem = {
          kind: 'qdisc',
          namespacePath,
          name: link.name,
          detail: `ingress qdisc (ffff:) with no filter left once its redirects to an orphan go (tcfilter's attach adds it for them)`,
        };
        // Deleted after the redirects, in a second batch, only if no filter is there then.
        if (dryRun) planned.push(item);
        else emptiedIngress.push({ item, link, handle: ingress.handle });
      } else if (ingress) {
        // vcnet adds an ingress qdisc, never a clsact: this one was the pod's before the attach.
        report.leftAlone.push({
          kind: 'qdisc',
          namespacePath,
          name: link.name,
          detail: `${ingress.kind} qdisc left empty by the redirects removed above: vcnet never adds a ${ingress.kind}, so it stays`,
        });
      }
    }
    // A rate limit's htb on a link that is not vcnet's (tcfilter's tx on the pod link, the egress
    // limit of a device the VM uses as it is) does not go with the orphan: it is taken only from a
    // link whose redirects to an orphan gc removes (the attach that made them), and only when it
    // has exactly the shape a rate limit makes.
    if (removedFilters > 0) {
      const shaping = await rateLimitHtbOf(handle, link);
      if (shaping?.ours) {
        planned.push({
          kind: 'qdisc',
          namespacePath,
          name: link.name,
          detail: `htb root qdisc of a rate limit (${shaping.description}) on a link whose redirects to an orphan go (a rate-limited attach adds it)`,
        });
        batch.deleteQdisc(link.index, shaping.handle, TC_H_ROOT);
      } else if (shaping) {
        report.leftAlone.push({
          kind: 'qdisc',
          namespacePath,
          name: link.name,
          detail: `htb root qdisc not of the shape a vcnet rate limit makes (${shaping.description}): another tool's, so it stays`,
        });
      }
    }
  }
  for (const link of orphans) {
    planned.push({
      kind: 'link',
      namespacePath,
      name: link.name,
      detail: `${link.kind ?? 'link'} in vcnet's group that no record claims`,
    });
    batch.deleteLink(link.index, `delete orphan ${link.name}`);
  }
  if (dryRun) {
    report.removed.push(...planned);
    return;
  }
  try {
    reportOutcomes(planned, await batch.send(), namespacePath, report);
    await removeIngressIfEmpty(handle, namespacePath, emptiedIngress, report);
  } catch (error) {
    // The batch could not be sent at all: nothing of it is known removed; the next run finishes it.
    report.failures.push({ namespacePath, ...failureOf(error) });
  }
}

/**
 * Test seam (never set in production), on globalThis as apply.ts's (src/test-seams.ts): awaited after
 * the redirects' batch, before the ingress qdiscs are listed again, so a test can add a filter in between.
 */
const ingressSeam = testSeam<() => void | Promise<void>>('gcIngress');

export function setGcIngressTestHook(hook: (() => void | Promise<void>) | undefined): void {
  ingressSeam.set(hook);
}

/**
 * The ingress qdiscs gc's redirect removal emptied: each is listed again and deleted (a second,
 * small batch) only if it has no filter now, so a filter another tool added since the first listing
 * is kept with it. The kernel has no "delete if empty": one added between this listing and the
 * delete still goes.
 */
async function removeIngressIfEmpty(
  handle: NetlinkHandle,
  namespacePath: string,
  emptied: ReadonlyArray<{ item: GarbageItem; link: Link; handle: number }>,
  report: GarbageReport,
): Promise<void> {
  if (emptied.length === 0) return;
  await ingressSeam.hook()?.();
  const batch = handle.changes();
  const planned: GarbageItem[] = [];
  for (const { item, link, handle: qdisc } of emptied) {
    let left: number;
    try {
      // By priority: a u32 filter dumps as several entries (its hash tables), tc shows one prio.
      left = new Set((await handle.filters(link.index, TC_H_INGRESS)).map((filter) => filter.priority)).size;
    } catch {
      continue; // gone meanwhile
    }
    if (left > 0) {
      report.leftAlone.push({
        kind: 'qdisc',
        namespacePath,
        name: link.name,
        detail: `ingress qdisc (ffff:) kept: filters at ${left} priority(ies) on it once vcnet's redirects went (added since gc listed it)`,
      });
      continue;
    }
    planned.push(item);
    batch.deleteQdisc(link.index, qdisc, TC_H_INGRESS);
  }
  if (planned.length === 0) return;
  reportOutcomes(planned, await batch.send(), namespacePath, report);
}

/**
 * How a process holds `link` open, or undefined when none does. A tap's carrier is on exactly while
 * a queue (an fd) is attached (tun_attach turns it on, the last detach off); a multi-queue tap also
 * counts its fds, attached and disabled (IFLA_TUN_NUM_QUEUES, NUM_DISABLED_QUEUES). A macvtap is
 * held through its character device tap<ifindex>, found among the processes' fds by major:minor,
 * not by path: a runtime may open it through a node of its own (a container's /dev, a mknod), or
 * receive the fd from the process that opened it.
 */
function heldOpenBy(link: Link, openMacvtaps: () => OpenMacvtapDevices | undefined): string | undefined {
  if (link.kind === 'tun') {
    const fds = (link.tun?.queues ?? 0) + (link.tun?.disabledQueues ?? 0);
    if (fds > 0) return `fd open: ${fds} queue(s)`;
    return link.tun?.carrier === true ? 'fd open: carrier on' : undefined;
  }
  if (link.kind === 'macvtap') {
    const open = openMacvtaps();
    if (open === undefined) return 'macvtap devices could not be listed, so it is taken as held';
    // /sys/dev/char names every macvtap's device tap<ifindex> whatever its namespace: when another
    // namespace has a macvtap at the same index, an fd open on either keeps this one (gc errs on keeping).
    for (const device of macvtapDevicesAtIndex(link.index, open.major)) {
      const held = open.byMinor.get(device.minor);
      if (held !== undefined) return `fd open on ${device.major}:${device.minor} (${held})`;
    }
    return undefined;
  }
  return undefined;
}

export interface OpenMacvtapDevices {
  /** macvtap's character major (/proc/devices). */
  major: number;
  /** minor → a path some process opened it by. */
  byMinor: Map<number, string>;
}

/**
 * Every macvtap character device some process has open, by minor (read once per gc, when a macvtap
 * needs it). undefined when macvtap's major cannot be read: gc then keeps every macvtap.
 */
function listOpenMacvtapDevices(): OpenMacvtapDevices | undefined {
  let major: number;
  try {
    major = macvtapMajor();
  } catch {
    return undefined;
  }
  const byMinor = new Map<number, string>();
  for (const pid of processIds()) {
    for (const fd of safeReaddir(`/proc/${pid}/fd`)) {
      const path = `/proc/${pid}/fd/${fd}`;
      try {
        const target = readlinkSync(path);
        // Sockets, pipes and anonymous inodes are not device nodes; everything else is looked at.
        if (!target.startsWith('/')) continue;
        const stat = statSync(path);
        if (!stat.isCharacterDevice()) continue;
        const numbers = deviceNumbers(stat.rdev);
        if (numbers.major === major && !byMinor.has(numbers.minor)) byMinor.set(numbers.minor, target);
      } catch {
        // the fd or the process went meanwhile
      }
    }
  }
  return { major, byMinor };
}

/**
 * The parent that lists a link's ingress filters under either qdisc there: an ingress qdisc takes
 * any minor, a clsact only its hooks' (ffff:fff2, ffff:fff3), and lists nothing under ffff:fff1.
 * tcfilter's redirect goes beside another tool's clsact, so gc must see it there too.
 */
const INGRESS_HOOK = CLSACT_INGRESS_PARENT;

/** The ingress filters of one priority on a link, at one of vcnet's priorities. */
interface PriorityRedirect {
  /** The link whose ingress they are on. */
  index: number;
  priority: number;
  /** The ifindexes their mirred actions send to. */
  targets: Set<number>;
  /**
   * Set when the priority is of vcnet's shape (u32 match-alls whose one action is a mirred egress
   * redirect, all to one target, perhaps beside another's nodes in the same u32): that target.
   */
  vcnetTarget?: number;
}

/**
 * The filters at vcnet's priorities on every link's ingress, of any shape: one qdisc dump for the
 * namespace, then the ingress filters of the links that have an ingress qdisc. The caller tells
 * vcnet's whose target is gone, against links listed after this, and which htbs they explain.
 */
async function vcnetRedirects(handle: NetlinkHandle): Promise<PriorityRedirect[]> {
  let withIngress: Set<number>;
  try {
    withIngress = new Set(
      (await handle.qdiscs()).filter((qdisc) => qdisc.parent === TC_H_INGRESS).map((qdisc) => qdisc.index),
    );
  } catch {
    return []; // a dump that fails proves nothing: nothing is taken for dangling
  }
  const redirects: PriorityRedirect[] = [];
  for (const index of withIngress) {
    let filters: Awaited<ReturnType<NetlinkHandle['filters']>>;
    try {
      filters = await handle.filters(index, INGRESS_HOOK);
    } catch {
      continue; // the link or its qdisc went meanwhile
    }
    const byPriority = new Map<number, typeof filters>();
    for (const filter of filters) appendTo(byPriority, filter.priority, filter);
    for (const [priority, all] of byPriority) {
      if (!isAttachPriority(priority, byPriority)) continue;
      const group = chainZeroOwnTables(all, isRedirectNode);
      const targets = new Set(group.flatMap((filter) => redirectTargetsOf(filter)));
      // Another's node beside vcnet's in its u32 (a classifier, or one with actions of its own) stays
      // when gc deletes vcnet's by handle: vcnet's are the redirect nodes, all to one target.
      const ownTargets = new Set(group.filter(isRedirectNode).flatMap((filter) => redirectTargetsOf(filter)));
      const vcnetShaped =
        ownTargets.size === 1 &&
        group.every((filter) => isVcnetRedirect(filter, 'u32', ownTargets) || isOthersU32Node(filter));
      redirects.push({ index, priority, targets, ...(vcnetShaped ? { vcnetTarget: [...ownTargets][0]! } : {}) });
    }
  }
  return redirects;
}

/**
 * Whether an attach may have put its redirect at `priority` on a link whose ingress holds `held` now:
 * vcnet's own (49152) and the ifb redirect's one below it, or, beside another tool's filters, the
 * first one above 49152 that they left free (plan-attach.ts besideIngressOf), so only one whose every
 * priority from 49152 up to it is held still. One freed below it since is passed over: gc then
 * leaves that redirect, as it leaves any other tool's.
 */
function isAttachPriority(priority: number, held: ReadonlyMap<number, unknown>): boolean {
  if (priority === FILTER_PRIORITY - 1) return true;
  if (priority < FILTER_PRIORITY) return false;
  for (let below = FILTER_PRIORITY; below < priority; below++) if (!held.has(below)) return false;
  return true;
}

/** What strayRateLimits passes over, and what it weighs. */
interface StrayContext {
  /** The links listed under the lock, by ifindex. */
  present: ReadonlyMap<number, Link>;
  /** Links gc does not judge an htb on here: its own that may be orphans or held, those a record claims. */
  passOver: (link: Link) => boolean;
  /** The htbs records added in the namespace. */
  claimed: RecordOwner['htbs'];
  /** The filters at vcnet's priorities in the namespace, listed under the lock. */
  redirects: readonly PriorityRedirect[];
  /** Links whose redirects go with them (orphans, or links that may be): they explain no htb. */
  goingWith: ReadonlySet<number>;
}

/**
 * Rate limits' htbs an attach left whose record and redirects are gone (the pod link's ingress
 * qdisc deleted takes the redirects with it): a root htb listed in gc's first look (before the
 * records were read: one made since may be a running attach's, journaled after that read), on a link
 * of that look still there under the same name, of exactly a vcnet rate limit's shape now and the
 * same handle, that no record claims, on a link no filter at vcnet's priorities is on and none
 * (but one that goes) leads to. A redirect of any shape at vcnet's priority, live or not, may be the
 * rest of an attach whose record gc does not read (another state directory): the htb then stays.
 * A link of vcnet's group of a kind vcnet never makes is not looked at (leftAlone says it).
 */
async function strayRateLimits(
  handle: NetlinkHandle,
  scan: NamespaceScan,
  { present, passOver, claimed, redirects, goingWith }: StrayContext,
): Promise<Array<{ link: Link; shaping: RateLimitHtb }>> {
  const htbAtFirstLook = new Map(
    (scan.qdiscs ?? [])
      .filter((qdisc) => qdisc.parent === TC_H_ROOT && qdisc.kind === 'htb')
      .map((qdisc) => [qdisc.index, qdisc.handle]),
  );
  const strays: Array<{ link: Link; shaping: RateLimitHtb }> = [];
  for (const listed of scan.links) {
    const handleAtFirstLook = htbAtFirstLook.get(listed.index);
    const link = present.get(listed.index);
    if (handleAtFirstLook === undefined || link === undefined || link.name !== listed.name) continue;
    if (link.group === VCNET_LINK_GROUP && !VCNET_LINK_KINDS.has(link.kind ?? '')) continue;
    if (passOver(link) || claimsHtb(claimed, link) || explainedByRedirect(link, redirects, goingWith)) continue;
    const shaping = await rateLimitHtbOf(handle, link);
    if (shaping?.ours && shaping.handle === handleAtFirstLook) strays.push({ link, shaping });
  }
  return strays;
}

/** Whether a record's htb is on `link`: by ifindex when recorded, else by name. */
function claimsHtb(claimed: RecordOwner['htbs'], link: Link): boolean {
  return claimed.some((htb) => (htb.index !== undefined ? htb.index === link.index : htb.link === link.name));
}

/** Whether a filter at vcnet's priorities is on `link`, or leads to it from a link that stays. */
function explainedByRedirect(
  link: Link,
  redirects: readonly PriorityRedirect[],
  goingWith: ReadonlySet<number>,
): boolean {
  return redirects.some(
    (redirect) => redirect.index === link.index || (redirect.targets.has(link.index) && !goingWith.has(redirect.index)),
  );
}

/** A mirred target no link has: the kernel dumps 0 once the device is gone, the ifindex otherwise. */
function goneDevice(target: number): string {
  return target === 0 ? 'a device that no longer exists' : `ifindex ${target}, which no longer exists`;
}

/** The ifindexes a filter's mirred actions send to. */
function redirectTargetsOf(filter: Awaited<ReturnType<NetlinkHandle['filters']>>[number]): number[] {
  const actions = 'actions' in filter.options ? filter.options.actions : [];
  return actions.flatMap((action) => (action.kind === 'mirred' && 'targetIndex' in action ? [action.targetIndex] : []));
}

/**
 * Ingress filter priorities on `link` whose every filter redirects to a target `isTarget` takes, or
 * whose redirect nodes of vcnet's shape to such a target share a u32 with another's nodes (deleted
 * by handle); `found` says whether it removes that one. Returns how many priorities stay on the
 * link's ingress.
 */
async function collectRedirectFilters(
  handle: NetlinkHandle,
  link: Link,
  isTarget: (priority: number, target: number) => boolean,
  /** `handles`: the redirects' u32 nodes, to be deleted one by one (another's node shares the priority). */
  found: (priority: number, parent: number, protocol: number, target: number, handles?: readonly number[]) => boolean,
): Promise<number> {
  let filters: Awaited<ReturnType<NetlinkHandle['filters']>>;
  try {
    filters = await handle.filters(link.index, INGRESS_HOOK);
  } catch {
    return 0; // no ingress qdisc
  }
  const byPriority = new Map<number, typeof filters>();
  for (const filter of filters) appendTo(byPriority, filter.priority, filter);
  let left = 0;
  for (const [priority, all] of byPriority) {
    const group = chainZeroOwnTables(all, isRedirectNode);
    // Another chain's filter at this priority is never vcnet's, and stays in the qdisc.
    if (group.length < all.length) left++;
    if (group.length === 0) continue;
    const rules = group.filter((filter) => 'actions' in filter.options && filter.options.actions.length > 0);
    const redirectTargets = rules.map((filter) => {
      const actions = 'actions' in filter.options ? filter.options.actions : [];
      const mirred = actions.find((action) => action.kind === 'mirred' && 'targetIndex' in action);
      return mirred && 'targetIndex' in mirred ? mirred.targetIndex : -1;
    });
    // Every filter there redirects to what goes: the whole priority goes with it, unless another's
    // u32 node shares it (added at this priority and protocol: a second node of the same u32, a
    // classifier with a flowid or one with actions of its own, a mirror, a police). Then the nodes
    // redirecting to what goes are deleted by their handles, and theirs stays, as detach does it
    // (foreign-filters.ts); at least one of those is of vcnet's shape.
    const going = rules.filter((filter) => {
      const targets = redirectTargetsOf(filter);
      return targets.length > 0 && targets.every((target) => isTarget(priority, target));
    });
    const staying = group.filter((filter) => !going.includes(filter) && isOthersU32Node(filter));
    const wholePriority = rules.length > 0 && going.length === rules.length && staying.length === 0;
    const byHandle =
      !wholePriority &&
      going.some(isRedirectNode) &&
      group.every((filter) => going.includes(filter) || staying.includes(filter) || isU32Table(filter));
    const first = byHandle ? going.find(isRedirectNode)! : group[0]!;
    const removed =
      (wholePriority || byHandle) &&
      found(
        priority,
        first.parent,
        first.protocol,
        redirectTargetsOf(first)[0] ?? redirectTargets[0]!,
        byHandle ? going.map((filter) => filter.handle) : undefined,
      );
    if (!removed || staying.length > 0) left++;
  }
  return left;
}

/** A node of vcnet's shape: a u32 match-all whose one action is a mirred egress redirect (to any target). */
function isRedirectNode(filter: Awaited<ReturnType<NetlinkHandle['filters']>>[number]): boolean {
  const targets = redirectTargetsOf(filter);
  return targets.length === 1 && 'keys' in filter.options && isVcnetRedirect(filter, 'u32', new Set(targets));
}

/**
 * A u32 entry of chain 0 (vcnet's): its head, a hash table, or a node. Entries at one priority and
 * protocol of one chain are one u32 (the kernel refuses another kind or protocol there), whose nodes
 * can be deleted one by one.
 */
function isU32Entry(filter: Awaited<ReturnType<NetlinkHandle['filters']>>[number]): boolean {
  return filter.kind === 'u32' && filter.options.kind === 'u32' && (filter.chain ?? 0) === 0;
}

/** A u32's head or hash table: neither keys, nor actions, nor a flowid (isVcnetRedirect's own test). */
function isU32Table(filter: Awaited<ReturnType<NetlinkHandle['filters']>>[number]): boolean {
  return isU32Entry(filter) && isVcnetRedirect(filter, 'u32', new Set()) && redirectTargetsOf(filter).length === 0;
}

/**
 * A u32 node that is not of vcnet's shape: one that classifies (keys or a flowid) or acts (a mirror,
 * a police) or both: another tool's, added at a priority and protocol of vcnet's redirect (a second
 * node of the same u32). vcnet's hash table and u32 head dump with neither keys nor actions.
 */
function isOthersU32Node(filter: Awaited<ReturnType<NetlinkHandle['filters']>>[number]): boolean {
  return (
    isU32Entry(filter) &&
    'keys' in filter.options &&
    !isRedirectNode(filter) &&
    (filter.options.keys.length > 0 || filter.options.classId !== undefined || filter.options.actions.length > 0)
  );
}

/** The qdisc at `link`'s ingress parent (an ingress or a clsact), if it has one. */
async function ingressQdiscOf(
  handle: NetlinkHandle,
  link: Link,
): Promise<{ kind: string; handle: number } | undefined> {
  try {
    const qdisc = (await handle.qdiscs(link.index)).find(
      (candidate) => candidate.index === link.index && candidate.parent === TC_H_INGRESS,
    );
    return qdisc ? { kind: qdisc.kind, handle: qdisc.handle } : undefined;
  } catch {
    return undefined; // the link went meanwhile
  }
}

/** An htb root qdisc, and whether it is of a vcnet rate limit's shape. */
interface RateLimitHtb {
  ours: boolean;
  handle: number;
  description: string;
  /** The rate it holds its link's egress to (its outer class's), in bits per second; '?' unknown. */
  rate: number | '?';
}

/**
 * The htb root qdisc on `link`, and whether it has exactly the shape a vcnet rate limit makes
 * (foreign-filters.ts isVcnetHtb). undefined when the root qdisc is not an htb (or the link went meanwhile).
 */
async function rateLimitHtbOf(handle: NetlinkHandle, link: Link): Promise<RateLimitHtb | undefined> {
  try {
    const qdiscs = await handle.qdiscs(link.index);
    const root = qdiscs.find((qdisc) => qdisc.parent === TC_H_ROOT);
    if (root?.kind !== 'htb') return undefined;
    const defaultClass = 'defaultClass' in root.options ? root.options.defaultClass : undefined;
    const classes = await handle.classes(link.index);
    const filters = await handle.filters(link.index, root.handle);
    const description = [
      `handle ${formatHandle(root.handle)}`,
      `default ${defaultClass === undefined ? 'unknown' : defaultClass.toString(16)}`,
      ...classes.map(
        (entry) =>
          `class ${formatHandle(entry.handle)} parent ${entry.parent === TC_H_ROOT ? 'root' : formatHandle(entry.parent)} rate ${entry.rateBitsPerSecond ?? '?'} ceil ${entry.ceilBitsPerSecond ?? '?'}`,
      ),
      ...(filters.length > 0 ? [`${filters.length} filter(s)`] : []),
    ].join(', ');
    const ours = isVcnetHtb(root, classes, filters, qdiscs);
    const outer = classes.find((entry) => entry.parent === TC_H_ROOT || entry.parent === root.handle);
    return { ours, handle: root.handle, description, rate: outer?.rateBitsPerSecond ?? '?' };
  } catch {
    return undefined; // the link went meanwhile
  }
}

/** listOpenMacvtapDevices for one gc: read the first time a macvtap needs it, then kept. */
export function openMacvtapDevicesOnce(): () => OpenMacvtapDevices | undefined {
  let macvtapDevices: OpenMacvtapDevices | undefined | null = null;
  return () => {
    if (macvtapDevices === null) macvtapDevices = listOpenMacvtapDevices();
    return macvtapDevices;
  };
}
