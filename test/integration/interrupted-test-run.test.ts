/**
 * What an interrupted test run leaves: nothing. A test process that made namespaces with
 * test/helpers/namespace.ts deletes them when Ctrl-C, a kill or a hang-up reaches it, and when the
 * vitest process that started it is gone; one killed outright (SIGKILL) leaves them with its owner
 * record, and the next run's global setup deletes them, and none whose owner still runs. The same
 * for a run's temporary directory, and for the directories runs made in /tmp before they had one
 * (no owner record: kept while a test runner that started before the directory still runs).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { deleteNamespace } from '../../src/netns/namespace.js';
import {
  removeNamespacesOfDeadRuns,
  removeOlderRunLeftovers,
  removeRunDirectoriesOfDeadRuns,
} from '../global-setup.js';
import { cleanupAfterEach } from '../helpers/cleanup.js';
import { NAMESPACE_PREFIX, namespaceOwnersDirectory, processIdentity } from '../helpers/owner-process.js';
import { until } from '../helpers/until.js';

const HELPER = fileURLToPath(new URL('../helpers/namespace.ts', import.meta.url));
// A test process in miniature: makes a namespace through the helper, says its pid and name, waits.
const TEST_PROCESS = `import { makeNamespace } from ${JSON.stringify(HELPER)};
const made = makeNamespace('interrupted');
console.log(process.pid + ' ' + made.name);
setInterval(() => {}, 1000);`;

const started: ChildProcess[] = [];
const names: string[] = [];

afterEach(() => {
  for (const child of started.splice(0)) child.kill('SIGKILL');
  for (const name of names.splice(0)) {
    if (existsSync(`/run/netns/${name}`)) deleteNamespace(name);
  }
});

/** Starts `command` (the test process, or a shell around it) and waits for the pid and name it prints. */
async function start(command: string, args: string[]): Promise<{ child: ChildProcess; pid: number; name: string }> {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, TEST_PROCESS } });
  started.push(child);
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  await until(() => output.includes('\n'), 'the test process to make its namespace', 60_000);
  const [pid, name] = output.trim().split(' ');
  names.push(name as string);
  return { child, pid: Number(pid), name: name as string };
}

const NODE_ARGS = ['--import', 'tsx', '--input-type=module', '-e', TEST_PROCESS];
const namespaceExists = (name: string) => existsSync(`/run/netns/${name}`);
const recordExists = (name: string) => existsSync(join(namespaceOwnersDirectory(NAMESPACE_PREFIX), name));
const alive = (pid: number) => existsSync(`/proc/${pid}`);

describe('a test process interrupted', () => {
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    it(`by ${signal}: deletes its namespace and its owner record, then ends by that signal`, async () => {
      const { child, name } = await start(process.execPath, NODE_ARGS);
      expect(namespaceExists(name)).toBe(true);
      expect(recordExists(name)).toBe(true);
      const ended = new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_code, how) => resolve(how)));
      child.kill(signal);
      expect(await ended).toBe(signal);
      expect(namespaceExists(name)).toBe(false);
      expect(recordExists(name)).toBe(false);
    });
  }

  it('whose parent (vitest) is gone: deletes its namespace and ends, not running on as an orphan', async () => {
    // The shell stands for the vitest process: killed alone, as a CI timeout's SIGTERM reaches vitest only.
    const shell = await start('sh', [
      '-c',
      `"${process.execPath}" ${NODE_ARGS.slice(0, -1).join(' ')} "$TEST_PROCESS" & wait`,
    ]);
    expect(alive(shell.pid)).toBe(true);
    shell.child.kill('SIGKILL');
    await until(() => !alive(shell.pid), 'the orphaned test process to end', 30_000);
    expect(namespaceExists(shell.name)).toBe(false);
    expect(recordExists(shell.name)).toBe(false);
  });

  it('by SIGKILL: the next run deletes its namespace, and not one whose owner still runs', async () => {
    const killed = await start(process.execPath, NODE_ARGS);
    const running = await start(process.execPath, NODE_ARGS);
    const ended = new Promise((resolve) => killed.child.once('exit', resolve));
    killed.child.kill('SIGKILL');
    await ended;
    expect(namespaceExists(killed.name)).toBe(true);
    expect(recordExists(killed.name)).toBe(true);
    await removeNamespacesOfDeadRuns();
    expect(namespaceExists(killed.name)).toBe(false);
    expect(recordExists(killed.name)).toBe(false);
    expect(namespaceExists(running.name)).toBe(true);
    expect(recordExists(running.name)).toBe(true);
  });
});

