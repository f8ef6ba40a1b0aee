/**
 * `vcnet list`: what vcnet has recorded, one row per record (a CLI sandbox, a vcnet-cni interface),
 * with its state as the record and where its namespace lives now tell it. Read-only: the namespace
 * and the state directory are exactly as they were afterwards (no lock file made, nothing dropped).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { chmodSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CLI, killAtStep, pauseAtStep, stateDirectoryPerTest, vcnet, vcnetAsync } from '../../helpers/cli.js';
import { vcnetCniOverPod } from '../../helpers/cni.js';
import { fingerprint, makePod } from '../../helpers/pod.js';

const scratch = stateDirectoryPerTest('vcnet-list-');

interface Listing {
  id: string;
  kind: 'sandbox' | 'cni';
  state: string;
  namespacePath?: string;
  stateDirectory: string;
  file: string;
  containerId?: string;
  interfaceName?: string;
  hypervisor?: string;
  endpoints: Array<{ guestName: string; podLink: string; type: string; model: string }>;
  detail?: string;
  hint?: string;
  beingChanged?: true;
  namespaceHeldAt?: string;
  error?: { code: string; message: string };
}

/** Every file and directory under `root` with its size, mode and mtime: what a read-only command must not change. */
function treeOf(root: string): string[] {
  const entries: string[] = [];
  const walk = (directory: string) => {
    let names: string[];
    try {
      names = readdirSync(directory).sort();
    } catch {
      return;
    }
    for (const name of names) {
      const path = join(directory, name);
      const stats = statSync(path);
      entries.push(`${path} ${stats.mode.toString(8)} ${stats.size} ${stats.mtimeMs}`);
      if (stats.isDirectory()) walk(path);
    }
  };
  walk(root);
  return entries;
}

/** vcnet with the test's own registry, so attach registers its state directory nowhere shared. */
function run(args: string[]) {
  return vcnet(args, { VCNET_STATE_REGISTRY: join(scratch(), 'registry') });
}

function attach(sandbox: string, podPath: string, state: string) {
  const result = run(['attach', '--sandbox', sandbox, '--netns', podPath, '--state-dir', state]);
  expect(result.status, result.stderr).toBe(0);
}

function listJson(state: string): { status: number; rows: Listing[]; stderr: string } {
  const result = run(['list', '--state-dir', state, '--json']);
  return { status: result.status, rows: JSON.parse(result.stdout || 'null') as Listing[], stderr: result.stderr };
}

/** The one record `list --json` shows in `state`, which it lists with exit 0. */
function onlyRow(state: string): Listing {
  const { status, rows, stderr } = listJson(state);
  expect(status, stderr).toBe(0);
  expect(rows).toHaveLength(1);
  return rows[0]!;
}

