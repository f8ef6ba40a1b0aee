/**
 * A tap requested by add-iface with type "tap" (Kata's TapEndpoint): vcnet creates the host tap
 * itself as `tap<N>_kata`, as Kata does (the operator plugs that into a bridge or OVS); the
 * interface's name is the guest NIC's, and the guest gets the requested addresses on it.
 */
import { tapName } from '../interface-pair.js';
import { attachTapOnly } from '../models/none.js';
import type { AttachedPlumbing, PlumbingContext } from '../models/plumbing-context.js';
import { Endpoint } from './endpoint.js';

export class TapEndpoint extends Endpoint {
  readonly type = 'tap' as const;

  protected build(context: PlumbingContext): Promise<AttachedPlumbing> {
    const link = this.properties.link;
    return attachTapOnly(context, tapName(this.index), {
      mtu: link.mtu || 1500,
      ...(link.address ? { guestHardwareAddress: link.address } : {}),
    });
  }
}
