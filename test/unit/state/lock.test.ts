/**
 * The sandbox lock is flock(2): exclusive between open files, freed by the kernel when its holder
 * dies (kill -9), and a holder that unlinks the file does not let two processes in at once.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { VcnetError } from '../../../src/errors.js';
import { FileLock, LockFileRefusedError, lockFile, tryLockFile } from '../../../src/network/state/lock.js';
import { StateRegistryLockedError } from '../../../src/network/state/registry.js';
import { SandboxLockedError, SandboxStore } from '../../../src/network/state/store.js';
import { StateDirectoryError } from '../../../src/network/state/trust.js';

let directory: string;
const children: ChildProcess[] = [];

beforeEach(() => {
  directory = mkdtempSync(join(tmpdir(), 'vcnet-lock-'));
});
afterEach(() => {
  for (const child of children.splice(0)) {
    try {
      process.kill(-child.pid!, 'SIGKILL'); // the holder and the command it runs
    } catch {
      // already gone
    }
  }
  rmSync(directory, { recursive: true, force: true });
});

/** util-linux flock(1) holding the lock in another process (itself: --close keeps it from its command) until killed. */
async function holdInChild(path: string): Promise<ChildProcess> {
  const child = spawn('flock', ['--exclusive', '--close', path, 'sh', '-c', 'echo held; exec sleep 60'], {
    stdio: 'pipe',
    detached: true,
  });
  children.push(child);
  await new Promise<void>((resolve, reject) => {
    child.stdout?.once('data', () => resolve());
    child.once('error', reject);
  });
  return child;
}

describe('tryLockFile', () => {
  it('is exclusive between two opens, names the holder, and is free again after release', () => {
    const path = join(directory, '.locks', 'sb');
    const first = tryLockFile(path);
    expect(first).toBeInstanceOf(FileLock);
    expect(readFileSync(path, 'utf8')).toBe(String(process.pid));
    expect(tryLockFile(path)).toEqual({ heldBy: process.pid });
    (first as FileLock).release();
    const second = tryLockFile(path);
    expect(second).toBeInstanceOf(FileLock);
    (second as FileLock).release({ removeFile: true });
    expect(existsSync(path)).toBe(false);
  });

  it('is freed by the kernel when its holder is killed with -9', async () => {
    const path = join(directory, 'lock');
    const holder = await holdInChild(path);
    expect(tryLockFile(path)).not.toBeInstanceOf(FileLock);
    holder.kill('SIGKILL');
    await new Promise((resolve) => holder.once('exit', resolve));
    const lock = tryLockFile(path);
    expect(lock).toBeInstanceOf(FileLock);
    (lock as FileLock).release();
  });

  it("names the process holding the lock, not the pid the file's last writer left", async () => {
    const path = join(directory, 'lock');
    (tryLockFile(path) as FileLock).release();
    expect(readFileSync(path, 'utf8')).toBe(String(process.pid));
    // flock(1) takes the lock without writing its pid: the file still names this process.
    const holder = await holdInChild(path);
    expect(tryLockFile(path)).toEqual({ heldBy: holder.pid });
  });

  it('lets nobody in through a file its holder unlinked', () => {
    const path = join(directory, 'lock');
    const holder = tryLockFile(path) as FileLock;
    holder.release({ removeFile: true });
    // A new file at the path is a new lock; the old inode no longer matters.
    const next = tryLockFile(path) as FileLock;
    expect(next).toBeInstanceOf(FileLock);
    expect(tryLockFile(path)).toEqual({ heldBy: process.pid });
    next.release();
  });
});

describe('tryLockFile on a path someone planted', () => {
  it('refuses a symbolic link and writes nothing through it', () => {
    const victim = join(directory, 'victim');
    writeFileSync(victim, 'precious\n');
    mkdirSync(join(directory, '.locks'));
    const path = join(directory, '.locks', 's1');
    symlinkSync(victim, path);
    expect(() => tryLockFile(path)).toThrow(LockFileRefusedError);
    expect(() => tryLockFile(path)).toThrow(`the lock file ${path} is a symbolic link`);
    expect(readFileSync(victim, 'utf8')).toBe('precious\n');
  });

  it('refuses a FIFO or a directory (not a regular file) with a VCNET_STATE_INVALID error', () => {
    const fifo = join(directory, 'fifo');
    spawnSync('mkfifo', [fifo]);
    expect(() => tryLockFile(fifo)).toThrow(expect.objectContaining({ code: 'VCNET_STATE_INVALID' }));
    const inner = join(directory, 'inner');
    mkdirSync(inner);
    expect(() => tryLockFile(inner)).toThrow(`the lock file ${inner} is not a regular file`);
  });
});

describe('lockFile', () => {
  it('waits for the holder, and times out with the error the caller builds', async () => {
    const path = join(directory, 'lock');
    const holder = tryLockFile(path) as FileLock;
    setTimeout(() => holder.release(), 100);
    const lock = await lockFile(path, 5_000, () => new Error('timed out'));
    expect(lock).toBeInstanceOf(FileLock);
    await expect(lockFile(path, 50, (pid) => new Error(`held by ${pid}`))).rejects.toThrow(`held by ${process.pid}`);
    lock.release();
  });
});

