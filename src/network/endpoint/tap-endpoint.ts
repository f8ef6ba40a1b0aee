/**
 * A tap requested by add-iface with type "tap" (Kata's TapEndpoint): vcnet creates the host tap
 * itself as `tap<N>_kata`, as Kata does (the operator plugs that into a bridge or OVS); the
 * interface's name is the guest NIC's, and the guest gets the requested addresses on it.
 */
import { tapName } from '../interface-pair.js';
import type { AttachedPlumbing, PlumbingContext } from '../model/plumbing-context.js';
import type { AttachRequest } from '../plan/plan-attach.js';
import { Endpoint } from './endpoint.js';

export class TapEndpoint extends Endpoint {
  readonly type = 'tap' as const;

  protected build(context: PlumbingContext): Promise<AttachedPlumbing> {
    return this.buildByPlan(context);
  }

  override attachRequest(): AttachRequest {
    const link = this.properties.link;
    return {
      model: 'none',
      tapName: tapName(this.index),
      mtu: link.mtu || 1500,
      ...(link.address ? { guestHardwareAddress: link.address } : {}),
    };
  }
}
