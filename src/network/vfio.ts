/**
 * Passing a physical NIC to the VM: its PCI function leaves the host driver for vfio-pci through
 * sysfs, and goes back on detach. The order is Kata's (drivers.BindDevicetoVFIO / BindDevicetoHost):
 *   bind:   driver_override ← "vfio-pci"; <driver>/unbind ← BDF; /sys/bus/pci/drivers_probe ← BDF
 *   rebind: driver_override ← <host driver>; <driver>/unbind ← BDF; drivers_probe ← BDF
 * and the VM gets /dev/vfio/<IOMMU group>. Unlike Kata, driver_override is put back as it was after
 * the rebind (an override left behind pins the function to that driver forever), and a function
 * without an IOMMU group is refused before anything is written.
 * The sysfs and /dev roots are parameters so tests drive the whole sequence against a fake tree.
 */
import { existsSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { VcnetError } from '../errors.js';

const VFIO_DRIVER = 'vfio-pci';

/** Where VFIO reads and writes the host: its sysfs and /dev (a fake tree in tests), and how it writes there. */
export interface HostRoots {
  /** /sys */
  sysfs: string;
  /** /dev */
  devices: string;
  /** How sysfs files are written (tests give a fake that records each write and plays the kernel). */
  write?: (path: string, value: string) => void;
}

export const HOST_ROOTS: HostRoots = { sysfs: '/sys', devices: '/dev' };

/** What a bind changed, saved with the endpoint so detach can undo it from state alone. */
export interface VfioBinding {
  address: string;
  /** The host driver before the bind (none when the function had no driver). */
  hostDriver?: string;
  /** driver_override before the bind ("" when unset). */
  previousOverride: string;
  iommuGroup: string;
  /** /dev/vfio/<group>: what the VMM opens. */
  groupDevice: string;
}

/**
 * A physical NIC could not be handed to vfio-pci for pass-through (`VCNET_VFIO`): a bad PCI address, a device
 * not found or without an IOMMU group, or a driver bind that failed.
 */
export class VfioError extends VcnetError {
  static override readonly errorName: string = 'VfioError';
  constructor(message: string, value: unknown, hint: string, cause?: unknown) {
    super('VCNET_VFIO', message, { value, hint, ...(cause ? { cause } : {}) });
  }
}

const PCI_ADDRESS = /^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/;

function pciDirectory(address: string, roots: HostRoots): string {
  if (!PCI_ADDRESS.test(address)) {
    throw new VfioError(
      `invalid PCI address ${JSON.stringify(address)} (accepted: domain:bus:slot.function, e.g. 0000:3b:02.1)`,
      address,
      'the physical endpoint takes the address from the link parent device',
    );
  }
  return join(roots.sysfs, 'bus', 'pci', 'devices', address);
}

function linkName(path: string): string | undefined {
  try {
    return basename(readlinkSync(path));
  } catch {
    return undefined;
  }
}

function write(roots: HostRoots, path: string, value: string, what: string): void {
  try {
    (roots.write ?? writeFileSync)(path, value);
  } catch (error) {
    throw new VfioError(
      `${what}: writing ${JSON.stringify(value)} to ${path} failed: ${(error as Error).message}`,
      path,
      'run as root with sysfs mounted read-write, and load vfio-pci (modprobe vfio-pci)',
      error,
    );
  }
}

/** Hands the PCI function at `address` to vfio-pci. Binding a function vfio-pci already has is a no-op. */
export function bindToVfio(address: string, roots: HostRoots = HOST_ROOTS): VfioBinding {
  const directory = pciDirectory(address, roots);
  if (!existsSync(directory)) {
    throw new VfioError(
      `PCI device ${address} not found in ${join(roots.sysfs, 'bus', 'pci', 'devices')}`,
      address,
      'the NIC may have been removed',
    );
  }
  const iommuGroup = linkName(join(directory, 'iommu_group'));
  if (!iommuGroup) {
    throw new VfioError(
      `PCI device ${address} has no IOMMU group, so vfio-pci cannot take it`,
      address,
      'enable the IOMMU (intel_iommu=on or amd_iommu=on on the kernel command line) and check the device is not behind a bridge without ACS',
    );
  }
  const hostDriver = linkName(join(directory, 'driver'));
  const previousOverride = readOverride(directory);
  const binding: VfioBinding = {
    address,
    ...(hostDriver ? { hostDriver } : {}),
    previousOverride,
    iommuGroup,
    groupDevice: join(roots.devices, 'vfio', iommuGroup),
  };
  if (hostDriver === VFIO_DRIVER) return binding;
  write(roots, join(directory, 'driver_override'), VFIO_DRIVER, `bind ${address} to ${VFIO_DRIVER}`);
  if (hostDriver) {
    try {
      (roots.write ?? writeFileSync)(join(directory, 'driver', 'unbind'), address);
    } catch {
      // As Kata: an unbind that fails here shows up as the probe not binding vfio-pci, checked below.
    }
  }
  write(roots, join(roots.sysfs, 'bus', 'pci', 'drivers_probe'), address, `bind ${address} to ${VFIO_DRIVER}`);
  const bound = linkName(join(directory, 'driver'));
  if (bound !== VFIO_DRIVER) {
    throw new VfioError(
      `PCI device ${address} is bound to ${bound ?? 'no driver'} after the probe, not ${VFIO_DRIVER}`,
      address,
      'load vfio-pci (modprobe vfio-pci) and check nothing holds the device',
    );
  }
  return binding;
}

function readOverride(directory: string): string {
  try {
    const text = readFileSync(join(directory, 'driver_override'), 'utf8').trim();
    return text === '(null)' ? '' : text;
  } catch {
    return '';
  }
}

/** Gives the function back to its host driver (or to none) and puts driver_override back. */
export function rebindToHost(binding: VfioBinding, roots: HostRoots = HOST_ROOTS): void {
  const directory = pciDirectory(binding.address, roots);
  if (!existsSync(directory)) return; // the device went away: nothing to give back
  if (binding.hostDriver === VFIO_DRIVER) return; // it was vfio-pci's before us
  write(roots, join(directory, 'driver_override'), binding.hostDriver ?? '\n', `rebind ${binding.address}`);
  if (linkName(join(directory, 'driver'))) {
    write(roots, join(directory, 'driver', 'unbind'), binding.address, `unbind ${binding.address} from ${VFIO_DRIVER}`);
  }
  if (binding.hostDriver)
    write(roots, join(roots.sysfs, 'bus', 'pci', 'drivers_probe'), binding.address, `rebind ${binding.address}`);
  // An empty write clears the override; the kernel keeps it otherwise and binds only that driver.
  write(
    roots,
    join(directory, 'driver_override'),
    binding.previousOverride || '\n',
    `restore driver_override of ${binding.address}`,
  );
}

/** Where a VF's MAC is set: its PF's netdev and the VF's number there (Kata setVfAdminMAC). */
export interface VirtualFunctionOwner {
  physicalFunction: string;
  physicalFunctionNetdev: string;
  vf: number;
}

/** The PF of a VF, or undefined when `address` is not a VF (or its PF has no netdev). */
export function virtualFunctionOwner(address: string, roots: HostRoots = HOST_ROOTS): VirtualFunctionOwner | undefined {
  const directory = pciDirectory(address, roots);
  const physicalFunction = linkName(join(directory, 'physfn'));
  if (!physicalFunction) return undefined;
  const pfDirectory = join(roots.sysfs, 'bus', 'pci', 'devices', physicalFunction);
  const vfEntry = readdirSync(pfDirectory).find(
    (entry) => /^virtfn\d+$/.test(entry) && linkName(join(pfDirectory, entry)) === address,
  );
  let netdevs: string[] = [];
  try {
    netdevs = readdirSync(join(pfDirectory, 'net')).sort();
  } catch {
    // a PF without a netdev (bound to vfio itself): no MAC to set through it
  }
  if (!vfEntry || netdevs.length === 0) return undefined;
  return {
    physicalFunction,
    physicalFunctionNetdev: netdevs[0] as string,
    vf: Number(vfEntry.slice('virtfn'.length)),
  };
}
