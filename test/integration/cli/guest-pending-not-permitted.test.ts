/**
 * `vcnet list` run by a user who may read the state directory but not look at root's processes
 * (another user's /proc/PID/ns/pid needs root or CAP_SYS_PTRACE; a /proc mounted hidepid= hides
 * them). Whether an add-iface still waits for the guest is told by its process: a reader that may
 * not look at it cannot tell, and said "stopped" as if it had checked. It must say it guesses, and
 * what would check. The add-iface is played by a `sleep` whose pid, start time and PID namespace
 * the test writes into the record's guestPending entry, as add-iface writes its own.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cleanupAfterEach } from '../../helpers/cleanup.js';
import { CLI, type CliResult, vcnet } from '../../helpers/cli.js';
import { makePod } from '../../helpers/pod.js';
import { until } from '../../helpers/until.js';

const missingTool = ['setpriv', 'unshare'].find((tool) => spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0);
const skipReason = process.getuid?.() !== 0 ? 'needs root' : missingTool ? `${missingTool} is missing` : undefined;
if (skipReason) console.log(`skipping the guest-pending tests of a reader without root: ${skipReason}`);

const cleanup = cleanupAfterEach();
const NOBODY = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'];

/** A sandbox attached to a new pod, its state directory readable by everyone (as a user's would be to list it). */
function attachedSandbox(id: string) {
  const { pod } = makePod();
  const directory = cleanup.directory('vcnet-guest-nobody-');
  const state = ['--state-dir', directory];
  const attached = vcnet(['attach', '--sandbox', id, '--netns', pod.path, ...state]);
  expect(attached.status, attached.stderr).toBe(0);
  cleanup.defer(() => vcnet(['detach', '--sandbox', id, ...state]));
  expect(spawnSync('chmod', ['-R', 'a+rX', directory]).status).toBe(0);
  return { directory, state, file: join(directory, id, 'state.json') };
}

/** Starts `command` (root's), killed after the test. */
function started(command: string[]): ChildProcess {
  const child = spawn(command[0] ?? '', command.slice(1), { stdio: 'ignore' });
  cleanup.defer(() => child.kill('SIGKILL'));
  return child;
}

