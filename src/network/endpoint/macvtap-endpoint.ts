/**
 * A macvtap that already exists in the pod namespace: the VM uses it directly through /dev/tapN.
 * Nothing else is created or changed, except the rate limits (an htb on its egress for tx, an ifb fed
 * from its ingress for rx: a macvtap's directions are a tap's reversed, see plan-attach.ts), planned
 * and applied like any attach so detach removes exactly those;
 * the guest NIC takes the macvtap's MAC. Its node is checked to be its own first (Kata does not:
 * K§9.23): another namespace's macvtap at the same index owns it otherwise.
 */

import { sharedBlockRefused } from '../../netlink/errors.js';
import {
  type AttachedPlumbing,
  attachByPlan,
  existingDevicePlumbing,
  openVhostFds,
  type PlumbingContext,
  planEndpoint,
} from '../model/plumbing-context.js';
import { openVerifiedMacvtapQueues, verifiedMacvtapNode } from '../plan/macvtap-index.js';
import type { AttachRequest } from '../plan/plan-attach.js';
import type { Plan } from '../plan/types.js';
import { Endpoint } from './endpoint.js';

export class MacvtapEndpoint extends Endpoint {
  readonly type = 'macvtap' as const;

  /** The rate limits put on the macvtap, or undefined when the VM uses it as it is. */
  private rateLimitRequest(context: PlumbingContext): AttachRequest | undefined {
    if (!context.rateLimit?.rxBitsPerSecond && !context.rateLimit?.txBitsPerSecond) return undefined;
    const link = this.properties.link;
    return { model: 'existing', source: link, tapName: link.name };
  }

  /** The dry run plans what build applies: the rate-limit plumbing when there is a limit. */
  override async plan(context: PlumbingContext): Promise<Plan | undefined> {
    const request = this.rateLimitRequest(context);
    return request ? planEndpoint(context, request) : undefined;
  }

  /**
   * Refused because the macvtap's ingress keeps its filters in a shared block: the filter was the
   * redirect of the rx rate limit to its ifb, and the generic hint (use the macvtap model, which adds
   * no filter to the pod link) is no remedy, as the pod link is a macvtap the VM uses already.
   */
  protected override attachFailureHint(error: Error): string | undefined {
    if (!sharedBlockRefused(error)) return undefined;
    const link = this.properties.link.name;
    return `${link} is a macvtap the VM uses as it is, and another tool's ingress qdisc on it keeps its filters in a shared block (ingress_block in \`tc qdisc show dev ${link}\`), which takes no filter by device: the limit on what the VM receives (rx_rate_limiter_max_rate) goes through an ifb that a redirect filter on ${link}'s ingress feeds. Attach it without rx_rate_limiter_max_rate (tx_rate_limiter_max_rate needs no filter), or have that tool give ${link} an ingress qdisc of its own`;
  }

  protected async build(context: PlumbingContext): Promise<AttachedPlumbing> {
    const link = this.properties.link;
    const intent = this.takePreparedIntent();
    const request = this.rateLimitRequest(context);
    if (request) return attachByPlan(context, request, intent);
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
