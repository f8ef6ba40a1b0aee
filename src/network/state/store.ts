/**
 * Sandbox state on disk: <stateDir>/<sandbox id>/state.json, written atomically (temp file, fsync,
 * rename, fsync of the directory), validated when read, and changed under a lock so two vcnet
 * processes never change one sandbox at once.
 *
 * The lock is a flock on <stateDir>/.locks/<sandbox id> (state/lock.ts): beside the sandbox
 * directory, so a detach that removes that directory cannot remove the lock with it, and released
 * by the kernel when its holder dies. Records are checked against state/record-envelope.ts (version,
 * id, namespace identity) and a content schema before anyone acts on them.
 */
import {
  accessSync,
  closeSync,
  constants,
  existsSync,
  fstatSync,
  lstatSync,
  openSync,
  readdirSync,
  readFileSync,
  rmdirSync,
  rmSync,
} from 'node:fs';
import { join, resolve } from 'node:path';
import { decimalSecondsAsMs } from '../../arguments.js';
import { errnoOf, InvalidInputError, SystemCallError, VcnetError } from '../../errors.js';
import { absolutePath } from './absolute-path.js';
import {
  processLimitHint,
  replaceFileAtomically,
  STATE_WRITE_FAILURES,
  StateWriteError,
  type StateWriteSubject,
  stateDirectorySubject,
} from './atomic-file.js';
import { DEFAULT_STATE_DIRECTORY } from './default-directories.js';
import { DirectoryNotMadeError, makeDirectory, removeMadeDirectories } from './directory.js';
import { lockFile } from './lock.js';
import { sandboxContentSchema } from './network-content-schema.js';
import { parseRecord, type RecordContentSchema, type RecordEnvelope, recordText } from './record-envelope.js';
import { checkStateRegistry, registerStateDirectory } from './registry.js';
import { refuseUntrustedDirectory, unusableStateDirectory } from './trust.js';

export const DEFAULT_LOCK_TIMEOUT_MS = 30_000;
const MIN_REGISTRY_WAIT_MS = 1_000;
const SANDBOX_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
/**
 * A record write's temporary file (`.state.<pid>.<random hex>.tmp`, atomic-file.ts; builds before
 * session 17 wrote `.state.<pid>.tmp`), renamed over state.json when complete.
 */
export const STATE_TEMPORARY_FILE = /^\.state\.\d+(?:\.[0-9a-f]{16})?\.tmp$/;
/** Lock files live here, under each state directory; no sandbox id starts with a dot. */
export const LOCK_DIRECTORY_NAME = '.locks';

/**
 * The state directory: `explicit` (--state-dir), else $VCNET_STATE_DIR, else the default. An empty
 * value is refused (it would put state in the current directory), a relative one made absolute.
 */
export function stateDirectory(explicit?: string): string {
  if (explicit !== undefined) {
    if (explicit.trim() === '')
      throw new InvalidInputError('--state-dir', explicit, 'a directory path, such as /run/vcnet/sandboxes');
    return absolutePath('--state-dir', explicit, 'directory');
  }
  const fromEnvironment = process.env.VCNET_STATE_DIR;
  if (fromEnvironment !== undefined) {
    if (fromEnvironment.trim() === '')
      throw new InvalidInputError(
        'VCNET_STATE_DIR',
        fromEnvironment,
        'a directory path, such as /run/vcnet/sandboxes',
        'set VCNET_STATE_DIR to a directory, or unset it for the default /run/vcnet/sandboxes',
      );
    return absolutePath('VCNET_STATE_DIR', fromEnvironment, 'directory');
  }
  return DEFAULT_STATE_DIRECTORY;
}

/**
 * The environment a command that records (attach, vcnet-cni ADD) reads besides its own settings,
 * refused before that command makes anything, its state directory or lock, so a refused command
 * leaves nothing: VCNET_STATE_REGISTRY, which it writes, and VCNET_STATE_DIR when set, whose records
 * it reads to find what holds a namespace (refused there when empty, as every command refuses it).
 */
export function refuseUnusableRecordEnvironment(): void {
  checkStateRegistry();
  if (process.env.VCNET_STATE_DIR !== undefined) stateDirectory();
}

