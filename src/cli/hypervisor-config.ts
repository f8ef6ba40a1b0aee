/** The device configuration each hypervisor needs for the attached endpoints, as `attach` prints it. */
import { InvalidInputError } from '../errors.js';
import { cloudHypervisorNetArgument } from '../hypervisor/cloud-hypervisor.js';
import { firecrackerNetworkInterfaceRequest } from '../hypervisor/firecracker.js';
import { qemuNetworkArguments, qemuVfioArguments } from '../hypervisor/qemu.js';
import type { Endpoint } from '../network/endpoints/endpoint.js';
import { PhysicalEndpoint, refusePhysicalEndpoints } from '../network/endpoints/physical-endpoint.js';

export const HYPERVISORS = ['qemu', 'clh', 'firecracker'] as const;
export type HypervisorKind = (typeof HYPERVISORS)[number];

export function parseHypervisor(text: string): HypervisorKind {
  if (!(HYPERVISORS as readonly string[]).includes(text))
    throw new InvalidInputError('--hypervisor', text, HYPERVISORS.join(', '));
  return text as HypervisorKind;
}

/** Per endpoint: QEMU arguments, a Cloud Hypervisor --net value, or a Firecracker API request. */
export function hypervisorDeviceConfig(
  kind: HypervisorKind,
  endpoints: readonly Endpoint[],
): Array<{ endpoint: string; config: unknown }> {
  return endpoints.map((endpoint) => {
    // nodes (issue 12): a physical NIC is a VFIO PCI function, not a tap.
    if (endpoint instanceof PhysicalEndpoint) {
      refusePhysicalEndpoints(kind, [endpoint.properties.link.name]);
      return { endpoint: endpoint.name, config: qemuVfioArguments(endpoint.vfioDevice()) };
    }
    // The CLI exits before the VM starts, so the hypervisor opens taps by name, not by fd.
    const { fds: _fds, vhostFds: _vhost, ...device } = endpoint.networkDevice();
    const config =
      kind === 'qemu'
        ? qemuNetworkArguments(device)
        : kind === 'clh'
          ? ['--net', cloudHypervisorNetArgument(device)]
          : firecrackerNetworkInterfaceRequest(device);
    return { endpoint: endpoint.name, config };
  });
}
