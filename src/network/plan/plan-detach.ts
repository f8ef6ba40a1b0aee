/**
 * planDetach: the changes that undo what a record says an attach made, from the record and the links
 * the namespace has now. Pure. Objects on a link that is itself deleted go with it, filters inside a
 * qdisc that is deleted go with the qdisc, and vcnet's links are deleted by group when the group holds
 * exactly them (one RCU grace period instead of one per link). Every change lists the records it
 * settles, so whatever the kernel refuses can be kept in the record, and nothing else.
 */
import type { Address } from '../../netlink/codec/address.js';
import { AddressFlag } from '../../netlink/codec/address.js';
import { familyOf, ipToBytes, networkOf } from '../../netlink/codec/address-format.js';
import { AddressFamily } from '../../netlink/codec/constants.js';
import { InterfaceFlag } from '../../netlink/codec/link/message.js';
import type { Ipv6AddressGeneration, Link } from '../../netlink/codec/link.js';
import type { Route } from '../../netlink/codec/route.js';
import { RouteProtocol, RouteScope, RouteTable } from '../../netlink/codec/route.js';
import { formatHandle, parseHandle, TC_H_ROOT } from '../../netlink/codec/tc/message.js';
import {
  commandIn,
  type NamespaceHeldThroughDevice,
  namespaceNoCommandEnters,
  PIN_PATH_PLACEHOLDER,
  shellWord,
  sysctlCommandIn,
} from '../../shell-word.js';
import { commandOf } from './commands.js';
import { undoChangesOf, undoOf } from './inverse.js';
import { QUEUE_LENGTH_WITH_FIRST_QDISC } from './older-records.js';
import { VCNET_LINK_GROUP } from './plan-attach.js';
import { reachableFirst } from './pod-link-routes.js';
import {
  kernelPlacesOf,
  listedRouteText,
  placeOfRecord,
  placeOfRoute,
  recordedRouteText,
  sameRoute,
} from './route-place.js';
import type {
  AddressRecord,
  Change,
  LinkAttributes,
  LinkRef,
  LinkRole,
  PlumbingStep,
  RecordedLinkAttributes,
} from './types.js';

/** One change of a detach, and the attach records it settles. */
export interface DetachStep {
  change: Change;
  /** The records this change settles when the kernel accepts it (or says the object is gone). */
  settles: PlumbingStep[];
}

/**
 * What a detach of a sandbox's records will do: the changes in order, the records already gone, those kept
 * (shared with another tool) and notices.
 */
export interface DetachPlan {
  steps: DetachStep[];
  /** Records whose link is already gone: nothing to do for them. */
  alreadyGone: PlumbingStep[];
  /**
   * Records of an attach cut short (journaled before it made them) that it never got to: a link of
   * vcnet's chosen an index but not there (`unconfirmed`), what goes on it, and the steps on pod links
   * after it (`madeAfter`), when none of those shows on its pod link either (batch-evidence.ts).
   * Nothing to do, nor counted as gone: what is there now is someone else's.
   */
  neverMade: PlumbingStep[];
  /** Records of objects detach leaves because they are someone else's now too, and why. */
  kept: KeptRecord[];
  /** What detach leaves as it is, and why (a link replaced or renamed, a value the user changed). */
  notices: DetachNotice[];
}

/** An attach record a detach leaves in place, and why (it holds another tool's object too). */
export interface KeptRecord {
  record: PlumbingStep;
  /** Why it stays, e.g. "it holds another tool's filter (prio 100)". */
  reason: string;
}

/** Something a detach tells the user about a link (a device still open, say); it does not stop the detach. */
export interface DetachNotice {
  /** The link as the record names it. */
  link: string;
  message: string;
}

/**
 * The link a pod record means, now: by ifindex when the record has one (a rename keeps it; a link
 * deleted and made again under the same name is another link, and gets nothing of the old one's),
 * by name for records written before vcnet kept the index. Created links (taps, macvtaps, ifbs) are
 * found the same way, kind-checked (createdLinksNow).
 */
export function linkResolver(links: readonly Link[]): (name: string, index?: number) => Link | undefined {
  const byName = new Map(links.map((link) => [link.name, link]));
  const byIndex = new Map(links.map((link) => [link.index, link]));
  return (name, index) => (index === undefined ? byName.get(name) : byIndex.get(index));
}

/**
 * An address put back on a link renamed since attach carries the link's name now, as the kernel
 * renames the labels of a renamed link's addresses (`eth0` → `ren`, `eth0:1` → `ren:1`): a label of
 * the old name would hide it from `ip addr show label ren*`.
 */
function relabelled(change: Change, recordedName: string): Change {
  if (change.op !== 'add-address' || change.link.name === recordedName) return change;
  const label = change.address.label;
  if (label === undefined) return change;
  if (label !== recordedName && !label.startsWith(`${recordedName}:`)) return change;
  // IFNAMSIZ: a label is at most 15 bytes, as the kernel cuts a renamed one.
  const renamed = `${change.link.name}${label.slice(recordedName.length)}`.slice(0, 15);
  return { ...change, address: { ...change.address, label: renamed } };
}

/** The key of a qdisc in `keptQdiscs`: the link as the record names it, and the handle's major. */
export function qdiscKey(link: string, handle: number): string {
  return `${link}/${handle >>> 16}`;
}

/** The key of a filter record in `keptFilters`: the link as the record names it, the parent's major, the priority. */
export function filterKey(link: string, parent: number, priority: number): string {
  return `${link}/${parent >>> 16}/${priority}`;
}

/** The names of the links the records say attach created (taps, macvtaps, ifbs). */
export function createdLinkNames(records: readonly PlumbingStep[]): Set<string> {
  return new Set(records.flatMap((record) => (record.step === 'create-link' ? [record.name] : [])));
}

