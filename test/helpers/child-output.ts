/**
 * What a spawned program printed, collected until it ends. Kept free of vitest so that bench/ can use
 * it too.
 */
import { type ChildProcess, type SpawnOptions, spawn } from 'node:child_process';
import type { TestCleanup } from './cleanup.js';

export interface ChildOutput {
  /** The exit status; -1 when the program was killed by a signal or could not start. */
  status: number;
  stdout: string;
  stderr: string;
  /** The signal that ended it, if any. */
  signal: NodeJS.Signals | null;
}

/**
 * Collects `child`'s stdout and stderr (pipes) and answers them with its status once it has closed;
 * `sofar()` gives what it printed until now. `onStderr` sees the whole stderr so far after each chunk
 * (to wait for a line).
 */
export function collectOutput(
  child: ChildProcess,
  onStderr?: (stderr: string) => void,
): { done: Promise<ChildOutput>; sofar: () => { stdout: string; stderr: string } } {
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (chunk) => {
    stdout += chunk;
  });
  child.stderr?.on('data', (chunk) => {
    stderr += chunk;
    onStderr?.(stderr);
  });
  const done = new Promise<ChildOutput>((resolve) => {
    child.on('error', (error) => resolve({ status: -1, stdout, stderr: `${stderr}${error.message}`, signal: null }));
    child.on('close', (status, signal) => resolve({ status: status ?? -1, stdout, stderr, signal }));
  });
  return { done, sofar: () => ({ stdout, stderr }) };
}

/**
 * `command` with `args` spawned (`options` as spawn takes them), what it prints on stdout and stderr
 * in one `output()`, in the order it came; `exited` resolves once it has closed. Killed after the
 * test (`cleanup`) if still running.
 */
export function spawnKilledAfterTest(
  cleanup: TestCleanup,
  command: string,
  args: string[],
  options: SpawnOptions = {},
): { child: ChildProcess; output: () => string; exited: Promise<void> } {
  const child = spawn(command, args, options);
  let output = '';
  child.stdout?.on('data', (chunk) => {
    output += chunk;
  });
  child.stderr?.on('data', (chunk) => {
    output += chunk;
  });
  const exited = new Promise<void>((resolve) => child.on('close', () => resolve()));
  cleanup.defer(async () => {
    child.kill('SIGKILL');
    await exited;
  });
  return { child, output: () => output, exited };
}
