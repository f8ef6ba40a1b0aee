/**
 * `vcnet gc`: finds plumbing vcnet made whose sandbox is gone and removes it, without ever touching
 * what a live record owns.
 *
 * Owners: every record in every state directory vcnet knows (state/registry.ts: the CLI's,
 * vcnet-cni's, any registered or given one), sandbox records and CNI records alike, each keyed by
 * its namespace's identity (device and inode), never by the path string. Namespaces: every
 * /var/run/netns entry and every live process's /proc/PID/ns/net, deduplicated by identity.
 *
 * A link of vcnet's group (0x7663) that no record claims in a namespace some record names is an
 * orphan when it is of a kind vcnet makes (a tap, a macvtap, an ifb): gc deletes the filters that
 * redirect to it, then the link. On a link it takes such redirects from (the pod link, a device the VM
 * used as it is), it also takes the ingress qdisc they leave empty and a rate limit's htb root qdisc
 * of exactly the shape an attach makes (another htb is reported in `leftAlone`). Such an htb that no
 * record claims on a link no redirect at vcnet's priority is on or leads to is never removed, only
 * reported in `leftAlone`: the shape is Kata's and an operator's too, and an attach journals its htb
 * before making it, so one of vcnet's has a record to undo it by. A record claims a link by its ifindex when it has one (a renamed tap
 * is still claimed), else by name. Anything else in the group (a veth, a bridge: someone else moved
 * it there) is reported in `leftAlone` and never touched, and so is a filter redirecting to an orphan
 * that a record claims (its link and priority). In a namespace no record of the
 * directories read names, vcnet's links are only reported (`unclaimed`), unless that namespace was
 * given (`namespaces`, --netns): every attach journals a link before making it, so such links come
 * from state gc does not read (another registry or state directory, a wiped /run), and may be a
 * running VM's. A record whose namespace exists nowhere is an
 * orphan record: gc deletes it (under that sandbox's lock); so is one written in an earlier boot
 * (state/boot-id.ts), which names nothing that exists and is not looked up. A record gc cannot read is named in the
 * report and skipped; when it still tells which namespace it is about, that namespace is left alone
 * (unless the cookie it still tells is not that of the namespace with its inode now: then its
 * namespace is gone, and it is dropped as a readable record of a gone namespace would be; so is one
 * whose device, inode and path it still tells once nothing holds that inode; and one whose boot id
 * and creation time both still tell an earlier boot is dropped as a record of an earlier boot);
 * when it cannot be read at all (EIO, EMFILE), or a directory of records cannot be listed, it may be
 * about any namespace, so no link, filter or qdisc is removed anywhere that run.
 *
 * Links are listed before records are read: an attach journals each link before making it, so a
 * link gc sees is already in a record gc reads afterwards. Step 4 judges and removes in each
 * namespace under its lock, taken without waiting (a namespace another command is changing is left
 * for the next run), from the filters and links listed again under it (orphan-links.ts says how), so
 * a sandbox attached since the first look is never mistaken for garbage.
 *
 * This file runs the steps in order; each is in gc/: namespace-scan.ts (1), gone-records.ts (3),
 * state-leftovers.ts (3a), unfinished.ts (3b), orphan-links.ts (4), and report.ts the report they
 * fill. The records they read are state/owners.ts's.
 */
