/** The native calls behind named network namespaces (src/netns/): create one bind-mounted, delete one, tell the type of one. */
import { nativeShim } from './binding.js';

export const nativeNamespaces = {
  /** Loads the addon now, so that a missing one is reported as such (VCNET_NATIVE_MISSING). */
  load: (): void => {
    nativeShim();
  },
  createNetns: (directory: string, name: string): string => nativeShim().createNetns(directory, name),
  deleteNetns: (path: string): void => nativeShim().deleteNetns(path),
  /** The CLONE_NEW* type of the namespace an nsfs fd names (NS_GET_NSTYPE): nothing is entered. */
  namespaceType: (fd: number): number => nativeShim().namespaceType(fd),
} as const;