const ATTRIBUTE_LABELS: Record<keyof LinkAttributes, string> = {
  address: 'MAC',
  mtu: 'MTU',
  up: 'up/down state',
  group: 'group',
  ipv6AddressGeneration: 'IPv6 address generation mode',
  txQueueLength: 'transmit queue length',
};

function currentValue(link: Link, key: keyof RecordedLinkAttributes): unknown {
  switch (key) {
    case 'address':
      return link.address?.toLowerCase();
    case 'mtu':
      return link.mtu;
    case 'up':
      return (link.flags & InterfaceFlag.UP) !== 0;
    case 'ipv6AddressGeneration':
      return link.ipv6AddressGeneration;
    case 'txQueueLength':
      return link.txQueueLength;
    default:
      return undefined;
  }
}

/**
 * Whether a change-link record is attach's "the kernel's 1000 set before vcnet's first qdisc" on a
 * link without a transmit queue (plan-attach.ts noQueueKept): before 0, set 1000, and a qdisc on the
 * same link recorded after it. That attach sets 0 back after the qdisc's steps without a record, so
 * once it completed it left the link at 0. (The record an older build's read adds, older-records.ts,
 * comes after the qdisc: its attach left 1000.)
 */
function queueSetBackAfter(
  record: Extract<PlumbingStep, { step: 'change-link' }>,
  records: readonly PlumbingStep[],
): boolean {
  if (record.before.txQueueLength !== 0 || record.set?.txQueueLength !== QUEUE_LENGTH_WITH_FIRST_QDISC) return false;
  const onSameLink = (step: PlumbingStep): boolean =>
    step.step !== 'create-link' &&
    (record.index !== undefined && step.index !== undefined ? step.index === record.index : step.link === record.link);
  return records.slice(records.indexOf(record) + 1).some((step) => step.step === 'add-qdisc' && onSameLink(step));
}

/**
 * The attributes of a change-link record to put back: those the link still has as vcnet left them.
 * One the user (or another program) changed since is theirs now; it is left, with a notice.
 * `completed`: the record is of an attach that completed, so what it left is what the record says
 * it set, but for a transmit queue length set back after vcnet's qdisc (queueSetBackAfter): 0.
 */
function attributesToRestore(
  record: Extract<PlumbingStep, { step: 'change-link' }>,
  link: Link,
  notices: DetachNotice[],
  completed: { setBackQueue: boolean } | undefined,
): LinkAttributes {
  const { name: _rename, qdisc: _qdisc, ...before } = record.before;
  const restore: LinkAttributes = {};
  for (const [key, value] of Object.entries(before) as Array<[keyof LinkAttributes, never]>) {
    const recordedSet = record.set?.[key as keyof RecordedLinkAttributes];
    const set = key === 'txQueueLength' && completed?.setBackQueue ? 0 : recordedSet;
    const now = currentValue(link, key as keyof RecordedLinkAttributes);
    const changed =
      set !== undefined && now !== undefined && now !== (typeof set === 'string' ? set.toLowerCase() : set);
    const normalised = (typeof value === 'string' ? (value as string).toLowerCase() : value) as unknown;
    // An attach that did not complete, on a link that had no transmit queue and has the kernel's 1000
    // now: it got that with vcnet's qdisc, and the attach stopped before setting 0 back (in a record
    // of a build that set 0 back only as its last step: set 0). vcnet's to put back. After a
    // completed attach that 1000 is someone's since (their `ip link set`, their qdisc).
    const queueGivenWithQdisc =
      completed === undefined && key === 'txQueueLength' && value === 0 && now === QUEUE_LENGTH_WITH_FIRST_QDISC;
    if (changed && queueGivenWithQdisc) {
      restore[key] = value;
    } else if (changed && now === normalised) {
      // Someone already put it back as it was before attach: nothing to do, nothing to say.
    } else if (changed) {
      const story =
        set === normalised
          ? `attach left it at ${String(set)}, as it found it, and it changed since`
          : `it changed after attach set it to ${String(set)}`;
      notices.push({
        link: record.link,
        message: `left the ${ATTRIBUTE_LABELS[key]} of ${link.name} as it is (${String(now)}): ${story}, so it is no longer vcnet's to put back to ${String(value)}`,
      });
    } else if (set !== recordedSet) {
      // A completed attach left it as it found it, and it still is: nothing to do, nothing to say.
    } else {
      restore[key] = value;
    }
  }
  return restore;
}

/**
 * The IPv6 address generation mode a pod link gets back by its sysctl rather than netlink, or
 * undefined. Set by netlink the mode is only stored: a link that became ready (carrier came) while
 * attach had generation off, as when carrier comes and goes under the VM, has no link-local address
 * then and the kernel makes none later, where it would have made one had attach never happened. The
 * sysctl write makes it at once, from the MAC put back, as the kernel does when a link becomes
 * ready (or is there already: attach's removed link-local address is put back first, and the same
 * address generated again is no change). Not for a link put back down, which makes its link-local
 * address when it comes up again, as any link does.
 */
function generationBySysctl(set: LinkAttributes, link: Link, putBackDown: boolean): Ipv6AddressGeneration | undefined {
  const mode = set.ipv6AddressGeneration;
  if (mode === undefined || mode === 'none' || putBackDown) return undefined;
  if ((link.flags & InterfaceFlag.UP) === 0) return undefined;
  // Ready now (carrier), or marked ready while attached (carrier came and went): the kernel makes
  // no link-local address for it later. A link up that never had carrier gets one when carrier
  // comes, as any link does: netlink is enough there, and nothing appears before carrier.
  return (link.flags & InterfaceFlag.LOWER_UP) !== 0 || link.ipv6Ready === true ? mode : undefined;
}

