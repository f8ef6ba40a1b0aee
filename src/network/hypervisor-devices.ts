/**
 * The device configuration each hypervisor needs for attached endpoints, for a launcher that opens
 * the devices itself and starts the VMM (`vcnet attach` prints it; a library caller takes the same).
 */
import { booleanOption, optionsArgument, stringOption } from '../arguments.js';
import { InvalidInputError } from '../errors.js';
import {
  type CloudHypervisorNetOptions,
  cloudHypervisorNetArgument,
  cloudHypervisorRateLimiterConfig,
} from '../hypervisor/cloud-hypervisor.js';
import type { NetworkDevice } from '../hypervisor/device.js';
import { firecrackerInterfaceId, firecrackerNetworkInterfaceRequest } from '../hypervisor/firecracker.js';
import { qemuNetworkArguments, qemuVfioArguments } from '../hypervisor/qemu.js';
import { MAX_LINK_NAME_BYTES } from '../netlink/link-name.js';
import { commandIn, shellWord } from '../shell-word.js';
import { ConfigurationConflictError, type VmmRateLimiter } from './config.js';
import type { Endpoint } from './endpoint/endpoint.js';
import { PhysicalEndpoint, refusePhysicalEndpoints } from './endpoint/physical-endpoint.js';
import type { Plan } from './plan/types.js';

/** The hypervisors hypervisorDeviceConfig describes devices for. */
export const HYPERVISORS = ['qemu', 'clh', 'firecracker'] as const;
/** A hypervisor vcnet describes NICs for: `qemu`, `clh` (Cloud Hypervisor) or `firecracker`. */
export type HypervisorKind = (typeof HYPERVISORS)[number];

/** A file the VM's launcher opens read-write and passes to the hypervisor as this descriptor number. */
export interface OpenedFile {
  fd: number;
  path: string;
}

/** What the hypervisor needs for one endpoint. */
export interface DeviceConfig {
  endpoint: string;
  /** QEMU arguments, a Cloud Hypervisor `--net` argument pair, or a Firecracker network-interfaces body. */
  config: unknown;
  /** The files to open read-write as these descriptors (a macvtap's /dev/tapN queues, /dev/vhost-net). */
  fds?: OpenedFile[];
}

/**
 * Options of `hypervisorDeviceConfig` and `plannedDeviceConfig`: the VMM's rate limiter, vhost-net for
 * macvtaps and Cloud Hypervisor's IOMMU. Pass the config's `vmmRateLimiter` and `nicIommu` here.
 */
export interface HypervisorDeviceOptions {
  /** The VMM's own limiter (Firecracker, Cloud Hypervisor), put into each NIC as Kata does. */
  vmmRateLimiter?: VmmRateLimiter;
  /** QEMU: /dev/vhost-net per queue for a macvtap (passed as descriptors too). */
  vhostNet?: boolean;
  /** Cloud Hypervisor: each NIC behind the VM's IOMMU. */
  iommu?: boolean;
  /** Field name errors use for the hypervisor kind (the CLI's is --hypervisor). */
  hypervisorField?: string;
  /**
   * The pod's network namespace (the config's `namespacePath`): the `ip` command a refusal quotes acts
   * there (`ip -n NAME`, `nsenter --net=PATH ip`) wherever it is pasted. Without it the command is
   * named as one to run in the pod's namespace.
   */
  namespacePath?: string;
}

/** The first descriptor a launcher can pass beyond stdin, stdout and stderr. */
const FIRST_PASSED_FD = 3;

/**
 * Per endpoint: QEMU arguments, a Cloud Hypervisor --net value, or a Firecracker API request. A tap
 * is opened by name; a macvtap cannot be (TUNSETIFF refuses it): its /dev/tapN queues are passed as
 * descriptors, numbered from 3 across all endpoints, as Kata hands QEMU the fds it opened. The
 * launcher opens each `fds` entry's path as that descriptor (a shell: `3<>/dev/tap70041`).
 */
