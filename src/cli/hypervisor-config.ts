/** The device configuration each hypervisor needs for the attached endpoints, as `attach` prints it. */
import { InvalidInputError } from '../errors.js';
import { cloudHypervisorNetArgument, cloudHypervisorRateLimiterConfig } from '../hypervisor/cloud-hypervisor.js';
import { firecrackerNetworkInterfaceRequest } from '../hypervisor/firecracker.js';
import { qemuNetworkArguments, qemuVfioArguments } from '../hypervisor/qemu.js';
import type { VmmRateLimiter } from '../network/config.js';
import type { Endpoint } from '../network/endpoint/endpoint.js';
import { PhysicalEndpoint, refusePhysicalEndpoints } from '../network/endpoint/physical-endpoint.js';

export const HYPERVISORS = ['qemu', 'clh', 'firecracker'] as const;
export type HypervisorKind = (typeof HYPERVISORS)[number];

export function parseHypervisor(text: string): HypervisorKind {
  if (!(HYPERVISORS as readonly string[]).includes(text))
    throw new InvalidInputError('--hypervisor', text, HYPERVISORS.join(', '));
  return text as HypervisorKind;
}

/**
 * Per endpoint: QEMU arguments, a Cloud Hypervisor --net value, or a Firecracker API request. The
 * VMM's own limiter (Firecracker, Cloud Hypervisor) goes into each NIC, as Kata puts it there.
 */
export function hypervisorDeviceConfig(
  kind: HypervisorKind,
  endpoints: readonly Endpoint[],
  vmmRateLimiter?: VmmRateLimiter,
  qemu: { vhostNet?: boolean } = {},
): Array<{ endpoint: string; config: unknown }> {
  const cloudHypervisorLimiter = vmmRateLimiter ? cloudHypervisorRateLimiterConfig(vmmRateLimiter) : undefined;
  return endpoints.map((endpoint) => {
    // nodes (issue 12): a physical NIC is a VFIO PCI function, not a tap.
    if (endpoint instanceof PhysicalEndpoint) {
      refusePhysicalEndpoints(kind, [endpoint.properties.link.name]);
      return { endpoint: endpoint.name, config: qemuVfioArguments(endpoint.vfioDevice()) };
    }
    // The CLI exits before the VM starts, so the hypervisor opens taps by name, not by fd.
    const { fds: _fds, vhostFds: _vhost, ...device } = endpoint.networkDevice();
    if (kind === 'firecracker' && (vmmRateLimiter?.rxBitsPerSecond || vmmRateLimiter?.txBitsPerSecond)) {
      device.rateLimit = {
        ...(vmmRateLimiter.rxBitsPerSecond ? { rxBitsPerSecond: vmmRateLimiter.rxBitsPerSecond } : {}),
        ...(vmmRateLimiter.txBitsPerSecond ? { txBitsPerSecond: vmmRateLimiter.txBitsPerSecond } : {}),
      };
    }
    const config =
      kind === 'qemu'
        ? qemuNetworkArguments(device, qemu.vhostNet ? { vhostNet: true } : {})
        : kind === 'clh'
          ? [
              '--net',
              cloudHypervisorNetArgument(device, cloudHypervisorLimiter ? { rateLimiter: cloudHypervisorLimiter } : {}),
            ]
          : firecrackerNetworkInterfaceRequest(device);
    return { endpoint: endpoint.name, config };
  });
}
