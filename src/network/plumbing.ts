/**
 * The record of what an attach changed in the pod namespace, step by step, so that detach can undo
 * exactly that and nothing else — from persisted state alone, after a crash too. Records are derived
 * from the plan's changes (plan/inverse.ts) and undone by the one executor (plan/undo.ts).
 *
 * Kata's detach deletes every u32 filter and ingress qdisc on the interface and leaves it down; vcnet
 * removes only the objects it created and puts back what it changed (MAC, MTU, up/down, addresses,
 * routes), in reverse order.
 */
import type { Link } from '../netlink/codec/link.js';
import type { NetlinkHandle } from '../netlink/handle.js';
import type { PlumbingStep } from './plan/types.js';
import { type UndoReport, undoRecords } from './plan/undo.js';

/** Undoes recorded steps in reverse order, in one batch; what the kernel refuses is in `left`. */
export function undoPlumbing(
  handle: NetlinkHandle,
  steps: readonly PlumbingStep[],
  knownLinks?: readonly Link[],
): Promise<UndoReport> {
  return undoRecords(handle, steps, knownLinks);
}
