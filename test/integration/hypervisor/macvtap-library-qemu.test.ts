/**
 * A macvtap endpoint attached through the library and handed to QEMU. A macvtap cannot be opened by
 * name: networkDevice() gave `tapName` only, buildQemuCommand made `ifname=tap0_kata` of it, and
 * QEMU exited "could not configure /dev/net/tun (tap0_kata): Invalid argument". Now networkDevice()
 * refuses that with what to do; openQueueFds() opens the /dev/tapN queues so spawnQemu passes them,
 * and hypervisorDeviceConfig() gives a launcher the path to open and the fd numbers (as the CLI).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { type QemuProcess, spawnQemu } from '../../../src/hypervisor/qemu-process.js';
import { defineNetworkConfig } from '../../../src/network/config.js';
import type { Endpoint } from '../../../src/network/endpoint/endpoint.js';
import { hypervisorDeviceConfig } from '../../../src/network/hypervisor-devices.js';
import { MacvtapDeviceError } from '../../../src/network/plan/macvtap-index.js';
import { attachSandbox } from '../../../src/sandbox/attach.js';
import { detachSandbox } from '../../../src/sandbox/detach.js';
import { cleanupNamespaces } from '../../helpers/namespace.js';
import { fingerprint, makePod } from '../../helpers/pod.js';
import { infoNetwork, qemuIntegrationSkipReason } from './paused-qemu.js';

const skipReason = qemuIntegrationSkipReason();
if (skipReason) console.log(`skipping the macvtap library QEMU test: ${skipReason}`);

let directory = '';
let qemu: QemuProcess | undefined;
let endpoints: readonly Endpoint[] = [];
afterEach(async () => {
  await qemu?.stop(1_000);
  qemu = undefined;
  for (const endpoint of endpoints) endpoint.closeFds();
  endpoints = [];
  cleanupNamespaces();
  if (directory) rmSync(directory, { recursive: true, force: true });
  directory = '';
});

describe.skipIf(skipReason !== undefined)('a library macvtap endpoint for QEMU', () => {
  it('refuses a device QEMU cannot open, opens its queues on request for spawnQemu, and names them for a launcher', async () => {
    directory = mkdtempSync(join(tmpdir(), 'vcnet-macvtap-lib-'));
    const stateDirectory = join(directory, 'state');
    const { pod } = makePod();
    const before = fingerprint(pod);
    const attached = await attachSandbox(
      'ml1',
      defineNetworkConfig({ namespacePath: pod.path, model: 'macvtap', queues: 2 }),
      { stateDirectory },
    );
    endpoints = attached.endpoints;
    const endpoint = attached.endpoints[0]!;
    const node = endpoint.plumbing?.tapDevicePath;
    expect(node).toMatch(/^\/dev\/tap\d+$/);

    const refused = (() => {
      try {
        return endpoint.networkDevice();
      } catch (error) {
        return error;
      }
    })();
    expect(refused).toBeInstanceOf(MacvtapDeviceError);
    expect((refused as MacvtapDeviceError).message).toContain(node);
    expect((refused as MacvtapDeviceError).hint).toMatch(/openQueueFds\(\).*hypervisorDeviceConfig\(\)/);

    // For a launcher: the path to open as each descriptor, and QEMU arguments naming them.
    const [config] = hypervisorDeviceConfig('qemu', attached.endpoints);
    expect(config?.fds).toEqual([
      { fd: 3, path: node },
      { fd: 4, path: node },
    ]);
    expect((config!.config as string[]).join(' ')).toContain('fds=3:4');

    // In this process: the queues opened here, handed down by spawnQemu.
    endpoint.openQueueFds();
    const device = endpoint.networkDevice();
    expect(device.fds).toHaveLength(2);
    qemu = await spawnQemu({
      networkNamespacePath: pod.path,
      qmpSocketPath: join(directory, 'qmp.sock'),
      startPaused: true,
      memoryMiB: 64,
      networkDevices: [device],
    });
    const qmp = await qemu.connectQmp({ timeoutMs: 20_000 });
    try {
      expect(await qmp.execute('query-status')).toMatchObject({ status: 'prelaunch' });
      // QEMU holds both queues: the child's descriptors 3 and 4.
      const network = await infoNetwork(qmp);
      expect(network).toContain('netdev-net0: index=0,type=tap,fd=3');
      expect(network).toContain('netdev-net0: index=1,type=tap,fd=4');
    } finally {
      await qmp.close();
    }
    await qemu.stop(1_000);
    qemu = undefined;
    endpoint.closeFds();
    await detachSandbox('ml1', { stateDirectory });
    expect(fingerprint(pod)).toEqual(before);
  }, 60_000);
});
