/**
 * An exclusive advisory lock on a file, held with flock(2) through the native shim.
 *
 * Why flock and not a pid file: the kernel drops the lock when its holder's fd is closed, so a
 * process killed with -9 never leaves it held, and nobody has to guess whether an owner is stale.
 * No npm package does flock without a native build of its own (fs-ext, os-lock), and vcnet already
 * has one shim; proper-lockfile decides staleness by mtime, which is the guess flock avoids.
 *
 * Lock files may be unlinked by their holder to keep the directory tidy: a waiter that then gets
 * the lock on the unlinked inode sees that the path no longer names it and tries again, so two
 * processes can never both believe they hold the lock for one path.
 */
import {
  closeSync,
  constants,
  fstatSync,
  ftruncateSync,
  lstatSync,
  openSync,
  readFileSync,
  type Stats,
  statSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { dirname } from 'node:path';
import { onAbort } from '../../abort-listeners.js';
import { errnoOf, SystemCallError, VcnetError } from '../../errors.js';
import { nativeFileLock } from '../../native/file-lock.js';
import { shellWord } from '../../shell-word.js';
import { STATE_WRITE_FAILURES, StateWriteError, type StateWriteSubject } from './atomic-file.js';
import { makeDirectory } from './directory.js';

/**
 * Resolves after `ms`, or rejects at once with the signal's reason when it aborts. Every waiter
 * shares one listener on the signal (abort-listeners.ts): a daemon's one signal on many waits.
 */
function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      stopWaiting?.();
      resolve();
    }, ms);
    const stopWaiting = signal
      ? onAbort(signal, () => {
          clearTimeout(timer);
          reject(signal.reason);
        })
      : undefined;
  });
}

/** A lock file that is a symbolic link or not a regular file: vcnet does not open it. */
export class LockFileRefusedError extends VcnetError {
  static override readonly errorName: string = 'LockFileRefusedError';
  constructor(path: string, what: string) {
    super('VCNET_STATE_INVALID', `the lock file ${path} is ${what}`, {
      value: path,
      hint: `nothing was changed; vcnet writes its pid into its lock files and never through a link or into anything but a plain file of its own: remove it (rm ${shellWord(path)}) and run the command again`,
    });
  }
}

function refuseIrregularLockFile(path: string): void {
  let stats: ReturnType<typeof lstatSync>;
  try {
    stats = lstatSync(path);
  } catch {
    return; // not there yet: the open makes it (and O_NOFOLLOW refuses a link made meanwhile)
  }
  if (stats.isSymbolicLink()) throw new LockFileRefusedError(path, 'a symbolic link');
  if (!stats.isFile()) throw new LockFileRefusedError(path, 'not a regular file');
}

/**
 * Why an opened lock file is not one vcnet may use, or undefined. Besides a plain file: owned by root
 * or vcnet's effective user and writable by neither group nor others, as vcnet makes them (0600). In
 * a directory other users may create files in (a registry in /tmp), a lock file another user made
 * first could be flocked by that user forever; and one with a second name (a hard link) is someone
 * else's file, into which vcnet would write its pid.
 */
function untrustedLockFile(stats: Stats): string | undefined {
  if (!stats.isFile()) return 'not a regular file';
  const user = process.geteuid?.() ?? 0;
  const mode = `0${(stats.mode & 0o7777).toString(8)}`;
  if (stats.uid !== 0 && stats.uid !== user)
    return `owned by uid ${stats.uid} (mode ${mode}), not by root or vcnet's effective uid ${user}: that user could hold the lock forever`;
  if ((stats.mode & 0o022) !== 0)
    return `writable by its group or others (owner uid ${stats.uid}, mode ${mode}), which vcnet never makes a lock file`;
  if (stats.nlink > 1) return `a file with ${stats.nlink} names (hard links), which vcnet never makes a lock file`;
  return undefined;
}

/** A lock this process holds; `release()` (or exit, or death) frees it. */
export class FileLock {
  private released = false;

  constructor(
    readonly path: string,
    private readonly fd: number,
  ) {}