/**
 * An IPv6 address put back is tentative while the kernel runs duplicate address detection (a second
 * or more): a route with it as `src` is refused meanwhile (EINVAL "Invalid source address"), and the
 * routes come back right after the addresses. The pod had this address, and had passed DAD for it
 * (the record has no dadState), before attach: it goes back with `nodad`, and once everything else is back it takes the flags it
 * had (`ip address change`, which starts no DAD), so it is usable at once and ends as it was, in
 * the kernel and pasted from a dry run into `sh -e` alike. Putting it back (and changing it) also
 * makes its prefix route: one the pod did not have is deleted last.
 */
function usableAtOnce(change: Change, record: PlumbingStep): { change: Change; after: Change[] } {
  if (change.op !== 'add-address' || record.step !== 'remove-addresses' || !change.address.address.includes(':')) {
    return { change, after: [] };
  }
  const flags = change.address.flags ?? 0;
  const after: Change[] = [];
  let added = change;
  const recorded = record.addresses.find(
    (address) => address.address === change.address.address && address.prefixLength === change.address.prefixLength,
  );
  // One that had not passed DAD (tentative, or a duplicate: dadfailed) goes back as asked for, and
  // the kernel runs DAD for it again: nodad would make a duplicate usable that never was.
  if ((flags & AddressFlag.NODAD) === 0 && recorded?.dadState === undefined) {
    added = { ...change, address: { ...change.address, flags: flags | AddressFlag.NODAD } };
    after.push({ op: 'change-address', link: change.link, address: change.address });
  }
  if (recorded?.withoutPrefixRoute) {
    const { address, prefixLength } = change.address;
    after.push({
      op: 'delete-route',
      link: change.link,
      route: {
        family: AddressFamily.INET6,
        destination: networkOf(change.address.peer ?? address, prefixLength),
        destinationLength: prefixLength,
        table: RouteTable.MAIN,
        protocol: RouteProtocol.KERNEL,
        ...(change.address.routePriority !== undefined ? { priority: change.address.routePriority } : {}),
      },
    });
  }
  return { change: added, after };
}

/**
 * Whether the address an undo would put back is on its link now, as the kernel tells addresses apart
 * (an add of it is answered EEXIST): an IPv6 address by itself, an IPv4 one with its prefix length
 * and peer. An attach killed before its batch removed the address never took it away; the kernel
 * makes a link-local one again as IPv6 comes back on; or someone put it back.
 */
function addressThere(change: Extract<Change, { op: 'add-address' }>, addresses: readonly Address[]): boolean {
  const index = change.link.index;
  if (index === undefined) return false;
  const { address, prefixLength, peer } = change.address;
  const family = familyOf(address);
  const bytes = ipToBytes(address).toString('hex');
  const peerBytes = (text: string | undefined) => (text === undefined ? undefined : ipToBytes(text).toString('hex'));
  return addresses.some(
    (there) =>
      there.index === index &&
      there.family === family &&
      ipToBytes(there.address).toString('hex') === bytes &&
      (family === AddressFamily.INET6 ||
        (there.prefixLength === prefixLength && peerBytes(there.peer ?? there.address) === peerBytes(peer ?? address))),
  );
}

/** A handle no one else uses for the moment a root qdisc exists only to be deleted. */
const TRANSIENT_ROOT_HANDLE = parseHandle('7663:');

/**
 * A link vcnet brought up for the first time got the kernel's default root qdisc (noqueue or
 * pfifo_fast), which stays after it goes down again. Once it is down, replacing that qdisc and
 * deleting the replacement leaves the link with none, as before attach. Only the kernel's default is
 * taken away: a qdisc someone configured since (with a handle) is theirs.
 */
function rootQdiscReset(
  record: Extract<PlumbingStep, { step: 'change-link' }>,
  link: Link,
  restoring: LinkAttributes,
): DetachStep[] {
  if (record.before.qdisc !== 'noop' || restoring.up !== false) return [];
  if (link.qdisc !== 'noqueue' && link.qdisc !== 'pfifo_fast') return [];
  const ref: LinkRef = { role: 'pod', name: link.name, index: link.index };
  const transient: Change = {
    op: 'add-qdisc',
    link: ref,
    kind: 'htb',
    handle: TRANSIENT_ROOT_HANDLE,
    parent: TC_H_ROOT,
  };
  // Its delete is derived from its add, as every undo is: the same link, handle and parent.
  const removal = undoOf(transient);
  // Settles nothing: the record is the up/down state; this is the kernel's side effect of it.
  return [transient, ...(removal ? [removal] : [])].map((change) => ({ change, settles: [] }));
}

/**
 * Whether `link` is one vcnet made as a record's create-link says: of the recorded kind, and in
 * vcnet's link group (as gc identifies vcnet's links), or a tap still carrying vcnet's name in the
 * default group (a tap exists for one step before attach moves it into the group). An edited record
 * naming a pod's veth as its tap must not get that veth deleted.
 */
function madeByVcnet(link: Link, kind: string): boolean {
  if (link.kind !== kind) return false;
  if (link.group === VCNET_LINK_GROUP) return true;
  return kind === 'tun' && link.group === 0 && /^tap\d+_kata$/.test(link.name);
}

/**
 * The links the create-link records mean, now, by recorded name. A record with the link's ifindex
 * finds it by that index, of the recorded kind, whatever it is named or grouped now (a renamed tap is
 * still vcnet's to delete); a link that only has the recorded name is someone else's look-alike, and
 * is left. A record without the index (an older build's: vcnet now records the index it makes a
 * link at before making it) finds it by name, of the recorded kind and in vcnet's group; so does
 * an `unconfirmed` one (journaled before the kernel made the link), at its index only. `notMade`: recorded names whose link there
 * now is another's, left with a notice.
 */
