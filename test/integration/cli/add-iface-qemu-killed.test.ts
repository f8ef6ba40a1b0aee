/**
 * add-iface and del-iface when QEMU is killed (SIGKILL) part-way. A VM whose QMP socket refuses
 * connections (or is gone) is gone, the rule watch uses: there is no NIC left to unplug, so the
 * host side is undone, the record updated, and the command says the VM is gone. They used to say
 * "the VM did not answer", keep everything, and a del-iface after it was refused ("cannot open
 * QMP"), leaving only `vcnet detach` of the whole sandbox. A VM alive but silent is still an error
 * with what is left (del-iface-vm-keeps-nic.test.ts).
 */
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { cleanupAfterEach } from '../../helpers/cleanup.js';
import { stateDirectoryPerTest, vcnet, vcnetAsync } from '../../helpers/cli.js';
import type { TestNamespace } from '../../helpers/namespace.js';
import { fingerprint, makePod } from '../../helpers/pod.js';
import { untilInfoNetwork } from '../../helpers/qmp-look.js';
import { qemuIntegrationSkipReason, sandboxVmFixture } from '../hypervisor/paused-qemu.js';

const skipReason = qemuIntegrationSkipReason();
if (skipReason) console.log(`skipping the add-iface-with-QEMU-killed test: ${skipReason}`);

const stateDirectory = stateDirectoryPerTest('vcnet-qemu-killed-');
const vm = sandboxVmFixture();
const cleanup = cleanupAfterEach();
const QMP_HOLD = fileURLToPath(new URL('../../helpers/qmp-hold.py', import.meta.url));

/** The relay on the recorded QMP socket in front of QEMU's (qmp-hold.py); resolves with the wait for its hold. */
async function holdQmpCommand(
  recordedPath: string,
  qemuPath: string,
  command: string,
  qemuPid: number,
): Promise<{ held: Promise<void> }> {
  const relay = spawn('python3', [QMP_HOLD, recordedPath, qemuPath, command, String(qemuPid)]);
  cleanup.defer(() => relay.kill('SIGKILL'));
  // One listener gathers stdout, and each wait checks it as it grows: a line may come in several
  // chunks ("held", then " device_add"), and a listener per wait appended each chunk once per wait.
  let output = '';
  let errors = '';
  const checks = new Set<() => void>();
  relay.stdout.on('data', (data: Buffer) => {
    output += String(data);
    for (const check of checks) check();
  });
  relay.stderr.on('data', (data: Buffer) => {
    errors += String(data);
  });
  const saw = (line: string) =>
    new Promise<void>((resolve, reject) => {
      const check = () => {
        if (!output.includes(line)) return;
        checks.delete(check);
        resolve();
      };
      checks.add(check);
      relay.once('exit', (code) =>
        reject(new Error(`qmp-hold.py exited ${code} before "${line}": ${output}${errors}`)),
      );
      check();
    });
  await saw('listening');
  return { held: saw(`held ${command}`) };
}

/**
 * What vcnet has in the pod besides eth0's plumbing: links (by name) and eth9's tc objects. The
 * whole fingerprint differs once QEMU is gone (tap0_kata's routes are "linkdown" until detach).
 */
function addedPlumbing(pod: TestNamespace): { links: string[]; eth9Qdiscs: string[]; eth9Filters: unknown[] } {
  return {
    links: pod.ipJson<Array<{ ifname: string }>>('link', 'show').map((link) => link.ifname),
    eth9Qdiscs: pod.tcJson<Array<{ kind: string }>>('qdisc', 'show', 'dev', 'eth9').map((qdisc) => qdisc.kind),
    eth9Filters: pod.tcJson<unknown[]>('filter', 'show', 'dev', 'eth9', 'ingress'),
  };
}

/**
 * Waits until QEMU has add-iface's NIC (net1) and the agent has been asked, i.e. add-iface plugged
 * it and waits for the guest. Each look at QEMU is a QMP session of its own; one that meets
 * add-iface's session waits for it (QEMU serves one client at a time).
 */
async function pluggedAndAsked(
  qmpPath: string,
  asked: () => boolean,
  adding: { output: () => { stderr: string } },
): Promise<void> {
  try {
    await untilInfoNetwork(
      qmpPath,
      (network) => network.includes('netdev-net1') && asked(),
      'net1 in QEMU and the agent asked',
    );
  } catch (error) {
    throw new Error(`${(error as Error).message}; add-iface's stderr: ${adding.output().stderr}`);
  }
}

