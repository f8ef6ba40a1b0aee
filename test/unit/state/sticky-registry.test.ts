/**
 * Files vcnet makes where another user may create names too: a registry in a sticky directory (as
 * /tmp, allowed since the registry trust rule). Its temporary file had a predictable name
 * (`.state-directories.<pid>.tmp`): a file planted there by another user was written into and renamed
 * over the registry (now that user's, mode 0666: every later command refused it, with a hint to chown
 * it that would have blessed the user's lines), and a FIFO there hung the attach holding its locks.
 * Its lock file was opened whether or not vcnet made it: another user's file there, flocked by that
 * user, held every attach off forever. Each is refused or avoided now; a test fails without its fix.
 */
import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  linkSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { replaceFileAtomically, temporaryFileName } from '../../../src/network/state/atomic-file.js';
import { LockFileRefusedError, tryLockFile } from '../../../src/network/state/lock.js';
import { registeredStateDirectories, registerStateDirectory } from '../../../src/network/state/registry.js';
import { STATE_TEMPORARY_FILE } from '../../../src/network/state/store.js';

const NOBODY = 65534;
let sticky: string;

beforeEach(() => {
  sticky = mkdtempSync(join(tmpdir(), 'vcnet-sticky-'));
  chmodSync(sticky, 0o1777);
});
afterEach(() => {
  rmSync(sticky, { recursive: true, force: true });
});

/** A file another user (nobody) made, writable by all, as an attacker plants it. */
function plantFile(path: string, text = 'planted\n'): void {
  writeFileSync(path, text);
  chownSync(path, NOBODY, NOBODY);
  chmodSync(path, 0o666);
}

describe('the temporary file of an atomic write', () => {
  it('has a name nobody can guess, still telling its writer', () => {
    const first = temporaryFileName('.state.');
    expect(first).toMatch(new RegExp(`^\\.state\\.${process.pid}\\.[0-9a-f]{16}\\.tmp$`));
    expect(temporaryFileName('.state.')).not.toBe(first);
    // gc and the store still know it for a write's temporary (and the older builds' names too).
    expect(STATE_TEMPORARY_FILE.test(first)).toBe(true);
    expect(STATE_TEMPORARY_FILE.test('.state.4242.tmp')).toBe(true);
    expect(STATE_TEMPORARY_FILE.test('.state.4242.x.tmp')).toBe(false);
  });

  it('a file planted at the name the registry write used to take is neither written nor renamed', async () => {
    const registry = join(sticky, 'registry');
    const planted = join(sticky, `.state-directories.${process.pid}.tmp`);
    plantFile(planted);
    await registerStateDirectory('/var/lib/vcnet-test-state', registry);
    const stats = statSync(registry);
    expect(stats.uid).toBe(process.geteuid?.());
    expect(stats.mode & 0o777).toBe(0o644);
    expect(readFileSync(registry, 'utf8')).toBe('/var/lib/vcnet-test-state\n');
    expect(readFileSync(planted, 'utf8')).toBe('planted\n');
    expect(statSync(planted).uid).toBe(NOBODY);
    // Nothing of the write is left beside them.
    expect(readdirSync(sticky).sort()).toEqual([
      '.state-directories.' + `${process.pid}.tmp`,
      'registry',
      'registry.lock',
    ]);
  });

  it('replaceFileAtomically writes a new file of its own even with FIFOs at the old names', () => {
    const target = join(sticky, 'file');
    spawnSync('mkfifo', [join(sticky, `.t.${process.pid}.tmp`)]);
    replaceFileAtomically(target, 'text\n', { temporaryPrefix: join(sticky, '.t.'), mode: 0o600 });
    expect(readFileSync(target, 'utf8')).toBe('text\n');
    expect(statSync(target).mode & 0o777).toBe(0o600);
  });
});

describe('a registry read where another user may create names', () => {
  it("another user's file at a missing registry's path is refused, and the hint does not say chown", () => {
    const registry = join(sticky, 'registry');
    plantFile(registry, '/home/nobody/state\n');
    chmodSync(registry, 0o644);
    let error: { code?: string; message?: string; hint?: string } | undefined;
    try {
      registeredStateDirectories(registry);
    } catch (caught) {
      error = caught as typeof error;
    }
    expect(error?.message).toContain(`the file ${registry} is owned by uid ${NOBODY}`);
    expect(error?.hint).toContain(`look at it, then remove it (rm ${registry}`);
    expect(error?.hint).not.toContain('chown');
  });

  it('a registry with a second name (a hard link to it) is refused', () => {
    const registry = join(sticky, 'registry');
    writeFileSync(registry, '/state\n', { mode: 0o644 });
    linkSync(registry, join(sticky, 'other-name'));
    expect(() => registeredStateDirectories(registry)).toThrow('has 2 names (hard links)');
  });
});

describe('a lock file vcnet did not make', () => {
  it("another user's file at the registry lock's path is refused, naming it, its owner and what to do", async () => {
    const registry = join(sticky, 'registry');
    plantFile(`${registry}.lock`, '');
    chmodSync(`${registry}.lock`, 0o644);
    const attempt = registerStateDirectory('/var/lib/vcnet-test-state', registry);
    await expect(attempt).rejects.toThrow(LockFileRefusedError);
    await expect(registerStateDirectory('/x', registry)).rejects.toThrow(
      `the lock file ${registry}.lock is owned by uid ${NOBODY} (mode 0644), not by root or vcnet's effective uid 0`,
    );
    await expect(registerStateDirectory('/x', registry)).rejects.toThrow(
      expect.objectContaining({ hint: expect.stringContaining(`rm ${registry}.lock`) }),
    );
  });

  it('a lock file others can write, or with a second name, is refused; one vcnet made is taken', () => {
    const locks = join(sticky, 'locks');
    mkdirSync(locks);
    const writable = join(locks, 'a');
    writeFileSync(writable, '');
    chmodSync(writable, 0o666);
    expect(() => tryLockFile(writable)).toThrow('is writable by its group or others');
    const linked = join(locks, 'b');
    writeFileSync(join(locks, 'victim'), 'precious\n', { mode: 0o600 });
    linkSync(join(locks, 'victim'), linked);
    expect(() => tryLockFile(linked)).toThrow('a file with 2 names (hard links)');
    expect(readFileSync(join(locks, 'victim'), 'utf8')).toBe('precious\n');
    const made = tryLockFile(join(locks, 'c'));
    expect('heldBy' in made).toBe(false);
    if (!('heldBy' in made)) made.release();
  });
});