describe('vcnet list', () => {
  it('lists a CLI attach as attached, with its endpoints, and changes nothing', () => {
    const { pod } = makePod({ interfaces: 2 });
    const state = join(scratch(), 'state');
    attach('listed', pod.path, state);
    const before = { pod: fingerprint(pod), files: treeOf(state) };

    const row = onlyRow(state);
    expect(row).toMatchObject({
      id: 'listed',
      kind: 'sandbox',
      state: 'attached',
      namespacePath: pod.path,
      stateDirectory: state,
      file: join(state, 'listed', 'state.json'),
    });
    expect(row.endpoints.map((endpoint) => endpoint.podLink).sort()).toEqual(['eth0', 'eth1']);
    expect(row.endpoints[0]).toMatchObject({ type: 'virtual', model: 'tcfilter' });
    expect(row.hypervisor).toBe('qemu');

    const text = run(['list', '--state-dir', state]);
    expect(text.status, text.stderr).toBe(0);
    const lines = text.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^SANDBOX\s+STATE\s+ENDPOINTS\s+HYPERVISOR\s+NAMESPACE$/);
    expect(lines[1]).toMatch(/^listed\s+attached\s+eth0<-eth0 virtual tcfilter, eth1<-eth1 virtual tcfilter\s+qemu\s+/);
    expect(lines[1]).toContain(pod.path);

    // No lock taken, nothing sent anywhere: one probe socket in the record's namespace, for its
    // cookie (an inode number is handed to the next namespace made), and nothing else.
    const trace = join(scratch(), 'trace');
    const traced = spawnSync(
      'strace',
      [
        '-f',
        '-qq',
        '-e',
        'trace=socket,setns,unshare,flock,sendto,sendmsg,sendmmsg,connect',
        '-o',
        trace,
        process.execPath,
        CLI,
        'list',
        '--state-dir',
        state,
      ],
      { encoding: 'utf8', env: { ...process.env, VCNET_STATE_REGISTRY: join(scratch(), 'registry') } },
    );
    expect(traced.status, traced.stderr).toBe(0);
    const calls = readFileSync(trace, 'utf8').trim().split('\n');
    expect(calls.filter((call) => /\b(flock|unshare|sendto|sendmsg|sendmmsg|connect)\(/.test(call))).toEqual([]);
    const sockets = calls.filter((call) => /\bsocket\(/.test(call));
    expect(sockets).toHaveLength(1);
    expect(sockets[0]).toContain('socket(AF_NETLINK, SOCK_RAW|SOCK_CLOEXEC|SOCK_NONBLOCK, NETLINK_ROUTE)');
    // Into the namespace (for the socket) and straight back.
    expect(calls.filter((call) => /\bsetns\(/.test(call))).toHaveLength(2);

    expect(fingerprint(pod)).toEqual(before.pod);
    expect(treeOf(state)).toEqual(before.files);
  });

  it('lists a vcnet-cni ADD by container id and interface name', () => {
    const { pod } = makePod();
    const state = join(scratch(), 'cni');
    const plugin = vcnetCniOverPod({
      name: 'vcnet-list',
      pod,
      containerId: 'ctr-list',
      stateDir: state,
      registry: join(scratch(), 'registry'),
    });
    const runPlugin = plugin.run;
    const add = runPlugin('ADD');
    expect(add.status, add.stdout + add.stderr).toBe(0);
    try {
      const row = onlyRow(state);
      expect(row).toMatchObject({
        id: 'ctr-list/eth0',
        kind: 'cni',
        containerId: 'ctr-list',
        interfaceName: 'eth0',
        state: 'attached',
        namespacePath: pod.path,
      });
      expect(row.endpoints).toHaveLength(1);
      const text = run(['list', '--state-dir', state]);
      expect(text.stdout).toMatch(/^ctr-list\/eth0\s+attached\s+/m);
    } finally {
      const del = runPlugin('DEL');
      expect(del.status, del.stdout + del.stderr).toBe(0);
    }
  });

  it('says an attach killed part-way is unfinished, with the gc command that finishes it', async () => {
    const { pod } = makePod({ interfaces: 2 });
    const state = join(scratch(), 'state');
    expect(await killAtStep(['attach', '--sandbox', 'killed', '--netns', pod.path, '--state-dir', state], 0)).toBe(
      true,
    );
    const before = { pod: fingerprint(pod), files: treeOf(state) };
    const row = onlyRow(state);
    expect(row).toMatchObject({ id: 'killed', state: 'unfinished' });
    expect(row.hint).toContain(`vcnet gc --netns ${pod.path} --state-dir ${state}`);
    const text = run(['list', '--state-dir', state]);
    expect(text.stdout).toMatch(/^killed\s+unfinished\s+/m);
    expect(text.stdout).toContain(`vcnet gc --netns ${pod.path} --state-dir ${state}`);
    expect(fingerprint(pod)).toEqual(before.pod);
    expect(treeOf(state)).toEqual(before.files);
  });

  it('says an attach at work right now is being changed by its process, without waiting for its lock', async () => {
    const { pod } = makePod();
    const state = join(scratch(), 'state');
    const running = vcnetAsync(['attach', '--sandbox', 'busy', '--netns', pod.path, '--state-dir', state], {
      ...pauseAtStep(0),
      VCNET_STATE_REGISTRY: join(scratch(), 'registry'),
    });
    try {
      const deadline = Date.now() + 20_000;
      while (!running.output().stderr.includes('paused at step 0')) {
        if (running.child.exitCode !== null || Date.now() > deadline)
          throw new Error(`attach never paused: ${running.output().stderr}`);
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
      const row = onlyRow(state);
      expect(row).toMatchObject({ id: 'busy', state: 'unfinished', beingChanged: true });
      expect(row.detail).toContain(`process ${running.child.pid} is changing it right now`);
      expect(row.hint).not.toContain('vcnet gc');
    } finally {
      running.child.kill('SIGKILL');
      await running.done;
    }
  });

  it('says what an undo the kernel refused in part left is unfinished, with detach (not gc, which keeps it) to finish it', () => {
    const { pod } = makePod();
    const state = join(scratch(), 'state');
    attach('left', pod.path, state);
    const file = join(state, 'left', 'state.json');
    const record = JSON.parse(readFileSync(file, 'utf8'));
    record.network.endpoints[0].plumbing.partial = true;
    writeFileSync(file, `${JSON.stringify(record, null, 2)}\n`, { mode: 0o600 });
    const row = onlyRow(state);
    expect(row).toMatchObject({ id: 'left', state: 'unfinished' });
    expect(row.detail).toContain('the undo of eth0 did not finish');
    expect(row.hint).toBe(`vcnet detach --sandbox left --state-dir ${state} removes what is left`);
  });

  it('says a record of an earlier boot is one, without looking at its namespace', () => {
    const { pod } = makePod();
    const state = join(scratch(), 'state');
    attach('old', pod.path, state);
    const file = join(state, 'old', 'state.json');
    const record = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
    record.bootId = randomUUID();
    writeFileSync(file, `${JSON.stringify(record, null, 2)}\n`, { mode: 0o600 });
    const row = onlyRow(state);
    expect(row).toMatchObject({ id: 'old', state: 'earlier-boot' });
    expect(row.detail).toContain(record.bootId as string);
    expect(run(['list', '--state-dir', state]).stdout).toMatch(/^old\s+earlier-boot\s+/m);
  });

  it('says a namespace deleted after the attach is gone', () => {
    const { pod } = makePod();
    const state = join(scratch(), 'state');
    attach('orphan', pod.path, state);
    pod.delete();
    const row = onlyRow(state);
    expect(row).toMatchObject({ id: 'orphan', state: 'namespace-gone', namespacePath: pod.path });
    expect(row.hint).toContain(`vcnet gc --netns ${pod.path} --state-dir ${state}`);
  });

  it('says where a namespace whose recorded path is gone lives now, and that it is attached there', () => {
    const { pod } = makePod();
    const state = join(scratch(), 'state');
    // A second path of the same namespace (ip netns attach, a runtime's own bind mount).
    const second = `${pod.path}-second`;
    writeFileSync(second, '');
    spawnSync('mount', ['--bind', pod.path, second]);
    try {
      attach('moved', pod.path, state);
      pod.delete();
      const row = onlyRow(state);
      expect(row).toMatchObject({ id: 'moved', state: 'attached', namespacePath: pod.path, namespaceHeldAt: second });
      expect(row.detail).toContain(`${pod.path} no longer holds the recorded namespace; it lives at ${second}`);
      expect(row.hint).toBe(`vcnet detach --sandbox moved --state-dir ${state} undoes it there`);
      const text = run(['list', '--state-dir', state]);
      expect(text.stdout).toMatch(/^moved\s+attached\s+/m);
      expect(text.stdout).toContain(`moved: attached: ${pod.path} no longer holds`);
      const detached = run(['detach', '--sandbox', 'moved', '--state-dir', state]);
      expect(detached.status, detached.stderr).toBe(0);
      expect(detached.stdout).toContain(`through ${second}`);
      expect(listJson(state).rows).toEqual([]);
    } finally {
      spawnSync('umount', [second]);
      rmSync(second, { force: true });
    }
  });

  it('an unfinished attach whose namespace a mount elsewhere holds: the gc its hint names finishes undoing it there', async () => {
    const { pod } = makePod();
    const before = fingerprint(pod);
    const state = join(scratch(), 'state');
    // Kept by a bind mount alone once its /var/run/netns entry goes (Docker's or rootless podman's own
    // mount of a pod namespace): no /var/run/netns entry, no process in it.
    const second = join(scratch(), 'held-netns');
    writeFileSync(second, '');
    spawnSync('mount', ['--bind', pod.path, second]);
    try {
      const args = ['attach', '--sandbox', 'cut', '--netns', pod.path, '--state-dir', state];
      expect(await killAtStep(args, 2)).toBe(true);
      pod.delete();
      const row = onlyRow(state);
      expect(row).toMatchObject({ id: 'cut', state: 'unfinished', namespaceHeldAt: second });
      const gc = `vcnet gc --netns ${pod.path} --state-dir ${state}`;
      expect(row.hint).toBe(`${gc} finishes undoing it`);

      const collected = run([...gc.split(' ').slice(1), '--json']);
      expect(collected.status, collected.stderr).toBe(0);
      expect(JSON.parse(collected.stdout).removed).toEqual(
        expect.arrayContaining([expect.objectContaining({ kind: 'state', name: 'cut' })]),
      );
      expect(listJson(state).rows).toEqual([]);
      // Nothing of the attach is left in the namespace the mount holds.
      const exec = (command: string, args: string[]) =>
        execFileSync('nsenter', [`--net=${second}`, command, ...args], { encoding: 'utf8' });
      const held = {
        exec,
        ipJson: (...args: string[]) => JSON.parse(exec('ip', ['-j', ...args]) || '[]'),
        tcJson: (...args: string[]) => JSON.parse(exec('tc', ['-j', ...args]) || '[]'),
      } as unknown as typeof pod;
      expect(fingerprint(held)).toEqual(before);
    } finally {
      spawnSync('umount', [second]);
      rmSync(second, { force: true });
    }
  });

  it('lists the rest and exits 1 naming a corrupt record, with its code', () => {
    const { pod } = makePod();
    const { pod: other } = makePod();
    const state = join(scratch(), 'state');
    attach('good', pod.path, state);
    attach('cut', other.path, state);
    const file = join(state, 'cut', 'state.json');
    writeFileSync(file, readFileSync(file, 'utf8').slice(0, 40));
    // A newer vcnet's record: whole JSON, so the namespace it names is still shown.
    const { pod: third } = makePod();
    attach('newer', third.path, state);
    const newer = join(state, 'newer', 'state.json');
    writeFileSync(newer, JSON.stringify({ ...JSON.parse(readFileSync(newer, 'utf8')), version: 99 }));
    const { status, rows, stderr } = listJson(state);
    expect(status).toBe(1);
    expect(stderr).toContain(file);
    // Sorted by id (readdir's order is the file system's).
    expect(rows.map((row) => row.id)).toEqual(['cut', 'good', 'newer']);
    const byId = new Map(rows.map((row) => [row.id, row]));
    expect(byId.get('good')).toMatchObject({ state: 'attached' });
    expect(byId.get('cut')).toMatchObject({ state: 'unreadable', file });
    expect(byId.get('cut')!.error).toMatchObject({ code: 'VCNET_STATE_INVALID' });
    expect(byId.get('cut')!.error!.message).toContain(file);
    expect(byId.get('newer')).toMatchObject({ state: 'unreadable', namespacePath: third.path });
    expect(byId.get('newer')!.error!.message).toContain('version is 99');
    expect(stderr).toContain(newer);
    const text = run(['list', '--state-dir', state]);
    expect(text.status).toBe(1);
    expect(text.stdout).toMatch(/^good\s+attached\s+/m);
    expect(text.stdout).toMatch(/^cut\s+unreadable\s+/m);
    expect(text.stdout).toContain('VCNET_STATE_INVALID');
    expect(text.stderr).toContain(file);
  });

  it('lists only the header (text) or [] (--json) for an empty or missing state directory', () => {
    for (const state of [scratch(), join(scratch(), 'missing')]) {
      const text = run(['list', '--state-dir', state]);
      expect(text.status, text.stderr).toBe(0);
      expect(text.stdout).toBe('SANDBOX  STATE  ENDPOINTS  HYPERVISOR  NAMESPACE\n');
      const { status, rows } = listJson(state);
      expect(status).toBe(0);
      expect(rows).toEqual([]);
    }
  });

  it('refuses a state directory another user could change (exit 2)', () => {
    const open = join(scratch(), 'open');
    mkdirSync(open);
    chmodSync(open, 0o777);
    const result = run(['list', '--state-dir', open]);
    expect(result.status).toBe(2);
    expect(result.stderr).toContain('writable by');
  });

  it('without --state-dir, covers the registered state directories too, naming each', () => {
    const { pod } = makePod();
    const state = join(scratch(), 'registered');
    attach('registered', pod.path, state);
    const result = run(['list', '--json']);
    // Other records (the machine's default directories) may be listed too, and may be unreadable.
    const rows = JSON.parse(result.stdout) as Listing[];
    expect(rows.find((row) => row.id === 'registered')).toMatchObject({ state: 'attached', stateDirectory: state });
    const text = run(['list']);
    expect(text.stdout.split('\n')[0]).toMatch(/\sSTATE DIRECTORY$/);
    expect(text.stdout).toMatch(new RegExp(`^registered\\s+attached\\s+.*${state}$`, 'm'));
  });
});
