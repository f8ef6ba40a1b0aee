/**
 * A pod namespace remembered by what it is, not only by where it was found.
 *
 * A path such as /proc/PID/ns/net can name another namespace tomorrow (the PID was reused), and a
 * bind mount can be replaced, so every record keeps the namespace's identity next to its path: the
 * nsfs file's device and inode, plus the namespace cookie (SO_NETNS_COOKIE), because the kernel
 * hands a freed namespace's inode number to the next namespace it makes while a cookie is never
 * reused. Later commands open the recorded path once, check all three, and then work through that
 * open fd (/proc/self/fd/N), so the namespace cannot change between the check and the work.
 * Reaching a recorded namespace whose path is gone, through what still holds it, is
 * namespace-holders.ts's.
 */
import { closeSync, constants, fstatSync, openSync, readdirSync, type Stats, statfsSync, statSync } from 'node:fs';
import { uptime } from 'node:os';
import { join, resolve } from 'node:path';
import { NAMED_WITH_TRAILING_SLASH, NamespacePathError, SystemCallError, VcnetError } from '../errors.js';
import { missingFileKind, NSFS_MAGIC, nonNamespaceFileKind } from '../namespace-file.js';

// Defined with the base errors so that the netlink layer can say it too (NetlinkHandle.open).

import { nativeNamespaces } from '../native/namespaces.js';
import { NetlinkClosedError } from '../netlink/errors.js';
import { NetlinkHandle } from '../netlink/handle.js';
import { RouteSocket } from '../netlink/socket.js';
import { shellWord } from '../shell-word.js';
import { heldDeviceAt, openNamespaceOfProcessFd } from './held-device-fds.js';

