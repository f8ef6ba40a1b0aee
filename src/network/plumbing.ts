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

export type PlumbingStep =
  | { step: 'create-link'; name: string; kind: string }
  | { step: 'add-qdisc'; link: string; handle: number; parent: number; kind: string }
  | { step: 'add-filter'; link: string; parent: number; priority: number; protocol: number; kind: string }
  | { step: 'change-link'; link: string; before: { address?: string; mtu?: number; up?: boolean; name?: string } }
  | { step: 'remove-addresses'; link: string; addresses: AddressRecord[] }
  | { step: 'remove-routes'; link: string; routes: RouteRecord[] }
  | { step: 'remove-neighbours'; link: string; neighbours: NeighbourRecord[] };

/** Undoes recorded steps in reverse order, in one batch; what the kernel refuses is in `left`. */
export function undoPlumbing(
  handle: NetlinkHandle,
  steps: readonly PlumbingStep[],
  knownLinks?: readonly Link[],
): Promise<UndoReport> {
  return undoRecords(handle, steps, knownLinks);
}