function createdLinksNow(
  records: readonly PlumbingStep[],
  links: readonly Link[],
  notices: DetachNotice[],
): { created: Map<string, Link>; notMade: Set<string> } {
  const byName = new Map(links.map((link) => [link.name, link]));
  const byIndex = new Map(links.map((link) => [link.index, link]));
  const created = new Map<string, Link>();
  const notMade = new Set<string>();
  const group = `vcnet's group 0x${VCNET_LINK_GROUP.toString(16)}`;
  for (const record of records) {
    if (record.step !== 'create-link' || created.has(record.name) || notMade.has(record.name)) continue;
    if (record.index === undefined) {
      const link = byName.get(record.name);
      if (!link) continue;
      if (madeByVcnet(link, record.kind)) {
        created.set(record.name, link);
        continue;
      }
      notMade.add(record.name);
      notices.push({
        link: record.name,
        message: `left ${record.name} as it is: the record says vcnet created it (a ${record.kind} in ${group}), but it is a ${link.kind ?? 'link of no kind'} in group 0x${link.group.toString(16)}, which vcnet did not make (the record was edited, or the name was reused)`,
      });
      continue;
    }
    const link = byIndex.get(record.index);
    // Journaled before the kernel said it made the link there (`unconfirmed`), the link at that
    // index counts only as vcnet's kind in vcnet's group (or a tap still under vcnet's name, before
    // its move into the group): another tool may have made one there after a crash. Renamed since,
    // it is still the one attach made: no other tool puts a link of that kind into vcnet's group at
    // that index.
    const isAttachs =
      link !== undefined &&
      (record.unconfirmed
        ? (link.name === record.name || link.group === VCNET_LINK_GROUP) && madeByVcnet(link, record.kind)
        : link.kind === record.kind);
    if (link && isAttachs) {
      created.set(record.name, link);
      if (link.name !== record.name) {
        notices.push({
          link: record.name,
          message: `${record.name} (ifindex ${link.index}) was renamed ${link.name} after attach made it: deleted under its new name`,
        });
      }
    } else if (link) {
      notMade.add(record.name);
      notices.push({
        link: record.name,
        message: record.unconfirmed
          ? `left ${link.name} (ifindex ${link.index}, ${link.kind ?? 'no kind'}, group 0x${link.group.toString(16)}) as it is: attach chose that index for its ${record.kind} ${record.name} but stopped before the kernel confirmed making it, and this link is not that ${record.kind} named ${record.name} in ${group}`
          : `left ${link.name} (ifindex ${link.index}) as it is: attach made a ${record.kind} ${record.name} at that index, but this is a ${link.kind ?? 'link of no kind'}, which vcnet did not make`,
      });
    }
    const namesake = byName.get(record.name);
    if (namesake && namesake.index !== record.index) {
      notices.push({
        link: record.name,
        message: `left ${record.name} (ifindex ${namesake.index}, ${namesake.kind ?? 'no kind'}) as it is: it is not the link attach made under that name (ifindex ${record.index})`,
      });
    }
  }
  return { created, notMade };
}

function roleOfKind(kind: string): LinkRole {
  return kind === 'macvtap' ? 'macvtap' : kind === 'ifb' ? 'ifb' : 'tap';
}

/**
 * The steps with each recorded route put back only where its place (route-place.ts) is free, as
 * `ip route add` would: a route there now that is the recorded one settles its record silently; any
 * other there is someone's since attach, and stays, with a notice naming both. A place the kernel
 * fills itself as an address comes back (its prefix route) is taken over, as before attach.
 */
function placedRoutes(
  steps: readonly DetachStep[],
  links: readonly Link[],
  routes: readonly Route[],
  alreadyGone: PlumbingStep[],
  notices: DetachNotice[],
): DetachStep[] {
  const kernelPlaces = new Set(
    steps.flatMap(({ change }) => (change.op === 'add-address' ? kernelPlacesOf(change.address) : [])),
  );
  const taken = new Map<string, Route>();
  for (const route of routes) {
    const place = placeOfRoute(route);
    if (place !== undefined && !taken.has(place)) taken.set(place, route);
  }
  return steps.flatMap((step) => {
    const { change } = step;
    if (change.op !== 'add-route') return [step];
    const place = placeOfRecord(change.route);
    const there = taken.get(place);
    if (!there) return [{ ...step, change: { ...change, replace: kernelPlaces.has(place) } }];
    for (const record of step.settles) if (!alreadyGone.includes(record)) alreadyGone.push(record);
    const notice = routeTakenNotice(step, there, links);
    if (notice) notices.push(notice);
    return [];
  });
}

/** The IPv4 addresses on link `index` now in `record`'s subnet (same prefix length), other than it. */
function othersInSubnet(index: number | undefined, record: AddressRecord, addresses: readonly Address[]): Address[] {
  const { address, prefixLength } = record;
  const subnet = networkOf(address, prefixLength);
  return addresses.filter(
    (other) =>
      other.index === index &&
      other.family === AddressFamily.INET &&
      other.prefixLength === prefixLength &&
      other.address !== address &&
      networkOf(other.address, prefixLength) === subnet,
  );
}

/**
 * The primary of a recorded IPv4 address's subnet that it comes back secondary behind (see
 * secondaryComebacks): the record's was primary and another of its subnet, of its scope, is now.
 */
function primaryAhead(record: AddressRecord, inSubnet: readonly Address[]): Address | undefined {
  const { flags = 0, scope = RouteScope.UNIVERSE } = record;
  if ((flags & AddressFlag.SECONDARY) !== 0 || inSubnet.some((other) => other.scope !== scope)) return undefined;
  return inSubnet.find((other) => (other.flags & AddressFlag.SECONDARY) === 0);
}

/**
 * Whether the detach of these records says how to make an address primary again (secondaryComebacks)
 * on a link whose own promote_secondaries is off: only then does the namespace's
 * net.ipv4.conf.all.promote_secondaries change what it says, so only then is it read (planDetach's
 * `allPromoteSecondaries`). Pure; may say yes for an address the plan then finds there already.
 */
