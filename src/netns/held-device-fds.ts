/**
 * Sockets and taps that keep a network namespace alive from outside it. A socket holds the namespace
 * it was made in for as long as it is open (a process that entered the namespace, made a socket and
 * came back: a CNI plugin, a runtime, a monitoring agent), and a tun/tap fd holds its device's
 * namespace (a VMM handed the tap's fd): no /proc/PID/ns/net, mount or nsfs fd shows either. The
 * holder search (namespace-holders.ts) looks at them last, only when every cheaper place found
 * nothing: each such fd is copied into this process (pidfd_getfd, Linux 5.6, which needs ptrace
 * access to its process: root has it) and the kernel asked its namespace (SIOCGSKNS for a socket,
 * TUNGETDEVNETNS, Linux 5.2, for a tap).
 */
import { closeSync, fstatSync, readlinkSync } from 'node:fs';
import { appendTo } from '../multimap.js';
import { nativeNamespaces } from '../native/namespaces.js';
import { commandIn, namespaceNoCommandEnters, PIN_PATH_PLACEHOLDER } from '../shell-word.js';

/** What keeps a namespace from outside it: a socket made in it, or a tun/tap fd of a device in it. */
export type HeldDeviceKind = 'socket' | 'tap';

/** One socket or tun/tap fd a process holds, as the walk over /proc/PID/fd listed it. */
export interface HeldDeviceFd {
  pid: number;
  fd: number;
  kind: HeldDeviceKind;
  /** A socket's inode (`socket:[INO]`): many fds on one socket (a fork's) are asked about once. */
  socket?: string;
}

const SOCKET_LINK = /^socket:\[(\d+)\]$/;
const TUN_DEVICE = '/dev/net/tun';
const PROCESS_FD_PATH = /^\/proc\/(\d+)\/fd\/(\d+)$/;

/** A /proc/PID/fd/N link's target that may hold a network namespace: a socket, or a tun/tap. */
export function heldDeviceOf(target: string): { kind: HeldDeviceKind; socket?: string } | undefined {
  const socket = SOCKET_LINK.exec(target)?.[1];
  if (socket !== undefined) return { kind: 'socket', socket };
  return target === TUN_DEVICE ? { kind: 'tap' } : undefined;
}

/** The process and fd of a `/proc/PID/fd/N` path whose fd is a socket or a tun/tap now; else undefined. */
export function heldDeviceAt(
  path: string,
): { pid: number; fd: number; kind: HeldDeviceKind; socket?: string } | undefined {
  const match = PROCESS_FD_PATH.exec(path);
  if (!match) return undefined;
  let target: string;
  try {
    target = readlinkSync(path);
  } catch {
    return undefined;
  }
  const device = heldDeviceOf(target);
  return device && { pid: Number(match[1]), fd: Number(match[2]), ...device };
}

/**
 * `program` run in the namespace reached at `path`, to quote for pasting on the host (commandIn), and
 * `unenterable`: for a namespace only another process's socket or tap keeps (/proc/PID/fd/N, which
 * nsenter cannot open), the command enters PIN_PATH_PLACEHOLDER and this says why and how to pin it
 * (namespaceNoCommandEnters); else undefined. What a hint or notice quoting a command for a
 * namespace reached through a holder (Network.reachedAt) says.
 */
export function pastedCommandIn(path: string, program: string): { command: string; unenterable?: string } {
  const held = heldDeviceAt(path);
  if (held === undefined) return { command: commandIn(path, program) };
  return { command: commandIn(PIN_PATH_PLACEHOLDER, program), unenterable: namespaceNoCommandEnters(held) };
}

/** /dev/net/tun's device number (major 10, minor 200), as fstat gives it. */
const TUN_RDEV = (10 << 8) | 200;

/**
 * Whether the fd copied from another process is still the socket (of inode `socket`, when known) or
 * tun fd the walk saw: between the walk's readlink and the copy, the process may have closed it and
 * opened something else under that number, which an ioctl would answer ENOTTY, as a kernel without
 * the ioctl does.
 */
function stillThatDevice(copy: number, kind: HeldDeviceKind, socket: string | undefined): boolean {
  const stats = fstatSync(copy);
  if (kind === 'tap') return stats.isCharacterDevice() && stats.rdev === TUN_RDEV;
  return stats.isSocket() && (socket === undefined || String(stats.ino) === socket);
}

/**
 * Opens the network namespace fd `fd` of process `pid` (a socket or a tap) belongs to: a new nsfs
 * fd in this process, which the caller closes. Throws the shim's errors (`code` the errno name,
 * `syscall` pidfd_open, pidfd_getfd, ioctl(SIOCGSKNS) or ioctl(TUNGETDEVNETNS)); an fd that is no
 * longer that socket (inode `socket`, when given) or tun fd is EBADF of pidfd_getfd, as one closed
 * is. `pidfd`: one the caller holds on that process (else one is opened and closed here).
 */
