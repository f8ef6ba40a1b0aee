/**
 * NIC hot-plug against a real QEMU 7.2: paused, no kernel, i440fx, in a throwaway namespace with
 * taps in it. Without a guest OS nobody answers the ACPI unplug request, so the unplug tests check
 * the bounded wait and what QEMU actually leaves behind.
 */
import { openSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { NetworkDevice } from '../../../src/hypervisor/device.js';
import { DeviceUnplugTimeoutError, NetworkHotplugError, QmpCommandError } from '../../../src/hypervisor/errors.js';
import { hotplugNetworkDevice, unplugNetworkDevice } from '../../../src/hypervisor/qmp-network-hotplug.js';
import { nativeShim } from '../../../src/native/binding.js';
import { until } from '../../helpers/until.js';
import {
  infoNetwork,
  type PausedQemu,
  prepareNamespace,
  qemuIntegrationSkipReason,
  rootBusDevices,
  startPausedQemu,
  stopPausedQemu,
} from './paused-qemu.js';

const skipReason = qemuIntegrationSkipReason();
if (skipReason) console.log(`skipping QMP hot-plug integration tests: ${skipReason}`);

const VIRTIO_NET_DEVICE_ID = 0x1000; // transitional virtio-net PCI device id (vendor 0x1af4)

describe.skipIf(skipReason !== undefined)('QMP NIC hot-plug on a paused QEMU', () => {
  let fixture: PausedQemu | undefined;
  const heldFds: number[] = [];

  beforeEach(() => {
    fixture = prepareNamespace();
    fixture.namespace.exec('ip', ['tuntap', 'add', 'dev', 'tap1', 'mode', 'tap', 'vnet_hdr']);
    fixture.namespace.exec('ip', ['tuntap', 'add', 'dev', 'tapmq', 'mode', 'tap', 'vnet_hdr', 'multi_queue']);
  });

  afterEach(async () => {
    try {
      for (const fd of heldFds.splice(0)) nativeShim().closeFd(fd);
    } finally {
      await stopPausedQemu(fixture);
      fixture = undefined;
    }
  });

  const nic: NetworkDevice = { id: 'net1', tapName: 'tap1', queues: 1, guestMac: '02:42:ac:11:00:03' };

  it('plugs a NIC by tap name on pci.0 and QEMU shows it', async () => {
    const qmp = await startPausedQemu(fixture!);
    const plugged = await hotplugNetworkDevice(qmp, nic);
    // -nodefaults: slot 0 host bridge, slot 1 PIIX3, so the first free slot is 2.
    expect(plugged).toEqual({ deviceId: 'net1', netdevId: 'netdev-net1', pciPath: '02' });
    const nicOnBus = (await rootBusDevices(qmp)).find((device) => device.qdev_id === 'net1');
    expect(nicOnBus).toMatchObject({ slot: 2, function: 0, id: { vendor: 0x1af4, device: VIRTIO_NET_DEVICE_ID } });
    const network = await infoNetwork(qmp);
    expect(network).toContain('net1: index=0,type=nic,model=virtio-net-pci,macaddr=02:42:ac:11:00:03');
    expect(network).toContain('netdev-net1: index=0,type=tap,ifname=tap1,script=no,downscript=no');
    const peripherals = await qmp.execute<Array<{ name: string; type: string }>>('qom-list', {
      path: '/machine/peripheral',
    });
    expect(peripherals).toContainEqual({ name: 'net1', type: 'child<virtio-net-pci>' });
  });

  it('plugs a multi-queue NIC: QEMU attaches one tap queue per queue pair', async () => {
    const qmp = await startPausedQemu(fixture!);
    await hotplugNetworkDevice(qmp, {
      id: 'net2',
      tapName: 'tapmq',
      queues: 2,
      guestMac: '02:42:ac:11:00:04',
      pciAddress: '9',
    });
    const network = await infoNetwork(qmp);
    expect(network).toContain('netdev-net2: index=0,type=tap,ifname=tapmq');
    expect(network).toContain('netdev-net2: index=1,type=tap,ifname=tapmq');
    expect((await rootBusDevices(qmp)).find((device) => device.qdev_id === 'net2')).toMatchObject({ slot: 9 });
    type TunInfo = { multi_queue?: boolean; numqueues?: number; numdisabled?: number };
    const [link] = fixture!.namespace.ipJson<Array<{ linkinfo: { info_data: TunInfo } }>>(
      '-d',
      'link',
      'show',
      'tapmq',
    );
    // Two queues attached; QEMU keeps all but the first disabled until the guest driver turns multi-queue on.
    expect(link?.linkinfo.info_data).toMatchObject({ multi_queue: true, numqueues: 1, numdisabled: 1 });
  });

  it('unplug: without a guest OS nobody acks the ACPI request, so the bounded wait ends in a typed error', async () => {
    const qmp = await startPausedQemu(fixture!);
    await hotplugNetworkDevice(qmp, nic);
    const error = await unplugNetworkDevice(qmp, 'net1', { timeoutMs: 1_500 }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(DeviceUnplugTimeoutError);
    expect(error).toMatchObject({ code: 'VCNET_UNPLUG_TIMEOUT', deviceId: 'net1' });
    // What QEMU 7.2 does: the device and its netdev stay; the unplug request stays pending.
    expect((await rootBusDevices(qmp)).map((device) => device.qdev_id)).toContain('net1');
    expect(await infoNetwork(qmp)).toContain('netdev-net1');
    // Asked again while QEMU still waits for the guest ("already in the process of unplug"): the call
    // waits for DEVICE_DELETED again instead of failing on QEMU's refusal, and times out the same way.
    const again = await unplugNetworkDevice(qmp, 'net1', { timeoutMs: 1_500 }).catch((caught: unknown) => caught);
    expect(again).toBeInstanceOf(DeviceUnplugTimeoutError);
    expect(await infoNetwork(qmp)).toContain('netdev-net1');
    // Running the (kernel-less) machine does not change that: the firmware does not eject PCI devices.
    await qmp.execute('cont');
    expect(await qmp.execute('query-status')).toMatchObject({ status: 'running' });
    expect((await rootBusDevices(qmp)).map((device) => device.qdev_id)).toContain('net1');
  });

  it('unplug of an unknown id is a typed DeviceNotFound error', async () => {
    const qmp = await startPausedQemu(fixture!);
    const error = await unplugNetworkDevice(qmp, 'nosuchnic', { timeoutMs: 1_500 }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(QmpCommandError);
    expect(error).toMatchObject({ code: 'VCNET_QMP_COMMAND', command: 'device_del', errorClass: 'DeviceNotFound' });
    expect(qmp.listenerCount('event')).toBe(0);
  });

  it('rolls the netdev back when device_add fails on a duplicate device id', async () => {
    const qmp = await startPausedQemu(fixture!);
    // Another device already holds the id (netdev ids are separate, so netdev_add itself succeeds).
    await qmp.execute('device_add', { driver: 'virtio-rng-pci', id: 'net1' });
    const error = await hotplugNetworkDevice(qmp, nic).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(NetworkHotplugError);
    expect(error).toMatchObject({ stage: 'device_add', rolledBack: true });
    expect(((error as Error).cause as QmpCommandError).description).toContain("Duplicate device ID 'net1'");
    expect(await infoNetwork(qmp)).not.toContain('netdev-net1');
    // The tap was released with the netdev: another NIC can take it.
    await expect(hotplugNetworkDevice(qmp, { ...nic, id: 'net3' })).resolves.toMatchObject({ deviceId: 'net3' });
  });

  it('rolls the netdev back when device_add fails on an occupied slot', async () => {
    const qmp = await startPausedQemu(fixture!);
    const error = await hotplugNetworkDevice(qmp, { ...nic, pciAddress: '1' }).catch((caught: unknown) => caught);
    expect(error).toMatchObject({ stage: 'device_add', rolledBack: true });
    expect((error as Error).message).toContain('in use by PIIX3');
    expect(await infoNetwork(qmp)).not.toContain('netdev-net1');
  });

  it('hands the queue fds this process holds to QEMU with getfd (SCM_RIGHTS) instead of opening by name', async () => {
    const { fds } = nativeShim().createTun(fixture!.namespace.path, 'tapheld', {
      tap: true,
      vnetHdr: true,
      persist: true,
      keepFds: true,
    });
    heldFds.push(...fds);
    const qmp = await startPausedQemu(fixture!);
    // By name, QEMU cannot open a single-queue tap whose queue this process holds.
    const byName: NetworkDevice = { id: 'net4', tapName: 'tapheld', queues: 1, guestMac: '02:42:ac:11:00:05' };
    const error = await hotplugNetworkDevice(qmp, byName).catch((caught: unknown) => caught);
    expect(error).toMatchObject({ stage: 'netdev_add' });
    expect((error as Error).message).toMatch(/busy/i);
    // With the fd passed over the QMP socket it works, and QEMU holds the tap.
    const passed: NetworkDevice = { ...byName, id: 'net5', fds };
    await expect(hotplugNetworkDevice(qmp, passed)).resolves.toMatchObject({ deviceId: 'net5' });
    const info = await qmp.execute<string>('human-monitor-command', { 'command-line': 'info network' });
    expect(info).toMatch(/netdev-net5: .*fd=/);
  });

  it('passes a one-queue NIC with a vhost fd as QEMU takes it (vhostfd with fd, not vhostfds)', async () => {
    const { fds } = nativeShim().createTun(fixture!.namespace.path, 'tapvhost', {
      tap: true,
      vnetHdr: true,
      persist: true,
      keepFds: true,
    });
    heldFds.push(...fds);
    // /dev/null stands in for /dev/vhost-net (not every test host has it): QEMU checks the arguments first.
    const vhostFd = openSync('/dev/null', 'r+');
    heldFds.push(vhostFd);
    const qmp = await startPausedQemu(fixture!);
    const device: NetworkDevice = {
      id: 'net6',
      queues: 1,
      guestMac: '02:42:ac:11:00:06',
      fds,
      vhostFds: [vhostFd],
    };
    const outcome = await hotplugNetworkDevice(qmp, device).catch((caught: unknown) => caught);
    // QEMU 7.2 takes the arguments and then tries /dev/null as vhost-net: VHOST_SET_OWNER fails, and
    // the failed netdev trips an assertion (net_client_init1: `nc'), which ends QEMU. What matters is
    // that it got that far: "vhostfds= ... are invalid with fd=" would be an answer, not an abort.
    expect(outcome).toMatchObject({ stage: 'netdev_add' });
    expect((outcome as Error).message).not.toContain('invalid with fd=');
    const qemu = fixture!.qemu!;
    const said = () => `${(outcome as Error).message}\n${qemu.stderrOutput()}`;
    const vhostFailed = /vhost_set_owner failed|vhost-net requested but could not be initialized/;
    // Its exit, however long it takes to come; then its last stderr lines, which may be read after it.
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<undefined>((resolve) => {
      timer = setTimeout(resolve, 30_000, undefined);
    });
    const exit = await Promise.race([qemu.exited, deadline]);
    clearTimeout(timer);
    expect(exit, `QEMU still runs 30 s on:\n${said()}`).toBeDefined();
    await until(() => vhostFailed.test(said()), 'QEMU to say vhost-net failed').catch(() => {});
    expect(said()).toMatch(vhostFailed);
  });
});
