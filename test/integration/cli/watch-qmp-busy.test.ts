/**
 * `vcnet watch` of a sandbox whose QEMU serves another QMP client: QEMU greets one client at a time,
 * and the watch waits for its turn (VCNET_QMP_CONNECT_TIMEOUT) to hot-plug a new pod link. It used to
 * wait holding the sandbox lock, so every other command on the sandbox (list-ifaces here) timed out
 * on the lock although nothing was wrong. The watch now waits for QMP without the lock, and plugs
 * the NIC once QMP is free.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { QmpClient } from '../../../src/hypervisor/qmp.js';
import { cleanupAfterEach } from '../../helpers/cleanup.js';
import { stateDirectoryPerTest, vcnet, vcnetAsync } from '../../helpers/cli.js';
import { fingerprint, makePod } from '../../helpers/pod.js';
import { untilInfoNetwork } from '../../helpers/qmp-look.js';
import { until } from '../../helpers/until.js';
import { qemuIntegrationSkipReason, sandboxVmFixture } from '../hypervisor/paused-qemu.js';

const skipReason = qemuIntegrationSkipReason();
if (skipReason) console.log(`skipping the watch-with-QMP-busy test: ${skipReason}`);

const stateDirectory = stateDirectoryPerTest('vcnet-watch-qmp-busy-');
const vm = sandboxVmFixture();
const cleanup = cleanupAfterEach();
const QMP_RELAY = fileURLToPath(new URL('../../helpers/qmp-hold.py', import.meta.url));

/** A plain relay (qmp-hold.py, holding nothing) on the recorded QMP socket: counts the connections it took. */
async function relayQmp(recordedPath: string, qemuPath: string, qemuPid: number): Promise<{ accepted: () => number }> {
  const relay = spawn('python3', [QMP_RELAY, recordedPath, qemuPath, '-', String(qemuPid)]);
  cleanup.defer(() => relay.kill('SIGKILL'));
  let output = '';
  relay.stdout.on('data', (data: Buffer) => {
    output += String(data);
  });
  relay.stderr.on('data', (data: Buffer) => {
    output += String(data);
  });
  await until(() => output.includes('listening'), 'the QMP relay to listen', 15_000);
  return { accepted: () => output.split('\n').filter((line) => line === 'accepted').length };
}

function recordedLinks(directory: string, sandbox: string): string[] {
  const record = JSON.parse(readFileSync(join(directory, sandbox, 'state.json'), 'utf8'));
  return record.network.endpoints.map(
    (endpoint: { properties: { link: { name: string } } }) => endpoint.properties.link.name,
  );
}

describe.skipIf(skipReason !== undefined)('watch while another client holds QMP', () => {
  it('waits for QMP without the sandbox lock: list-ifaces goes through meanwhile; the NIC is plugged once QMP is free', async () => {
    const { pod, node } = makePod();
    const before = fingerprint(pod);
    const state = ['--state-dir', stateDirectory()];
    const qemuQmpPath = join(stateDirectory(), 'qemu-qmp.sock');
    const { qemu, qmpPath, agentPath } = await vm.attachAndStart('wq', pod.path, stateDirectory(), { qemuQmpPath });
    const relay = await relayQmp(qmpPath, qemuQmpPath, qemu.pid);
    // An agent that takes connections and never answers: the watch's push waits for it, after the plug.
    const agentConnections: Socket[] = [];
    const agent = createServer((socket) => {
      agentConnections.push(socket);
      socket.resume();
    });
    await new Promise<void>((resolve) => agent.listen(agentPath, resolve));
    cleanup.defer(async () => {
      for (const socket of agentConnections) socket.destroy();
      await new Promise<void>((resolve) => agent.close(() => resolve()));
    });

    // The watch may wait a minute for QMP; the other command waits 10 s for the sandbox lock.
    const watch = vcnetAsync(['watch', '--sandbox', 'wq', '--debounce', '50', ...state], {
      VCNET_QMP_CONNECT_TIMEOUT: '60',
    });
    cleanup.defer(async () => {
      watch.child.kill('SIGKILL');
      await watch.done;
    });
    await until(() => watch.output().stderr.includes('watching sandbox wq'), 'the watch to start', 15_000);

    // Another client (a runtime, a monitor) holds QEMU's QMP: the next one gets no greeting until it closes.
    const holder = await QmpClient.connect(qemuQmpPath, { timeoutMs: 20_000 });
    let holderOpen = true;
    cleanup.defer(async () => {
      if (holderOpen) await holder.close();
    });
    const acceptedBefore = relay.accepted();
    node.exec('ip', ['link', 'add', 'veth9', 'type', 'veth', 'peer', 'name', 'eth9', 'netns', pod.name]);
    pod.exec('ip', ['addr', 'add', '10.209.0.2/24', 'dev', 'eth9']);
    pod.exec('ip', ['link', 'set', 'eth9', 'up']);
    // The watch read the new link and connected to QMP: it waits for QEMU's greeting now.
    await until(() => relay.accepted() > acceptedBefore, "the watch's QMP connection", 30_000);

    const listed = await vcnetAsync(['list-ifaces', 'wq', '--json', ...state], { VCNET_LOCK_TIMEOUT: '10' }).done;
    expect(listed.stderr).not.toContain('is being changed by process');
    expect(listed.status, listed.stderr).toBe(0);
    expect(listed.stdout).toContain('"eth0"');
    // Still waiting for QMP, and nothing of eth9 recorded yet.
    expect(watch.child.exitCode).toBeNull();
    expect(recordedLinks(stateDirectory(), 'wq')).toEqual(['eth0']);

    // QMP free: the watch attaches eth9 and plugs its NIC (net1), then waits for the agent.
    await holder.close();
    holderOpen = false;
    const network = await untilInfoNetwork(qemuQmpPath, (text) => text.includes('netdev-net1'), 'net1 in QEMU', {
      timeoutMs: 60_000,
      handshakeTimeoutMs: 15_000,
    });
    expect(network).toContain('netdev-net1');
    await until(() => recordedLinks(stateDirectory(), 'wq').includes('eth9'), 'eth9 recorded', 15_000);

    // The VM goes; the agent's connections with it: the watch stops, detach removes what is left.
    await vm.stopQemu();
    for (const socket of agentConnections) socket.destroy();
    watch.child.kill('SIGTERM');
    await watch.done;
    const detached = vcnet(['detach', '--sandbox', 'wq', ...state]);
    expect(detached.status, detached.stderr).toBe(0);
    pod.exec('ip', ['link', 'del', 'eth9']);
    expect(fingerprint(pod)).toEqual(before);
  }, 180_000);
});