import { existsSync, realpathSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { booleanOption, optionsArgument, signalOption, stringListOption } from '../arguments.js';
import { InvalidInputError, NamespacePathError } from '../errors.js';
import { yieldToEventLoop } from '../event-loop.js';
import { appendTo } from '../multimap.js';
import { NamespaceHolders } from '../netns/namespace-holders.js';
import { isLaterNamespaceOfSameInode, type OpenedNamespace } from '../netns/namespace-identity.js';
import {
  cookieAt,
  identityOfKey,
  keyOf,
  liveNamespaces,
  type NamespaceKey,
  pathHolds,
} from '../netns/namespace-liveness.js';
import { testSeam } from '../test-seams.js';
import { dropEarlierBootRecords, dropGoneRecords, dropUnreadableOfGone } from './gc/gone-records.js';
import { scanNamespaces } from './gc/namespace-scan.js';
import {
  collectNamespace,
  type NamespaceClaims,
  type NamespaceScan,
  openMacvtapDevicesOnce,
} from './gc/orphan-links.js';
import { emptyGarbageReport, type GarbageReport } from './gc/report.js';
import { collectEmptyRecordDirectories } from './gc/state-leftovers.js';
import { finishUnfinished } from './gc/unfinished.js';
import { knownStateDirectories, type RecordedNamespace, type RecordOwner, readOwners } from './state/owners.js';
import {
  forgetMissingStateDirectories,
  registeredStateDirectories,
  removeStaleRegistryTemporaries,
} from './state/registry.js';
import { readableForClaims } from './state/trust.js';

/**
 * Test seam (never set in production), on globalThis as apply.ts's (src/test-seams.ts): awaited after
 * step 1 lists the namespaces' links and qdiscs, before step 2 reads the records, so a test can make
 * something gc's first look did not see.
 */
const firstLookSeam = testSeam<() => void | Promise<void>>('gcFirstLook');

export function setGcFirstLookTestHook(hook: (() => void | Promise<void>) | undefined): void {
  firstLookSeam.set(hook);
}

/** What collectGarbage looks at, and whether it only reports. */
export interface GarbageOptions {
  /** State directories besides the defaults and the registry (--state-dir). */
  stateDirectories?: string[];
  /**
   * Only these namespaces: look for orphan links there; act only on records naming these paths or
   * whose namespace's device and inode one of them has (earlier-boot records: naming them).
   */
  namespaces?: string[];
  dryRun?: boolean;
  /**
   * Stops the gc at its next namespace or record: it rejects with the signal's reason, and what it
   * removed before stays removed (each removal is whole on its own; the next gc goes on from there).
   */
  signal?: AbortSignal;
}

/**
 * Removes the taps, macvtaps, ifbs, filters and qdiscs vcnet made whose sandbox is gone (`vcnet gc`),
 * and the records whose namespace exists nowhere; what a live record owns is never touched. With
 * `dryRun` it only reports. Give `namespaces` to look only there (other programs' sandboxes stay out).
 * A namespace it cannot examine is listed in `failures`, not thrown; it throws `InvalidInputError`
 * for bad options, before anything is read.
 *
 * @example
 * ```ts
 * import { collectGarbage } from 'vcnet';
 *
 * const report = await collectGarbage({ namespaces: ['/var/run/netns/pod'], dryRun: true });
 * for (const item of report.removed) console.log(`would remove ${item.kind} ${item.name}`);
 * ```
 */
export async function collectGarbage(options: GarbageOptions = {}): Promise<GarbageReport> {
  return collect(options, undefined);
}

/**
 * collectGarbage in the one namespace `opened` (vcnet-cni DEL's CNI_NETNS), scanned through the
 * socket its cookie was read on: an operation opens one socket per namespace (issue 10). It leaves
 * the state directories' leftovers (record directories and lock files without a record) alone.
 */
export async function collectGarbageInOpened(
  opened: OpenedNamespace,
  options: Omit<GarbageOptions, 'namespaces'>,
): Promise<GarbageReport> {
  return collect({ ...options, namespaces: [opened.entryPath] }, opened);
}

async function collect(options: GarbageOptions, opened: OpenedNamespace | undefined): Promise<GarbageReport> {
  // A gc reads every registered state directory and may delete links: a wrong argument must not
  // widen it to one over every namespace with the defaults.
  options = optionsArgument(options, 'options', ['stateDirectories', 'namespaces', 'dryRun', 'signal']);
  const signal = signalOption(options.signal);
  signal?.throwIfAborted();
  stringListOption(options.stateDirectories, 'stateDirectories', 'state directory paths');
  booleanOption(options.dryRun, 'dryRun');
  if (options.namespaces !== undefined && !Array.isArray(options.namespaces)) {
    throw new InvalidInputError('namespaces', options.namespaces, 'an array of network namespace paths');
  }
  const dryRun = options.dryRun ?? false;
  const namedDirectories = (options.stateDirectories ?? []).map((directory) => resolve(directory));
  // A named directory that cannot be one is refused as every other command refuses it: read as
  // empty, a mistyped path would make a gc that collects nothing look like a clean one. So is one
  // another user could change (exit 2, as detach refuses it): its records are not vcnet's to act on.
  // Root's gc reads such a directory for claims only instead (readableForClaims): what its records
  // name is kept, nothing in it is acted on, so another user's sandboxes' leftovers can be
  // collected without taking their live taps for orphans.
  for (const directory of namedDirectories) readableForClaims(directory);
  const directories = knownStateDirectories(namedDirectories);
  const report = emptyGarbageReport({ dryRun, stateDirectories: directories });
  for (const path of options.namespaces ?? [])
    if (typeof path !== 'string' || path === '')
      throw new NamespacePathError('namespaces', String(path ?? ''), 'empty');
  const live = liveNamespaces();
  const scoped = options.namespaces?.map((path) => resolve(path));
  const samePath = pathComparer();
  const named = (path: string) => scoped === undefined || scoped.some((given) => samePath(given, path));
  // Where gone records' namespaces may still be held, each place (every process's fds too) listed
  // once per gc, not once per record: only ever looked at to keep a record or find its namespace.
  let holderIndex: NamespaceHolders | undefined;
  const holders = () => {
    holderIndex ??= new NamespaceHolders();
    return holderIndex;
  };
  const holdersOf = (key: NamespaceKey) => holders().of(identityOfKey(key));

  // 1. Open the namespaces to look in and list their links (before any record is read: see above).
  const scans: NamespaceScan[] = [];
  try {
    const { missing, missingAsGiven, stale } = await scanNamespaces(scans, {
      live,
      scoped,
      given: options.namespaces,
      directories,
      holdersOf,
      signal,
      opened,
    });
    await firstLookSeam.hook()?.();

    // 2. Every record anywhere, by the namespace it names.
    const { owners, earlierBoot, skipped, untouchable, ignored, claimsOnly } = readOwners(directories, {
      claimsOnly: true,
    });
    report.claimsOnly.push(...claimsOnly);
    // Records gc may act on (drop, finish): never those read for claims only.
    const ownRecords = owners.filter((owner) => !owner.claimsOnly);
    // A record gc cannot read names a path too when its salvage does: gc drops it below once that
    // namespace is gone, so "no record names it" would contradict the removal it reports.
    const recordNames = (path: string) =>
      owners.some((owner) => samePath(owner.namespacePath, path)) ||
      earlierBoot.some((record) => samePath(record.namespacePath, path)) ||
      untouchable.salvaged.some((record) => samePath(record.namespacePath, path));
    report.skipped.push(...skipped);
    report.ignored.push(...ignored);
    // Gone, and nothing recorded there: nothing to collect (a path that is there and is not a
    // network namespace was refused above).
    for (const [position, path] of missing.entries()) {
      if (recordNames(path)) continue;
      // A bare name (`ip netns` NAME, read against the working directory) or a path whose directory
      // does not exist is a mistake, not a pod gone: refused, as every other command refuses it
      // (nothing was removed yet). Only a path in an existing directory is "nothing to collect".
      const given = missingAsGiven[position]!;
      if (!given.includes('/') || !existsSync(dirname(path)))
        throw new NamespacePathError('namespaces', given, 'missing, and no record names it');
      report.absent.push({
        namespacePath: path,
        detail: 'no namespace is at this path and no record names it: nothing to collect there',
      });
    }
    // A named path that is a file, no namespace, is a mistake unless a record names it: then it is
    // where the record's namespace was mounted, and the record is one of a gone namespace (dropped
    // below once nothing holds that namespace).
    for (const { path, given, what } of stale) {
      if (!recordNames(path)) throw new NamespacePathError('namespaces', given, what);
      report.absent.push({
        namespacePath: path,
        detail: `${what}, not a network namespace, is at this path (its namespace was unmounted, the mount point left): the records naming it are those of a namespace that is not there, dropped once nothing holds it`,
      });
    }
    // A live namespace with a record's device and inode but another cookie is a later namespace the
    // kernel gave the freed inode (a cookie is never reused): the record's namespace is gone, and the
    // record claims nothing in the new one.
    // What gc found of the live namespace with a record's device and inode, each look made once:
    // `seen KEY` one step 1 scanned or liveNamespaces listed, `at KEY PATH` a recorded path that holds
    // it while neither does, `held KEY` the holder search's. Kept apart, a namespace the holder search
    // found (later, and only for records gc may act on) is never taken for one seen before it.
    // undefined: nothing found there; else its cookie (undefined when the kernel tells none).
    const found = new Map<string, { cookie: string | undefined } | undefined>();
    const lookOnce = (look: string, find: () => { cookie: string | undefined } | undefined) => {
      if (!found.has(look)) found.set(look, find());
      return found.get(look);
    };
    for (const { namespace } of scans)
      found.set(`seen ${keyOf(namespace.identity)}`, { cookie: namespace.identity.cookie });
    // With --netns, the records of the namespaces named: those naming one of the paths, and those
    // whose device and inode the namespace at one has (a record read by identity, as everything here:
    // its path may have moved, or a byte of it be damaged in a record that is not UTF-8).
    const scopedKeys = new Set(scans.map(({ namespace }) => keyOf(namespace.identity)));
    const inScope = ({ namespacePath, key }: RecordedNamespace): boolean => named(namespacePath) || scopedKeys.has(key);
    const liveCookie = ({ key, namespacePath }: RecordedNamespace): string | undefined => {
      const livePath = live.get(key);
      const seen =
        livePath !== undefined || found.has(`seen ${key}`)
          ? lookOnce(`seen ${key}`, () => ({
              // Its process may have exited meanwhile: the recorded path may still hold it.
              cookie: (livePath === undefined ? undefined : cookieAt(livePath, key)) ?? cookieAt(namespacePath, key),
            }))
          : lookOnce(`at ${key} ${namespacePath}`, () =>
              pathHolds(namespacePath, key) ? { cookie: cookieAt(namespacePath, key) } : undefined,
            );
      if (seen) return seen.cookie;
      // Neither a /var/run/netns entry, a process nor the recorded path has that inode: whatever else
      // holds it (a thread, a mount elsewhere, an fd), as list and detach look; else a later namespace
      // kept by a mount alone (Docker's, rootless podman's) kept the record forever. Only for records
      // gc may drop or finish here (in --netns): the search reads every process's mounts and fds.
      if (!inScope({ namespacePath, key })) return undefined;
      return lookOnce(`held ${key}`, () => {
        const [heldAt] = holdersOf(key);
        return heldAt === undefined ? undefined : { cookie: cookieAt(heldAt, key) };
      })?.cookie;
    };
    // A record of a gone namespace whose inode a later namespace took claims nothing in the later one.
    const isReplaced = (record: RecordedNamespace & { cookie?: string }): boolean => {
      if (record.cookie === undefined) return false; // nothing to compare: no probe
      const identity = identityOfKey(record.key);
      return isLaterNamespaceOfSameInode(
        { ...identity, cookie: record.cookie },
        { ...identity, cookie: liveCookie(record) },
      );
    };
    const replaced = new Set(owners.filter(isReplaced));
    /** What the records say of the namespace of `key`: see NamespaceClaims. */
    const claimsOf = (
      records: { owners: readonly RecordOwner[]; untouchable: typeof untouchable },
      key: NamespaceKey,
    ): NamespaceClaims => {
      const current = records.owners.filter((owner) => owner.key === key && !isReplaced(owner));
      return {
        withheld:
          records.untouchable.everything ||
          records.untouchable.keys.has(key) ||
          records.untouchable.salvaged.some((record) => record.key === key && !isReplaced(record)),
        links: current.length > 0 ? current.flatMap((owner) => owner.links) : undefined,
        filters: current.flatMap((owner) => owner.filters.map((filter) => ({ ...filter, id: owner.id }))),
        htbs: current.flatMap((owner) => owner.htbs),
        changing: changing.get(key) ?? [],
        named: scoped !== undefined,
      };
    };

    // 3. Records whose namespace exists nowhere (checked again now: it may have appeared meanwhile).
    const nowLive = liveNamespaces();
    const gone = { live, nowLive, inScope, holders, liveCookie };
    dropGoneRecords(ownRecords, { ...gone, replaced }, report);
    // Unreadable records that still tell their namespace's inode: dropped as readable ones once
    // nothing holds it, or their salvaged cookie tells the namespace with it now is a later one.
    dropUnreadableOfGone(
      untouchable.salvaged.filter((record) => !record.claimsOnly),
      { ...gone, replaced: new Set(untouchable.salvaged.filter(isReplaced)) },
      report,
    );
    dropEarlierBootRecords(
      earlierBoot.filter((record) => !record.claimsOnly && named(record.namespacePath)),
      report,
    );

    // 3a. Directories and lock files a command killed half-way left without any record. They belong
    // to no namespace: gc of some namespaces only takes those in the state directories it was given
    // (--state-dir), never in every registered one; never in one read for claims only (trusted only).
    // vcnet-cni DEL's gc (`opened`) takes none: that DEL tidies its own container's, and another
    // container's (or a file not vcnet's in its place) is not one container's DEL to remove.
    if (opened === undefined) collectEmptyRecordDirectories(scoped ? namedDirectories : directories, dryRun, report);

    // 3b. Sandbox records with endpoints whose attach never completed (a crash, or an undo the
    // kernel refused), whose lock is free: gc finishes undoing what those endpoints recorded. The
    // links of one another process is changing right now are kept, and said to be (not live).
    const changing = new Map<NamespaceKey, Array<{ name: string; index?: number }>>();
    for (const owner of ownRecords) {
      if (owner.id.includes('/')) continue; // CNI records: DEL and the plugin's GC finish those
      if (!inScope(owner)) continue;
      // Alive anywhere detach would reach it (a mount outside /var/run/netns, a thread, an fd too):
      // list's hint sends such a record here, and finishUnfinished opens it as detach does.
      if (replaced.has(owner)) continue;
      if (!(live.has(owner.key) || nowLive.has(owner.key) || holdersOf(owner.key).length > 0)) continue;
      await yieldToEventLoop();
      signal?.throwIfAborted();
      if (await finishUnfinished(owner.id, dirname(owner.directory), report, holders()))
        appendTo(changing, owner.key, ...owner.links);
    }

    // 4. Links of vcnet's group that no record claims in their namespace.
    const openMacvtaps = openMacvtapDevicesOnce();
    for (const scan of scans) {
      await yieldToEventLoop();
      signal?.throwIfAborted();
      const key = keyOf(scan.namespace.identity);
      // The records as read in step 2, and as they are once the namespace's objects were listed
      // again under its lock (read only when there is something to remove).
      const claims = claimsOf({ owners, untouchable }, key);
      const claimsNow = () => claimsOf(readOwners(directories, { claimsOnly: true }), key);
      await collectNamespace(scan, { claims, claimsNow }, report, openMacvtaps);
    }
  } finally {
    const closing = scans.map(({ namespace, handle }) => {
      const closed = handle.close();
      namespace.close();
      return closed;
    });
    await Promise.all(closing);
  }
  if (!dryRun) {
    await forgetMissingStateDirectories(registeredStateDirectories());
    // A registry write killed before its rename left its temporary file beside the registry.
    removeStaleRegistryTemporaries();
  }
  return report;
}

/**
 * Whether two namespace paths name one mount point: as spelled, or through their directories' real
 * paths. /var/run is a link to /run on most distributions, and a runtime records one spelling
 * (containerd /var/run/netns/cni-…) while a user types the other; once the namespace is gone only
 * its directory is left to resolve, so the entry itself is never followed. Each directory is
 * resolved once per gc.
 */
function pathComparer(): (a: string, b: string) => boolean {
  const realDirectories = new Map<string, string>();
  const spelled = (path: string): string => {
    const directory = dirname(path);
    let real = realDirectories.get(directory);
    if (real === undefined) {
      try {
        real = realpathSync(directory);
      } catch {
        real = directory;
      }
      realDirectories.set(directory, real);
    }
    return join(real, basename(path));
  };
  return (a, b) => a === b || spelled(a) === spelled(b);
}
