/**
 * What vcnet checks before it trusts a state directory. Records there say which links vcnet may
 * delete and lock files get vcnet's pid written into them: a directory another user can write in
 * lets that user plant symbolic links (vcnet then writes through them) or rename a record away (a
 * detach then says "not attached" and the tap leaks). Like systemd-tmpfiles and runc, vcnet refuses
 * a state directory not owned by its effective user or writable by group or others, and never
 * follows a symbolic link inside one.
 */
import { lstatSync, realpathSync, type Stats, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { errnoOf, SystemCallError, VcnetError } from '../../errors.js';
import { shellWord } from '../../shell-word.js';
import { outsideOwner, ownedOutsideUserNamespace, USER_NAMESPACE_STATE_HINT } from '../user-namespace.js';
import type { DirectoryNotMadeError } from './directory.js';

/** A state directory vcnet cannot or will not use (VCNET_STATE_DIR, exit 2). */
export class StateDirectoryError extends VcnetError {
  static override readonly errorName: string = 'StateDirectoryError';
  /** Why, without the directory's name in front. */
  readonly reason: string;
  /**
   * Set when the only fault is that the directory is another user's (owned by, or writable by,
   * another uid of this user namespace): its owner's uid. gc run as root reads such a directory for
   * claims only (readableForClaims).
   */
  readonly anotherUsersOwner?: number;
  constructor(directory: string, reason: string, hint: string, anotherUsersOwner?: number) {
    super('VCNET_STATE_DIR', `cannot use ${directory} as a state directory: ${reason}`, { value: directory, hint });
    this.reason = reason;
    if (anotherUsersOwner !== undefined) this.anotherUsersOwner = anotherUsersOwner;
  }
}

/**
 * The setting with which the user of the CLI (and of the library, whose SandboxStore the CLI uses)
 * picks another state directory. vcnet-cni names its own (the network config's "stateDir"): callers
 * of the hints below pass theirs.
 */
export const CLI_STATE_DIRECTORY_SETTING = '--state-dir (or VCNET_STATE_DIR)';

/** How the user of the CLI picks another state directory that can be used. */
const CLI_UNUSABLE_STATE_DIRECTORY_HINT = `point ${CLI_STATE_DIRECTORY_SETTING} at a directory vcnet can create and write (default /run/vcnet/sandboxes)`;

/** A state directory that could not be made (a component is a file, under /proc, read-only...), as StateDirectoryError. */
export function unusableStateDirectory(
  directory: string,
  error: DirectoryNotMadeError,
  hint = CLI_UNUSABLE_STATE_DIRECTORY_HINT,
): StateDirectoryError {
  return new StateDirectoryError(directory, error.reason, hint);
}

/** The nearest ancestor of `path` that exists and is not a directory: why looking `path` up said ENOTDIR. */
function fileAbove(path: string): string | undefined {
  for (let current = dirname(path); current !== dirname(current); current = dirname(current)) {
    try {
      if (!statSync(current).isDirectory()) return current;
    } catch {
      // missing, or itself under a file: the next step up tells
    }
  }
  return undefined;
}

function lookUp(path: string, follow: boolean, unusableHint: string): Stats | undefined {
  try {
    return follow ? statSync(path) : lstatSync(path);
  } catch (error) {
    const code = errnoOf(error);
    if (code === 'ENOENT') return undefined;
    // Under a regular file: not a directory that is missing (which attach would make) but one that
    // can never be, refused by every command as attach refuses it, so a detach does not answer
    // "not attached" from a mistyped path.
    if (code === 'ENOTDIR') {
      const file = fileAbove(path);
      throw new StateDirectoryError(
        path,
        file === undefined
          ? 'a component of the path is not a directory (ENOTDIR)'
          : `${file} is not a directory (ENOTDIR)`,
        unusableHint,
      );
    }
    throw new SystemCallError(`look up ${path}`, error as NodeJS.ErrnoException);
  }
}

function writers(mode: number): string {
  if ((mode & 0o022) === 0o022) return 'its group and others';
  return (mode & 0o020) !== 0 ? 'its group' : 'others';
}

/**
 * Refuses `directory` (when it exists) unless it is a directory owned by the effective user and not
 * writable by group or others. `follow`: the state directory itself may be reached through a
 * symbolic link an administrator made (its target is checked); a directory inside it may not.
 * `unusableHint`: how the caller's user picks another state directory (the CLI's by default).
 */
export function refuseUntrustedDirectory(
  directory: string,
  options: {
    follow: boolean;
    /** Root's directory is trusted too: to be read only (gc), since root can change anything anyway. */
    rootToo?: boolean;
    unusableHint?: string;
  },
): void {
  const unusableHint = options.unusableHint ?? CLI_UNUSABLE_STATE_DIRECTORY_HINT;
  const stats = lookUp(directory, options.follow, unusableHint);
  if (stats === undefined) return;
  const owner = options.rootToo && stats.uid === 0 ? 0 : (process.geteuid?.() ?? 0);
  const mode = `0${(stats.mode & 0o7777).toString(8)}`;
  const user = owner === 0 ? 'root' : String(owner);
  const hint = `make it vcnet's alone (chown ${user} ${directory}; chmod 700 ${directory}), or use another state directory`;
  if (stats.isSymbolicLink())
    throw new StateDirectoryError(directory, 'it is a symbolic link (vcnet never follows one inside its state)', hint);
  if (!stats.isDirectory()) throw new StateDirectoryError(directory, 'it is not a directory', unusableHint);
  // An owner this user namespace does not map could be any user of the host: refused, but the
  // usual `chown` cannot be followed by anyone inside.
  if (stats.uid !== owner && ownedOutsideUserNamespace(stats.uid))
    throw new StateDirectoryError(
      directory,
      `it is owned by ${outsideOwner(stats.uid, mode)}, not by vcnet's effective uid ${owner}: that user could change its records`,
      USER_NAMESPACE_STATE_HINT,
    );
  if (stats.uid !== owner)
    throw new StateDirectoryError(
      directory,
      `it is owned by uid ${stats.uid} (mode ${mode}), not by vcnet's effective uid ${owner}: another user could change its records`,
      hint,
      stats.uid,
    );
  if ((stats.mode & 0o022) !== 0)
    throw new StateDirectoryError(
      directory,
      `it is writable by ${writers(stats.mode)} (owner uid ${stats.uid}, mode ${mode}): another user could change its records`,
      hint,
      stats.uid,
    );
}

/**
 * gc run as root, for a state directory of another user's (named with --state-dir or by the
 * registry): undefined when the directory passes the trust rule; its owner's uid when it fails it
 * only as another user's (owned or writable by another uid), to be read for claims only: what its
 * records name is kept, nothing in it is acted on. An untrusted record can thus make gc keep more,
 * never remove more; and root could read it anyway. Any other refusal is thrown as before, and so
 * is a symbolic link to such a directory (only a directory named as itself is read this way), and
 * every refusal when gc is not root (a user's gc must not read another user's records at all).
 */
export function readableForClaims(directory: string): number | undefined {
  try {
    refuseUntrustedDirectory(directory, { follow: true, rootToo: true });
    return undefined;
  } catch (error) {
    if (!(error instanceof StateDirectoryError) || error.anotherUsersOwner === undefined) throw error;
    if ((process.geteuid?.() ?? 0) !== 0) throw error;
    let link = false;
    try {
      link = lstatSync(directory).isSymbolicLink();
    } catch {
      throw error;
    }
    if (link)
      throw new StateDirectoryError(
        directory,
        `it is a symbolic link to a directory of uid ${error.anotherUsersOwner}'s: gc reads another user's state directory (for its claims only) by its own path, never through a link`,
        `name the directory itself (--state-dir ${shellWord(realpathOr(directory))})`,
      );
    return error.anotherUsersOwner;
  }
}

function realpathOr(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path;
  }
}
