/**
 * The NIC arguments vcnet builds, fed to the real QEMU 7.2: it must start (paused, no kernel),
 * answer query-status over QMP, show the NICs wired to the right taps, and quit. Fd-based NICs get
 * their tap queue fds through spawn's stdio slots, renumbered.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { NetworkDevice } from '../../../src/hypervisor/device.js';
import { QemuProcessError } from '../../../src/hypervisor/errors.js';
import { spawnQemu } from '../../../src/hypervisor/qemu-process.js';
import { nativeShim } from '../../../src/native/binding.js';
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
if (skipReason) console.log(`skipping QEMU command-line integration tests: ${skipReason}`);
const vhostSkipReason = existsSync('/dev/vhost-net') ? undefined : '/dev/vhost-net is absent on this host';
if (!skipReason && vhostSkipReason) console.log(`skipping the vhost-net command-line test: ${vhostSkipReason}`);

describe.skipIf(skipReason !== undefined)('QEMU accepts the NIC command lines vcnet builds', () => {
  let fixture: PausedQemu | undefined;
  const openFds: number[] = [];

  beforeEach(() => {
    fixture = prepareNamespace();
  });

  afterEach(async () => {
    try {
      for (const fd of openFds.splice(0)) nativeShim().closeFd(fd);
    } finally {
      await stopPausedQemu(fixture);
      fixture = undefined;
    }
  });

  function tapFds(name: string, queues: number): number[] {
    const { fds } = nativeShim().createTun(fixture!.namespace.path, name, {
      tap: true,
      vnetHdr: true,
      multiQueue: queues > 1,
      queues,
      keepFds: true,
    });
    openFds.push(...fds);
    return fds;
  }

  async function startAndQuit(devices: NetworkDevice[]): Promise<string> {
    const qmp = await startPausedQemu(fixture!, devices);
    expect(await qmp.execute('query-status')).toMatchObject({ status: 'prelaunch', running: false });
    const network = await infoNetwork(qmp);
    const onBus = (await rootBusDevices(qmp)).map((device) => device.qdev_id);
    for (const device of devices) expect(onBus).toContain(device.id);
    await qmp.execute('quit');
    expect(await fixture!.qemu!.exited).toEqual({ code: 0, signal: null });
    return network;
  }

  it('one tap fd (fd=), renumbered to the child slot', async () => {
    const fds = tapFds('tapfd0', 1);
    const network = await startAndQuit([
      { id: 'net0', tapName: 'tapfd0', fds, queues: 1, guestMac: '02:42:ac:11:00:02' },
    ]);
    expect(network).toContain('net0: index=0,type=nic,model=virtio-net-pci,macaddr=02:42:ac:11:00:02');
    expect(network).toContain('netdev-net0: index=0,type=tap,fd=3');
  });

  it('multi-queue tap fds (fds=a:b:c with mq=on,vectors=2N+2), next to a single-queue one', async () => {
    const single = tapFds('tapfd1', 1);
    const multi = tapFds('tapfd2', 3);
    const network = await startAndQuit([
      { id: 'net0', fds: single, queues: 1, guestMac: '02:42:ac:11:00:02' },
      { id: 'net1', fds: multi, queues: 3, guestMac: '02:42:ac:11:00:03', mtu: 1400 },
    ]);
    expect(network).toContain('netdev-net0: index=0,type=tap,fd=3');
    // Child slots 4, 5, 6 carry the three queues.
    expect(network).toContain('netdev-net1: index=0,type=tap,fd=4');
    expect(network).toContain('netdev-net1: index=2,type=tap,fd=6');
    const [link] = fixture!.namespace.ipJson<
      Array<{ linkinfo: { info_data: { numqueues: number; numdisabled?: number } } }>
    >('-d', 'link', 'show', 'tapfd2');
    // QEMU holds our three queues (disabling all but the first until the guest turns on multi-queue).
    const info = link?.linkinfo.info_data;
    expect((info?.numqueues ?? 0) + (info?.numdisabled ?? 0)).toBe(3);
  });

  it('taps by name (ifname=, queues=N), single- and multi-queue, QEMU inside the namespace', async () => {
    fixture!.namespace.exec('ip', ['tuntap', 'add', 'dev', 'tapname0', 'mode', 'tap', 'vnet_hdr']);
    fixture!.namespace.exec('ip', ['tuntap', 'add', 'dev', 'tapname1', 'mode', 'tap', 'vnet_hdr', 'multi_queue']);
    const network = await startAndQuit([
      { id: 'net0', tapName: 'tapname0', queues: 1, guestMac: '02:42:ac:11:00:02', pciAddress: '5' },
      { id: 'net1', tapName: 'tapname1', queues: 4, guestMac: '02:42:ac:11:00:03' },
    ]);
    expect(network).toContain('netdev-net0: index=0,type=tap,ifname=tapname0,script=no,downscript=no');
    expect(network).toContain('netdev-net1: index=3,type=tap,ifname=tapname1,script=no,downscript=no');
  });

  it.skipIf(vhostSkipReason !== undefined)('tap fds with vhost fds (vhost=on,vhostfds=)', async () => {
    const fds = tapFds('tapvh0', 2);
    const vhostFds = nativeShim().openDevice('/dev/vhost-net', 2);
    openFds.push(...vhostFds);
    const network = await startAndQuit([{ id: 'net0', fds, vhostFds, queues: 2, guestMac: '02:42:ac:11:00:02' }]);
    expect(network).toContain('vhost=on');
  });

  it('why no queues= next to fds=: QEMU 7.2 refuses the combination', async () => {
    const fds = tapFds('tapfd3', 2);
    const qemu = await spawnQemu({
      startPaused: true,
      // Hands the two queue fds down as child slots 3 and 4 ...
      networkDevices: [{ id: 'net0', fds, queues: 2, guestMac: '02:42:ac:11:00:02' }],
      // ... and names them once more the way QEMU must reject.
      extraArguments: ['-netdev', 'tap,id=with-queues,fds=3:4,queues=2'],
    });
    try {
      const exit = await qemu.exited;
      expect(exit.code).not.toBe(0);
      expect(qemu.stderrOutput()).toMatch(/queues=.* are invalid with fds=/);
    } finally {
      await qemu.stop(500);
    }
  });

  it('a QEMU that dies at start-up is reported with its stderr', async () => {
    const qemu = await spawnQemu({
      qmpSocketPath: join(fixture!.directory, 'qmp.sock'),
      extraArguments: ['-device', 'no-such-device'],
    });
    try {
      const error = await qemu.connectQmp({ timeoutMs: 20_000 }).catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(QemuProcessError);
      expect((error as QemuProcessError).stderr).toContain("'no-such-device' is not a valid device model name");
    } finally {
      await qemu.stop(500);
    }
  });
});
