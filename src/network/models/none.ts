/**
 * none: only a tap, no connection to any pod interface. With disable_new_netns the hypervisor runs in
 * the host namespace and the operator wires the tap up as they like; the guest NIC takes the pod
 * interface's MAC when there is one, else the tap's.
 */
import { addHtbLimit, addIfbLimit } from '../rate-limit.js';
import {
  type AttachedPlumbing,
  buildInTransaction,
  configureCreatedLink,
  createTap,
  type PlumbingContext,
} from './plumbing-context.js';

export async function attachTapOnly(
  context: PlumbingContext,
  tapName: string,
  options: { mtu: number; guestHardwareAddress?: string },
): Promise<AttachedPlumbing> {
  return buildInTransaction(context, async (transaction, holdFds) => {
    const created = createTap(transaction, tapName);
    holdFds(created.fds);
    const tap = await context.handle.linkByIndex(created.link.index);
    await context.hooks?.afterTapCreated?.(tapName);
    configureCreatedLink(transaction, tap, options.mtu);
    if (context.rateLimit?.rxBitsPerSecond) addHtbLimit(transaction, tap, context.rateLimit.rxBitsPerSecond);
    await transaction.commit();
    if (context.rateLimit?.txBitsPerSecond) {
      await addIfbLimit(transaction, tap, context.rateLimit.txBitsPerSecond);
      await transaction.commit();
    }
    return {
      model: 'none',
      tapName,
      tapIndex: tap.index,
      guestHardwareAddress: options.guestHardwareAddress ?? tap.address ?? '',
    };
  });
}
