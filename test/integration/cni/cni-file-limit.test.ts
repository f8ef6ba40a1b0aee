/**
 * vcnet-cni under the open-file limit a runtime gives it (`prlimit --nofile=N:N`, as LimitNOFILE=N
 * in containerd's unit): it printed Node's bare trace and nothing on stdout (N 18 to 26: EMFILE
 * opening its program or a chunk), and below about 18 Node itself aborted. Now every N is answered
 * with the CNI error object, naming the limit and what to raise, or works; the installed launcher
 * answers a hard limit below 64 without starting node. And an ADD that runs out of files midway
 * (strace makes one open or socket fail with EMFILE, in turn each that the ADD makes) leaves the
 * namespace as it was and no record.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MINIMUM_OPEN_FILES, openFileLimitHint, readOpenFileLimit } from '../../../src/cni/file-limit.js';
import { installCni } from '../../../src/cni/install.js';
import { stateDirectoryPerTest } from '../../helpers/cli.js';
import { VCNET_CNI_PROGRAM, vcnetCniOverPod } from '../../helpers/cni.js';
import { fingerprint, makePod } from '../../helpers/pod.js';
import { runUnderStrace, straceFaultsSkipReason } from '../../helpers/strace.js';

const stateDirectory = stateDirectoryPerTest('vcnet-cni-limit-');
const PRLIMIT = ['/usr/bin/prlimit', '/bin/prlimit'].find((path) => existsSync(path));
const rootSkip = process.getuid?.() !== 0 ? 'vcnet-cni file limit tests need root (namespaces, taps, tc)' : undefined;
const skipReason = rootSkip ?? (PRLIMIT ? undefined : 'prlimit is not installed (util-linux)');
if (skipReason) console.log(`skipping vcnet-cni open-file limit tests: ${skipReason}`);
const straceSkip = straceFaultsSkipReason('vcnet-cni ADD running out of files midway');

const CONTAINER = 'ctr-limit';

type Pod = ReturnType<typeof makePod>['pod'];

function plugin(pod: Pod) {
  return vcnetCniOverPod({
    name: 'vcnet-limit',
    pod,
    containerId: CONTAINER,
    stateDir: join(stateDirectory(), 'cni'),
    registry: join(stateDirectory(), 'registry'),
  });
}

interface Run {
  files: number;
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** `command` run by `program` (node on vcnet-cni's program, or an installed launcher) under `--nofile=FILES:FILES`. */
function runWithFiles(pod: Pod, files: number, command: string, program: string[]): Run {
  const { config, environment } = plugin(pod);
  const result = spawnSync(PRLIMIT!, [`--nofile=${files}:${files}`, ...program], {
    input: config,
    encoding: 'utf8',
    timeout: 60_000,
    env: environment(command),
  });
  return { files, status: result.status, signal: result.signal, stdout: result.stdout, stderr: result.stderr };
}

/** The records and temporary files under the plugin's state directory (lock files aside). */
function recordFiles(): string[] {
  const root = join(stateDirectory(), 'cni');
  if (!existsSync(root)) return [];
  return (readdirSync(root, { recursive: true }) as string[]).filter(
    (name) => name.endsWith('.json') || name.endsWith('.tmp'),
  );
}

/** Expects `run` to be a CNI error object on stdout, exit 1, whose details name this limit of `files` files. */
function expectLimitNamed(run: Run, limit = { soft: run.files, hard: run.files }): Record<string, unknown> {
  expect({ files: run.files, status: run.status, stderr: run.stderr }).toMatchObject({ status: 1 });
  expect(run.stderr, `--nofile=${run.files}`).not.toMatch(/^\s+at /m);
  const reply = JSON.parse(run.stdout) as Record<string, unknown>;
  expect(Object.keys(reply)).toEqual(['cniVersion', 'code', 'msg', 'details']);
  // The deciding code (with the errno when one decided), then the hint for EMFILE.
  expect(reply.details, `--nofile=${run.files}`).toMatch(/^VCNET_[A-Z_]+( \([^)]*\))?: /);
  expect(String(reply.details).endsWith(openFileLimitHint(limit))).toBe(true);
  return reply;
}

