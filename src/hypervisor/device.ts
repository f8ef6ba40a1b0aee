/**
 * The hypervisor-neutral description of one guest NIC, as the network layer hands it over, and its
 * validation. Each hypervisor module turns a valid NetworkDevice into its own arguments or request
 * body and refuses, with a typed error, the parts it cannot express.
 */
import { InvalidInputError } from '../errors.js';
import { isMacAddress, MAC_ADDRESS_ACCEPTED } from '../mac-address.js';
import { MAX_QUEUES, QUEUES_ACCEPTED } from '../queue-limits.js';

/** Limits in bits per second (0 or absent = no limit). rx = towards the guest, tx = from the guest. */
export interface NetworkRateLimit {
  rxBitsPerSecond?: number;
  txBitsPerSecond?: number;
}

/**
 * A NIC as a hypervisor takes it, from `endpoint.networkDevice()`: its id, the tap by name or its open queue
 * fds, its MAC, queue count, vhost settings and rate limit. `spawnQemu`, `hotplugNetworkDevice` and the Cloud
 * Hypervisor and Firecracker builders read it.
 */
export interface NetworkDevice {
  /** Stable per endpoint (e.g. "net0"): the QEMU device id, the Cloud Hypervisor id, Firecracker's iface_id. */
  id: string;
  /** The tap (or macvtap) interface name in the VM's network namespace. */
  tapName?: string;
  /** Open tap queue fds in this process, one per queue. When present they win over tapName. */
  fds?: number[];
  /** Open /dev/vhost-net fds, one per queue (QEMU only; needs fds). */
  vhostFds?: number[];
  /** Queue pairs (tap queues). Multi-queue when > 1. */
  queues: number;
  guestMac: string;
  /** MAC of the host side, where the hypervisor can set it (Cloud Hypervisor). */
  hostMac?: string;
  mtu?: number;
  /** A vhost-user backend socket instead of a tap. */
  vhostUserSocket?: string;
  rateLimit?: NetworkRateLimit;
  /** Slot on the root PCI bus, QEMU syntax: "5", "0x05", "05.0" (hex slot, optional function). */
  pciAddress?: string;
}

/** A PCI slot and function on the bus a NIC is placed on. */
export interface PciSlot {
  slot: number;
  function: number;
}

/** QEMU's id_wellformed(): a letter, then letters, digits, '-', '.', '_'. Capped to keep names sane. */
export const DEVICE_ID_PATTERN = /^[A-Za-z][A-Za-z0-9._-]{0,63}$/;
/** Linux allows up to 15 bytes; '/', ':' and whitespace are refused by the kernel, ',' and '=' by our option syntaxes. */
const TAP_NAME_PATTERN = /^[^/:,=\s]{1,15}$/;
const PCI_ADDRESS_PATTERN = /^(?:0x)?([0-9a-fA-F]{1,2})(?:\.([0-7]))?$/;
/** sun_path is 108 bytes including the terminating NUL. */
const MAX_UNIX_SOCKET_PATH_BYTES = 107;

/**
 * Checks that a `NetworkDevice` is one the hypervisors accept (its id, MAC, queues, fds, socket path) before
 * any command is built. Throws `InvalidInputError` naming the first bad field.
 */
