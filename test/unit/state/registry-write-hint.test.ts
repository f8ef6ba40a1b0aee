/**
 * A registry write that fails (its file system full, read-only, failing) says so with the registry's
 * path and VCNET_STATE_REGISTRY, the variable that moves it: not "the state directory" and
 * --state-dir, which do not change where the registry is.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { StateWriteError } from '../../../src/network/state/atomic-file.js';
import { registerStateDirectory } from '../../../src/network/state/registry.js';

const failWith = vi.hoisted(() => ({ errno: 'EROFS' }));

vi.mock('../../../src/network/state/atomic-file.js', async (importOriginal) => {
  const original = await importOriginal<typeof import('../../../src/network/state/atomic-file.js')>();
  return {
    ...original,
    replaceFileAtomically: (path: string) => {
      throw new original.StateWriteError(
        path,
        Object.assign(new Error(`${failWith.errno}: injected`), { code: failWith.errno }),
      );
    },
  };
});

let directory: string;
beforeEach(() => {
  directory = mkdtempSync(join(tmpdir(), 'vcnet-registry-hint-'));
});
afterEach(() => {
  rmSync(directory, { recursive: true, force: true });
});

describe('a registry write that fails', () => {
  for (const errno of ['EROFS', 'ENOSPC', 'EIO']) {
    it(`${errno}: the hint names the registry and VCNET_STATE_REGISTRY, not --state-dir`, async () => {
      failWith.errno = errno;
      const registry = join(directory, 'registry');
      const error = await registerStateDirectory(directory, registry).catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(StateWriteError);
      const { code, hint, message } = error as StateWriteError;
      expect(code).toBe('VCNET_STATE_WRITE');
      expect(message).toContain(`could not write ${registry}`);
      expect(hint).toContain(registry);
      expect(hint).not.toContain('--state-dir');
      expect(hint).not.toContain('the state directory');
      if (errno !== 'ENOSPC') expect(hint).toContain('VCNET_STATE_REGISTRY');
      else expect(hint).toContain('is full');
    });
  }
});
