/**
 * The native calls behind named network namespaces (src/netns/): create one bind-mounted, delete one,
 * enter one and come back; and reach the namespace another process's socket or tap fd belongs to.
 */
import { nativeShim } from './binding.js';

export const nativeNamespaces = {
  /** Loads the addon now, so that a missing one is reported as such (VCNET_NATIVE_MISSING). */
  load: (): void => {
    nativeShim();
  },
  createNetns: (directory: string, name: string): string => nativeShim().createNetns(directory, name),
  deleteNetns: (path: string): void => nativeShim().deleteNetns(path),
  /** Enters the network namespace of an nsfs fd and comes back at once: nothing is made inside it. */
  enterAndBack: (fd: number): void => nativeShim().enterNetnsAndBack(fd),
  /** A pidfd of a process (pidfd_open): closed by the caller. */
  pidfdOpen: (pid: number): number => nativeShim().pidfdOpen(pid),
  /** A copy of fd `fd` of the process behind `pidfd` (pidfd_getfd): closed by the caller. */
  pidfdGetfd: (pidfd: number, fd: number): number => nativeShim().pidfdGetfd(pidfd, fd),
  /** The network namespace a socket was made in (SIOCGSKNS): a new fd, closed by the caller. */
  socketNamespace: (fd: number): number => nativeShim().socketNamespace(fd),
  /** The network namespace of a tun/tap fd's device (TUNGETDEVNETNS): a new fd, closed by the caller. */
  tunNamespace: (fd: number): number => nativeShim().tunNamespace(fd),
  closeFd: (fd: number): void => nativeShim().closeFd(fd),
} as const;
