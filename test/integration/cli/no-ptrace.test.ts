/**
 * vcnet without CAP_SYS_PTRACE (a service's CapabilityBoundingSet= of CAP_NET_ADMIN and
 * CAP_SYS_ADMIN) cannot look into another user's processes' /proc/PID/ns/net and fds, nor into those
 * /proc hides with hidepid=. A pod namespace whose path is gone (or is such a /proc/PID/ns/net)
 * may be held by one of them (a VMM run as its own user): gc, detach and vcnet-cni DEL must then
 * not take it for gone, drop its record and leave its tap and filters running. gc keeps the record
 * and says why; detach refuses ("not permitted": exit 3) naming CAP_SYS_PTRACE and the way out. DEL
 * refuses (CNI 108) only while CNI_NETNS exists: when the runtime says the namespace is gone (CNI_NETNS
 * empty or not there) it drops the record with a warning, as CNI wants of a DEL of what is gone.
 * Kernel threads, which root without CAP_SYS_PTRACE may not look into either, never count.
 */
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import {
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CLI, vcnet } from '../../helpers/cli.js';
import { cniVariables, VCNET_CNI_PROGRAM, vcnetCniAlone } from '../../helpers/cni.js';
import { cleanupNamespaces, type TestNamespace } from '../../helpers/namespace.js';
import { makePod } from '../../helpers/pod.js';
import { until } from '../../helpers/until.js';

