/**
 * Endpoints whose pod interface is joined to a VM tap by an internetworking model (veth, macvlan,
 * ipvlan, tuntap): the model decides the plan.
 */
import type { AttachedPlumbing, PlumbingContext } from '../model/plumbing-context.js';
import type { AttachRequest } from '../plan/plan-attach.js';
import { Endpoint } from './endpoint.js';

export abstract class PairedEndpoint extends Endpoint {
  protected build(context: PlumbingContext): Promise<AttachedPlumbing> {
    return this.buildByPlan(context);
  }

  override attachRequest(): AttachRequest {
    const pair = this.pair;
    if (!pair) throw new Error(`${this.type} endpoint ${this.properties.link.name} has no interface pair`);
    const source = this.properties.link;
    switch (pair.model) {
      case 'tcfilter':
        return { model: 'tcfilter', source, tapName: pair.tap.name };
      case 'macvtap':
        return { model: 'macvtap', source, tapName: pair.tap.name, spareHardwareAddress: pair.spareHardwareAddress };
      case 'none':
        return { model: 'none', source, tapName: pair.tap.name };
    }
  }
}
