/**
 * attachUnderLocks: the one attach sequence of `vcnet attach` (attachSandbox) and vcnet-cni ADD. Under
 * the record's lock (the sandbox's, the container's), then the namespace's: one socket and one scan,
 * a namespace another owner holds refused before anything is made, the record's directory prepared,
 * the attach journaled through attachRecorded (recorded.ts). What differs between the two commands
 * (the record, which interfaces, their errors and notices) is the caller's, given as steps.
 */
import type { NamespaceSnapshot } from '../netlink/handle.js';
import type { OpenedNamespace } from '../netns/namespace-identity.js';
import type { NetworkConfig } from '../network/config.js';
import type { Endpoint } from '../network/endpoint/endpoint.js';
import { type AddEndpointsOptions, Network } from '../network/network.js';
import { lockNamespace } from '../network/state/namespace-lock.js';
import { refuseHeldNamespace } from './namespace-hold.js';
import { attachRecorded, type RecordKeeper } from './recorded.js';

/** The record's lock and what its first write needs (SandboxStore, vcnet-cni's AttachmentStore). */
export interface AttachRecordStore {
  /** Runs `work` holding the record's lock, with the caller's wait and abort. */
  withLock<T>(work: () => Promise<T>): Promise<T>;
  /** Makes and registers the state directory: under the lock, before the first record is written. */
  prepareToRecord(): Promise<void>;
}

/** The pod namespace's lock and who may already hold the namespace. */
export interface PodNamespaceHold {
  lockTimeoutMs: number;
  /** The lock error's advice on waiting longer (the CLI's flag, vcnet-cni's config key). */
  howToWaitLonger?: string;
  signal?: AbortSignal | undefined;
  /** State directories whose records may hold the namespace, besides every one gc knows. */
  stateDirectories: readonly string[];
  /** vcnet-cni: its container's own record files (read under the locks), which hold nothing against it. */
  ownRecords?: () => readonly string[];
}

/** What one caller of attachUnderLocks gives: its record, its choice of interfaces, its errors and result. */
export interface LockedAttach<Result> {
  store: AttachRecordStore;
  /** Under the record's lock, first: a record already there refuses the attach. */
  refuseExisting(): void;
  /** The namespace to attach in, opened under the record's lock (or before it); closed at the end. */
  openNamespace(): OpenedNamespace;
  /** How errors name the namespace (the path the runtime gave); the recorded path when absent. */
  namespacePath?: string;
  /** The network's config: its namespacePath becomes the opened namespace's recorded path. */
  networkConfig: NetworkConfig;
  /** The network's name in logs, spans and pair ids (the sandbox id, container/interface). */
  networkKey: string;
  /**
   * Absent for the host's namespace (disable_new_netns), which every such sandbox shares: no lock
   * and no held check there.
   */
  podNamespace?: PodNamespaceHold;
  /** From the one scan, before anything is made: what to attach (and refusals of what cannot be). */
  attachOptions(snapshot: NamespaceSnapshot): Omit<AddEndpointsOptions, 'journal' | 'snapshot'>;
  /** The record's keeper, for the attach's network in that namespace. */
  keeper(network: Network, namespace: OpenedNamespace): RecordKeeper;
  /** What the caller throws for a failed attach (its error naming, its retelling of what is left). */
  attachFailure(error: unknown, namespace: OpenedNamespace): unknown;
  /** After the attach, still under both locks with the network open: the caller's checks, notices and result. */
  finish(attached: Endpoint[], network: Network, keeper: RecordKeeper): Promise<Result>;
}

/** Attaches under the record's lock and the namespace's, and records it; nothing is left if it fails. */
export async function attachUnderLocks<Result>(steps: LockedAttach<Result>): Promise<Result> {
  return steps.store.withLock(async () => {
    // A damaged record is refused here too (StateInvalidError), never overwritten.
    steps.refuseExisting();
    // Opened once and used through its fd; the pinned path is the one recorded when there is one.
    const namespace = steps.openNamespace();
    let network: Network;
    try {
      // Through the socket the namespace's cookie was read on: the attach's one socket there.
      network = Network.open(
        { ...steps.networkConfig, namespacePath: namespace.identity.path },
        steps.networkKey,
        namespace,
      );
    } catch (error) {
      namespace.close();
      throw error;
    }
    try {
      const hold = steps.podNamespace;
      const namespacePath = steps.namespacePath ?? namespace.identity.path;
      // Under the namespace's lock, after the record's: no attach, detach or other container's DEL
      // changes vcnet's links here between this scan and the attach's last change.
      if (hold) {
        await lockNamespace(namespace.fd, namespacePath, hold.lockTimeoutMs, {
          ...(hold.howToWaitLonger !== undefined ? { howToWaitLonger: hold.howToWaitLonger } : {}),
          signal: hold.signal,
        });
      }
      // The attach's one scan (for the host's namespace too, shared and unlocked).
      const snapshot = await network.scan();
      if (hold) {
        refuseHeldNamespace(snapshot.links, namespace.identity, namespacePath, hold.stateDirectories, {
          ...(hold.ownRecords ? { ownRecords: hold.ownRecords() } : {}),
        });
      }
      const options = { ...steps.attachOptions(snapshot), snapshot };
      const keeper = steps.keeper(network, namespace);
      await steps.store.prepareToRecord();
      const attached = await attachRecorded(network, options, keeper).catch((error: unknown) => {
        throw steps.attachFailure(error, namespace);
      });
      return await steps.finish(attached, network, keeper);
    } finally {
      // Settled only once the socket's fds are closed too: nothing of the pod namespace stays open.
      const closing = network.close();
      namespace.close();
      await closing;
    }
  });
}
