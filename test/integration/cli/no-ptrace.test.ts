/**
 * vcnet without CAP_SYS_PTRACE (a service's CapabilityBoundingSet= of CAP_NET_ADMIN and
 * CAP_SYS_ADMIN) cannot look into another user's processes' /proc/PID/ns/net and fds, nor into those
 * /proc hides with hidepid=. A pod namespace whose path is gone (or is such a /proc/PID/ns/net)
 * may be held by one of them (a VMM run as its own user): gc, detach and vcnet-cni DEL must then
 * not take it for gone, drop its record and leave its tap and filters running. gc keeps the record
 * and says why; detach and DEL refuse ("not permitted": exit 3, CNI 108) naming CAP_SYS_PTRACE.
 */
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CLI, vcnet } from '../../helpers/cli.js';
import { cleanupNamespaces, type TestNamespace } from '../../helpers/namespace.js';
import { makePod } from '../../helpers/pod.js';

const CNI_MAIN = join(CLI, '..', '..', 'cni', 'main.js');
/** What a service of vcnet keeps: everything it needs but CAP_SYS_PTRACE. */
const WITHOUT_PTRACE = ['net_admin', 'sys_admin', 'dac_override', 'dac_read_search'];

const missingTool = ['setpriv', 'unshare', 'nsenter'].find(
  (tool) => spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0,
);
const skipReason = process.getuid?.() !== 0 ? 'needs root' : missingTool ? `${missingTool} is missing` : undefined;
if (skipReason) console.log(`skipping the tests without CAP_SYS_PTRACE: ${skipReason}`);

let stateDirectory: string;
const holders: ChildProcess[] = [];

beforeEach(() => {
  stateDirectory = mkdtempSync(join(tmpdir(), 'vcnet-noptrace-'));
});

afterEach(() => {
  for (const holder of holders.splice(0)) holder.kill('SIGKILL');
  cleanupNamespaces();
  rmSync(stateDirectory, { recursive: true, force: true });
});

/** `COMMAND ARGS` as root with only the capabilities `keep`, through setpriv (optionally inside `wrap`). */
function withCapabilities(keep: string[], command: string[], options: { input?: string; env?: object } = {}) {
  const caps = ['-all', ...keep.map((cap) => `+${cap}`)].join(',');
  const result = spawnSync('setpriv', [`--bounding-set=${caps}`, `--inh-caps=${caps}`, '--', ...command], {
    encoding: 'utf8',
    input: options.input ?? '',
    env: { ...process.env, ...options.env },
  });
  return { status: result.status ?? -1, stdout: result.stdout, stderr: result.stderr };
}

