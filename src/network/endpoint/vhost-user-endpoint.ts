/**
 * A vhost-user NIC: a userspace switch (OVS-DPDK, VPP) offers a socket for the interface, and the
 * hypervisor connects the guest NIC to that socket. No tap, no host plumbing.
 */
import { type AttachedPlumbing, existingDevicePlumbing, type PlumbingContext } from '../model/plumbing-context.js';
import type { NetworkInfo } from '../network-info.js';
import { Endpoint, type EndpointState, type VmNetworkDevice } from './endpoint.js';
import { refuseRateLimit } from './rate-limit-support.js';

export class VhostUserEndpoint extends Endpoint {
  readonly type = 'vhost-user' as const;

  constructor(
    index: number,
    properties: NetworkInfo,
    readonly socketPath: string,
  ) {
    super(index, properties, undefined);
  }

  override checkAttach(context: PlumbingContext): void {
    refuseRateLimit(context, 'vhost-user', this.properties.link.name);
  }

  protected async build(context: PlumbingContext): Promise<AttachedPlumbing> {
    return existingDevicePlumbing(context, { guestHardwareAddress: this.properties.link.address ?? '' });
  }

  protected override describeDevice(): VmNetworkDevice {
    const { tapName: _unused, ...device } = super.describeDevice();
    return { ...device, vhostUserSocket: this.socketPath };
  }

  override save(): EndpointState {
    return { ...super.save(), details: { socketPath: this.socketPath } };
  }
}
