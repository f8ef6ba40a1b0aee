/**
 * Where a hot-plugged NIC can go. On q35 the root complex pcie.0 is not hot-pluggable, so Kata plugs
 * into PCIe root ports (or a bridge) given on the command line; on pc (i440fx) a pci-bridge takes up
 * to 31 devices. vcnet adds its own ports with recognisable ids and picks a free one from query-pci,
 * which also gives the PCI path the agent waits for ("<port slot>/<device slot>").
 */
import { InvalidInputError } from '../errors.js';
import { QmpCommandError } from './errors.js';
import type { QmpClient } from './qmp.js';

/**
 * The QEMU machine families vcnet knows how to hot-plug NICs into: `q35` (PCIe root ports) and `pc` (i440fx,
 * a PCI bridge).
 */
export type QemuMachineType = 'q35' | 'pc';

/**
 * The machine family of a QOM machine type name: "pc-q35-7.2-machine" is q35, "pc-i440fx-7.2-machine"
 * (and the old unversioned "pc-1.0-machine" style) is pc; anything else (microvm, isapc) is neither.
 */
export function machineTypeOfQomType(qomType: string): QemuMachineType | undefined {
  if (/^pc-q35-/.test(qomType)) return 'q35';
  if (/^pc-/.test(qomType)) return 'pc';
  return undefined;
}

/**
 * The machine family of a running QEMU, asked with `qom-get /machine type` (query-machines lists
 * what the binary supports, not what runs). Undefined when QEMU refuses the question or answers with
 * a type that is neither; a dead or silent QMP connection still fails (QmpTimeoutError...).
 */
export async function queryMachineType(qmp: QmpClient, timeoutMs?: number): Promise<QemuMachineType | undefined> {
  const qomType = await qmp
    .execute<unknown>('qom-get', { path: '/machine', property: 'type' }, { timeoutMs })
    .catch((error: unknown) => {
      if (error instanceof QmpCommandError) return undefined;
      throw error;
    });
  return typeof qomType === 'string' ? machineTypeOfQomType(qomType) : undefined;
}

export const ROOT_PORT_ID_PREFIX = 'vcnet-rp';
const BRIDGE_ID_PREFIX = 'vcnet-bridge';
export const BRIDGE_ID = `${BRIDGE_ID_PREFIX}0`;
/** Chassis numbers from here, clear of the ones firmware and other tools tend to use. */
const FIRST_CHASSIS = 0x20;

/** `-device` arguments for `count` hot-plug ports: root ports on q35, one pci-bridge on pc. */
export function qemuHotplugPortArguments(machine: QemuMachineType, count: number): string[] {
  if (!Number.isInteger(count) || count < 1 || count > 32) {
    throw new InvalidInputError('hotplug ports', count, 'an integer from 1 to 32');
  }
  if (machine === 'pc') return pciBridgeArguments(0);
  const args: string[] = [];
  for (let port = 0; port < count; port++) args.push(...rootPortArguments(port));
  return args;
}

/** vcnet-rp<index>: chassis numbers and slots follow on from the first, so each pair is unique. */
export function rootPortArguments(index: number): string[] {
  return ['-device', `pcie-root-port,id=${ROOT_PORT_ID_PREFIX}${index},bus=pcie.0,${rootPortPlace(index)}`];
}

/** The chassis and slot of vcnet-rp<index>, for a message that names the ports after it. */
export function rootPortPlace(index: number): string {
  return `chassis=${FIRST_CHASSIS + index},slot=${index + 1}`;
}

/**
 * The index of the first vcnet port (vcnet-rp<N>, vcnet-bridge<N>) a VM does not have yet, above
 * every one it has: a port to add at boot must not repeat an id (or chassis) already there.
 */
export function nextPortIndex(ports: ReadonlyArray<{ id: string }>): number {
  const indices = ports.map((port) => Number(/(\d+)$/.exec(port.id)?.[1] ?? -1));
  return indices.length === 0 ? 0 : Math.max(...indices) + 1;
}

export interface QueryPciDevice {
  slot: number;
  function: number;
  qdev_id: string;
  class_info?: { desc?: string; class: number };
  pci_bridge?: { devices?: QueryPciDevice[] };
}

export interface QueryPciBus {
  bus: number;
  devices: QueryPciDevice[];
}

/** NICs one vcnet pci-bridge takes: QEMU (7.2, pc) plugs into all 32 of its slots, 0 included. */
export const PCI_BRIDGE_NICS = 32;

/** A pc VM needing more than one bridge's NICs gets vcnet-bridge1, 2...: chassis numbers follow on. */
export function pciBridgeArguments(index: number): string[] {
  return ['-device', `pci-bridge,id=${BRIDGE_ID_PREFIX}${index},bus=pci.0,chassis_nr=${FIRST_CHASSIS + index}`];
}

/** vcnet's hot-plug ports on the root bus, in order, with their slots. */
export function hotplugPorts(machine: QemuMachineType, buses: QueryPciBus[]): Array<{ id: string; slot: number }> {
  const root = buses.find((bus) => bus.bus === 0)?.devices ?? [];
  const own = machine === 'pc' ? new RegExp(`^${BRIDGE_ID_PREFIX}\\d+$`) : new RegExp(`^${ROOT_PORT_ID_PREFIX}\\d+$`);
  return root.filter((device) => own.test(device.qdev_id)).map((device) => ({ id: device.qdev_id, slot: device.slot }));
}

/**
 * The bridges and root ports on the root bus that are not vcnet's, for messages: "rp0 (slot 0x03)".
 * Their slots belong to whoever put them there (Kata's runtime hot-plugs into its own rp<N>).
 */
export function foreignBridges(machine: QemuMachineType, buses: QueryPciBus[]): string[] {
  const own = new Set(hotplugPorts(machine, buses).map((port) => port.id));
  const root = buses.find((bus) => bus.bus === 0)?.devices ?? [];
  return root
    .filter((device) => device.pci_bridge !== undefined && !own.has(device.qdev_id))
    .map((device) => `${device.qdev_id || '(no id)'} (slot 0x${hexSlot(device.slot)})`);
}

/** The slot QEMU gave a device on its bus (its `addr` property is devfn). */
export async function deviceSlot(qmp: QmpClient, deviceId: string, timeoutMs?: number): Promise<number | undefined> {
  const devfn = await qmp
    .execute<number>('qom-get', { path: `/machine/peripheral/${deviceId}`, property: 'addr' }, { timeoutMs })
    .catch(() => undefined);
  return typeof devfn === 'number' ? devfn >> 3 : undefined;
}

export const hexSlot = (slot: number): string => slot.toString(16).padStart(2, '0');

/** The PCI path of a device, as the agent takes it: slots from the root bus down ("05", "02/00"). */
export function pciPathInTree(devices: QueryPciDevice[], deviceId: string, prefix = ''): string | undefined {
  for (const device of devices) {
    const path = `${prefix}${hexSlot(device.slot)}`;
    if (device.qdev_id === deviceId) return path;
    const below = device.pci_bridge?.devices;
    if (below) {
      const found = pciPathInTree(below, deviceId, `${path}/`);
      if (found) return found;
    }
  }
  return undefined;
}

export async function queryPci(qmp: QmpClient, timeoutMs?: number): Promise<QueryPciBus[]> {
  return qmp.execute<QueryPciBus[]>('query-pci', undefined, { timeoutMs });
}
