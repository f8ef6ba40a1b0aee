/**
 * The record of what an attach changed in the pod namespace, step by step, so that detach can undo
 * exactly that and nothing else — from persisted state alone, after a crash too. Records are derived
 * from the plan's changes (plan/inverse.ts) and undone by the one executor (plan/apply.ts).
 *
 * Kata's detach deletes every u32 filter and ingress qdisc on the interface and leaves it down; vcnet
 * removes only the objects it created and puts back what it changed (MAC, MTU, up/down, addresses,
 * routes), in reverse order.
 */
import type { Link } from '../netlink/codec/link.js';
import type { NetlinkHandle } from '../netlink/handle.js';
import { type UndoReport, undoRecords } from './plan/apply.js';
import type { AddressRecord, NeighbourRecord, RouteRecord } from './plan/types.js';

export type { UndoReport } from './plan/apply.js';
export { VCNET_LINK_GROUP } from './plan/plan-attach.js';

/**
 * A pod link as a record names it: `link` is its name when attach ran (a label for people), `index`
 * its ifindex in the namespace (its identity: a renamed link keeps it, a recreated one gets a new one).
 * Records written before vcnet kept the index name the link only.
 */
interface PodLinkRecord {
  link: string;
  index?: number;
}

/** Link attributes a change-link record holds (what was there before, and what vcnet set). */
export interface RecordedLinkAttributes {
  address?: string;
  mtu?: number;
  up?: boolean;
  name?: string;
  /** The root qdisc before attach, when it was none at all ("noop": the link had never been up). */
  qdisc?: 'noop';
}

export type PlumbingStep =
  | { step: 'create-link'; name: string; kind: string }
  | ({ step: 'add-qdisc'; handle: number; parent: number; kind: string } & PodLinkRecord)
  | ({ step: 'add-filter'; parent: number; priority: number; protocol: number; kind: string } & PodLinkRecord)
  | ({
      step: 'change-link';
      before: RecordedLinkAttributes;
      /** What vcnet set: detach puts `before` back only where the link still has these values. */
      set?: RecordedLinkAttributes;
    } & PodLinkRecord)
  | ({ step: 'remove-addresses'; addresses: AddressRecord[] } & PodLinkRecord)
  | ({ step: 'remove-routes'; routes: RouteRecord[] } & PodLinkRecord)
  | ({ step: 'remove-neighbours'; neighbours: NeighbourRecord[] } & PodLinkRecord);

/** Undoes recorded steps in reverse order, in one batch; what the kernel refuses is in `left`. */
export function undoPlumbing(
  handle: NetlinkHandle,
  steps: readonly PlumbingStep[],
  knownLinks?: readonly Link[],
): Promise<UndoReport> {
  return undoRecords(handle, steps, knownLinks);
}
