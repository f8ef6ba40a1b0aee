/** Runs the built `vcnet` binary (dist/cli/main.js) and captures what it printed. */
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));

export interface CliResult {
  status: number;
  stdout: string;
  stderr: string;
}

export function vcnet(args: string[], env: Record<string, string> = {}, options: { cwd?: string } = {}): CliResult {
  const result = spawnSync(process.execPath, [CLI, ...args], {
    encoding: 'utf8',
    env: { ...process.env, ...env },
    ...options,
  });
  return { status: result.status ?? -1, stdout: result.stdout, stderr: result.stderr };
}

export function vcnetAsync(args: string[], env: Record<string, string> = {}) {
  const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env } });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk) => {
    stdout += chunk;
  });
  child.stderr.on('data', (chunk) => {
    stderr += chunk;
  });
  const done = new Promise<CliResult>((resolve) =>
    child.on('close', (status) => resolve({ status: status ?? -1, stdout, stderr })),
  );
  return { child, done, output: () => ({ stdout, stderr }) };
}
