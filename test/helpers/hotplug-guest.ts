/**
 * The setup the VM hot-plug tests share: a pod attached with `vcnet attach --qmp --agent` (the sockets
 * named by links that exist only once QEMU is up, as a runtime does it), a TCG guest booted with the
 * attach's QEMU arguments, and "CNI ran again": a second pod link whose peer sits in the node namespace.
 * Each test then hot-plugs in its own way and checks what is particular to it.
 */
import { symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { guestKernelCommandLine } from '../../src/hypervisor/guest-image.js';
import type { QueryPciBus } from '../../src/hypervisor/qemu-hotplug-ports.js';
import { QmpClient } from '../../src/hypervisor/qmp.js';
import { vcnet } from './cli.js';
import { type AttachedGuestNetwork, bootGuest, type GuestHandle, pushBootNetwork } from './guest.js';
import type { TestNamespace } from './namespace.js';
import { fingerprint, makePod } from './pod.js';

/** What `vcnet attach --json` prints that these tests read: the guest network and the QEMU arguments. */
export type AttachOutput = AttachedGuestNetwork & {
  hypervisor: { devices: Array<{ config: string[]; fds?: Array<{ fd: number; path: string }> }> };
};

export interface HotplugGuest {
  sandbox: string;
  stateDir: string;
  pod: TestNamespace;
  node: TestNamespace;
  /** The pod before attach: detach must bring it back to this. */
  before: Record<string, unknown>;
  attached: AttachOutput;
  guest: GuestHandle;
}

export interface HotplugGuestOptions {
  sandbox: string;
  machine?: 'pc' | 'q35';
  /** QEMU arguments after the attach's own, e.g. qemuHotplugPortArguments(). */
  extraArgs?: string[];
  /** Configure the boot NICs through the agent (Kata's setupNetworks); default true. */
  pushBootNetwork?: boolean;
  /** More `vcnet attach` arguments, e.g. `['--model', 'macvtap']` or `['--config', FILE]`. */
  attachArgs?: string[];
  /** Pod links makePod() makes (eth0, eth1, ...); default 1. */
  interfaces?: number;
  /** The guest's vCPUs (bootGuest's vcpus); default 1. */
  vcpus?: number;
  /** Changes the fresh pod (or its node) before attach: what CNI would have left besides makePod's. */
  beforeAttach?: (pod: { pod: TestNamespace; node: TestNamespace }) => void;
}

/**
 * Attaches a fresh pod, boots a guest on it and links the sockets the attach recorded. `work` is the
 * caller's temporary directory (it removes it); the guest is killed at the end of the test by bootGuest.
 */
export async function attachAndBootGuest(work: string, options: HotplugGuestOptions): Promise<HotplugGuest> {
  const stateDir = join(work, 'state');
  const qmpLink = join(work, 'qmp.sock');
  const agentLink = join(work, 'agent.sock');
  const { pod, node } = makePod({ interfaces: options.interfaces ?? 1 });
  options.beforeAttach?.({ pod, node });
  const before = fingerprint(pod);
  const result = vcnet([
    ...['attach', '--sandbox', options.sandbox, '--netns', pod.path, '--state-dir', stateDir],
    ...['--qmp', qmpLink, '--agent', agentLink, '--json'],
    ...(options.attachArgs ?? []),
  ]);
  if (result.status !== 0) throw new Error(`vcnet attach failed (${result.status}): ${result.stderr}`);
  const attached = JSON.parse(result.stdout) as AttachOutput;
  const guest = await bootGuest({
    machine: options.machine,
    ...(options.vcpus !== undefined ? { vcpus: options.vcpus } : {}),
    netnsPath: pod.path,
    extraArgs: [...attached.hypervisor.devices.flatMap((device) => device.config), ...(options.extraArgs ?? [])],
    // A macvtap's queues, opened as the launcher does: its -netdev names them by descriptor.
    files: attached.hypervisor.devices.flatMap((device) => device.fds ?? []),
    append: guestKernelCommandLine({ agent: true }),
  });
  symlinkSync(guest.qmpPath, qmpLink);
  symlinkSync(guest.agentSocketPath, agentLink);
  if (options.pushBootNetwork !== false) await pushBootNetwork(guest.agentSocketPath, attached);
  return { sandbox: options.sandbox, stateDir, pod, node, before, attached, guest };
}

/**
 * CNI ran again: pod link eth9, its peer veth9 in the node namespace holding `<subnet>.1/24`. Answers
 * the add-iface request for it (net9 at `<subnet>.2/24`) written into `work`.
 */
export function addSecondInterface(work: string, setup: HotplugGuest, subnet: string): string {
  setup.node.exec('ip', ['link', 'add', 'veth9', 'type', 'veth', 'peer', 'name', 'eth9', 'netns', setup.pod.name]);
  setup.node.exec('ip', ['addr', 'add', `${subnet}.1/24`, 'dev', 'veth9']);
  setup.node.exec('ip', ['link', 'set', 'veth9', 'up']);
  setup.pod.exec('ip', ['link', 'set', 'eth9', 'up']);
  return writeRequest(work, 'add.json', {
    device: 'eth9',
    name: 'net9',
    IPAddresses: [{ family: 0, address: `${subnet}.2`, mask: '24' }],
  });
}

/** Writes a kata-network request file into `work` and answers its path. */
export function writeRequest(work: string, file: string, body: unknown): string {
  const path = join(work, file);
  writeFileSync(path, JSON.stringify(body));
  return path;
}

/** One QMP session (QEMU serves one client at a time): connect, run, close. */
export async function withQmp<T>(qmpPath: string, run: (qmp: QmpClient) => Promise<T>): Promise<T> {
  const qmp = await QmpClient.connect(qmpPath);
  try {
    return await run(qmp);
  } finally {
    await qmp.close();
  }
}

/** A bridge or root port on bus 0, by qdev id: its slot and the qdev ids of the devices behind it. */
export async function portOnBusZero(qmpPath: string, portId: string): Promise<{ slot: number; devices: string[] }> {
  const buses = await withQmp(qmpPath, (qmp) => qmp.execute<QueryPciBus[]>('query-pci'));
  const port = buses.find((bus) => bus.bus === 0)?.devices.find((device) => device.qdev_id === portId);
  if (!port) throw new Error(`QEMU has no ${portId}`);
  return { slot: port.slot, devices: (port.pci_bridge?.devices ?? []).map((device) => device.qdev_id) };
}

/** The guest's interfaces as `vcnet list-ifaces --json` prints them. */
export function listedInterfaces(
  setup: HotplugGuest,
): Array<{ name: string; IPAddresses: Array<{ address: string }> }> {
  return JSON.parse(vcnet(['list-ifaces', setup.sandbox, '--state-dir', setup.stateDir, '--json']).stdout);
}
