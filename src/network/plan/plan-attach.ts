/**
 * planAttach: what attaching one endpoint changes in the pod namespace, as an ordered list of steps,
 * from a scan of the namespace and the request. Pure: no I/O, no clock, no randomness (the random
 * spare MAC of the macvtap model comes in the request). The executor (apply.ts) sends it.
 *
 *   tcfilter  a tap beside the pod link, an ingress qdisc on both, a u32 match-all filter on each
 *             redirecting every frame to the other (Kata's default).
 *   macvtap   a macvtap on the pod link with the pod link's MAC; the pod link moves to a spare MAC and
 *             gives up its addresses, IPv6 link-local ones included (and the routes, permanent and
 *             proxy neighbours that go with them).
 *   none      a tap only.
 *
 * Rate limits as Kata sets them (bits per second): an htb root qdisc 1: with default class 2, class 1:1
 * and 1:2 under it (rate = ceil = max). rx is traffic towards the VM, tx traffic from it. tcfilter: rx
 * on the tap's egress, tx on the pod link's egress. A tap alone: rx on its egress, tx on an ifb its
 * ingress is redirected to. A macvtap: the other way round (see rateLimitOnDevice).
 */
import { createHash } from 'node:crypto';
import { InvalidInputError, VcnetError } from '../../errors.js';
import { type Address, AddressFlag } from '../../netlink/codec/address.js';
import { networkOf } from '../../netlink/codec/address-format.js';
import { AddressFamily } from '../../netlink/codec/constants.js';
import { InterfaceFlag } from '../../netlink/codec/link/message.js';
import type { Link } from '../../netlink/codec/link.js';
import { NeighbourState } from '../../netlink/codec/neighbour.js';
import { RouteProtocol, RouteTable } from '../../netlink/codec/route.js';
import { TcActionResult } from '../../netlink/codec/tc/action/result.js';
import type { TcAction } from '../../netlink/codec/tc/action.js';
import { ETH_P_ALL, type Filter } from '../../netlink/codec/tc/filter.js';
import {
  CLSACT_INGRESS_PARENT,
  INGRESS_HANDLE,
  parseHandle,
  TC_H_INGRESS,
  TC_H_ROOT,
  tcMinor,
} from '../../netlink/codec/tc/message.js';
import type { NamespaceSnapshot } from '../../netlink/handle.js';
import { ipCommandIn, shellWord } from '../../shell-word.js';
import { addressRequestOf, stepOf } from './inverse.js';
import { QUEUE_LENGTH_WITH_FIRST_QDISC } from './older-records.js';
import { podLinkRoutes } from './pod-link-routes.js';
import type { Change, LinkRef, Plan, PlanStep, RateLimit } from './types.js';

/** Links vcnet creates carry this IFLA_GROUP, so gc finds them and detach can delete them at once. */
export const VCNET_LINK_GROUP = 0x7663; // "vc"
/**
 * The kinds of link vcnet makes (taps are tun devices; macvtaps; ifbs for rate limits). Anything else
 * in vcnet's group (a veth, a bridge) was put there by someone else: detach and gc never delete it.
 */
export const VCNET_LINK_KINDS: ReadonlySet<string> = new Set(['tun', 'macvtap', 'ifb']);

/** The priority of vcnet's filters (Kata's), and of the ifb redirect one below it. */
export const FILTER_PRIORITY = 49152;

/** Ethernet's default transmit queue length, which a macvtap also uses as its receive ring size. */
const DEFAULT_MACVTAP_QUEUE_LENGTH = 1000;

/** Root qdiscs the kernel or a distribution sets by default: an htb may replace them. */
export const DEFAULT_ROOT_QDISCS: ReadonlySet<string> = new Set([
  'noqueue',
  'pfifo_fast',
  'fq_codel',
  'mq',
  'noop',
  'pfifo',
  'fq',
]);

/** What a plan reads from the namespace (a NamespaceSnapshot, plus the filters it needs). */
export type PlanSnapshot = Pick<NamespaceSnapshot, 'links' | 'addresses' | 'routes' | 'neighbours' | 'qdiscs'> & {
  /** Proxy ARP/NDP entries (the macvtap model moves the pod link's). */
  proxyNeighbours?: NamespaceSnapshot['proxyNeighbours'];
  /** Ingress filters of pod links that already have an ingress or clsact qdisc (to pick a free priority). */
  filters?: Filter[];
};

export interface PlanConfig {
  /** Queues per NIC: > 1 makes a multi-queue tap. */
  queues: number;
  rateLimit?: RateLimit;
  /** The uid and gid each tap gets; with neither, this process's euid and egid (tap-owner.ts). */
  tapOwner?: number;
  tapGroup?: number;
}

/**
 * What an attach of one pod link is asked to make (model, pod link, tap name and MAC, queues, rate limit);
 * `planAttach` turns it into a `Plan`.
 */
