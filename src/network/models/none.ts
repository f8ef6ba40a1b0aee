/**
 * none: only a tap, no connection to any pod interface. With disable_new_netns the hypervisor runs in
 * the host namespace and the operator wires the tap up as they like; the guest NIC takes the pod
 * interface's MAC when there is one, else the tap's.
 */
import { addHtbLimit, addIfbLimit } from '../rate-limit.js';
import {
  type AttachedPlumbing,
  closeFds,
  configureCreatedLink,
  createTap,
  openVhostFds,
  type PlumbingContext,
  PlumbingTransaction,
} from './plumbing-context.js';

export async function attachTapOnly(
  context: PlumbingContext,
  tapName: string,
  options: { mtu: number; guestHardwareAddress?: string },
): Promise<AttachedPlumbing> {
  const transaction = new PlumbingTransaction(context);
  let tapFds: number[] = [];
  let vhostFds: number[] = [];
  try {
    const created = createTap(transaction, tapName);
    tapFds = created.fds;
    const tap = await context.handle.linkByIndex(created.link.index);
    await context.hooks?.afterTapCreated?.(tapName);
    configureCreatedLink(transaction, tap, options.mtu);
    if (context.rateLimit?.rxBitsPerSecond) addHtbLimit(transaction, tap, context.rateLimit.rxBitsPerSecond);
    await transaction.commit();
    if (context.rateLimit?.txBitsPerSecond) {
      await addIfbLimit(transaction, tap, context.rateLimit.txBitsPerSecond);
      await transaction.commit();
    }
    vhostFds = openVhostFds(context);
    return {
      model: 'none',
      steps: transaction.steps,
      tapName,
      tapIndex: tap.index,
      tapFds,
      vhostFds,
      guestHardwareAddress: options.guestHardwareAddress ?? tap.address ?? '',
      queues: context.queues,
    };
  } catch (error) {
    closeFds(tapFds);
    closeFds(vhostFds);
    await transaction.rollback();
    throw error;
  }
}