describe.skipIf(skipReason)('vcnet-cni (node dist/cni/main.js) at its open-file limit', () => {
  it('answers every limit it starts under with a CNI error naming the limit, or attaches; a refused ADD changes nothing', () => {
    const { pod } = makePod();
    const before = fingerprint(pod);
    const refused: Run[] = [];
    const attached: number[] = [];
    for (let files = 12; files <= 40; files++) {
      const add = runWithFiles(pod, files, 'ADD', [process.execPath, VCNET_CNI_PROGRAM]);
      // Node's own start (its threads' event loops) or its read of the program's file: no vcnet yet.
      if (add.signal !== null || add.status === null || add.status >= 128) continue;
      if (add.stderr.includes(`open '${VCNET_CNI_PROGRAM}'`)) continue;
      if (add.status === 0) {
        attached.push(files);
        expect(JSON.parse(add.stdout).interfaces.at(-1)).toMatchObject({ name: 'tap0_kata' });
        const del = runWithFiles(pod, 1024, 'DEL', [process.execPath, VCNET_CNI_PROGRAM]);
        expect(del.status, del.stdout).toBe(0);
      } else {
        refused.push(add);
        const reply = expectLimitNamed(add);
        expect(reply).toMatchObject({ cniVersion: '1.0.0', code: 100 });
      }
      expect(fingerprint(pod), `--nofile=${files}`).toEqual(before);
      expect(recordFiles(), `--nofile=${files}`).toEqual([]);
    }
    // The range holds limits where the plugin could not load and ones where it works: else this proves nothing.
    expect(refused.length, 'no limit between 12 and 40 refused a load').toBeGreaterThan(0);
    expect(refused[0]!.stdout).toMatch(
      /"msg":"load the code of vcnet-cni failed: EMFILE: too many open files, open '[^']*\/dist\/chunks\//,
    );
    expect(attached.length, 'no limit between 12 and 40 let ADD attach').toBeGreaterThan(0);
    // CHECK, DEL and STATUS say the same (STATUS with its own code, 50).
    const files = refused[0]!.files;
    for (const command of ['CHECK', 'DEL']) {
      expect(expectLimitNamed(runWithFiles(pod, files, command, [process.execPath, VCNET_CNI_PROGRAM]))).toMatchObject({
        code: 100,
      });
    }
    expect(expectLimitNamed(runWithFiles(pod, files, 'STATUS', [process.execPath, VCNET_CNI_PROGRAM]))).toMatchObject({
      code: 50,
    });
  }, 600_000);
});

describe.skipIf(skipReason)('the launcher vcnet install-cni writes, at the open-file limit', () => {
  it(`answers a hard limit below ${MINIMUM_OPEN_FILES} without node (from 12 files: /bin/sh needs that many to read it), and attaches from ${MINIMUM_OPEN_FILES}; its DEL of an attachment fails, keeping it`, () => {
    const { pod } = makePod();
    const before = fingerprint(pod);
    const binDirectory = join(stateDirectory(), 'bin');
    mkdirSync(binDirectory);
    installCni({ binDirectory, confDirectory: join(stateDirectory(), 'net.d'), entryPath: VCNET_CNI_PROGRAM });
    const launcher = [join(binDirectory, 'vcnet-cni')];
    for (const files of [12, 13, 20, 27, 40, MINIMUM_OPEN_FILES - 1]) {
      const add = runWithFiles(pod, files, 'ADD', launcher);
      expect(expectLimitNamed(add)).toEqual({
        cniVersion: '1.0.0',
        code: 100,
        msg: `vcnet-cni cannot start: its hard open-file limit is ${files}, below the ${MINIMUM_OPEN_FILES} files it needs`,
        details: `VCNET_SYSCALL (errno EMFILE): ${openFileLimitHint({ soft: files, hard: files })}`,
      });
      expect(fingerprint(pod)).toEqual(before);
      expect(recordFiles()).toEqual([]);
    }
    const add = runWithFiles(pod, MINIMUM_OPEN_FILES, 'ADD', launcher);
    expect(add.status, add.stdout).toBe(0);
    const attachedPod = fingerprint(pod);
    // A DEL the limit stops fails: the runtime tries it again, and nothing is left without a record.
    expectLimitNamed(runWithFiles(pod, 20, 'DEL', launcher));
    expect(fingerprint(pod)).toEqual(attachedPod);
    expect(recordFiles()).toEqual([join(CONTAINER, 'interfaces', 'eth0', 'state.json')]);
    expect(runWithFiles(pod, MINIMUM_OPEN_FILES, 'DEL', launcher).status).toBe(0);
    expect(fingerprint(pod)).toEqual(before);
    expect(recordFiles()).toEqual([]);
  }, 300_000);
});

