/**
 * A hot-plug killed half-way on a running guest (TCG): add-iface SIGKILLed right after QEMU took the
 * NIC (tap, filters, netdev_add, device_add done; the record keeps the endpoint 'pending'). What
 * undoes it, a watch starting or `vcnet gc`, unplugs the NIC from QEMU before removing the host
 * side, so the link can be added again: it used to remove the host side only, and every later
 * hot-plug of that id failed with QEMU's "Duplicate ID" (del-iface no longer knew the name).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { QueryPciBus } from '../../src/hypervisor/qemu-hotplug-ports.js';
import { type WatchSummary, watchSandbox } from '../../src/sandbox/sandbox-watch.js';
import { killAfterHotplug, vcnet } from '../helpers/cli.js';
import { guestUnavailableReason, runOnConsole } from '../helpers/guest.js';
import {
  addSecondInterface,
  attachAndBootGuest,
  type HotplugGuest,
  listedInterfaces,
  withQmp,
} from '../helpers/hotplug-guest.js';
import { cleanupNamespaces } from '../helpers/namespace.js';
import { until } from '../helpers/until.js';

const unavailable = guestUnavailableReason();
if (unavailable) console.log(`skip killed hot-plug VM test: ${unavailable}`);

let work: string | undefined;

afterEach(() => {
  cleanupNamespaces();
  if (work) rmSync(work, { recursive: true, force: true });
});

/** QEMU's NICs and netdevs: qdev ids on the PCI buses, and `info network`. */
async function qemuNics(setup: HotplugGuest): Promise<{ devices: string[]; network: string }> {
  return withQmp(setup.guest.qmpPath, async (qmp) => {
    const buses = await qmp.execute<QueryPciBus[]>('query-pci');
    const network = await qmp.execute<string>('human-monitor-command', { 'command-line': 'info network' });
    return { devices: buses.flatMap((bus) => bus.devices.map((device) => device.qdev_id)), network };
  });
}

const recordedModels = (setup: HotplugGuest) =>
  (
    JSON.parse(readFileSync(join(setup.stateDir, setup.sandbox, 'state.json'), 'utf8')) as {
      network: { endpoints: Array<{ name: string; plumbing: { model: string } }> };
    }
  ).network.endpoints.map((endpoint) => [endpoint.name, endpoint.plumbing.model]);

const taps = (setup: HotplugGuest) =>
  setup.pod
    .exec('ip', ['-br', 'link', 'show'])
    .split('\n')
    .map((line) => line.split(/[\s@]/)[0])
    .filter((name) => name?.endsWith('_kata'))
    .sort();

/** add-iface of eth9 (net9) killed right after its hot-plug, once the guest has probed the NIC. */
async function killedAddIface(setup: HotplugGuest, request: string): Promise<void> {
  const killed = vcnet(['add-iface', setup.sandbox, request, '--state-dir', setup.stateDir], killAfterHotplug());
  expect(killed.status, killed.stderr).toBe(-1);
  expect(recordedModels(setup)).toEqual([
    ['eth0', 'tcfilter'],
    ['net9', 'pending'],
  ]);
  expect((await qemuNics(setup)).devices).toContain('net1');
  // The guest ignores an eject while it still probes the NIC (TCG is slow): it has it first.
  await until(
    async () => (await runOnConsole(setup.guest, 'ls /sys/class/net')).join(' ').split(/\s+/).length >= 3,
    'the guest to see net1',
    60_000,
    500,
  );
}

describe.skipIf(unavailable !== undefined)('a hot-plug killed half-way on a running VM', () => {
  it('a watch starting unplugs it, undoes the host side, and hot-plugs the link again', {
    timeout: 240_000,
  }, async () => {
    work = mkdtempSync(join(tmpdir(), 'vcnet-khp-'));
    const setup = await attachAndBootGuest(work, { sandbox: 'kw' });
    const request = addSecondInterface(work, setup, '10.219.0');
    // A watch attaches a link with an address (CNI gave it one).
    setup.pod.exec('ip', ['addr', 'add', '10.219.0.2/24', 'dev', 'eth9']);
    await killedAddIface(setup, request);

    const applied: WatchSummary[] = [];
    const errors: string[] = [];
    const watching = await watchSandbox('kw', {
      stateDirectory: setup.stateDir,
      debounceMs: 50,
      onApplied: (summary) => applied.push(summary),
      onError: (error) => errors.push(error.message),
    });
    try {
      expect(watching.undoneAttaches).toEqual(['eth9']);
      expect(watching.notUndone).toEqual([]);
      await until(() => applied.length > 0 || errors.length > 0, 'the watch to attach eth9 again', 90_000);
      expect(errors).toEqual([]);
      // Not "Duplicate ID 'netdev-net1'": QEMU's net1 went with the undo, and the new one took its id.
      expect(applied[0]).toMatchObject({ added: ['eth9'], failed: [] });
    } finally {
      await watching.stop();
    }
    expect(recordedModels(setup)).toEqual([
      ['eth0', 'tcfilter'],
      ['eth9', 'tcfilter'],
    ]);
    const { devices, network } = await qemuNics(setup);
    expect(devices.filter((id) => id.startsWith('net')).sort()).toEqual(['net0', 'net1']);
    expect(network.match(/netdev-net1\b/g)).toHaveLength(1);
    expect(taps(setup)).toEqual(['tap0_kata', 'tap1_kata']);
    // The guest has it, configured (the watch pushed it).
    const eth9 = listedInterfaces(setup).find((entry) => entry.name === 'eth9');
    expect(eth9?.IPAddresses.map((address) => address.address)).toContain('10.219.0.2');
    await setup.guest.kill();
    expect(vcnet(['detach', '--sandbox', 'kw', '--state-dir', setup.stateDir]).status).toBe(0);
  });

  it('gc unplugs it and undoes the host side, and add-iface adds the link again', { timeout: 240_000 }, async () => {
    work = mkdtempSync(join(tmpdir(), 'vcnet-khp-'));
    const setup = await attachAndBootGuest(work, { sandbox: 'kg' });
    const request = addSecondInterface(work, setup, '10.218.0');
    await killedAddIface(setup, request);

    const collected = vcnet(['gc', '--netns', setup.pod.path, '--state-dir', setup.stateDir, '--json']);
    expect(collected.status, collected.stderr).toBe(0);
    const report = JSON.parse(collected.stdout) as { removed: Array<{ detail: string }>; failures: unknown[] };
    expect(report.failures).toEqual([]);
    expect(report.removed.map((item) => item.detail)).toEqual([
      expect.stringMatching(
        /^unfinished attach of eth9: tun tap1_kata.*\(the record of sandbox kg stays, without it\)$/,
      ),
    ]);
    expect(recordedModels(setup)).toEqual([['eth0', 'tcfilter']]);
    const { devices, network } = await qemuNics(setup);
    expect(devices).not.toContain('net1');
    expect(network).not.toContain('netdev-net1');
    expect(taps(setup)).toEqual(['tap0_kata']);

    const added = vcnet(['add-iface', 'kg', request, '--state-dir', setup.stateDir]);
    expect(added.status, added.stderr).toBe(0);
    expect(JSON.parse(added.stdout)).toMatchObject({ name: 'net9', IPAddresses: [{ address: '10.218.0.2' }] });
    const net9 = listedInterfaces(setup).find((entry) => entry.name === 'net9');
    expect(net9?.IPAddresses.map((address) => address.address)).toContain('10.218.0.2');
    await setup.guest.kill();
    expect(vcnet(['detach', '--sandbox', 'kg', '--state-dir', setup.stateDir]).status).toBe(0);
  });
});
