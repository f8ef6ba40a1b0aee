/** The native calls behind named network namespaces (src/netns/): create one bind-mounted, delete one. */
import { nativeShim } from './binding.js';

export const nativeNamespaces = {
  createNetns: (directory: string, name: string): string => nativeShim().createNetns(directory, name),
  deleteNetns: (path: string): void => nativeShim().deleteNetns(path),
} as const;
