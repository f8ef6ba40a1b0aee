/**
 * A sandbox's record opened for an undo: its namespace found by identity (through whatever still holds
 * it when the recorded path is gone or names another namespace now), its network loaded there, and the
 * namespace's lock taken. detach and its dry run, the CNI plugin's DEL, the kata-network operations
 * (sandbox-interfaces.ts) and gc's finishing of an attach a killed process left (gc/unfinished.ts)
 * start here, so all of them treat a gone or re-used namespace path alike; readSandbox reads the
 * record alone.
 */

import type { HeldDeviceKind } from '../netns/held-device-fds.js';
import { type NamespaceHolders, openNamespaceHeldElsewhere } from '../netns/namespace-holders.js';
import {
  isLaterNamespaceOfSameInode,
  NamespaceChangedError,
  NamespaceGoneError,
  type NamespaceIdentity,
  type OpenedNamespace,
  openRecordedNamespace,
} from '../netns/namespace-identity.js';
import { whereNamespaceLives } from '../netns/namespace-liveness.js';
import { tieNetworkToRecord } from './endpoint/held-queue-fds.js';
import { Network, type NetworkState } from './network.js';
import { refuseEarlierBoot } from './state/boot-id.js';
import { lockNamespace } from './state/namespace-lock.js';
import type { SandboxState } from './state/records.js';
import { defaultLockTimeoutMs, SandboxStore } from './state/store.js';

/**
 * Takes the lock of a record's namespace (lockNamespace) for an undo, except for a sandbox in the
 * host namespace (disable_new_netns), which every such sandbox shares and attach does not lock.
 */
export async function lockRecordedNamespace(
  recorded: RecordedNetwork,
  state: { namespace: NamespaceIdentity; network: NetworkState },
  timeoutMs: number | undefined,
  options: Parameters<typeof lockNamespace>[3] = {},
): Promise<void> {
  if (state.network.config.disableNewNetns) return;
  await lockNamespace(recorded.namespace.fd, state.namespace.path, timeoutMs ?? defaultLockTimeoutMs(), options);
}

/** A record's network, loaded in its namespace opened by identity; close() closes both. */
export interface RecordedNetwork {
  network: Network;
  /** The namespace, open (its fd holds the namespace lock once taken, until close()). */
  namespace: OpenedNamespace;
  /**
   * The recorded path is gone (or, with `pathReused`, names another namespace now) but the recorded
   * namespace is not: where it was opened instead, and the holding process.
   */
  heldElsewhere?: {
    path: string;
    pid?: number;
    pathReused?: boolean;
    /** What the recorded path is now instead of a namespace ("a regular file"), when not simply gone. */
    pathNow?: string;
    /** `path` is a socket made in the namespace, or a tap of it, that process `pid` holds from outside it. */
    through?: HeldDeviceKind;
  };
  /** Closes both; settles once the network's socket fds are closed (Network.close). */
  close(): Promise<void>;
}

/**
 * Opens the namespace a record names, by identity (NamespaceGoneError when it no longer exists, a
 * RecordFromEarlierBootError, one too, when the record was written in another boot,
 * NamespaceChangedError when its path now names another while the recorded one lives elsewhere),
 * and loads the record's network in it. `holders`: gc's index of the processes holding namespaces,
 * shared by all its records (default: looked for afresh when needed).
 */
