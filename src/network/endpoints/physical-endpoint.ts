/**
 * A physical NIC (its link sits on a PCI device): passed through to the VM with VFIO. vcnet records
 * the PCI address, vendor/device ids and host driver; binding the device to vfio-pci takes it away
 * from the host, so that happens only when asked for explicitly (bindToVfio), never as a side effect.
 */
import { existsSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { VcnetError } from '../../errors.js';
import { type AttachedPlumbing, existingDevicePlumbing, type PlumbingContext } from '../models/plumbing-context.js';
import type { NetworkInfo } from '../network-info.js';
import { Endpoint, type EndpointState } from './endpoint.js';
import { refuseRateLimit } from './rate-limit-support.js';

export const PCI_DEVICES_DIRECTORY = '/sys/bus/pci/devices';

export interface PciDeviceInfo {
  address: string;
  vendorId?: string;
  deviceId?: string;
  driver?: string;
}

function readTrimmed(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** What sysfs says about a PCI device (the PCI tree in sysfs is not per network namespace). */
export function readPciDevice(address: string, root = PCI_DEVICES_DIRECTORY): PciDeviceInfo {
  const directory = join(root, address);
  const info: PciDeviceInfo = { address };
  const vendorId = readTrimmed(join(directory, 'vendor'));
  if (vendorId) info.vendorId = vendorId;
  const deviceId = readTrimmed(join(directory, 'device'));
  if (deviceId) info.deviceId = deviceId;
  try {
    info.driver = basename(readlinkSync(join(directory, 'driver')));
  } catch {
    // no driver bound
  }
  return info;
}

export class PhysicalEndpoint extends Endpoint {
  readonly type = 'physical' as const;

  constructor(
    index: number,
    properties: NetworkInfo,
    readonly device: PciDeviceInfo,
  ) {
    super(index, properties, undefined);
  }

  protected async build(context: PlumbingContext): Promise<AttachedPlumbing> {
    refuseRateLimit(context, 'physical', this.properties.link.name);
    return existingDevicePlumbing(context, { guestHardwareAddress: this.properties.link.address ?? '' });
  }

  /** Rebinds the device to vfio-pci (driver_override, unbind, probe). Explicit opt-in only. */
  bindToVfio(root = PCI_DEVICES_DIRECTORY): void {
    const directory = join(root, this.device.address);
    if (!existsSync(directory)) {
      throw new VcnetError('VCNET_PCI_DEVICE_MISSING', `PCI device ${this.device.address} not found`, {
        value: this.device.address,
        hint: 'the NIC may have been removed or renamed',
      });
    }
    writeFileSync(join(directory, 'driver_override'), 'vfio-pci');
    if (this.device.driver) writeFileSync(join(directory, 'driver', 'unbind'), this.device.address);
    writeFileSync(join(root, '..', 'drivers_probe'), this.device.address);
  }

  override save(): EndpointState {
    return { ...super.save(), details: { pci: this.device } };
  }
}