export function validateSandboxId(id: string): string {
  // typeof first: a number (42) would pass the pattern as "42" and fail later inside node:path.
  if (typeof id !== 'string' || !SANDBOX_ID_PATTERN.test(id)) {
    throw new InvalidInputError(
      'sandbox',
      id,
      'letters, digits, "_", "." and "-", starting with a letter or digit, at most 128',
    );
  }
  return id;
}

/** How a caller can wait longer for a held lock: the option or setting that exists where it runs. */
export const CLI_LOCK_TIMEOUT_HINT =
  `give a longer --lock-timeout <seconds> (attach, detach) or VCNET_LOCK_TIMEOUT=<seconds> (any command; default ${DEFAULT_LOCK_TIMEOUT_MS / 1000}); ` +
  'from the library, a longer lockTimeoutMs option';

/** The lock wait when the caller gives none: $VCNET_LOCK_TIMEOUT seconds, else 30 s. */
export function defaultLockTimeoutMs(): number {
  const text = process.env.VCNET_LOCK_TIMEOUT;
  if (text === undefined || text === '') return DEFAULT_LOCK_TIMEOUT_MS;
  return decimalSecondsAsMs('VCNET_LOCK_TIMEOUT', text, 3600, 'seconds from 0 to 3600 (fractions allowed)');
}

/**
 * Another process held the sandbox's lock longer than `lockTimeoutMs` (`VCNET_SANDBOX_LOCKED`); the message
 * names the holder's pid. Nothing was changed: try again later or wait longer.
 */
export class SandboxLockedError extends VcnetError {
  static override readonly errorName: string = 'SandboxLockedError';
  constructor(
    id: string,
    owner: number,
    options: { waitedMs?: number; howToWaitLonger?: string; heldHereBy?: string } = {},
  ) {
    // Our own pid is another call of this very process (a library embedder's), not another command.
    const here = owner === process.pid;
    const who = here
      ? `another call in this process${options.heldHereBy ? ` (${options.heldHereBy})` : ''}`
      : owner > 0
        ? `process ${owner}`
        : 'another process (which one cannot be known)';
    const waited = options.waitedMs === undefined ? '' : ` (waited ${options.waitedMs} ms)`;
    super('VCNET_SANDBOX_LOCKED', `sandbox ${id} is being changed by ${who}${waited}`, {
      value: owner,
      hint: here
        ? `wait for that call to settle before making this one, or ${options.howToWaitLonger ?? CLI_LOCK_TIMEOUT_HINT}`
        : `wait for the other vcnet command to finish, or ${options.howToWaitLonger ?? CLI_LOCK_TIMEOUT_HINT}`,
    });
  }
}

/** The library call holding each sandbox lock this process holds, by lock path: named when another call waits. */
const heldHere = new Map<string, string>();

export interface SandboxStoreOptions {
  /** Schema of the record's content (beside the envelope); the sandbox record's by default. */
  content?: RecordContentSchema<unknown>;
  /** The id the record's envelope must carry; the store's id by default. */
  expectedId?: string;
  /** For SandboxLockedError: how to wait longer where this store is used. */
  lockTimeoutHint?: string;
  /** For a state directory that cannot be one: how to pick another where this store is used (the CLI's by default). */
  unusableHint?: string;
  /** For a record that cannot be written: the setting that picks another state directory where this store is used (the CLI's by default). */
  stateDirectorySetting?: string;
  /**
   * Register the state directory for gc before the first record is written (false for records nested
   * in another's directory, whose root is then checked as a directory inside the state).
   */
  register?: boolean;
  /** For a record left after a complete undo: what drops it where this store is used (the next detach by default). */
  removeAgain?: string;
  /** Checks the id, which names the record's directory (validateSandboxId by default). */
  validateId?: (id: string) => void;
}

/**
 * A record's text, or undefined when there is none: opened once, never through a symbolic link
 * planted in its place (O_NOFOLLOW) and never blocking on a FIFO (O_NONBLOCK), and read only when
 * that fd is a regular file. Errors name the file and what it is, never what it holds.
 */