export function validateNetworkDevice(device: NetworkDevice): void {
  if (typeof device.id !== 'string' || !DEVICE_ID_PATTERN.test(device.id)) {
    throw new InvalidInputError(
      'NetworkDevice.id',
      device.id,
      "1-64 characters: a letter, then letters, digits, '-', '.' or '_' (what QEMU accepts as an id)",
    );
  }
  if (!Number.isInteger(device.queues) || device.queues < 1 || device.queues > MAX_QUEUES) {
    throw new InvalidInputError('NetworkDevice.queues', device.queues, QUEUES_ACCEPTED);
  }
  validateMac('NetworkDevice.guestMac', device.guestMac);
  if (device.hostMac !== undefined) validateMac('NetworkDevice.hostMac', device.hostMac);
  if (
    device.tapName !== undefined &&
    (device.tapName === '.' || device.tapName === '..' || !TAP_NAME_PATTERN.test(device.tapName))
  ) {
    throw new InvalidInputError(
      'NetworkDevice.tapName',
      device.tapName,
      "an interface name of 1-15 bytes without '/', ':', ',', '=' or whitespace",
    );
  }
  if (device.fds !== undefined) validateFds('NetworkDevice.fds', device.fds, device.queues);
  if (device.vhostFds !== undefined) {
    validateFds('NetworkDevice.vhostFds', device.vhostFds, device.queues);
    if (device.fds === undefined) {
      throw new InvalidInputError(
        'NetworkDevice.vhostFds',
        device.vhostFds,
        'vhost fds only together with tap fds',
        'open the tap queues as fds too (QEMU takes vhostfds= only next to fds=), or drop vhostFds',
      );
    }
  }
  if (device.vhostUserSocket !== undefined) {
    const socket = device.vhostUserSocket;
    if (
      typeof socket !== 'string' ||
      !socket.startsWith('/') ||
      Buffer.byteLength(socket) > MAX_UNIX_SOCKET_PATH_BYTES
    ) {
      throw new InvalidInputError(
        'NetworkDevice.vhostUserSocket',
        socket,
        `an absolute path of at most ${MAX_UNIX_SOCKET_PATH_BYTES} bytes`,
      );
    }
    if (device.tapName !== undefined || device.fds !== undefined) {
      throw new InvalidInputError(
        'NetworkDevice.vhostUserSocket',
        socket,
        'either a vhost-user socket or a tap (tapName/fds), not both',
      );
    }
  } else if (device.tapName === undefined && device.fds === undefined) {
    throw new InvalidInputError(
      'NetworkDevice.tapName',
      undefined,
      'a backend: tapName, fds, or vhostUserSocket',
      'the network layer must say how the NIC reaches the host: a tap by name, its open fds, or a vhost-user socket',
    );
  }
  if (device.mtu !== undefined && (!Number.isInteger(device.mtu) || device.mtu < 68 || device.mtu > 65535)) {
    throw new InvalidInputError('NetworkDevice.mtu', device.mtu, 'an integer from 68 to 65535');
  }
  if (device.rateLimit !== undefined) {
    validateRate('NetworkDevice.rateLimit.rxBitsPerSecond', device.rateLimit.rxBitsPerSecond);
    validateRate('NetworkDevice.rateLimit.txBitsPerSecond', device.rateLimit.txBitsPerSecond);
  }
  if (device.pciAddress !== undefined) parsePciAddress(device.pciAddress);
}

/** Parses "5", "0x05" or "05.0" into a slot on the root bus. Slot 0 is the host bridge, so 1-31. */
export function parsePciAddress(text: string): PciSlot {
  const match = typeof text === 'string' ? PCI_ADDRESS_PATTERN.exec(text) : null;
  const slot = match ? Number.parseInt(match[1] ?? '', 16) : Number.NaN;
  if (!match || !(slot >= 1 && slot <= 31)) {
    throw new InvalidInputError(
      'NetworkDevice.pciAddress',
      text,
      'a slot on the root PCI bus in hex, 1 to 1f, optionally ".function" 0-7 (e.g. "5", "0x05", "05.0")',
    );
  }
  return { slot, function: match[2] === undefined ? 0 : Number(match[2]) };
}

/** The MAC in the lower-case form all hypervisors print back, so comparisons work. */
export function normalizeMac(mac: string): string {
  return mac.toLowerCase();
}

function validateMac(field: string, mac: string): void {
  if (!isMacAddress(mac)) {
    throw new InvalidInputError(field, mac, MAC_ADDRESS_ACCEPTED);
  }
  const firstOctet = Number.parseInt(mac.slice(0, 2), 16);
  // A NIC address must be unicast: a multicast source MAC is dropped by bridges and switches.
  if ((firstOctet & 1) === 1 || /^(00:){5}00$/.test(mac)) {
    throw new InvalidInputError(field, mac, 'a unicast MAC (lowest bit of the first octet clear), not all zeros');
  }
}

function validateFds(field: string, fds: number[], queues: number): void {
  // 0-2 are stdio: a hypervisor child gets those slots for its console, and Cloud Hypervisor refuses them.
  if (!Array.isArray(fds) || fds.length === 0 || fds.some((fd) => !Number.isInteger(fd) || fd < 3)) {
    throw new InvalidInputError(field, fds, 'a non-empty list of open file descriptors (integers >= 3)');
  }
  if (new Set(fds).size !== fds.length) {
    throw new InvalidInputError(field, fds, 'distinct file descriptors, one per queue');
  }
  if (fds.length !== queues) {
    throw new InvalidInputError(field, fds, `exactly one fd per queue (queues = ${queues})`);
  }
}

function validateRate(field: string, bitsPerSecond: number | undefined): void {
  if (bitsPerSecond === undefined || bitsPerSecond === 0) return;
  // Below 8 bit/s the byte bucket would hold 0 tokens, which the hypervisors read as "no limit".
  if (!Number.isSafeInteger(bitsPerSecond) || bitsPerSecond < 8) {
    throw new InvalidInputError(field, bitsPerSecond, '0 (no limit) or an integer number of bits per second >= 8');
  }
}

/** A running VM that can take and give back NICs (QEMU's QMP client implements it). */
export interface HotplugTarget {
  hotplugNetworkDevice(device: NetworkDevice): Promise<{ pciPath?: string }>;
  /** Resolves once the NIC is not in the VM (also when it was not there); rejects when the VM keeps it. */
  unplugNetworkDevice(id: string): Promise<void>;
}