export function hypervisorDeviceConfig(
  kind: HypervisorKind,
  endpoints: readonly Endpoint[],
  options: HypervisorDeviceOptions = {},
): DeviceConfig[] {
  const field = checkDeviceOptions(kind, options);
  if (
    !Array.isArray(endpoints) ||
    !endpoints.every((endpoint) => typeof (endpoint as Partial<Endpoint> | null)?.networkDevice === 'function')
  ) {
    throw new InvalidInputError(
      'endpoints',
      endpoints,
      'an array of the endpoints attach made (attachSandbox(...).endpoints, network.endpoints())',
    );
  }
  const devices = new DeviceConfigBuilder(kind, options, field);
  return endpoints.map((endpoint): DeviceConfig => {
    // The launcher opens what it passes: fds this process may hold are not the VMM's.
    if (endpoint instanceof PhysicalEndpoint) return devices.add(endpoint, undefined, undefined);
    return devices.add(endpoint, endpoint.networkDevice({ openedByLauncher: true }), endpoint.plumbing?.tapDevicePath);
  });
}

/**
 * What hypervisorDeviceConfig would give for endpoints once attached, from their plans (attach's dry
 * run): the same checks, so a plan is never printed for a configuration the attach would refuse.
 * A tap's name is the plan's; a MAC the new tap chooses itself stands in as a placeholder.
 */
export function plannedDeviceConfig(
  kind: HypervisorKind,
  planned: ReadonlyArray<{ endpoint: Endpoint; plan: Plan | undefined }>,
  queues: number,
  options: HypervisorDeviceOptions = {},
): DeviceConfig[] {
  const field = checkDeviceOptions(kind, options);
  const devices = new DeviceConfigBuilder(kind, options, field);
  return planned.map(({ endpoint, plan }) => {
    if (endpoint instanceof PhysicalEndpoint) return devices.add(endpoint, undefined, undefined);
    const device: NetworkDevice = { ...endpoint.networkDevice({ openedByLauncher: true }), queues };
    if (!device.guestMac) device.guestMac = plan?.guestHardwareAddress ?? PLACEHOLDER_MAC;
    const macvtap = endpoint.type === 'macvtap' || plan?.device.role === 'macvtap';
    const tapName = plan?.device.name ?? (endpoint.type === 'macvtap' ? endpoint.properties.link.name : undefined);
    if (tapName !== undefined) device.tapName = tapName;
    return devices.add(endpoint, device, macvtap ? `/dev/tap${endpoint.properties.link.index}` : undefined);
  });
}

/** A locally administered unicast MAC, for a planned tap whose own MAC is known only once it is made. */
const PLACEHOLDER_MAC = '02:00:00:00:00:01';

function checkDeviceOptions(kind: HypervisorKind, options: HypervisorDeviceOptions): string {
  options = optionsArgument(options, 'options', [
    'vmmRateLimiter',
    'vhostNet',
    'iommu',
    'hypervisorField',
    'namespacePath',
  ]);
  stringOption(options.namespacePath, 'options.namespacePath', "the pod's network namespace path");
  booleanOption(options.vhostNet, 'options.vhostNet');
  booleanOption(options.iommu, 'options.iommu');
  const field =
    stringOption(options.hypervisorField, 'options.hypervisorField', 'the name errors give the hypervisor kind') ??
    'hypervisor';
  if (!(HYPERVISORS as readonly string[]).includes(kind))
    throw new InvalidInputError(field, kind, HYPERVISORS.join(', '));
  return field;
}

/** One endpoint's configuration after another, descriptors numbered from 3 across all of them. */
class DeviceConfigBuilder {
  private nextFd = FIRST_PASSED_FD;
  private readonly cloudHypervisorOptions: CloudHypervisorNetOptions;

  constructor(
    private readonly kind: HypervisorKind,
    private readonly options: HypervisorDeviceOptions,
    private readonly field: string,
  ) {
    const limiter = options.vmmRateLimiter ? cloudHypervisorRateLimiterConfig(options.vmmRateLimiter) : undefined;
    this.cloudHypervisorOptions = {
      ...(limiter ? { rateLimiter: limiter } : {}),
      ...(options.iommu ? { iommu: true } : {}),
    };
  }

  /** The iface_ids given so far, each with the endpoint it was given to. */
  private readonly firecrackerIds = new Map<string, Endpoint>();

