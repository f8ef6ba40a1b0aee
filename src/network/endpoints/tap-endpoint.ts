/**
 * A tap requested by name (Kata's TapEndpoint, `add-iface` with type "tap"): vcnet creates the tap
 * itself, with the interface's name, and the guest gets the requested addresses on it.
 */
import { attachTapOnly } from '../models/none.js';
import type { AttachedPlumbing, PlumbingContext } from '../models/plumbing-context.js';
import { Endpoint } from './endpoint.js';

export class TapEndpoint extends Endpoint {
  readonly type = 'tap' as const;

  protected build(context: PlumbingContext): Promise<AttachedPlumbing> {
    const link = this.properties.link;
    return attachTapOnly(context, link.name, {
      mtu: link.mtu || 1500,
      ...(link.address ? { guestHardwareAddress: link.address } : {}),
    });
  }
}
