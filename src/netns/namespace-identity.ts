/**
 * A pod namespace remembered by what it is, not only by where it was found.
 *
 * A path such as /proc/PID/ns/net can name another namespace tomorrow (the PID was reused), and a
 * bind mount can be replaced, so every record keeps the namespace's identity next to its path: the
 * nsfs file's device and inode, plus the namespace cookie (SO_NETNS_COOKIE), because the kernel
 * hands a freed namespace's inode number to the next namespace it makes while a cookie is never
 * reused. Later commands open the recorded path once, check all three, and then work through that
 * open fd (/proc/self/fd/N), so the namespace cannot change between the check and the work.
 */
import {
  closeSync,
  constants,
  fstatSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  type Stats,
  statfsSync,
  statSync,
} from 'node:fs';
import { uptime } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { errnoOf, NamespacePathError, SystemCallError, VcnetError } from '../errors.js';
import { appendTo } from '../multimap.js';
import { missingFileKind, NSFS_MAGIC, nonNamespaceFileKind } from '../namespace-file.js';

// Defined with the base errors so that the netlink layer can say it too (NetlinkHandle.open).
export { NamespacePathError };

import { nativeNamespaces } from '../native/namespaces.js';
import { shellWord } from '../shell-word.js';
import { testSeam } from '../test-seams.js';
import {
  hasSysPtrace,
  isKernelThread,
  isPermissionRefusal,
  lookAtFile,
  processIds,
  procHidesProcesses,
} from './processes.js';

/** Where `ip netns` pins named namespaces (bind mounts). */
export const NETNS_RUN_DIRECTORY = '/var/run/netns';

const ENOPROTOOPT = 92;

/** What a record keeps about its namespace. */
export interface NamespaceIdentity {
  path: string;
  dev: number;
  ino: number;
  /** SO_NETNS_COOKIE as a decimal string; absent only when the kernel cannot tell (before 5.14). */
  cookie?: string;
}

/** The recorded namespace no longer exists at its path (and nowhere vcnet may act on it). */
export class NamespaceGoneError extends VcnetError {
  static override readonly errorName: string = 'NamespaceGoneError';
  constructor(
    readonly recorded: NamespaceIdentity,
    file: string,
  ) {
    super(
      'VCNET_NETNS_GONE',
      `the namespace recorded in ${file} (${recorded.path}, inode ${recorded.ino}) no longer exists`,
      {
        value: recorded.path,
        hint: 'what vcnet made lived in that namespace and went with it; `vcnet gc` drops the record',
      },
    );
  }
}

/** The recorded path now names another namespace: nothing is done there. */
export class NamespaceChangedError extends VcnetError {
  static override readonly errorName: string = 'NamespaceChangedError';
  constructor(
    recorded: NamespaceIdentity,
    found: { dev: number; ino: number; cookie?: string },
    file: string,
    /** Where the recorded namespace still lives, when the caller looked (a /proc/PID/ns/net, a bind mount). */
    livesAt?: string,
  ) {
    const was = `inode ${recorded.ino}${recorded.cookie ? `, cookie ${recorded.cookie}` : ''}`;
    const now = `inode ${found.ino}${found.cookie ? `, cookie ${found.cookie}` : ''}`;
    super(
      'VCNET_NETNS_CHANGED',
      `${recorded.path} is no longer the namespace recorded in ${file} (recorded ${was}; found ${now}): refusing to touch it`,
      {
        value: recorded.path,
        hint: livesAt
          ? `the path was reused, and the recorded namespace still lives at ${livesAt}, where it could not be opened: run the command again; once nothing holds it, the record is dropped (nothing is ever done at ${recorded.path}, which names another namespace now)`
          : 'the path was reused (a new process, a new bind mount): nothing is done there; `vcnet detach` undoes the record through whatever still holds the recorded namespace, or drops the record once nothing does',
      },
    );
    this.found = found;
  }

  readonly found: { dev: number; ino: number; cookie?: string };
}

