/**
 * none: only a tap, no connection to any pod interface. With disable_new_netns the hypervisor runs in
 * the host namespace and the operator wires the tap up as they like; the guest NIC takes the pod
 * interface's MAC when there is one, else the tap's. The steps are planned in plan/plan-attach.ts.
 */
import { type AttachedPlumbing, attachByPlan, type PlumbingContext } from './plumbing-context.js';

export async function attachTapOnly(
  context: PlumbingContext,
  tapName: string,
  options: { mtu: number; guestHardwareAddress?: string },
): Promise<AttachedPlumbing> {
  return attachByPlan(context, {
    model: 'none',
    tapName,
    mtu: options.mtu,
    ...(options.guestHardwareAddress ? { guestHardwareAddress: options.guestHardwareAddress } : {}),
  });
}
