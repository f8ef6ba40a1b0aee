/**
 * A macvtap that already exists in the pod namespace: the VM uses it directly through /dev/tapN.
 * Nothing else is created or changed, except the rate limits (an htb on its egress for tx, an ifb fed
 * from its ingress for rx: a macvtap's directions are a tap's reversed, see plan-attach.ts), planned
 * and applied like any attach so detach removes exactly those;
 * the guest NIC takes the macvtap's MAC. Its node is checked to be its own first (Kata does not:
 * K§9.23): another namespace's macvtap at the same index owns it otherwise.
 */
import { openVerifiedMacvtapQueues, verifiedMacvtapNode } from '../model/macvtap-index.js';
import {
  type AttachedPlumbing,
  attachByPlan,
  existingDevicePlumbing,
  openVhostFds,
  type PlumbingContext,
} from '../model/plumbing-context.js';
import { Endpoint } from './endpoint.js';

export class MacvtapEndpoint extends Endpoint {
  readonly type = 'macvtap' as const;

  protected async build(context: PlumbingContext): Promise<AttachedPlumbing> {
    const link = this.properties.link;
    if (context.rateLimit?.rxBitsPerSecond || context.rateLimit?.txBitsPerSecond) {
      return attachByPlan(context, { model: 'existing', source: link, tapName: link.name });
    }
    const node = verifiedMacvtapNode(link.index);
    return existingDevicePlumbing(context, {
      tapName: link.name,
      tapIndex: link.index,
      tapDevicePath: node.path,
      tapFds: context.keepFds ? openVerifiedMacvtapQueues(node, context.queues) : [],
      vhostFds: openVhostFds(context),
      guestHardwareAddress: link.address ?? '',
    });
  }
}
