/**
 * Records that outlive a reboot (a state directory kept on disk). After a reboot a record's namespace
 * inode and cookie, the pids around it and its sockets' paths can all name new, unrelated objects.
 * Each record carries the boot id it was written under; one of another boot names nothing that still
 * exists: detach and vcnet-cni DEL drop it, gc removes it, watch and list-ifaces refuse it, and none
 * of them touches a namespace, a process or a socket because of it.
 *
 * A reboot is simulated the way it shows in the record: its `bootId` field is edited to another
 * boot's; the boot id read (/proc/sys/kernel/random/boot_id) stays real. The record keeps naming a
 * LIVE namespace (its inode and cookie match, a process runs in it) holding real plumbing, and
 * LIVE sockets at its hypervisor and agent paths: what a reused inode, cookie, pid and path look
 * like, so that acting on the record would show.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { closeSync, existsSync, openSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { nativeFileLock } from '../../../src/native/file-lock.js';
import { collectGarbage } from '../../../src/network/garbage-collector.js';
import { attachSandbox } from '../../../src/sandbox/attach.js';
import { detachSandbox } from '../../../src/sandbox/detach.js';
import { planSandboxDetach } from '../../../src/sandbox/plan.js';
import { watchSandbox } from '../../../src/sandbox/sandbox-watch.js';
import { cleanupAfterEach } from '../../helpers/cleanup.js';
import { vcnet } from '../../helpers/cli.js';
import { VCNET_CNI_PROGRAM, vcnetCniOverPod } from '../../helpers/cni.js';
import type { TestNamespace } from '../../helpers/namespace.js';
import { fingerprint, makePod, tcfilterConfig } from '../../helpers/pod.js';
import { until } from '../../helpers/until.js';

const cleanup = cleanupAfterEach();
const BOOT_ID = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();

/** Rewrites a record as if written in another boot; returns that boot's id. */
function fromAnotherBoot(file: string, change: (record: Record<string, unknown>) => void = () => {}): string {
  const record = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  const other = randomUUID();
  record.bootId = other;
  change(record);
  writeFileSync(file, `${JSON.stringify(record, null, 2)}\n`, { mode: 0o600 });
  return other;
}

/** A process that runs in the namespace (a "VM" whose pid a record could name), stopped after the test. */
async function runIn(pod: TestNamespace): Promise<number> {
  const holder: ChildProcess = spawn('ip', ['netns', 'exec', pod.name, 'sleep', '120'], { stdio: 'ignore' });
  cleanup.defer(() => holder.kill('SIGKILL'));
  const wanted = statSync(pod.path).ino;
  // 20 s is a budget for a busy machine, where `ip netns exec` may take seconds to get there (it was 2-3 s of tries).
  const entered = () => {
    try {
      return statSync(`/proc/${holder.pid}/ns/net`).ino === wanted;
    } catch {
      return false; // not started yet
    }
  };
  await until(entered, 'the process to enter the namespace', 20_000, 10);
  return holder.pid!;
}