  /** Frees the lock; with `removeFile` the lock file is unlinked first, while still held. */
  release(options: { removeFile?: boolean } = {}): void {
    if (this.released) return;
    this.released = true;
    if (options.removeFile) {
      try {
        unlinkSync(this.path);
      } catch {
        // already gone: nothing to tidy
      }
    }
    closeSync(this.fd);
  }
}

/**
 * Takes the lock now or returns the pid of its holder (0 when that cannot be known). Never waits.
 * `subject`: what the hint of a lock file that cannot be made names (StateWriteError's).
 */
export function tryLockFile(path: string, subject?: StateWriteSubject): FileLock | { heldBy: number } {
  for (;;) {
    makeDirectory(dirname(path), 0o700);
    refuseIrregularLockFile(path);
    let fd: number;
    try {
      // vcnet writes its pid into the file: never through a symbolic link planted at its path, and
      // never blocking on a FIFO.
      fd = openSync(path, constants.O_RDWR | constants.O_CREAT | constants.O_NOFOLLOW | constants.O_NONBLOCK, 0o600);
    } catch (error) {
      const code = errnoOf(error);
      // The directory was removed between mkdir and open (a test cleaning up, an admin): once more.
      if (code === 'ENOENT') continue;
      if (code === 'ELOOP') throw new LockFileRefusedError(path, 'a symbolic link');
      // A full, read-only or failing file system (or no fd left) is a write that failed: try again.
      if (code !== undefined && STATE_WRITE_FAILURES.has(code))
        throw new StateWriteError(path, error as NodeJS.ErrnoException, subject, { action: 'open the lock file' });
      throw new SystemCallError(`open lock file ${path}`, error as NodeJS.ErrnoException);
    }
    const problem = untrustedLockFile(fstatSync(fd));
    if (problem) {
      closeSync(fd);
      throw new LockFileRefusedError(path, problem);
    }
    let acquired: boolean;
    try {
      acquired = nativeFileLock.lockFile(fd, true);
    } catch (error) {
      closeSync(fd);
      throw new SystemCallError(`lock ${path}`, error as NodeJS.ErrnoException);
    }
    if (!acquired) {
      const heldBy = holderOf(fd);
      closeSync(fd);
      return { heldBy };
    }
    if (!stillAtPath(path, fd)) {
      // The previous holder unlinked this inode before we got it: the lock is the path's new file.
      closeSync(fd);
      continue;
    }
    // For people reading the file only: messages name the holder from /proc/locks (holderOf), since
    // a waiter can read this between another process's flock and its write of its own pid. So a
    // full or failing file system (ENOSPC, EDQUOT, EIO) does not fail the lock: the record's own
    // write then says what is wrong (VCNET_STATE_WRITE), and a command that writes none goes on.
    try {
      ftruncateSync(fd, 0);
      writeSync(fd, String(process.pid), 0);
    } catch {
      // the pid stays unwritten
    }
    return new FileLock(path, fd);
  }
}

/**
 * Who holds the lock at `path` right now, without taking it, making its file or writing into it (a
 * dry run's look): the holder's pid (0 when /proc/locks names none), or undefined when it is free or
 * has no file (a holder makes the file before it locks it). A shared flock for the instant of the look.
 */
