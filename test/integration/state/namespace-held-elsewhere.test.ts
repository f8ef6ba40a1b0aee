/**
 * A namespace whose path was deleted (`ip netns del`) while a process still runs in it (a VMM, a
 * holder) is not gone: what attach made lives on in it. detach, gc and the CLI find it by identity
 * through /proc/PID/ns/net and undo what was recorded there; only when nothing holds it is the
 * record dropped as gone.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { collectGarbage } from '../../../src/network/garbage-collector.js';
import { readSandbox } from '../../../src/network/recorded-network.js';
import { attachSandbox } from '../../../src/sandbox/attach.js';
import { detachSandbox } from '../../../src/sandbox/detach.js';
import { planSandboxDetach } from '../../../src/sandbox/plan.js';
import { vcnet } from '../../helpers/cli.js';
import { cleanupNamespaces, makeNamespace, type TestNamespace } from '../../helpers/namespace.js';
import { fingerprint, makePod, tcfilterConfig } from '../../helpers/pod.js';
import { until } from '../../helpers/until.js';

let stateDir: string;
const holders: ChildProcess[] = [];

beforeEach(() => {
  stateDir = mkdtempSync(join(tmpdir(), 'vcnet-held-'));
});

afterEach(() => {
  for (const holder of holders.splice(0)) holder.kill('SIGKILL');
  cleanupNamespaces();
  rmSync(stateDir, { recursive: true, force: true });
});

/** A process that enters the namespace and stays; resolves once it is in there. */
async function holdNamespace(pod: TestNamespace): Promise<number> {
  const holder = spawn('ip', ['netns', 'exec', pod.name, 'sleep', '60'], { stdio: 'ignore' });
  holders.push(holder);
  const wanted = statSync(pod.path).ino;
  // 20 s is a budget for a busy machine, where `ip netns exec` may take seconds to get there (it was 2-3 s of tries).
  await until(() => inNamespace(holder.pid!, wanted), 'the holder to enter the namespace', 20_000, 10);
  return holder.pid!;
}

function inNamespace(pid: number, inode: number): boolean {
  try {
    return statSync(`/proc/${pid}/ns/net`).ino === inode;
  } catch {
    return false; // not started yet
  }
}

/** `ip -br link` and eth0's ingress filters, seen through the holder. */
function seenThrough(pid: number): { links: string[]; filters: unknown[] } {
  const run = (...args: string[]) =>
    execFileSync('nsenter', [`--net=/proc/${pid}/ns/net`, ...args], { encoding: 'utf8' });
  const links = (JSON.parse(run('ip', '-j', 'link', 'show')) as Array<{ ifname: string }>).map((link) => link.ifname);
  const filters = JSON.parse(run('tc', '-j', 'filter', 'show', 'dev', 'eth0', 'ingress') || '[]') as unknown[];
  return { links: links.sort(), filters };
}

it('detach undoes attach through the process holding a namespace whose path is gone, and says so', async () => {
  const { pod } = makePod();
  await attachSandbox('held', tcfilterConfig(pod), { stateDirectory: stateDir });
  const pid = await holdNamespace(pod);
  expect(seenThrough(pid).links).toContain('tap0_kata');
  pod.delete();

  const planned = await planSandboxDetach('held', { stateDirectory: stateDir });
  expect(planned.namespaceGone).toBeUndefined();
  expect(planned.namespaceHeldAt).toBe(`/proc/${pid}/ns/net`);
  expect(planned.steps.length).toBeGreaterThan(0);

  const notices: Array<{ message: string }> = [];
  const onNotice = (message: unknown) => notices.push(message as { message: string });
  subscribe('vcnet:notice', onNotice);
  let result: Awaited<ReturnType<typeof detachSandbox>>;
  try {
    result = await detachSandbox('held', { stateDirectory: stateDir });
  } finally {
    unsubscribe('vcnet:notice', onNotice);
  }
  expect(result.namespaceGone).toBeUndefined();
  expect(result).toMatchObject({ found: true, namespaceHeldAt: `/proc/${pid}/ns/net`, heldBy: pid });
  expect(result.report?.undone).toBeGreaterThan(0);
  expect(notices.map((notice) => notice.message).join('\n')).toContain(`process ${pid} still runs in that namespace`);
  expect(readSandbox('held', stateDir)).toBeUndefined();
  const after = seenThrough(pid);
  expect(after.links).toEqual(['eth0', 'lo']);
  expect(after.filters).toEqual([]);
});

