/** The native calls behind named network namespaces (src/netns/): create one bind-mounted, delete one. */
import { nativeShim } from './binding.js';

export const nativeNamespaces = {
  /** Loads the addon now, so that a missing one is reported as such (VCNET_NATIVE_MISSING). */
  load: (): void => {
    nativeShim();
  },
  createNetns: (directory: string, name: string): string => nativeShim().createNetns(directory, name),
  deleteNetns: (path: string): void => nativeShim().deleteNetns(path),
  /** The namespace's SO_NETNS_COOKIE, as a decimal string: never reused by another namespace. */
  namespaceCookie: (path: string): string => nativeShim().namespaceCookie(path),
} as const;