function startTime(hostPid: number): string {
  const stat = readFileSync(`/proc/${hostPid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? '';
}

/**
 * Starts a `sleep` as pid 1 of a new PID namespace (unshare's child), killed after the test; returns
 * its pid as the host numbers it.
 */
async function sleepInChildPidNamespace(): Promise<number> {
  const unshare = started(['unshare', '--pid', '--fork', '--mount-proc', '--kill-child', 'sleep', '600']);
  let hostPid = 0;
  await until(() => {
    const children = readdirSync(`/proc/${unshare.pid}/task`).flatMap((task) =>
      readFileSync(`/proc/${unshare.pid}/task/${task}/children`, 'utf8').trim().split(/\s+/).filter(Boolean),
    );
    hostPid = Number(children[0] ?? 0);
    return hostPid > 0 && readFileSync(`/proc/${hostPid}/cmdline`, 'utf8').startsWith('sleep');
  }, 'the sleep in its PID namespace');
  return hostPid;
}

/** Writes a guestPending entry for the record's first endpoint, of process `pid` (as its namespace numbers it). */
function recordPending(file: string, pid: number, hostPid: number) {
  const record = JSON.parse(readFileSync(file, 'utf8'));
  const endpoint = record.network.endpoints[0];
  const namespace = statSync(`/proc/${hostPid}/ns/pid`);
  const since = Date.now();
  record.guestPending = [
    {
      name: endpoint.name,
      podLink: endpoint.properties.link.name,
      token: randomUUID(),
      pid,
      pidStart: startTime(hostPid),
      pidNamespace: { device: namespace.dev, inode: namespace.ino },
      since: new Date(since).toISOString(),
      waitsUntil: new Date(since + 240_000).toISOString(),
      by: 'add-iface',
    },
  ];
  writeFileSync(file, JSON.stringify(record));
  return endpoint.name as string;
}

interface ListedEndpoint {
  guestName: string;
  guestPending?: string;
  guestPendingGuessed?: boolean;
}

function listed(result: CliResult, id: string) {
  expect(result.status, result.stderr).toBe(0);
  const listing = (
    JSON.parse(result.stdout) as Array<{ id: string; detail?: string; hint?: string; endpoints: ListedEndpoint[] }>
  ).find((entry) => entry.id === id);
  expect(listing).toBeDefined();
  return listing as NonNullable<typeof listing>;
}

function run(command: string[]): CliResult {
  const result = spawnSync(command[0] ?? '', command.slice(1), { encoding: 'utf8' });
  return { status: result.status ?? -1, stdout: result.stdout, stderr: result.stderr };
}

describe.skipIf(skipReason !== undefined)('guest-pending verdicts of a reader that may not look at the process', () => {
  it("an add-iface in a child PID namespace, listed by nobody (who may not read root's /proc/PID/ns/pid): waiting, a guess, and what would tell", async () => {
    const { state, file } = attachedSandbox('np');
    const name = recordPending(file, 1, await sleepInChildPidNamespace());

    // Root looks at the process: waiting, told by it.
    const asRoot = listed(vcnet(['list', '--json', ...state]), 'np');
    expect(asRoot.endpoints.find((endpoint) => endpoint.guestName === name)).toEqual(
      expect.not.objectContaining({ guestPendingGuessed: true }),
    );
    expect(asRoot.endpoints[0]?.guestPending).toBe('waiting');

    const asNobody = listed(run([...NOBODY, process.execPath, CLI, 'list', '--json', ...state]), 'np');
    expect(asNobody.endpoints[0]).toMatchObject({
      guestName: name,
      guestPending: 'waiting',
      guestPendingGuessed: true,
    });
    expect(asNobody.detail).toBe(
      `the command that plugged ${name} is taken as waiting for the guest until its longest wait ends, a guess: this process may not look at that command (another user's process: looking at it takes root or CAP_SYS_PTRACE)`,
    );
    expect(asNobody.hint).toBe('`vcnet list` as root tells by the process');

    // Past its longest wait: stopped, still a guess, and said so beside the stop.
    const record = JSON.parse(readFileSync(file, 'utf8'));
    record.guestPending[0].waitsUntil = new Date(Date.now() - 1000).toISOString();
    writeFileSync(file, JSON.stringify(record));
    const table = run([...NOBODY, process.execPath, CLI, 'list', ...state]);
    expect(table.status, table.stderr).toBe(0);
    expect(table.stdout).toContain(`${name}<-eth0 virtual tcfilter guest-pending(stopped, guessed)`);
    expect(table.stdout).toContain(
      `the add-iface that plugged ${name} was stopped while it waited for the guest (a guess for ${name}: this process may not look at its command (another user's process: looking at it takes root or CAP_SYS_PTRACE), and its longest wait for the guest has passed)`,
    );
    // Root, which sees the process alive, says the same past the deadline the entry records, surely.
    expect(listed(vcnet(['list', '--json', ...state]), 'np').endpoints[0]).toEqual(
      expect.objectContaining({ guestPending: 'stopped' }),
    );
    expect(listed(vcnet(['list', '--json', ...state]), 'np').endpoints[0]?.guestPendingGuessed).toBeUndefined();
  }, 60_000);

  it('an add-iface in a child PID namespace, listed by root without CAP_SYS_PTRACE: a guess, said without calling root another user', async () => {
    const { state, file } = attachedSandbox('nr');
    const name = recordPending(file, 1, await sleepInChildPidNamespace());
    // Root whose capabilities lack CAP_SYS_PTRACE (a container's root): the kernel lets it look at a
    // process's namespace links only when that process's capabilities are a subset of its own.
    const withoutPtrace = ['setpriv', '--bounding-set=-sys_ptrace', '--inh-caps=-sys_ptrace', '--'];
    const asRoot = listed(run([...withoutPtrace, process.execPath, CLI, 'list', '--json', ...state]), 'nr');
    expect(asRoot.endpoints[0]).toMatchObject({ guestName: name, guestPending: 'waiting', guestPendingGuessed: true });
    expect(asRoot.detail).toBe(
      `the command that plugged ${name} is taken as waiting for the guest until its longest wait ends, a guess: this process may not look at that command (a process with capabilities this one lacks: root without CAP_SYS_PTRACE may look only at processes whose capabilities it has itself)`,
    );
    expect(asRoot.hint).toBe('`vcnet list` as root with CAP_SYS_PTRACE tells by the process');
  }, 60_000);

  it("an add-iface in the reader's own PID namespace, listed by nobody through a /proc mounted hidepid=invisible: waiting, a guess", () => {
    const { state, file } = attachedSandbox('nh');
    const sleeper = started(['sleep', '600']);
    const name = recordPending(file, sleeper.pid ?? 0, sleeper.pid ?? 0);
    expect(listed(vcnet(['list', '--json', ...state]), 'nh').endpoints[0]).toEqual(
      expect.objectContaining({ guestName: name, guestPending: 'waiting' }),
    );
    // A new proc instance in a private mount namespace: the host's /proc is not changed.
    const script = `mount -t proc -o hidepid=invisible proc /proc && exec "$@"`;
    const hidden = run([
      'unshare',
      '-m',
      '--propagation',
      'private',
      'sh',
      '-c',
      script,
      'sh',
      ...NOBODY,
      process.execPath,
      CLI,
      'list',
      '--json',
      ...state,
    ]);
    const asNobody = listed(hidden, 'nh');
    expect(asNobody.endpoints[0]).toMatchObject({
      guestName: name,
      guestPending: 'waiting',
      guestPendingGuessed: true,
    });
    expect(asNobody.hint).toBe('`vcnet list` as root tells by the process');
  }, 60_000);
});
