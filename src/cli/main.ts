#!/usr/bin/env node
/**
 * `vcnet`'s first module: it loads the program (program.ts, and through it the bundle's chunks) with
 * `import()`, so that a load the system refuses is a vcnet error. A static import that fails is
 * Node's, before any of vcnet runs: a process near its open-file limit got Node's bare trace
 * ("Error: EMFILE: too many open files, open '.../dist/chunks/chunk-....js'", exit 1), with no code or
 * hint. Now it is VCNET_SYSCALL with the errno and the hint to raise the limit, as lazy-import.ts
 * makes it for the chunks a command loads later.
 *
 * It imports nothing (the bundle's banner adds node:module, a built-in, which opens no file): what it
 * imported would be loaded, and could fail, before it runs. So it cannot use errors.ts: the error it writes is a SystemCallError as reportError
 * writes one, and its hints and exit status are hintForErrno's and VCNET_SYSCALL's
 * (test/integration/package/start-files-limit.test.ts compares them).
 */

/** hintForErrno's hints for the errnos a load meets when files run out. */
const HINTS: Readonly<Record<string, string>> = {
  EMFILE:
    "this process has as many files open as its limit allows: raise it (ulimit -n in the shell that runs vcnet, LimitNOFILE= in a systemd unit, or the runtime's rlimit), then run the command again",
  ENFILE:
    'the system has as many files open as it allows (fs.file-max): close some, or raise the limit (sysctl fs.file-max), then run the command again',
};

/** VCNET_SYSCALL's exit status (error-codes.ts: `failed`). */
const SYSCALL_EXIT = 1;

/** Says a refused load as vcnet says a SystemCallError (and in JSON with --json); rethrows anything else. */
function reportLoadFailure(error: unknown): undefined {
  // Only a file the system would not open or read: an error a module throws as it runs is its own.
  const failure = error as { code?: unknown; syscall?: unknown; message?: unknown } | undefined;
  if (typeof failure?.code !== 'string' || typeof failure.syscall !== 'string') throw error;
  const errno = failure.code;
  const hint = HINTS[errno];
  const message = `load the code of vcnet failed: ${String(failure.message)}`;
  if (process.argv.includes('--json')) {
    const body = { name: 'SystemCallError', code: 'VCNET_SYSCALL', errno, message, ...(hint ? { hint } : {}) };
    process.stdout.write(`${JSON.stringify({ error: body })}\n`);
  }
  process.stderr.write(`vcnet: ${message}\n${hint ? `hint: ${hint}\n` : ''}`);
  process.exitCode = SYSCALL_EXIT;
  return undefined;
}

const program = await import('./program.js').catch(reportLoadFailure);
await program?.main();
