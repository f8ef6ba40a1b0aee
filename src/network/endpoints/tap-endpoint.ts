/**
 * A tap requested by name (Kata's TapEndpoint, `add-iface` with type "tap"): vcnet creates the tap
 * itself, with the interface's name, and the guest gets the requested addresses on it.
 */
import type { AttachedPlumbing, PlumbingContext } from '../models/plumbing-context.js';
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
      tapName: link.name,
      mtu: link.mtu || 1500,
      ...(link.address ? { guestHardwareAddress: link.address } : {}),
    };
  }
}