export function comebackNeedsAllPromoteSecondaries(
  records: readonly PlumbingStep[],
  links: readonly Link[],
  addresses: readonly Address[],
): boolean {
  const resolve = linkResolver(links);
  return records.some((record) => {
    if (record.step !== 'remove-addresses') return false;
    const link = resolve(record.link, record.index);
    if (!link || link.promoteSecondaries === true) return false;
    return record.addresses.some(
      (address) =>
        familyOf(address.address) === AddressFamily.INET &&
        primaryAhead(address, othersInSubnet(link.index, address, addresses)) !== undefined,
    );
  });
}

/**
 * An IPv4 address detach puts back that was its subnet's primary at attach, where another address
 * in that subnet is there now (added while attached: the macvtap model had taken the pod's away):
 * the kernel makes the first address of a subnet primary and every later one secondary, so the
 * pod's comes back secondary. Said, not changed: making it primary again means deleting the other
 * address (someone's, kept) and adding it after, which takes the routes with it as `src` away, and
 * gives it to no socket in between. The kernel promotes a deleted primary's secondaries when the
 * link's promote_secondaries or the namespace's net.ipv4.conf.all one is on (IN_DEV_ORCONF); with
 * both off (the kernel's default; a new namespace copies the host's `all`), the delete takes the
 * subnet's secondaries with it, the pod's among them, and with the link's last IPv4 address every
 * IPv4 route through it, so the command said then turns the link's on for the delete and back off.
 * `allPromoteSecondaries` undefined (not readable): the command does so too, harmless when `all` is
 * on. The commands run in the pod's namespace wherever they are pasted (a bare one on the host would
 * act on, and set promote_secondaries of, a host link of the pod link's name), its name quoted;
 * in a namespace no command can enter (`heldThrough`), they enter a pin of it the notice says how to make.
 */
function secondaryComebacks(
  steps: readonly DetachStep[],
  addresses: readonly Address[],
  links: readonly Link[],
  namespacePath: string | undefined,
  heldThrough: NamespaceHeldThroughDevice | undefined,
  allPromoteSecondaries: boolean | undefined,
): DetachNotice[] {
  const enteredAt = heldThrough ? PIN_PATH_PLACEHOLDER : namespacePath;
  const unenterable = heldThrough ? `; ${namespaceNoCommandEnters(heldThrough)}` : '';
  const ip = commandIn(enteredAt, 'ip');
  const notices: DetachNotice[] = [];
  for (const { change } of steps) {
    if (change.op !== 'add-address' || familyOf(change.address.address) !== AddressFamily.INET) continue;
    const { address, prefixLength, scope = RouteScope.UNIVERSE } = change.address;
    const subnet = networkOf(address, prefixLength);
    const inSubnet = othersInSubnet(change.link.index, change.address, addresses);
    // The kernel refuses an address in a subnet that holds one of another scope (EINVAL, "Invalid
    // scope value"): the add fails whatever is tried again, until that address goes.
    const otherScope = inSubnet.find((other) => other.scope !== scope);
    const name = change.link.name;
    const dev = `dev ${shellWord(name)}`;
    if (otherScope) {
      const added = `${otherScope.address}/${otherScope.prefixLength}`;
      // The pod's address as a /32 meanwhile (another mask: no subnet of the other's) keeps the link
      // an IPv4 address: the delete of its last one would take every IPv4 route through it.
      const keeper = `${address}/32`;
      notices.push({
        link: name,
        message: `${name}'s ${address}/${prefixLength} (scope ${scopeName(scope)}) cannot be put back: ${added} (scope ${scopeName(otherScope.scope)}), added while it was attached, is in ${subnet}/${prefixLength}, and the kernel takes no two scopes in one subnet (EINVAL). \`${ip} address add ${keeper} ${dev} && ${ip} address del ${added} ${dev}\`, then detach again, puts it back (the record keeps it; the /32 keeps ${name}'s IPv4 routes, which the delete of its last IPv4 address would take: \`${ip} address del ${keeper} ${dev}\` after); ${added} can come back after, with scope ${scopeName(scope)}${unenterable}`,
      });
      continue;
    }
    const primary = primaryAhead(change.address, inSubnet);
    if (!primary) continue;
    const added = `${primary.address}/${primary.prefixLength}`;
    const readd = `${ip} address del ${added} ${dev} && ${ip} address add ${added} ${dev}`;
    const linkPromotes = links.find((link) => link.index === change.link.index)?.promoteSecondaries === true;
    // A link name may hold a dot (eth0.100) or `=`, which sysctl reads otherwise: sysctlCommandIn.
    const promoteSecondaries = (value: number) =>
      sysctlCommandIn(enteredAt, `net/ipv4/conf/${name}/promote_secondaries`, value);
    const promoted = linkPromotes || allPromoteSecondaries === true;
    const command = promoted ? readd : `${promoteSecondaries(1)} && ${readd}; ${promoteSecondaries(0)}`;
    const why = linkPromotes
      ? ''
      : allPromoteSecondaries === true
        ? `; promote_secondaries is off on ${name} but on in its namespace's net.ipv4.conf.all, which turns it on for every link there: the delete promotes ${address}`
        : allPromoteSecondaries === false
          ? `; promote_secondaries is off on ${name} and in its namespace's net.ipv4.conf.all, so the command turns it on for ${name} for the delete, which would take ${address} with it otherwise`
          : `; promote_secondaries is off on ${name} and its namespace's net.ipv4.conf.all could not be read, so the command turns it on for ${name} for the delete, which takes ${address} with it when both are off`;
    notices.push({
      link: name,
      message: `${name}'s ${address}/${prefixLength} comes back secondary: ${added}, added while it was attached, is the primary of ${subnet}/${prefixLength} now (the kernel makes a subnet's first address primary); vcnet keeps that address as it is. \`${command}\` makes ${address} primary again (routes with ${primary.address} as src go with the delete${why})${unenterable}`,
    });
  }
  return notices;
}

