/**
 * add-iface and del-iface through the PCI ports vcnet gives a VM for hot-plug
 * (qemuHotplugPortArguments), with the CLI told only the QMP and agent sockets:
 * - q35, where pcie.0 takes no hot-plug: vcnet finds out the machine is q35 and plugs the NIC into its
 *   root port;
 * - pc (i440fx) whose pci.0 is full: the NIC goes behind vcnet's pci-bridge (ACPI hot-plug behind a
 *   bridge). It used to fail "PCI: no slot/function available" with the bridge empty.
 * Either way the guest sees the NIC, answers a ping from a peer namespace through it, and loses it
 * again on del-iface (device_del, DEVICE_DELETED), with the host plumbing gone. Plugging into pci.0
 * itself is kata-network-vm.test.ts.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { afterEach, describe, expect, it } from 'vitest';
import { BRIDGE_ID, qemuHotplugPortArguments } from '../../src/hypervisor/qemu-hotplug-ports.js';
import { vcnet } from '../helpers/cli.js';
import { guestUnavailableReason, pingFrom } from '../helpers/guest.js';
import {
  addSecondInterface,
  attachAndBootGuest,
  type HotplugGuest,
  listedInterfaces,
  portOnBusZero,
  withQmp,
  writeRequest,
} from '../helpers/hotplug-guest.js';
import { cleanupNamespaces } from '../helpers/namespace.js';
import { fingerprint } from '../helpers/pod.js';

const unavailable = guestUnavailableReason();
if (unavailable) console.log(`skip hot-plug port VM tests: ${unavailable}`);

let work: string | undefined;

afterEach(() => {
  cleanupNamespaces();
  if (work) rmSync(work, { recursive: true, force: true });
  work = undefined;
});

/**
 * CNI ran again (eth9, its peer holding `<subnet>.1`); add-iface must plug net9 behind `portId`, the guest
 * must answer at `<subnet>.2`, and del-iface must take it all away again. Then detach restores the pod.
 */
async function hotplugThroughPort(setup: HotplugGuest, portId: string, subnet: string): Promise<void> {
  const { guest, pod, node, stateDir, sandbox } = setup;
  const folder = join(stateDir, '..');
  try {
    const request = addSecondInterface(folder, setup, subnet);
    const port = await portOnBusZero(guest.qmpPath, portId);
    expect(port.devices).toEqual([]);

    let started = performance.now();
    const added = vcnet(['add-iface', sandbox, request, '--state-dir', stateDir]);
    expect(added.status, added.stderr).toBe(0);
    console.log(`add-iface (hot-plug + guest configuration) took ${Math.round(performance.now() - started)} ms`);
    // The PCI path the agent waited for: the port's slot on bus 0, then slot 0 behind it.
    expect(JSON.parse(added.stdout)).toMatchObject({
      name: 'net9',
      pciPath: `${port.slot.toString(16).padStart(2, '0')}/00`,
    });
    // QEMU's view: the NIC sits behind the port; the guest's view: the agent lists it.
    expect((await portOnBusZero(guest.qmpPath, portId)).devices).toEqual(['net1']);
    expect(
      listedInterfaces(setup)
        .find((entry) => entry.name === 'net9')
        ?.IPAddresses.map((address) => address.address),
    ).toContain(`${subnet}.2`);
    expect(pingFrom(node.name, `${subnet}.2`)).toContain(' 0% packet loss');

    started = performance.now();
    const removal = writeRequest(folder, 'del.json', { name: 'net9' });
    const removed = vcnet(['del-iface', sandbox, removal, '--state-dir', stateDir]);
    expect(removed.status, removed.stderr).toBe(0);
    console.log(`del-iface (device_del until DEVICE_DELETED) took ${Math.round(performance.now() - started)} ms`);
    expect((await portOnBusZero(guest.qmpPath, portId)).devices).toEqual([]);
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
  expect(vcnet(['detach', '--sandbox', sandbox, '--state-dir', stateDir]).status).toBe(0);
  expect(fingerprint(pod)).toEqual(setup.before);
}

describe.skipIf(unavailable !== undefined)('kata-network hot-plug through the ports vcnet adds', () => {
  it('q35: add-iface plugs into a vcnet root port, traffic flows, del-iface unplugs', {
    timeout: 300_000,
  }, async () => {
    work = mkdtempSync(join(tmpdir(), 'vcnet-q35-'));
    const started = performance.now();
    // Nothing says "q35" to vcnet: attach records the sockets only. The boot NIC lands on pcie.0 (cold
    // plug is fine there); the runtime adds the port for hot-plug.
    const setup = await attachAndBootGuest(work, {
      sandbox: 'vmq',
      machine: 'q35',
      extraArgs: qemuHotplugPortArguments('q35', 1),
    });
    console.log(`q35 guest booted and configured in ${Math.round(performance.now() - started)} ms`);
    expect(JSON.parse(readFileSync(join(setup.stateDir, 'vmq', 'state.json'), 'utf8')).hypervisor).toEqual({
      kind: 'qemu',
      controlSocket: join(work, 'qmp.sock'),
    });
    await hotplugThroughPort(setup, 'vcnet-rp0', '10.209.0');
  });

  it("pc with pci.0 full: add-iface plugs into vcnet's pci-bridge, traffic flows, del-iface unplugs", {
    timeout: 300_000,
  }, async () => {
    work = mkdtempSync(join(tmpdir(), 'vcnet-pcbr-'));
    const setup = await attachAndBootGuest(work, { sandbox: 'vmb', extraArgs: qemuHotplugPortArguments('pc', 1) });
    // Whatever pci.0 has left goes to test devices, until QEMU finds no slot.
    const fillers = await withQmp(setup.guest.qmpPath, async (qmp) => {
      for (let n = 0; n < 32; n++) {
        const refused = await qmp.execute('device_add', { driver: 'pci-testdev', id: `filler${n}`, bus: 'pci.0' }).then(
          () => undefined,
          (error: Error) => error,
        );
        if (refused) {
          expect(refused.message).toMatch(/no slot/);
          return n;
        }
      }
      throw new Error('pci.0 never filled up');
    });
    expect(fillers).toBeGreaterThan(0);
    await hotplugThroughPort(setup, BRIDGE_ID, '10.219.0');
  });
});
