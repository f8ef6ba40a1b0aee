/**
 * Making the directories vcnet keeps state, locks and the registry in, on paths users give.
 *
 * Not `mkdirSync(path, { recursive: true })`: Node's recursive mkdir retries a parent that exists
 * after a child fails with ENOENT, and procfs answers exactly that forever (mkdir /proc/x: ENOENT,
 * mkdir /proc: EEXIST), so a stateDir under /proc hung vcnet-cni at 100% CPU. Here each missing
 * component is made once, from the deepest existing one down, and the first that cannot be made
 * stops with an error naming it and why.
 */
import { accessSync, constants, mkdirSync, rmdirSync, statfsSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { errnoOf, SystemCallError } from '../../errors.js';

/** A directory that could not be made: `component` is the part of `directory` that failed, `reason` says why. */
export class DirectoryNotMadeError extends SystemCallError {
  static override readonly errorName: string = 'DirectoryNotMadeError';
  readonly directory: string;
  readonly component: string;
  readonly reason: string;
  constructor(directory: string, component: string, reason: string, cause: NodeJS.ErrnoException) {
    super(`create directory ${directory}`, cause);
    this.message = `create directory ${directory} failed: ${reason}`;
    this.directory = directory;
    this.component = component;
    this.reason = reason;
  }
}

/** "ENOENT: no such file or directory, mkdir '/proc/x'" → "ENOENT: no such file or directory". */
function describeErrno(error: NodeJS.ErrnoException): string {
  const code = error.code ?? 'EUNKNOWN';
  const text = error.message.split(',')[0] ?? '';
  return text.startsWith(`${code}: `) ? text : `${code}: ${text}`;
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/**
 * The components of `path` that do not exist, innermost first (empty when it is a directory already).
 * Throws DirectoryNotMadeError when a component is not a directory or cannot be looked up. Makes nothing.
 */
function missingDirectories(path: string): string[] {
  const target = resolve(path);
  const missing: string[] = [];
  // Upwards to the deepest component that exists: at most one stat per component, ending at "/".
  for (let current = target; ; current = dirname(current)) {
    try {
      if (statSync(current).isDirectory()) break;
      const notDirectory = Object.assign(new Error(`ENOTDIR: not a directory, '${current}'`), {
        code: 'ENOTDIR',
        syscall: 'mkdir',
        path: current,
      });
      throw new DirectoryNotMadeError(target, current, `${current} is not a directory (ENOTDIR)`, notDirectory);
    } catch (error) {
      if (error instanceof DirectoryNotMadeError) throw error;
      const failure = error as NodeJS.ErrnoException;
      // ENOTDIR: a component above is a file, which the next step up names.
      const errno = errnoOf(failure);
      if ((errno !== 'ENOENT' && errno !== 'ENOTDIR') || current === dirname(current)) {
        throw new DirectoryNotMadeError(
          target,
          current,
          `cannot look up ${current} (${describeErrno(failure)})`,
          failure,
        );
      }
      missing.push(current);
    }
  }
  return missing;
}

/** procfs's f_type: mkdir in it answers ENOENT, whoever asks (mkdir /proc/x). */
const PROC_SUPER_MAGIC = 0x9fa0;

/**
 * Whether makeDirectory(path) would succeed, found without making anything (vcnet-cni STATUS): the
 * missing components, innermost first. DirectoryNotMadeError, with the reason makeDirectory would
 * give, when a component is not a directory, or when the directory the outermost missing one would
 * be made in refuses this user (access(2) for writing: EACCES, EROFS) or is procfs (ENOENT).
 */
export function checkDirectoryCanBeMade(path: string): string[] {
  const target = resolve(path);
  const missing = missingDirectories(target);
  const outermost = missing[missing.length - 1];
  if (outermost === undefined) return missing;
  const parent = dirname(outermost);
  let failure: NodeJS.ErrnoException | undefined;
  try {
    accessSync(parent, constants.W_OK);
    if (statfsSync(parent).type === PROC_SUPER_MAGIC) {
      failure = Object.assign(new Error(`ENOENT: no such file or directory, mkdir '${outermost}'`), {
        code: 'ENOENT',
        syscall: 'mkdir',
        path: outermost,
      });
    }
  } catch (error) {
    failure = error as NodeJS.ErrnoException;
  }
  if (failure) throw cannotCreate(target, outermost, failure);
  return missing;
}

/** `directory`, a component of `target`, could not be made (or would not be): why, as the OS says. */
function cannotCreate(target: string, directory: string, failure: NodeJS.ErrnoException): DirectoryNotMadeError {
  return new DirectoryNotMadeError(
    target,
    directory,
    `cannot create ${directory} (${describeErrno(failure)})`,
    failure,
  );
}

/**
 * Makes `path` and its missing parents (each with `mode`); a directory already there is fine.
 * Throws DirectoryNotMadeError when a component is not a directory or cannot be made. Returns the
 * directories this call made, outermost first (for removeMadeDirectories).
 */
export function makeDirectory(path: string, mode: number): string[] {
  const target = resolve(path);
  const missing = missingDirectories(target);
  // Downwards, each component once: no retry can loop.
  const made: string[] = [];
  for (const directory of missing.reverse()) {
    try {
      mkdirSync(directory, { mode });
      made.push(directory);
    } catch (error) {
      const failure = error as NodeJS.ErrnoException;
      // Another process made it meanwhile (two plugins starting at once): that is as good (and theirs).
      if (errnoOf(failure) === 'EEXIST' && isDirectory(directory)) continue;
      throw cannotCreate(target, directory, failure);
    }
  }
  return made;
}

/**
 * Removes the directories a makeDirectory call made (its result), innermost first, each only while
 * it is empty: a command that failed before recording anything leaves no empty state directory
 * behind. A directory another process has put something in meanwhile stays, and so do those above
 * it; one that existed before was never in the list.
 */
export function removeMadeDirectories(made: readonly string[]): void {
  for (const directory of [...made].reverse()) {
    try {
      rmdirSync(directory);
    } catch (error) {
      // Gone already: go on upwards; not empty (in use now) or not removable: leave the rest.
      if (errnoOf(error) !== 'ENOENT') return;
    }
  }
}
