/**
 * Fault injection with strace: a program run under `strace -f`, whose options answer chosen system
 * calls on one path with an error (`-P PATH -e trace=CALLS -e inject=CALLS:error=ERRNO[:when=N]`),
 * so a test fails exactly that directory's or file's call and nothing else.
 */
import { type SpawnSyncOptions, spawnSync } from 'node:child_process';

/**
 * Why fault tests of `what` ("state fault tests") cannot run here, printed once when they cannot:
 * they need root (namespaces, taps, tc) and strace. undefined when they can.
 */
export function straceFaultsSkipReason(what: string): string | undefined {
  const reason =
    process.getuid?.() !== 0
      ? `${what} need root (namespaces, taps, tc)`
      : spawnSync('strace', ['-V']).status !== 0
        ? 'strace is not installed'
        : undefined;
  if (reason) console.log(`skipping ${what}: ${reason}`);
  return reason;
}

/**
 * Runs `argv` (the program first), under `strace -f <strace...>` when `strace` is given (its own
 * output discarded), else plainly; its output as text. `options` as spawnSync's (input, stdio, env,
 * timeout: 60 s unless given).
 */
export function runUnderStrace(
  strace: readonly string[] | undefined,
  argv: readonly string[],
  options: SpawnSyncOptions = {},
): { status: number; stdout: string; stderr: string } {
  const command = strace ? ['strace', '-f', '-qq', '-o', '/dev/null', ...strace, ...argv] : argv;
  const result = spawnSync(command[0]!, command.slice(1), { timeout: 60_000, ...options, encoding: 'utf8' });
  return { status: result.status ?? -1, stdout: result.stdout ?? '', stderr: result.stderr ?? '' };
}