it('detach finds a namespace held only by an fd opened through its netns path, after `ip netns del`', async () => {
  const { pod } = makePod();
  const before = fingerprint(pod);
  await attachSandbox('fd-path', tcfilterConfig(pod), { stateDirectory: stateDir });
  // Opened by its /var/run/netns path: once that mount is gone, /proc/PID/fd/3 reads "/", not net:[INO].
  const keeper = spawn('sh', ['-c', `exec 3<${pod.path}; echo ready; exec sleep 300`], { stdio: 'pipe' });
  holders.push(keeper);
  await new Promise<void>((resolve) => keeper.stdout?.once('data', () => resolve()));
  const heldAt = `/proc/${keeper.pid}/fd/3`;
  pod.delete();
  const result = await detachSandbox('fd-path', { stateDirectory: stateDir });
  expect(result.namespaceGone).toBeUndefined();
  expect(result.namespaceHeldAt).toBe(heldAt);
  expect(readSandbox('fd-path', stateDir)).toBeUndefined();
  expect(fingerprint(throughPath(heldAt))).toEqual(before);
});

it('vcnet detach does the same, and drops the record as gone only once nothing holds the namespace', () => {
  const { pod } = makePod();
  const env = { VCNET_STATE_REGISTRY: join(stateDir, 'registry') };
  const attach = vcnet(['attach', '--sandbox', 'cli-held', '--netns', pod.path, '--state-dir', stateDir], env);
  expect(attach.status, attach.stderr).toBe(0);
  return holdNamespace(pod).then((pid) => {
    pod.delete();
    const detach = vcnet(['detach', '--sandbox', 'cli-held', '--state-dir', stateDir], env);
    expect(detach.status, detach.stderr).toBe(0);
    expect(detach.stdout).toContain(`through /proc/${pid}/ns/net (process ${pid} still runs in the namespace`);
    expect(detach.stdout).not.toContain('is gone, and what attach made went with it');
    expect(seenThrough(pid).links).toEqual(['eth0', 'lo']);
  });
});

it('gc named a deleted path looks in the namespace through its holder: an orphan goes, the live record stays', async () => {
  const { pod } = makePod();
  await attachSandbox('gc-held', tcfilterConfig(pod), { stateDirectory: stateDir });
  pod.exec('ip', ['tuntap', 'add', 'orphan0', 'mode', 'tap']);
  pod.exec('ip', ['link', 'set', 'orphan0', 'group', String(0x7663)]);
  const pid = await holdNamespace(pod);
  pod.delete();
  const report = await collectGarbage({ stateDirectories: [stateDir], namespaces: [pod.path] });
  expect(report.failures).toEqual([]);
  expect(report.removed).toEqual([expect.objectContaining({ kind: 'link', name: 'orphan0' })]);
  expect(readSandbox('gc-held', stateDir)).toBeDefined();
  expect(seenThrough(pid).links).toContain('tap0_kata');
  expect(seenThrough(pid).links).not.toContain('orphan0');
  await detachSandbox('gc-held', { stateDirectory: stateDir });
  expect(seenThrough(pid).links).toEqual(['eth0', 'lo']);
});

it('with nothing holding it, the namespace is gone and the record is dropped', async () => {
  const { pod } = makePod();
  await attachSandbox('really-gone', tcfilterConfig(pod), { stateDirectory: stateDir });
  pod.delete();
  const result = await detachSandbox('really-gone', { stateDirectory: stateDir });
  expect(result).toMatchObject({ found: true, namespaceGone: pod.path });
  expect(result.namespaceHeldAt).toBeUndefined();
});

/**
 * A namespace seen through `path` (nsenter), shaped for fingerprint(): only ipJson and tcJson are
 * read. `exec` runs any command in it.
 */
function throughPath(path: string): TestNamespace {
  const exec = (command: string, args: string[]) =>
    execFileSync('nsenter', [`--net=${path}`, command, ...args], { encoding: 'utf8' });
  return {
    exec,
    ipJson: <T>(...args: string[]) => JSON.parse(exec('ip', ['-j', ...args]) || '[]') as T,
    tcJson: <T>(...args: string[]) => JSON.parse(exec('tc', ['-j', ...args]) || '[]') as T,
  } as unknown as TestNamespace;
}

