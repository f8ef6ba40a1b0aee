#!/usr/bin/env node
/**
 * `vcnet-cni`'s first module: it reads the open-file limit, then loads the plugin (program.ts, and
 * through it the bundle's chunks) with `import()`, so that a load the system refuses is answered as
 * a CNI error. A static import that fails is Node's, before any of vcnet runs: under an open-file
 * limit below about 28 the plugin printed Node's bare trace ("Error: EMFILE: too many open files,
 * open '.../dist/chunks/chunk-....js'", exit 1) and nothing on stdout, where a runtime reads the
 * plugin's answer. Now it is the error object of the CNI spec on stdout, VCNET_SYSCALL with the
 * errno, as the plugin answers any refused system call, and the hint names the limit.
 *
 * It imports only Node's built-in modules (the bundle's banner adds node:module; node:fs opens no
 * file as it loads): what it imported from vcnet would be loaded, and could fail, before it runs. So
 * it holds a copy of file-limit.ts's number, parse and hint, and writes the reply as cniErrorReply
 * writes a SystemCallError's (test/integration/cni/cni-file-limit.test.ts compares them).
 */
import { readFileSync } from 'node:fs';

/** file-limit.ts's MINIMUM_OPEN_FILES. */
const MINIMUM_OPEN_FILES = 64;

/** CNI error code of VCNET_SYSCALL (error-codes.ts: `failed`, VCNET_FAILED). */
const SYSCALL_CNI_CODE = 100;
/** STATUS's code when the plugin cannot serve ADD (status.ts), which a runtime acts on. */
const PLUGIN_NOT_AVAILABLE_CNI_CODE = 50;

/** The cniVersions vcnet-cni speaks (version.ts), and the one it answers in otherwise. */
const SUPPORTED_CNI_VERSIONS = ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'];
const PREFERRED_CNI_VERSION = '1.0.0';

/** file-limit.ts's readOpenFileLimit: read before anything is loaded, while a file can still be opened. */
function readOpenFileLimit(): { soft: number; hard: number } | undefined {
  try {
    const row = /^Max open files\s+(\d+)\s+(\d+)\s/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    return row ? { soft: Number(row[1]), hard: Number(row[2]) } : undefined;
  } catch {
    return undefined;
  }
}

/** file-limit.ts's openFileLimitHint. */
function openFileLimitHint(limit: { soft: number; hard: number } | undefined): string {
  const had =
    limit === undefined
      ? 'the hard open-file limit of vcnet-cni (ulimit -Hn) is too low'
      : `the open-file limit of vcnet-cni is ${limit.soft} (hard limit ${limit.hard})`;
  return `${had}; it needs ${MINIMUM_OPEN_FILES} besides the files its runtime leaves open in it: raise LimitNOFILE= of the container runtime's service (systemctl edit containerd, or crio), whose limits its CNI plugins inherit, then retry (node raises the soft limit to the hard one as it starts: the hard limit is the one that counts)`;
}

/** hintForErrno's hint for ENFILE (the system's limit, not the process's). */
const ENFILE_HINT =
  'the system has as many files open as it allows (fs.file-max): close some, or raise the limit (sysctl fs.file-max), then run the command again';

/** The config's cniVersion when vcnet-cni speaks it (plugin.ts's versionOfInput). */
async function replyVersion(): Promise<string> {
  if (process.stdin.isTTY) return PREFERRED_CNI_VERSION;
  try {
    const chunks: Buffer[] = [];
    for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
    const asked = (JSON.parse(Buffer.concat(chunks).toString('utf8')) as { cniVersion?: unknown }).cniVersion;
    return typeof asked === 'string' && SUPPORTED_CNI_VERSIONS.includes(asked) ? asked : PREFERRED_CNI_VERSION;
  } catch {
    return PREFERRED_CNI_VERSION;
  }
}

const openFileLimit = readOpenFileLimit();

/** Answers a refused load as the plugin answers a SystemCallError; rethrows anything else. */
async function answerLoadFailure(error: unknown): Promise<undefined> {
  // Only a file the system would not open or read: an error a module throws as it runs is its own.
  const failure = error as { code?: unknown; syscall?: unknown; message?: unknown } | undefined;
  if (typeof failure?.code !== 'string' || typeof failure.syscall !== 'string') throw error;
  const errno = failure.code;
  const hint = errno === 'EMFILE' ? openFileLimitHint(openFileLimit) : errno === 'ENFILE' ? ENFILE_HINT : undefined;
  const head = `VCNET_SYSCALL (errno ${errno})`;
  const reply = {
    cniVersion: await replyVersion(),
    code: process.env.CNI_COMMAND === 'STATUS' ? PLUGIN_NOT_AVAILABLE_CNI_CODE : SYSCALL_CNI_CODE,
    msg: `load the code of vcnet-cni failed: ${String(failure.message)}`,
    details: hint ? `${head}: ${hint}` : head,
  };
  process.stdout.write(`${JSON.stringify(reply)}\n`);
  process.exitCode = 1;
  return undefined;
}

const program = await import('./program.js').catch(answerLoadFailure);
// Before it reads stdin, main() loads the logger and the trace exporter when the environment asks
// for them: a load refused there is answered alike.
await program?.main({ openFileLimit }).catch(answerLoadFailure);
