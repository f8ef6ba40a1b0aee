/**
 * Cloud Hypervisor: the `--net` argument and the HTTP API bodies for NIC hot-plug
 * (`PUT /api/v1/vm.add-net`, `PUT /api/v1/vm.remove-device`), checked against
 * vmm/src/api/openapi/cloud-hypervisor.yaml and vmm/src/config.rs (see test/fixtures/hypervisor).
 *
 * Facts from Cloud Hypervisor's source that shape this file:
 * - num_queues counts virtqueues, not queue pairs: two per tap queue, and with fds it must equal
 *   2 x the number of fds (NetConfig::validate).
 * - fds in the JSON body are ignored (deserialized as -1): they must travel as SCM_RIGHTS ancillary
 *   data with the HTTP request, as Kata's vmAddNetPutRequest does. The request objects here carry
 *   them next to the body, for the sender to attach.
 * - The MTU must be at least 1280 (virtio-devices MIN_MTU): a smaller one (a pod link's MTU) is left
 *   out, as Kata never sends an MTU to Cloud Hypervisor; the guest agent sets the link's MTU.
 * - vhost-user NICs take no rate limiter.
 * - There is one rate limiter per NIC, applied to each direction on its own.
 * - `ip`/`mask` are never sent: Cloud Hypervisor would put that address on the tap, and the host
 *   side of a vcnet tap carries no address.
 * - It implements virtio-net in its own process: vhost-net fds mean nothing to it.
 */
import { booleanOption, optionsArgument } from '../arguments.js';
import { InvalidInputError } from '../errors.js';
import { type NetworkDevice, normalizeMac, parsePciAddress, validateNetworkDevice } from './device.js';
import { UnsupportedByHypervisorError } from './errors.js';
import {
  bandwidthTokenBucket,
  kataRevertBytes,
  RATE_LIMITER_REFILL_TIME_MS,
  type TokenBucket,
} from './rate-limiter.js';

/**
 * Options of a Cloud Hypervisor NIC (`cloudHypervisorAddNetRequest`, `--net`): queue size, vhost-user mode,
 * the VMM's rate limiter and the IOMMU.
 */
export interface CloudHypervisorNetOptions {
  /** Descriptors per virtqueue: a power of two, at most 32768. Cloud Hypervisor's default is 256. */
  queueSize?: number;
  /** Who connects on a vhost-user socket; Cloud Hypervisor's default is Client. */
  vhostMode?: 'Client' | 'Server';
  /** The NIC's limiter from configuration.toml (net_rate_limiter_*): wins over the device's rateLimit. */
  rateLimiter?: CloudHypervisorRateLimiterConfig;
  /** The NIC behind the VM's IOMMU ([hypervisor.clh] enable_iommu); the VM's platform must have one on its segment. */
  iommu?: boolean;
}

/** One configured bucket: a rate per second and an optional first burst (Kata's getNetRateLimiterConfig). */
export interface CloudHypervisorBucketSetting {
  maxRate: number;
  oneTimeBurst?: number;
}

/**
 * Kata's clh getNetRateLimiterConfig: bandwidth in bits/s becomes a byte bucket (RevertBytes of
 * rate/8, burst likewise), operations stay as they are; refilled every second. Undefined when neither
 * rate is set.
 */
export function cloudHypervisorRateLimiterConfig(settings: {
  bandwidth?: CloudHypervisorBucketSetting;
  operations?: CloudHypervisorBucketSetting;
}): CloudHypervisorRateLimiterConfig | undefined {
  const config: CloudHypervisorRateLimiterConfig = {};
  const bandwidth = settings.bandwidth;
  if (bandwidth?.maxRate) {
    const bucket = bandwidthTokenBucket(bandwidth.maxRate);
    const burst = bandwidth.oneTimeBurst ? kataRevertBytes(Math.floor(bandwidth.oneTimeBurst / 8)) : 0;
    if (bucket) config.bandwidth = { ...bucket, ...(burst ? { one_time_burst: burst } : {}) };
  }
  const operations = settings.operations;
  if (operations?.maxRate) {
    config.ops = {
      size: operations.maxRate,
      ...(operations.oneTimeBurst ? { one_time_burst: operations.oneTimeBurst } : {}),
      refill_time: RATE_LIMITER_REFILL_TIME_MS,
    };
  }
  return config.bandwidth || config.ops ? config : undefined;
}

/** Cloud Hypervisor's rate limiter of a NIC: a token bucket for bytes and one for operations. */
export interface CloudHypervisorRateLimiterConfig {
  bandwidth?: TokenBucket;
  ops?: TokenBucket;
}