export function openNamespaceOfProcessFd(
  pid: number,
  fd: number,
  kind: HeldDeviceKind,
  pidfd?: number,
  socket?: string,
): number {
  const processFd = pidfd ?? nativeNamespaces.pidfdOpen(pid);
  try {
    const copy = nativeNamespaces.pidfdGetfd(processFd, fd);
    try {
      if (!stillThatDevice(copy, kind, socket))
        throw Object.assign(new Error(`fd ${fd} of process ${pid} is no longer the ${kind} it was`), {
          code: 'EBADF',
          syscall: 'pidfd_getfd',
        });
      return kind === 'socket' ? nativeNamespaces.socketNamespace(copy) : nativeNamespaces.tunNamespace(copy);
    } finally {
      closeSync(copy);
    }
  } finally {
    if (pidfd === undefined) closeSync(processFd);
  }
}

/** The namespaces the sockets and taps of a walk hold, by `dev:ino` (namespacesOfHeldDevices). */
export interface HeldDeviceIndex {
  /** Each namespace's `dev:ino` → the /proc/PID/fd/N of the sockets and taps that hold it. */
  byKey: Map<string, string[]>;
  /**
   * What this kernel lacks to look (pidfd_open before 5.3, pidfd_getfd before 5.6, SIOCGSKNS before
   * 4.9, TUNGETDEVNETNS before 5.2): the fds it was needed for were not looked at.
   */
  kernelLacks: string[];
  /** How many fds were asked about (a benchmark's count). */
  asked: number;
}

/** A kernel without the call (ENOSYS) or the ioctl (ENOTTY, EINVAL on a socket or a tun fd that has it). */
const isMissingCall = (code: string | undefined) => code === 'ENOSYS';
const isMissingIoctl = (code: string | undefined) => code === 'ENOTTY' || code === 'EINVAL';

/**
 * Asks the kernel the namespace of every socket and tap in `fds` (one pidfd per process, one ask per
 * socket however many fds share it). A process that exited, or an fd closed meanwhile, is passed
 * over; one whose fds this process may not copy (pidfd_getfd's EPERM: no ptrace access) is told to
 * `refused`, as a refused look at its /proc is; a tun fd with no device yet (EBADFD) holds nothing.
 */
export function namespacesOfHeldDevices(fds: readonly HeldDeviceFd[], refused: (pid: number) => void): HeldDeviceIndex {
  const index: HeldDeviceIndex = { byKey: new Map(), kernelLacks: [], asked: 0 };
  const lacks = (what: string) => {
    if (!index.kernelLacks.includes(what)) index.kernelLacks.push(what);
  };
  const keyOfSocket = new Map<string, string>();
  let noTapLook = false;
  let noCopy = false;
  const byProcess = new Map<number, HeldDeviceFd[]>();
  for (const held of fds) appendTo(byProcess, held.pid, held);
  for (const [pid, held] of byProcess) {
    if (noCopy) break;
    let pidfd: number;
    try {
      pidfd = nativeNamespaces.pidfdOpen(pid);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (isMissingCall(code)) {
        lacks('pidfd_open (Linux 5.3)');
        break;
      }
      if (code !== 'ESRCH') refused(pid);
      continue;
    }
    try {
      for (const { fd, kind, socket } of held) {
        const path = `/proc/${pid}/fd/${fd}`;
        const known = socket === undefined ? undefined : keyOfSocket.get(socket);
        if (known !== undefined) {
          appendTo(index.byKey, known, path);
          continue;
        }
        if (kind === 'tap' && noTapLook) continue;
        let namespaceFd: number;
        index.asked++;
        try {
          namespaceFd = openNamespaceOfProcessFd(pid, fd, kind, pidfd, socket);
        } catch (error) {
          const { code, syscall } = error as NodeJS.ErrnoException;
          if (syscall === 'pidfd_getfd') {
            if (isMissingCall(code)) {
              lacks('pidfd_getfd (Linux 5.6)');
              noCopy = true;
              break;
            }
            if (code === 'EBADF') continue; // closed meanwhile (or its number reused: stillThatDevice)
            if (code === 'ESRCH') break; // the process exited
            refused(pid);
            break;
          }
          if (code === 'EBADFD') continue; // a tun fd attached to no device holds no namespace
          if (isMissingIoctl(code)) {
            lacks(kind === 'socket' ? 'SIOCGSKNS (Linux 4.9)' : 'TUNGETDEVNETNS (Linux 5.2)');
            if (kind === 'tap') noTapLook = true;
            continue;
          }
          refused(pid);
          continue;
        }
        try {
          const { dev, ino } = fstatSync(namespaceFd);
          const key = `${dev}:${ino}`;
          if (socket !== undefined) keyOfSocket.set(socket, key);
          appendTo(index.byKey, key, path);
        } finally {
          closeSync(namespaceFd);
        }
      }
    } finally {
      closeSync(pidfd);
    }
  }
  return index;
}