export function openRecordedNetwork(
  record: { namespace: NamespaceIdentity; network: NetworkState; createdAt?: string; bootId?: string },
  sandboxId: string,
  statePath: string,
  holders?: NamespaceHolders,
): RecordedNetwork {
  // Before anything it names is looked at: after a reboot its inode and cookie may be another pod's.
  refuseEarlierBoot(record, statePath);
  let namespace: OpenedNamespace;
  try {
    namespace = openRecordedNamespace(record.namespace, statePath, record.createdAt);
  } catch (error) {
    if (error instanceof NamespaceGoneError) {
      // Only the path is gone (`ip netns del` while a VMM or another process still runs in it; or its
      // mount, leaving the mount point's file): what attach made lives on with the namespace, so it
      // is undone through whatever holds it.
      const relocated = openNamespaceHeldElsewhere(record.namespace, statePath, holders);
      if (!relocated) throw error;
      const { opened, heldAt, pid, through } = relocated;
      return loadRecordedNetwork(record, sandboxId, statePath, opened, {
        path: heldAt,
        ...(pid !== undefined ? { pid } : {}),
        ...(through !== undefined ? { through } : {}),
        ...(error.pathNow !== undefined ? { pathNow: error.pathNow } : {}),
      });
    }
    if (!(error instanceof NamespaceChangedError)) throw error;
    // The path holds a later namespace that got the recorded one's freed inode: the recorded one is
    // gone (no two live namespaces share an inode), with everything attach made in it.
    if (isLaterNamespaceOfSameInode(record.namespace, error.found))
      throw new NamespaceGoneError(
        record.namespace,
        statePath,
        undefined,
        laterNamespaceAtPath(record.namespace, error.found, statePath),
      );
    // A reused path (a namespace re-created under the same name, a PID reused): the recorded
    // namespace, while something still holds it, is reached through that holder by identity
    // (device, inode and cookie), as when the path was deleted; the path, which now names another
    // namespace, is never touched. When nothing holds it, it is gone with everything attach made.
    const relocated = openNamespaceHeldElsewhere(record.namespace, statePath, holders);
    if (relocated) {
      const { opened, heldAt, pid, through } = relocated;
      return loadRecordedNetwork(record, sandboxId, statePath, opened, {
        path: heldAt,
        ...(pid !== undefined ? { pid } : {}),
        ...(through !== undefined ? { through } : {}),
        pathReused: true,
      });
    }
    const livesAt = whereNamespaceLives(record.namespace);
    if (livesAt === undefined) throw new NamespaceGoneError(record.namespace, statePath);
    throw new NamespaceChangedError(record.namespace, error.found, statePath, livesAt);
  }
  return loadRecordedNetwork(record, sandboxId, statePath, namespace, undefined);
}

/** NamespaceGoneError's words for a recorded path that holds a later namespace with the recorded inode. */
function laterNamespaceAtPath(
  recorded: NamespaceIdentity,
  found: { ino: number; cookie?: string },
  statePath: string,
): { message: string; hint: string } {
  return {
    message: `the namespace recorded in ${statePath} (${recorded.path}, inode ${recorded.ino}, cookie ${recorded.cookie}) no longer exists: ${recorded.path} holds a later namespace that the kernel gave its freed inode (cookie ${found.cookie})`,
    hint: `what vcnet made lived in that namespace and went with it; \`vcnet detach\` or \`vcnet gc\` drops the record (nothing is done in the namespace at ${recorded.path} now)`,
  };
}

function loadRecordedNetwork(
  record: { network: NetworkState },
  sandboxId: string,
  statePath: string,
  namespace: OpenedNamespace,
  heldElsewhere: RecordedNetwork['heldElsewhere'],
): RecordedNetwork {
  let network: Network;
  try {
    // Through the socket the namespace's cookie was read on: the operation's one socket there.
    // A namespace reached through a holder is named by where it was reached, never by the recorded
    // path, which is gone or names another namespace now.
    network = Network.load(record.network, sandboxId, namespace, heldElsewhere?.path);
    tieNetworkToRecord(network, statePath);
  } catch (error) {
    namespace.close();
    throw error;
  }
  return {
    network,
    namespace,
    ...(heldElsewhere ? { heldElsewhere } : {}),
    close: () => {
      const closing = network.close();
      namespace.close();
      return closing;
    },
  };
}

/**
 * The record of sandbox `id` (what attach wrote: config, endpoints, hypervisor), or undefined when
 * there is none. Reads only; takes no lock.
 */
export function readSandbox(id: string, stateDirectory?: string): SandboxState | undefined {
  return new SandboxStore(id, stateDirectory).read<SandboxState>();
}