export interface AttachRequest {
  model: Plan['model'];
  /** The pod link the VM is joined to (tcfilter, macvtap); for none it only lends the guest its MAC. */
  source?: Link;
  /** The tap or macvtap to create. */
  tapName: string;
  /** macvtap: the private MAC the pod link moves to (random, chosen by the caller). */
  spareHardwareAddress?: string;
  /** none: the tap's MTU (the pod link's by default, as the namespace has it; else 1500). */
  mtu?: number;
  /** none: the MAC the guest NIC gets (the pod link's by default, else the tap's own). */
  guestHardwareAddress?: string;
  /**
   * The time of the scan (ms since the epoch, from the caller like the spare MAC): macvtap records
   * when each removed route with a lifetime would have ended.
   */
  now?: number;
}

/**
 * The ifb that shapes a tap's tx: `ifb<idx>_kata` next to `tap<idx>_kata`, and for any other name
 * (an existing macvtap such as `vm-nic0`) `ifb_` plus a hash of it, so it never collides with the
 * link it serves and stays within the kernel's 15 bytes.
 */
export function ifbName(tapName: string): string {
  const kata = /^tap(\d+)_kata$/.exec(tapName);
  if (kata) return `ifb${kata[1]}_kata`;
  return `ifb_${createHash('sha256').update(tapName).digest('hex').slice(0, 11)}`;
}

/**
 * Kata gives the macvtap the pod interface's txqueuelen. A macvtap sizes each queue's receive ring by
 * it, and CNI's veths have txqueuelen 0: a ring of 0 drops every frame for the VM. So a zero length
 * becomes ethernet's default.
 */
export function macvtapQueueLength(source: Pick<Link, 'txQueueLength'>): number {
  return source.txQueueLength && source.txQueueLength > 0 ? source.txQueueLength : DEFAULT_MACVTAP_QUEUE_LENGTH;
}

function podRef(link: Link): LinkRef {
  return { role: 'pod', name: link.name, index: link.index };
}

/** IPv6's minimum link MTU (RFC 8200): below it the kernel gives a link no IPv6 at all. */
const IPV6_MINIMUM_MTU = 1280;

/**
 * The MTU the tap or macvtap gets: the pod link's own, as the namespace has it (Kata's setupTCFiltering
 * and tapNetworkPair read the link and set its MTU). The endpoint's may differ: add-iface's JSON `mtu`
 * is for the guest NIC only.
 */
function podLinkMtu(snapshot: PlanSnapshot, source: Link): number {
  return snapshot.links.find((link) => link.index === source.index)?.mtu ?? source.mtu;
}

function requireSource(request: AttachRequest): Link {
  if (!request.source) throw new InvalidInputError('source', undefined, `a pod link for model ${request.model}`);
  return request.source;
}

/** The record of the sandbox (or CNI interface) that made a link, when one is found. */
export interface LinkOwnerRecord {
  /** A sandbox id, or `<container id>/<interface>` for a vcnet-cni record (sandbox ids have no "/"). */
  id: string;
  file: string;
}

/**
 * Who a record is, for a message (`sandbox ID`, or vcnet-cni's `IFNAME of container ID`), and what
 * frees what it holds: `vcnet detach` of a sandbox, the runtime's CNI DEL of a vcnet-cni interface.
 */
export function describeOwner(owner: LinkOwnerRecord): { who: string; release: string } {
  const slash = owner.id.indexOf('/');
  if (slash < 0)
    return { who: `sandbox ${owner.id}`, release: `detach sandbox ${owner.id} first (its record: ${owner.file})` };
  const container = owner.id.slice(0, slash);
  const interfaceName = owner.id.slice(slash + 1);
  return {
    who: `vcnet-cni's ${interfaceName} of container ${container}`,
    release: `the runtime's CNI DEL of container ${container} (CNI_IFNAME ${interfaceName}) frees it first (its record: ${owner.file})`,
  };
}

/**
 * A link the plan must create (a tap, macvtap or ifb) is named like a link already in the namespace:
 * someone else's (Kata's, an operator's), or one a crashed sandbox left. vcnet neither takes it over
 * nor deletes it, and says so before changing anything (the kernel would answer only EBUSY or EEXIST).
 */
