/**
 * What an interrupted test run leaves: nothing. A test process that made namespaces with
 * test/helpers/namespace.ts deletes them when Ctrl-C, a kill or a hang-up reaches it, and when the
 * vitest process that started it is gone; one killed outright (SIGKILL) leaves them with its owner
 * record, and the next run's global setup deletes them, and none whose owner still runs.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { deleteNamespace } from '../../src/netns/namespace.js';
import { removeNamespacesOfDeadRuns } from '../global-setup.js';
import { NAMESPACE_PREFIX, namespaceOwnersDirectory } from '../helpers/owner-process.js';
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
