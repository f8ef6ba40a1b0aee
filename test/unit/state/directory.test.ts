/**
 * makeDirectory: each missing component made once, the first that cannot be made named. On /proc,
 * Node's recursive mkdir loops forever, so the /proc case runs in a child process with a timeout:
 * a helper that loops fails the test instead of hanging the run (it runs the built dist/ module).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DirectoryNotMadeError, makeDirectory } from '../../../src/network/state/directory.js';

let directory: string;
beforeEach(() => {
  directory = mkdtempSync(join(tmpdir(), 'vcnet-directory-'));
});
afterEach(() => {
  rmSync(directory, { recursive: true, force: true });
});

function thrown(run: () => unknown): DirectoryNotMadeError {
  try {
    run();
  } catch (error) {
    if (error instanceof DirectoryNotMadeError) return error;
    throw error;
  }
  throw new Error('expected makeDirectory to fail');
}

describe('makeDirectory', () => {
  it('makes every missing component with the mode, and accepts a directory already there', () => {
    const target = join(directory, 'a', 'b', 'c');
    makeDirectory(target, 0o700);
    for (const path of [join(directory, 'a'), join(directory, 'a', 'b'), target]) {
      expect(statSync(path).isDirectory()).toBe(true);
      expect(statSync(path).mode & 0o777).toBe(0o700);
    }
    makeDirectory(target, 0o700);
    makeDirectory(directory, 0o700);
  });

  it('names the component that is a file (ENOTDIR), however deep below it the path goes', () => {
    const file = join(directory, 'a-file');
    writeFileSync(file, '');
    for (const target of [join(file, 'state'), join(file, 'x', 'y')]) {
      const error = thrown(() => makeDirectory(target, 0o700));
      expect(error.errno).toBe('ENOTDIR');
      expect(error.component).toBe(file);
      expect(error.reason).toBe(`${file} is not a directory (ENOTDIR)`);
      expect(error.message).toBe(`create directory ${target} failed: ${file} is not a directory (ENOTDIR)`);
    }
    const error = thrown(() => makeDirectory(file, 0o700));
    expect(error.reason).toBe(`${file} is not a directory (ENOTDIR)`);
  });

  it('stops at once under /proc (where recursive mkdir loops), naming the component and the errno', () => {
    // The build of this source (test/global-setup.ts runs npm run build first).
    const helper = fileURLToPath(new URL('../../../dist/network/state/directory.js', import.meta.url));
    const target = `/proc/vcnet-no-such-${process.pid}/state`;
    const script = `
      const { makeDirectory } = await import(${JSON.stringify(helper)});
      try { makeDirectory(${JSON.stringify(target)}, 0o700); console.log('made'); }
      catch (error) { console.log(JSON.stringify({ errno: error.errno, component: error.component, message: error.message })); }
    `;
    const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
      encoding: 'utf8',
      timeout: 10_000,
      killSignal: 'SIGKILL',
    });
    expect(run.signal, `the helper looped and was killed: ${run.stderr}`).toBeNull();
    expect(run.status, run.stderr).toBe(0);
    const outcome = JSON.parse(run.stdout) as { errno: string; component: string; message: string };
    expect(outcome.component).toBe(`/proc/vcnet-no-such-${process.pid}`);
    expect(['ENOENT', 'EACCES']).toContain(outcome.errno);
    expect(outcome.message).toMatch(
      new RegExp(
        `^create directory ${target} failed: cannot create /proc/vcnet-no-such-${process.pid} \\((ENOENT|EACCES): `,
      ),
    );
  });
});
