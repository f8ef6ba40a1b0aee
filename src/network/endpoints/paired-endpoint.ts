/**
 * Endpoints whose pod interface is joined to a VM tap by an internetworking model (veth, macvlan,
 * ipvlan, tuntap): the model decides the plumbing.
 */
import { attachMacvtap } from '../models/macvtap.js';
import { attachTapOnly } from '../models/none.js';
import type { AttachedPlumbing, PlumbingContext } from '../models/plumbing-context.js';
import { attachTcFilter } from '../models/tcfilter.js';
import { Endpoint } from './endpoint.js';

export abstract class PairedEndpoint extends Endpoint {
  protected build(context: PlumbingContext): Promise<AttachedPlumbing> {
    const pair = this.pair;
    if (!pair) throw new Error(`${this.type} endpoint ${this.properties.link.name} has no interface pair`);
    const link = this.properties.link;
    switch (pair.model) {
      case 'tcfilter':
        return attachTcFilter(context, link, pair.tap.name);
      case 'macvtap':
        return attachMacvtap(context, link, pair.tap.name, pair.spareHardwareAddress);
      case 'none':
        return attachTapOnly(context, pair.tap.name, {
          mtu: link.mtu,
          ...(link.address ? { guestHardwareAddress: link.address } : {}),
        });
    }
  }
}
