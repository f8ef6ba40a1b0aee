/**
 * The vocabulary of plans: one `Change` is one kernel object change (a link, a qdisc, a filter, an
 * address, a route, a neighbour), written as data so it can be printed (`--dry-run`), journaled,
 * unit-tested without root, and executed by the one executor (apply.ts).
 *
 * Links are named symbolically: a pod link by its name and the index the scan saw, a link the plan
 * itself creates by its name only; the executor resolves names to indexes when it sends the change.
 */
import type { AddressSpec } from '../../netlink/codec/address.js';
import type { Ipv6AddressGeneration } from '../../netlink/codec/link.js';
import type { NeighbourSpec } from '../../netlink/codec/neighbour.js';
import type { RouteSpec } from '../../netlink/codec/route.js';
import type { NextHopSpec } from '../../netlink/codec/route-attributes.js';

/** What a link is to the plan: the pod's own link, or one the plan creates. */
export type LinkRole = 'pod' | 'tap' | 'macvtap' | 'ifb';

/** A link a plan names: its role (pod, tap, macvtap, ifb), its name, and its index once known. */
export interface LinkRef {
  role: LinkRole;
  name: string;
  /** Known for links that exist when the plan is made (the pod's); resolved by name otherwise. */
  index?: number;
}

/** Link attributes a plan sets (and puts back). */
export interface LinkAttributes {
  address?: string;
  mtu?: number;
  up?: boolean;
  group?: number;
  ipv6AddressGeneration?: Ipv6AddressGeneration;
  txQueueLength?: number;
}

/** An address, route or neighbour as a request, without the link (the change names it). */
/**
 * An address as a request. `validUntil` and `preferredUntil` (ms since the epoch) are when the kernel
 * would have removed or deprecated an address with a lifetime (DHCP, SLAAC): detach puts it back
 * with what is left, or not at all once it has passed. A request made from the record carries the
 * lifetimes in seconds instead.
 */
export type AddressRecord = Omit<AddressSpec, 'index'> & {
  validUntil?: number;
  preferredUntil?: number;
  /** An IPv6 address whose prefix route (proto kernel) the pod did not have (the ptp plugin deletes it). */
  withoutPrefixRoute?: boolean;
  /**
   * An IPv6 address that had not passed duplicate address detection when attach removed it: still
   * `tentative` (no carrier yet, or DAD running) or `failed` (another host on the link has it,
   * `dadfailed`). Absent (as in every older record): it had passed, or needs none. Detach puts one
   * with a state back without `nodad`, so the kernel runs DAD for it again.
   */
  dadState?: 'tentative' | 'failed';
};
/**
 * A next hop of a multipath route: on the route's own link (the change's or record's) when `link` is
 * absent, else on that other link, kept by name and index (pod-link-routes.ts says when that happens).
 */
export type NextHopRecord = Omit<NextHopSpec, 'outputIndex'> & { link?: { name: string; index: number } };
/**
 * A route as a request. `expiresAt` (ms since the epoch) is when the kernel would have removed a route
 * with a lifetime (RA-learned): detach puts it back with what is left of it, or not at all once it
 * has passed. A request made from the record carries `expires` (seconds) instead.
 */
export type RouteRecord = Omit<RouteSpec, 'outputIndex' | 'nextHops'> & {
  nextHops?: NextHopRecord[];
  expiresAt?: number;
};
/** A neighbour as a plan records it, without the link index (resolved when applied). */
export type NeighbourRecord = Omit<NeighbourSpec, 'index'>;

/**
 * One kernel change of a plan (`op` says which): a tap, link, address, route, neighbour, qdisc, class or
 * filter made or removed. Each has its inverse in the attach's journal.
 */
export type Change =
  /** A tap made by the TUNSETIFF ioctl (rtnetlink cannot make tun devices), persistent. */
  /** owner/group: who may open it by name without CAP_NET_ADMIN (TUNSETOWNER, TUNSETGROUP). */
  | { op: 'create-tap'; link: LinkRef; queues: number; multiQueue: boolean; owner?: number; group?: number }
  | {
      op: 'create-link';
      link: LinkRef;
      kind: 'macvtap' | 'ifb';
      parent?: LinkRef;
      address?: string;
      mtu?: number;
      txQueueLength?: number;
      group?: number;
      /** Made with IFF_ALLMULTI (a macvtap: see plan-attach.ts). */
      allMulticast?: boolean;
    }
  | { op: 'delete-link'; link: LinkRef; kind: string }
  /** Deletes every link of a group at once (one RCU grace period for all). */
  | { op: 'delete-link-group'; group: number; links: LinkRef[] }
  | { op: 'set-link'; link: LinkRef; set: LinkAttributes }
  /**
   * The link's IPv6 address generation mode set by its sysctl (net.ipv6.conf.<link>.addr_gen_mode),
   * which, unlike the netlink attribute, makes the kernel generate the link-local address of the
   * mode at once, as it does when a link becomes ready. Sent after the batch's netlink changes.
   */
  | { op: 'set-address-generation'; link: LinkRef; mode: Ipv6AddressGeneration }
  | { op: 'add-qdisc'; link: LinkRef; kind: 'ingress' | 'htb'; handle: number; parent: number; defaultClass?: number }
  | { op: 'delete-qdisc'; link: LinkRef; kind: string; handle: number; parent: number }
  /** With `change`, the class is there and takes this rate (`tc class change`: the watch puts back a changed rate). */
  | { op: 'add-class'; link: LinkRef; handle: number; parent: number; rateBitsPerSecond: number; change?: true }
  /** A u32 match-all filter whose mirred action redirects every frame to `redirectTo`'s egress. */
  | { op: 'add-filter'; link: LinkRef; parent: number; priority: number; protocol: number; redirectTo: LinkRef }
  | {
      op: 'delete-filter';
      link: LinkRef;
      parent: number;
      priority: number;
      protocol: number;
      kind: string;
      /** One u32 node of the priority (its handle), the others' nodes beside it staying; absent: the whole priority. */
      handle?: number;
    }
  | { op: 'add-address'; link: LinkRef; address: AddressRecord }
  /** An existing address takes the flags and lifetimes of `address` (`ip address change`). */
  | { op: 'change-address'; link: LinkRef; address: AddressRecord }
  | { op: 'delete-address'; link: LinkRef; address: AddressRecord }
  /**
   * Added where its place (route-place.ts) is free, as `ip route add`; `replace` where the place is
   * one the kernel fills itself as the plan puts an address back (the prefix route).
   */
  | { op: 'add-route'; link: LinkRef; route: RouteRecord; replace?: boolean }
  | { op: 'delete-route'; link: LinkRef; route: RouteRecord }
  | { op: 'add-neighbour'; link: LinkRef; neighbour: NeighbourRecord }
  | { op: 'delete-neighbour'; link: LinkRef; neighbour: NeighbourRecord };