describe.skipIf(straceSkip ?? skipReason)('vcnet-cni ADD that runs out of files midway', () => {
  /**
   * ADD with `call` answered EMFILE the `nth` time (on `paths` only, when given), as at a limit it
   * reaches there, or from the `nth` time on (`onward`: a limit that stays reached, so that undoing
   * gets no file either); with VCNET_LOG_LEVEL=debug, so that the logger's chunks load too.
   */
  function addFailingAt(pod: Pod, call: 'openat' | 'socket', nth: number, paths: string[], onward: boolean) {
    const { config, environment } = plugin(pod);
    const when = `${nth}${onward ? '+' : ''}`;
    return runUnderStrace(
      [
        ...paths.flatMap((path) => ['-P', path]),
        '-e',
        `trace=${call}`,
        '-e',
        `inject=${call}:error=EMFILE:when=${when}`,
      ],
      [process.execPath, VCNET_CNI_PROGRAM],
      { input: config, timeout: 60_000, env: { ...environment('ADD'), VCNET_LOG_LEVEL: 'debug' } },
    );
  }

  /** How many times a plain ADD makes `call` (on `paths` only, when given), counted by strace; then DEL. */
  function callsOfAdd(pod: Pod, call: 'openat' | 'socket', paths: string[]): number {
    const { config, environment } = plugin(pod);
    const trace = join(stateDirectory(), `${call}.trace`);
    const add = spawnSync(
      'strace',
      [
        '-f',
        '-qq',
        '-o',
        trace,
        ...paths.flatMap((path) => ['-P', path]),
        '-e',
        `trace=${call}`,
        process.execPath,
        VCNET_CNI_PROGRAM,
      ],
      { input: config, encoding: 'utf8', timeout: 60_000, env: { ...environment('ADD'), VCNET_LOG_LEVEL: 'debug' } },
    );
    expect(add.status, add.stdout).toBe(0);
    expect(runWithFiles(pod, 1024, 'DEL', [process.execPath, VCNET_CNI_PROGRAM]).status).toBe(0);
    return readFileSync(trace, 'utf8')
      .split('\n')
      .filter((line) => line.includes(`${call}(`)).length;
  }

  /**
   * Fails `call` at each of the times a plain ADD makes it, in turn: every ADD that fails is a CNI
   * error naming the limit and leaves the namespace and the state as they were; one that gets by
   * without that call attaches, and its DEL leaves the namespace as it was. Returns how many failed.
   */
  function failEachInTurn(pod: Pod, call: 'openat' | 'socket', paths: string[] = [], onward = false): number {
    const before = fingerprint(pod);
    // The limit main.ts reads as it starts: this process's hard one, which node raises its soft one to.
    const { hard } = readOpenFileLimit()!;
    const calls = callsOfAdd(pod, call, paths);
    let failed = 0;
    for (let nth = 1; nth <= calls; nth++) {
      const add = addFailingAt(pod, call, nth, paths, onward);
      if (add.status === 0) {
        expect(JSON.parse(add.stdout).interfaces.at(-1)).toMatchObject({ name: 'tap0_kata' });
        expect(runWithFiles(pod, 1024, 'DEL', [process.execPath, VCNET_CNI_PROGRAM]).status).toBe(0);
      } else {
        failed++;
        expectLimitNamed({ files: nth, signal: null, ...add }, { soft: hard, hard });
        expect(recordFiles(), `${call} #${nth}${onward ? '+' : ''}`).toEqual([]);
      }
      expect(fingerprint(pod), `${call} #${nth}${onward ? '+' : ''}`).toEqual(before);
    }
    return failed;
  }

  it('each file of its own it opens (a chunk, the logger) refused: a CNI error naming the limit, nothing made', () => {
    const { pod } = makePod();
    const chunks = join(VCNET_CNI_PROGRAM, '..', '..', 'chunks');
    const code = readdirSync(chunks)
      .filter((name) => name.endsWith('.js') || name.endsWith('.cjs'))
      .map((name) => join(chunks, name));
    expect(failEachInTurn(pod, 'openat', code)).toBeGreaterThan(3);
  }, 600_000);

  it.each([
    ['one', false],
    ['it and every later one', true],
  ])(
    'each namespace, lock, record directory and tap device it opens refused (%s): undone, no record',
    (_case, onward) => {
      const { pod } = makePod();
      const state = join(stateDirectory(), 'cni');
      const paths = [
        pod.path,
        '/proc/thread-self/ns/net',
        '/dev/net/tun',
        join(state, '.locks', CONTAINER),
        join(state, CONTAINER, 'interfaces', 'eth0'),
        `${join(stateDirectory(), 'registry')}.lock`,
      ];
      expect(failEachInTurn(pod, 'openat', paths, onward)).toBeGreaterThan(5);
    },
    600_000,
  );

  it('each netlink socket it opens refused: a CNI error naming the limit, nothing made', () => {
    const { pod } = makePod();
    expect(failEachInTurn(pod, 'socket')).toBeGreaterThan(0);
  }, 300_000);
});
