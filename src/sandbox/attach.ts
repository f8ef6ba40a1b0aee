/**
 * attachSandbox: attaches every interface of a pod namespace for a VM and records the sandbox, under
 * the sandbox's lock and the namespace's, through the attach sequence vcnet-cni ADD shares
 * (attach-under-locks.ts); nothing is left if it fails. Also the checks and error naming the dry run
 * (plan.ts) shares with it.
 */
import { parseAgentAddress } from '../agent/hybrid-vsock.js';
import { functionOption, lockTimeoutOption, optionsArgument, signalOption, stringOption } from '../arguments.js';
import { reportNotice } from '../diagnostics.js';
import { InvalidInputError, VcnetError } from '../errors.js';
import { openNamespaceForRecord } from '../netns/namespace-identity.js';
import { type NetworkConfig, validateNetworkConfig } from '../network/config.js';
import type { Endpoint } from '../network/endpoint/endpoint.js';
import { tieToRecord } from '../network/endpoint/held-queue-fds.js';
import { type GuestNetwork, generateGuestNetwork, noticeDroppedGuestRoutes } from '../network/guest.js';
import type { SkippedNotice } from '../network/network.js';
import { VCNET_LINK_GROUP } from '../network/plan/plan-attach.js';
import { bootIdField, earlierBootOf, earlierBootReason } from '../network/state/boot-id.js';
import { DEFAULT_STATE_DIRECTORY, stateDirectoryFlag } from '../network/state/default-directories.js';
import { recordsHoldingLink } from '../network/state/owners.js';
import { type HypervisorRecord, SANDBOX_STATE_VERSION, type SandboxState } from '../network/state/records.js';
import { defaultLockTimeoutMs, refuseUnusableRecordEnvironment, SandboxStore } from '../network/state/store.js';
import { refuseMacvtapInUserNamespace } from '../network/user-namespace.js';
import { attachUnderLocks } from './attach-under-locks.js';
import { ATTACH_NO_NETWORK_ADVICE, noticeNoNetwork } from './no-network.js';
import { replacingTakenName, undoAfterFailure } from './recorded.js';

/** What attachSandbox made: the sandbox's endpoints, what the guest is told, and the record's path. */
export interface AttachResult {
  id: string;
  endpoints: Endpoint[];
  guest: GuestNetwork;
  statePath: string;
  /** One notice per pod link the scan skipped (no address, not named), for the caller to print. */
  skipped: SkippedNotice[];
}

/**
 * The sandbox is attached already (`VCNET_SANDBOX_EXISTS`): its record exists. Detach it first, or use
 * another id.
 */
export class SandboxExistsError extends VcnetError {
  static override readonly errorName: string = 'SandboxExistsError';
  constructor(id: string, path: string, stateDirectory = DEFAULT_STATE_DIRECTORY) {
    super('VCNET_SANDBOX_EXISTS', `sandbox ${id} is already attached (state in ${path})`, {
      value: id,
      hint:
        `detach it first: vcnet detach --sandbox ${id}${stateDirectoryFlag(stateDirectory)} ` +
        '(from the library: detachSandbox with the same stateDirectory), or use another id',
    });
  }
}

const HYPERVISOR_KINDS: readonly HypervisorRecord['kind'][] = ['qemu', 'clh', 'firecracker'];

export function checkHypervisorKind(kind: unknown, field: string): void {
  if (!(HYPERVISOR_KINDS as readonly unknown[]).includes(kind)) {
    throw new InvalidInputError(field, kind, HYPERVISOR_KINDS.join(', '));
  }
}

/** The hypervisor a library caller records with the sandbox: checked before the record is written. */
function checkHypervisorRecord(given: HypervisorRecord): void {
  const record = optionsArgument(given, 'hypervisor', ['kind', 'controlSocket']);
  checkHypervisorKind(record.kind, 'hypervisor.kind');
  stringOption(record.controlSocket, 'hypervisor.controlSocket', "the path of the VMM's control socket");
}

/** How the checks of what a sandbox's VM is given name their inputs: the library's fields, or the CLI's flags. */
export interface VmInputNames {
  kind: string;
  controlSocket: string;
  agentSocket: string;
  queues: string;
  /** The calls (commands) that reach the running VM through both sockets. */
  vmChanges: string;
}

const LIBRARY_VM_INPUT_NAMES: VmInputNames = {
  kind: 'hypervisor.kind',
  controlSocket: 'hypervisor.controlSocket',
  agentSocket: 'agentSocket',
  queues: 'queues',
  vmChanges: 'addInterface, removeInterface and watchSandbox',
};