describe('the temporary directories of test runs', () => {
  const cleanup = cleanupAfterEach();

  /** A process standing for a test run: `sleep`, with `name` as its argv[0] (what a runner's command line is matched by). */
  async function fakeRun(name: string): Promise<{ child: ChildProcess; identity: string }> {
    const child = spawn('sleep', ['600'], { argv0: name, stdio: 'ignore' });
    started.push(child);
    await until(() => processIdentity(child.pid!) !== undefined, 'the fake run to start');
    return { child, identity: processIdentity(child.pid!)! };
  }

  async function ended(child: ChildProcess): Promise<void> {
    const exit = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exit;
  }

  function directory(parent: string, name: string, owner?: string): string {
    const path = join(parent, name);
    mkdirSync(path);
    writeFileSync(join(path, 'state.json'), '{}');
    if (owner !== undefined) writeFileSync(join(path, 'owner'), `${owner}\n`);
    return path;
  }

  it('removes a run directory whose owner is dead, and not one whose owner runs or that has no owner yet', async () => {
    const parent = cleanup.directory('vcnet-sweep-');
    const live = await fakeRun('vcnet-fake-live-run');
    const gone = await fakeRun('vcnet-fake-dead-run');
    await ended(gone.child);
    const ofDead = directory(parent, 'vcnet-test-run-Dead01', gone.identity);
    const ofLive = directory(parent, 'vcnet-test-run-Live01', live.identity);
    const beingMade = directory(parent, 'vcnet-test-run-Made01');
    removeRunDirectoriesOfDeadRuns(parent);
    expect(existsSync(ofDead)).toBe(false);
    expect(existsSync(ofLive)).toBe(true);
    expect(existsSync(beingMade)).toBe(true);
    await ended(live.child);
    removeRunDirectoriesOfDeadRuns(parent);
    expect(existsSync(ofLive)).toBe(false);
    expect(existsSync(beingMade)).toBe(true);
  });

  it('removes what runs before run directories left in /tmp once no runner that started before it runs', async () => {
    const parent = cleanup.directory('vcnet-sweep-');
    // A name of this test's own: the runners on this machine (this run's vitest, other helpers') are not it.
    const runnerName = `vcnet-fake-runner-${process.pid}`;
    const runner = await fakeRun(runnerName);
    const hourAgo = new Date(Date.now() - 3_600_000);
    const older = directory(parent, 'vcnet-nodes-Old001');
    utimesSync(older, hourAgo, hourAgo);
    const registry = directory(parent, 'vcnet-test-registry-New001');
    const notTheSuites = directory(parent, 'vcnet-demo-Old002');
    utimesSync(notTheSuites, hourAgo, hourAgo);
    const someoneElses = directory(parent, 'scratch-Old003');
    utimesSync(someoneElses, hourAgo, hourAgo);

    removeOlderRunLeftovers(parent, runnerName);
    // Made before the runner started: not its, and no other runner of that name runs.
    expect(existsSync(older)).toBe(false);
    // Made while it runs: maybe its.
    expect(existsSync(registry)).toBe(true);
    expect(existsSync(notTheSuites)).toBe(true);
    expect(existsSync(someoneElses)).toBe(true);

    // The real runners: this run's vitest started before the directory was made.
    removeOlderRunLeftovers(parent);
    expect(existsSync(registry)).toBe(true);

    await ended(runner.child);
    removeOlderRunLeftovers(parent, runnerName);
    expect(existsSync(registry)).toBe(false);
    expect(existsSync(notTheSuites)).toBe(true);
    expect(existsSync(someoneElses)).toBe(true);
  });
});
