/**
 * Never the host: every command that changes a namespace first checks that it is not the namespace
 * vcnet itself runs in. Identity is the nsfs file's device and inode, which are the same whether the
 * namespace is reached through /proc/PID/ns/net, /proc/self/ns/net or a bind mount under
 * /var/run/netns (Kata compares the same pair: "Host networking requested, not supported by runtime").
 */
import { statSync } from 'node:fs';
import { VcnetError } from '../errors.js';

/** The caller's own network namespace. */
export const OWN_NAMESPACE_PATH = '/proc/self/ns/net';

/** `<dev>:<inode>` of a namespace file, or undefined when it cannot be read. */
function namespaceFileIdentity(path: string): string | undefined {
  try {
    const stat = statSync(path);
    return `${stat.dev}:${stat.ino}`;
  } catch {
    return undefined;
  }
}

/**
 * The caller's namespace identity, taken when the module loads: vcnet never moves its own main
 * thread, and a later read would go wrong if a future change entered a pod namespace on it.
 */
const ownNamespaceIdentity = namespaceFileIdentity(OWN_NAMESPACE_PATH);

/** True when `path` is the namespace this process runs in (the host's, for a runtime or a CNI plugin). */
export function isHostNamespace(path: string, own: string | undefined = ownNamespaceIdentity): boolean {
  const identity = namespaceFileIdentity(path);
  return identity !== undefined && identity === own;
}

/**
 * Refused to work in the network namespace vcnet itself runs in (`VCNET_HOST_NAMESPACE`): host networking is
 * not supported; give the pod's own namespace.
 */
export class HostNamespaceError extends VcnetError {
  static override readonly errorName: string = 'HostNamespaceError';
  constructor(path: string, operation: string) {
    super(
      'VCNET_HOST_NAMESPACE',
      `refusing to ${operation} in ${path}: it is the network namespace vcnet itself runs in (host networking requested, not supported)`,
      {
        value: path,
        hint: "give the pod's own namespace (e.g. /var/run/netns/<pod> or /proc/<pod pid>/ns/net); a VM that shares the host's network needs no vcnet",
      },
    );
  }
}

/** Throws HostNamespaceError when `path` is the caller's own namespace; returns the path otherwise. */
export function refuseHostNamespace(path: string, operation: string): string {
  if (isHostNamespace(path)) throw new HostNamespaceError(path, operation);
  return path;
}