const PROC_FILTER_PRELOAD = fileURLToPath(new URL('../../helpers/proc-filter-preload.mjs', import.meta.url));
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
function withCapabilities(
  keep: string[],
  command: string[],
  options: { input?: string; env?: object; cwd?: string } = {},
) {
  const caps = ['-all', ...keep.map((cap) => `+${cap}`)].join(',');
  const result = spawnSync('setpriv', [`--bounding-set=${caps}`, `--inh-caps=${caps}`, '--', ...command], {
    encoding: 'utf8',
    ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
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
  const entered = () => {
    try {
      const uid = /^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${holder.pid}/status`, 'utf8'))?.[1];
      return uid === '65534' && statSync(`/proc/${holder.pid}/ns/net`).ino === wanted;
    } catch {
      return false; // not started yet
    }
  };
  // 20 s is a budget for a busy machine, where `ip netns exec` may take seconds to get there (it was 2-3 s of tries).
  await until(entered, 'the holder to enter the namespace as uid 65534', 20_000, 10);
  return holder.pid!;
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

/** NODE_OPTIONS that preload `module` into the vcnet process (after any the test run has). */
function preloaded(module: string): Record<string, string> {
  return { NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import ${module}`.trim() };
}

/** `pid`'s parent, its parent's parent... to pid 1, from /proc/PID/stat. */
function ancestorsOf(pid: number): number[] {
  const found: number[] = [];
  for (let current = pid; ; ) {
    let stat: string;
    try {
      stat = readFileSync(`/proc/${current}/stat`, 'utf8');
    } catch {
      return found;
    }
    const parent = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    if (!(parent > 0) || found.includes(parent)) return found;
    found.push(parent);
    current = parent;
  }
}

/** vcnet-cni ADD and DEL of eth0 in the namespace at `path` for container `containerId`, as root or without CAP_SYS_PTRACE. */
function cniOf(path: string, containerId: string) {
  const cniState = join(stateDirectory, 'cni');
  const config = JSON.stringify(
    vcnetCniAlone({ name: 'noptrace', namespacePath: path, settings: { stateDir: cniState } }),
  );
  const env = (command: string, extra: Record<string, string> = {}) => ({
    ...cniVariables(command, { containerId, namespacePath: path }),
    ...extra,
  });
  return {
    record: join(cniState, containerId, 'interfaces', 'eth0', 'state.json'),
    asRoot(command: string) {
      const result = spawnSync(process.execPath, [VCNET_CNI_PROGRAM], {
        input: config,
        encoding: 'utf8',
        env: { ...process.env, ...env(command) },
      });
      return { status: result.status ?? -1, stdout: result.stdout, stderr: result.stderr };
    },
    withoutPtrace(command: string, extra: Record<string, string> = {}, cwd?: string) {
      return withCapabilities(WITHOUT_PTRACE, [process.execPath, VCNET_CNI_PROGRAM], {
        input: config,
        env: env(command, extra),
        ...(cwd === undefined ? {} : { cwd }),
      });
    },
  };
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
    // The way out without it, for an operator who knows the VM is gone.
    expect(detach.stderr).toContain(`drop the record by hand: rm -r ${join(stateDirectory, 'np')} `);
    expect(detach.stdout).not.toContain('detached');
    expect(existsSync(record)).toBe(true);
    expect(seenThrough(pid)).toEqual(before);

    // With every capability, detach finds it through the holder and undoes it all.
    const root = vcnet(['detach', '--sandbox', 'np', ...state]);
    expect(root.status, root.stderr).toBe(0);
    expect(root.stdout).toContain(`undone through /proc/${pid}/ns/net`);
    expect(seenThrough(pid).links).not.toContain('tap0_kata');
  }, 60_000);

  // An unreadable record that still tells its namespace's inode is dropped once nothing holds that
  // inode: never when gc could not look everywhere it may be held.
  it('gc keeps an unreadable record of a sandbox whose path was deleted, saying why, and removes nothing', async () => {
    const { pod } = makePod();
    const state = ['--state-dir', stateDirectory];
    expect(vcnet(['attach', '--sandbox', 'nu', '--netns', pod.path, ...state]).status).toBe(0);
    const record = join(stateDirectory, 'nu', 'state.json');
    const damaged = JSON.parse(readFileSync(record, 'utf8'));
    delete damaged.network.endpoints[0].plumbing;
    writeFileSync(record, JSON.stringify(damaged, null, 2));
    const pid = await holdAsNobody(pod);
    pod.delete();
    const before = seenThrough(pid);
    expect(before.links).toContain('tap0_kata');

    const gc = withCapabilities(WITHOUT_PTRACE, [process.execPath, CLI, 'gc', ...state, '--json']);
    expect(gc.status, gc.stderr).toBe(0);
    const report = JSON.parse(gc.stdout) as GcJson;
    expect(report.removed).toEqual([]);
    const kept = report.skipped.find((item) => item.file === record);
    expect(kept?.namespaceUnseen).toBe(true);
    expect(kept?.reason).toContain('plumbing');
    expect(kept?.reason).toMatch(/still exists cannot be told: \d+ process(es)? could not be looked into/);
    expect(existsSync(record)).toBe(true);
    expect(seenThrough(pid)).toEqual(before);

    // Root sees the holder: the namespace is alive, so the record stays, skipped as unreadable.
    const rootGc = vcnet(['gc', ...state, '--json']);
    expect(rootGc.status, rootGc.stderr).toBe(0);
    const rootReport = JSON.parse(rootGc.stdout) as GcJson;
    expect(rootReport.removed).toEqual([]);
    expect(rootReport.skipped.find((item) => item.file === record)?.namespaceUnseen).toBeUndefined();
    expect(existsSync(record)).toBe(true);
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

  it('vcnet-cni DEL refuses (code 108) while CNI_NETNS names another namespace, and drops the record once the runtime removed it', async () => {
    const { pod } = makePod();
    const cni = cniOf(pod.path, 'noptrace');
    const add = cni.asRoot('ADD');
    expect(add.status, add.stdout + add.stderr).toBe(0);
    const pid = await holdAsNobody(pod);
    pod.delete();
    const record = cni.record;
    expect(existsSync(record)).toBe(true);

    // The path is there again, naming another namespace: the runtime has a namespace there, and the
    // recorded one may live on in a process vcnet-cni cannot look into. Refused: nothing is known gone.
    execFileSync('ip', ['netns', 'add', pod.name]);
    try {
      const del = cni.withoutPtrace('DEL');
      expect(del.status).toBe(1);
      const error = JSON.parse(del.stdout) as { code: number; msg: string; details: string };
      expect(error.code).toBe(108);
      expect(error.details).toContain('CAP_SYS_PTRACE');
      expect(error.details).toContain(`drop the record by hand: rm -r ${dirname(record)}`);
      expect(existsSync(record)).toBe(true);
    } finally {
      execFileSync('ip', ['netns', 'del', pod.name]);
    }
    expect(seenThrough(pid).links).toContain('tap0_kata');

    // The runtime removed it (CNI: a DEL of what is gone succeeds): dropped, with a warning. The tap
    // and filters live on in the namespace the VMM holds, and go with it when the VMM exits.
    const del = cni.withoutPtrace('DEL');
    expect(del.status, del.stdout + del.stderr).toBe(0);
    expect(del.stderr).toContain(
      `vcnet-cni DEL of noptrace/eth0: dropped the record ${record}: CNI_NETNS ${pod.path} does not exist, and the namespace it names (${pod.path}, inode `,
    );
    expect(del.stderr).toMatch(
      /while whether some process still holds it cannot be told \(\d+ process(es)? could not be looked into/,
    );
    expect(existsSync(record)).toBe(false);
    expect(seenThrough(pid).links).toContain('tap0_kata');
  }, 60_000);

  it('vcnet-cni DEL drops the record, with a warning, when CNI_NETNS is the file left where the namespace was mounted', async () => {
    const { pod } = makePod();
    const cni = cniOf(pod.path, 'np-stale');
    const add = cni.asRoot('ADD');
    expect(add.status, add.stdout + add.stderr).toBe(0);
    const pid = await holdAsNobody(pod);
    // The runtime unmounted the namespace and crashed before the unlink: the runtime has no
    // namespace there any more (containerd takes such a file for a closed one).
    execFileSync('umount', [pod.path]);
    expect(statSync(pod.path).isFile()).toBe(true);
    const del = cni.withoutPtrace('DEL');
    expect(del.status, del.stdout + del.stderr).toBe(0);
    expect(del.stderr).toContain(
      `vcnet-cni DEL of np-stale/eth0: dropped the record ${cni.record}: CNI_NETNS ${pod.path} is a regular file, not a network namespace (its mount is gone), and the namespace it names`,
    );
    expect(existsSync(cni.record)).toBe(false);
    expect(seenThrough(pid).links).toContain('tap0_kata');
  }, 60_000);

  it('vcnet-cni DEL refuses (code 108) when CNI_NETNS is a relative path that names nothing from its cwd: the namespace lives on', async () => {
    const { pod } = makePod();
    const cni = cniOf(pod.path, 'np-relative');
    const add = cni.asRoot('ADD');
    expect(add.status, add.stdout + add.stderr).toBe(0);
    const pid = await holdAsNobody(pod);
    pod.delete();

    // `ns/net` is the live namespace from /proc/PID, nothing from the state directory: a relative
    // path says nothing of whether the runtime still has the namespace.
    const del = cni.withoutPtrace('DEL', { CNI_NETNS: 'ns/net' }, stateDirectory);
    expect(del.status, del.stdout + del.stderr).toBe(1);
    const error = JSON.parse(del.stdout) as { code: number; msg: string; details: string };
    expect(error.code).toBe(108);
    expect(error.details).toContain('CNI_NETNS "ns/net" is a relative path');
    expect(error.details).toContain('pass the absolute path');
    expect(existsSync(cni.record)).toBe(true);
    expect(seenThrough(pid).links).toContain('tap0_kata');
    expect(seenThrough(pid).filters).toContain('mirred');

    // The runtime says it is gone (an empty CNI_NETNS): dropped, as before.
    const dropped = cni.withoutPtrace('DEL', { CNI_NETNS: '' });
    expect(dropped.status, dropped.stdout + dropped.stderr).toBe(0);
    expect(existsSync(cni.record)).toBe(false);
  }, 60_000);

  it('vcnet-cni DEL of a namespace that is gone succeeds with CNI_NETNS empty or naming the gone path, with a warning', () => {
    const first = makePod().pod;
    const second = makePod().pod;
    const empty = cniOf(first.path, 'np-empty');
    const gone = cniOf(second.path, 'np-gone');
    for (const cni of [empty, gone]) {
      const add = cni.asRoot('ADD');
      expect(add.status, add.stdout + add.stderr).toBe(0);
    }
    first.delete();
    second.delete();

    const withoutNetns = empty.withoutPtrace('DEL', { CNI_NETNS: '' });
    expect(withoutNetns.status, withoutNetns.stdout + withoutNetns.stderr).toBe(0);
    expect(withoutNetns.stdout).toBe('');
    expect(withoutNetns.stderr).toContain(
      `vcnet-cni DEL of np-empty/eth0: dropped the record ${empty.record}: CNI_NETNS is empty, and the namespace it names (${first.path}, inode `,
    );
    expect(existsSync(empty.record)).toBe(false);

    // Where the only processes it may not look into are the kernel's threads and its own ancestors
    // (the test runner, root with every capability): the warning counts the ancestors only.
    const shown = { ...preloaded(PROC_FILTER_PRELOAD), VCNET_TEST_PROC_SHOWS: 'kernel-threads,ancestors' };
    const withPath = gone.withoutPtrace('DEL', shown);
    expect(withPath.status, withPath.stdout + withPath.stderr).toBe(0);
    expect(withPath.stderr).toContain(
      `vcnet-cni DEL of np-gone/eth0: dropped the record ${gone.record}: CNI_NETNS ${second.path} does not exist`,
    );
    const counted =
      /cannot be told \((\d+) process(?:es)? could not be looked into \([^;]*; pids? ([\d, ]+)(, \.\.\.)?\)/.exec(
        withPath.stderr,
      );
    expect(counted, withPath.stderr).not.toBeNull();
    const pids = counted![2]!.split(', ').map(Number);
    const ancestors = [process.pid, ...ancestorsOf(process.pid)];
    expect(pids.filter((pid) => !ancestors.includes(pid))).toEqual([]);
    expect(Number(counted![1])).toBeLessThanOrEqual(ancestors.length);
    expect(existsSync(gone.record)).toBe(false);
  }, 60_000);

  it('a namespace whose path was deleted is gone when only kernel threads could not be looked into: gc and detach drop its record', () => {
    const state = ['--state-dir', stateDirectory];
    const first = makePod().pod;
    const second = makePod().pod;
    expect(vcnet(['attach', '--sandbox', 'kt1', '--netns', first.path, ...state]).status).toBe(0);
    expect(vcnet(['attach', '--sandbox', 'kt2', '--netns', second.path, ...state]).status).toBe(0);
    first.delete();
    second.delete();
    const onlyKernelThreads = { ...preloaded(PROC_FILTER_PRELOAD), VCNET_TEST_PROC_SHOWS: 'kernel-threads' };
    // Without CAP_SYS_PTRACE root may not look into any of them (their capabilities are not a subset of its own).
    const kernelThread = readdirSync('/proc').find((name) => /^\d+$/.test(name) && ancestorsOf(Number(name))[0] === 2);
    expect(kernelThread, 'no kernel thread on this machine').toBeDefined();

    const gc = withCapabilities(
      WITHOUT_PTRACE,
      [process.execPath, CLI, 'gc', '--json', ...state, '--netns', first.path],
      {
        env: onlyKernelThreads,
      },
    );
    expect(gc.status, gc.stderr).toBe(0);
    const report = JSON.parse(gc.stdout) as GcJson;
    expect(report.skipped).toEqual([]);
    expect(existsSync(join(stateDirectory, 'kt1', 'state.json'))).toBe(false);

    const detach = withCapabilities(WITHOUT_PTRACE, [process.execPath, CLI, 'detach', '--sandbox', 'kt2', ...state], {
      env: onlyKernelThreads,
    });
    expect(detach.status, detach.stderr).toBe(0);
    expect(existsSync(join(stateDirectory, 'kt2', 'state.json'))).toBe(false);
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
