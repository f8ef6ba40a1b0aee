/**
 * The native calls behind a netlink socket (src/netlink/transport.ts): open one inside a namespace,
 * send, receive, join multicast groups, and be told when it is readable. Only src/native/ loads the
 * addon; every other layer goes through a wrapper like this one, which hands it just what it needs.
 */
import { nativeShim } from './binding.js';
import type { WatchHandle } from './shim-types.js';

export const nativeNetlink = {
  /** Loads the addon now, so that a missing one is reported as such (VCNET_NATIVE_MISSING). */
  load: (): void => {
    nativeShim();
  },
  openNetlink: (namespacePath: string | null, protocol: number, groups: number): number =>
    nativeShim().openNetlink(namespacePath, protocol, groups),
  /** The socket's port id (getsockname): what the kernel's replies to it carry in nlmsg_pid. */
  netlinkPortId: (fd: number): number => nativeShim().netlinkPortId(fd),
  addMembership: (fd: number, group: number): void => nativeShim().addMembership(fd, group),
  netlinkSend: (fd: number, data: Uint8Array): number => nativeShim().netlinkSend(fd, data),
  netlinkRecv: (fd: number, into: Uint8Array): number => nativeShim().netlinkRecv(fd, into),
  /** Whether the addon can send on a pool thread (see netlinkSendInBackground). */
  canSendInBackground: (): boolean => typeof nativeShim().netlinkSendInBackground === 'function',
  netlinkSendInBackground: (
    fd: number,
    data: Uint8Array,
    done: (error: NodeJS.ErrnoException | null, sent: number | null) => void,
  ): void => nativeShim().netlinkSendInBackground!(fd, data, done),
  watchReadable: (fd: number, callback: (status: number) => void): WatchHandle =>
    nativeShim().watchReadable(fd, callback),
  unwatch: (handle: WatchHandle): void => nativeShim().unwatch(handle),
  closeFd: (fd: number): void => nativeShim().closeFd(fd),
  /** Whether the addon can write a file inside a namespace (an addon built before it cannot). */
  canWriteInNamespace: (): boolean => typeof nativeShim().writeFileInNetns === 'function',
  /** Writes `text` to `path` opened inside the network namespace of `namespaceFd` (a sysctl). */
  writeFileInNamespace: (namespaceFd: number, path: string, text: string): void =>
    nativeShim().writeFileInNetns!(namespaceFd, path, text),
  /** The start of `path` (a sysctl's value) opened inside the network namespace of `namespaceFd`. */
  readFileInNamespace: (namespaceFd: number, path: string): string => nativeShim().readFileInNetns(namespaceFd, path),
  /** The cookie (SO_NETNS_COOKIE) of the network namespace the socket `fd` was made in, as a decimal string. */
  socketNamespaceCookie: (fd: number): string => nativeShim().socketNamespaceCookie(fd),
  /** An fd of the network namespace the socket `fd` talks to (SIOCGSKNS); the caller closes it. */
  socketNamespace: (fd: number): number => nativeShim().socketNamespace(fd),
} as const;
