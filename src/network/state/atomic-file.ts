/**
 * A file replaced whole or not at all: written to a temporary file beside it, every byte checked,
 * fsynced, renamed over the old one, and the directory fsynced. A write(2) may take fewer bytes than
 * given without an error (a file system with a few blocks left does that): the rest is written
 * again, and the next write says ENOSPC. A record cut there would be renamed over a good one and
 * leave a sandbox nobody can detach.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, constants, fstatSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { hintForErrno, VcnetError } from '../../errors.js';
import { CLI_STATE_DIRECTORY_SETTING } from './trust.js';

/**
 * Why a file or directory of the state could not be made that says nothing against its path: a file
 * system full, out of inodes, read-only or failing, or a process out of file descriptors. A write that
 * failed (StateWriteError; vcnet-cni: code 11, try again), not a state directory that cannot be used.
 */
export const STATE_WRITE_FAILURES: ReadonlySet<string> = new Set([
  'ENOSPC',
  'EDQUOT',
  'EIO',
  'EROFS',
  'EMFILE',
  'ENFILE',
]);

/**
 * What the hint of a write that failed names: the place written and how its user points vcnet at
 * another. The hints are made in one place (stateWriteHint) for every writer; a writer passes its
 * subject down (replaceFileAtomically, lockFile) instead of catching the error to give it another hint.
 */
export interface StateWriteSubject {
  /** The place, as the hint names it: "the state directory", or the registry's path and what it is. */
  readonly place: string;
  /** What to do when the place is on a read-only file system. */
  readonly whenReadOnly: string;
  /** What to do when vcnet may not write there (permissions, chattr +i). */
  readonly whenNotWritable: string;
  /** Besides checking its file system, what to do when writing there failed otherwise (EIO...). */
  readonly whenFailing?: string;
}

/**
 * A state directory's subject; `setting` is how the writer's user picks another state directory (the
 * CLI's --state-dir by default; vcnet-cni's is the network config's "stateDir").
 */
export function stateDirectorySubject(setting = CLI_STATE_DIRECTORY_SETTING): StateWriteSubject {
  return {
    place: 'the state directory',
    whenReadOnly: `is on a read-only file system: point ${setting} at a writable one`,
    whenNotWritable: `is not writable by vcnet (permissions, or chattr +i): fix it, or point ${setting} at another`,
  };
}

/**
 * The hint of an errno that is about this process or the system, not about the place written (out of
 * file descriptors): the same whatever was written, and ahead of anything the place would suggest.
 */
export function processLimitHint(errno: string | undefined): string | undefined {
  return errno === 'EMFILE' || errno === 'ENFILE' ? hintForErrno(errno) : undefined;
}

/**
 * A sandbox record or the state registry could not be written (or removed) (`VCNET_STATE_WRITE`); `errno` is
 * the file system's (EACCES, ENOSPC, EROFS...).
 */
export class StateWriteError extends VcnetError {
  static override readonly errorName: string = 'StateWriteError';
  readonly errno: string;
  /**
   * `subject`: what the hint names (a state directory of the CLI's --state-dir by default).
   * `options.action` replaces "write" in the message (a record removed); `options.hint` the hint.
   */
  constructor(
    path: string,
    cause: NodeJS.ErrnoException,
    subject: StateWriteSubject = stateDirectorySubject(),
    options: { action?: string; hint?: string } = {},
  ) {
    const errno = String(cause.code ?? 'EUNKNOWN');
    super('VCNET_STATE_WRITE', `could not ${options.action ?? 'write'} ${path}: ${cause.message}`, {
      value: path,
      hint: options.hint ?? stateWriteHint(errno, subject),
      cause,
    });
    this.errno = errno;
  }
}

function stateWriteHint(errno: string, subject: StateWriteSubject): string {
  const processHint = processLimitHint(errno);
  if (processHint !== undefined) return processHint;
  switch (errno) {
    case 'ENOSPC':
    case 'EDQUOT':
      return `the file system of ${subject.place} is full: free space there (df), then run the command again`;
    case 'EROFS':
      return `${subject.place} ${subject.whenReadOnly}`;
    case 'EPERM':
    case 'EACCES':
      return `${subject.place} ${subject.whenNotWritable}`;
    default:
      return `${subject.place} could not be written: check its file system (dmesg), then run the command again${subject.whenFailing !== undefined ? `, or ${subject.whenFailing}` : ''}`;
  }
}

/**
 * The temporary file a write of `prefix`'s file uses: `<prefix><pid>.<16 hex digits>.tmp`. The pid
 * tells gc whose it was (a dead writer's is a leftover); the random part is what no other user can
 * guess, so nobody can plant a FIFO or a file of theirs at it beforehand (in a sticky directory, as
 * /tmp, another user may create names there).
 */
export function temporaryFileName(prefix: string): string {
  return `${prefix}${process.pid}.${randomBytes(8).toString('hex')}.tmp`;
}

/**
 * Replaces `path` with `text`, atomically; StateWriteError when any part fails: the old file stays,
 * except when only the fsync of the directory after the rename failed, where the new file is in
 * place but may not survive a crash (attachRecorded discards a first record that failed so).
 * The temporary file beside it (`temporaryPrefix`, see temporaryFileName) is made new, never opened
 * when anything is at its name (O_EXCL: no planted file, FIFO or link is written into, renamed or
 * removed), and checked to be a regular file of vcnet's user before a byte is written.
 * `subject` is what the error's hint names (StateWriteError's; a state directory of the CLI's by default).
 */
export function replaceFileAtomically(
  path: string,
  text: string,
  options: { temporaryPrefix: string; mode: number; subject?: StateWriteSubject },
): void {
  const failed = (error: unknown) => new StateWriteError(path, error as NodeJS.ErrnoException, options.subject);
  const bytes = Buffer.from(text, 'utf8');
  const temporary = temporaryFileName(options.temporaryPrefix);
  let fd: number | undefined;
  let made = false;
  try {
    const flags =
      constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW | constants.O_NONBLOCK;
    fd = openSync(temporary, flags, options.mode);
    made = true;
    const stats = fstatSync(fd);
    const user = process.geteuid?.() ?? 0;
    if (!stats.isFile() || stats.uid !== user || stats.nlink !== 1)
      throw Object.assign(new Error(`the temporary file ${temporary} is not a new file of uid ${user}`), {
        code: 'EEXIST',
      });
    for (let written = 0; written < bytes.length; ) {
      const count = writeSync(fd, bytes, written, bytes.length - written);
      // Zero bytes and no error: nothing would ever get further.
      if (count <= 0) throw Object.assign(new Error('no space left on device, write'), { code: 'ENOSPC' });
      written += count;
    }
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    renameSync(temporary, path);
  } catch (error) {
    if (fd !== undefined) {
      try {
        closeSync(fd);
      } catch {
        // the write's error is the one to report
      }
    }
    // Only a file this call made: whatever another process had at the name stays as it was.
    if (made) rmSync(temporary, { force: true });
    throw failed(error);
  }
  // The rename is durable once the directory is: a crash after this keeps the new file.
  try {
    const directoryFd = openSync(dirname(path), 'r');
    try {
      fsyncSync(directoryFd);
    } finally {
      closeSync(directoryFd);
    }
  } catch (error) {
    throw failed(error);
  }
}