/** Firecracker has no multi-queue NICs: refused before anything is made (attach, and its dry run). */
export function refuseMultiQueueFirecracker(
  kind: HypervisorRecord['kind'] | undefined,
  queues: number,
  names: VmInputNames = LIBRARY_VM_INPUT_NAMES,
): void {
  if (kind === 'firecracker' && queues > 1)
    throw new InvalidInputError(names.queues, queues, `1 with ${names.kind} firecracker (it has no multi-queue NICs)`);
}

/**
 * A running VM is reached through both its control socket (the NIC's hot-plug) and its agent (the
 * guest's addresses and routes): with one alone, add-iface, del-iface and watch would change the host
 * and the record but not the VM, and say nothing. Both or neither (no VM runs yet); Firecracker, which
 * has no hot-plug, takes either alone.
 */
export function refuseHalfReachableVm(
  kind: HypervisorRecord['kind'] | undefined,
  controlSocket: string | undefined,
  agentSocket: string | undefined,
  names: VmInputNames = LIBRARY_VM_INPUT_NAMES,
): void {
  if (kind === 'firecracker' || (controlSocket === undefined) === (agentSocket === undefined)) return;
  const [given, missing] =
    controlSocket === undefined ? [names.agentSocket, names.controlSocket] : [names.controlSocket, names.agentSocket];
  throw new InvalidInputError(
    missing,
    undefined,
    `the running VM's ${missing === names.agentSocket ? 'agent socket' : 'control socket'} too: ${given} alone would let ${names.vmChanges} change the host but not the VM`,
    `give both ${names.controlSocket} and ${names.agentSocket}, or neither when no VM runs yet`,
  );
}

/** attachSandbox's options. */
export interface AttachSandboxOptions {
  stateDirectory?: string;
  hypervisor?: HypervisorRecord;
  agentSocket?: string;
  lockTimeoutMs?: number;
  /**
   * Runs on the attached endpoints before the attach counts as done (the CLI derives the VMM's
   * device configuration here): when it throws, the attach is undone whole and its error thrown.
   */
  checkEndpoints?: (endpoints: readonly Endpoint[]) => void;
  /**
   * Aborting rejects with the signal's reason while the call waits for the sandbox lock, or
   * before it changes anything; once changes have begun the attach runs to its end.
   */
  signal?: AbortSignal;
}

/**
 * Attaches every interface of the namespace and records the sandbox; nothing is left if it fails.
 * Resolves with the endpoints (each `networkDevice()` is a NIC to hand the VMM) and what to tell the
 * guest. Throws `SandboxExistsError` when the sandbox is recorded already, `AttachError` (the deciding
 * error as its `cause`) when a step fails, `SandboxLockedError` or `NamespaceBusyError` when another
 * call holds the sandbox or namespace longer than `lockTimeoutMs`, and `InvalidInputError` for a bad
 * argument, before anything is changed.
 *
 * @example
 * ```ts
 * import { attachSandbox, defineNetworkConfig } from 'vcnet';
 *
 * const config = defineNetworkConfig({ namespacePath: '/var/run/netns/pod' });
 * const { endpoints, guest } = await attachSandbox('sb1', config, { stateDirectory: '/run/vcnet/sandboxes' });
 * for (const endpoint of endpoints) console.log(endpoint.name, endpoint.networkDevice().tapName);
 * console.log(guest.routes.length, 'routes for the guest');
 * ```
 */
