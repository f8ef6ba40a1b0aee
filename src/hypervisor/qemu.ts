/**
 * QEMU command-line arguments for one NIC: `-netdev tap,...` (or vhost-user) and
 * `-device virtio-net-pci,...`, written for QEMU 7.2 and checked against it by the integration tests.
 *
 * What QEMU does not get from a NetworkDevice, on purpose:
 * - rateLimit: QEMU has no NIC rate limiter; the network layer shapes the tap with tc (as Kata does).
 * - hostMac: QEMU does not own the tap's MAC; the network layer sets it on the link.
 */
import { booleanOption, optionsArgument, stringOption } from '../arguments.js';
import { InvalidInputError } from '../errors.js';
import {
  DEVICE_ID_PATTERN,
  type NetworkDevice,
  normalizeMac,
  parsePciAddress,
  validateNetworkDevice,
} from './device.js';

/** Options of a QEMU NIC's arguments: the bus it sits on and vhost-net. */
export interface QemuNicOptions {
  /** Bus the NIC sits on when it has a pciAddress. The i440fx ("pc") root bus is pci.0. */
  bus?: string;
  /**
   * vhost-net for a tap QEMU opens by name (`vhost=on`: QEMU opens /dev/vhost-net itself), as Kata
   * runs QEMU unless disable_vhost_net. Decide it with probeVhostNet; with fds, vhostFds decide.
   */
  vhostNet?: boolean;
}

/** Options from a plain JavaScript caller: a misspelt key would quietly mean the default. */
function qemuNicOptions(given: QemuNicOptions): void {
  const options = optionsArgument(given, 'options', ['bus', 'vhostNet']);
  stringOption(options.bus, 'bus', 'a QEMU bus id, such as pci.0');
  booleanOption(options.vhostNet, 'vhostNet');
}

/** The netdev id that goes with a device id; derived, so an unplug can find it again from the device id. */
export function qemuNetdevId(deviceId: string): string {
  return `netdev-${deviceId}`;
}

/** The chardev id of a vhost-user NIC's socket. */
function qemuVhostUserChardevId(deviceId: string): string {
  return `chardev-${deviceId}`;
}

/**
 * QEMU option values end at ','; a literal comma is written ',,'. Device ids, MACs and tap names
 * cannot hold commas (validated); paths can.
 */
export function escapeQemuOptionValue(value: string): string {
  return value.replaceAll(',', ',,');
}

/**
 * The `-netdev` option string.
 * - fds, one queue: `fd=N` (+ `vhost=on,vhostfd=M`).
 * - fds, several queues: `fds=a:b:c` (+ `vhost=on,vhostfds=x:y:z`). No `queues=`: QEMU 7.2 refuses
 *   it next to fds= (the queue count is the number of fds).
 * - by name: `ifname=T,script=no,downscript=no` (+ `queues=N`); QEMU opens the tap itself.
 * With fds, vhost=on goes with the vhost fds we pass. By name, `vhost=on` only when the caller says
 * vhost-net is there (options.vhostNet, from probeVhostNet): QEMU would fail to start without it.
 */
export function qemuNetdevOption(device: NetworkDevice, options: QemuNicOptions = {}): string {
  qemuNicOptions(options);
  validateNetworkDevice(device);
  const id = qemuNetdevId(device.id);
  if (device.vhostUserSocket !== undefined) {
    const parts = [`vhost-user`, `id=${id}`, `chardev=${qemuVhostUserChardevId(device.id)}`];
    if (device.queues > 1) parts.push(`queues=${device.queues}`);
    return parts.join(',');
  }
  const parts = ['tap', `id=${id}`];
  if (device.fds !== undefined) {
    if (device.queues === 1) {
      parts.push(`fd=${device.fds[0]}`);
      if (device.vhostFds) parts.push('vhost=on', `vhostfd=${device.vhostFds[0]}`);
    } else {
      parts.push(`fds=${device.fds.join(':')}`);
      if (device.vhostFds) parts.push('vhost=on', `vhostfds=${device.vhostFds.join(':')}`);
    }
  } else {
    parts.push(`ifname=${device.tapName}`, 'script=no', 'downscript=no');
    if (device.queues > 1) parts.push(`queues=${device.queues}`);
    if (options.vhostNet) parts.push('vhost=on');
  }
  return parts.join(',');
}

