/**
 * vcnet-cni where the world fails under it: its reply cannot be written (stdout on /dev/full, a
 * reader that has gone), a record directory cannot be removed or made (EIO, ENOSPC injected with
 * strace), a DEL killed half-way. The plugin answers in CNI terms (no Node stack, no code 999) and
 * leaves nothing a later DEL cannot remove.
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { stateDirectoryPerTest } from '../../helpers/cli.js';
import { VCNET_CNI_PROGRAM, vcnetCniOverPod } from '../../helpers/cni.js';
import { fingerprint, makePod } from '../../helpers/pod.js';
import { runUnderStrace, straceFaultsSkipReason } from '../../helpers/strace.js';

const stateDirectory = stateDirectoryPerTest('vcnet-cni-faults-');
const skipReason = straceFaultsSkipReason('vcnet-cni fault tests');

const CONTAINER = 'ctr-faults';

type Pod = ReturnType<typeof makePod>['pod'];

/** vcnet-cni in a chain whose previous plugin left makePod()'s eth0. */
function plugin(pod: Pod) {
  return vcnetCniOverPod({
    name: 'vcnet-faults',
    pod,
    containerId: CONTAINER,
    stateDir: join(stateDirectory(), 'cni'),
    registry: join(stateDirectory(), 'registry'),
  });
}

/**
 * Runs vcnet-cni `command` as a runtime does; `stdout` 'full' puts it on /dev/full; `strace` runs
 * it under `strace -f <strace...>` (fault injection).
 */
function runPlugin(command: string, pod: Pod, options: { stdout?: 'full'; strace?: string[] } = {}) {
  const device = options.stdout === 'full' ? openSync('/dev/full', 'w') : undefined;
  try {
    const { config, environment } = plugin(pod);
    return runUnderStrace(options.strace, [process.execPath, VCNET_CNI_PROGRAM], {
      input: config,
      stdio: ['pipe', device ?? 'pipe', 'pipe'],
      timeout: 30_000,
      env: environment(command),
    });
  } finally {
    if (device !== undefined) closeSync(device);
  }
}

/** Everything under the plugin's state directory, relative to it. */
function stateFiles(): string[] {
  const root = join(stateDirectory(), 'cni');
  if (!existsSync(root)) return [];
  return (readdirSync(root, { recursive: true }) as string[]).sort();
}

describe.skipIf(skipReason)('vcnet-cni whose reply cannot be written', () => {
  it('ADD with stdout on /dev/full: no stack, one line on stderr, exit 6; the interface stays attached for DEL', () => {
    const { pod } = makePod();
    const add = runPlugin('ADD', pod, { stdout: 'full' });
    expect(add.stderr).not.toContain('    at ');
    expect(add.stderr).not.toContain("Unhandled 'error' event");
    expect(add.stderr).toContain('vcnet-cni: the reply on stdout was lost (ENOSPC)');
    expect(add.status).toBe(6);
    expect(pod.exec('ip', ['link', 'show'])).toContain('tap0_kata');
    // A DEL has nothing to say: it writes nothing, so even /dev/full takes its (empty) reply.
    const del = runPlugin('DEL', pod, { stdout: 'full' });
    expect(del).toMatchObject({ status: 0, stderr: '' });
    expect(pod.exec('ip', ['link', 'show'])).not.toContain('tap0_kata');
  });

  it("a failed command with stdout on /dev/full: the stderr line carries the error's codes and message, exit 1", () => {
    const { pod } = makePod();
    const before = fingerprint(pod);
    // CHECK of an interface no ADD gave the VM: its error reply is all the runtime would have seen.
    const reply = runPlugin('CHECK', pod);
    expect(reply.status).toBe(1);
    const { code, msg, details } = JSON.parse(reply.stdout) as { code: number; msg: string; details: string };
    const check = runPlugin('CHECK', pod, { stdout: 'full' });
    expect(check.status).toBe(1);
    expect(check.stderr).not.toContain('    at ');
    expect(check.stderr).toBe(
      `vcnet-cni: the reply on stdout was lost (ENOSPC); the command failed (CNI code ${code}, ${/^VCNET_[A-Z0-9_]+/.exec(details)?.[0]}: ${msg}); it exits 1\n`,
    );
    expect(fingerprint(pod)).toEqual(before);
  });

  it('ADD whose reader has gone (EPIPE): exit 6 and a line on stderr, not an unhandled error', async () => {
    const { pod } = makePod();
    const { config, environment } = plugin(pod);
    const child = spawn(process.execPath, [VCNET_CNI_PROGRAM], {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: environment('ADD'),
    });
    child.stdout.destroy();
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString('utf8');
    });
    child.stdin.end(config);
    const status = await new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    expect(stderr).not.toContain("Unhandled 'error' event");
    expect(stderr).toContain('vcnet-cni: the reply on stdout was lost (EPIPE)');
    expect(status).toBe(6);
    expect(runPlugin('DEL', pod).status).toBe(0);
    expect(stateFiles().filter((name) => !name.startsWith('.locks'))).toEqual([]);
  });
});