export async function attachSandbox(
  id: string,
  config: NetworkConfig,
  options: AttachSandboxOptions = {},
): Promise<AttachResult> {
  options = optionsArgument(options, 'options', [
    'stateDirectory',
    'hypervisor',
    'agentSocket',
    'lockTimeoutMs',
    'checkEndpoints',
    'signal',
  ]);
  lockTimeoutOption(options.lockTimeoutMs);
  signalOption(options.signal);
  functionOption(options.checkEndpoints, 'checkEndpoints');
  if (options.hypervisor !== undefined) checkHypervisorRecord(options.hypervisor);
  stringOption(options.agentSocket, 'agentSocket', 'a socket path or hvsock://PATH:PORT');
  config = validateNetworkConfig(config);
  refuseMultiQueueFirecracker(options.hypervisor?.kind, config.queues);
  refuseHalfReachableVm(options.hypervisor?.kind, options.hypervisor?.controlSocket, options.agentSocket);
  // A /dev/tapN nobody in this user namespace may open: refused before anything is made.
  refuseMacvtapInUserNamespace(config.model, 'model');
  // A malformed hvsock:// address would only show at the first add-iface: refuse it before anything is made.
  if (options.agentSocket !== undefined) parseAgentAddress(options.agentSocket, 'agentSocket');
  // VCNET_STATE_REGISTRY and VCNET_STATE_DIR, before withLock makes the state directory and its lock.
  refuseUnusableRecordEnvironment();
  const store = new SandboxStore(id, options.stateDirectory);
  return attachUnderLocks({
    store: {
      withLock: (work) =>
        store.withLock(work, options.lockTimeoutMs, { operation: 'attachSandbox', signal: options.signal }),
      prepareToRecord: () => store.prepareToRecord(),
    },
    refuseExisting: () => {
      const existing = store.read<SandboxState>();
      if (!existing) return;
      const earlier = earlierBootOf(existing);
      if (!earlier) throw new SandboxExistsError(id, store.statePath, store.root);
      // Written before a reboot (a state directory kept on disk): what it made went with that boot
      // and what it names may be new, unrelated objects, so it is dropped unread, as vcnet-cni ADD
      // drops one, and this attach goes on.
      store.remove();
      reportNotice(
        () => ({
          operation: 'attach',
          endpoint: '',
          message: `sandbox ${id}: removed the stale record ${store.statePath}, touching nothing it names: ${earlierBootReason(earlier)}`,
          details: { sandbox: id, fromEarlierBoot: earlier },
        }),
        undefined,
      );
    },
    openNamespace: () => openNamespaceForRecord(config.namespacePath, 'namespacePath'),
    networkConfig: config,
    networkKey: id,
    // The host's namespace (disable_new_netns) is shared by every such sandbox: not locked.
    ...(config.disableNewNetns
      ? {}
      : {
          podNamespace: {
            lockTimeoutMs: options.lockTimeoutMs ?? defaultLockTimeoutMs(),
            signal: options.signal,
            stateDirectories: stateDirectories(options),
          },
        }),
    attachOptions: () => (options.hypervisor ? { hypervisor: options.hypervisor.kind } : {}),
    keeper: (network, namespace) => {
      const createdAt = new Date().toISOString();
      const bootId = bootIdField();
      // Until the attach's last write: a record left with it was left by a killed attach (gc undoes it).
      let attaching = true;
      const record = (): SandboxState => ({
        version: SANDBOX_STATE_VERSION,
        id,
        namespace: namespace.identity,
        createdAt,
        ...bootId,
        network: network.save(),
        ...(options.hypervisor ? { hypervisor: options.hypervisor } : {}),
        ...(options.agentSocket ? { agentSocket: options.agentSocket } : {}),
        ...(attaching ? { attaching: true as const } : {}),
      });
      return {
        persist: () => store.write(record()),
        finishing: (finished) => {
          attaching = !finished;
        },
        discard: () => store.remove(),
        path: store.statePath,
      };
    },
    attachFailure: (error, namespace) =>
      namingTheOwner(error, namespace.identity, namespace.identity.path, options.stateDirectory),
    finish: async (_attached, network, keeper) => {
      try {
        options.checkEndpoints?.(network.endpoints());
      } catch (error) {
        // Nothing half-built: a refused device configuration undoes the plumbing and the record.
        await undoAfterFailure(error, network, `attach of ${id}`, keeper);
      }
      // As Kata ("no network interfaces found"): not an error (the runtime may configure the pod
      // later, and add-iface adds NICs), but never silent. The host's namespace is not a pod's.
      if (!config.disableNewNetns)
        noticeNoNetwork('attach', network.endpoints(), config.namespacePath, ATTACH_NO_NETWORK_ADVICE);
      noticeDroppedGuestRoutes(network.endpoints(), () => ({ operation: 'attach', endpoint: '' }));
      // The queue fds the caller opens on them are closed by the sandbox's detach too (docs/library.md).
      tieToRecord(network.endpoints(), store.statePath);
      return {
        id,
        endpoints: [...network.endpoints()],
        guest: generateGuestNetwork(network.endpoints()),
        statePath: store.statePath,
        skipped: network.skippedNotices(),
      };
    },
  });
}

/** The state directory a command names, besides every one gc knows. */
export function stateDirectories(options: { stateDirectory?: string }): string[] {
  return options.stateDirectory ? [options.stateDirectory] : [];
}

/**
 * A link vcnet needs, made by another sandbox in the same namespace (an attach retried under a new
 * sandbox id, say): the error names that sandbox and its record, found only on this failure path.
 */
export function namingTheOwner(
  error: unknown,
  identity: { dev: number; ino: number; cookie?: string },
  namespacePath: string,
  stateDirectory?: string,
): unknown {
  return replacingTakenName(error, (taken) => {
    if (taken.holder?.group !== VCNET_LINK_GROUP) return taken.placed(namespacePath);
    const [owner] = recordsHoldingLink(
      identity,
      { name: String(taken.value), index: taken.holder.index },
      stateDirectory ? [stateDirectory] : [],
    );
    return taken.placed(namespacePath, owner ?? taken.owner);
  });
}
