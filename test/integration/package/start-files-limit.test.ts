/**
 * `vcnet` started with so few files allowed that Node cannot open all of the bundle's chunks
 * (`prlimit --nofile=N`): it printed Node's bare trace ("Error: EMFILE: too many open files, open
 * '.../dist/chunks/chunk-....js'", exit 1), no vcnet code, no hint. Now the program's first file
 * loads the rest with import() and says it as vcnet says any refused system call: VCNET_SYSCALL
 * with the errno, the hint to raise the limit, and that code's exit status (and the JSON error with
 * --json). Below some N Node itself cannot start or read the program's own file: nothing of vcnet
 * runs then, and those N are passed over.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { exitCodeFor } from '../../../src/cli/exit-codes.js';
import { hintForErrno, SystemCallError } from '../../../src/errors.js';
import { CLI } from '../../helpers/cli.js';

const PRLIMIT = spawnSync('prlimit', ['--version']).status === 0;
if (!PRLIMIT) console.log('start-files-limit: skipped: prlimit is not installed (util-linux)');

function startWithFiles(files: number, args: string[]) {
  const result = spawnSync('prlimit', [`--nofile=${files}`, process.execPath, CLI, ...args], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { files, status: result.status, signal: result.signal, stdout: result.stdout, stderr: result.stderr };
}

const EMFILE_EXIT = exitCodeFor(
  new SystemCallError(
    'load',
    Object.assign(new Error('EMFILE: too many open files'), { code: 'EMFILE', syscall: 'open' }),
  ),
);

describe.skipIf(!PRLIMIT)('vcnet started at its open-file limit', () => {
  it('says a chunk it could not open as VCNET_SYSCALL with the hint, for every limit where vcnet runs at all', () => {
    const refused = [];
    for (let files = 16; files <= 64; files++) {
      const run = startWithFiles(files, ['--version']);
      if (run.status === 0) continue;
      // Node's own start (its threads' event loops) or its read of the program's file: no vcnet yet.
      if (run.signal !== null || run.status === null || run.status >= 128) continue;
      if (run.stderr.includes(`open '${CLI}'`)) continue;
      refused.push(run);
    }
    // The range holds limits where the chunks could not all be opened: else this proves nothing.
    expect(refused.length, 'no limit between 16 and 64 files refused a chunk').toBeGreaterThan(0);
    for (const run of refused) {
      expect(run.stderr, `--nofile=${run.files}`).toMatch(
        /^vcnet: load the code of vcnet failed: EMFILE: too many open files, open '[^']*\/dist\/chunks\/[^']+'\nhint: /,
      );
      expect(run.stderr.split('\n')[1]).toBe(`hint: ${hintForErrno('EMFILE')}`);
      expect(run.status).toBe(EMFILE_EXIT);
    }
    // With --json, the error a program matches on, on stdout.
    const json = startWithFiles(refused[0]!.files, ['scan', '--json']);
    expect(json.status).toBe(EMFILE_EXIT);
    expect(JSON.parse(json.stdout)).toEqual({
      error: {
        name: 'SystemCallError',
        code: 'VCNET_SYSCALL',
        errno: 'EMFILE',
        message: expect.stringMatching(/^load the code of vcnet failed: EMFILE: too many open files, open /),
        hint: hintForErrno('EMFILE'),
      },
    });
  }, 300_000);

  it("the first file's hints are hintForErrno's", () => {
    const source = readFileSync(CLI, 'utf8');
    for (const errno of ['EMFILE', 'ENFILE']) expect(source).toContain(JSON.stringify(hintForErrno(errno)));
  });
});
