/**
 * The native calls behind a VM's network devices: create a tap (rtnetlink cannot create tun
 * devices), open character devices (/dev/vhost-net, /dev/tapN of a macvtap) once per queue, and
 * hand or close the fds. Errors are the addon's raw ones (`code` = errno name): callers wrap them in
 * a SystemCallError naming what they were doing.
 */
import type { Socket } from 'node:net';
import { nativeShim } from './binding.js';
import type { TunOptions } from './shim-types.js';

export const nativeDevices = {
  createTun: (
    namespacePath: string | null,
    name: string,
    options: TunOptions,
  ): { name: string; index: number; fds: number[] } => nativeShim().createTun(namespacePath, name, options),
  setTunPersist: (fd: number, on: boolean): void => nativeShim().setTunPersist(fd, on),
  openDevice: (path: string, count: number): number[] => nativeShim().openDevice(path, count),
  closeFd: (fd: number): void => nativeShim().closeFd(fd),
  setInheritable: (fd: number, on: boolean): void => nativeShim().setInheritable(fd, on),
  /** Sends data and fds (SCM_RIGHTS) in one message on a unix socket (QMP's getfd/add-fd). */
  sendWithFds: (socketFd: number, data: Uint8Array, fds: number[]): number =>
    nativeShim().sendWithFds(socketFd, data, fds),
} as const;

/**
 * The fd under a connected Node socket, for sendWithFds: Node has no public way to get it, so this
 * reads its libuv handle's `fd` (undefined, or below 0, when the socket has none).
 */
export function socketFileDescriptor(socket: Socket): number | undefined {
  return (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
}