/** An address scope as `ip` names it. */
function scopeName(scope: number): string {
  const names: Record<number, string> = {
    [RouteScope.UNIVERSE]: 'global',
    [RouteScope.SITE]: 'site',
    [RouteScope.LINK]: 'link',
    [RouteScope.HOST]: 'host',
  };
  return names[scope] ?? String(scope);
}

/**
 * The notice for a recorded route whose place holds `there`, another route (undefined when `there`
 * is the recorded one): said when the plan finds it, and when it appears between the plan and its
 * send (the kernel's EEXIST to the add, undo.ts).
 */
export function routeTakenNotice(step: DetachStep, there: Route, links: readonly Link[]): DetachNotice | undefined {
  const { change } = step;
  if (change.op !== 'add-route' || sameRoute(there, links, change.route, change.link)) return undefined;
  return {
    link: step.settles[0] && 'link' in step.settles[0] ? step.settles[0].link : change.link.name,
    message: `left the route ${listedRouteText(there, links)} as it is: it was set after attach in the place (table, destination, metric) of the route attach removed, ${recordedRouteText(change.route, change.link)}, which is not put back over it`,
  };
}

/**
 * The links recorded `unconfirmed` (journaled before the kernel made them) that are not there as
 * vcnet made them: each was never made, or was made and is gone (deleted by hand, say). Only the pod
 * links can tell which (batch-evidence.ts): what vcnet's batch after the link put there.
 */
export function unconfirmedLinksAbsent(records: readonly PlumbingStep[], links: readonly Link[]): Set<string> {
  const { created } = createdLinksNow(records, links, []);
  return unconfirmedAbsent(records, created);
}

function unconfirmedAbsent(records: readonly PlumbingStep[], created: ReadonlyMap<string, Link>): Set<string> {
  return new Set(
    records.flatMap((record) =>
      record.step === 'create-link' && record.unconfirmed && !created.has(record.name) ? [record.name] : [],
    ),
  );
}

/**
 * The records an attach journaled ahead and never got to (DetachPlan.neverMade): the links recorded
 * `unconfirmed` that are not there as vcnet made them (`created`) and whose pod-link steps show no
 * effect either (`inPlace`: the links whose batch did run), what goes on them, and the pod link steps
 * recorded as made after one of them. A step whose `madeAfter` link has no record here (detached
 * already, the step's undo refused) was made: it is not passed over.
 */
function neverMadeRecords(
  records: readonly PlumbingStep[],
  created: ReadonlyMap<string, Link>,
  inPlace: ReadonlySet<string>,
): Set<PlumbingStep> {
  const unmade = new Set([...unconfirmedAbsent(records, created)].filter((name) => !inPlace.has(name)));
  const own = createdLinkNames(records);
  return new Set(
    records.filter((record) => {
      if (record.step === 'create-link') return unmade.has(record.name);
      if (own.has(record.link)) return unmade.has(record.link);
      return record.madeAfter !== undefined && unmade.has(record.madeAfter);
    }),
  );
}

