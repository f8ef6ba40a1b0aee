/**
 * What a spawned program printed, collected until it ends. Kept free of vitest so that bench/ can use
 * it too.
 */
import type { ChildProcess } from 'node:child_process';

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