export class LinkNameTakenError extends VcnetError {
  static override readonly errorName: string = 'LinkNameTakenError';
  readonly holder: Pick<Link, 'index' | 'kind' | 'group'> | undefined;
  readonly owner: LinkOwnerRecord | undefined;
  /** The namespace the link is in, as the user named it: the hint's commands act there. */
  readonly namespacePath: string | undefined;
  constructor(
    name: string,
    holder: Pick<Link, 'index' | 'kind' | 'group'> | undefined,
    cause?: unknown,
    owner?: LinkOwnerRecord,
    namespacePath?: string,
  ) {
    const made = owner
      ? `, made by ${describeOwner(owner).who}`
      : holder?.group === VCNET_LINK_GROUP
        ? ", in vcnet's link group"
        : '';
    const held = holder ? ` (index ${holder.index}${holder.kind ? `, ${holder.kind}` : ''}${made})` : '';
    // Pasted on the host, a bare `ip` would act in the host's namespace (where disable_new_netns taps live).
    const ip = namespacePath ? ipCommandIn(namespacePath) : 'ip netns exec NAME ip';
    super(
      'VCNET_LINK_NAME_TAKEN',
      `a link named ${name} is already in the namespace${held}; vcnet makes ${name} itself, and neither joins nor deletes a link it did not make`,
      {
        value: name,
        cause,
        hint: owner
          ? `one namespace holds one sandbox's NICs: ${describeOwner(owner).release}`
          : holder?.group === VCNET_LINK_GROUP
            ? `a vcnet sandbox made it: \`vcnet detach\` that sandbox, or \`vcnet gc --netns ${namespacePath ? shellWord(namespacePath) : 'PATH'}\` (with that sandbox's --state-dir) if its record is gone`
            : `find who made it (\`${ip} -d link show ${shellWord(name)}\`); once nothing uses it, \`${ip} link del ${shellWord(name)}\``,
      },
    );
    this.holder = holder;
    this.owner = owner;
    this.namespacePath = namespacePath;
  }

  /** This error, its hint's commands naming the namespace at `namespacePath` (and `owner`, when given, as the maker). */
  placed(namespacePath: string, owner = this.owner): LinkNameTakenError {
    return new LinkNameTakenError(String(this.value), this.holder, this.cause, owner, namespacePath);
  }
}

export function planAttach(snapshot: PlanSnapshot, config: PlanConfig, request: AttachRequest): Plan {
  const plan = planForModel(snapshot, config, request);
  for (const { change } of plan.steps) {
    if (change.op !== 'create-tap' && change.op !== 'create-link') continue;
    const holder = snapshot.links.find((link) => link.name === change.link.name);
    if (holder) throw new LinkNameTakenError(change.link.name, holder);
  }
  return plan;
}

function planForModel(snapshot: PlanSnapshot, config: PlanConfig, request: AttachRequest): Plan {
  switch (request.model) {
    case 'tcfilter':
      return planTcFilter(snapshot, config, request, requireSource(request));
    case 'macvtap':
      return planMacvtap(snapshot, config, request, requireSource(request));
    case 'none':
      return planTapOnly(snapshot, config, request);
    case 'existing':
      return planExistingDevice(snapshot, config, requireSource(request));
  }
}

/** A device the VM uses as it is (an existing macvtap): only the rate limits Kata puts on it. */
function planExistingDevice(snapshot: PlanSnapshot, config: PlanConfig, source: Link): Plan {
  const device = podRef(source);
  return {
    model: 'existing',
    steps: rateLimitOnDevice(snapshot, config, device, 'existing', noQueueKept(source, device)),
    device,
    ...(source.address ? { guestHardwareAddress: source.address } : {}),
  };
}

/** A tap made by ioctl, put in vcnet's link group before anything else can fail, then configured. */
function tapSteps(tap: LinkRef, config: PlanConfig, mtu: number): PlanStep[] {
  return [
    stepOf({
      op: 'create-tap',
      link: tap,
      queues: config.queues,
      multiQueue: config.queues > 1,
      ...(config.tapOwner !== undefined ? { owner: config.tapOwner } : {}),
      ...(config.tapGroup !== undefined ? { group: config.tapGroup } : {}),
    }),
    stepOf({ op: 'set-link', link: tap, set: { group: VCNET_LINK_GROUP } }),
    stepOf({ op: 'set-link', link: tap, set: { mtu, up: true } }),
  ];
}

/** vcnet's ingress qdisc on `link` (ffff:): attach's, and the one `vcnet watch` makes again (plan-tc-repair.ts). */
export function ingressChange(link: LinkRef): Change {
  return { op: 'add-qdisc', link, kind: 'ingress', handle: INGRESS_HANDLE, parent: TC_H_INGRESS };
}

/** vcnet's u32 match-all filter on `from`'s ingress redirecting every frame to `to` (attach's, and the watch's again). */
export function redirectChange(
  from: LinkRef,
  to: LinkRef,
  parent: number,
  priority: number,
  protocol: number = ETH_P_ALL,
): Change {
  return { op: 'add-filter', link: from, parent, priority, protocol, redirectTo: to };
}

function ingressStep(link: LinkRef): PlanStep {
  return stepOf(ingressChange(link));
}

function redirectStep(from: LinkRef, to: LinkRef, parent: number, priority: number): PlanStep {
  return stepOf(redirectChange(from, to, parent, priority));
}

