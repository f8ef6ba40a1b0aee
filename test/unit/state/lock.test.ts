/**
 * The sandbox lock is flock(2): exclusive between open files, freed by the kernel when its holder
 * dies (kill -9), and a holder that unlinks the file does not let two processes in at once.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { VcnetError } from '../../../src/errors.js';
import { FileLock, lockFile, tryLockFile } from '../../../src/network/state/lock.js';
import { StateRegistryLockedError } from '../../../src/network/state/registry.js';
import { SandboxLockedError, SandboxStore } from '../../../src/network/state/store.js';

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
      const refused = await store.withLock(async () => 'never', 1_500).catch((error: unknown) => error);
      const waited = Date.now() - started;
      expect(refused).toBeInstanceOf(StateRegistryLockedError);
      expect(refused).toBeInstanceOf(VcnetError);
      expect(refused).toMatchObject({ code: 'VCNET_SANDBOX_LOCKED', value: holder.pid });
      expect((refused as Error).message).toContain(`process ${holder.pid}`);
      expect((refused as VcnetError).hint).toContain('lockTimeoutMs');
      // The caller's 1.5 s, not a fixed 10 s.
      expect(waited).toBeGreaterThanOrEqual(1_400);
      expect(waited).toBeLessThan(5_000);
      // The sandbox lock was let go: nothing is left held.
      expect(tryLockFile(store.lockPath)).toBeInstanceOf(FileLock);
    } finally {
      if (saved === undefined) delete process.env.VCNET_STATE_REGISTRY;
      else process.env.VCNET_STATE_REGISTRY = saved;
    }
  });
});