export function planDetach(
  allRecords: readonly PlumbingStep[],
  snapshot: {
    links: readonly Link[];
    /** Ingress qdiscs vcnet added that now hold someone else's filter, and why (foreign-filters.ts): kept, only our filters go. */
    keptQdiscs?: ReadonlyMap<string, string>;
    /** Shaping qdiscs vcnet added that hold someone else's objects, and which (foreign-filters.ts): deleted, with a notice. */
    qdiscsDeletedWith?: ReadonlyMap<string, string>;
    /** vcnet's filter records whose priority holds another's filter now, and why (foreign-filters.ts filterKey): kept. */
    keptFilters?: ReadonlyMap<string, string>;
    /** vcnet's u32 nodes at a priority another's node shares (filterKey → handles): deleted by handle. */
    ownNodes?: ReadonlyMap<string, readonly number[]>;
    /** Qdiscs vcnet recorded on pod links that are not there now (foreign-filters.ts qdiscKey): already gone, with their filters. */
    absentQdiscs?: ReadonlySet<string>;
    /**
     * vcnet's filter records whose qdisc is there without them at the recorded priority and protocol
     * (foreign-filters.ts filterKey): already gone.
     */
    absentFilters?: ReadonlySet<string>;
    /** The time of the scan (ms since the epoch): a removed route with a lifetime gets what is left of it. */
    now?: number;
    /** The pod's namespace as the user named it (undefined: this one), for the commands notices quote. */
    namespacePath?: string | undefined;
    /**
     * With namespacePath a /proc/PID/fd/N: the socket or tap of another process that alone keeps the
     * namespace, which no command can enter; the notices' commands enter a pin of it instead.
     */
    namespaceHeldThrough?: NamespaceHeldThroughDevice | undefined;
    /** The routes now, of every table: a recorded route goes back only where its place is free. */
    routes?: readonly Route[];
    /** The addresses now: a recorded address already on its link is not put back (addressThere). */
    addresses?: readonly Address[];
    /**
     * The namespace's net.ipv4.conf.all.promote_secondaries, read where comebackNeedsAllPromoteSecondaries
     * says the notices depend on it (undefined: not read, or not readable): the kernel promotes a
     * deleted primary's secondaries when it or the link's own is on.
     */
    allPromoteSecondaries?: boolean | undefined;
    /**
     * The links recorded `unconfirmed` and absent whose pod-link steps show their effect
     * (batch-evidence.ts podBatchesInPlace): made, and gone since; their steps are undone as usual.
     */
    batchesInPlace?: ReadonlySet<string>;
    /**
     * The records of attaches that completed (an endpoint's plumbing not `pending`): what they left is
     * known, so a value found otherwise is someone's since. Any other record is an unfinished
     * attach's (a rollback, gc finishing it), which may have stopped between two of its steps.
     */
    completed?: ReadonlySet<PlumbingStep>;
  },
): DetachPlan {
  const resolve = linkResolver(snapshot.links);
  const notices: DetachNotice[] = [];
  // The links vcnet made, as they are now; those a record names that are not vcnet's are left.
  const { created, notMade } = createdLinksNow(allRecords, snapshot.links, notices);
  // What an attach cut short never made is left out of everything below: not undone, not counted.
  const unmade = neverMadeRecords(allRecords, created, snapshot.batchesInPlace ?? new Set());
  const records = allRecords.filter((record) => !unmade.has(record));
  // The links vcnet made, by name, with their role (tap, macvtap, ifb) in the plan; any other is a pod link.
  const createdRoles = new Map(
    records.flatMap((record) =>
      record.step === 'create-link' && !notMade.has(record.name)
        ? [[record.name, roleOfKind(record.kind)] as const]
        : [],
    ),
  );
  const refOf = (name: string, index?: number): LinkRef => {
    const role = createdRoles.get(name) ?? 'pod';
    const link = role === 'pod' ? resolve(name, index) : created.get(name);
    return link ? { role, name: link.name, index: link.index } : { role, name };
  };
  const alreadyGone: PlumbingStep[] = [];
  const kept: KeptRecord[] = [];
  /** Whether a pod record's link is still there; says so once per link when it was replaced. */
  const replacedSaid = new Set<string>();
  const podLinkPresent = (record: Exclude<PlumbingStep, { step: 'create-link' }>): boolean => {
    if (resolve(record.link, record.index)) return true;
    const namesake = resolve(record.link);
    if (namesake && record.index !== undefined && !replacedSaid.has(record.link)) {
      replacedSaid.add(record.link);
      notices.push({
        link: record.link,
        message: `${record.link} is another link than the one attach changed (ifindex ${namesake.index} now, ${record.index} then): nothing of the old link is put on it`,
      });
    }
    return false;
  };

  // One deletion per created link that still exists (or one for the whole group).
  const linkSteps = new Map<string, DetachStep>();
  for (const record of records) {
    if (record.step !== 'create-link') continue;
    const link = created.get(record.name);
    if (!link || notMade.has(record.name)) {
      alreadyGone.push(record);
      continue;
    }
    const existing = linkSteps.get(record.name);
    if (existing) existing.settles.push(record);
    else linkSteps.set(record.name, { change: undoChangesOf(record, refOf)[0]!, settles: [record] });
  }
  // By index: a renamed link is still the one to delete; one moved out of the group is deleted on its own.
  const deleting = new Set([...linkSteps.keys()].map((name) => created.get(name)!.index));
  const groupMembers = snapshot.links.filter((link) => link.group === VCNET_LINK_GROUP);
  const byGroup =
    deleting.size > 1 &&
    groupMembers.length === deleting.size &&
    groupMembers.every((link) => deleting.has(link.index));

  // Qdiscs to delete, so the filters inside them can go with them.
  const qdiscSteps = new Map<string, DetachStep>();
  for (const record of records) {
    if (record.step !== 'add-qdisc' || createdRoles.has(record.link) || !resolve(record.link, record.index)) continue;
    if (snapshot.keptQdiscs?.has(qdiscKey(record.link, record.handle))) continue;
    if (snapshot.absentQdiscs?.has(qdiscKey(record.link, record.handle))) continue;
    qdiscSteps.set(qdiscKey(record.link, record.handle), {
      change: undoChangesOf(record, refOf)[0]!,
      settles: [record],
    });
  }

  const steps: DetachStep[] = [];
  /** Steps that must come after everything else is back (see usableAtOnce). */
  const finalSteps: DetachStep[] = [];
  for (const record of [...records].reverse()) {
    if (record.step === 'create-link') continue;
    // A filter record's entry in the snapshot's filter maps (absent, shared with another's node, kept).
    const recordFilterKey =
      record.step === 'add-filter' ? filterKey(record.link, record.parent, record.priority) : undefined;
    const ownNodes = recordFilterKey === undefined ? undefined : snapshot.ownNodes?.get(recordFilterKey);
    const keptFilterReason = recordFilterKey === undefined ? undefined : snapshot.keptFilters?.get(recordFilterKey);
    const owner = linkSteps.get(record.link);
    if (owner) {
      owner.settles.push(record); // goes with its link
    } else if (
      createdRoles.has(record.link) ||
      // What a record put on a link it says vcnet made (no ifindex: not a pod link) stays with it.
      (notMade.has(record.link) && record.index === undefined) ||
      !podLinkPresent(record)
    ) {
      alreadyGone.push(record);
    } else if (
      // A qdisc the link does not have (an attach cut short never made it), and the filters in it, or
      // a filter a qdisc that is there does not hold (deleted by hand): classified here, so detach,
      // its dry run and gc's say the same, rather than a deletion the kernel would answer "gone".
      (record.step === 'add-qdisc' && snapshot.absentQdiscs?.has(qdiscKey(record.link, record.handle))) ||
      (record.step === 'add-filter' &&
        (snapshot.absentQdiscs?.has(qdiscKey(record.link, record.parent)) ||
          snapshot.absentFilters?.has(recordFilterKey!)))
    ) {
      alreadyGone.push(record);
    } else if (record.step === 'add-qdisc') {
      const key = qdiscKey(record.link, record.handle);
      const qdiscStep = qdiscSteps.get(key);
      const theirs = snapshot.qdiscsDeletedWith?.get(key);
      if (qdiscStep) steps.push(qdiscStep);
      // A kept qdisc is no longer ours alone to delete: its record is settled without a change.
      else kept.push({ record, reason: snapshot.keptQdiscs?.get(key) ?? "it holds another tool's filter" });
      if (qdiscStep && theirs) {
        const name = resolve(record.link, record.index)?.name ?? record.link;
        notices.push({
          link: record.link,
          message: `the ${record.kind} qdisc ${formatHandle(record.handle)} attach added on ${name} is deleted with what another tool put in it since (${name} had no shaping before attach): ${theirs}`,
        });
      }
    } else if (record.step === 'add-filter' && ownNodes) {
      // Another's u32 node shares the priority: vcnet's own nodes go by handle, theirs stays.
      for (const handle of ownNodes) {
        steps.push({
          change: {
            op: 'delete-filter',
            link: refOf(record.link, record.index),
            parent: record.parent,
            priority: record.priority,
            protocol: record.protocol,
            kind: record.kind,
            handle,
          },
          settles: [record],
        });
      }
    } else if (record.step === 'add-filter' && keptFilterReason !== undefined) {
      // Deleting by priority would take another's filter: it stays, and the record is settled.
      kept.push({ record, reason: keptFilterReason });
    } else if (record.step === 'add-filter' && qdiscSteps.has(qdiscKey(record.link, record.parent))) {
      qdiscSteps.get(qdiscKey(record.link, record.parent))!.settles.push(record);
    } else if (record.step === 'change-link') {
      const link = resolve(record.link, record.index)!;
      const set = attributesToRestore(
        record,
        link,
        notices,
        snapshot.completed?.has(record) ? { setBackQueue: queueSetBackAfter(record, allRecords) } : undefined,
      );
      const putBackDown = records.some(
        (other) => other.step === 'change-link' && other.link === record.link && other.before.up === false,
      );
      const generation = generationBySysctl(set, link, putBackDown);
      if (generation) {
        // Last, once the MAC is back: the link-local address is made from the MAC the link has then.
        delete set.ipv6AddressGeneration;
        finalSteps.push({
          change: { op: 'set-address-generation', link: refOf(record.link, record.index), mode: generation },
          settles: [record],
        });
      }
      // Nothing left to put back: the record is settled without a change.
      if (Object.keys(set).length === 0) {
        if (!generation) alreadyGone.push(record);
      } else steps.push({ change: { op: 'set-link', link: refOf(record.link, record.index), set }, settles: [record] });
      steps.push(...rootQdiscReset(record, link, set));
    } else {
      const changes = undoChangesOf(record, refOf, snapshot.now).map((change) => relabelled(change, record.link));
      // e.g. a route whose other next-hop link is gone, or whose lifetime has passed
      let sent = 0;
      for (const change of changes) {
        const settled = usableAtOnce(change, record);
        // An address on its link already is not added (the kernel would answer EEXIST), so detach and
        // its dry run count it alike; it still takes its recorded flags (`ip address change`, which
        // the kernel accepts), and loses the prefix route that change makes where the pod had none.
        const there = change.op === 'add-address' && addressThere(change, snapshot.addresses ?? []);
        const after = there
          ? settled.after.some((step) => step.op === 'change-address')
            ? settled.after
            : []
          : settled.after;
        if (!there) steps.push({ change: settled.change, settles: [record] });
        for (const step of after) finalSteps.push({ change: step, settles: [record] });
        sent += (there ? 0 : 1) + after.length;
      }
      if (sent === 0) alreadyGone.push(record);
    }
  }
  notices.push(
    ...secondaryComebacks(
      steps,
      snapshot.addresses ?? [],
      snapshot.links,
      snapshot.namespacePath,
      snapshot.namespaceHeldThrough,
      snapshot.allPromoteSecondaries,
    ),
  );
  steps.splice(0, steps.length, ...placedRoutes(steps, snapshot.links, snapshot.routes ?? [], alreadyGone, notices));
  // The routes to the gateways before the routes through them (pod-link-routes.ts reachableFirst),
  // also from a record an older attach wrote in the kernel's order: each route step takes a slot a
  // route step of the same link had, so nothing else moves (a route of one link never goes ahead of
  // the addresses of its own, which its source address may need: another link's slot can be earlier).
  const routeSlotsByLink = new Map<string, number[]>();
  steps.forEach((step, at) => {
    if (step.change.op !== 'add-route') return;
    const key = JSON.stringify(step.change.link);
    routeSlotsByLink.set(key, [...(routeSlotsByLink.get(key) ?? []), at]);
  });
  for (const routeSlots of routeSlotsByLink.values()) {
    const routeSteps = reachableFirst(
      routeSlots.map((at) => steps[at]!),
      (step) => (step.change.op === 'add-route' ? step.change.route : {}),
    );
    routeSlots.forEach((at, position) => {
      steps[at] = routeSteps[position]!;
    });
  }
  // Every address takes its flags before any prefix route goes: changing an address makes its prefix
  // route again, also one another address of the same prefix had just deleted.
  steps.push(...finalSteps.filter((step) => step.change.op === 'change-address'));
  // One deletion per prefix, however many of its addresses came back; each settles their records.
  const prefixRouteSteps = new Map<string, DetachStep>();
  for (const step of finalSteps) {
    if (step.change.op === 'change-address' || step.change.op === 'set-address-generation') continue;
    const key = commandOf(step.change);
    const same = prefixRouteSteps.get(key);
    if (same) same.settles.push(...step.settles.filter((record) => !same.settles.includes(record)));
    else prefixRouteSteps.set(key, step);
  }
  steps.push(...prefixRouteSteps.values());
  steps.push(...finalSteps.filter((step) => step.change.op === 'set-address-generation'));

  // vcnet's own links go first: a pod link's MAC can only come back once the macvtap holding it is
  // gone (a macvlan beside eth0 shares eth0's port, where two equal MACs are refused: EADDRINUSE),
  // and nothing vcnet puts back on a pod link depends on a link vcnet made.
  if (byGroup) {
    const links = [...linkSteps.keys()].map((name) => refOf(name));
    steps.unshift({
      change: { op: 'delete-link-group', group: VCNET_LINK_GROUP, links },
      settles: [...linkSteps.values()].flatMap((step) => step.settles),
    });
  } else {
    steps.unshift(...linkSteps.values());
  }
  return { steps, alreadyGone, neverMade: [...unmade], kept, notices };
}
