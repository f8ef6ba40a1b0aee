/**
 * macvtap: a macvtap link on top of the pod interface; the VM reads and writes its /dev/tapN queues.
 * As Kata: the macvtap (and the guest NIC) take the pod interface's MAC, the pod interface moves to a
 * random private MAC, and its addresses are removed so two stacks do not answer ARP for them.
 * Unlike Kata, detach also puts back the routes that left with the addresses, and the up/down state.
 * The steps are planned in plan/plan-attach.ts.
 */
import type { Link } from '../../netlink/codec/link.js';
import { openVerifiedMacvtapQueues, verifiedMacvtapNode } from './macvtap-index.js';
import { type AttachedPlumbing, attachByPlan, type PlumbingContext } from './plumbing-context.js';

export {
  DEFAULT_MACVTAP_QUEUE_LENGTH,
  macvtapQueueLength,
} from '../plan/plan-attach.js';
// Device nodes checked by major:minor to be the macvtap's own (issue 13): never another pod's /dev/tapN.
export { macvtapDevicePath } from './macvtap-index.js';

/** Opens a macvtap's character device once per queue (its links must be up first), checked to be its own. */
export function openMacvtapQueues(index: number, queues: number): number[] {
  return openVerifiedMacvtapQueues(verifiedMacvtapNode(index), queues);
}

export function attachMacvtap(
  context: PlumbingContext,
  source: Link,
  tapName: string,
  spareHardwareAddress: string,
): Promise<AttachedPlumbing> {
  return attachByPlan(context, { model: 'macvtap', source, tapName, spareHardwareAddress });
}
