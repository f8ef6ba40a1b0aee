/**
 * The registry of state directories: every directory a vcnet record was ever written to (the CLI's,
 * vcnet-cni's, any --state-dir or netconf stateDir), one absolute path a line. `vcnet gc` reads
 * all of them, so a sandbox recorded anywhere protects its plumbing from gc.
 *
 * Changed under its own flock and replaced atomically; read without a lock (a rename is atomic).
 */
import {
  closeSync,
  constants,
  existsSync,
  fstatSync,
  lstatSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  type Stats,
  statSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { errnoOf, InvalidInputError, SystemCallError, VcnetError } from '../../errors.js';
import { shellWord } from '../../shell-word.js';
import { outsideOwner, ownedOutsideUserNamespace, USER_NAMESPACE_STATE_HINT } from '../user-namespace.js';
import { absolutePath } from './absolute-path.js';
import { replaceFileAtomically, type StateWriteSubject } from './atomic-file.js';
import { makeDirectory } from './directory.js';
import { lockFile } from './lock.js';
import { recordText } from './record-envelope.js';

const DEFAULT_REGISTRY_PATH = '/run/vcnet/state-directories';

/** How long a registry change waits for the registry's lock when its caller names no time. */
const DEFAULT_REGISTRY_LOCK_TIMEOUT_MS = 10_000;

/**
 * The registry's lock stayed held past the caller's wait. The same code as a held sandbox lock: the
 * same outcome (exit 4, CNI "try again later"), and the same remedy, waiting longer.
 */
export class StateRegistryLockedError extends VcnetError {
  static override readonly errorName: string = 'StateRegistryLockedError';
  constructor(path: string, holder: number, waitedMs: number, howToWaitLonger: string) {
    const who = holder > 0 ? `process ${holder}` : 'another process (which one cannot be known)';
    super('VCNET_SANDBOX_LOCKED', `the state directory registry ${path} is held by ${who} (waited ${waitedMs} ms)`, {
      value: holder,
      hint: `wait for the other vcnet command to finish, or ${howToWaitLonger}`,
    });
  }
}

/**
 * The registry file ($VCNET_STATE_REGISTRY when set, for tests and unusual layouts), as the state
 * directory is taken from VCNET_STATE_DIR: an empty value is refused (it fell back to the shared
 * default without a word), a relative one made absolute from the working directory.
 */
export function registryPath(): string {
  const configured = process.env.VCNET_STATE_REGISTRY;
  if (configured === undefined) return DEFAULT_REGISTRY_PATH;
  if (configured.trim() === '') {
    const accepted = `a file path, such as ${DEFAULT_REGISTRY_PATH}`;
    const hint = `set VCNET_STATE_REGISTRY to a file, or unset it for the default ${DEFAULT_REGISTRY_PATH}`;
    throw new InvalidInputError('VCNET_STATE_REGISTRY', configured, accepted, hint);
  }
  return absolutePath('VCNET_STATE_REGISTRY', configured, 'file');
}

/** EISDIR (the registry is a directory) or ENOTDIR (a file on its path): the path is wrong, not the system. */
function isNotAFile(error: unknown): boolean {
  const errno = errnoOf(error);
  return errno === 'EISDIR' || errno === 'ENOTDIR';
}

function notAFile(path: string): InvalidInputError {
  return new InvalidInputError(
    'VCNET_STATE_REGISTRY',
    path,
    `the path of a file (made if missing), such as ${DEFAULT_REGISTRY_PATH}`,
    `${path} is a directory or lies under a file: set VCNET_STATE_REGISTRY to a file path, or unset it for the default ${DEFAULT_REGISTRY_PATH}`,
  );
}

function lookUpForTrust(target: string, path: string, follow: boolean): Stats | undefined {
  try {
    return follow ? statSync(target) : lstatSync(target);
  } catch (error) {
    const code = errnoOf(error);
    if (code === 'ENOENT') return undefined; // vcnet makes it (the directory 0700)
    if (code === 'ENOTDIR') throw notAFile(path);
    throw new SystemCallError(`look up ${target}`, error as NodeJS.ErrnoException);
  }
}

function refuseRegistry(path: string, problem: string, fix: string): InvalidInputError {
  const user = process.geteuid?.() ?? 0;
  return new InvalidInputError(
    'VCNET_STATE_REGISTRY',
    path,
    `a file no other user can change (${problem})`,
    `${fix}, or set VCNET_STATE_REGISTRY to a file in a directory only ${user === 0 ? 'root' : `root or uid ${user}`} can write`,
  );
}

/**
 * Refuses the registry's directory or file (`what`) when another user owns it or can write it; a
 * sticky directory may be writable by all (`stickyAllowed`). A file of another user is not vcnet's
 * (vcnet writes it as its own user, mode 0644): its lines cannot be trusted, so the hint says to
 * look at it and remove it, not to chown it, which would bless whatever that user put in it.
 */
function checkRegistryOwner(path: string, target: string, what: string, stats: Stats, stickyAllowed = false): void {
  const user = process.geteuid?.() ?? 0;
  const mode = `0${(stats.mode & 0o7777).toString(8)}`;
  const file = target === path;
  if (stats.uid !== 0 && stats.uid !== user && ownedOutsideUserNamespace(stats.uid))
    throw new InvalidInputError(
      'VCNET_STATE_REGISTRY',
      path,
      `a file no other user can change (${what} ${target} is owned by ${outsideOwner(stats.uid, mode)}: any user of the host could have made or changed it)`,
      USER_NAMESPACE_STATE_HINT,
    );
  if (stats.uid !== 0 && stats.uid !== user)
    throw refuseRegistry(
      path,
      `${what} ${target} is owned by uid ${stats.uid} (mode ${mode}), not by root or vcnet's effective uid ${user}`,
      file
        ? `another user made or replaced it, so what it lists is not vcnet's: look at it, then remove it (rm ${shellWord(target)}; the next attach writes it again, and gc reads the directories it listed only when given them with --state-dir)`
        : `chown ${user === 0 ? 'root' : user} ${shellWord(target)}`,
    );
  if ((stats.mode & 0o022) !== 0 && !(stickyAllowed && (stats.mode & 0o1000) !== 0))
    throw refuseRegistry(
      path,
      `${what} ${target} is writable by ${(stats.mode & 0o022) === 0o022 ? 'its group and others' : (stats.mode & 0o020) !== 0 ? 'its group' : 'others'} (owner uid ${stats.uid}, mode ${mode})`,
      `chmod go-w ${shellWord(target)}`,
    );
  if (file && stats.nlink > 1)
    throw refuseRegistry(
      path,
      `the file ${target} has ${stats.nlink} names (hard links), which vcnet never makes`,
      `look at it, then remove it (rm ${shellWord(target)}; the next attach writes it again)`,
    );
}

/**
 * Refuses a registry another user could change (dropping a line makes gc remove that directory's
 * sandboxes' plumbing), by the rule for state directories (trust.ts): its directory, reached through
 * symbolic links as a state directory may be, and the file, never a symbolic link, each owned by
 * root or vcnet's effective user and writable by neither group nor others. A sticky directory (/tmp)
 * is the exception for the directory: there no other user can rename, delete or replace a file they
 * do not own, so the file's own checks (owner, mode, not a link), made again on the opened file at
 * every read, decide; the lock is opened with O_NOFOLLOW and O_NONBLOCK and checked the same way,
 * and the temporary file beside it has a name nobody can guess and is made with O_EXCL. (A state
 * directory gets no such exception: every record in it would need the same checks.) Missing ones are
 * fine: vcnet makes them.
 */
function refuseUntrustedRegistry(path: string): void {
  const directory = dirname(path);
  const directoryStats = lookUpForTrust(directory, path, true);
  if (directoryStats === undefined) return;
  if (!directoryStats.isDirectory()) throw notAFile(path);
  checkRegistryOwner(path, directory, 'its directory', directoryStats, true);
  const fileStats = lookUpForTrust(path, path, false);
  if (fileStats === undefined) return;
  if (fileStats.isSymbolicLink())
    throw refuseRegistry(
      path,
      `it is a symbolic link (vcnet never follows one in its state)`,
      `replace ${shellWord(path)} by the file it names`,
    );
  if (fileStats.isDirectory()) throw notAFile(path);
  checkRegistryOwner(path, path, 'the file', fileStats);
}

/**
 * The registry a command that records will write, refused (VCNET_STATE_REGISTRY empty, a directory,
 * under a file, or another user's) before that command makes anything: its state directory, its lock.
 */
export function checkStateRegistry(path = registryPath()): string {
  try {
    refuseUntrustedRegistry(path);
  } catch (error) {
    // The same hint the registry write gives: the registry and VCNET_STATE_REGISTRY, not the state directory.
    throw withRegistryHint(error, path);
  }
  return path;
}

/**
 * The registry's text, read through one fd that is checked as the path was: never through a link
 * (O_NOFOLLOW), never blocking on a FIFO (O_NONBLOCK), and only from a regular file of root or
 * vcnet's user that nobody else can write (a file put at a missing registry's path after the check).
 */
function readRegistryText(path: string): string | undefined {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (error) {
    const code = errnoOf(error);
    if (code === 'ENOENT') return undefined;
    if (code === 'ELOOP')
      throw refuseRegistry(
        path,
        'it is a symbolic link (vcnet never follows one in its state)',
        `replace ${shellWord(path)} by the file it names`,
      );
    if (isNotAFile(error)) throw notAFile(path);
    throw new SystemCallError(`read the state directory registry ${path}`, error as NodeJS.ErrnoException);
  }
  try {
    const stats = fstatSync(fd);
    if (stats.isDirectory()) throw notAFile(path);
    if (!stats.isFile())
      throw refuseRegistry(
        path,
        `it is not a regular file (mode 0${stats.mode.toString(8)}, owner uid ${stats.uid})`,
        `look at it, then remove it (rm ${shellWord(path)}; the next attach writes it again)`,
      );
    checkRegistryOwner(path, path, 'the file', stats);
    // Strictly: a bad byte read as U+FFFD names a directory that is not there, which the next gc
    // would forget and the next attach would write back, losing the line (records are read so too).
    return recordText(readFileSync(fd), path, notUtf8Hint(path));
  } catch (error) {
    if (error instanceof VcnetError) throw error;
    if (isNotAFile(error)) throw notAFile(path);
    throw new SystemCallError(`read the state directory registry ${path}`, error as NodeJS.ErrnoException);
  } finally {
    closeSync(fd);
  }
}

/** What to do about a registry that is not UTF-8 (vcnet writes it so): nothing was changed. */
function notUtf8Hint(path: string): string {
  return `nothing was changed; vcnet writes this registry of state directories (which \`vcnet gc\` and \`vcnet list\` read to find every record) in UTF-8 only, so it was damaged or edited: look at it (od -c ${shellWord(path)}), then mend or delete the line with the bad byte (the next attach in a directory registers it again; gc reads a directory the registry does not list only when given it with --state-dir)`;
}

/** The registered directories, in the order they were added; refused when another user could change them. */
export function registeredStateDirectories(path = registryPath()): string[] {
  let text: string | undefined;
  try {
    refuseUntrustedRegistry(path);
    text = readRegistryText(path);
  } catch (error) {
    throw withRegistryReadHint(error, path);
  }
  if (text === undefined) return [];
  return [...new Set(text.split('\n').filter((line) => line.startsWith('/')))];
}

/**
 * A registry this user may not read (`vcnet list` or gc run as a user other than root, whose default
 * registry is root's): the hint names the variable that moves it and root, not only the capability
 * that lets root past file modes (which root lacking it is still told). A write keeps withRegistryHint's.
 */
function withRegistryReadHint(error: unknown, path: string): unknown {
  if (!(error instanceof SystemCallError) || !['EACCES', 'EPERM'].includes(error.errno)) return error;
  // Root without CAP_DAC_* is told about those capabilities, by the error's own hint.
  if ((process.geteuid?.() ?? 0) === 0) return error;
  return new SystemCallError(
    error.message.replace(/ failed: .*$/s, ''),
    error.cause as NodeJS.ErrnoException,
    `${path} (the registry of state directories, which \`vcnet list\` and \`vcnet gc\` read to find every record) cannot be read by this user: run as root, or set VCNET_STATE_REGISTRY to the registry this user's own attaches write (getting-started.md, "Running as a user other than root")`,
  );
}

/**
 * The registry write's temporary file (temporaryFileName: `.state-directories.<pid>.<16 hex>.tmp`),
 * or one of the form before session 17 (`.state-directories.<pid>.tmp`, no random part), which a
 * writer of that build killed before its rename left.
 */
const REGISTRY_TEMPORARY_FILE = /^\.state-directories\.(\d+)(?:\.[0-9a-f]{16})?\.tmp$/;

/** How old a dead writer's temporary file must be before it is removed (a writer in another pid namespace is not seen dead). */
const STALE_TEMPORARY_AGE_MS = 60_000;

/**
 * Removes the registry's temporary files that a writer killed before its rename left beside it
 * (`.state-directories.<pid>.<hex>.tmp`, or `.state-directories.<pid>.tmp` of a build before
 * session 17): a regular file of vcnet's user, older than a minute,
 * whose pid runs no more. Nothing else in that directory is looked at. Best effort: returns the paths it removed.
 */
export function removeStaleRegistryTemporaries(path = registryPath(), now = Date.now()): string[] {
  const directory = dirname(path);
  let names: string[];
  try {
    names = readdirSync(directory);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    const pid = Number(REGISTRY_TEMPORARY_FILE.exec(name)?.[1] ?? 0);
    if (pid <= 0 || existsSync(`/proc/${pid}`)) continue;
    const file = join(directory, name);
    try {
      const stats = lstatSync(file);
      const user = process.geteuid?.() ?? 0;
      if (!stats.isFile() || stats.uid !== user || now - stats.mtimeMs < STALE_TEMPORARY_AGE_MS) continue;
      rmSync(file, { force: true });
      removed.push(file);
    } catch {
      // gone meanwhile, or not ours to remove
    }
  }
  return removed;
}

/**
 * What the hint of a registry write that failed names: the registry's path and the variable that
 * moves it, not the state directory and --state-dir, which do not change where the registry is.
 */
function registrySubject(path: string): StateWriteSubject {
  const unwritable =
    'cannot be written (read-only, or permissions): set VCNET_STATE_REGISTRY to a file that can be (and run gc with the same)';
  return {
    place: `${path} (the registry of state directories, which \`vcnet gc\` reads to find every record)`,
    whenReadOnly: unwritable,
    whenNotWritable: unwritable,
    whenFailing: 'set VCNET_STATE_REGISTRY to a file elsewhere (and run gc with the same)',
  };
}

function writeRegistry(path: string, directories: string[]): void {
  makeDirectory(dirname(path), 0o755);
  replaceFileAtomically(path, directories.map((directory) => `${directory}\n`).join(''), {
    temporaryPrefix: join(dirname(path), '.state-directories.'),
    mode: 0o644,
    subject: registrySubject(path),
  });
}

/** How long to wait for the registry's lock, and how a caller waits longer (for the error's hint). */
export interface RegistryLockOptions {
  timeoutMs?: number;
  howToWaitLonger?: string;
}

async function changeRegistry(
  path: string,
  change: (directories: string[]) => string[],
  options: RegistryLockOptions,
): Promise<void> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_REGISTRY_LOCK_TIMEOUT_MS;
  try {
    // Before the lock file is made beside it; checked again under the lock (the directory is there then).
    refuseUntrustedRegistry(path);
    const lock = await lockFile(
      `${path}.lock`,
      timeoutMs,
      (holder) => new StateRegistryLockedError(path, holder, timeoutMs, options.howToWaitLonger ?? 'try again'),
      { subject: registrySubject(path) },
    );
    try {
      removeStaleRegistryTemporaries(path);
      const before = registeredStateDirectories(path);
      const after = change(before);
      if (after.length !== before.length || after.some((directory, i) => directory !== before[i]))
        writeRegistry(path, after);
    } finally {
      lock.release();
    }
  } catch (error) {
    throw withRegistryHint(error, path);
  }
}

