/**
 * add-iface and del-iface on a q35 guest, where pcie.0 takes no hot-plug: the VM is booted with one
 * vcnet PCIe root port, and the CLI, told only the QMP and agent sockets, finds out that the machine
 * is q35 and plugs the NIC into that port. The guest sees the NIC, answers a ping from a peer
 * namespace through it, and loses it again on del-iface (device_del, DEVICE_DELETED), with the host
 * plumbing gone. The i440fx variant is kata-network-vm.test.ts.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { afterEach, describe, expect, it } from 'vitest';
import { qemuHotplugPortArguments } from '../../src/hypervisor/qemu-hotplug-ports.js';
import { vcnet } from '../helpers/cli.js';
import { guestUnavailableReason, pingFrom } from '../helpers/guest.js';
import {
  addSecondInterface,
  attachAndBootGuest,
  listedInterfaces,
  portOnBusZero,
  withQmp,
  writeRequest,
} from '../helpers/hotplug-guest.js';
import { cleanupNamespaces } from '../helpers/namespace.js';
import { fingerprint } from '../helpers/pod.js';

const unavailable = guestUnavailableReason();
if (unavailable) console.log(`skip q35 hot-plug VM test: ${unavailable}`);

let work: string | undefined;

afterEach(() => {
  cleanupNamespaces();
  if (work) rmSync(work, { recursive: true, force: true });
  work = undefined;
});

describe.skipIf(unavailable !== undefined)('kata-network hot-plug on a q35 VM', () => {
  it('add-iface plugs into a vcnet root port, traffic flows, del-iface unplugs', { timeout: 300_000 }, async () => {
    work = mkdtempSync(join(tmpdir(), 'vcnet-q35-'));
    let started = performance.now();
    // Nothing says "q35" to vcnet: attach records the sockets only. The boot NIC lands on pcie.0 (cold
    // plug is fine there); the runtime adds the port for hot-plug.
    const setup = await attachAndBootGuest(work, {
      sandbox: 'vmq',
      machine: 'q35',
      extraArgs: qemuHotplugPortArguments('q35', 1),
    });
    const { guest, pod, node, stateDir } = setup;
    try {
      expect(JSON.parse(readFileSync(join(stateDir, 'vmq', 'state.json'), 'utf8')).hypervisor).toEqual({
        kind: 'qemu',
        controlSocket: join(work, 'qmp.sock'),
      });
      console.log(`q35 guest booted and configured in ${Math.round(performance.now() - started)} ms`);

      const request = addSecondInterface(work, setup, '10.209.0');
      const port = await portOnBusZero(guest.qmpPath, 'vcnet-rp0');
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
      expect((await portOnBusZero(guest.qmpPath, 'vcnet-rp0')).devices).toEqual(['net1']);
      expect(
        listedInterfaces(setup)
          .find((entry) => entry.name === 'net9')
          ?.IPAddresses.map((address) => address.address),
      ).toContain('10.209.0.2');
      expect(pingFrom(node.name, '10.209.0.2')).toContain(' 0% packet loss');

      started = performance.now();
      const removed = vcnet([
        'del-iface',
        'vmq',
        writeRequest(work, 'del.json', { name: 'net9' }),
        '--state-dir',
        stateDir,
      ]);
      expect(removed.status, removed.stderr).toBe(0);
      console.log(`del-iface (device_del until DEVICE_DELETED) took ${Math.round(performance.now() - started)} ms`);
      expect((await portOnBusZero(guest.qmpPath, 'vcnet-rp0')).devices).toEqual([]);
      expect(
        await withQmp(guest.qmpPath, (qmp) =>
          qmp.execute<string>('human-monitor-command', { 'command-line': 'info network' }),
        ),
      ).not.toContain('netdev-net1');
      expect(listedInterfaces(setup).map((entry) => entry.name)).not.toContain('net9');
      // Host side: the tap and its filters are gone, eth9 is back as CNI left it.
      expect(pod.exec('ip', ['link', 'show'])).not.toContain('tap1_kata');
      expect(pod.tcJson<unknown[]>('filter', 'show', 'dev', 'eth9', 'ingress')).toEqual([]);
    } finally {
      await guest.kill();
    }
    pod.exec('ip', ['link', 'del', 'eth9']);
    expect(vcnet(['detach', '--sandbox', 'vmq', '--state-dir', stateDir]).status).toBe(0);
    expect(fingerprint(pod)).toEqual(setup.before);
  });
});
