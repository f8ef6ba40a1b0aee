/**
 * A namespace whose path was deleted (`ip netns del`) while a process still runs in it (a VMM, a
 * holder) is not gone: what attach made lives on in it. detach, gc and the CLI find it by identity
 * through /proc/PID/ns/net and undo what was recorded there; only when nothing holds it is the
 * record dropped as gone.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { collectGarbage } from '../../../src/network/garbage-collector.js';
import { attachSandbox, detachSandbox, planSandboxDetach, readSandbox } from '../../../src/sandbox/service.js';
import { vcnet } from '../../helpers/cli.js';
import { cleanupNamespaces, type TestNamespace } from '../../helpers/namespace.js';
import { makePod, tcfilterConfig } from '../../helpers/pod.js';

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
  for (let tries = 0; tries < 200; tries++) {
    try {
      if (statSync(`/proc/${holder.pid}/ns/net`).ino === wanted) return holder.pid!;
    } catch {
      // not started yet
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error('the holder never entered the namespace');
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