export function lockHeldBy(path: string): number | undefined {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch {
    return undefined;
  }
  try {
    return nativeFileLock.lockFile(fd, false) ? undefined : holderOf(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Takes the lock, polling with a growing pause (5 ms up to 100 ms) until `timeoutMs`; then calls
 * `timedOut(holderPid)` for the error to throw.
 */
export async function lockFile(
  path: string,
  timeoutMs: number,
  timedOut: (heldBy: number) => Error,
  options: {
    /** Called the moment the lock is taken (before any other call of this process can run). */
    acquired?: () => void;
    /** Aborting ends the wait at once, rejecting with the signal's reason. */
    signal?: AbortSignal | undefined;
    /** What the hint of a lock file that cannot be made names (tryLockFile's). */
    subject?: StateWriteSubject;
  } = {},
): Promise<FileLock> {
  const { acquired, signal, subject } = options;
  let heldBy = 0;
  return pollForLock(
    () => {
      const attempt = tryLockFile(path, subject);
      if (!(attempt instanceof FileLock)) {
        heldBy = attempt.heldBy;
        return undefined;
      }
      acquired?.();
      return attempt;
    },
    timeoutMs,
    () => timedOut(heldBy),
    signal,
  );
}

/**
 * Tries `attempt` until it answers a lock, pausing 5 ms, then twice as long each time up to 100 ms;
 * past `timeoutMs` throws `timedOut()`. The one wait of every vcnet lock (sandbox records, namespaces).
 */
export async function pollForLock<T>(
  attempt: () => T | undefined,
  timeoutMs: number,
  timedOut: () => Error,
  signal?: AbortSignal,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let pause = 5;
  for (;;) {
    signal?.throwIfAborted();
    const taken = attempt();
    if (taken !== undefined) return taken;
    if (Date.now() >= deadline) throw timedOut();
    await sleep(Math.min(pause, Math.max(1, deadline - Date.now())), signal);
    pause = Math.min(pause * 2, 100);
  }
}

function stillAtPath(path: string, fd: number): boolean {
  try {
    const atPath = statSync(path);
    const held = fstatSync(fd);
    return atPath.ino === held.ino && atPath.dev === held.dev;
  } catch {
    return false;
  }
}

/**
 * The pid holding the flock on `fd`'s file, from /proc/locks (the kernel's view: the pid that took the
 * lock), or 0 when the kernel lists none (it was just released) or /proc/locks cannot be read. The pid
 * written in the file is not used: it is the last writer's, which is not the holder while a new holder
 * is between its flock and its write.
 */
export function holderOf(fd: number): number {
  let file: { dev: bigint; ino: bigint };
  try {
    file = fstatSync(fd, { bigint: true });
  } catch {
    return 0;
  }
  return flockHolder(file);
}

/**
 * Who holds the flock on the lock file at `path`, from /proc/locks alone: no open, no flock, not even
 * a shared one for an instant (a listing's look, which must not delay a command that takes it). The
 * pid; undefined when the file is not there, or no flock on it is listed with a pid.
 */
export function flockHolderAt(path: string): number | undefined {
  let file: { dev: bigint; ino: bigint };
  try {
    file = lstatSync(path, { bigint: true });
  } catch {
    return undefined;
  }
  return flockHolder(file) || undefined;
}

/** The pid holding a flock on this file per /proc/locks; 0 when none is listed or it cannot be read. */
function flockHolder(file: { dev: bigint; ino: bigint }): number {
  let locks: string;
  try {
    locks = readFileSync('/proc/locks', 'utf8');
  } catch {
    return 0;
  }
  // dev_t as glibc's major()/minor() split it; /proc/locks prints them in hex.
  const major = ((file.dev >> 8n) & 0xfffn) | ((file.dev >> 32n) & ~0xfffn);
  const minor = (file.dev & 0xffn) | ((file.dev >> 12n) & ~0xffn);
  const device = `${major.toString(16).padStart(2, '0')}:${minor.toString(16).padStart(2, '0')}`;
  const flocks = locks
    .split('\n')
    .map((line) => /^\d+:\s+FLOCK\s+\S+\s+\S+\s+(\d+)\s+([0-9a-f]+:[0-9a-f]+):(\d+)\s/.exec(line))
    .filter((match) => match !== null && BigInt(match[3]!) === file.ino)
    .map((match) => ({ pid: Number(match![1]), device: match![2]! }));
  // Some file systems (overlayfs, btrfs) show stat a device number other than the one the kernel
  // lists: then the inode alone decides, if it is unambiguous.
  const holder = flocks.find((entry) => entry.device === device) ?? (flocks.length === 1 ? flocks[0] : undefined);
  return holder !== undefined && holder.pid > 0 ? holder.pid : 0;
}
