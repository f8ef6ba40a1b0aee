/**
 * macvtap: a macvtap link on top of the pod interface; the VM reads and writes its /dev/tapN queues.
 * As Kata: the macvtap (and the guest NIC) take the pod interface's MAC, the pod interface moves to a
 * random private MAC, and its addresses are removed so two stacks do not answer ARP for them.
 * Unlike Kata, detach also puts back the routes that left with the addresses, and the up/down state.
 * The steps are planned in plan/plan-attach.ts.
 */
import type { Link } from '../../netlink/codec/link.js';
import { type AttachedPlumbing, attachByPlan, type PlumbingContext } from './plumbing-context.js';

export function attachMacvtap(
  context: PlumbingContext,
  source: Link,
  tapName: string,
  spareHardwareAddress: string,
): Promise<AttachedPlumbing> {
  return attachByPlan(context, { model: 'macvtap', source, tapName, spareHardwareAddress });
}
