/**
 * A paused QEMU (no kernel: -S, -nodefaults, i440fx, TCG) inside a throwaway namespace, with QMP
 * connected. Enough to exercise command lines and hot-plug against the real QEMU without booting a
 * guest. `stopPausedQemu` tears everything down and is safe on a half-started fixture.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach } from 'vitest';
import type { NetworkDevice } from '../../../src/hypervisor/device.js';
import type { QemuMachineType } from '../../../src/hypervisor/qemu-hotplug-ports.js';
import { type QemuProcess, spawnQemu } from '../../../src/hypervisor/qemu-process.js';
import type { QmpClient } from '../../../src/hypervisor/qmp.js';
import { vcnet } from '../../helpers/cli.js';
import { makeNamespace, type TestNamespace } from '../../helpers/namespace.js';

export interface PausedQemu {
  namespace: TestNamespace;
  directory: string;
  qemu?: QemuProcess;
  qmp?: QmpClient;
}

/** Why the integration tests cannot run here, or undefined when they can. */
export function qemuIntegrationSkipReason(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (network namespaces, taps)';
  try {
    execFileSync('qemu-system-x86_64', ['--version'], { stdio: 'ignore' });
  } catch {
    return 'qemu-system-x86_64 is not installed';
  }
  return undefined;
}

/** Makes the namespace first, so the caller can put taps in it before QEMU starts. */
export function prepareNamespace(): PausedQemu {
  const namespace = makeNamespace('test');
  return { namespace, directory: mkdtempSync(join(tmpdir(), 'vcnet-qemu-')) };
}

export async function startPausedQemu(fixture: PausedQemu, networkDevices: NetworkDevice[] = []): Promise<QmpClient> {
  fixture.qemu = await spawnQemu({
    networkNamespacePath: fixture.namespace.path,
    qmpSocketPath: join(fixture.directory, 'qmp.sock'),
    startPaused: true,
    memoryMiB: 64,
    networkDevices,
  });
  fixture.qmp = await fixture.qemu.connectQmp({ timeoutMs: 20_000 });
  return fixture.qmp;
}

export async function stopPausedQemu(fixture: PausedQemu | undefined): Promise<void> {
  if (!fixture) return;
  try {
    await fixture.qmp?.close();
  } finally {
    try {
      await fixture.qemu?.stop(1_000);
    } finally {
      fixture.namespace.delete();
      rmSync(fixture.directory, { recursive: true, force: true });
    }
  }
}

/** `info network` through human-monitor-command: the netdevs and which NIC each feeds. */
export function infoNetwork(qmp: QmpClient): Promise<string> {
  return qmp.execute<string>('human-monitor-command', { 'command-line': 'info network' });
}

export interface PciDeviceInfo {
  slot: number;
  function: number;
  qdev_id: string;
  class_info: { desc?: string; class: number };
  id: { vendor: number; device: number };
}

export async function rootBusDevices(qmp: QmpClient): Promise<PciDeviceInfo[]> {
  const buses = await qmp.execute<Array<{ bus: number; devices: PciDeviceInfo[] }>>('query-pci');
  return buses.find((bus) => bus.bus === 0)?.devices ?? [];
}

/**
 * A sandbox's "running VM" for the CLI: a paused QEMU started in the pod namespace on the QMP socket
 * the sandbox recorded, and an agent socket that only accepts (enough for commands that fail or
 * refuse before a request reaches the guest). Registers its own cleanup after each test.
 */
export function sandboxVmFixture(): {
  start(options: Parameters<typeof spawnQemu>[0]): Promise<QemuProcess>;
  /**
   * `vcnet attach` of the pod with --qmp and --agent sockets in `stateDirectory`, then the paused VM
   * with the attached NIC (net0) on that QMP socket: the state a sandbox is in once its VM runs.
   */
  attachAndStart(
    sandbox: string,
    podPath: string,
    stateDirectory: string,
    /** `qemuQmpPath`: QEMU's own QMP socket, when the test puts a relay on the recorded one (qmpPath). */
    options?: { machine?: QemuMachineType; qemuQmpPath?: string },
  ): Promise<{ qemu: QemuProcess; qmpPath: string; agentPath: string; endpoint: { hwAddr: string; tap: string } }>;
  listenAgent(path: string): Promise<void>;
  stopQemu(): Promise<void>;
} {
  let qemu: QemuProcess | undefined;
  let agent: Server | undefined;
  const stopQemu = async () => {
    await qemu?.stop(1_000);
    qemu = undefined;
  };
  afterEach(async () => {
    await stopQemu();
    await new Promise<void>((resolve) => (agent ? agent.close(() => resolve()) : resolve()));
    agent = undefined;
  });
  return {
    async start(options) {
      qemu = await spawnQemu(options);
      await (await qemu.connectQmp({ timeoutMs: 20_000 })).close();
      return qemu;
    },
    async attachAndStart(sandbox, podPath, stateDirectory, options = {}) {
      const qmpPath = join(stateDirectory, 'qmp.sock');
      const agentPath = join(stateDirectory, 'agent.sock');
      const attached = vcnet([
        ...['attach', '--sandbox', sandbox, '--netns', podPath, '--state-dir', stateDirectory],
        ...['--qmp', qmpPath, '--agent', agentPath, '--vhost-net', 'off', '--json'],
      ]);
      if (attached.status !== 0) throw new Error(`vcnet attach failed: ${attached.stderr}`);
      const endpoint = JSON.parse(attached.stdout).endpoints[0] as { hwAddr: string; tap: string };
      const started = await this.start({
        networkNamespacePath: podPath,
        qmpSocketPath: options.qemuQmpPath ?? qmpPath,
        startPaused: true,
        memoryMiB: 64,
        ...(options.machine ? { machine: options.machine } : {}),
        networkDevices: [{ id: 'net0', tapName: endpoint.tap, queues: 1, guestMac: endpoint.hwAddr }],
      });
      return { qemu: started, qmpPath, agentPath, endpoint };
    },
    async listenAgent(path) {
      agent = createServer(() => {});
      await new Promise<void>((resolve) => agent!.listen(path, resolve));
    },
    stopQemu,
  };
}