/**
 * A registry this user may not write (a non-root user with the capabilities, whose own state
 * directory is fine): the hint names the registry and the variable that moves it, not "run as root".
 */
function withRegistryHint(error: unknown, path: string): unknown {
  if (isNotAFile(error)) return notAFile(path);
  if (!(error instanceof SystemCallError) || !['EACCES', 'EPERM', 'EROFS'].includes(error.errno)) return error;
  return new SystemCallError(
    error.message.replace(/ failed: .*$/s, ''),
    error.cause as NodeJS.ErrnoException,
    `${path} (the registry of state directories, which \`vcnet gc\` reads to find every record) cannot be written by this user: set VCNET_STATE_REGISTRY to a file this user may write (and run gc with the same), or run as root`,
  );
}

/**
 * Adds an existing absolute directory to the registry (once). Called, under the registry's lock,
 * after the directory is made and before a record is written in it: a gc that forgets missing
 * directories under the same lock can then never forget one that is about to hold a record.
 */
export async function registerStateDirectory(
  directory: string,
  path = registryPath(),
  lock: RegistryLockOptions = {},
): Promise<void> {
  await changeRegistry(
    path,
    (directories) => (directories.includes(directory) ? directories : [...directories, directory]),
    lock,
  );
}

/** Drops directories that no longer exist (checked again under the lock). */
export async function forgetMissingStateDirectories(
  candidates: Iterable<string>,
  path = registryPath(),
): Promise<void> {
  const gone = new Set([...candidates].filter((directory) => !existsSync(directory)));
  if (gone.size === 0) return;
  await changeRegistry(
    path,
    (directories) => directories.filter((directory) => !gone.has(directory) || existsSync(directory)),
    {},
  );
}
