/**
 * add-iface and del-iface on an i440fx (pc) guest whose root bus pci.0 is full: the VM is booted with
 * vcnet's pci-bridge (qemuHotplugPortArguments('pc', 1)), its free pci.0 slots are then filled with
 * test devices, and the CLI, told only the QMP and agent sockets, plugs the NIC into the bridge. The
 * guest sees it (ACPI hot-plug behind a bridge), answers a ping through it, and ejects it again on
 * del-iface. It used to fail "PCI: no slot/function available" with the bridge empty.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BRIDGE_ID, qemuHotplugPortArguments } from '../../src/hypervisor/qemu-hotplug-ports.js';
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
if (unavailable) console.log(`skip pc bridge hot-plug VM test: ${unavailable}`);

let work: string | undefined;

afterEach(() => {
  cleanupNamespaces();
  if (work) rmSync(work, { recursive: true, force: true });
  work = undefined;
});

describe.skipIf(unavailable !== undefined)('kata-network hot-plug on a pc VM whose pci.0 is full', () => {
  it("add-iface plugs into vcnet's pci-bridge, traffic flows, del-iface unplugs", { timeout: 300_000 }, async () => {
    work = mkdtempSync(join(tmpdir(), 'vcnet-pcbr-'));
    const setup = await attachAndBootGuest(work, { sandbox: 'vmb', extraArgs: qemuHotplugPortArguments('pc', 1) });
    const { guest, pod, node, stateDir } = setup;
    try {
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

      const request = addSecondInterface(work, setup, '10.219.0');
      const added = vcnet(['add-iface', 'vmb', request, '--state-dir', stateDir]);
      expect(added.status, added.stderr).toBe(0);
      const bridge = await portOnBusZero(guest.qmpPath, BRIDGE_ID);
      expect(bridge.devices).toEqual(['net1']);
      expect(JSON.parse(added.stdout).pciPath).toMatch(new RegExp(`^${bridge.slot.toString(16).padStart(2, '0')}/`));
      expect(
        listedInterfaces(setup)
          .find((entry) => entry.name === 'net9')
          ?.IPAddresses.map((address) => address.address),
      ).toContain('10.219.0.2');
      expect(pingFrom(node.name, '10.219.0.2')).toContain(' 0% packet loss');

      const removed = vcnet([
        'del-iface',
        'vmb',
        writeRequest(work, 'del.json', { name: 'net9' }),
        '--state-dir',
        stateDir,
      ]);
      expect(removed.status, removed.stderr).toBe(0);
      expect((await portOnBusZero(guest.qmpPath, BRIDGE_ID)).devices).toEqual([]);
      expect(pod.exec('ip', ['link', 'show'])).not.toContain('tap1_kata');
    } finally {
      await guest.kill();
    }
    pod.exec('ip', ['link', 'del', 'eth9']);
    expect(vcnet(['detach', '--sandbox', 'vmb', '--state-dir', stateDir]).status).toBe(0);
    expect(fingerprint(pod)).toEqual(setup.before);
  });
});