/**
 * The kernel gives a link with no transmit queue (CNI's veths: txqueuelen 0) one of 1000 whenever it
 * gets a qdisc, ingress or htb, and deleting the qdisc leaves it so. The pod link keeps 0: before
 * vcnet's first qdisc on it the plan sets the 1000 the kernel would give, recorded with the 0 it
 * replaces, so the undo of an attach stopped anywhere after (a fault rolled back, a kill then gc)
 * puts 0 back, and takes the 1000 for vcnet's, not for a change someone made. After each qdisc's
 * steps (an htb's classes included: a leaf queue takes the link's length when it is made) 0 is set
 * back, with no record of its own: that first record covers it. Returns the wrapper for a link
 * that has a queue as the steps unchanged.
 */
function noQueueKept(source: Link, pod: LinkRef): (qdiscSteps: PlanStep[]) => PlanStep[] {
  if (source.txQueueLength !== 0) return (qdiscSteps) => qdiscSteps;
  let recorded = false;
  return (qdiscSteps) => {
    const given = recorded
      ? []
      : [
          stepOf(
            { op: 'set-link', link: pod, set: { txQueueLength: QUEUE_LENGTH_WITH_FIRST_QDISC } },
            { txQueueLength: 0 },
          ),
        ];
    recorded = true;
    return [...given, ...qdiscSteps, stepOf({ op: 'set-link', link: pod, set: { txQueueLength: 0 } })];
  };
}

function planTcFilter(snapshot: PlanSnapshot, config: PlanConfig, request: AttachRequest, source: Link): Plan {
  const pod = podRef(source);
  const tap: LinkRef = { role: 'tap', name: request.tapName };
  const steps = [...tapSteps(tap, config, podLinkMtu(snapshot, source)), ingressStep(tap)];
  const queueKept = noQueueKept(source, pod);
  // The pod link may already have an ingress (or clsact) qdisc of its own: keep it, add beside it.
  const beside = besideIngressOf(snapshot, source.index, FILTER_PRIORITY);
  const { parent, priority } = beside;
  const warnings: string[] = [];
  if (beside.existing) {
    const earlier = earlierFiltersWarning(source.name, beside.present, priority);
    if (earlier) warnings.push(earlier);
  } else {
    steps.push(...queueKept([ingressStep(pod)]));
  }
  const duplicate = dadFailedWarning(snapshot, source);
  if (duplicate) warnings.push(duplicate);
  steps.push(redirectStep(pod, tap, parent, priority));
  steps.push(redirectStep(tap, pod, INGRESS_HANDLE, FILTER_PRIORITY));
  const rates = rateLimitPlacement('tcfilter', config.rateLimit);
  if (rates.device) steps.push(...htbSteps(snapshot, tap, rates.device));
  if (rates.pod) steps.push(...queueKept(htbSteps(snapshot, pod, rates.pod)));
  return {
    model: 'tcfilter',
    steps,
    device: tap,
    ...(source.address ? { guestHardwareAddress: source.address } : {}),
    ...(warnings.length > 0 ? { warnings } : {}),
  };
}

const PROTOCOL_NAMES: Record<number, string> = {
  [ETH_P_ALL]: 'all',
  2048: 'ip',
  2054: 'arp',
  34525: 'ipv6',
  33024: '802.1Q',
  34984: '802.1ad',
};

/**
 * The verdict a filter's action list ends with (tcf_action_exec: each `pipe` hands on to the next
 * action), or undefined when an action's verdict is not known (an action kind vcnet does not read).
 * No action at all (a classifier with a flowid): the filter's classification ends there, TC_ACT_OK.
 */
function finalVerdict(actions: readonly TcAction[]): number | undefined {
  for (const action of actions) {
    const result = 'result' in action ? action.result : undefined;
    if (result === undefined) return undefined;
    if (result !== TcActionResult.PIPE) return result;
  }
  return actions.length === 0 ? TcActionResult.OK : TcActionResult.PIPE;
}

/**
 * Whether frames a dumped filter entry matches still go on to the filters after it: it ends in
 * `continue` (TC_ACT_UNSPEC), as a mirror to an ifb for capture often does, or it is only a u32's
 * head or hash table (no selector, no action), which matches nothing itself. Any other verdict (ok,
 * pipe at the end, reclassify, drop, a redirect's stolen) ends the ingress filters for that frame.
 */
function passesFramesOn(filter: Filter): boolean {
  const { options } = filter;
  if (options.kind === 'u32' && !('keys' in options)) return filter.handle === 0;
  if (!('actions' in options)) return false;
  if (options.kind === 'u32' && options.keys.length === 0 && options.actions.length === 0) {
    return options.classId === undefined;
  }
  return finalVerdict(options.actions) === TcActionResult.UNSPEC;
}

/**
 * Another tool's filters on the pod link's ingress that run before vcnet's redirect (a lower prio
 * number runs first): a frame one of them matches (an ifb redirect, a classifier, a drop) ends
 * there and never reaches the VM. vcnet keeps Kata's priority, so this is said, not changed. A
 * filter whose every entry hands frames on (`continue`) takes nothing away and is not named.
 */