export function readRecordFile(path: string): string | undefined {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (error) {
    const code = errnoOf(error);
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    if (code === 'ELOOP')
      throw new VcnetError('VCNET_STATE_INVALID', `state file ${path} is a symbolic link`, {
        value: path,
        hint: 'nothing was changed; vcnet never reads or writes its records through a link: remove it',
      });
    throw new SystemCallError(`open ${path}`, error as NodeJS.ErrnoException);
  }
  try {
    const stats = fstatSync(fd);
    if (stats.isDirectory())
      throw new VcnetError('VCNET_STATE_INVALID', `state file ${path} is a directory`, {
        value: path,
        hint: 'nothing was changed; remove it',
      });
    if (!stats.isFile())
      throw new VcnetError(
        'VCNET_STATE_INVALID',
        `state file ${path} is not a regular file (a FIFO, socket or device: mode 0${stats.mode.toString(8)})`,
        { value: path, hint: 'nothing was changed; vcnet writes its records as plain files: remove it' },
      );
    return recordText(readFileSync(fd), path);
  } catch (error) {
    if (error instanceof VcnetError) throw error;
    throw new SystemCallError(`read ${path}`, error as NodeJS.ErrnoException);
  } finally {
    closeSync(fd);
  }
}

/** What to look at when a record directory could not be removed with `errno`. */
function recordRemovalAdvice(errno: string | undefined): string {
  const processHint = processLimitHint(errno);
  if (processHint !== undefined) return `; ${processHint}`;
  return ' (if it happens again, check the file system of the state directory: dmesg)';
}

export class SandboxStore {
  readonly directory: string;
  readonly root: string;

  constructor(
    readonly id: string,
    root = stateDirectory(),
    private readonly options: SandboxStoreOptions = {},
  ) {
    (options.validateId ?? validateSandboxId)(id);
    if (typeof root !== 'string' || root === '')
      throw new InvalidInputError('stateDirectory', root, 'a directory path, such as /run/vcnet/sandboxes');
    this.root = resolve(root);
    this.directory = join(this.root, id);
  }

  get statePath(): string {
    return join(this.directory, 'state.json');
  }

  /** What the hint of a write in this store that failed names: its state directory and the setting that moves it. */
  private get writeSubject(): StateWriteSubject {
    return stateDirectorySubject(this.options.stateDirectorySetting);
  }

  /** Beside the sandbox directory, never inside it. */
  get lockPath(): string {
    return join(this.root, LOCK_DIRECTORY_NAME, this.id);
  }

  /** The record's text, or undefined when there is none. */
  readText(): string | undefined {
    this.refuseUntrusted();
    return readRecordFile(this.statePath);
  }

  /**
   * Refuses a state directory another user could change (trust.ts), and a record directory that is a
   * symbolic link: vcnet would read and write the record wherever it points.
   */
  private refuseUntrusted(): void {
    refuseUntrustedDirectory(this.root, this.trustOptions(this.options.register !== false));
    let linked = false;
    try {
      linked = lstatSync(this.directory).isSymbolicLink();
    } catch {
      // not there (yet)
    }
    if (linked)
      throw new VcnetError('VCNET_STATE_INVALID', `the record directory ${this.directory} is a symbolic link`, {
        value: this.directory,
        hint: 'nothing was changed; vcnet never reads or writes its records through a link: remove it',
      });
  }

  private trustOptions(follow: boolean): { follow: boolean; unusableHint?: string } {
    return { follow, ...(this.options.unusableHint !== undefined ? { unusableHint: this.options.unusableHint } : {}) };
  }

  /**
   * Makes `directory` (the state directory or one in it), or says why the state directory cannot be
   * used. A file system that is full, out of inodes, read-only or failing, or a process out of file
   * descriptors (STATE_WRITE_FAILURES), is a write that failed (StateWriteError, as for the
   * record file; vcnet-cni: code 11, try again), not a directory that can never be used.
   */
  private makeDirectoryIn(directory: string): string[] {
    try {
      return makeDirectory(directory, 0o700);
    } catch (error) {
      if (!(error instanceof DirectoryNotMadeError)) throw error;
      const errno = errnoOf(error.cause);
      if (errno !== undefined && STATE_WRITE_FAILURES.has(errno))
        throw new StateWriteError(error.component, error.cause as NodeJS.ErrnoException, this.writeSubject, {
          action: 'create the directory',
        });
      throw unusableStateDirectory(this.root, error, this.options.unusableHint);
    }
  }