/** A unix socket that counts who connects (a new VM's QMP or agent socket at a recorded path). */
async function listening(path: string): Promise<{ connectionsSoFar: () => Promise<number> }> {
  let count = 0;
  const server: Server = createServer((socket) => {
    count++;
    socket.destroy();
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  cleanup.defer(() => new Promise((resolve) => server.close(resolve)));
  return {
    /**
     * How many connected before now. The kernel queues connections in order: this connects too and
     * waits for the server to take (and close) its own, by when it has taken any made before, such as
     * those of a child process that ran synchronously while the event loop could take none.
     */
    connectionsSoFar: async () => {
      const ours = connect(path);
      await new Promise<void>((resolve, reject) => {
        ours.once('close', () => resolve());
        ours.once('error', reject);
      });
      return count - 1;
    },
  };
}

describe('records from an earlier boot', () => {
  it('attach and vcnet-cni ADD record the boot id they were written under', async () => {
    const stateDir = cleanup.directory('vcnet-boot-');
    const { pod } = makePod();
    await attachSandbox('now', tcfilterConfig(pod), { stateDirectory: stateDir });
    const record = JSON.parse(readFileSync(join(stateDir, 'now', 'state.json'), 'utf8')) as { bootId?: string };
    expect(record.bootId).toBe(BOOT_ID);
    expect((await detachSandbox('now', { stateDirectory: stateDir })).report?.undone).toBeGreaterThan(0);
  });

  it('detach drops it without touching the live namespace its identity matches, its process or its VM socket', async () => {
    const stateDir = cleanup.directory('vcnet-boot-');
    const { pod } = makePod();
    await attachSandbox('old', tcfilterConfig(pod), { stateDirectory: stateDir });
    const file = join(stateDir, 'old', 'state.json');
    const qmp = await listening(join(stateDir, 'qmp.sock'));
    const agent = await listening(join(stateDir, 'agent.sock'));
    const other = fromAnotherBoot(file, (record) => {
      record.hypervisor = { kind: 'qemu', controlSocket: join(stateDir, 'qmp.sock') };
      record.agentSocket = join(stateDir, 'agent.sock');
    });
    const pid = await runIn(pod);
    const before = fingerprint(pod);

    const planned = await planSandboxDetach('old', { stateDirectory: stateDir });
    expect(planned).toMatchObject({
      found: true,
      steps: [],
      fromEarlierBoot: { bootId: other, currentBootId: BOOT_ID },
    });

    // list-ifaces asks the agent at the recorded socket: a new VM's, after a reboot.
    const listed = vcnet(['list-ifaces', 'old', '--state-dir', stateDir]);
    expect(listed.status).not.toBe(0);
    expect(listed.stderr).toContain('earlier boot');

    const detached = vcnet(['detach', '--sandbox', 'old', '--state-dir', stateDir, '--json']);
    expect(detached.status, detached.stderr).toBe(0);
    expect(JSON.parse(detached.stdout)).toMatchObject({
      found: true,
      undone: 0,
      fromEarlierBoot: { bootId: other, currentBootId: BOOT_ID },
    });
    expect(await qmp.connectionsSoFar()).toBe(0);
    expect(await agent.connectionsSoFar()).toBe(0);
    expect(existsSync(file)).toBe(false);
    expect(fingerprint(pod)).toEqual(before);
    expect(existsSync(`/proc/${pid}`)).toBe(true);
  });

  it('vcnet detach says why it undid nothing', async () => {
    const stateDir = cleanup.directory('vcnet-boot-');
    const { pod } = makePod();
    await attachSandbox('old', tcfilterConfig(pod), { stateDirectory: stateDir });
    fromAnotherBoot(join(stateDir, 'old', 'state.json'));
    const before = fingerprint(pod);
    const detached = vcnet(['detach', '--sandbox', 'old', '--state-dir', stateDir]);
    expect(detached.status, detached.stderr).toBe(0);
    expect(detached.stdout).toMatch(/written in an earlier boot.*nothing undone.*record dropped/);
    expect(fingerprint(pod)).toEqual(before);
  });

  it('gc removes it ("from an earlier boot"), and never undoes its unfinished attach in the live namespace', async () => {
    const stateDir = cleanup.directory('vcnet-boot-');
    const { pod } = makePod();
    await attachSandbox('live', tcfilterConfig(pod), { stateDirectory: stateDir });
    // The same plumbing recorded by an attach killed in an earlier boot, in a namespace whose inode
    // and cookie the live pod has now: finishing it would take the live sandbox's tap and filters.
    const live = readFileSync(join(stateDir, 'live', 'state.json'), 'utf8');
    const oldFile = join(stateDir, 'old', 'state.json');
    spawnSync('mkdir', ['-m', '700', join(stateDir, 'old')]);
    writeFileSync(oldFile, live, { mode: 0o600 });
    fromAnotherBoot(oldFile, (record) => {
      record.id = 'old';
      record.attaching = true;
    });
    const before = fingerprint(pod);

    const dry = await collectGarbage({ namespaces: [pod.path], stateDirectories: [stateDir], dryRun: true });
    expect(dry.removed).toEqual([
      expect.objectContaining({ kind: 'state', name: 'old', detail: expect.stringContaining('from an earlier boot') }),
    ]);
    expect(existsSync(oldFile)).toBe(true);

    const report = await collectGarbage({ namespaces: [pod.path], stateDirectories: [stateDir] });
    expect(report.removed).toEqual([
      expect.objectContaining({ kind: 'state', name: 'old', detail: expect.stringContaining('from an earlier boot') }),
    ]);
    expect(report.failures).toEqual([]);
    expect(existsSync(oldFile)).toBe(false);
    expect(fingerprint(pod)).toEqual(before);
    expect((await detachSandbox('live', { stateDirectory: stateDir })).report?.undone).toBeGreaterThan(0);
  });

  it('watch refuses to start on it, and changes nothing', async () => {
    const stateDir = cleanup.directory('vcnet-boot-');
    const { pod } = makePod();
    await attachSandbox('old', tcfilterConfig(pod), { stateDirectory: stateDir });
    const file = join(stateDir, 'old', 'state.json');
    fromAnotherBoot(file);
    const before = fingerprint(pod);
    const started = await watchSandbox('old', { stateDirectory: stateDir, debounceMs: 50 }).then(
      async (watch) => {
        await watch.stop();
        return 'started';
      },
      (error: unknown) => error,
    );
    expect(started).toMatchObject({ code: 'VCNET_NETNS_GONE', message: expect.stringContaining('earlier boot') });
    expect(existsSync(file)).toBe(true);
    expect(fingerprint(pod)).toEqual(before);
  });

  it('vcnet-cni DEL succeeds, drops it and says so, leaving the namespace as it is', () => {
    const stateDir = cleanup.directory('vcnet-boot-cni-');
    const { pod } = makePod();
    const plugin = vcnetCniOverPod({
      name: 'vcnet-boot',
      pod,
      containerId: 'ctr-boot',
      stateDir: join(stateDir, 'cni'),
      registry: join(stateDir, 'registry'),
    });
    const run = plugin.run;
    const add = run('ADD');
    expect(add.status, add.stdout + add.stderr).toBe(0);
    const file = join(stateDir, 'cni', 'ctr-boot', 'interfaces', 'eth0', 'state.json');
    expect((JSON.parse(readFileSync(file, 'utf8')) as { bootId?: string }).bootId).toBe(BOOT_ID);
    fromAnotherBoot(file);
    const before = fingerprint(pod);
    const check = run('CHECK');
    expect(check.status).not.toBe(0);
    expect(check.stdout).toContain('earlier boot');
    const del = run('DEL');
    expect(del.status, del.stdout + del.stderr).toBe(0);
    expect(del.stderr).toContain('earlier boot');
    expect(existsSync(file)).toBe(false);
    expect(fingerprint(pod)).toEqual(before);
  });

  it('vcnet attach of the same sandbox id drops it unread and attaches, as after a reboot; its dry run does not refuse', () => {
    const stateDir = cleanup.directory('vcnet-boot-');
    const { pod: old } = makePod();
    const { pod } = makePod();
    const first = vcnet(['attach', '--sandbox', 'again', '--netns', old.path, '--state-dir', stateDir]);
    expect(first.status, first.stderr).toBe(0);
    const file = join(stateDir, 'again', 'state.json');
    const other = fromAnotherBoot(file);
    // The record names a live namespace with plumbing in it (a new pod whose inode and cookie the
    // record's happen to be, after a reboot): the new attach must not touch it.
    const oldBefore = fingerprint(old);

    const dry = vcnet(['attach', '--sandbox', 'again', '--netns', pod.path, '--state-dir', stateDir, '--dry-run']);
    expect(dry.status, dry.stderr).toBe(0);
    expect(existsSync(file)).toBe(true);

    const attached = vcnet(['attach', '--sandbox', 'again', '--netns', pod.path, '--state-dir', stateDir]);
    expect(attached.status, attached.stderr).toBe(0);
    expect(attached.stderr).toContain(`removed the stale record ${file}`);
    expect(attached.stderr).toContain(other);
    const record = JSON.parse(readFileSync(file, 'utf8')) as { bootId?: string; namespace: { path: string } };
    expect(record).toMatchObject({ bootId: BOOT_ID, namespace: { path: pod.path } });
    expect(fingerprint(old)).toEqual(oldBefore);
    const detached = vcnet(['detach', '--sandbox', 'again', '--state-dir', stateDir, '--json']);
    expect(detached.status, detached.stderr).toBe(0);
    expect((JSON.parse(detached.stdout) as { undone: number }).undone).toBeGreaterThan(0);
    expect(pod.exec('ip', ['-o', 'link', 'show'])).not.toContain('tap0_kata');
  });

  it('vcnet-cni ADD drops one left for its container and interface, says so, and attaches', () => {
    const stateDir = cleanup.directory('vcnet-boot-cni-');
    const { pod: old } = makePod();
    const { pod } = makePod();
    const pluginFor = (target: TestNamespace) =>
      vcnetCniOverPod({
        name: 'vcnet-boot',
        pod: target,
        containerId: 'ctr-again',
        stateDir: join(stateDir, 'cni'),
        registry: join(stateDir, 'registry'),
      });
    const run = (plugin: ReturnType<typeof pluginFor>, command: string) =>
      spawnSync(process.execPath, [VCNET_CNI_PROGRAM], {
        input: plugin.config,
        encoding: 'utf8',
        timeout: 30_000,
        env: plugin.environment(command),
      });
    const first = run(pluginFor(old), 'ADD');
    expect(first.status, first.stdout + first.stderr).toBe(0);
    const file = join(stateDir, 'cni', 'ctr-again', 'interfaces', 'eth0', 'state.json');
    const other = fromAnotherBoot(file);
    const oldBefore = fingerprint(old);

    const plugin = pluginFor(pod);
    const add = run(plugin, 'ADD');
    expect(add.status, add.stdout + add.stderr).toBe(0);
    expect(add.stderr).toContain('stale record');
    expect(add.stderr).toContain(other);
    expect(
      (JSON.parse(readFileSync(file, 'utf8')) as { bootId?: string; namespace: { path: string } }).namespace.path,
    ).toBe(pod.path);
    expect(fingerprint(old)).toEqual(oldBefore);
    const del = run(plugin, 'DEL');
    expect(del.status, del.stdout + del.stderr).toBe(0);
    expect(existsSync(file)).toBe(false);
  });

  it("gc keeps it, in its dry run too, while its sandbox's lock is held (a detach dropping it right now)", async () => {
    const stateDir = cleanup.directory('vcnet-boot-');
    const { pod } = makePod();
    await attachSandbox('held', tcfilterConfig(pod), { stateDirectory: stateDir });
    const file = join(stateDir, 'held', 'state.json');
    fromAnotherBoot(file);
    const fd = openSync(join(stateDir, '.locks', 'held'), 'r');
    cleanup.defer(() => closeSync(fd));
    expect(nativeFileLock.lockFile(fd, true)).toBe(true);
    for (const dryRun of [true, false]) {
      const report = await collectGarbage({ namespaces: [pod.path], stateDirectories: [stateDir], dryRun });
      // (The plumbing it names is this boot's orphan in this test, and gc's to list: not the record.)
      expect(report.removed.filter((item) => item.kind === 'state')).toEqual([]);
      expect(report.skipped).toEqual([
        expect.objectContaining({ file, beingChanged: true, reason: expect.stringContaining('from an earlier boot') }),
      ]);
      expect(existsSync(file)).toBe(true);
    }
  });
});
