/**
 * A registry write that fails (its file system full, read-only, failing) says so with the registry's
 * path and VCNET_STATE_REGISTRY, the variable that moves it: not "the state directory" and
 * --state-dir, which do not change where the registry is. The failure is injected where the system
 * answers (the open of the temporary file, or of the lock file), so the hint is the one the writer
 * itself makes: nothing between it and the caller gives the error another one.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { constants, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { hintForErrno } from '../../../src/errors.js';
import { StateWriteError } from '../../../src/network/state/atomic-file.js';
import { registerStateDirectory } from '../../../src/network/state/registry.js';

const failWith = vi.hoisted(() => ({ errno: 'EROFS', path: '.state-directories.' }));

vi.mock('node:fs', async (importOriginal) => {
  const original = await importOriginal<typeof import('node:fs')>();
  const openSync = (path: import('node:fs').PathLike, ...rest: unknown[]) => {
    if (String(path).includes(failWith.path))
      // As Node's own: a numeric errno and the syscall beside the name (errnoOf reads a system error by them).
      throw Object.assign(new Error(`${failWith.errno}: injected, open '${String(path)}'`), {
        code: failWith.errno,
        errno: -(constants.errno as Record<string, number>)[failWith.errno]!,
        syscall: 'open',
        path: String(path),
      });
    return (original.openSync as (...args: unknown[]) => number)(path, ...rest);
  };
  return { ...original, default: { ...original, openSync }, openSync };
});

let directory: string;
beforeEach(() => {
  directory = mkdtempSync(join(tmpdir(), 'vcnet-registry-hint-'));
});
afterEach(() => {
  rmSync(directory, { recursive: true, force: true });
});

/** The hints users have been shown for each errno (docs/troubleshooting.md quotes their forms). */
function expectedHint(errno: string, registry: string): string {
  const what = `${registry} (the registry of state directories, which \`vcnet gc\` reads to find every record)`;
  switch (errno) {
    case 'ENOSPC':
      return `the file system of ${what} is full: free space there (df), then run the command again`;
    case 'EROFS':
    case 'EACCES':
      return `${what} cannot be written (read-only, or permissions): set VCNET_STATE_REGISTRY to a file that can be (and run gc with the same)`;
    case 'EMFILE':
      return hintForErrno('EMFILE') ?? '';
    default:
      return `${what} could not be written: check its file system (dmesg), then run the command again, or set VCNET_STATE_REGISTRY to a file elsewhere (and run gc with the same)`;
  }
}

describe('a registry write that fails', () => {
  for (const errno of ['EROFS', 'EACCES', 'ENOSPC', 'EIO', 'EMFILE']) {
    it(`${errno}: the hint names the registry and VCNET_STATE_REGISTRY, not --state-dir`, async () => {
      failWith.errno = errno;
      failWith.path = '.state-directories.';
      const registry = join(directory, 'registry');
      const error = await registerStateDirectory(directory, registry).catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(StateWriteError);
      const { code, hint, message } = error as StateWriteError;
      expect(code).toBe('VCNET_STATE_WRITE');
      expect(message).toContain(`could not write ${registry}`);
      expect(hint).toBe(expectedHint(errno, registry));
      expect(hint).not.toContain('--state-dir');
      expect(hint).not.toContain('the state directory is');
    });
  }

  for (const errno of ['ENOSPC', 'EROFS']) {
    it(`${errno} on its lock file: the same hint, for the lock file`, async () => {
      failWith.errno = errno;
      const registry = join(directory, 'registry');
      failWith.path = `${registry}.lock`;
      const error = await registerStateDirectory(directory, registry).catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(StateWriteError);
      const { hint, message } = error as StateWriteError;
      expect(message).toContain(`could not open the lock file ${registry}.lock`);
      expect(hint).toBe(expectedHint(errno, registry));
    });
  }
});
