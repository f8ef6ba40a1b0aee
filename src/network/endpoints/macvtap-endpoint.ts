/**
 * A macvtap that already exists in the pod namespace: the VM uses it directly through /dev/tapN.
 * Nothing else is created or changed, except the rate limits Kata puts on it (an htb for rx, an ifb
 * fed from its ingress for tx), recorded so detach removes exactly those; the guest NIC takes the
 * macvtap's MAC.
 */
import { macvtapDevicePath, openMacvtapQueues } from '../models/macvtap.js';
import {
  type AttachedPlumbing,
  buildInTransaction,
  existingDevicePlumbing,
  openVhostFds,
  type PlumbingContext,
} from '../models/plumbing-context.js';
import { addHtbLimit, addIfbLimit } from '../rate-limit.js';
import { Endpoint } from './endpoint.js';

export class MacvtapEndpoint extends Endpoint {
  readonly type = 'macvtap' as const;

  protected async build(context: PlumbingContext): Promise<AttachedPlumbing> {
    const link = this.properties.link;
    const rx = context.rateLimit?.rxBitsPerSecond;
    const tx = context.rateLimit?.txBitsPerSecond;
    if (rx || tx) {
      return buildInTransaction(context, async (transaction, holdFds) => {
        const macvtap = await context.handle.linkByIndex(link.index);
        if (rx) addHtbLimit(transaction, macvtap, rx);
        await transaction.commit();
        if (tx) {
          await addIfbLimit(transaction, macvtap, tx);
          await transaction.commit();
        }
        // Opened last: nothing to close if a limit was refused.
        if (context.keepFds) holdFds(openMacvtapQueues(link.index, context.queues));
        return {
          model: 'existing',
          tapName: link.name,
          tapIndex: link.index,
          tapDevicePath: macvtapDevicePath(link.index),
          guestHardwareAddress: link.address ?? '',
        };
      });
    }
    return existingDevicePlumbing(context, {
      tapName: link.name,
      tapIndex: link.index,
      tapDevicePath: macvtapDevicePath(link.index),
      tapFds: context.keepFds ? openMacvtapQueues(link.index, context.queues) : [],
      vhostFds: openVhostFds(context),
      guestHardwareAddress: link.address ?? '',
    });
  }
}
