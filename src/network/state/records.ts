/**
 * The versions and TypeScript shapes of the records vcnet persists. Their zod schemas are
 * record-envelope.ts (version, id, namespace identity) and network-content-schema.ts (the rest); the
 * store checks every record against both before anyone acts on it.
 */

import type { NamespaceIdentity } from '../../netns/namespace-identity.js';
import type { GuestRoute } from '../guest.js';
import type { NetworkState } from '../network.js';
import { RECORD_VERSION } from './record-envelope.js';

/** Sandbox and CNI records share the envelope's version (record-envelope.ts: version, id, namespace identity). */
export const SANDBOX_STATE_VERSION = RECORD_VERSION;

/** The VM a sandbox record names: the hypervisor and its control socket (QMP, Cloud Hypervisor's API). */
export interface HypervisorRecord {
  kind: 'qemu' | 'clh' | 'firecracker';
  controlSocket?: string;
}

/** The record of a sandbox attached by the CLI or the library. */
export interface SandboxState {
  version: typeof SANDBOX_STATE_VERSION;
  id: string;
  /** The pod namespace by path and identity: later commands act on it only if it is still that one. */
  namespace: NamespaceIdentity;
  createdAt: string;
  /** The boot it was written in (boot-id.ts); absent in records of older builds. */
  bootId?: string;
  network: NetworkState;
  hypervisor?: HypervisorRecord;
  /** The agent's address: a unix socket path (QEMU's virtio-serial), or hvsock://PATH:PORT (hybrid vsock). */
  agentSocket?: string;
  /**
   * Cloud Hypervisor sandboxes: the lowest index (NIC id net<index>, tap<index>_kata) a new endpoint
   * may take, above every endpoint the sandbox ever had. Cloud Hypervisor keeps a removed NIC's id
   * until the guest acks the eject, and refuses a new NIC with that id meanwhile.
   */
  nextDeviceIndex?: number;
  /** Routes given with update-routes, which replace the ones derived from the namespace. */
  guestRoutes?: GuestRoute[];
  /**
   * Set while `vcnet attach` runs, cleared by its last write. A record that still has it once its
   * lock is free was left by an attach that was killed: gc undoes all of it (an attach killed
   * between two endpoints otherwise looks like a finished attach of fewer endpoints).
   */
  attaching?: true;
  /**
   * Endpoints plugged and recorded by an add-iface that then gave the lock back while the guest
   * shows the NIC and its agent configures it (a slow guest takes seconds): that add-iface takes the
   * lock again to clear its entry, or to undo the endpoint when the guest failed. Pushes of the
   * whole set leave these out meanwhile. An entry whose process is gone was left by an add-iface
   * that was stopped: configure-guest finishes it, del-iface removes the endpoint.
   */
  guestPending?: GuestPending[];
  /**
   * Endpoints of a failed add-iface whose undo could not unplug the NIC (the VM did not release it: a
   * paused VM, a guest that ignores the eject; or its VMM did not answer the unplug): kept with their
   * plumbing for del-iface to finish. Pushes of the whole set leave them out (the agent refuses a set
   * naming a NIC it does not have), as Kata leaves a NIC whose hot-plug failed out of the guest's
   * interfaces. An entry goes with its endpoint.
   */
  unplugUnfinished?: UnplugUnfinished[];
}

/** One endpoint a failed add-iface could not unplug again (SandboxState.unplugUnfinished). */
export interface UnplugUnfinished {
  /** The endpoint's (guest NIC's) name and its pod link. */
  name: string;
  podLink: string;
  /** The VM's device id of its NIC (net<N>). */
  deviceId: string;
  since: string;
}

/** One endpoint add-iface waits for the guest to configure without the sandbox lock (SandboxState.guestPending). */
export interface GuestPending {
  /** The endpoint's (guest NIC's) name and its pod link. */
  name: string;
  podLink: string;
  /** Tells this add-iface's entry from one of a later add-iface of the same name. */
  token: string;
  /**
   * The add-iface process, and its start time (/proc/PID/stat, as the initial time namespace shows it:
   * a time namespace shifts what its processes see), to tell it from a later process of that pid.
   */
  pid: number;
  pidStart?: string;
  /**
   * The PID namespace `pid` is a pid of (the device and inode of the process's /proc/PID/ns/pid): a
   * reader in another one translates it, or when it cannot see that namespace, guesses. Absent in
   * records written before it was recorded (read as the reader's own).
   */
  pidNamespace?: PidNamespaceId;
  since: string;
  /**
   * The latest time its command keeps the entry (its push's agent calls, its own lock wait and the
   * route set sent again, from `since`): past it, a reader that cannot see the command's process
   * takes it as stopped. Absent in records written before it was recorded (read as 4 minutes past
   * `since`, the bound with the default lock wait).
   */
  waitsUntil?: string;
  /** The command that plugged it and waits: an add-iface, or a `vcnet watch` reacting to a new pod link. */
  by: GuestPendingCommand;
}

/** A PID namespace: the device and inode of a /proc/PID/ns/pid link to it. */
export interface PidNamespaceId {
  device: number;
  inode: number;
}

/** Which command waits for the guest to configure an endpoint it plugged. */
export type GuestPendingCommand = 'add-iface' | 'watch';
