/**
 * `vcnet attach` and `detach` whose state directory fails one system call (injected with strace:
 * EIO, ENOSPC on that call alone): the error is a typed VCNET_STATE_WRITE with a hint that says what
 * is left, and what is left is what the next command can use.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CLI, stateDirectoryPerTest, vcnet } from '../../helpers/cli.js';
import { fingerprint, makePod } from '../../helpers/pod.js';
import { runUnderStrace, straceFaultsSkipReason } from '../../helpers/strace.js';

const stateDirectory = stateDirectoryPerTest('vcnet-faults-');
const skipReason = straceFaultsSkipReason('state fault tests');

/** `vcnet <args> --json` under `strace -f <strace...>`; the parsed error when it failed. */
function vcnetUnderStrace(strace: string[], args: string[]) {
  const result = runUnderStrace(strace, [process.execPath, CLI, ...args, '--json', '--state-dir', stateDirectory()], {
    env: { ...process.env, VCNET_STATE_REGISTRY: join(stateDirectory(), 'registry') },
  });
  let error: { code?: string; errno?: string; message?: string; hint?: string } | undefined;
  try {
    error = (JSON.parse(result.stdout) as { error?: typeof error }).error;
  } catch {
    error = undefined;
  }
  return { status: result.status, stdout: result.stdout, stderr: result.stderr, error };
}

function plain(args: string[]) {
  return vcnet([...args, '--state-dir', stateDirectory()], {
    VCNET_STATE_REGISTRY: join(stateDirectory(), 'registry'),
  });
}

describe.skipIf(skipReason)('state directory system calls that fail', () => {
  it('a detach that undid everything but cannot remove the record: VCNET_STATE_WRITE saying so; the next detach drops it', () => {
    const { pod } = makePod();
    const before = fingerprint(pod);
    expect(plain(['attach', '--sandbox', 'rm', '--netns', pod.path]).status).toBe(0);
    const statePath = join(stateDirectory(), 'rm', 'state.json');
    const detach = vcnetUnderStrace(
      ['-P', statePath, '-e', 'trace=unlink,unlinkat', '-e', 'inject=unlink,unlinkat:error=EIO'],
      ['detach', '--sandbox', 'rm'],
    );
    expect(detach.stderr).not.toContain('    at ');
    expect(detach.status).toBe(1);
    expect(detach.error).toMatchObject({ code: 'VCNET_STATE_WRITE', errno: 'EIO' });
    expect(detach.error?.message).toContain(`could not remove the record directory ${join(stateDirectory(), 'rm')}`);
    expect(detach.error?.hint).toContain('the namespace is as it was before');
    expect(detach.error?.hint).toContain('the next detach of the sandbox drops it');
    // The pod is as it was; the record is left, and the next detach finds nothing to undo and drops it.
    expect(fingerprint(pod)).toEqual(before);
    expect(existsSync(statePath)).toBe(true);
    const again = plain(['detach', '--sandbox', 'rm']);
    expect(again.status, again.stderr).toBe(0);
    expect(existsSync(join(stateDirectory(), 'rm'))).toBe(false);
    expect(fingerprint(pod)).toEqual(before);
  });

  for (const errno of ['ENOSPC', 'EROFS', 'EIO']) {
    it(`an attach whose sandbox directory cannot be made (${errno}) is a write that failed (exit 1, VCNET_STATE_WRITE), not an unusable --state-dir`, () => {
      const { pod } = makePod();
      const before = fingerprint(pod);
      const attach = vcnetUnderStrace(
        ['-P', join(stateDirectory(), 'mk'), '-e', 'trace=mkdir,mkdirat', '-e', `inject=mkdir,mkdirat:error=${errno}`],
        ['attach', '--sandbox', 'mk', '--netns', pod.path],
      );
      expect(attach.status, attach.stderr).toBe(1);
      expect(attach.error).toMatchObject({ code: 'VCNET_STATE_WRITE', errno });
      expect(attach.error?.message).toContain(`could not create the directory ${join(stateDirectory(), 'mk')}`);
      expect(attach.error?.hint).toContain(
        errno === 'ENOSPC' ? 'is full' : errno === 'EROFS' ? 'read-only file system' : 'check its file system',
      );
      expect(fingerprint(pod)).toEqual(before);
      expect(existsSync(join(stateDirectory(), 'mk'))).toBe(false);
    });
  }

  it('an attach whose first record is renamed in place but whose directory fsync fails leaves no record: the retry attaches', () => {
    const { pod } = makePod();
    const before = fingerprint(pod);
    const attach = vcnetUnderStrace(
      ['-P', join(stateDirectory(), 'fs'), '-e', 'trace=fsync', '-e', 'inject=fsync:error=EIO:when=1'],
      ['attach', '--sandbox', 'fs', '--netns', pod.path],
    );
    expect(attach.status, attach.stderr).toBe(1);
    expect(attach.error).toMatchObject({ code: 'VCNET_STATE_WRITE', errno: 'EIO' });
    expect(fingerprint(pod)).toEqual(before);
    expect(existsSync(join(stateDirectory(), 'fs'))).toBe(false);
    const retry = plain(['attach', '--sandbox', 'fs', '--netns', pod.path]);
    expect(retry.status, retry.stderr).toBe(0);
    expect(plain(['detach', '--sandbox', 'fs']).status).toBe(0);
    expect(fingerprint(pod)).toEqual(before);
  });

  for (const errno of ['ENOSPC', 'EROFS', 'EIO']) {
    it(`an attach whose lock file cannot be made (${errno}) is a write that failed (exit 1, VCNET_STATE_WRITE), not a failed system call`, () => {
      const { pod } = makePod();
      const before = fingerprint(pod);
      const lockPath = join(stateDirectory(), '.locks', 'lk');
      const attach = vcnetUnderStrace(
        ['-P', lockPath, '-e', 'trace=open,openat', '-e', `inject=open,openat:error=${errno}`],
        ['attach', '--sandbox', 'lk', '--netns', pod.path],
      );
      expect(attach.status, attach.stderr).toBe(1);
      expect(attach.error).toMatchObject({ code: 'VCNET_STATE_WRITE', errno });
      expect(attach.error?.message).toContain(`could not open the lock file ${lockPath}`);
      expect(attach.error?.hint).toContain(
        errno === 'ENOSPC' ? 'is full' : errno === 'EROFS' ? 'read-only file system' : 'check its file system',
      );
      if (errno === 'EROFS')
        expect(attach.error?.hint).toContain('point --state-dir (or VCNET_STATE_DIR) at a writable one');
      expect(fingerprint(pod)).toEqual(before);
      expect(existsSync(join(stateDirectory(), 'lk'))).toBe(false);
    });
  }

  it('an attach whose registry lock file cannot be made (ENOSPC) is a write that failed, with the registry in the hint', () => {
    const { pod } = makePod();
    const before = fingerprint(pod);
    const registryLock = `${join(stateDirectory(), 'registry')}.lock`;
    const attach = vcnetUnderStrace(
      ['-P', registryLock, '-e', 'trace=open,openat', '-e', 'inject=open,openat:error=ENOSPC'],
      ['attach', '--sandbox', 'rl', '--netns', pod.path],
    );
    expect(attach.status, attach.stderr).toBe(1);
    expect(attach.error).toMatchObject({ code: 'VCNET_STATE_WRITE', errno: 'ENOSPC' });
    expect(attach.error?.message).toContain(`could not open the lock file ${registryLock}`);
    expect(attach.error?.hint).toContain('the registry of state directories');
    expect(attach.error?.hint).toContain('is full');
    expect(fingerprint(pod)).toEqual(before);
  });
});
