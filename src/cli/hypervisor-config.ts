/** The device configuration each hypervisor needs for the attached endpoints, as `attach` prints it. */
import { InvalidInputError } from '../errors.js';
import { cloudHypervisorNetArgument, cloudHypervisorRateLimiterConfig } from '../hypervisor/cloud-hypervisor.js';
import type { NetworkDevice } from '../hypervisor/device.js';
import { firecrackerNetworkInterfaceRequest } from '../hypervisor/firecracker.js';
import { qemuNetworkArguments, qemuVfioArguments } from '../hypervisor/qemu.js';
import type { VmmRateLimiter } from '../network/config.js';
import type { Endpoint } from '../network/endpoint/endpoint.js';
import { PhysicalEndpoint, refusePhysicalEndpoints } from '../network/endpoint/physical-endpoint.js';

export const HYPERVISORS = ['qemu', 'clh', 'firecracker'] as const;
export type HypervisorKind = (typeof HYPERVISORS)[number];

/** Names users type for a kind: the binary's own name. */
const HYPERVISOR_ALIASES: Record<string, HypervisorKind> = { 'cloud-hypervisor': 'clh' };

export function parseHypervisor(text: string): HypervisorKind {
  const kind = HYPERVISOR_ALIASES[text] ?? text;
  if (!(HYPERVISORS as readonly string[]).includes(kind))
    throw new InvalidInputError('--hypervisor', text, `${HYPERVISORS.join(', ')} (cloud-hypervisor is clh)`);
  return kind as HypervisorKind;
}

/** A file the VM's launcher opens and passes to the hypervisor as this descriptor number. */
export interface OpenedFile {
  fd: number;
  path: string;
}

/** What the hypervisor needs for one endpoint, as `attach` prints it. */
export interface DeviceConfig {
  endpoint: string;
  config: unknown;
  /** The files to open read-write as these descriptors (a macvtap's /dev/tapN queues, /dev/vhost-net). */
  fds?: OpenedFile[];
}

/** A shell's way to open them: `3<>/dev/tap70041`, appended to the printed command line. */
export function shellRedirections(fds: readonly OpenedFile[]): string {
  return fds.map((file) => `${file.fd}<>${file.path}`).join(' ');
}

/** The first descriptor a launcher can pass beyond stdin, stdout and stderr. */
const FIRST_PASSED_FD = 3;

/**
 * Per endpoint: QEMU arguments, a Cloud Hypervisor --net value, or a Firecracker API request. The
 * VMM's own limiter (Firecracker, Cloud Hypervisor) goes into each NIC, as Kata puts it there. A tap
 * is opened by name; a macvtap cannot be (TUNSETIFF refuses it): its /dev/tapN queues are passed
 * as descriptors, numbered from 3 across all endpoints, as Kata hands QEMU the fds it opened.
 */
export function hypervisorDeviceConfig(
  kind: HypervisorKind,
  endpoints: readonly Endpoint[],
  vmmRateLimiter?: VmmRateLimiter,
  qemu: { vhostNet?: boolean } = {},
  cloudHypervisor: { iommu?: boolean } = {},
): DeviceConfig[] {
  const cloudHypervisorLimiter = vmmRateLimiter ? cloudHypervisorRateLimiterConfig(vmmRateLimiter) : undefined;
  const cloudHypervisorOptions = {
    ...(cloudHypervisorLimiter ? { rateLimiter: cloudHypervisorLimiter } : {}),
    ...(cloudHypervisor.iommu ? { iommu: true } : {}),
  };
  let nextFd = FIRST_PASSED_FD;
  const passed = (path: string, count: number): OpenedFile[] =>
    Array.from({ length: count }, () => ({ fd: nextFd++, path }));
  return endpoints.map((endpoint): DeviceConfig => {
    // nodes (issue 12): a physical NIC is a VFIO PCI function, not a tap.
    if (endpoint instanceof PhysicalEndpoint) {
      refusePhysicalEndpoints(kind, [endpoint.properties.link.name]);
      return { endpoint: endpoint.name, config: qemuVfioArguments(endpoint.vfioDevice()) };
    }
    // The CLI exits before the VM starts, so the hypervisor opens taps by name, not by fd.
    const { fds: _fds, vhostFds: _vhost, ...named } = endpoint.networkDevice();
    const device: NetworkDevice = named;
    const macvtapNode = endpoint.plumbing?.tapDevicePath;
    let fds: OpenedFile[] | undefined;
    if (macvtapNode !== undefined) {
      if (kind === 'firecracker') {
        throw new InvalidInputError(
          '--hypervisor',
          kind,
          'qemu or clh for a macvtap endpoint (Firecracker opens its tap by name, which a macvtap cannot be)',
          'use --model tcfilter with Firecracker',
        );
      }
      const queues = passed(macvtapNode, device.queues);
      const vhost = kind === 'qemu' && qemu.vhostNet ? passed('/dev/vhost-net', device.queues) : [];
      device.fds = queues.map((file) => file.fd);
      if (vhost.length > 0) device.vhostFds = vhost.map((file) => file.fd);
      fds = [...queues, ...vhost];
    }
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
          ? ['--net', cloudHypervisorNetArgument(device, cloudHypervisorOptions)]
          : firecrackerNetworkInterfaceRequest(device);
    return { endpoint: endpoint.name, config, ...(fds ? { fds } : {}) };
  });
}