/** The subset of Cloud Hypervisor's NetConfig vcnet sends. */
export interface CloudHypervisorNetConfig {
  id: string;
  tap?: string;
  mac: string;
  host_mac?: string;
  mtu?: number;
  num_queues: number;
  queue_size?: number;
  iommu?: boolean;
  vhost_user?: boolean;
  vhost_socket?: string;
  vhost_mode?: 'Client' | 'Server';
  pci_device_id?: number;
  rate_limiter_config?: CloudHypervisorRateLimiterConfig;
}

/** The body of Cloud Hypervisor's `vm.remove-device`: the id the device was added with. */
export interface CloudHypervisorRemoveDevice {
  id: string;
}

/**
 * A request to send on Cloud Hypervisor's API socket (`curl --unix-socket`-like PUT), with the fds that go
 * along as SCM_RIGHTS.
 */
export interface CloudHypervisorApiRequest<Body> {
  method: 'PUT';
  /** Path on the API socket, e.g. /api/v1/vm.add-net. */
  path: string;
  body: Body;
  /** To send as SCM_RIGHTS with the request, in this order. Empty when there are none. */
  fds: number[];
}

const HYPERVISOR = 'Cloud Hypervisor';
const MIN_MTU = 1280;
/** Characters Cloud Hypervisor's option parser treats as syntax inside a --net value. */
const OPTION_SYNTAX_CHARACTERS = /[,="[\]]/;

/** The NetConfig for vm.add-net (or for a VmConfig's `net` list at create time). */
export function cloudHypervisorNetConfig(
  device: NetworkDevice,
  options: CloudHypervisorNetOptions = {},
): CloudHypervisorNetConfig {
  checkDevice(device, options);
  const config: CloudHypervisorNetConfig = {
    id: device.id,
    mac: normalizeMac(device.guestMac),
    num_queues: 2 * device.queues,
  };
  if (device.fds === undefined && device.tapName !== undefined) config.tap = device.tapName;
  if (device.hostMac !== undefined) config.host_mac = normalizeMac(device.hostMac);
  if (device.mtu !== undefined && device.mtu >= MIN_MTU) config.mtu = device.mtu;
  if (options.queueSize !== undefined) config.queue_size = options.queueSize;
  if (options.iommu) config.iommu = true;
  if (device.vhostUserSocket !== undefined) {
    config.vhost_user = true;
    config.vhost_socket = device.vhostUserSocket;
    config.vhost_mode = options.vhostMode ?? 'Client';
  }
  if (device.pciAddress !== undefined) config.pci_device_id = parsePciAddress(device.pciAddress).slot;
  if (options.rateLimiter) {
    config.rate_limiter_config = options.rateLimiter;
  } else {
    const bandwidth = bandwidthTokenBucket(singleRate(device));
    if (bandwidth) config.rate_limiter_config = { bandwidth };
  }
  return config;
}

/**
 * Builds the `vm.add-net` request that hot-plugs `device` into a running Cloud Hypervisor VM: the NIC's body
 * (tap by name, or the queue fds as SCM_RIGHTS), with the options' queue size, vhost-user mode, rate limiter
 * and IOMMU. Throws `InvalidInputError` for a malformed device or option, and `UnsupportedByHypervisorError`
 * for what Cloud Hypervisor cannot take (vhost-net fds, a PCI address, a rate limit on a vhost-user NIC).
 */
export function cloudHypervisorAddNetRequest(
  device: NetworkDevice,
  options: CloudHypervisorNetOptions = {},
): CloudHypervisorApiRequest<CloudHypervisorNetConfig> {
  return {
    method: 'PUT',
    path: '/api/v1/vm.add-net',
    body: cloudHypervisorNetConfig(device, options),
    fds: [...(device.fds ?? [])],
  };
}

/**
 * Builds the `vm.remove-device` request that unplugs the NIC added with `deviceId`. Throws
 * `InvalidInputError` for an empty id.
 */
export function cloudHypervisorRemoveDeviceRequest(
  deviceId: string,
): CloudHypervisorApiRequest<CloudHypervisorRemoveDevice> {
  if (typeof deviceId !== 'string' || deviceId.length === 0) {
    throw new InvalidInputError('deviceId', deviceId, 'the id the NIC was added with');
  }
  return { method: 'PUT', path: '/api/v1/vm.remove-device', body: { id: deviceId }, fds: [] };
}

/**
 * The value of one `--net` option at launch. fd numbers are the ones Cloud Hypervisor will see:
 * renumber them first (mapDeviceFdsToChildSlots) when the fds are handed down through spawn.
 */
export function cloudHypervisorNetArgument(device: NetworkDevice, options: CloudHypervisorNetOptions = {}): string {
  const config = cloudHypervisorNetConfig(device, options);
  const parts: string[] = [];
  if (config.tap !== undefined) parts.push(`tap=${config.tap}`);
  if (device.fds !== undefined) parts.push(`fd=[${device.fds.join(',')}]`);
  parts.push(`mac=${config.mac}`);
  if (config.host_mac !== undefined) parts.push(`host_mac=${config.host_mac}`);
  if (config.mtu !== undefined) parts.push(`mtu=${config.mtu}`);
  parts.push(`num_queues=${config.num_queues}`);
  if (config.queue_size !== undefined) parts.push(`queue_size=${config.queue_size}`);
  if (config.iommu) parts.push('iommu=on');
  if (config.vhost_user) {
    const socket = config.vhost_socket ?? '';
    if (OPTION_SYNTAX_CHARACTERS.test(socket)) {
      throw new UnsupportedByHypervisorError(
        HYPERVISOR,
        'vhostUserSocket',
        socket,
        "the --net option syntax cannot carry ',', '=', '\"', '[' or ']' in a path",
        'use a socket path without them, or add the NIC through the API (cloudHypervisorAddNetRequest)',
      );
    }
    parts.push('vhost_user=on', `socket=${socket}`, `vhost_mode=${(config.vhost_mode ?? 'Client').toLowerCase()}`);
  }
  parts.push(`id=${config.id}`);
  if (config.pci_device_id !== undefined) parts.push(`pci_device_id=${config.pci_device_id}`);
  const bandwidth = config.rate_limiter_config?.bandwidth;
  if (bandwidth) {
    parts.push(`bw_size=${bandwidth.size}`, `bw_refill_time=${bandwidth.refill_time}`);
    if (bandwidth.one_time_burst) parts.push(`bw_one_time_burst=${bandwidth.one_time_burst}`);
  }
  const ops = config.rate_limiter_config?.ops;
  if (ops) {
    parts.push(`ops_size=${ops.size}`, `ops_refill_time=${ops.refill_time}`);
    if (ops.one_time_burst) parts.push(`ops_one_time_burst=${ops.one_time_burst}`);
  }
  return parts.join(',');
}

function checkDevice(device: NetworkDevice, options: CloudHypervisorNetOptions): void {
  optionsArgument(options, 'options', ['queueSize', 'vhostMode', 'rateLimiter', 'iommu']);
  booleanOption(options.iommu, 'options.iommu');
  validateNetworkDevice(device);
  if (device.vhostFds !== undefined) {
    throw new UnsupportedByHypervisorError(
      HYPERVISOR,
      'vhostFds',
      device.vhostFds,
      'it runs virtio-net in its own process and takes no vhost-net fds',
      'do not open /dev/vhost-net for Cloud Hypervisor NICs (close those fds)',
    );
  }
  if (device.pciAddress !== undefined && parsePciAddress(device.pciAddress).function !== 0) {
    throw new UnsupportedByHypervisorError(
      HYPERVISOR,
      'pciAddress',
      device.pciAddress,
      'it places devices by slot (pci_device_id) only, always at function 0',
      'give a slot without a function, e.g. "5"',
    );
  }
  if (device.vhostUserSocket !== undefined && (options.rateLimiter || singleRate(device) !== undefined)) {
    throw new UnsupportedByHypervisorError(
      HYPERVISOR,
      options.rateLimiter ? 'rateLimiter' : 'rateLimit',
      options.rateLimiter ?? device.rateLimit,
      'vhost-user NICs take no rate limiter',
      'limit the rate in the vhost-user backend instead',
    );
  }
  const queueSize = options.queueSize;
  if (
    queueSize !== undefined &&
    (!Number.isInteger(queueSize) || queueSize < 2 || queueSize > 32768 || (queueSize & (queueSize - 1)) !== 0)
  ) {
    throw new InvalidInputError('queueSize', queueSize, 'a power of two from 2 to 32768');
  }
}

/** Cloud Hypervisor has one limiter per NIC: both directions must ask for the same rate (or one only). */
function singleRate(device: NetworkDevice): number | undefined {
  const rx = device.rateLimit?.rxBitsPerSecond || undefined;
  const tx = device.rateLimit?.txBitsPerSecond || undefined;
  if (rx !== undefined && tx !== undefined && rx !== tx) {
    throw new UnsupportedByHypervisorError(
      HYPERVISOR,
      'rateLimit',
      device.rateLimit,
      'it has one rate limiter per NIC, applied to each direction alike',
      'give the same rate for rx and tx, or only one of them, or shape the other direction with tc on the host',
    );
  }
  return rx ?? tx;
}