/**
 * The namespace at the recorded path has the recorded cookie but another device or inode: a cookie
 * is never reused while the machine runs, so it is the recorded namespace and the record's number is
 * wrong (damaged or edited). Acting on it as "namespace gone" would drop the record and leave
 * everything attach made there; nothing is done.
 */
export class RecordedIdentityDamagedError extends VcnetError {
  static override readonly errorName: string = 'RecordedIdentityDamagedError';
  constructor(
    readonly file: string,
    readonly field: 'namespace.dev' | 'namespace.ino',
    recorded: NamespaceIdentity,
    found: { dev: number; ino: number; cookie?: string },
  ) {
    const key = field === 'namespace.dev' ? 'dev' : 'ino';
    super(
      'VCNET_STATE_INVALID',
      `state file ${file}: field ${field} is ${recorded[key]} (expected ${found[key]}: ${recorded.path} holds the namespace with the recorded cookie ${recorded.cookie}, and a cookie is never reused while the machine runs, so the record is damaged, not the namespace gone)`,
      {
        value: recorded[key],
        hint: `nothing was changed; the file was damaged or edited: restore or remove it (then \`vcnet gc --netns ${shellWord(recorded.path)}\` removes vcnet's links there that no record owns)`,
      },
    );
  }
}

/**
 * Which number of a record's identity is wrong, when the namespace found at its path has its cookie
 * (so is the recorded one) but another device or inode; undefined when the two are different
 * namespaces, or nothing can tell (no cookies, or a record from before the last boot, whose cookies
 * the kernel has handed out again).
 */
export function damagedIdentityField(
  recorded: NamespaceIdentity,
  found: { dev: number; ino: number; cookie?: string },
  recordedAt: string | undefined,
): 'namespace.dev' | 'namespace.ino' | undefined {
  if (recorded.cookie === undefined || found.cookie === undefined || recorded.cookie !== found.cookie) return undefined;
  if (recordedAt === undefined || !(Date.parse(recordedAt) >= Date.now() - uptime() * 1000)) return undefined;
  if (recorded.ino !== found.ino) return 'namespace.ino';
  if (recorded.dev !== found.dev) return 'namespace.dev';
  return undefined;
}

/** A network namespace held open by fd: work through `entryPath` and the namespace cannot be swapped underneath. */
export class OpenedNamespace {
  private closed = false;

  constructor(
    readonly fd: number,
    readonly identity: NamespaceIdentity,
  ) {}

