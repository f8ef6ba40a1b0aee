/**
 * What ADD, DEL and CHECK of vcnet-cni share: the request each is given, the attachment's record and
 * its name in the network layer, CNI_NETNS opened and checked once, and what finishes a DEL the
 * kernel refused in part. Only CNI_IFNAME is attached, never the rest of the namespace (other chains
 * own other interfaces).
 */
import type { DetachFinishedBy } from '../errors.js';
import { NamespacePathError } from '../errors.js';
import { isHostNamespace } from '../netns/host-namespace.js';
import { type OpenedNamespace, openNamespaceForRecord } from '../netns/namespace-identity.js';
import type { CniConfig, CniEnvironment } from './config.js';
import { CniEnvironmentError } from './errors.js';
import { AttachmentStore } from './state.js';

/** What finishes a DEL (or a failed ADD's undo) the kernel refused in part: the runtime retries DEL. */
export const DEL_AGAIN: DetachFinishedBy = {
  again: "the runtime's next DEL of this container and interface finishes it (what is already gone is skipped)",
  next: "the runtime's next DEL",
};

export interface CniRequest {
  environment: CniEnvironment;
  config: CniConfig;
}

/** DEL reads only where the attachment is recorded, never the rest of the config (see parseDeleteTarget). */
export interface CniDeleteRequest {
  environment: CniEnvironment;
  config: Pick<CniConfig, 'stateDirectory' | 'lockTimeoutMs'>;
}

export function storeOf({ environment, config }: CniDeleteRequest): AttachmentStore {
  return new AttachmentStore(config.stateDirectory, environment.containerId, environment.interfaceName);
}

/** How the network layer names this attachment in logs, spans and pair ids. */
export function sandboxKey(environment: CniEnvironment): string {
  return `${environment.containerId}/${environment.interfaceName}`;
}

/**
 * CNI_NETNS must be a namespace that exists and is not the plugin's own (never plumb the host).
 * It is opened once (without blocking on a FIFO) and used through that fd; `path` is the one the
 * runtime gave, `opened.identity` what is recorded.
 */
export function usableNamespace(path: string | undefined): { path: string; opened: OpenedNamespace } {
  if (!path) throw new CniEnvironmentError('CNI_NETNS', path, 'an existing network namespace');
  let opened: OpenedNamespace;
  try {
    opened = openNamespaceForRecord(path, 'CNI_NETNS');
  } catch (error) {
    if (error instanceof NamespacePathError)
      throw new CniEnvironmentError('CNI_NETNS', path, 'an existing network namespace', error.problem);
    throw error;
  }
  if (isHostNamespace(opened.entryPath)) {
    opened.close();
    throw new CniEnvironmentError('CNI_NETNS', path, 'a pod namespace, not the one vcnet-cni itself runs in');
  }
  return { path, opened };
}