/**
 * The `-device virtio-net-pci` option string. `romfile=` (empty) skips the iPXE option ROM, which
 * vcnet never boots from; multi-queue needs `mq=on` and 2N+2 MSI-X vectors (N rx + N tx queues,
 * the control queue and the config interrupt).
 */
export function qemuNicDeviceOption(device: NetworkDevice, options: QemuNicOptions = {}): string {
  qemuNicOptions(options);
  validateNetworkDevice(device);
  const parts = [
    'virtio-net-pci',
    `netdev=${qemuNetdevId(device.id)}`,
    `id=${device.id}`,
    `mac=${normalizeMac(device.guestMac)}`,
    'romfile=',
  ];
  if (device.queues > 1) parts.push('mq=on', `vectors=${2 * device.queues + 2}`);
  // host_mtu advertises VIRTIO_NET_F_MTU, so the guest driver starts with the right MTU.
  if (device.mtu !== undefined) parts.push(`host_mtu=${device.mtu}`);
  if (device.pciAddress !== undefined) {
    const { slot, function: fn } = parsePciAddress(device.pciAddress);
    parts.push(`bus=${options.bus ?? 'pci.0'}`, `addr=0x${slot.toString(16)}.${fn}`);
  }
  return parts.join(',');
}

/** All arguments for one NIC, ready to append to a QEMU command line. */
export function qemuNetworkArguments(device: NetworkDevice, options: QemuNicOptions = {}): string[] {
  qemuNicOptions(options);
  const args: string[] = [];
  if (device.vhostUserSocket !== undefined) {
    // vhost-user also needs guest RAM shared with the backend (a memory-backend with share=on);
    // that belongs to the VM's memory configuration, not to the NIC.
    args.push(
      '-chardev',
      `socket,id=${qemuVhostUserChardevId(device.id)},path=${escapeQemuOptionValue(device.vhostUserSocket)}`,
    );
  }
  args.push('-netdev', qemuNetdevOption(device, options), '-device', qemuNicDeviceOption(device, options));
  return args;
}

/** A PCI function passed through with VFIO (a physical NIC bound to vfio-pci). */
export interface VfioPciDevice {
  /** QEMU device id, as for NICs (e.g. "net2"). */
  id: string;
  /** The host PCI address, domain:bus:slot.function (e.g. 0000:3b:02.1). */
  hostAddress: string;
  /** Slot on the root bus, as pciAddress of a NIC. */
  pciAddress?: string;
}

const HOST_PCI_ADDRESS = /^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/;

/**
 * Checks a VFIO PCI device (a physical NIC handed to the VM whole) before its QEMU arguments are built: its
 * id and host PCI address. Throws `InvalidInputError` naming the bad field.
 */
export function validateVfioPciDevice(device: VfioPciDevice): void {
  if (!DEVICE_ID_PATTERN.test(device.id)) {
    throw new InvalidInputError('VfioPciDevice.id', device.id, 'a letter, then letters, digits, "-", "." or "_"');
  }
  if (!HOST_PCI_ADDRESS.test(device.hostAddress)) {
    throw new InvalidInputError('VfioPciDevice.hostAddress', device.hostAddress, 'a PCI address such as 0000:3b:02.1');
  }
  if (device.pciAddress !== undefined) parsePciAddress(device.pciAddress);
}

/** `-device vfio-pci,host=BDF,id=...` for a physical NIC given to the VM at boot. */
export function qemuVfioArguments(device: VfioPciDevice, options: QemuNicOptions = {}): string[] {
  qemuNicOptions(options);
  validateVfioPciDevice(device);
  const parts = ['vfio-pci', `host=${device.hostAddress}`, `id=${device.id}`];
  if (device.pciAddress !== undefined) {
    const slot = parsePciAddress(device.pciAddress);
    parts.push(`bus=${options.bus ?? 'pci.0'}`, `addr=${slot.slot.toString(16)}.${slot.function}`);
  }
  return ['-device', parts.join(',')];
}
