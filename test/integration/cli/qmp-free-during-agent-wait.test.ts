/**
 * add-iface on a running VM (a real QEMU, paused) whose agent takes the connection and never answers:
 * while add-iface waits for the agent, another QMP client can use the VM. QEMU serves one QMP client
 * at a time, and add-iface (and watch) used to hold theirs through the whole agent wait (up to 60 s),
 * so every other QMP user timed out.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { stateDirectoryPerTest, vcnet, vcnetAsync } from '../../helpers/cli.js';
import { fingerprint, makePod } from '../../helpers/pod.js';
import { untilInfoNetwork } from '../../helpers/qmp-look.js';
import { until } from '../../helpers/until.js';
import { qemuIntegrationSkipReason, sandboxVmFixture } from '../hypervisor/paused-qemu.js';

const skipReason = qemuIntegrationSkipReason();
if (skipReason) console.log(`skipping the QMP-during-agent-wait test: ${skipReason}`);

const stateDirectory = stateDirectoryPerTest('vcnet-qmp-free-');
const vm = sandboxVmFixture();

describe.skipIf(skipReason !== undefined)('QMP while add-iface waits for the agent', () => {
  it('lets a second QMP client in once the NIC is plugged', async () => {
    const { pod, node } = makePod();
    const before = fingerprint(pod);
    const { qmpPath, agentPath } = await vm.attachAndStart('qf', pod.path, stateDirectory());
    // An agent that takes the connection and never answers: add-iface waits for it.
    const agent = createServer((socket) => socket.resume());
    await new Promise<void>((resolve) => agent.listen(agentPath, resolve));
    const agentClosed = () => new Promise<void>((resolve) => agent.close(() => resolve()));

    node.exec('ip', ['link', 'add', 'veth9', 'type', 'veth', 'peer', 'name', 'eth9', 'netns', pod.name]);
    pod.exec('ip', ['link', 'set', 'eth9', 'up']);
    pod.exec('ip', ['addr', 'add', '10.209.0.2/24', 'dev', 'eth9']);
    const beforeAdd = fingerprint(pod);
    const request = join(stateDirectory(), 'add.json');
    writeFileSync(request, JSON.stringify({ device: 'eth9', name: 'net9' }));
    const adding = vcnetAsync(['add-iface', 'qf', request, '--state-dir', stateDirectory()]);
    try {
      const record = () => readFileSync(join(stateDirectory(), 'qf', 'state.json'), 'utf8');
      await until(
        () => record().includes('"net9"') && pod.exec('ip', ['link', 'show']).includes('tap1_kata'),
        'the tap',
      );
      // The tap shows before add-iface has plugged the NIC (on a busy machine, before it has even
      // connected to QMP). QEMU serves one QMP client at a time, so each look is a connection of its
      // own, closed again: one held through the wait would keep add-iface's device_add out. A look
      // that meets add-iface's plug session waits for it and tries again; the whole wait (40 s) stays
      // under add-iface's agent wait (60 s), so a connection add-iface held through that wait still
      // fails here, with add-iface running.
      const network = await untilInfoNetwork(qmpPath, (text) => text.includes('netdev-net1'), 'net1 in QEMU', {
        timeoutMs: 40_000,
        handshakeTimeoutMs: 15_000,
      });
      expect(network).toContain('netdev-net1');
      // Still waiting for the agent: the QMP client above got in during that wait.
      expect(adding.child.exitCode).toBeNull();
    } finally {
      adding.child.kill('SIGKILL');
      await adding.done;
      await agentClosed();
    }
    expect(fingerprint(pod)).not.toEqual(beforeAdd);
    await vm.stopQemu();
    expect(vcnet(['detach', '--sandbox', 'qf', '--state-dir', stateDirectory()]).status).toBe(0);
    pod.exec('ip', ['link', 'del', 'eth9']);
    expect(fingerprint(pod)).toEqual(before);
  }, 150_000);
});