/** A process of uid 65534 (a VMM run as its own user) in the pod namespace; resolves with its pid. */
async function holdAsNobody(pod: TestNamespace): Promise<number> {
  const holder = spawn(
    'ip',
    ['netns', 'exec', pod.name, 'setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', 'sleep', '300'],
    { stdio: 'ignore' },
  );
  holders.push(holder);
  const wanted = statSync(pod.path).ino;
  for (let tries = 0; tries < 300; tries++) {
    try {
      const uid = /^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${holder.pid}/status`, 'utf8'))?.[1];
      if (uid === '65534' && statSync(`/proc/${holder.pid}/ns/net`).ino === wanted) return holder.pid!;
    } catch {
      // not started yet
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error('the holder never entered the namespace as uid 65534');
}

/** The link names and eth0's ingress filters, seen through the holder. */
function seenThrough(pid: number): { links: string; filters: string } {
  const run = (...args: string[]) =>
    execFileSync('nsenter', [`--net=/proc/${pid}/ns/net`, ...args], { encoding: 'utf8' });
  // Names only: a tap's operstate changes by itself (its carrier goes once attach closes it).
  const links = run('ip', '-br', 'link', 'show')
    .split('\n')
    .map((line) => line.split(/\s+/)[0])
    .filter(Boolean)
    .join(' ');
  return { links, filters: run('tc', 'filter', 'show', 'dev', 'eth0', 'ingress') };
}

interface GcJson {
  removed: Array<{ kind: string; name: string }>;
  skipped: Array<{ file: string; reason: string; namespaceUnseen?: boolean }>;
}

describe.skipIf(skipReason !== undefined)('without CAP_SYS_PTRACE, a namespace held by another user', () => {
  it('gc keeps the record of a sandbox whose path was deleted, and removes nothing; detach refuses (exit 3)', async () => {
    const { pod } = makePod();
    const state = ['--state-dir', stateDirectory];
    expect(vcnet(['attach', '--sandbox', 'np', '--netns', pod.path, ...state]).status).toBe(0);
    const pid = await holdAsNobody(pod);
    pod.delete(); // `ip netns del`: the VMM keeps the namespace, and the tap in it
    const record = join(stateDirectory, 'np', 'state.json');
    const before = seenThrough(pid);
    expect(before.links).toContain('tap0_kata');

    const gc = withCapabilities(WITHOUT_PTRACE, [process.execPath, CLI, 'gc', ...state, '--json']);
    expect(gc.status, gc.stderr).toBe(0);
    const report = JSON.parse(gc.stdout) as GcJson;
    expect(report.removed.filter((item) => item.name === 'np' || item.name === 'tap0_kata')).toEqual([]);
    const kept = report.skipped.find((item) => item.file === record);
    expect(kept?.namespaceUnseen).toBe(true);
    expect(kept?.reason).toMatch(/still exists cannot be told: \d+ process(es)? could not be looked into/);
    expect(kept?.reason).toContain('CAP_SYS_PTRACE');
    expect(gc.stderr).toContain(`vcnet: gc kept the record ${record}: `);
    expect(existsSync(record)).toBe(true);
    expect(seenThrough(pid)).toEqual(before);

    const detach = withCapabilities(WITHOUT_PTRACE, [process.execPath, CLI, 'detach', '--sandbox', 'np', ...state]);
    expect(detach.status, detach.stderr).toBe(3);
    expect(detach.stderr).toMatch(/^hint: .*CAP_SYS_PTRACE/m);
    expect(detach.stdout).not.toContain('detached');
    expect(existsSync(record)).toBe(true);
    expect(seenThrough(pid)).toEqual(before);

    // With every capability, detach finds it through the holder and undoes it all.
    const root = vcnet(['detach', '--sandbox', 'np', ...state]);
    expect(root.status, root.stderr).toBe(0);
    expect(root.stdout).toContain(`undone through /proc/${pid}/ns/net`);
    expect(seenThrough(pid).links).not.toContain('tap0_kata');
  }, 60_000);

  it("gc keeps the record of a sandbox attached through that process's /proc/PID/ns/net", async () => {
    const { pod } = makePod();
    const pid = await holdAsNobody(pod);
    pod.delete();
    const state = ['--state-dir', stateDirectory];
    // scan refuses it, and the hint names CAP_SYS_PTRACE, not a user namespace or a security module.
    const scan = withCapabilities(WITHOUT_PTRACE, [process.execPath, CLI, 'scan', '--netns', `/proc/${pid}/ns/net`]);
    expect(scan.status, scan.stderr).toBe(3);
    expect(scan.stderr).toMatch(/^hint: \/proc\/\d+\/ns\/net belongs to another process, .*lacks CAP_SYS_PTRACE/m);
    expect(scan.stderr).not.toContain('security module');
    const attach = vcnet(['attach', '--sandbox', 'pp', '--netns', `/proc/${pid}/ns/net`, ...state]);
    expect(attach.status, attach.stderr).toBe(0);
    const gc = withCapabilities(WITHOUT_PTRACE, [process.execPath, CLI, 'gc', ...state, '--json']);
    expect(gc.status, gc.stderr).toBe(0);
    const kept = (JSON.parse(gc.stdout) as GcJson).skipped.find((item) => item.file.includes('/pp/'));
    expect(kept?.reason).toContain(`/proc/${pid}/ns/net could not be looked at (permission denied)`);
    expect(existsSync(join(stateDirectory, 'pp', 'state.json'))).toBe(true);
    expect(seenThrough(pid).links).toContain('tap0_kata');
    expect(vcnet(['detach', '--sandbox', 'pp', ...state]).status).toBe(0);
  }, 60_000);

  it('gc in a mount namespace whose /proc is a new instance mounted hidepid=2 says so, and keeps the record', async () => {
    const { pod } = makePod();
    const state = ['--state-dir', stateDirectory];
    expect(vcnet(['attach', '--sandbox', 'hp', '--netns', pod.path, ...state]).status).toBe(0);
    const pid = await holdAsNobody(pod);
    pod.delete();
    // A new proc instance in a private mount namespace: the host's /proc is not changed.
    const script = `mount -t proc -o hidepid=2 proc /proc && exec "$@"`;
    const gc = withCapabilities(
      ['sys_admin', 'net_admin', 'dac_override', 'dac_read_search'],
      ['unshare', '-m', '--propagation', 'private', 'sh', '-c', script, 'sh', process.execPath, CLI, 'gc', ...state],
    );
    expect(gc.status, gc.stderr).toBe(0);
    expect(gc.stderr).toMatch(/gc kept the record .*\/hp\/state\.json: .*\/proc is mounted with hidepid=(invisible|2)/);
    expect(existsSync(join(stateDirectory, 'hp', 'state.json'))).toBe(true);
    expect(seenThrough(pid).links).toContain('tap0_kata');
    expect(vcnet(['detach', '--sandbox', 'hp', ...state]).status).toBe(0);
  }, 60_000);

  it('vcnet-cni DEL refuses (code 108) and keeps the record when the runtime removed the path first', async () => {
    const { pod } = makePod();
    const cniState = join(stateDirectory, 'cni');
    const config = JSON.stringify({
      cniVersion: '1.0.0',
      name: 'noptrace',
      type: 'vcnet-cni',
      stateDir: cniState,
      prevResult: {
        cniVersion: '1.0.0',
        interfaces: [{ name: 'eth0', sandbox: pod.path }],
        ips: [{ address: '10.200.0.2/24', gateway: '10.200.0.1', interface: 0 }],
      },
    });
    const env = (command: string) => ({
      CNI_COMMAND: command,
      CNI_CONTAINERID: 'noptrace',
      CNI_NETNS: pod.path,
      CNI_IFNAME: 'eth0',
      CNI_PATH: '/usr/lib/cni',
    });
    const asRoot = (command: string) =>
      spawnSync(process.execPath, [CNI_MAIN], {
        input: config,
        encoding: 'utf8',
        env: { ...process.env, ...env(command) },
      });
    const add = asRoot('ADD');
    expect(add.status, add.stdout + add.stderr).toBe(0);
    const pid = await holdAsNobody(pod);
    pod.delete();
    const record = join(cniState, 'noptrace', 'interfaces', 'eth0', 'state.json');
    expect(existsSync(record)).toBe(true);

    const del = withCapabilities(WITHOUT_PTRACE, [process.execPath, CNI_MAIN], { input: config, env: env('DEL') });
    expect(del.status).toBe(1);
    const error = JSON.parse(del.stdout) as { code: number; msg: string; details: string };
    expect(error.code).toBe(108);
    expect(error.details).toContain('CAP_SYS_PTRACE');
    expect(existsSync(record)).toBe(true);
    expect(seenThrough(pid).links).toContain('tap0_kata');
    expect(seenThrough(pid).filters).not.toBe('');

    const root = asRoot('DEL');
    expect(root.status, root.stdout + root.stderr).toBe(0);
    expect(existsSync(record)).toBe(false);
    expect(seenThrough(pid).links).not.toContain('tap0_kata');
  }, 60_000);

  it('a namespace path in a directory root may not search without CAP_DAC_*: the hint names them and the path', () => {
    const { pod } = makePod();
    const directory = join(stateDirectory, 'private');
    mkdirSync(directory, { mode: 0o700 });
    const path = join(directory, 'ns');
    writeFileSync(path, '');
    execFileSync('mount', ['--bind', pod.path, path]);
    try {
      chownSync(directory, 65534, 65534);
      const scan = withCapabilities(['net_admin', 'sys_admin'], [process.execPath, CLI, 'scan', '--netns', path]);
      expect(scan.status, scan.stderr).toBe(3);
      expect(scan.stderr).toContain(`hint: ${path}, or a directory on the way to it, is not open to this process`);
      expect(scan.stderr).toContain('CAP_DAC_READ_SEARCH');
      expect(scan.stderr).not.toContain('security module');
      const allowed = withCapabilities(
        ['net_admin', 'sys_admin', 'dac_read_search'],
        [process.execPath, CLI, 'scan', '--netns', path],
      );
      expect(allowed.status, allowed.stderr).toBe(0);
    } finally {
      execFileSync('umount', [path]);
    }
  }, 30_000);
});