  /** A path the native shim can open that always resolves to this very namespace. */
  get entryPath(): string {
    return `/proc/self/fd/${this.fd}`;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    closeSync(this.fd);
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * Opens `path` as a network namespace without ever blocking: stat first (a FIFO, directory or
 * device is refused before open), a regular file must live on nsfs, and the open uses O_NONBLOCK
 * so a path swapped for a FIFO in between cannot hang. Throws NamespacePathError naming the path.
 */
export function openNetworkNamespace(path: string, field = 'netns'): OpenedNamespace {
  if (typeof path !== 'string' || path === '') throw new NamespacePathError(field, String(path ?? ''), 'empty');
  let stats: Stats;
  try {
    stats = statSync(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') throw new NamespacePathError(field, path, missingFileKind(path, code));
    throw new SystemCallError(`stat ${path}`, error as NodeJS.ErrnoException);
  }
  const kind = nonNamespaceFileKind(stats);
  if (kind) throw new NamespacePathError(field, path, kind);
  if (statfsSync(path).type !== NSFS_MAGIC) throw new NamespacePathError(field, path, 'a regular file');
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new NamespacePathError(field, path, 'missing');
    throw new SystemCallError(`open network namespace ${path}`, error as NodeJS.ErrnoException);
  }
  try {
    const opened = fstatSync(fd);
    const kindNow = nonNamespaceFileKind(opened);
    if (kindNow) throw new NamespacePathError(field, path, kindNow);
    const identity: NamespaceIdentity = { path, dev: opened.dev, ino: opened.ino };
    // Entering it as a network namespace (to read its cookie) also refuses a mount or user namespace.
    const cookie = namespaceCookie(`/proc/self/fd/${fd}`, field, path);
    if (cookie) identity.cookie = cookie;
    return new OpenedNamespace(fd, identity);
  } catch (error) {
    closeSync(fd);
    throw error;
  }
}

/**
 * The identity of the network namespace at `path`, its cookie too, read through an fd closed at once:
 * for a look (is it the recorded one?), never for work there (openNetworkNamespace holds it). Throws
 * as openNetworkNamespace.
 */
export function identityOfNamespaceAt(path: string, field = 'netns'): NamespaceIdentity {
  const opened = openNetworkNamespace(path, field);
  opened.close();
  return opened.identity;
}

function namespaceCookie(entryPath: string, field: string, path: string): string | undefined {
  // Outside the try: a missing native shim is its own error (VCNET_NATIVE_MISSING), not a failed system call.
  nativeNamespaces.load();
  try {
    return nativeNamespaces.namespaceCookie(entryPath);
  } catch (error) {
    const failure = error as NodeJS.ErrnoException & { detail?: unknown };
    if (failure.syscall === 'setns' && failure.code === 'EINVAL')
      throw new NamespacePathError(field, path, 'a namespace of another type');
    // ENOPROTOOPT: a kernel before 5.14 has no cookies; dev and inode are all there is.
    if ((error as NodeJS.ErrnoException).errno === ENOPROTOOPT) return undefined;
    // Named by the path the caller gave: the fd's /proc/self/fd/N means nothing to whoever reads it.
    const named = Object.assign(new Error(failure.message.replaceAll(entryPath, path)), {
      code: failure.code,
      errno: failure.errno,
      syscall: failure.syscall,
      ...(typeof failure.detail === 'string' ? { detail: failure.detail.replaceAll(entryPath, path) } : {}),
    });
    throw new SystemCallError(`read the cookie of network namespace ${path}`, named);
  }
}

/** The /var/run/netns entry that pins the namespace with this device and inode, if any. */
export function pinnedPathOf(
  identity: { dev: number; ino: number },
  directory = NETNS_RUN_DIRECTORY,
): string | undefined {
  let names: string[];
  try {
    names = readdirSync(directory);
  } catch {
    return undefined;
  }
  for (const name of names.sort()) {
    const path = join(directory, name);
    try {
      const stats = statSync(path);
      if (stats.dev === identity.dev && stats.ino === identity.ino && statfsSync(path).type === NSFS_MAGIC) return path;
    } catch {
      // removed meanwhile, or not a namespace
    }
  }
  return undefined;
}

/**
 * Opens the namespace a new record will name. A pinned path outlives the process behind
 * /proc/PID/ns/net, so when /var/run/netns holds the same namespace that path is the one recorded.
 */
export function openNamespaceForRecord(path: string, field = 'netns'): OpenedNamespace {
  const opened = openNetworkNamespace(path, field);
  // Recorded absolute: a later command may run from another directory.
  opened.identity.path = resolve(path);
  if (!opened.identity.path.startsWith(`${NETNS_RUN_DIRECTORY}/`)) {
    const pinned = pinnedPathOf(opened.identity);
    if (pinned) opened.identity.path = pinned;
  }
  return opened;
}

/** Whether the identity read from disk names the same namespace as `found`. */
export function sameNamespace(
  recorded: Pick<NamespaceIdentity, 'dev' | 'ino' | 'cookie'>,
  found: Pick<NamespaceIdentity, 'dev' | 'ino' | 'cookie'>,
): boolean {
  if (recorded.dev !== found.dev || recorded.ino !== found.ino) return false;
  return recorded.cookie === undefined || found.cookie === undefined || recorded.cookie === found.cookie;
}

/**
 * Opens the namespace a record names and proves it is the same one: NamespaceGoneError when the
 * path is gone, NamespaceChangedError when it now names another namespace, RecordedIdentityDamagedError
 * when it is the recorded namespace by its cookie but the record's device or inode is wrong (given
 * `recordedAt`, the record's createdAt: only a record of this boot can be judged by its cookie).
 * `file` is the record's path, named in every error.
 */
export function openRecordedNamespace(recorded: NamespaceIdentity, file: string, recordedAt?: string): OpenedNamespace {
  let opened: OpenedNamespace;
  try {
    opened = openNetworkNamespace(recorded.path, `namespace path recorded in ${file}`);
  } catch (error) {
    if (error instanceof NamespacePathError && error.what === 'missing') throw new NamespaceGoneError(recorded, file);
    throw error;
  }
  if (!sameNamespace(recorded, opened.identity)) {
    const found = opened.identity;
    opened.close();
    const damaged = damagedIdentityField(recorded, found, recordedAt);
    if (damaged) throw new RecordedIdentityDamagedError(file, damaged, recorded, found);
    throw new NamespaceChangedError(recorded, found, file);
  }
  opened.identity.path = recorded.path;
  return opened;
}

/**
 * Where a namespace of this identity can still be opened when its recorded path is gone: a
 * /var/run/netns entry, then a process (/proc/PID/ns/net), then a thread that entered it alone
 * (/proc/PID/task/TID/ns/net), then an nsfs bind mount of it anywhere (this mount namespace's, then
 * another's through /proc/PID/root), then an fd a process holds on it (/proc/PID/fd/N); each only
 * when the ones before found nothing. A VMM or a holder left in a namespace whose bind mount was
 * deleted, or a runtime's own mount of it, keeps it, and what attach made in it, alive.
 */
export function namespaceHolderPaths(
  identity: { dev: number; ino: number },
  /** Look at threads too when no process has it (default); false stops at processes. */
  options: { threads?: boolean } = {},
): string[] {
  return new NamespaceHolders().of(identity, options);
}

/**
 * Test seam (never set in production), on globalThis as gc's and apply.ts's (src/test-seams.ts):
 * called once per walk of every process's fds (the costly part of looking for a namespace's holders,
 * 50,000 fds and more on a busy node), so a test can count walks.
 */
const fdWalkSeam = testSeam<() => void>('fdWalk');

export function setFdWalkTestHook(hook: (() => void) | undefined): void {
  fdWalkSeam.set(hook);
}

const NET_NAMESPACE_LINK = /^net:\[(\d+)\]$/;

/**
 * namespaceHolderPaths for many namespaces at once (gc: one look per gone record): each place is
 * listed at most once, the first time a namespace looked for needs it (processes, then threads,
 * then nsfs mounts, then every process's fds), and indexed by inode; what a list found is checked
 * (stat'ed) against the identity asked about only then. A snapshot: it does not see holders that
 * appear after a place was listed.
 */
export class NamespaceHolders {
  #pids: number[] | undefined;
  #processes: Map<string, string[]> | undefined;
  #threads: Map<string, string[]> | undefined;
  #ownMounts: Map<number, string[]> | undefined;
  #otherMounts: Map<number, string[]> | undefined;
  #fds: Map<number, string[]> | undefined;
  /**
   * The processes some look of this search was refused at (EACCES, EPERM: another user's process
   * without CAP_SYS_PTRACE): any of them may hold the namespace. A process that exited is not here,
   * nor a kernel thread (see #kernelThreads).
   */
  readonly #refused = new Set<number>();
  /**
   * Refused processes that are kernel threads (PF_KTHREAD): they run in the initial namespaces and
   * hold no fds, so they hold no namespace vcnet made; not counted, and not looked into again (their
   * threads, mounts and fds). Without CAP_SYS_PTRACE root is refused every one of them, which made a
   * search never able to say a namespace is gone.
   */
  readonly #kernelThreads = new Set<number>();
  /** Places outside /proc/PID it was refused at (a bind mount of the namespace in a directory it cannot search). */
  readonly #refusedPaths = new Set<string>();
  #hidepid: string | undefined | null = null;

  /** Where a namespace of this identity can still be opened, as namespaceHolderPaths says. */
  of(identity: { dev: number; ino: number }, options: { threads?: boolean } = {}): string[] {
    const found: string[] = [];
    const pinned = pinnedPathOf(identity);
    if (pinned) found.push(pinned);
    found.push(...(this.#processesByKey().get(`${identity.dev}:${identity.ino}`) ?? []));
    if (found.length > 0 || options.threads === false) return found;
    found.push(...(this.#threadsByKey().get(`${identity.dev}:${identity.ino}`) ?? []));
    if (found.length > 0) return found;
    // Then a bind mount of it outside /var/run/netns (Docker's /var/run/docker/netns/*, rootless
    // podman's /run/user/UID/netns/*), in this mount namespace, then in another one.
    const same = (path: string) => {
      const looked = lookAtFile(path);
      if (looked === 'refused') this.refusedAt(path);
      return typeof looked === 'object' && looked.dev === identity.dev && looked.ino === identity.ino;
    };
    const refuse = (pid: number) => this.#refuse(pid);
    this.#ownMounts ??= nsfsMountsByInode(['self'], refuse);
    found.push(...(this.#ownMounts.get(identity.ino) ?? []).filter(same));
    if (found.length > 0) return found;
    this.#otherMounts ??= nsfsMountsByInode(this.#processesToLookInto(), refuse);
    found.push(...(this.#otherMounts.get(identity.ino) ?? []).filter(same));
    if (found.length > 0) return found;
    // Last, an fd a process keeps open on it (`exec 3</proc/PID/ns/net`, a runtime holding it).
    this.#fds ??= namespaceFdsByInode(this.#processesToLookInto(), refuse);
    return [...(this.#fds.get(identity.ino) ?? []), ...(this.#fds.get(-1) ?? [])].filter(same);
  }

  /**
   * Why a search that found nothing cannot say the namespace is gone: the processes it could not
   * look into, and /proc's hidepid= when it hides other users' processes. undefined when it saw all.
   * Meaningful after of() found nothing (every place was looked at then).
   */
  unseen(): NamespaceHoldersUnseen | undefined {
    if (this.#hidepid === null) this.#hidepid = procHidesProcesses();
    // With CAP_SYS_PTRACE in effect, a process it is still refused is kept from it by a security
    // module or a user namespace boundary, which no capability lifts: as before, not looked into
    // (else gc would never drop a record where such a process runs, as the init of some sandboxes).
    const processes = this.#refused.size === 0 || hasSysPtrace() ? [] : [...this.#refused].sort((a, b) => a - b);
    if (processes.length === 0 && this.#refusedPaths.size === 0 && this.#hidepid === undefined) return undefined;
    return {
      processes,
      ...(this.#refusedPaths.size === 0 ? {} : { paths: [...this.#refusedPaths].sort() }),
      ...(this.#hidepid === undefined ? {} : { hidepid: this.#hidepid }),
    };
  }

  /** Counts the process a refused /proc/PID/... path belongs to (a holder found that could not be opened, too). */
  refusedAt(path: string): void {
    const pid = /^\/proc\/(\d+)\//.exec(path)?.[1];
    if (pid !== undefined) this.#refuse(Number(pid));
    else this.#refusedPaths.add(path);
  }

  /** A process some look was refused at: counted unless it is a kernel thread (read once, from /proc/PID/stat). */
  #refuse(pid: number): void {
    if (this.#refused.has(pid) || this.#kernelThreads.has(pid)) return;
    if (isKernelThread(pid)) this.#kernelThreads.add(pid);
    else this.#refused.add(pid);
  }

  #processIds(): number[] {
    this.#pids ??= processIds();
    return this.#pids;
  }

  /** The processes past the first look (/proc/PID/ns/net): every one but the kernel threads found by then. */
  #processesToLookInto(): number[] {
    if (this.#kernelThreads.size === 0) return this.#processIds();
    return this.#processIds().filter((pid) => !this.#kernelThreads.has(pid));
  }

  #processesByKey(): Map<string, string[]> {
    this.#processes ??= this.#byIdentityKey(this.#processIds().map((pid) => `/proc/${pid}/ns/net`));
    return this.#processes;
  }

  #threadsByKey(): Map<string, string[]> {
    if (this.#threads) return this.#threads;
    const paths: string[] = [];
    for (const pid of this.#processesToLookInto()) {
      let tids: string[];
      try {
        tids = readdirSync(`/proc/${pid}/task`);
      } catch (error) {
        if (isPermissionRefusal(error)) this.#refuse(pid);
        continue;
      }
      // The main thread is the process, looked at above.
      for (const tid of tids) if (Number(tid) !== pid) paths.push(`/proc/${pid}/task/${tid}/ns/net`);
    }
    this.#threads = this.#byIdentityKey(paths);
    return this.#threads;
  }

  /** The paths that can be stat'ed, by their `dev:ino`; a refused one counts its process. */
  #byIdentityKey(paths: readonly string[]): Map<string, string[]> {
    const found = new Map<string, string[]>();
    for (const path of paths) {
      const looked = lookAtFile(path);
      if (looked === 'refused') this.refusedAt(path);
      if (typeof looked !== 'object') continue;
      const key = `${looked.dev}:${looked.ino}`;
      appendTo(found, key, path);
    }
    return found;
  }
}

/** What a holder search could not see (NamespaceHolders.unseen). */
export interface NamespaceHoldersUnseen {
  /** The processes whose /proc/PID/ns/net, threads, mounts or fds it was refused (EACCES, EPERM). */
  processes: number[];
  /** Other places that may hold it and could not be looked at (EACCES): a bind mount, the recorded path. */
  paths?: string[];
  /** /proc's hidepid= when it hides other users' processes from vcnet (no CAP_SYS_PTRACE). */
  hidepid?: string;
}

/** Why an unseen search cannot tell, as messages say it. */
export function describeUnseen(unseen: NamespaceHoldersUnseen): string {
  const parts: string[] = [];
  const count = unseen.processes.length;
  if (count > 0)
    parts.push(
      `${count} process${count === 1 ? '' : 'es'} could not be looked into (${count === 1 ? 'its' : 'their'} /proc/PID/ns/net, threads, mounts or fds: permission denied; ${count === 1 ? 'pid' : 'pids'} ${unseen.processes.slice(0, 8).join(', ')}${count > 8 ? ', ...' : ''})`,
    );
  if (unseen.paths !== undefined && unseen.paths.length > 0)
    parts.push(`${unseen.paths.join(', ')} could not be looked at (permission denied)`);
  if (unseen.hidepid !== undefined)
    parts.push(`/proc is mounted with hidepid=${unseen.hidepid}, which hides other users' processes from vcnet`);
  return parts.join('; ');
}

/** What to do about an unseen search, as hints say it. */
export const UNSEEN_HINT =
  "give vcnet CAP_SYS_PTRACE (with it, it may read any process's /proc/PID/ns/net and fds, and sees through /proc's hidepid=), or run it as full root: the holder of the namespace (a VMM run as another user, a runtime's pause process) may be one of those processes";

/**
 * Whether the namespace a record names still exists cannot be told: its path is gone (or names
 * another namespace, or cannot be looked at), and some process that may hold it could not be looked
 * into. Nothing is done and the record is kept: taking it for gone would forget a live sandbox and
 * leave its tap and filters running in that namespace.
 */
export class NamespaceUnseenError extends VcnetError {
  static override readonly errorName: string = 'NamespaceUnseenError';
  constructor(
    readonly recorded: NamespaceIdentity,
    file: string,
    readonly unseen: NamespaceHoldersUnseen,
    /** What the caller adds before the usual hint (one clause, no final period). */
    firstHint?: string,
  ) {
    super(
      'VCNET_NETNS_UNSEEN',
      `whether the namespace recorded in ${file} (${recorded.path}, inode ${recorded.ino}) still exists cannot be told: ${describeUnseen(unseen)}; the record is kept and nothing was changed`,
      {
        value: recorded.path,
        // No command takes a namespace it could not see for gone: the operator who knows is the way out.
        hint: `${firstHint === undefined ? '' : `${firstHint}; or `}${UNSEEN_HINT}; or, once you know nothing holds it any more (the sandbox's VM and every process of its pod have exited), drop the record by hand: rm -r ${shellWord(dirname(file))} (what vcnet made lived in that namespace and went with it)`,
      },
    );
  }
}

/** A mount point as /proc/PID/mountinfo writes it: space, tab, newline and backslash as octal escapes. */
function unescapeMountField(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(Number.parseInt(octal, 8)));
}

/**
 * nsfs mounts of network namespaces (their root is `net:[INO]`), by INO: those of vcnet's own mount
 * namespace by their mount point, those of other mount namespaces through /proc/PID/root (each
 * mount namespace read once). Not stat'ed here.
 */
function nsfsMountsByInode(
  pids: ReadonlyArray<number | 'self'>,
  refused: (pid: number) => void,
): Map<number, string[]> {
  const found = new Map<number, string[]>();
  const seenMountNamespaces = new Set<string>();
  if (pids[0] !== 'self') {
    const own = fileIdentityKey('/proc/self/ns/mnt');
    if (own !== undefined) seenMountNamespaces.add(own);
  }
  for (const pid of pids) {
    const looked = lookAtFile(`/proc/${pid}/ns/mnt`);
    if (looked === 'refused' && pid !== 'self') refused(pid);
    if (typeof looked !== 'object') continue;
    const mountNamespace = `${looked.dev}:${looked.ino}`;
    if (seenMountNamespaces.has(mountNamespace)) continue;
    seenMountNamespaces.add(mountNamespace);
    for (const mount of mountsOf(pid, refused)) {
      if (mount.fstype !== 'nsfs') continue;
      const inode = NET_NAMESPACE_LINK.exec(mount.root)?.[1];
      if (inode === undefined) continue;
      const path = pid === 'self' ? mount.mountPoint : `/proc/${pid}/root${mount.mountPoint}`;
      appendTo(found, Number(inode), path);
    }
  }
  return found;
}

/** One line of /proc/PID/mountinfo: the fields vcnet reads. */
interface MountInfoEntry {
  /** The mount id (fdinfo's `mnt_id:`). */
  id: string;
  /** The root of the mount within its file system (an nsfs mount's is `net:[INO]`). */
  root: string;
  mountPoint: string;
  fstype: string;
}

/**
 * The mounts of a process's mount namespace, from /proc/PID/mountinfo (none when it cannot be read;
 * `refused` hears of a process whose mountinfo this one may not read).
 */
function mountsOf(pid: number | 'self', refused?: (pid: number) => void): MountInfoEntry[] {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/mountinfo`, 'utf8');
  } catch (error) {
    if (pid !== 'self' && isPermissionRefusal(error)) refused?.(pid);
    return [];
  }
  const mounts: MountInfoEntry[] = [];
  for (const line of text.split('\n')) {
    const fields = line.split(' ');
    // Optional fields end at a lone '-': the fstype follows it.
    const separator = fields.indexOf('-');
    if (separator <= 0 || !fields[0]) continue;
    mounts.push({
      id: fields[0],
      root: fields[3] ?? '',
      mountPoint: unescapeMountField(fields[4] ?? ''),
      fstype: fields[separator + 1] ?? '',
    });
  }
  return mounts;
}

/**
 * Every fd some process holds on a network namespace, by the namespace's inode (one walk of every
 * process's fds; nothing stat'ed). An fd opened on `/proc/PID/ns/net` reads `net:[INO]`; one opened
 * through a bind mount (`exec 3</var/run/netns/X`) reads `/` once that mount is gone (a detached
 * mount's root), as does an fd on the root of a dead FUSE or NFS mount, whose stat never returns:
 * those are told apart by their fdinfo (read without touching the file), `ino:` (since Linux 5.14)
 * and the fstype of the mount `mnt_id:` names when that mount is still listed in the process's
 * mountinfo; one on a mount listed as anything but nsfs is no namespace. Without `ino:`, only one
 * on a listed nsfs mount is kept (its inode then unknown: -1, looked at for every namespace).
 */
function namespaceFdsByInode(pids: readonly number[], refused: (pid: number) => void): Map<number, string[]> {
  fdWalkSeam.hook()?.();
  const found = new Map<number, string[]>();
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch (error) {
      if (isPermissionRefusal(error)) refused(pid);
      continue;
    }
    let mountTypes: Map<string, string> | undefined;
    for (const fd of fds) {
      const path = `/proc/${pid}/fd/${fd}`;
      try {
        const target = readlinkSync(path);
        const direct = NET_NAMESPACE_LINK.exec(target)?.[1];
        if (direct !== undefined) {
          appendTo(found, Number(direct), path);
          continue;
        }
        if (target !== '/') continue;
        const info = readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8');
        const inode = /^ino:\s*(\d+)\s*$/m.exec(info)?.[1];
        const mountId = /^mnt_id:\s*(\d+)\s*$/m.exec(info)?.[1];
        mountTypes ??= mountTypesOf(pid, refused);
        const fstype = mountId === undefined ? undefined : mountTypes.get(mountId);
        if (fstype !== undefined && fstype !== 'nsfs') continue;
        if (inode !== undefined) appendTo(found, Number(inode), path);
        else if (fstype === 'nsfs') appendTo(found, -1, path);
      } catch (error) {
        // closed meanwhile, or not ours to read
        if (isPermissionRefusal(error)) refused(pid);
      }
    }
  }
  return found;
}

/** mount id → fstype, from /proc/PID/mountinfo (empty when it cannot be read). */
function mountTypesOf(pid: number, refused: (pid: number) => void): Map<string, string> {
  return new Map(mountsOf(pid, refused).map((mount) => [mount.id, mount.fstype]));
}

function fileIdentityKey(path: string): string | undefined {
  try {
    const stats = statSync(path);
    return `${stats.dev}:${stats.ino}`;
  } catch {
    return undefined;
  }
}

/** A recorded namespace opened somewhere other than its recorded path, which is gone. */
export interface RelocatedNamespace {
  opened: OpenedNamespace;
  /** The path it was opened through (a /proc/PID/ns/net, a thread's, or another /var/run/netns entry). */
  heldAt: string;
  /** The process holding it, when found through /proc. */
  pid?: number;
}

/**
 * Opens a recorded namespace whose path is gone through whatever still holds it, checked by
 * identity (cookie too: an inode number can be handed to a new namespace). undefined when nothing
 * holds it: then it is really gone. NamespaceUnseenError when nothing it could see holds it but some
 * process could not be looked into (no CAP_SYS_PTRACE, /proc's hidepid=): it may not be gone.
 */
export function openNamespaceHeldElsewhere(
  recorded: NamespaceIdentity,
  file: string,
  /** gc's index of holders, shared by all its records (default: looked for afresh). */
  holders: NamespaceHolders = new NamespaceHolders(),
): RelocatedNamespace | undefined {
  for (const heldAt of holders.of(recorded)) {
    let opened: OpenedNamespace;
    try {
      opened = openRecordedNamespace({ ...recorded, path: heldAt }, file);
    } catch (error) {
      // The process ended meanwhile, the inode now names another namespace, or this holder cannot
      // be opened by us: try the next one.
      const errno = errnoOf(error);
      if (errno === 'EACCES' || errno === 'EPERM') holders.refusedAt(heldAt);
      continue;
    }
    // Records and messages keep naming the recorded path; heldAt says where it was reached.
    opened.identity.path = recorded.path;
    // A process in it (or one of its threads), or one holding an fd on it; a mount has no process.
    const pid = /^\/proc\/(\d+)\/(?:ns|task|fd)\//.exec(heldAt)?.[1];
    return { opened, heldAt, ...(pid ? { pid: Number(pid) } : {}) };
  }
  // Nothing vcnet could see holds it: gone only when it saw every process (and every holder it
  // found could be opened); else a VMM of another user may be keeping it, and what attach made, alive.
  const unseen = holders.unseen();
  if (unseen) throw new NamespaceUnseenError(recorded, file, unseen);
  return undefined;
}