describe.skipIf(skipReason)('vcnet-cni whose state directory fails a system call', () => {
  it('DEL that undid everything but cannot remove the record: code 11 (try again) with a hint, no stack; the next DEL drops it', () => {
    const { pod } = makePod();
    const before = fingerprint(pod);
    expect(runPlugin('ADD', pod).status).toBe(0);
    const statePath = join(stateDirectory(), 'cni', CONTAINER, 'interfaces', 'eth0', 'state.json');
    const del = runPlugin('DEL', pod, {
      strace: ['-P', statePath, '-e', 'trace=unlink,unlinkat', '-e', 'inject=unlink,unlinkat:error=EIO'],
    });
    expect(del.status).toBe(1);
    const reply = JSON.parse(del.stdout) as { code: number; msg: string; details: string };
    expect(reply.code).toBe(11);
    expect(reply.msg).toContain('could not remove the record directory');
    expect(reply.details).toMatch(/^VCNET_STATE_WRITE \(errno EIO\): nothing is left to undo/);
    expect(reply.details).toContain("the runtime's next DEL of the container drops it");
    expect(reply.details).not.toContain('    at ');
    expect(fingerprint(pod)).toEqual(before);
    expect(runPlugin('DEL', pod)).toMatchObject({ status: 0, stdout: '' });
    expect(stateFiles()).toEqual(['.locks']);
    expect(fingerprint(pod)).toEqual(before);
  });

  it('ADD whose container directory cannot be made (ENOSPC) fails with code 11 (try again), not 7 (a bad stateDir)', () => {
    const { pod } = makePod();
    const before = fingerprint(pod);
    const add = runPlugin('ADD', pod, {
      strace: [
        '-P',
        join(stateDirectory(), 'cni', CONTAINER),
        '-e',
        'trace=mkdir,mkdirat',
        '-e',
        'inject=mkdir,mkdirat:error=ENOSPC',
      ],
    });
    expect(add.status).toBe(1);
    const reply = JSON.parse(add.stdout) as { code: number; msg: string; details: string };
    expect(reply.code).toBe(11);
    expect(reply.msg).toContain(`could not create the directory ${join(stateDirectory(), 'cni', CONTAINER)}`);
    expect(reply.details).toMatch(
      /^VCNET_STATE_WRITE \(errno ENOSPC\): the file system of the state directory is full/,
    );
    expect(fingerprint(pod)).toEqual(before);
    expect(runPlugin('DEL', pod)).toMatchObject({ status: 0, stdout: '' });
    // The failed ADD made the state directory and recorded nothing: it took it away again.
    expect(stateFiles()).toEqual([]);
  });

  it('ADD whose record is renamed in place but whose directory fsync fails leaves no record: code 11, and the retry ADD works', () => {
    const { pod } = makePod();
    const before = fingerprint(pod);
    const recordDirectory = join(stateDirectory(), 'cni', CONTAINER, 'interfaces', 'eth0');
    const add = runPlugin('ADD', pod, {
      strace: ['-P', recordDirectory, '-e', 'trace=fsync', '-e', 'inject=fsync:error=EIO:when=1'],
    });
    expect(add.status).toBe(1);
    expect(JSON.parse(add.stdout)).toMatchObject({ code: 11 });
    expect(fingerprint(pod)).toEqual(before);
    expect(existsSync(join(recordDirectory, 'state.json'))).toBe(false);
    expect(runPlugin('ADD', pod).status).toBe(0);
    expect(runPlugin('DEL', pod).status).toBe(0);
    expect(fingerprint(pod)).toEqual(before);
    expect(stateFiles()).toEqual(['.locks']);
  });

  it("an ADD that fails making the interface's directory leaves neither the container's directories nor its lock file", () => {
    const { pod } = makePod();
    const interfaces = join(stateDirectory(), 'cni', CONTAINER, 'interfaces');
    const add = runPlugin('ADD', pod, {
      strace: ['-P', join(interfaces, 'eth0'), '-e', 'trace=mkdir,mkdirat', '-e', 'inject=mkdir,mkdirat:error=ENOSPC'],
    });
    expect(add.status).toBe(1);
    expect(JSON.parse(add.stdout)).toMatchObject({ code: 11 });
    // Nor the state directory it made (with its .locks): nothing was recorded there.
    expect(stateFiles()).toEqual([]);
  });

  it("DEL removes an emptied interfaces/ (its interface's directory already gone) and the container's lock file", () => {
    const { pod } = makePod();
    // What a DEL killed after removing the interface's directory leaves.
    const root = join(stateDirectory(), 'cni');
    mkdirSync(join(root, CONTAINER, 'interfaces'), { recursive: true, mode: 0o700 });
    mkdirSync(join(root, '.locks'), { mode: 0o700 });
    writeFileSync(join(root, '.locks', CONTAINER), '', { mode: 0o600 });
    expect(runPlugin('DEL', pod)).toMatchObject({ status: 0, stdout: '' });
    expect(stateFiles()).toEqual(['.locks']);
  });
});