/** Where `ip netns` pins named namespaces (bind mounts). */
export const NETNS_RUN_DIRECTORY = '/var/run/netns';

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
    /**
     * What the recorded path is now instead of a namespace ("a regular file": the mount point a
     * runtime unmounted and did not unlink); undefined when nothing is there.
     */
    readonly pathNow?: string,
    /** A subclass's own account of why (RecordFromEarlierBootError: the machine rebooted). */
    said?: { message: string; hint: string },
  ) {
    super(
      'VCNET_NETNS_GONE',
      said?.message ??
        `the namespace recorded in ${file} (${recorded.path}, inode ${recorded.ino}) no longer exists${pathNow === undefined ? '' : ` (${recorded.path} is ${pathNow} now, not a network namespace)`}`,
      {
        value: recorded.path,
        hint: said?.hint ?? 'what vcnet made lived in that namespace and went with it; `vcnet gc` drops the record',
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

/**
 * A network namespace held open by fd: work through `entryPath` and the namespace cannot be swapped
 * underneath. It also holds the netlink socket its cookie was read on (made inside the namespace
 * through that fd), for the operation's work there: netlinkHandle() hands it over, so checking a
 * namespace and working in it take one socket, not two.
 */
export class OpenedNamespace {
  private closed = false;

  constructor(
    readonly fd: number,
    readonly identity: NamespaceIdentity,
    /** The socket the cookie was read on, until netlinkHandle() takes it; closed with the namespace if never taken. */
    private socket?: RouteSocket,
  ) {}

  /** A path the native shim can open that always resolves to this very namespace. */
  get entryPath(): string {
    return `/proc/self/fd/${this.fd}`;
  }

  /**
   * A netlink handle in this namespace, owned by the caller (who closes it): the first one is on the
   * socket the namespace's cookie was read on; any later one opens a socket of its own through the
   * fd. `label` is the path its errors and events name (default: the identity's path).
   */
  netlinkHandle(label: string = this.identity.path): NetlinkHandle {
    const socket = this.socket;
    this.socket = undefined;
    if (socket && !socket.isClosed) return NetlinkHandle.over(socket, label);
    if (this.closed) throw new NetlinkClosedError(this.identity.path);
    return NetlinkHandle.open(this.entryPath, label);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    // Never sent on: its fds are closed at once.
    void this.socket?.close();
    this.socket = undefined;
    closeSync(this.fd);
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * What a /proc/PID/fd/N that is a socket or a tap (a namespace held from outside it) is: `reach`, the
 * namespace that fd belongs to (the holder search's answer, which detach, gc and list go through);
 * `refuse`, for a path a user gives to attach to or record (--netns, CNI_NETNS, namespacePath): no
 * iproute2 or CNI tool takes such a path, and a record of it would name a namespace that is gone
 * for vcnet when that process closes the fd or exits.
 */
export type HeldDevicePaths = 'reach' | 'refuse';

/**
 * Opens `path` as a network namespace without ever blocking: stat first (a FIFO, directory or
 * device is refused before open), a regular file must live on nsfs, and the open uses O_NONBLOCK
 * so a path swapped for a FIFO in between cannot hang. Then a netlink socket is made inside it
 * through the fd, and the namespace's cookie read on that socket: the one socket an operation
 * works through afterwards (OpenedNamespace.netlinkHandle). Throws NamespacePathError naming the path.
 */
export function openNetworkNamespace(
  path: string,
  field = 'netns',
  heldDevice: HeldDevicePaths = 'reach',
): OpenedNamespace {
  const { fd, stats } = openNamespaceFile(path, field, heldDevice);
  try {
    const identity: NamespaceIdentity = { path, dev: stats.dev, ino: stats.ino };
    // Entering it as a network namespace (to make the socket) also refuses a mount or user namespace.
    const socket = socketInNamespace(`/proc/self/fd/${fd}`, field, path);
    try {
      const cookie = cookieOf(socket, path);
      if (cookie) identity.cookie = cookie;
    } catch (error) {
      void socket.close();
      throw error;
    }
    return new OpenedNamespace(fd, identity, socket);
  } catch (error) {
    closeSync(fd);
    throw error;
  }
}

/**
 * Checks that `path` is a network namespace vcnet may work in, as openNetworkNamespace would (the
 * same refusals, naming `field`: another type of namespace, one vcnet may not enter), entering it
 * and coming back without making anything there. For a command's check of its arguments, before the
 * operation opens the namespace for its work (once: its cookie read on its own socket).
 */
export function checkNetworkNamespace(path: string, field = 'netns', heldDevice: HeldDevicePaths = 'reach'): void {
  const { fd } = openNamespaceFile(path, field, heldDevice);
  try {
    enterAndBack(fd, path, field);
  } finally {
    closeSync(fd);
  }
}

/** Enters the namespace of `fd` and comes back: refuses another type of namespace, or one vcnet may not enter. */
function enterAndBack(fd: number, path: string, field: string): void {
  nativeNamespaces.load();
  try {
    nativeNamespaces.enterAndBack(fd);
  } catch (error) {
    const failure = error as NodeJS.ErrnoException;
    if (failure.syscall === 'setns' && failure.code === 'EINVAL')
      throw new NamespacePathError(field, path, 'a namespace of another type');
    throw new SystemCallError(`enter network namespace ${path}`, failure);
  }
}

/**
 * Opens the nsfs file at `path` (see openNetworkNamespace), with what fstat says of it. A
 * /proc/PID/fd/N that is a socket or a tap (the holder search's answer for a namespace only such an
 * fd keeps alive) opens the namespace that fd belongs to, asked of the kernel.
 */
function openNamespaceFile(path: string, field: string, heldDevice: HeldDevicePaths): { fd: number; stats: Stats } {
  if (typeof path !== 'string' || path === '') throw new NamespacePathError(field, String(path ?? ''), 'empty');
  const device = heldDeviceAt(path);
  if (device && heldDevice === 'refuse') {
    throw new NamespacePathError(
      field,
      path,
      `${device.kind === 'socket' ? 'a socket' : 'a tun/tap fd'} of process ${device.pid}`,
    );
  }
  if (device) return openNamespaceOfDevice(path, field, device);
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
    return { fd, stats: opened };
  } catch (error) {
    closeSync(fd);
    throw error;
  }
}

/** openNamespaceFile for a socket or tap fd of a process: the namespace it belongs to, as a new fd. */
function openNamespaceOfDevice(
  path: string,
  field: string,
  device: NonNullable<ReturnType<typeof heldDeviceAt>>,
): { fd: number; stats: Stats } {
  nativeNamespaces.load();
  let fd: number;
  try {
    fd = openNamespaceOfProcessFd(device.pid, device.fd, device.kind, undefined, device.socket);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    // The process exited or closed the fd meanwhile: nothing holds the namespace there any more.
    if (code === 'ESRCH' || code === 'EBADF') throw new NamespacePathError(field, path, 'missing');
    throw new SystemCallError(
      `open the network namespace of the ${device.kind} ${path}`,
      error as NodeJS.ErrnoException,
    );
  }
  try {
    return { fd, stats: fstatSync(fd) };
  } catch (error) {
    closeSync(fd);
    throw error;
  }
}

/**
 * The identity of the network namespace at `path`, its cookie too, read through an fd and a socket
 * closed at once: for a look (is it the recorded one?), never for work there (openNetworkNamespace
 * holds it). The socket is a probe: the caller has no operation in that namespace whose socket it
 * could be (gc's liveness scan, the dry runs). Throws as openNetworkNamespace.
 */
export function identityOfNamespaceAt(path: string, field = 'netns'): NamespaceIdentity {
  const opened = openNetworkNamespace(path, field);
  opened.close();
  return opened.identity;
}

/** A netlink socket made inside the namespace at `entryPath` (the fd of `path`), its failures named by `path`. */
function socketInNamespace(entryPath: string, field: string, path: string): RouteSocket {
  try {
    return RouteSocket.open(entryPath);
  } catch (error) {
    // A missing native shim is its own error (VCNET_NATIVE_MISSING), not a failed system call.
    if (!(error instanceof SystemCallError)) throw error;
    const failure = error.cause as NodeJS.ErrnoException & { detail?: unknown };
    if (failure.syscall === 'setns' && failure.code === 'EINVAL')
      throw new NamespacePathError(field, path, 'a namespace of another type');
    throw new SystemCallError(`open a netlink socket in network namespace ${path}`, namedBy(failure, entryPath, path));
  }
}

/** The cookie read on `socket`; undefined on a kernel before 5.14, which has none (dev and inode are all there is). */
function cookieOf(socket: RouteSocket, path: string): string | undefined {
  try {
    return socket.namespaceCookie();
  } catch (error) {
    if (!(error instanceof SystemCallError)) throw error;
    if (error.errno === 'ENOPROTOOPT') return undefined;
    const failure = error.cause as NodeJS.ErrnoException & { detail?: unknown };
    throw new SystemCallError(
      `read the cookie of network namespace ${path}`,
      namedBy(failure, socket.namespacePath ?? path, path),
    );
  }
}

/** The native failure, named by the path the caller gave: the fd's /proc/self/fd/N means nothing to whoever reads it. */
function namedBy(failure: NodeJS.ErrnoException & { detail?: unknown }, entryPath: string, path: string) {
  return Object.assign(new Error(failure.message.replaceAll(entryPath, path)), {
    code: failure.code,
    errno: failure.errno,
    syscall: failure.syscall,
    ...(typeof failure.detail === 'string' ? { detail: failure.detail.replaceAll(entryPath, path) } : {}),
  });
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
  const opened = openNetworkNamespace(path, field, 'refuse');
  // Recorded absolute: a later command may run from another directory.
  opened.identity.path = resolve(path);
  if (!opened.identity.path.startsWith(`${NETNS_RUN_DIRECTORY}/`)) {
    const pinned = pinnedPathOf(opened.identity);
    if (pinned) opened.identity.path = pinned;
  }
  return opened;
}

/**
 * Whether a recorded path that is `what` instead of a network namespace (NamespacePathError.what) no
 * longer holds the recorded one. Not for a path with a trailing "/" (the file it names may be the
 * namespace: the record was written so, and proves nothing gone) nor an empty one.
 */
export function pathNoLongerHolds(what: string): boolean {
  return what !== 'empty' && what !== NAMED_WITH_TRAILING_SLASH;
}

/**
 * Whether `found` is a later namespace that the kernel gave the recorded one's freed inode: the same
 * device and inode, another cookie (both known). No two live namespaces share an inode and a cookie
 * is never reused, so the recorded namespace is gone then, wherever `found` was seen: gc, detach,
 * vcnet-cni DEL and list all decide a record's namespace replaced by this one rule.
 */
export function isLaterNamespaceOfSameInode(
  recorded: Pick<NamespaceIdentity, 'dev' | 'ino' | 'cookie'>,
  found: Pick<NamespaceIdentity, 'dev' | 'ino' | 'cookie'>,
): boolean {
  if (recorded.dev !== found.dev || recorded.ino !== found.ino) return false;
  return recorded.cookie !== undefined && found.cookie !== undefined && recorded.cookie !== found.cookie;
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
 * path is gone or holds no namespace now (a file left where it was mounted), NamespaceChangedError when it now names another namespace, RecordedIdentityDamagedError
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
    // Anything else where the recorded namespace was (an empty file a runtime left when it unmounted
    // the namespace and crashed before the unlink, a FIFO, another namespace type) does not hold it
    // any more: as when the path is gone, it is looked for where something still holds it, or is gone.
    if (error instanceof NamespacePathError && pathNoLongerHolds(error.what))
      throw new NamespaceGoneError(recorded, file, error.what);
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