/**
 * Where a redirect on link `index` goes: with no ingress qdisc there, into the one the plan adds, at
 * `from`; beside an ingress or clsact qdisc another tool put there (kept, not replaced: a second is
 * refused, EEXIST), at the first priority from `from` its filters leave free, under the parent the
 * kernel reports them with (the block's classid, set by the last filter added: ffff:fff2 after tc's
 * `ingress`, ffff:0000 after Kata's netlink parent). Under another parent, `tc filter show` printed
 * `parent ffff:` on the other tool's filters from then on, after detach too.
 */
function besideIngressOf(
  snapshot: PlanSnapshot,
  index: number | undefined,
  from: number,
): { existing: boolean; present: Filter[]; parent: number; priority: number } {
  const qdisc = snapshot.qdiscs.find(
    (entry) => index !== undefined && entry.index === index && entry.parent === TC_H_INGRESS,
  );
  if (!qdisc) return { existing: false, present: [], parent: INGRESS_HANDLE, priority: from };
  let parent = qdisc.kind === 'clsact' ? CLSACT_INGRESS_PARENT : INGRESS_HANDLE;
  const present = (snapshot.filters ?? []).filter(
    (filter) => filter.index === index && (filter.parent === parent || filter.parent === CLSACT_INGRESS_PARENT),
  );
  if (qdisc.kind !== 'clsact' && present[0]) parent = present[0].parent;
  const used = new Set(present.map((filter) => filter.priority));
  let priority = from;
  while (used.has(priority)) priority++;
  return { existing: true, present, parent, priority };
}

function earlierFiltersWarning(link: string, present: readonly Filter[], priority: number): string | undefined {
  const earlier = new Map<string, string>();
  const stopping = new Set(
    present.filter((filter) => !passesFramesOn(filter)).map((filter) => `${filter.priority}/${filter.protocol}`),
  );
  for (const filter of present) {
    if (filter.priority >= priority) continue;
    // A u32 dumps its head and hash table beside its nodes: the priority is named if any part stops frames.
    if (!stopping.has(`${filter.priority}/${filter.protocol}`)) continue;
    const protocol = PROTOCOL_NAMES[filter.protocol] ?? `0x${filter.protocol.toString(16).padStart(4, '0')}`;
    // A u32 filter dumps as several entries (its hash table, its nodes) under one priority.
    earlier.set(
      `${filter.priority}/${protocol}/${filter.kind}`,
      `prio ${filter.priority} protocol ${protocol} (${filter.kind})`,
    );
  }
  if (earlier.size === 0) return undefined;
  return `${link}'s ingress has another tool's filter${earlier.size > 1 ? 's' : ''} ahead of vcnet's redirect to the VM (prio ${priority}): ${[...earlier.values()].join(', ')}; traffic ${earlier.size > 1 ? 'they match' : 'it matches'} does not reach the VM (Kata uses the same priority)`;
}

/**
 * A neighbour someone set (`nud permanent`, `nud noarp` with a unicast link-layer address). The kernel
 * makes NOARP entries of its own for multicast and broadcast destinations, with a group MAC: it makes
 * them again when they are needed, so they are not kept.
 */
function isStaticNeighbour(neighbour: PlanSnapshot['neighbours'][number]): boolean {
  if (neighbour.state === NeighbourState.PERMANENT) return true;
  if (neighbour.state !== NeighbourState.NOARP || !neighbour.linkLayerAddress) return false;
  return (Number.parseInt(neighbour.linkLayerAddress.slice(0, 2), 16) & 0x01) === 0;
}

/**
 * When an address's lifetimes end, from the time of the scan (nothing for one that does not expire).
 * A deprecated address that never expires (`preferred_lft 0`) ends its preferred lifetime at the scan:
 * IPv6 reports a preferred lifetime of 0 for it, IPv4 only the deprecated flag (and "forever").
 */
function lifetimeEnds(address: Address, now: number | undefined): { validUntil?: number; preferredUntil?: number } {
  if (now === undefined) return {};
  const preferred = (address.flags & AddressFlag.DEPRECATED) !== 0 ? 0 : address.preferredLifetime;
  return {
    ...(address.validLifetime !== undefined ? { validUntil: now + address.validLifetime * 1000 } : {}),
    ...(preferred !== undefined ? { preferredUntil: now + preferred * 1000 } : {}),
  };
}

