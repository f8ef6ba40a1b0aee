/**
 * add-iface when QEMU is killed (SIGKILL) after the NIC was plugged, while add-iface waits for the
 * agent: the undo cannot unplug the NIC through a VM that is gone. The error says the VM did not
 * answer (not that the NIC "is still in the VM") and points at `vcnet detach`, which then removes
 * everything. It used to hint "run the command again", which only fails again; del-iface, which
 * cannot reach the VM either, points at detach too.
 */
import { writeFileSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { QmpClient } from '../../../src/hypervisor/qmp.js';
import { stateDirectoryPerTest, vcnet, vcnetAsync } from '../../helpers/cli.js';
import { fingerprint, makePod } from '../../helpers/pod.js';
import { qemuIntegrationSkipReason, sandboxVmFixture } from '../hypervisor/paused-qemu.js';

const skipReason = qemuIntegrationSkipReason();
if (skipReason) console.log(`skipping the add-iface-with-QEMU-killed test: ${skipReason}`);

const stateDirectory = stateDirectoryPerTest('vcnet-qemu-killed-');
const vm = sandboxVmFixture();

describe.skipIf(skipReason !== undefined)('add-iface when QEMU is killed during the agent wait', () => {
  it('says the VM did not answer and hints vcnet detach, which removes everything', async () => {
    const { pod, node } = makePod();
    const before = fingerprint(pod);
    const { qemu, qmpPath, agentPath } = await vm.attachAndStart('qk', pod.path, stateDirectory());
    // The agent's port lives in QEMU: it takes the connection, never answers, and goes with QEMU.
    const connections: Socket[] = [];
    const agent = createServer((socket) => {
      connections.push(socket);
      socket.resume();
    });
    await new Promise<void>((resolve) => agent.listen(agentPath, resolve));

    node.exec('ip', ['link', 'add', 'veth9', 'type', 'veth', 'peer', 'name', 'eth9', 'netns', pod.name]);
    pod.exec('ip', ['link', 'set', 'eth9', 'up']);
    pod.exec('ip', ['addr', 'add', '10.209.0.2/24', 'dev', 'eth9']);
    const request = join(stateDirectory(), 'add.json');
    writeFileSync(request, JSON.stringify({ device: 'eth9', name: 'net9' }));
    const adding = vcnetAsync(['add-iface', 'qk', request, '--state-dir', stateDirectory()]);
    try {
      // Plugged: the NIC is in QEMU and add-iface waits for the agent.
      const deadline = Date.now() + 20_000;
      for (;;) {
        const qmp = await QmpClient.connect(qmpPath, { timeoutMs: 5_000 });
        const network = await qmp
          .execute<string>('human-monitor-command', { 'command-line': 'info network' })
          .finally(() => qmp.close());
        if (network.includes('netdev-net1') && connections.length > 0) break;
        if (Date.now() > deadline) throw new Error(`net1 never reached QEMU: ${adding.output().stderr}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      process.kill(qemu.pid, 'SIGKILL');
      for (const socket of connections) socket.destroy();
      const failed = await adding.done;
      expect(failed.status).toBe(1);
      expect(failed.stderr).toContain('the VM did not answer, so net1 could not be unplugged');
      expect(failed.stderr).not.toContain('is still in the VM');
      expect(failed.stderr).toContain(`vcnet detach --sandbox qk --state-dir ${stateDirectory()}`);
      expect(failed.stderr).not.toContain('run the command again');
    } finally {
      adding.child.kill('SIGKILL');
      await adding.done;
      await new Promise<void>((resolve) => agent.close(() => resolve()));
    }
    // del-iface cannot reach the VM either, and says what removes the rest.
    writeFileSync(request, JSON.stringify({ name: 'net9' }));
    const removed = vcnet(['del-iface', 'qk', request, '--state-dir', stateDirectory()]);
    expect(removed.status).toBe(1);
    expect(removed.stderr).toContain("sandbox qk's VM");
    expect(removed.stderr).toContain(`vcnet detach --sandbox qk --state-dir ${stateDirectory()}`);
    await vm.stopQemu();
    const detached = vcnet(['detach', '--sandbox', 'qk', '--state-dir', stateDirectory()]);
    expect(detached.status, detached.stderr).toBe(0);
    pod.exec('ip', ['link', 'del', 'eth9']);
    expect(fingerprint(pod)).toEqual(before);
  }, 90_000);

  it('add-iface killed after the hot-plug, run again, says the interface is already added (exit 1, not bad input)', async () => {
    const { pod, node } = makePod();
    const before = fingerprint(pod);
    const { qmpPath, agentPath } = await vm.attachAndStart('ka', pod.path, stateDirectory());
    // An agent that takes the connection and never answers: add-iface waits there, NIC plugged.
    const connections: Socket[] = [];
    const agent = createServer((socket) => {
      connections.push(socket);
      socket.resume();
    });
    await new Promise<void>((resolve) => agent.listen(agentPath, resolve));
    node.exec('ip', ['link', 'add', 'veth9', 'type', 'veth', 'peer', 'name', 'eth9', 'netns', pod.name]);
    pod.exec('ip', ['link', 'set', 'eth9', 'up']);
    pod.exec('ip', ['addr', 'add', '10.209.0.2/24', 'dev', 'eth9']);
    const request = join(stateDirectory(), 'add.json');
    writeFileSync(request, JSON.stringify({ name: 'eth9' }));
    const flag = ['--state-dir', stateDirectory()];
    const adding = vcnetAsync(['add-iface', 'ka', request, ...flag]);
    try {
      const deadline = Date.now() + 20_000;
      for (;;) {
        const qmp = await QmpClient.connect(qmpPath, { timeoutMs: 5_000 });
        const network = await qmp
          .execute<string>('human-monitor-command', { 'command-line': 'info network' })
          .finally(() => qmp.close());
        if (network.includes('netdev-net1') && connections.length > 0) break;
        if (Date.now() > deadline) throw new Error(`net1 never reached QEMU: ${adding.output().stderr}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      adding.child.kill('SIGTERM');
      await adding.done;
      for (const socket of connections) socket.destroy();
      const recorded = fingerprint(pod);

      const again = vcnet(['add-iface', 'ka', request, ...flag, '--json']);
      expect(again.status, again.stderr).toBe(1);
      const error = JSON.parse(again.stdout).error;
      expect(error).toMatchObject({ code: 'VCNET_INTERFACE_ALREADY_ADDED', value: 'eth9' });
      expect(error.message).toBe('interface eth9 is already added to sandbox ka');
      expect(error.hint).toContain(`\`vcnet configure-guest --sandbox ka --state-dir ${stateDirectory()}\``);
      expect(error.hint).toContain(`\`vcnet del-iface ka FILE --state-dir ${stateDirectory()}\``);
      expect(fingerprint(pod)).toEqual(recorded);
      // Another link under that name is still bad input.
      writeFileSync(request, JSON.stringify({ name: 'eth9', device: 'eth0' }));
      const other = vcnet(['add-iface', 'ka', request, ...flag]);
      expect(other.status).toBe(2);
      expect(other.stderr).toContain('a name no other interface of the sandbox has');
    } finally {
      adding.child.kill('SIGKILL');
      await adding.done;
      await new Promise<void>((resolve) => agent.close(() => resolve()));
    }
    await vm.stopQemu();
    const detached = vcnet(['detach', '--sandbox', 'ka', ...flag]);
    expect(detached.status, detached.stderr).toBe(0);
    pod.exec('ip', ['link', 'del', 'eth9']);
    expect(fingerprint(pod)).toEqual(before);
  }, 90_000);
});