  /**
   * The validated record, or undefined when there is none. A record that is damaged, of another
   * version or of another sandbox throws StateInvalidError naming the file and the field.
   */
  read<T = RecordEnvelope>(): T | undefined {
    const text = this.readText();
    if (text === undefined) return undefined;
    return parseRecord(text, this.statePath, {
      expectedId: this.options.expectedId ?? this.id,
      content: this.options.content ?? sandboxContentSchema,
    }) as T;
  }

  /** Replaces the record atomically (StateWriteError when it cannot: the old record stays). */
  write(state: unknown): void {
    this.refuseUntrusted();
    this.makeDirectoryIn(this.directory);
    replaceFileAtomically(this.statePath, `${JSON.stringify(state, null, 2)}\n`, {
      temporaryPrefix: join(this.directory, '.state.'),
      mode: 0o600,
      subject: this.writeSubject,
    });
  }

  /**
   * A write's temporary file left by a process killed before its rename. Every writer holds the
   * sandbox lock, so under the lock any temporary file is such a leftover.
   */
  removeStaleTemporaries(): void {
    this.refuseUntrusted();
    let names: string[];
    try {
      names = readdirSync(this.directory);
    } catch {
      return; // no directory yet
    }
    for (const name of names) {
      if (STATE_TEMPORARY_FILE.test(name)) rmSync(join(this.directory, name), { force: true });
    }
  }

  /**
   * Removes the sandbox's state directory (after a complete detach). The lock is elsewhere and stays
   * held. StateWriteError when it cannot be removed (EIO, EMFILE): what the record described is
   * undone already, and the record left is one the next detach (or DEL) finds nothing to undo of and drops.
   */
  remove(): void {
    this.refuseUntrusted();
    try {
      // The record by name, then its directory: neither needs a file descriptor, so a process at its
      // open-file limit (EMFILE), undoing an attach that ran out of them, still removes the record.
      // Only a directory holding more (a killed writer's temporary file) is listed and removed whole.
      rmSync(this.statePath, { force: true });
      try {
        rmdirSync(this.directory);
      } catch (error) {
        const errno = errnoOf(error);
        if (errno !== 'ENOENT' && errno !== 'ENOTEMPTY' && errno !== 'EEXIST') throw error;
        if (errno !== 'ENOENT') rmSync(this.directory, { recursive: true, force: true });
      }
    } catch (error) {
      const cause = error as NodeJS.ErrnoException;
      throw new StateWriteError(this.directory, cause, this.writeSubject, {
        action: 'remove the record directory',
        hint: `nothing is left to undo: the namespace is as it was before, only the record in ${this.directory} is left; ${this.options.removeAgain ?? 'the next detach of the sandbox drops it'}${recordRemovalAdvice(errnoOf(cause))}`,
      });
    }
  }

  /**
   * Makes the state directory and registers it for gc: call under the lock, before the first record
   * is written. Only commands that write a record call it, so a read, a detach of an unknown sandbox
   * or a command that fails first leaves neither a directory nor a registry entry behind.
   */
  async prepareToRecord(): Promise<void> {
    if (this.options.register === false) return;
    this.refuseUntrusted();
    this.makeDirectoryIn(this.root);
    // The registry's lock shares the caller's wait: what the sandbox lock left of it, but at least
    // a second, since other processes hold it only to rewrite one small file (a caller that will
    // not wait for a sandbox, lockTimeoutMs 0, would otherwise fail on any registration beside it).
    const wait = this.lockWait ?? { started: Date.now(), timeoutMs: defaultLockTimeoutMs() };
    await registerStateDirectory(this.root, undefined, {
      timeoutMs: Math.max(MIN_REGISTRY_WAIT_MS, wait.timeoutMs - (Date.now() - wait.started)),
      howToWaitLonger: this.options.lockTimeoutHint ?? CLI_LOCK_TIMEOUT_HINT,
    });
  }

