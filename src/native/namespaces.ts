/** The native calls behind named network namespaces (src/netns/): create one bind-mounted, delete one, enter one and come back. */
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
} as const;