/** A namespace only process P holds (unshare), with eth0 from a node namespace, attached (macvtap) through /proc/P/ns/net. */
async function attachedThroughPid(id: string) {
  const node = makeNamespace('node');
  const unshared = spawn('unshare', ['--net', 'sh', '-c', 'echo ready; exec sleep 300'], { stdio: 'pipe' });
  holders.push(unshared);
  await new Promise<void>((resolve) => unshared.stdout?.once('data', () => resolve()));
  const path = `/proc/${unshared.pid}/ns/net`;
  node.exec('ip', ['link', 'add', `h${id}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', String(unshared.pid)]);
  const pod = throughPath(path);
  pod.exec('ip', ['link', 'set', 'lo', 'up']);
  pod.exec('ip', ['link', 'set', 'eth0', 'up']);
  pod.exec('ip', ['addr', 'add', '10.208.0.2/24', 'dev', 'eth0', 'nodad']);
  pod.exec('ip', ['route', 'add', 'default', 'via', '10.208.0.1']);
  const before = fingerprint(pod);
  await attachSandbox(
    id,
    { ...tcfilterConfig(pod), namespacePath: path, model: 'macvtap' },
    { stateDirectory: stateDir },
  );
  expect(fingerprint(pod)).not.toEqual(before);
  return { unshared, path, before };
}

it.each(['a bind mount outside /var/run/netns', 'an fd a process holds open'])(
  'a /proc/PID/ns/net record whose PID exited while %s keeps the namespace: gc keeps the record, detach undoes exactly',
  async (holder) => {
    const byMount = holder.startsWith('a bind mount');
    const id = byMount ? 'bm' : 'fd';
    const { unshared, path, before } = await attachedThroughPid(id);
    let heldAt: string;
    let mountPoint: string | undefined;
    if (byMount) {
      // As Docker's /var/run/docker/netns/* or rootless podman's /run/user/UID/netns/*.
      mountPoint = join(stateDir, 'netns-bm');
      writeFileSync(mountPoint, '');
      execFileSync('mount', ['--bind', path, mountPoint]);
      heldAt = mountPoint;
    } else {
      const keeper = spawn('sh', ['-c', `exec 3<${path}; echo ready; exec sleep 300`], { stdio: 'pipe' });
      holders.push(keeper);
      await new Promise<void>((resolve) => keeper.stdout?.once('data', () => resolve()));
      heldAt = `/proc/${keeper.pid}/fd/3`;
    }
    try {
      unshared.kill('SIGKILL');
      await new Promise<void>((resolve) => unshared.once('exit', () => resolve()));
      const report = await collectGarbage({ stateDirectories: [stateDir], namespaces: [path] });
      expect(report.removed).toEqual([]);
      expect(readSandbox(id, stateDir)).toBeDefined();
      const result = await detachSandbox(id, { stateDirectory: stateDir });
      expect(result.namespaceGone).toBeUndefined();
      expect(result.namespaceHeldAt).toBe(heldAt);
      expect(readSandbox(id, stateDir)).toBeUndefined();
      // eth0 has its MAC, addresses and route back, and no macvtap is left.
      expect(fingerprint(throughPath(heldAt))).toEqual(before);
    } finally {
      if (mountPoint) execFileSync('umount', [mountPoint]);
    }
  },
);

it('a namespace only an nsfs bind mount in another mount namespace keeps is found through /proc/PID/root: gc and detach work there', async () => {
  const { unshared, path, before } = await attachedThroughPid('mn');
  const pod = throughPath(path);
  pod.exec('ip', ['tuntap', 'add', 'orphan0', 'mode', 'tap']);
  pod.exec('ip', ['link', 'set', 'orphan0', 'group', String(0x7663)]);
  // The mount exists only in the keeper's private mount namespace (as a runtime's own mount of it),
  // at a mount point with a space (mountinfo writes it as \040).
  const mountPoint = join(stateDir, 'other mount ns');
  writeFileSync(mountPoint, '');
  const keeper = spawn(
    'unshare',
    [
      '-m',
      '--propagation',
      'private',
      'sh',
      '-c',
      `mount --bind "$1" "$2" && echo ready && exec sleep 300`,
      'sh',
      path,
      mountPoint,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  holders.push(keeper); // killed in afterEach, failed or not: its mount namespace and the mount go with it
  await new Promise<void>((resolve, reject) => {
    keeper.stdout?.once('data', () => resolve());
    keeper.once('exit', (code) => reject(new Error(`the keeper exited (${code}) before mounting`)));
  });
  const heldAt = `/proc/${keeper.pid}/root${mountPoint}`;
  const namespaceInode = statSync(path).ino;
  expect(statSync(heldAt).ino).toBe(namespaceInode);
  expect(statSync(mountPoint).ino).not.toBe(namespaceInode); // not mounted in this mount namespace
  unshared.kill('SIGKILL');
  await new Promise<void>((resolve) => unshared.once('exit', () => resolve()));

  const report = await collectGarbage({ stateDirectories: [stateDir], namespaces: [path] });
  expect(report.failures).toEqual([]);
  expect(report.removed).toEqual([expect.objectContaining({ kind: 'link', name: 'orphan0' })]);
  expect(readSandbox('mn', stateDir)).toBeDefined();
  const result = await detachSandbox('mn', { stateDirectory: stateDir });
  expect(result.namespaceGone).toBeUndefined();
  expect(result.namespaceHeldAt).toBe(heldAt);
  expect(readSandbox('mn', stateDir)).toBeUndefined();
  expect(fingerprint(throughPath(heldAt))).toEqual(before);
});

/**
 * The runtime unmounted the namespace and crashed before it unlinked the mount point: an empty
 * regular file stays at the recorded path. The path no longer holds the recorded namespace, as if
 * it were gone: the namespace is looked for where something still holds it, or taken for gone.
 */
function unmountLeavingFile(pod: TestNamespace): void {
  execFileSync('umount', [pod.path]);
  expect(statSync(pod.path).isFile()).toBe(true);
}

it('a stale file at the recorded path (mount gone, nothing holds the namespace): detach drops the record as gone', async () => {
  const { pod } = makePod();
  await attachSandbox('stale-gone', tcfilterConfig(pod), { stateDirectory: stateDir });
  unmountLeavingFile(pod);
  const planned = await planSandboxDetach('stale-gone', { stateDirectory: stateDir });
  expect(planned.namespaceGone).toBe(pod.path);
  const result = await detachSandbox('stale-gone', { stateDirectory: stateDir });
  expect(result).toMatchObject({ found: true, namespaceGone: pod.path });
  expect(readSandbox('stale-gone', stateDir)).toBeUndefined();
});

it('a stale file at the recorded path while a process holds the namespace: vcnet detach undoes through it', async () => {
  const { pod } = makePod();
  const env = { VCNET_STATE_REGISTRY: join(stateDir, 'registry') };
  const attach = vcnet(['attach', '--sandbox', 'stale-held', '--netns', pod.path, '--state-dir', stateDir], env);
  expect(attach.status, attach.stderr).toBe(0);
  const pid = await holdNamespace(pod);
  unmountLeavingFile(pod);
  const detach = vcnet(['detach', '--sandbox', 'stale-held', '--state-dir', stateDir], env);
  expect(detach.status, detach.stderr).toBe(0);
  expect(detach.stdout).toContain(`through /proc/${pid}/ns/net`);
  expect(detach.stderr).toContain(
    `its namespace path ${pod.path} is a regular file now, no namespace (its mount is gone)`,
  );
  expect(readSandbox('stale-held', stateDir)).toBeUndefined();
  expect(seenThrough(pid)).toEqual({ links: ['eth0', 'lo'], filters: [] });
});

it('gc --netns of a stale file says so and treats its records as gone ones: dropped, or kept while a process holds the namespace', async () => {
  const env = { VCNET_STATE_REGISTRY: join(stateDir, 'registry') };
  const { pod } = makePod();
  await attachSandbox('stale-gc', tcfilterConfig(pod), { stateDirectory: stateDir });
  pod.exec('ip', ['tuntap', 'add', 'orphan0', 'mode', 'tap']);
  pod.exec('ip', ['link', 'set', 'orphan0', 'group', String(0x7663)]);
  const pid = await holdNamespace(pod);
  unmountLeavingFile(pod);
  // Held: the record stays, the orphan goes, both through the holder.
  const held = vcnet(['gc', '--json', '--netns', pod.path, '--state-dir', stateDir], env);
  expect(held.status, held.stderr).toBe(0);
  expect(held.stderr).toContain(`${pod.path}: a regular file`);
  const heldReport = JSON.parse(held.stdout) as { removed: Array<{ kind: string; name: string }> };
  expect(heldReport.removed).toEqual([expect.objectContaining({ kind: 'link', name: 'orphan0' })]);
  expect(readSandbox('stale-gc', stateDir)).toBeDefined();
  expect(seenThrough(pid).links).toContain('tap0_kata');
  // Nothing holds it any more: the record goes as one of a gone namespace.
  const holder = holders.pop()!;
  holder.kill('SIGKILL');
  await new Promise<void>((resolve) => holder.once('exit', () => resolve()));
  const gone = vcnet(['gc', '--json', '--netns', pod.path, '--state-dir', stateDir], env);
  expect(gone.status, gone.stderr).toBe(0);
  const goneReport = JSON.parse(gone.stdout) as { removed: Array<{ kind: string; name: string }> };
  expect(goneReport.removed).toEqual([expect.objectContaining({ kind: 'state', name: 'stale-gc' })]);
  expect(readSandbox('stale-gc', stateDir)).toBeUndefined();
});

it('a regular file no record names is still refused (exit 2) by gc --netns and by attach --netns', () => {
  const env = { VCNET_STATE_REGISTRY: join(stateDir, 'registry') };
  const typo = join(stateDir, 'not-a-namespace');
  writeFileSync(typo, '');
  const gc = vcnet(['gc', '--netns', typo, '--state-dir', stateDir], env);
  expect(gc.status, gc.stderr).toBe(2);
  expect(gc.stderr).toContain('a regular file, not a network namespace');
  const attach = vcnet(['attach', '--sandbox', 'typo', '--netns', typo, '--state-dir', stateDir], env);
  expect(attach.status, attach.stderr).toBe(2);
  expect(attach.stderr).toContain('a regular file, not a network namespace');
});