  /** When the held lock was asked for, and how long the caller would wait (for prepareToRecord). */
  private lockWait: { started: number; timeoutMs: number } | undefined;

  /**
   * withLock for commands that act on a record and write none when there is none (detach, the
   * kata-network commands, gc): when neither the record's directory nor its lock file exists, `work`
   * runs without the lock and nothing is made, so a mistyped --state-dir leaves no directory behind.
   */
  async withLockIfRecorded<T>(
    work: () => Promise<T>,
    timeoutMs = defaultLockTimeoutMs(),
    options: { readOnly?: boolean; operation?: string; signal?: AbortSignal | undefined } = {},
  ): Promise<T> {
    return this.withLock(work, timeoutMs, { existingOnly: true, ...options });
  }

  /**
   * Whether the state directory is on a file system mounted read-only (access(2) answers EROFS for
   * W_OK there): no process can change a record on it, so a command that only reads needs no lock,
   * which it could not take either (the lock file cannot be opened for writing, nor made).
   */
  private onReadOnlyFileSystem(): boolean {
    try {
      accessSync(this.root, constants.W_OK);
      return false;
    } catch (error) {
      return errnoOf(error) === 'EROFS';
    }
  }

  /**
   * Runs `work` holding the sandbox lock; waits up to `timeoutMs` for another process to finish.
   * `existingOnly`: see withLockIfRecorded.
   */
  async withLock<T>(
    work: () => Promise<T>,
    timeoutMs = defaultLockTimeoutMs(),
    /** existingOnly: see withLockIfRecorded. readOnly: `work` writes nothing (list-ifaces, list-routes). */
    options: { existingOnly?: boolean; readOnly?: boolean; operation?: string; signal?: AbortSignal | undefined } = {},
  ): Promise<T> {
    // Aborted before anything: nothing is looked at or changed.
    options.signal?.throwIfAborted();
    this.refuseUntrusted();
    // A lock file without a record directory is an attach under way (before its first write): wait for it.
    if (options.existingOnly && !existsSync(this.directory) && !existsSync(this.lockPath)) return await work();
    if (options.readOnly && this.onReadOnlyFileSystem()) return await work();
    const howToWaitLonger = this.options.lockTimeoutHint ?? CLI_LOCK_TIMEOUT_HINT;
    const started = Date.now();
    const locks = join(this.root, LOCK_DIRECTORY_NAME);
    // What this command made: removed again when it records nothing (a refused attach).
    const made = this.makeDirectoryIn(locks);
    refuseUntrustedDirectory(locks, this.trustOptions(false));
    const lock = await lockFile(
      this.lockPath,
      timeoutMs,
      (holder) => {
        const heldHereBy = heldHere.get(this.lockPath);
        return new SandboxLockedError(this.id, holder, {
          waitedMs: timeoutMs,
          howToWaitLonger,
          ...(heldHereBy ? { heldHereBy } : {}),
        });
      },
      {
        acquired: () => {
          if (options.operation) heldHere.set(this.lockPath, options.operation);
        },
        signal: options.signal,
        subject: this.writeSubject,
      },
    );
    this.lockWait = { started, timeoutMs };
    try {
      // Aborted while the lock was being taken: given back before anything is changed.
      options.signal?.throwIfAborted();
      this.removeStaleTemporaries();
      return await work();
    } finally {
      this.lockWait = undefined;
      heldHere.delete(this.lockPath);
      // A lock taken for a sandbox that has no state (detach of an unknown id) leaves nothing behind.
      let directoryLeft = true;
      try {
        if (!lstatSync(this.directory).isSymbolicLink()) {
          rmdirSync(this.directory);
          directoryLeft = false;
        }
      } catch (error) {
        // not empty (the sandbox's state is there) or already gone
        directoryLeft = errnoOf(error) !== 'ENOENT';
      }
      lock.release({ removeFile: !directoryLeft });
      if (!directoryLeft) removeMadeDirectories(made);
    }
  }
}
