/**
 * Firecracker: the `PUT /network-interfaces/{iface_id}` body, checked against
 * src/firecracker/swagger/firecracker.yaml (see test/fixtures/hypervisor).
 *
 * Firecracker opens the tap itself, by name, with one queue pair, and has no PCI placement and no
 * vhost: a device that needs fds, several queues, vhost or a PCI slot is refused rather than
 * silently degraded. Kata does the same (fcAddNetDevice closes the tap fds and passes the name).
 * Fds a device carries next to its tapName are not used; the caller should close them.
 *
 * `mtu` is left out on purpose: it is new in the 1.16 API (v1.16.0) and Firecracker rejects unknown
 * fields, so sending it would break every older Firecracker; the guest agent sets the MTU anyway.
 */
import { optionsArgument } from '../arguments.js';
import { InvalidInputError } from '../errors.js';
import { type NetworkDevice, normalizeMac, validateNetworkDevice } from './device.js';
import { UnsupportedByHypervisorError } from './errors.js';
import { bandwidthTokenBucket, type TokenBucket } from './rate-limiter.js';

/** Firecracker's rate limiter of one direction of a NIC: a token bucket for bytes and one for operations. */
export interface FirecrackerRateLimiter {
  bandwidth?: TokenBucket;
  ops?: TokenBucket;
}

/** The body of Firecracker's `PUT /network-interfaces/{iface_id}`, in Firecracker's own field names. */
export interface FirecrackerNetworkInterface {
  iface_id: string;
  host_dev_name: string;
  guest_mac?: string;
  /** Traffic the guest receives. */
  rx_rate_limiter?: FirecrackerRateLimiter;
  /** Traffic the guest sends. */
  tx_rate_limiter?: FirecrackerRateLimiter;
}

/** A request to send on Firecracker's API socket. */
export interface FirecrackerApiRequest<Body> {
  method: 'PUT';
  path: string;
  body: Body;
}

const HYPERVISOR = 'Firecracker';

/**
 * Firecracker's API takes an id of letters, digits and '_' only (checked_id in its API server: the
 * same id is the path of the PUT and of the runtime PATCH /network-interfaces/{iface_id}).
 */
const IFACE_ID_PATTERN = /^[A-Za-z0-9_]{1,64}$/;

/**
 * The iface_id Kata gives a NIC: the endpoint's name (eth0). A name with characters Firecracker
 * refuses ('-', '.', '@'...) has each of them replaced by '_' (eth0.100 is eth0_100).
 */
export function firecrackerInterfaceId(endpointName: string): string {
  return endpointName.replace(/[^A-Za-z0-9_]/g, '_').slice(0, 64);
}

/** Options of `firecrackerNetworkInterface`: the interface id to give Firecracker. */
export interface FirecrackerNetworkOptions {
  /** The iface_id (default: the device's id); Kata's is the endpoint name, see firecrackerInterfaceId. */
  ifaceId?: string;
}

/**
 * Builds Firecracker's network interface body for `device`, to PUT before the VM boots (Firecracker has no
 * hot-plug). Firecracker opens the tap by name and takes one queue pair. Throws `InvalidInputError` for a
 * malformed device or iface id, and `UnsupportedByHypervisorError` for what Firecracker cannot take
 * (several queues, queue fds without a tap name, vhost-user, vhost-net fds, a PCI address).
 */
export function firecrackerNetworkInterface(
  device: NetworkDevice,
  options: FirecrackerNetworkOptions = {},
): FirecrackerNetworkInterface {
  options = optionsArgument(options, 'options', ['ifaceId']);
  validateNetworkDevice(device);
  const ifaceId = options.ifaceId ?? device.id;
  if (typeof ifaceId !== 'string' || !IFACE_ID_PATTERN.test(ifaceId)) {
    throw new InvalidInputError(
      options.ifaceId !== undefined ? 'ifaceId' : 'NetworkDevice.id',
      ifaceId,
      "1-64 letters, digits or '_' (what Firecracker's API takes as an iface_id)",
      'firecrackerInterfaceId(name) makes one of an interface name',
    );
  }
  refuse(device.queues > 1, 'queues', device.queues, 'its virtio-net has a single queue pair', 'use queues: 1');
  refuse(
    device.vhostUserSocket !== undefined,
    'vhostUserSocket',
    device.vhostUserSocket,
    'it has no vhost-user network backend',
    'use a tap endpoint for Firecracker VMs',
  );
  refuse(
    device.tapName === undefined,
    'fds',
    device.fds,
    'it opens the tap by name and cannot take fds',
    'give the device its tapName (the tap must live in the namespace Firecracker runs in)',
  );
  refuse(
    device.vhostFds !== undefined,
    'vhostFds',
    device.vhostFds,
    'it has no vhost-net support',
    'do not open vhost fds',
  );
  refuse(
    device.pciAddress !== undefined,
    'pciAddress',
    device.pciAddress,
    'the API has no way to place a NIC',
    'leave pciAddress unset for Firecracker',
  );
  const body: FirecrackerNetworkInterface = {
    iface_id: ifaceId,
    host_dev_name: device.tapName as string,
    guest_mac: normalizeMac(device.guestMac),
  };
  const rx = bandwidthTokenBucket(device.rateLimit?.rxBitsPerSecond);
  const tx = bandwidthTokenBucket(device.rateLimit?.txBitsPerSecond);
  if (rx) body.rx_rate_limiter = { bandwidth: rx };
  if (tx) body.tx_rate_limiter = { bandwidth: tx };
  return body;
}

/** Pre-boot only: Firecracker has no NIC hot-plug. */
export function firecrackerNetworkInterfaceRequest(
  device: NetworkDevice,
  options: FirecrackerNetworkOptions = {},
): FirecrackerApiRequest<FirecrackerNetworkInterface> {
  const body = firecrackerNetworkInterface(device, options);
  return { method: 'PUT', path: `/network-interfaces/${encodeURIComponent(body.iface_id)}`, body };
}

function refuse(condition: boolean, field: string, value: unknown, reason: string, hint: string): void {
  if (condition) throw new UnsupportedByHypervisorError(HYPERVISOR, field, value, reason, hint);
}