function planMacvtap(snapshot: PlanSnapshot, config: PlanConfig, request: AttachRequest, source: Link): Plan {
  const spare = request.spareHardwareAddress;
  if (!spare) throw new InvalidInputError('spareHardwareAddress', spare, 'a private MAC for the pod link (macvtap)');
  const pod = podRef(source);
  const macvtap: LinkRef = { role: 'macvtap', name: request.tapName };
  const macvtapMtu = podLinkMtu(snapshot, source);
  const originalAddress = source.address ?? '';
  const steps: PlanStep[] = [];
  // The macvtap first, before anything on the pod link: a record journaled ahead of the attach
  // names it as what the pod link's changes come after (madeAfter), so a detach after a kill before
  // it leaves the pod link as it is then. It is made down, with the MAC the pod link still has.
  steps.push(
    stepOf({
      op: 'create-link',
      link: macvtap,
      kind: 'macvtap',
      parent: pod,
      mtu: macvtapMtu,
      ...(originalAddress ? { address: originalAddress } : {}),
      group: VCNET_LINK_GROUP,
      txQueueLength: macvtapQueueLength(source),
      // A macvlan in bridge mode passes a multicast frame from its lower link only to the macvlans that
      // joined its group. The macvtap has no IPv6 of its own (below), so it joins no solicited-node
      // group: neighbour solicitations for the guest's IPv6 addresses never reach the guest, and
      // nothing outside can start IPv6 traffic to it. All multicast in lets the guest filter.
      allMulticast: true,
    }),
  );
  // A MAC change flushes the link's neighbours, static ones included: remove them first, put back on undo.
  for (const neighbour of snapshot.neighbours) {
    if (neighbour.index !== source.index || !isStaticNeighbour(neighbour)) continue;
    steps.push(
      stepOf({
        op: 'delete-neighbour',
        link: pod,
        neighbour: {
          destination: neighbour.destination,
          state: neighbour.state,
          flags: neighbour.flags,
          ...(neighbour.linkLayerAddress ? { linkLayerAddress: neighbour.linkLayerAddress } : {}),
          ...(neighbour.protocol !== undefined ? { protocol: neighbour.protocol } : {}),
        },
      }),
    );
  }
  // Proxy entries go with the addresses too (IPv4 drops them with the last address): both families
  // are removed, and put back by detach.
  for (const neighbour of snapshot.proxyNeighbours ?? []) {
    if (neighbour.index !== source.index) continue;
    const { destination, state, flags, protocol } = neighbour;
    const record = { destination, state, flags, ...(protocol !== undefined ? { protocol } : {}) };
    steps.push(stepOf({ op: 'delete-neighbour', link: pod, neighbour: record }));
  }
  for (const route of podLinkRoutes(snapshot.routes, snapshot.links, source, request.now, snapshot.addresses)) {
    steps.push(stepOf({ op: 'delete-route', link: pod, route }));
  }
  // The guest takes the MAC, and with it the IPv6 link-local address the kernel made from it (EUI-64):
  // neither the macvtap nor the pod link may keep one, or the pod answers neighbour solicitations for
  // the guest's address. The kernel makes a link-local address when a link comes up, from the MAC it
  // has then; with generation off it makes none while attached (the pod link is brought up below if
  // it was down; someone may bounce it). The macvtap is vcnet's: set before it is up, gone with it.
  // Below 1280 (the least IPv6 allows) the kernel gives a link no IPv6 at all, so nothing to turn off;
  // it refuses the mode there (EAFNOSUPPORT). As Kata, which never sets it, does.
  if (macvtapMtu >= IPV6_MINIMUM_MTU) {
    steps.push(stepOf({ op: 'set-link', link: macvtap, set: { ipv6AddressGeneration: 'none' } }));
  }
  steps.push(stepOf({ op: 'set-link', link: pod, set: { address: spare } }, { address: originalAddress }));
  const generation = source.ipv6AddressGeneration;
  if (generation !== undefined && generation !== 'none') {
    steps.push(
      stepOf(
        { op: 'set-link', link: pod, set: { ipv6AddressGeneration: 'none' } },
        { ipv6AddressGeneration: generation },
      ),
    );
  }
  const removable = snapshot.addresses.filter((address) => address.index === source.index);
  // Undo runs backwards, so the deletion order is the reverse of the order to put them back in.
  // IPv4 is listed oldest first: delete the newest first, so secondaries go before their primary
  // (deleting a primary first takes its secondaries with it, or promotes one). IPv6 as listed, its
  // privacy addresses first: the kernel takes them with their public address (mngtmpaddr), and
  // makes new ones when that comes back. Put back, an old one would be an ordinary address too many.
  const v6 = removable.filter((address) => address.family === AddressFamily.INET6);
  const temporary = (address: Address) => (address.flags & AddressFlag.TEMPORARY) !== 0;
  const deletionOrder = [
    ...removable.filter((address) => address.family !== AddressFamily.INET6).reverse(),
    ...v6.filter(temporary),
    ...v6.filter((address) => !temporary(address)),
  ];
  // Putting an IPv6 address back makes its prefix route again; detach deletes it where the pod had
  // none (the ptp plugin deletes it and routes the subnet via its gateway).
  const hasPrefixRoute = (address: Address) =>
    snapshot.routes.some(
      (route) =>
        route.protocol === RouteProtocol.KERNEL &&
        route.table === RouteTable.MAIN &&
        route.outputIndex === source.index &&
        route.family === AddressFamily.INET6 &&
        route.destinationLength === address.prefixLength &&
        route.destination === networkOf(address.peer ?? address.address, address.prefixLength),
    );
  const withoutPrefixRoute = (address: Address) =>
    address.family === AddressFamily.INET6 &&
    (address.flags & AddressFlag.NOPREFIXROUTE) === 0 &&
    !address.address.toLowerCase().startsWith('fe80:') &&
    !hasPrefixRoute(address);
  for (const address of deletionOrder) {
    const change = {
      op: 'delete-address' as const,
      link: pod,
      address: {
        ...addressRequestOf(address),
        ...lifetimeEnds(address, request.now),
        ...(withoutPrefixRoute(address) ? { withoutPrefixRoute: true } : {}),
        ...dadStateOf(address),
      },
    };
    // A privacy address is the kernel's own, like the routes it adds: removed without a record.
    steps.push(address.family === AddressFamily.INET6 && temporary(address) ? { change } : stepOf(change));
  }
  if ((source.flags & InterfaceFlag.UP) === 0) {
    const bringUp = stepOf({ op: 'set-link', link: pod, set: { up: true } }, { up: false });
    // A link that was never up has no root qdisc ("noop"); up gives it the kernel's default one,
    // which stays after down. Recorded so detach can take it away again (plan-detach.ts).
    if (source.qdisc === 'noop' && bringUp.record?.step === 'change-link') bringUp.record.before.qdisc = 'noop';
    steps.push(bringUp);
  }
  steps.push(stepOf({ op: 'set-link', link: macvtap, set: { up: true } }));
  steps.push(...rateLimitOnDevice(snapshot, config, macvtap, 'macvtap'));
  const duplicate = dadFailedWarning(snapshot, source);
  return {
    model: 'macvtap',
    steps,
    device: macvtap,
    ...(originalAddress ? { guestHardwareAddress: originalAddress } : {}),
    ...(duplicate ? { warnings: [duplicate] } : {}),
  };
}

