/**
 * A file replaced whole or not at all: written to a temporary file beside it, every byte checked,
 * fsynced, renamed over the old one, and the directory fsynced. A write(2) may take fewer bytes than
 * given without an error (a file system with a few blocks left does that): the rest is written
 * again, and the next write says ENOSPC. A record cut there would be renamed over a good one and
 * leave a sandbox nobody can detach.
 */
import { closeSync, constants, fsyncSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { VcnetError } from '../../errors.js';

export class StateWriteError extends VcnetError {
  static override readonly errorName: string = 'StateWriteError';
  readonly errno: string;
  constructor(path: string, cause: NodeJS.ErrnoException) {
    const errno = String(cause.code ?? 'EUNKNOWN');
    super('VCNET_STATE_WRITE', `could not write ${path}: ${cause.message}`, {
      value: path,
      hint: stateWriteHint(errno),
      cause,
    });
    this.errno = errno;
  }
}

function stateWriteHint(errno: string): string {
  switch (errno) {
    case 'ENOSPC':
    case 'EDQUOT':
      return 'the file system of the state directory is full: free space there (df), then run the command again';
    case 'EROFS':
      return 'the state directory is on a read-only file system: point --state-dir (or VCNET_STATE_DIR) at a writable one';
    case 'EPERM':
    case 'EACCES':
      return 'the state directory is not writable by vcnet (permissions, or chattr +i): fix it or pick another with --state-dir';
    default:
      return 'the state directory could not be written: check its file system (dmesg), then run the command again';
  }
}

/** Replaces `path` with `text`, atomically; StateWriteError when any part fails (the old file stays). */
export function replaceFileAtomically(path: string, text: string, options: { temporary: string; mode: number }): void {
  const bytes = Buffer.from(text, 'utf8');
  let fd: number | undefined;
  try {
    // Never through a symbolic link planted at the temporary's path.
    const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW;
    fd = openSync(options.temporary, flags, options.mode);
    for (let written = 0; written < bytes.length; ) {
      const count = writeSync(fd, bytes, written, bytes.length - written);
      // Zero bytes and no error: nothing would ever get further.
      if (count <= 0) throw Object.assign(new Error('no space left on device, write'), { code: 'ENOSPC' });
      written += count;
    }
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    renameSync(options.temporary, path);
  } catch (error) {
    if (fd !== undefined) {
      try {
        closeSync(fd);
      } catch {
        // the write's error is the one to report
      }
    }
    rmSync(options.temporary, { force: true });
    throw new StateWriteError(path, error as NodeJS.ErrnoException);
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
    throw new StateWriteError(path, error as NodeJS.ErrnoException);
  }
}
