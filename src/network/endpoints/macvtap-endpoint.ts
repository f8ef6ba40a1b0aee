/**
 * A macvtap that already exists in the pod namespace: the VM uses it directly through /dev/tapN.
 * Nothing is created or changed; the guest NIC takes the macvtap's MAC.
 */
import { macvtapDevicePath, openMacvtapQueues } from '../models/macvtap.js';
import {
  type AttachedPlumbing,
  existingDevicePlumbing,
  openVhostFds,
  type PlumbingContext,
} from '../models/plumbing-context.js';
import { Endpoint } from './endpoint.js';

export class MacvtapEndpoint extends Endpoint {
  readonly type = 'macvtap' as const;

  protected async build(context: PlumbingContext): Promise<AttachedPlumbing> {
    const link = this.properties.link;
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