/**
 * One step of a plan: the change, and what undoes it. `undo` is derived from the change itself
 * (plan/inverse.ts), never written by hand. `undo` is undefined for changes to an object the plan
 * also creates (a link's MTU, an htb class): they go when that object goes.
 */
export interface PlanStep {
  change: Change;
  undo?: Change;
  /** The persisted undo record (what detach reads), derived from `undo`. */
  record?: PlumbingStep;
}

/**
 * What an attach of one pod link will change: its steps in order, the device the VM uses, the guest's MAC and
 * warnings. Pure data: `planSandboxAttach` answers it, the CLI's `--dry-run` prints it.
 */
export interface Plan {
  /** `existing`: a device the VM uses as it is (an existing macvtap), with only rate limits added. */
  model: 'tcfilter' | 'macvtap' | 'none' | 'existing';
  steps: PlanStep[];
  /** The device the hypervisor uses (tap or macvtap). */
  device: LinkRef;
  /** The MAC the guest NIC gets; undefined when it is the new tap's own (known after apply). */
  guestHardwareAddress?: string;
  /** What the plan cannot help and the user should know (another tool's filter ahead of vcnet's redirect). */
  warnings?: string[];
}

/**
 * A pod link as a record names it: `link` is its name when attach ran (a label for people), `index`
 * its ifindex in the namespace (its identity: a renamed link keeps it, a recreated one gets a new one).
 * Records written before vcnet kept the index name the link only.
 */
export interface PodLinkRecord {
  link: string;
  index?: number;
  /**
   * Only in a record journaled before the step was made (an attach's intent, plan-intent.ts): the link
   * this endpoint's attach makes just before it (its tap, macvtap or ifb). While that link's
   * create-link record is `unconfirmed` and no such link is there, the attach stopped before it, so
   * before this step: detach and gc pass over it (another tool's qdisc or address there now is
   * theirs). Absent once the attach is recorded as done, and where no link of vcnet's comes first.
   */
  madeAfter?: string;
}

/** Link attributes a change-link record holds (what was there before, and what vcnet set). */
export interface RecordedLinkAttributes {
  address?: string;
  mtu?: number;
  up?: boolean;
  name?: string;
  /** The root qdisc before attach, when it was none at all ("noop": the link had never been up). */
  qdisc?: 'noop';
  ipv6AddressGeneration?: Ipv6AddressGeneration;
  txQueueLength?: number;
}

/**
 * The persisted undo records (what detach, gc and CNI CHECK read), derived from plan steps by
 * inverse.ts.
 */
export type PlumbingStep =
  | {
      step: 'create-link';
      name: string;
      kind: string;
      /**
       * The link's ifindex: its identity, as for pod links (a renamed tap is still vcnet's, a
       * look-alike made under its name is not). Chosen before the link is made (plan-intent.ts), so a record
       * journaled just before it existed has it too. Absent in records of older builds: those are
       * found by name.
       */
      index?: number;
      /**
       * The index was chosen and journaled before the kernel confirmed the link was made there: after
       * a crash it may be another tool's link, so it counts only with the recorded name, kind and
       * vcnet's group. Absent once the create's success is journaled.
       */
      unconfirmed?: true;
    }
  | ({ step: 'add-qdisc'; handle: number; parent: number; kind: string } & PodLinkRecord)
  | ({
      step: 'add-filter';
      parent: number;
      priority: number;
      protocol: number;
      kind: string;
      /**
       * The link the filter's mirred action redirects to (by ifindex once known): what tells vcnet's
       * filter from another put at the same priority since. Older records do not have it.
       */
      redirectTo?: { link: string; index?: number };
    } & PodLinkRecord)
  | ({
      step: 'change-link';
      before: RecordedLinkAttributes;
      /** What vcnet set: detach puts `before` back only where the link still has these values. */
      set?: RecordedLinkAttributes;
    } & PodLinkRecord)
  | ({ step: 'remove-addresses'; addresses: AddressRecord[] } & PodLinkRecord)
  | ({ step: 'remove-routes'; routes: RouteRecord[] } & PodLinkRecord)
  | ({ step: 'remove-neighbours'; neighbours: NeighbourRecord[] } & PodLinkRecord);

/** Rate limits as Kata sets them (rx_/tx_rate_limiter_max_rate), bits per second. */
export interface RateLimit {
  rxBitsPerSecond?: number;
  txBitsPerSecond?: number;
}
