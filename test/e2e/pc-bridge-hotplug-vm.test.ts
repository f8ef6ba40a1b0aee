/**
 * add-iface and del-iface on an i440fx (pc) guest whose root bus pci.0 is full: the VM is booted with
 * vcnet's pci-bridge (qemuHotplugPortArguments('pc', 1)), its free pci.0 slots are then filled with
 * test devices, and the CLI, told only the QMP and agent sockets, plugs the NIC into the bridge. The
 * guest sees it (ACPI hot-plug behind a bridge), answers a ping through it, and ejects it again on
 * del-iface. It used to fail "PCI: no slot/function available" with the bridge empty.
 */
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { guestKernelCommandLine } from '../../src/hypervisor/guest-image.js';
import { BRIDGE_ID, type QueryPciBus, qemuHotplugPortArguments } from '../../src/hypervisor/qemu-hotplug-ports.js';
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
if (unavailable) console.log(`skip pc bridge hot-plug VM test: ${unavailable}`);

let work: string | undefined;

afterEach(() => {
  cleanupNamespaces();
  if (work) rmSync(work, { recursive: true, force: true });
  work = undefined;
});

/** One QMP session (QEMU serves one client at a time): connect, run, close. */
async function withQmp<T>(qmpPath: string, run: (qmp: QmpClient) => Promise<T>): Promise<T> {
  const qmp = await QmpClient.connect(qmpPath);
  try {
    return await run(qmp);
  } finally {
    await qmp.close();
  }
}

/** vcnet's bridge: its slot on pci.0 and the ids behind it. */
function bridgeOf(buses: QueryPciBus[]): { slot: number; devices: string[] } {
  const bridge = buses.find((bus) => bus.bus === 0)?.devices.find((device) => device.qdev_id === BRIDGE_ID);
  if (!bridge) throw new Error(`QEMU has no ${BRIDGE_ID}`);
  return { slot: bridge.slot, devices: (bridge.pci_bridge?.devices ?? []).map((device) => device.qdev_id) };
}

type ListedInterface = { name: string; IPAddresses: Array<{ address: string }> };

describe.skipIf(unavailable !== undefined)('kata-network hot-plug on a pc VM whose pci.0 is full', () => {
  it("add-iface plugs into vcnet's pci-bridge, traffic flows, del-iface unplugs", { timeout: 300_000 }, async () => {
    work = mkdtempSync(join(tmpdir(), 'vcnet-pcbr-'));
    const stateDir = join(work, 'state');
    const qmpLink = join(work, 'qmp.sock');
    const agentLink = join(work, 'agent.sock');
    const { pod, node } = makePod();
    const before = fingerprint(pod);
    const attached = vcnet([
      ...['attach', '--sandbox', 'vmb', '--netns', pod.path, '--state-dir', stateDir],
      ...['--qmp', qmpLink, '--agent', agentLink, '--json'],
    ]);
    expect(attached.status, attached.stderr).toBe(0);
    const output = JSON.parse(attached.stdout) as AttachedGuestNetwork & {
      hypervisor: { devices: Array<{ config: string[] }> };
    };
    const guest = await bootGuest({
      netnsPath: pod.path,
      extraArgs: [
        ...output.hypervisor.devices.flatMap((device) => device.config),
        ...qemuHotplugPortArguments('pc', 1),
      ],
      append: guestKernelCommandLine({ agent: true }),
    });
    symlinkSync(guest.qmpPath, qmpLink);
    symlinkSync(guest.agentSocketPath, agentLink);
    try {
      await pushBootNetwork(guest.agentSocketPath, output);
      // Whatever pci.0 has left goes to test devices, until QEMU finds no slot.
      const fillers = await withQmp(guest.qmpPath, async (qmp) => {
        for (let n = 0; n < 32; n++) {
          const refused = await qmp
            .execute('device_add', { driver: 'pci-testdev', id: `filler${n}`, bus: 'pci.0' })
            .then(
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

      node.exec('ip', ['link', 'add', 'veth9', 'type', 'veth', 'peer', 'name', 'eth9', 'netns', pod.name]);
      node.exec('ip', ['addr', 'add', '10.219.0.1/24', 'dev', 'veth9']);
      node.exec('ip', ['link', 'set', 'veth9', 'up']);
      pod.exec('ip', ['link', 'set', 'eth9', 'up']);
      const request = join(work, 'add.json');
      writeFileSync(
        request,
        JSON.stringify({
          device: 'eth9',
          name: 'net9',
          IPAddresses: [{ family: 0, address: '10.219.0.2', mask: '24' }],
        }),
      );
      const added = vcnet(['add-iface', 'vmb', request, '--state-dir', stateDir]);
      expect(added.status, added.stderr).toBe(0);
      const bridge = await withQmp(guest.qmpPath, async (qmp) =>
        bridgeOf(await qmp.execute<QueryPciBus[]>('query-pci')),
      );
      expect(bridge.devices).toEqual(['net1']);
      expect(JSON.parse(added.stdout).pciPath).toMatch(new RegExp(`^${bridge.slot.toString(16).padStart(2, '0')}/`));
      const listed = JSON.parse(
        vcnet(['list-ifaces', 'vmb', '--state-dir', stateDir, '--json']).stdout,
      ) as ListedInterface[];
      expect(listed.find((entry) => entry.name === 'net9')?.IPAddresses.map((address) => address.address)).toContain(
        '10.219.0.2',
      );
      expect(pingFrom(node.name, '10.219.0.2')).toContain(' 0% packet loss');

      const removal = join(work, 'del.json');
      writeFileSync(removal, JSON.stringify({ name: 'net9' }));
      const removed = vcnet(['del-iface', 'vmb', removal, '--state-dir', stateDir]);
      expect(removed.status, removed.stderr).toBe(0);
      const after = await withQmp(guest.qmpPath, async (qmp) =>
        bridgeOf(await qmp.execute<QueryPciBus[]>('query-pci')),
      );
      expect(after.devices).toEqual([]);
      expect(pod.exec('ip', ['link', 'show'])).not.toContain('tap1_kata');
    } finally {
      await guest.kill();
    }
    pod.exec('ip', ['link', 'del', 'eth9']);
    expect(vcnet(['detach', '--sandbox', 'vmb', '--state-dir', stateDir]).status).toBe(0);
    expect(fingerprint(pod)).toEqual(before);
  });
});