/** Where duplicate address detection stands for an IPv6 address that has not passed it (AddressRecord.dadState). */
function dadStateOf(address: Address): { dadState?: 'tentative' | 'failed' } {
  if (address.family !== AddressFamily.INET6) return {};
  if ((address.flags & AddressFlag.DADFAILED) !== 0) return { dadState: 'failed' };
  if ((address.flags & AddressFlag.TENTATIVE) !== 0) return { dadState: 'tentative' };
  return {};
}

/**
 * The pod link's IPv6 addresses that failed duplicate address detection: another host on the link
 * has them. The guest is told them as they are (the pod link could not use them either), so it gets
 * a duplicate: said at attach, so the cause is known before the guest's traffic goes astray.
 */
function dadFailedWarning(snapshot: PlanSnapshot, source: Link): string | undefined {
  const failed = snapshot.addresses.filter(
    (address) =>
      address.index === source.index &&
      address.family === AddressFamily.INET6 &&
      (address.flags & AddressFlag.DADFAILED) !== 0,
  );
  if (failed.length === 0) return undefined;
  const list = failed.map((address) => `${address.address}/${address.prefixLength}`).join(', ');
  return `${source.name}'s address${failed.length > 1 ? 'es' : ''} ${list} failed duplicate address detection (another host on the link has ${failed.length > 1 ? 'them' : 'it'}): the VM gets ${failed.length > 1 ? 'them' : 'it'} as well, a duplicate; give the pod a free address, or remove the other host's`;
}

function planTapOnly(snapshot: PlanSnapshot, config: PlanConfig, request: AttachRequest): Plan {
  const tap: LinkRef = { role: 'tap', name: request.tapName };
  const mtu = request.mtu ?? (request.source ? podLinkMtu(snapshot, request.source) : 1500);
  const guestHardwareAddress = request.guestHardwareAddress ?? request.source?.address;
  return {
    model: 'none',
    steps: [...tapSteps(tap, config, mtu), ...rateLimitOnDevice(snapshot, config, tap, 'none')],
    device: tap,
    ...(guestHardwareAddress ? { guestHardwareAddress } : {}),
  };
}

/**
 * Which rate each htb of an endpoint enforces, as attach places them (Kata's placement); rx is
 * traffic towards the VM, tx traffic from it:
 *   device  the egress of the device the VM reads and writes (tap or macvtap; an existing device is the pod link)
 *   ifb     the ifb the device's ingress is redirected to (the tap and macvtap models)
 *   pod     the pod link's egress (tcfilter)
 * The watch puts back a deleted htb with the rate this gives its link (plan-tc-repair.ts).
 */
