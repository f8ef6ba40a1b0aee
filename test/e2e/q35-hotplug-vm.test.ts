/**
 * add-iface and del-iface on a q35 guest, where pcie.0 takes no hot-plug: the VM is booted with one
 * vcnet PCIe root port, and the CLI, told only the QMP and agent sockets, finds out that the machine
 * is q35 and plugs the NIC into that port. The guest sees the NIC, answers a ping from a peer
 * namespace through it, and loses it again on del-iface (device_del, DEVICE_DELETED), with the host
 * plumbing gone. The i440fx variant is kata-network-vm.test.ts.
 */
import { mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { afterEach, describe, expect, it } from 'vitest';
import { guestKernelCommandLine } from '../../src/hypervisor/guest-image.js';
import { type QueryPciBus, qemuHotplugPortArguments } from '../../src/hypervisor/qemu-hotplug-ports.js';
import { QmpClient } from '../../src/hypervisor/qmp.js';
import { vcnet } from '../helpers/cli.js';
import {
  type AttachedGuestNetwork,
  bootGuest,
  guestUnavailableReason,
  pingFrom,
  pushBootNetwork,
} from '../helpers/guest.js';
import { cleanupNamespaces } from '../helpers/namespace.js';
import { fingerprint, makePod } from '../helpers/pod.js';

const unavailable = guestUnavailableReason();
if (unavailable) console.log(`skip q35 hot-plug VM test: ${unavailable}`);

let work: string | undefined;

afterEach(() => {
  cleanupNamespaces();
  if (work) rmSync(work, { recursive: true, force: true });
  work = undefined;
});

/** The root port's slot on pcie.0 and what sits behind it, from QEMU (one QMP client at a time: connect, ask, close). */
async function rootPort(qmpPath: string, portId: string): Promise<{ slot: number; devices: string[] }> {
  const qmp = await QmpClient.connect(qmpPath);
  try {
    const buses = await qmp.execute<QueryPciBus[]>('query-pci');
    const port = buses.find((bus) => bus.bus === 0)?.devices.find((device) => device.qdev_id === portId);
    if (!port) throw new Error(`QEMU has no ${portId}`);
    return { slot: port.slot, devices: (port.pci_bridge?.devices ?? []).map((device) => device.qdev_id) };
  } finally {
    await qmp.close();
  }
}

async function netdevs(qmpPath: string): Promise<string> {
  const qmp = await QmpClient.connect(qmpPath);
  try {
    return await qmp.execute<string>('human-monitor-command', { 'command-line': 'info network' });
  } finally {
    await qmp.close();
  }
}

type ListedInterface = { name: string; IPAddresses: Array<{ address: string }> };

describe.skipIf(unavailable !== undefined)('kata-network hot-plug on a q35 VM', () => {
  it('add-iface plugs into a vcnet root port, traffic flows, del-iface unplugs', { timeout: 300_000 }, async () => {
    work = mkdtempSync(join(tmpdir(), 'vcnet-q35-'));
    const stateDir = join(work, 'state');
    const qmpLink = join(work, 'qmp.sock');
    const agentLink = join(work, 'agent.sock');
    const { pod, node } = makePod();
    const before = fingerprint(pod);
    const listInterfaces = () =>
      JSON.parse(vcnet(['list-ifaces', 'vmq', '--state-dir', stateDir, '--json']).stdout) as ListedInterface[];

    // Nothing says "q35" to vcnet: attach records the sockets only.
    const attached = vcnet([
      'attach',
      '--sandbox',
      'vmq',
      '--netns',
      pod.path,
      '--state-dir',
      stateDir,
      '--qmp',
      qmpLink,
      '--agent',
      agentLink,
      '--json',
    ]);
    expect(attached.status, attached.stderr).toBe(0);
    const output = JSON.parse(attached.stdout) as AttachedGuestNetwork & {
      hypervisor: { devices: Array<{ config: string[] }> };
    };
    expect(JSON.parse(readFileSync(join(stateDir, 'vmq', 'state.json'), 'utf8')).hypervisor).toEqual({
      kind: 'qemu',
      controlSocket: qmpLink,
    });

    let started = performance.now();
    const guest = await bootGuest({
      machine: 'q35',
      netnsPath: pod.path,
      // The boot NIC lands on pcie.0 (cold plug is fine there); the runtime adds the port for hot-plug.
      extraArgs: [
        ...output.hypervisor.devices.flatMap((device) => device.config),
        ...qemuHotplugPortArguments('q35', 1),
      ],
      append: guestKernelCommandLine({ agent: true }),
    });
    symlinkSync(guest.qmpPath, qmpLink);
    symlinkSync(guest.agentSocketPath, agentLink);
    try {
      await pushBootNetwork(guest.agentSocketPath, output);
      console.log(`q35 guest booted and configured in ${Math.round(performance.now() - started)} ms`);

      // CNI ran again: a second pod interface whose peer is in the node namespace.
      node.exec('ip', ['link', 'add', 'veth9', 'type', 'veth', 'peer', 'name', 'eth9', 'netns', pod.name]);
      node.exec('ip', ['addr', 'add', '10.209.0.1/24', 'dev', 'veth9']);
      node.exec('ip', ['link', 'set', 'veth9', 'up']);
      pod.exec('ip', ['link', 'set', 'eth9', 'up']);
      const request = join(work, 'add.json');
      writeFileSync(
        request,
        JSON.stringify({
          device: 'eth9',
          name: 'net9',
          IPAddresses: [{ family: 0, address: '10.209.0.2', mask: '24' }],
        }),
      );
      const port = await rootPort(guest.qmpPath, 'vcnet-rp0');
      expect(port.devices).toEqual([]);

      started = performance.now();
      const added = vcnet(['add-iface', 'vmq', request, '--state-dir', stateDir]);
      expect(added.status, added.stderr).toBe(0);
      console.log(`add-iface (hot-plug + guest configuration) took ${Math.round(performance.now() - started)} ms`);
      // The PCI path the agent waited for: the port's slot on pcie.0, then slot 0 behind it.
      expect(JSON.parse(added.stdout)).toMatchObject({
        name: 'net9',
        pciPath: `${port.slot.toString(16).padStart(2, '0')}/00`,
      });
      // QEMU's view: the NIC sits behind the root port; the guest's view: the agent lists it.
      expect((await rootPort(guest.qmpPath, 'vcnet-rp0')).devices).toEqual(['net1']);
      expect(
        listInterfaces()
          .find((entry) => entry.name === 'net9')
          ?.IPAddresses.map((address) => address.address),
      ).toContain('10.209.0.2');
      expect(pingFrom(node.name, '10.209.0.2')).toContain(' 0% packet loss');

      const removal = join(work, 'del.json');
      writeFileSync(removal, JSON.stringify({ name: 'net9' }));
      started = performance.now();
      const removed = vcnet(['del-iface', 'vmq', removal, '--state-dir', stateDir]);
      expect(removed.status, removed.stderr).toBe(0);
      console.log(`del-iface (device_del until DEVICE_DELETED) took ${Math.round(performance.now() - started)} ms`);
      expect((await rootPort(guest.qmpPath, 'vcnet-rp0')).devices).toEqual([]);
      expect(await netdevs(guest.qmpPath)).not.toContain('netdev-net1');
      expect(listInterfaces().map((entry) => entry.name)).not.toContain('net9');
      // Host side: the tap and its filters are gone, eth9 is back as CNI left it.
      expect(pod.exec('ip', ['link', 'show'])).not.toContain('tap1_kata');
      expect(pod.tcJson<unknown[]>('filter', 'show', 'dev', 'eth9', 'ingress')).toEqual([]);
    } finally {
      await guest.kill();
    }
    pod.exec('ip', ['link', 'del', 'eth9']);
    expect(vcnet(['detach', '--sandbox', 'vmq', '--state-dir', stateDir]).status).toBe(0);
    expect(fingerprint(pod)).toEqual(before);
  });
});
