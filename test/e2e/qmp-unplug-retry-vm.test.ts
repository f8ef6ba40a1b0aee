/**
 * The exported QMP unplugNetworkDevice called again after it timed out, against a real (TCG) guest on
 * the i440fx machine, where an unplug waits for the guest's ACPI eject:
 * - while QEMU still waits for the guest, a retry waits for DEVICE_DELETED again (it failed with
 *   "already in the process of unplug");
 * - once the guest has released the NIC, a retry deletes the netdev the timed-out call left (it
 *   failed with DeviceNotFound and left the netdev holding the tap);
 * - plugging an id that is still taken says so, instead of "nothing is left in the VM".
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DeviceUnplugTimeoutError, NetworkHotplugError, QmpCommandError } from '../../src/hypervisor/errors.js';
import type { QueryPciBus } from '../../src/hypervisor/qemu-hotplug-ports.js';
import type { QmpClient } from '../../src/hypervisor/qmp.js';
import { hotplugNetworkDevice, unplugNetworkDevice } from '../../src/hypervisor/qmp-network-hotplug.js';
import { vcnet } from '../helpers/cli.js';
import { guestUnavailableReason } from '../helpers/guest.js';
import { attachAndBootGuest, withQmp } from '../helpers/hotplug-guest.js';
import { cleanupNamespaces } from '../helpers/namespace.js';
import { until } from '../helpers/until.js';

const unavailable = guestUnavailableReason();
if (unavailable) console.log(`skip QMP unplug retry VM test: ${unavailable}`);

let work: string | undefined;

afterEach(() => {
  cleanupNamespaces();
  if (work) rmSync(work, { recursive: true, force: true });
  work = undefined;
});

const netdevs = (qmp: QmpClient) => qmp.execute<string>('human-monitor-command', { 'command-line': 'info network' });

async function hasDevice(qmp: QmpClient, id: string): Promise<boolean> {
  const buses = await qmp.execute<QueryPciBus[]>('query-pci');
  return buses.some((bus) => bus.devices.some((device) => device.qdev_id === id));
}

describe.skipIf(unavailable !== undefined)('QMP unplugNetworkDevice after a timeout', () => {
  it('waits again while the unplug is pending, deletes the netdev left once the guest released the NIC, and names a taken id', {
    timeout: 300_000,
  }, async () => {
    work = mkdtempSync(join(tmpdir(), 'vcnet-unplug-retry-'));
    const setup = await attachAndBootGuest(work, { sandbox: 'ur1', pushBootNetwork: false });
    const { guest, pod } = setup;
    try {
      // A persistent tap with no fd open: QEMU (in the pod namespace) opens it by name.
      pod.exec('ip', ['tuntap', 'add', 'dev', 'tap7', 'mode', 'tap']);
      const device = { id: 'net7', tapName: 'tap7', queues: 1, guestMac: '02:00:00:00:07:07' };
      // The guest ejects a NIC only once it has taken it in: an unplug asked before then waits for good.
      const guestHas = async () => {
        const listed = vcnet(['list-ifaces', 'ur1', '--state-dir', setup.stateDir, '--json']);
        return listed.status === 0 && listed.stdout.includes(device.guestMac);
      };
      const plug = async (qmp: QmpClient) => {
        await hotplugNetworkDevice(qmp, device);
        await until(guestHas, 'the guest to see net7', 60_000, 100);
      };
      await withQmp(guest.qmpPath, async (qmp) => {
        // (a) Retried at once: QEMU still waits for the guest's eject.
        await plug(qmp);
        await expect(unplugNetworkDevice(qmp, 'net7', { timeoutMs: 1 })).rejects.toBeInstanceOf(
          DeviceUnplugTimeoutError,
        );
        await unplugNetworkDevice(qmp, 'net7', { timeoutMs: 60_000 });
        expect(await hasDevice(qmp, 'net7')).toBe(false);
        expect(await netdevs(qmp)).not.toContain('netdev-net7');

        // (b) Retried after the guest released the NIC: only the netdev is left.
        await plug(qmp);
        await expect(unplugNetworkDevice(qmp, 'net7', { timeoutMs: 1 })).rejects.toBeInstanceOf(
          DeviceUnplugTimeoutError,
        );
        await until(async () => !(await hasDevice(qmp, 'net7')), 'the guest to release net7', 60_000, 100);
        expect(await netdevs(qmp)).toContain('netdev-net7');
        // (c) Its id is taken meanwhile, and the error says so.
        const replug = await hotplugNetworkDevice(qmp, device).catch((error: unknown) => error);
        expect(replug).toBeInstanceOf(NetworkHotplugError);
        expect((replug as NetworkHotplugError).hint).toMatch(/already has a device or netdev with this id/);
        expect((replug as NetworkHotplugError).hint).not.toMatch(/nothing is left/);
        await unplugNetworkDevice(qmp, 'net7', { timeoutMs: 60_000 });
        expect(await netdevs(qmp)).not.toContain('netdev-net7');
        // The same id plugs again now.
        await plug(qmp);
        await unplugNetworkDevice(qmp, 'net7', { timeoutMs: 60_000 });

        // An id with neither device nor netdev is still refused.
        const unknown = await unplugNetworkDevice(qmp, 'net8').catch((error: unknown) => error);
        expect(unknown).toBeInstanceOf(QmpCommandError);
        expect((unknown as QmpCommandError).errorClass).toBe('DeviceNotFound');
      });
    } finally {
      await guest.kill();
    }
    pod.exec('ip', ['tuntap', 'del', 'dev', 'tap7', 'mode', 'tap']);
    expect(vcnet(['detach', '--sandbox', 'ur1', '--state-dir', setup.stateDir]).status).toBe(0);
  });
});
