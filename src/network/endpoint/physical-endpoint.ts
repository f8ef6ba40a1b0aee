/**
 * A physical NIC (its link sits on a PCI device): passed through to the VM with VFIO, as Kata does.
 * Attach sets a VF's MAC through its PF, then moves the function to vfio-pci (network/vfio.ts);
 * detach gives it back to its host driver. The VM gets `vfio-pci,host=<BDF>` (cold or hot).
 */
import { readFileSync, readlinkSync } from 'node:fs';
import { basename, join } from 'node:path';
import { channels, publish } from '../../diagnostics.js';
import { VcnetError } from '../../errors.js';
import type { HotplugTarget } from '../../hypervisor/device.js';
import type { VfioPciDevice } from '../../hypervisor/qemu.js';
import { NetlinkHandle } from '../../netlink/handle.js';
import { type AttachedPlumbing, existingDevicePlumbing, type PlumbingContext } from '../model/plumbing-context.js';
import type { NetworkInfo } from '../network-info.js';
import {
  bindToVfio,
  HOST_ROOTS,
  type HostRoots,
  rebindToHost,
  type VfioBinding,
  type VirtualFunctionOwner,
  virtualFunctionOwner,
} from '../vfio.js';
import { Endpoint, type EndpointState } from './endpoint.js';
import { refuseRateLimit } from './rate-limit-support.js';

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

/** Where sysfs lists the PCI devices under `roots` (the host's: /sys/bus/pci/devices). */
export function pciDevicesDirectory(roots: HostRoots = HOST_ROOTS): string {
  return join(roots.sysfs, 'bus', 'pci', 'devices');
}

/** What sysfs says about a PCI device (the PCI tree in sysfs is not per network namespace). */
export function readPciDevice(address: string, root = pciDevicesDirectory()): PciDeviceInfo {
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

/** Sets a VF's MAC through its PF's netdev (in the host namespace, where the PF lives). */
export type VirtualFunctionMacSetter = (owner: VirtualFunctionOwner, mac: string) => Promise<void>;

const setMacThroughHostPf: VirtualFunctionMacSetter = async (owner, mac) => {
  const handle = NetlinkHandle.open();
  try {
    const pf = await handle.linkByName(owner.physicalFunctionNetdev);
    await handle.setLink(pf.index, { virtualFunctionAddress: { vf: owner.vf, address: mac } });
  } finally {
    await handle.close();
  }
};

export class PhysicalEndpoint extends Endpoint {
  readonly type = 'physical' as const;
  /** Set while the function is vfio-pci's because of this endpoint; detach gives it back. */
  binding: VfioBinding | undefined;

  constructor(
    index: number,
    properties: NetworkInfo,
    readonly device: PciDeviceInfo,
    /** sysfs and /dev for VFIO: the host's unless a caller gives others (createEndpoint's hostRoots). */
    private readonly roots: HostRoots = HOST_ROOTS,
    private readonly setVirtualFunctionMac: VirtualFunctionMacSetter = setMacThroughHostPf,
  ) {
    super(index, properties, undefined);
  }

  /**
   * Kata's order: the VF's MAC through its PF first (best effort: the guest driver reads it at probe,
   * and a PF that refuses leaves the VF's own), then the function moves to vfio-pci.
   */
  override checkAttach(context: PlumbingContext): void {
    refuseRateLimit(context, 'physical', this.properties.link.name);
  }

  protected async build(context: PlumbingContext): Promise<AttachedPlumbing> {
    const mac = this.properties.link.address ?? '';
    const owner = virtualFunctionOwner(this.device.address, this.roots);
    if (owner && mac) {
      await this.setVirtualFunctionMac(owner, mac).catch((error: Error) =>
        publish(channels.notice, () => ({
          operation: context.operation ?? 'attach',
          endpoint: this.properties.link.name,
          message: 'could not set the VF MAC through its PF; the VF keeps its own',
          error,
          details: { pf: owner.physicalFunctionNetdev, vf: owner.vf },
        })),
      );
    }
    this.binding = bindToVfio(this.device.address, this.roots);
    return existingDevicePlumbing(context, { guestHardwareAddress: mac, tapDevicePath: this.binding.groupDevice });
  }

  /** The VFIO device the VM gets (QEMU: -device vfio-pci,host=BDF or device_add). */
  vfioDevice(): VfioPciDevice {
    return { id: this.deviceId, hostAddress: this.device.address };
  }

  override async hotAttach(context: PlumbingContext, target: HotplugTarget): Promise<void> {
    const vfioTarget = target as HotplugTarget & Partial<VfioHotplugTarget>;
    if (!vfioTarget.hotplugVfioDevice) {
      throw new PhysicalDeviceUnsupportedError('this hypervisor', this.properties.link.name);
    }
    await this.attach(context);
    try {
      const plugged = await vfioTarget.hotplugVfioDevice(this.vfioDevice());
      this.pciPath = plugged.pciPath;
    } catch (error) {
      this.releaseHostDevice();
      await this.undoRefusedPlug(context.handle, error as Error, context.operation);
    }
  }

  /** Gives the PCI function back to its host driver (detach); a no-op when it was not bound. */
  releaseHostDevice(): void {
    if (!this.binding) return;
    rebindToHost(this.binding, this.roots);
    this.binding = undefined;
  }

  override save(): EndpointState {
    return { ...super.save(), details: { pci: this.device, ...(this.binding ? { vfio: this.binding } : {}) } };
  }

  override restore(state: EndpointState): void {
    super.restore(state);
    const binding = state.details?.vfio as VfioBinding | undefined;
    if (binding) this.binding = binding;
  }
}

/** A hot-plug target that can take VFIO devices (QemuNetworkHotplugTarget). */
export interface VfioHotplugTarget {
  hotplugVfioDevice(device: VfioPciDevice): Promise<{ pciPath?: string }>;
}

/**
 * A physical NIC in the pod, with a hypervisor other than QEMU (`VCNET_PHYSICAL_UNSUPPORTED`): only QEMU
 * takes VFIO pass-through.
 */
export class PhysicalDeviceUnsupportedError extends VcnetError {
  static override readonly errorName: string = 'PhysicalDeviceUnsupportedError';
  constructor(hypervisor: string, link: string) {
    super('VCNET_PHYSICAL_UNSUPPORTED', `${hypervisor} cannot take physical NIC ${link} (VFIO pass-through)`, {
      value: link,
      hint: 'use QEMU for pods with physical NICs, or leave the NIC out of the pod namespace',
    });
  }
}

/** Refuses, before anything is made, a hypervisor that cannot take the physical NICs about to be attached. */
export function refusePhysicalEndpoints(
  hypervisor: 'qemu' | 'clh' | 'firecracker',
  physicalLinks: readonly string[],
): void {
  if (hypervisor === 'qemu' || physicalLinks.length === 0) return;
  const name = hypervisor === 'clh' ? 'Cloud Hypervisor (through vcnet)' : 'Firecracker';
  throw new PhysicalDeviceUnsupportedError(name, physicalLinks.join(', '));
}