  /** Kata's iface_id, the endpoint's name (firecrackerInterfaceId); two endpoints never share one. */
  private firecrackerId(endpoint: Endpoint): string {
    const id = firecrackerInterfaceId(endpoint.name);
    const other = this.firecrackerIds.get(id);
    if (other !== undefined) {
      // The one whose name Firecracker would change is renamed (the other keeps its id), to a name
      // that is its own id: no link's name is changed by the fold again.
      const renamed = other.name === id ? endpoint : other;
      const link = renamed.properties.link.name;
      const rename = `${commandIn(this.options.namespacePath, 'ip')} link set ${shellWord(link)} name ${this.freeInterfaceId(id)}`;
      throw new ConfigurationConflictError(
        `${other.name} and ${endpoint.name} would both be Firecracker's iface_id ${id} (it takes letters, digits and '_' only, so other characters become '_')`,
        id,
        `rename one of the two pod links before attaching (Kata names the guest NIC after it too), e.g. \`${rename}\`${this.options.namespacePath === undefined ? " in the pod's namespace" : ''}; nothing was changed`,
      );
    }
    this.firecrackerIds.set(id, endpoint);
    return id;
  }

  /**
   * A link name (at most 15 bytes) that is an iface_id as it is and none given so far: `id` with the
   * first free `_N` suffix. A link in the namespace that no endpoint is may still have it: ip says so.
   */
  private freeInterfaceId(id: string): string {
    for (let suffix = 1; ; suffix++) {
      const candidate = `${id.slice(0, MAX_LINK_NAME_BYTES - String(suffix).length - 1)}_${suffix}`;
      if (!this.firecrackerIds.has(candidate)) return candidate;
    }
  }

  private passed(path: string, count: number): OpenedFile[] {
    return Array.from({ length: count }, () => ({ fd: this.nextFd++, path }));
  }

  /** `device` is undefined for a physical NIC; `macvtapNode` is a macvtap's /dev/tapN. */
  add(endpoint: Endpoint, device: NetworkDevice | undefined, macvtapNode: string | undefined): DeviceConfig {
    const { kind, field, options } = this;
    // nodes (issue 12): a physical NIC is a VFIO PCI function, not a tap.
    if (endpoint instanceof PhysicalEndpoint || device === undefined) {
      refusePhysicalEndpoints(kind, [endpoint.properties.link.name]);
      return { endpoint: endpoint.name, config: qemuVfioArguments((endpoint as PhysicalEndpoint).vfioDevice()) };
    }
    let fds: OpenedFile[] | undefined;
    if (macvtapNode !== undefined) {
      if (kind === 'firecracker') {
        throw new InvalidInputError(
          field,
          kind,
          'qemu or clh for a macvtap endpoint (Firecracker opens its tap by name, which a macvtap cannot be)',
          field.startsWith('--') ? 'use --model tcfilter with Firecracker' : "use model 'tcfilter' with Firecracker",
        );
      }
      const queues = this.passed(macvtapNode, device.queues);
      const vhost = kind === 'qemu' && options.vhostNet ? this.passed('/dev/vhost-net', device.queues) : [];
      device.fds = queues.map((file) => file.fd);
      if (vhost.length > 0) device.vhostFds = vhost.map((file) => file.fd);
      fds = [...queues, ...vhost];
    }
    const vmmRateLimiter = options.vmmRateLimiter;
    if (kind === 'firecracker' && (vmmRateLimiter?.rxBitsPerSecond || vmmRateLimiter?.txBitsPerSecond)) {
      device.rateLimit = {
        ...(vmmRateLimiter.rxBitsPerSecond ? { rxBitsPerSecond: vmmRateLimiter.rxBitsPerSecond } : {}),
        ...(vmmRateLimiter.txBitsPerSecond ? { txBitsPerSecond: vmmRateLimiter.txBitsPerSecond } : {}),
      };
    }
    const config =
      kind === 'qemu'
        ? qemuNetworkArguments(device, options.vhostNet ? { vhostNet: true } : {})
        : kind === 'clh'
          ? ['--net', cloudHypervisorNetArgument(device, this.cloudHypervisorOptions)]
          : firecrackerNetworkInterfaceRequest(device, { ifaceId: this.firecrackerId(endpoint) });
    return { endpoint: endpoint.name, config, ...(fds ? { fds } : {}) };
  }
}