export function rateLimitPlacement(
  model: Plan['model'],
  rateLimit: RateLimit | undefined,
): { device?: number; ifb?: number; pod?: number } {
  const rx = rateLimit?.rxBitsPerSecond;
  const tx = rateLimit?.txBitsPerSecond;
  switch (model) {
    case 'tcfilter':
      return { device: rx, pod: tx };
    case 'none':
      return { device: rx, ifb: tx };
    case 'macvtap':
    case 'existing':
      return { device: tx, ifb: rx };
  }
}

/**
 * The rate limits of the device the VM reads and writes: an htb on its egress for one direction, an
 * ifb fed from its ingress for the other. Which direction is which depends on the device:
 *   tap      frames for the VM are transmitted on the tap (egress) and read from its fd; frames the
 *            VM writes are received on it (ingress). rx on the egress, tx through the ifb.
 *   macvtap  frames the VM writes to /dev/tapN go out through the macvtap's transmit path (egress) to
 *            the lower link; frames for the VM arrive on its receive path (ingress), where the ifb's
 *            redirect sees them before they are queued to the fd. tx on the egress, rx through the ifb.
 * Kata uses the tap's placement for a macvtap too, which limits each direction by the other's rate.
 */
function rateLimitOnDevice(
  snapshot: PlanSnapshot,
  config: PlanConfig,
  device: LinkRef,
  model: 'none' | 'macvtap' | 'existing',
  /** The device's qdiscs wrapped so it keeps no transmit queue (noQueueKept): a pod link's. */
  queueKept: (qdiscSteps: PlanStep[]) => PlanStep[] = (qdiscSteps) => qdiscSteps,
): PlanStep[] {
  const { device: egress, ifb: ingress } = rateLimitPlacement(model, config.rateLimit);
  const steps: PlanStep[] = [];
  if (egress) steps.push(...queueKept(htbSteps(snapshot, device, egress)));
  if (ingress) {
    const ifb: LinkRef = { role: 'ifb', name: ifbName(device.name) };
    // A pod link's own device (an existing macvtap) may have an ingress or clsact qdisc of another
    // tool's: the redirect goes beside it, at a free priority, as tcfilter's does (a second ingress
    // qdisc is refused, EEXIST).
    const { existing, parent, priority } = besideIngressOf(snapshot, device.index, FILTER_PRIORITY - 1);
    steps.push(
      stepOf({ op: 'create-link', link: ifb, kind: 'ifb', group: VCNET_LINK_GROUP }),
      stepOf({ op: 'set-link', link: ifb, set: { up: true } }),
      ...(existing ? [] : queueKept([ingressStep(device)])),
      redirectStep(device, ifb, parent, priority),
      ...htbSteps(snapshot, ifb, ingress),
    );
  }
  return steps;
}

/** The htb tree; refuses to replace a root qdisc somebody else configured (Kata would replace it). */
function htbSteps(snapshot: PlanSnapshot, link: LinkRef, bitsPerSecond: number): PlanStep[] {
  const root = snapshot.qdiscs.find((qdisc) => qdisc.index === link.index && qdisc.parent === TC_H_ROOT);
  if (link.index !== undefined && root && root.handle !== 0 && !DEFAULT_ROOT_QDISCS.has(root.kind)) {
    throw new InvalidInputError(
      `root qdisc of ${link.name}`,
      root.kind,
      'a link without a configured root qdisc',
      'another tool configured traffic shaping on this link: remove it or disable vcnet rate limiting',
    );
  }
  return htbChanges(link, bitsPerSecond).map((change) => stepOf(change));
}

/** The handles of vcnet's htb: root qdisc 1:, class 1:1 under it, default class 1:2 under that. */
export const HTB_ROOT_HANDLE = parseHandle('1:');
export const HTB_PARENT_CLASS = parseHandle('1:1');
export const HTB_DEFAULT_CLASS = parseHandle('1:2');

/**
 * vcnet's htb on `link`'s egress, as Kata makes it: root qdisc 1: with default class 2, class 1:1 and
 * 1:2 under it, rate = ceil = `bitsPerSecond`. Attach's, and the one `vcnet watch` makes again.
 */
export function htbChanges(link: LinkRef, bitsPerSecond: number): Change[] {
  return [
    {
      op: 'add-qdisc',
      link,
      kind: 'htb',
      handle: HTB_ROOT_HANDLE,
      parent: TC_H_ROOT,
      defaultClass: tcMinor(HTB_DEFAULT_CLASS),
    },
    { op: 'add-class', link, handle: HTB_PARENT_CLASS, parent: HTB_ROOT_HANDLE, rateBitsPerSecond: bitsPerSecond },
    { op: 'add-class', link, handle: HTB_DEFAULT_CLASS, parent: HTB_PARENT_CLASS, rateBitsPerSecond: bitsPerSecond },
  ];
}