function recordedEndpoints(directory: string, sandbox: string): string[] {
  const record = JSON.parse(readFileSync(join(directory, sandbox, 'state.json'), 'utf8'));
  return record.network.endpoints.map((endpoint: { name: string }) => endpoint.name);
}

describe.skipIf(skipReason !== undefined)('add-iface and del-iface when QEMU is killed', () => {
  it('the undo finds the VM gone: host side undone, says so; del-iface then removes eth0 on the host side', async () => {
    const { pod, node } = makePod();
    const before = fingerprint(pod);
    const { qemu, qmpPath, agentPath } = await vm.attachAndStart('qk', pod.path, stateDirectory());
    // The agent's port lives in QEMU: it takes the connection, never answers, and goes with QEMU.
    // The first request it receives is the interface update, sent only once attach has finished
    // (record written, NIC plugged): the kill comes after that, never inside the plug itself.
    const connections: Socket[] = [];
    let asked = false;
    const agent = createServer((socket) => {
      connections.push(socket);
      socket.on('data', () => {
        asked = true;
      });
    });
    await new Promise<void>((resolve) => agent.listen(agentPath, resolve));

    node.exec('ip', ['link', 'add', 'veth9', 'type', 'veth', 'peer', 'name', 'eth9', 'netns', pod.name]);
    pod.exec('ip', ['link', 'set', 'eth9', 'up']);
    pod.exec('ip', ['addr', 'add', '10.209.0.2/24', 'dev', 'eth9']);
    const withEth9 = addedPlumbing(pod);
    const request = join(stateDirectory(), 'add.json');
    writeFileSync(request, JSON.stringify({ device: 'eth9', name: 'net9' }));
    const adding = vcnetAsync(['add-iface', 'qk', request, '--state-dir', stateDirectory()]);
    try {
      // Plugged: the NIC is in QEMU and add-iface waits for the agent.
      await pluggedAndAsked(qmpPath, () => asked, adding);
      process.kill(qemu.pid, 'SIGKILL');
      for (const socket of connections) socket.destroy();
      const failed = await adding.done;
      expect(failed.status).toBe(1);
      expect(failed.stderr).toContain("sandbox qk's VM is gone");
      expect(failed.stderr).not.toContain('did not answer');
      expect(failed.stderr).not.toContain('is still in the VM');
      expect(failed.stderr).not.toMatch(/ left \d+ object|: left /);
      expect(failed.stderr).toContain('the interface was undone on the host side');
    } finally {
      adding.child.kill('SIGKILL');
      await adding.done;
      await new Promise<void>((resolve) => agent.close(() => resolve()));
    }
    expect(addedPlumbing(pod)).toEqual(withEth9);
    expect(recordedEndpoints(stateDirectory(), 'qk')).toEqual(['eth0']);
    // del-iface of the boot NIC with the VM gone: no NIC to unplug, the host side goes.
    writeFileSync(request, JSON.stringify({ name: 'eth0' }));
    const removed = vcnet(['del-iface', 'qk', request, '--state-dir', stateDirectory()]);
    expect(removed.status, removed.stderr).toBe(0);
    expect(removed.stderr).toContain("sandbox qk's VM is gone");
    expect(JSON.parse(removed.stdout)).toMatchObject({ name: 'eth0' });
    expect(recordedEndpoints(stateDirectory(), 'qk')).toEqual([]);
    pod.exec('ip', ['link', 'del', 'eth9']);
    expect(fingerprint(pod)).toEqual(before);
    const detached = vcnet(['detach', '--sandbox', 'qk', '--state-dir', stateDirectory()]);
    expect(detached.status, detached.stderr).toBe(0);
    expect(fingerprint(pod)).toEqual(before);
  }, 150_000);

  it('QEMU killed while it holds device_add: add-iface undoes the host side and says the VM is gone', async () => {
    const { pod, node } = makePod();
    const before = fingerprint(pod);
    const qemuQmpPath = join(stateDirectory(), 'qemu-qmp.sock');
    const { qemu, qmpPath } = await vm.attachAndStart('qa', pod.path, stateDirectory(), { qemuQmpPath });
    const { held } = await holdQmpCommand(qmpPath, qemuQmpPath, 'device_add', qemu.pid);
    node.exec('ip', ['link', 'add', 'veth9', 'type', 'veth', 'peer', 'name', 'eth9', 'netns', pod.name]);
    pod.exec('ip', ['link', 'set', 'eth9', 'up']);
    pod.exec('ip', ['addr', 'add', '10.209.0.2/24', 'dev', 'eth9']);
    const withEth9 = addedPlumbing(pod);
    const request = join(stateDirectory(), 'add.json');
    writeFileSync(request, JSON.stringify({ name: 'eth9' }));
    await vm.listenAgent(join(stateDirectory(), 'agent.sock'));
    const adding = vcnetAsync(['add-iface', 'qa', request, '--state-dir', stateDirectory()]);
    try {
      await held;
      process.kill(qemu.pid, 'SIGKILL');
      const failed = await adding.done;
      expect(failed.status).toBe(1);
      expect(failed.stderr).toContain("sandbox qa's VM is gone");
      expect(failed.stderr).toContain('the interface was undone on the host side');
      expect(failed.stderr).not.toContain('did not answer');
    } finally {
      adding.child.kill('SIGKILL');
      await adding.done;
    }
    expect(addedPlumbing(pod)).toEqual(withEth9);
    expect(recordedEndpoints(stateDirectory(), 'qa')).toEqual(['eth0']);
    pod.exec('ip', ['link', 'del', 'eth9']);
    const detached = vcnet(['detach', '--sandbox', 'qa', '--state-dir', stateDirectory()]);
    expect(detached.status, detached.stderr).toBe(0);
    expect(fingerprint(pod)).toEqual(before);
  }, 150_000);

  it('QEMU killed while it holds device_del: del-iface removes the host side, says the VM is gone; a second one finds nothing', async () => {
    const { pod } = makePod({ interfaces: 2 });
    const before = fingerprint(pod);
    const qemuQmpPath = join(stateDirectory(), 'qemu-qmp.sock');
    const { qemu, qmpPath, agentPath } = await vm.attachAndStart('qd', pod.path, stateDirectory(), { qemuQmpPath });
    await vm.listenAgent(agentPath);
    const { held } = await holdQmpCommand(qmpPath, qemuQmpPath, 'device_del', qemu.pid);
    const request = join(stateDirectory(), 'del.json');
    writeFileSync(request, JSON.stringify({ name: 'eth1' }));
    const removing = vcnetAsync(['del-iface', 'qd', request, '--state-dir', stateDirectory()]);
    let removed: Awaited<typeof removing.done>;
    try {
      await held;
      process.kill(qemu.pid, 'SIGKILL');
      removed = await removing.done;
    } finally {
      removing.child.kill('SIGKILL');
      await removing.done;
    }
    expect(removed.status, removed.stderr).toBe(0);
    expect(removed.stderr).toContain("sandbox qd's VM is gone");
    expect(removed.stderr).not.toContain('did not answer');
    expect(JSON.parse(removed.stdout)).toMatchObject({ name: 'eth1' });
    expect(recordedEndpoints(stateDirectory(), 'qd')).toEqual(['eth0']);
    // The second del-iface of it: no such interface any more (bad input), not "cannot open QMP".
    const again = vcnet(['del-iface', 'qd', request, '--state-dir', stateDirectory()]);
    expect(again.status).toBe(2);
    expect(again.stderr).toContain('an interface of sandbox qd: eth0');
    const detached = vcnet(['detach', '--sandbox', 'qd', '--state-dir', stateDirectory()]);
    expect(detached.status, detached.stderr).toBe(0);
    expect(fingerprint(pod)).toEqual(before);
  }, 150_000);

  it('add-iface killed after the hot-plug, run again, says the interface is already added (exit 1, not bad input)', async () => {
    const { pod, node } = makePod();
    const before = fingerprint(pod);
    const { qmpPath, agentPath } = await vm.attachAndStart('ka', pod.path, stateDirectory());
    // An agent that takes the connection and never answers: add-iface waits there, NIC plugged.
    // The first request it receives is the interface update, sent only once attach has finished
    // (record written, NIC plugged): the kill comes after that, never inside the plug itself.
    const connections: Socket[] = [];
    let asked = false;
    const agent = createServer((socket) => {
      connections.push(socket);
      socket.on('data', () => {
        asked = true;
      });
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
      await pluggedAndAsked(qmpPath, () => asked, adding);
      adding.child.kill('SIGTERM');
      await adding.done;
      for (const socket of connections) socket.destroy();
      const recorded = fingerprint(pod);

      const again = vcnet(['add-iface', 'ka', request, ...flag, '--json']);
      expect(again.status, again.stderr).toBe(1);
      const error = JSON.parse(again.stdout).error;
      expect(error).toMatchObject({ code: 'VCNET_INTERFACE_ALREADY_ADDED', value: 'eth9' });
      // Killed while it waited for the guest: the record says so (guestPending), and so does the error.
      expect(error.message).toBe(
        'interface eth9 is already added to sandbox ka, its NIC plugged: the add-iface that added it was stopped while it waited for the guest to configure it',
      );
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
  }, 150_000);
});