describe('SandboxStore.withLock', () => {
  it('serialises two holders, survives removal of the sandbox directory, and hints at --lock-timeout', async () => {
    const store = new SandboxStore('sb', directory);
    const order: string[] = [];
    let releaseFirst!: () => void;
    const first = store.withLock(async () => {
      order.push('first in');
      store.write({ placeholder: true });
      await new Promise<void>((resolve) => {
        releaseFirst = resolve;
      });
      store.remove(); // a complete detach removes the sandbox directory while holding the lock
      order.push('first out');
    });
    await new Promise((resolve) => setTimeout(resolve, 20));
    const refused = await store.withLock(async () => 'never', 30).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(SandboxLockedError);
    expect((refused as SandboxLockedError).hint).toContain('--lock-timeout');
    expect((refused as SandboxLockedError).hint).toContain('lockTimeoutMs');
    const second = store.withLock(async () => {
      order.push('second in');
    });
    releaseFirst();
    await Promise.all([first, second]);
    expect(order).toEqual(['first in', 'first out', 'second in']);
    expect(existsSync(store.lockPath)).toBe(false);
  });
});

describe('the state directory registry lock', () => {
  it("is waited for as long as the caller's lock timeout, and a held one is a VcnetError naming its holder", async () => {
    const saved = process.env.VCNET_STATE_REGISTRY;
    const registry = join(directory, 'state-directories');
    process.env.VCNET_STATE_REGISTRY = registry;
    try {
      const holder = await holdInChild(`${registry}.lock`);
      const store = new SandboxStore('sb', join(directory, 'state'));
      const started = Date.now();
      const refused = await store
        .withLock(async () => {
          await store.prepareToRecord();
          return 'never';
        }, 1_500)
        .catch((error: unknown) => error);
      const waited = Date.now() - started;
      expect(refused).toBeInstanceOf(StateRegistryLockedError);
      expect(refused).toBeInstanceOf(VcnetError);
      expect(refused).toMatchObject({ code: 'VCNET_SANDBOX_LOCKED', value: holder.pid });
      expect((refused as Error).message).toContain(`process ${holder.pid}`);
      expect((refused as VcnetError).hint).toContain('lockTimeoutMs');
      // The caller's 1.5 s, not a fixed 10 s: the error says the bound it waited for (read from it, not
      // from the clock, which a loaded machine stretches); that it waited it out, no load can shorten.
      const bound = Number(/\(waited (\d+) ms\)/.exec((refused as Error).message)?.[1]);
      expect(bound, (refused as Error).message).toBeGreaterThan(0);
      expect(bound).toBeLessThanOrEqual(1_500);
      expect(waited).toBeGreaterThanOrEqual(1_400);
      // The sandbox lock was let go: nothing is left held.
      expect(tryLockFile(store.lockPath)).toBeInstanceOf(FileLock);
    } finally {
      if (saved === undefined) delete process.env.VCNET_STATE_REGISTRY;
      else process.env.VCNET_STATE_REGISTRY = saved;
    }
  });
});

describe('SandboxStore trusts nothing it did not make', () => {
  it('refuses a record directory that is a symbolic link: the record is neither read nor written through it', async () => {
    const target = join(directory, 'elsewhere');
    mkdirSync(target);
    const root = join(directory, 'state');
    mkdirSync(root, { mode: 0o700 });
    symlinkSync(target, join(root, 's1'));
    const store = new SandboxStore('s1', root);
    expect(() => store.write({ placeholder: true })).toThrow(
      `the record directory ${join(root, 's1')} is a symbolic link`,
    );
    expect(() => store.read()).toThrow(expect.objectContaining({ code: 'VCNET_STATE_INVALID' }));
    await expect(store.withLock(async () => 'never')).rejects.toThrow('is a symbolic link');
    expect(readdirSync(target)).toEqual([]);
  });

  it('refuses a state.json that is a symbolic link', () => {
    const root = join(directory, 'state');
    mkdirSync(join(root, 's1'), { recursive: true, mode: 0o700 });
    const elsewhere = join(directory, 'other.json');
    writeFileSync(elsewhere, '{}');
    symlinkSync(elsewhere, join(root, 's1', 'state.json'));
    expect(() => new SandboxStore('s1', root).read()).toThrow(
      `state file ${join(root, 's1', 'state.json')} is a symbolic link`,
    );
  });

  it('refuses a state directory (or its .locks) another user could change, naming owner, mode and the fix', async () => {
    const root = join(directory, 'state');
    mkdirSync(root, { mode: 0o700 });
    const store = new SandboxStore('s1', root);
    chmodSync(root, 0o770);
    const groupWritable = await store.withLock(async () => 'never').catch((error: unknown) => error);
    expect(groupWritable).toBeInstanceOf(StateDirectoryError);
    expect(groupWritable).toMatchObject({ code: 'VCNET_STATE_DIR', value: root });
    expect((groupWritable as Error).message).toBe(
      `cannot use ${root} as a state directory: it is writable by its group (owner uid 0, mode 0770): another user could change its records`,
    );
    expect((groupWritable as VcnetError).hint).toContain(`chown root ${root}; chmod 700 ${root}`);
    chmodSync(root, 0o700);
    chownSync(root, 65534, 65534);
    expect(() => store.read()).toThrow(`it is owned by uid 65534 (mode 0700), not by vcnet's effective uid 0`);
    chownSync(root, 0, 0);
    mkdirSync(join(root, '.locks'), { mode: 0o700 });
    chmodSync(join(root, '.locks'), 0o703);
    await expect(store.withLock(async () => 'never')).rejects.toThrow(
      `cannot use ${join(root, '.locks')} as a state directory: it is writable by others`,
    );
    chmodSync(join(root, '.locks'), 0o700);
    await expect(store.withLock(async () => 'fine')).resolves.toBe('fine');
  });

  it('withLockIfRecorded: with no record directory, the work runs and nothing is made', async () => {
    const root = join(directory, 'typo1');
    const store = new SandboxStore('s1', root);
    await expect(store.withLockIfRecorded(async () => store.read())).resolves.toBeUndefined();
    expect(existsSync(root)).toBe(false);
  });
});
