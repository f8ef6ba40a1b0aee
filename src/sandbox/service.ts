/**
 * The sandbox service: every operation that changes a pod namespace for a VM goes through here, for
 * the CLI, the CNI plugin (one record per container interface), the kata-network commands and
 * `vcnet watch` alike. Each operation opens one netlink socket and scans the namespace once; the
 * network layer plans and applies (network/plan/), and this layer keeps the record in step:
 *
 *   the intent is written before the first change and every step before it is sent (the journal);
 *   a failed attach whose undo was complete leaves no record (or the record as it was);
 *   a failed attach or detach whose undo was refused keeps a record of exactly what is left, which
 *   `vcnet detach` (again) or `vcnet gc` finish.
 */
import { parseAgentAddress } from '../agent/hybrid-vsock.js';
import { functionOption, lockTimeoutOption, optionsArgument, signalOption, stringOption } from '../arguments.js';
import { channels, publish } from '../diagnostics.js';
import {
  causeChain,
  type DetachFinishedBy,
  DetachIncompleteError,
  InvalidInputError,
  RollbackIncompleteError,
  VcnetError,
} from '../errors.js';
import { CloudHypervisorConnectionError } from '../hypervisor/cloud-hypervisor-client.js';
import { DeviceNotHotpluggableError, QmpConnectionError } from '../hypervisor/errors.js';
import type { Link } from '../netlink/codec/link.js';
import { NetlinkHandle } from '../netlink/handle.js';
import {
  identityOfNamespaceAt,
  NamespaceChangedError,
  NamespaceGoneError,
  type NamespaceIdentity,
  type OpenedNamespace,
  openNamespaceForRecord,
  openNamespaceHeldElsewhere,
  openRecordedNamespace,
} from '../netns/namespace-identity.js';
import { whereNamespaceLives } from '../netns/namespace-liveness.js';
import { type NetworkConfig, validateNetworkConfig } from '../network/config.js';
import type { Endpoint, HotplugTarget } from '../network/endpoint/endpoint.js';
import { chooseGuestRoutes, droppedRoutesNotice, type GuestNetwork, generateGuestNetwork } from '../network/guest.js';
import { randomMacvtapIndex } from '../network/model/macvtap-index.js';
import { AttachError } from '../network/model/plumbing-context.js';
import { type AddEndpointsOptions, Network, type NetworkState, type SkippedNotice } from '../network/network.js';
import { describeKept, describeRecords, type UndoReport } from '../network/plan/apply.js';
import { commandOf, commandsOf } from '../network/plan/commands.js';
import { LinkNameTakenError, VCNET_LINK_GROUP } from '../network/plan/plan-attach.js';
import type { Change, Plan } from '../network/plan/types.js';
import { recordsHoldingLink, recordsOfNamespace } from '../network/state/owners.js';
import { StateInvalidError } from '../network/state/record-envelope.js';
import { type HypervisorRecord, SANDBOX_STATE_VERSION, type SandboxState } from '../network/state/records.js';
import {
  DEFAULT_STATE_DIRECTORY,
  defaultLockTimeoutMs,
  refuseUnusableRecordEnvironment,
  SandboxStore,
  stateDirectoryFlag,
  validateSandboxId,
} from '../network/state/store.js';
import { refuseMacvtapInUserNamespace } from '../network/user-namespace.js';
import { shellWord } from '../shell-word.js';
import { heldDevices } from './held-devices.js';
import { lockNamespace, refuseHeldNamespace } from './namespace-hold.js';

export type { HypervisorRecord, SandboxState } from '../network/state/records.js';
export { SANDBOX_STATE_VERSION };

export interface AttachResult {
  id: string;
  endpoints: Endpoint[];
  guest: GuestNetwork;
  statePath: string;
  /** One notice per pod link the scan skipped (no address, not named), for the caller to print. */
  skipped: SkippedNotice[];
}

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

/** How an operation keeps its record: `persist` writes what the network holds now, `discard` what it means to have none. */
export interface RecordKeeper {
  persist(): void;
  /** Called just before the write that records a finished attach (attachSandbox clears `attaching`). */
  finishing?(): void;
  discard(): void;
  path: string;
}

/**
 * Attaches endpoints and keeps the record in step: the intent before the first change, every step
 * before it is sent, and after a failure either the record of what is left or `discard()`.
 */
export async function attachRecorded(
  network: Network,
  options: Omit<AddEndpointsOptions, 'journal'>,
  record: RecordKeeper,
): Promise<Endpoint[]> {
  const before = new Set(network.endpoints());
  try {
    record.persist();
  } catch (error) {
    // Nothing is changed yet. A write that failed after its rename (the directory's fsync) left the
    // record in place all the same: discarded, so a retry does not find a sandbox that is not there.
    discardIfPossible(record);
    throw error;
  }
  let added: Endpoint[];
  try {
    added = await network.addEndpoints({ ...options, journal: () => record.persist() });
  } catch (error) {
    // A refused undo leaves endpoints holding what is left: their record stays for detach and gc.
    // Written when it can be: the last record written already lists every step that was sent.
    if (network.endpoints().some((endpoint) => !before.has(endpoint))) persistIfPossible(record);
    else record.discard();
    // A taken name's hint gives `ip` commands: they act in this namespace, not the host's.
    throw replacingTakenName(error, (taken) => taken.placed(network.config.namespacePath));
  }
  try {
    record.finishing?.();
    record.persist();
  } catch (error) {
    // The attach is done but its final record could not be written (disk full, I/O error): an
    // attach nobody can see is undone, as any other failed one.
    const { failures, left } = await network.undoAttached(added, options.hotplug);
    if (left.length > 0) {
      throw new RollbackIncompleteError('attach', error as Error, failures, describeRecords(left), left);
    }
    if (network.endpoints().length === 0) record.discard();
    else persistIfPossible(record);
    throw error;
  }
  return added;
}

/** What it means to have no record, if the state directory allows it; the caller's error is the one to report. */
function discardIfPossible(record: RecordKeeper): void {
  try {
    record.discard();
  } catch {
    // the state directory refuses this too: what the first error says
  }
}

/** The record written if the state directory takes it; a write that fails leaves the last one. */
function persistIfPossible(record: RecordKeeper): void {
  try {
    record.persist();
  } catch {
    // The previous record (journaled before each step was sent) stays, and names everything sent.
  }
}

/**
 * Whether an unplug failed because the VM did not answer at all (QMP or the API socket refused, or
 * closed mid-command): then nobody knows whether the VM still holds the NIC, and it may be gone.
 */
function vmDidNotAnswer(error: Error): boolean {
  return causeChain(error).some(
    (link) =>
      link instanceof QmpConnectionError ||
      (link instanceof CloudHypervisorConnectionError && link.failure !== 'answered'),
  );
}

/**
 * What works when a NIC is left in the running VM (the default hint, "run the command again, or gc",
 * fits host objects only: gc leaves a live sandbox alone, and an add-iface again finds the name taken).
 */
function stillPluggedHint(
  recordPath: string,
  stillPlugged: NonNullable<UndoReport['stillPlugged']>,
  unreachable: boolean,
  sandbox: { id: string; stateDirectory: string } | undefined,
): string {
  const id = sandbox?.id ?? 'ID';
  const flag = sandbox ? stateDirectoryFlag(sandbox.stateDirectory) : '';
  const detach = `\`vcnet detach --sandbox ${id}${flag}\``;
  if (unreachable) {
    return `${recordPath} keeps them. If the VM has stopped, ${detach} removes what the sandbox has left; if it runs, \`vcnet del-iface\` removes the interface once its control socket answers`;
  }
  const fixed = stillPlugged.filter((entry) =>
    causeChain(entry.error).some((link) => link instanceof DeviceNotHotpluggableError),
  );
  const pending = stillPlugged.filter((entry) => !fixed.includes(entry));
  const parts = [`${recordPath} keeps them (the tap stays: the VM still uses it)`];
  if (fixed.length > 0) {
    parts.push(
      `${fixed.map((entry) => entry.deviceId).join(', ')} was given at boot on q35's pcie.0, which takes no unplug: it leaves only with the VM, and ${detach} then removes the rest (a boot NIC behind a root port of its own can be removed: see "QEMU q35" in docs/compatibility.md)`,
    );
  }
  if (pending.length > 0) {
    const names = pending.map((entry) => JSON.stringify({ name: entry.endpoint })).join(', ');
    parts.push(
      `Once the guest runs and releases ${pending.map((entry) => entry.deviceId).join(', ')} (QEMU keeps the unplug request; the guest OS must support PCI hot-plug), \`vcnet del-iface ${id} FILE${flag}\` with ${names} finishes; if the VM has stopped, ${detach} does. Until then the name stays taken and \`vcnet gc\` leaves the live sandbox alone`,
    );
  }
  return `${parts.join('. ')}.`;
}

/** Detaches endpoints (all by default); a refusal keeps exactly what is left recorded and throws. */
export async function detachRecorded(
  network: Network,
  what: string,
  record: RecordKeeper,
  options: {
    endpoints?: readonly Endpoint[];
    hotplug?: HotplugTarget;
    requireUnplug?: boolean;
    /** The sandbox, for the hint when its VM does not answer. */
    sandbox?: { id: string; stateDirectory: string };
    /** What finishes a refused undo once its cause is fixed (default: running the command again). */
    finishedBy?: DetachFinishedBy;
  } = {},
): Promise<UndoReport> {
  const endpoints = options.endpoints ?? [...network.endpoints()];
  const report = await network.removeEndpoints(endpoints, options.hotplug, {
    ...(options.requireUnplug ? { requireUnplug: true } : {}),
  });
  const stillPlugged = report.stillPlugged ?? [];
  if (report.failures.length > 0 || stillPlugged.length > 0) {
    record.persist();
    const plugged = new Set(stillPlugged.map((entry) => entry.endpoint));
    const unreachable = stillPlugged.some((entry) => vmDidNotAnswer(entry.error));
    throw new DetachIncompleteError(
      what,
      [
        ...stillPlugged.map((entry) =>
          vmDidNotAnswer(entry.error)
            ? `the VM did not answer, so ${entry.deviceId} could not be unplugged: ${entry.error.message}`
            : `${entry.deviceId} is still in the VM: ${entry.error.message}`,
        ),
        ...report.failures.map((failure) => failure.message),
      ],
      [
        ...stillPlugged.map((entry) => `the VM's NIC ${entry.deviceId} (${entry.endpoint})`),
        ...describeRecords([
          ...endpoints.filter((endpoint) => plugged.has(endpoint.name)).flatMap((endpoint) => endpoint.records),
          ...report.left,
        ]),
      ],
      record.path,
      stillPlugged.length > 0 ? stillPluggedHint(record.path, stillPlugged, unreachable, options.sandbox) : undefined,
      [...report.failures, ...stillPlugged.map((entry) => entry.error)],
      options.finishedBy,
    );
  }
  if (network.endpoints().length === 0) record.discard();
  else record.persist();
  return report;
}

/**
 * Undoes `endpoints` after `failure` (a guest push that failed, a device configuration refused) and
 * throws `failure`. When the undo is refused too, the error names both: `failure` is why the
 * operation failed (the cause to fix), the refusal says what is left and what removes it.
 */
export async function undoAfterFailure(
  failure: unknown,
  network: Network,
  what: string,
  record: RecordKeeper,
  options: Parameters<typeof detachRecorded>[3] = {},
): Promise<never> {
  try {
    await detachRecorded(network, `${what} (undoing it)`, record, options);
  } catch (refused) {
    if (!(refused instanceof DetachIncompleteError)) throw refused;
    const cause = failure instanceof Error ? failure : new Error(String(failure));
    throw new RollbackIncompleteError(
      what,
      cause,
      refused.failures,
      refused.leftObjects,
      [...refused.leftObjects],
      refused.hint,
    );
  }
  throw failure;
}

const HYPERVISOR_KINDS: readonly HypervisorRecord['kind'][] = ['qemu', 'clh', 'firecracker'];

function checkHypervisorKind(kind: unknown, field: string): void {
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

/** Attaches every interface of the namespace and records the sandbox; nothing is left if it fails. */
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
  // A /dev/tapN nobody in this user namespace may open: refused before anything is made.
  refuseMacvtapInUserNamespace(config.model, 'model');
  // A malformed hvsock:// address would only show at the first add-iface: refuse it before anything is made.
  if (options.agentSocket !== undefined) parseAgentAddress(options.agentSocket, 'agentSocket');
  // VCNET_STATE_REGISTRY and VCNET_STATE_DIR, before withLock makes the state directory and its lock.
  refuseUnusableRecordEnvironment();
  const store = new SandboxStore(id, options.stateDirectory);
  return store.withLock(
    async () => {
      // A damaged record is refused here too (StateInvalidError), never overwritten.
      if (store.read()) throw new SandboxExistsError(id, store.statePath, store.root);
      // Opened once and used through its fd; the pinned path is the one recorded when there is one.
      const namespace = openNamespaceForRecord(config.namespacePath, 'namespacePath');
      let network: Network;
      try {
        network = Network.open({ ...config, namespacePath: namespace.identity.path }, id, namespace.entryPath);
      } catch (error) {
        namespace.close();
        throw error;
      }
      try {
        const createdAt = new Date().toISOString();
        // Until the attach's last write: a record left with it was left by a killed attach (gc undoes it).
        let attaching = true;
        const record = (): SandboxState => ({
          version: SANDBOX_STATE_VERSION,
          id,
          namespace: namespace.identity,
          createdAt,
          network: network.save(),
          ...(options.hypervisor ? { hypervisor: options.hypervisor } : {}),
          ...(options.agentSocket ? { agentSocket: options.agentSocket } : {}),
          ...(attaching ? { attaching: true as const } : {}),
        });
        const keeper: RecordKeeper = {
          persist: () => store.write(record()),
          finishing: () => {
            attaching = false;
          },
          discard: () => store.remove(),
          path: store.statePath,
        };
        // The attach's one scan, taken under the namespace's lock (with disable_new_netns the namespace
        // is the host's, which every such sandbox shares: no lock, and the attach scans).
        let snapshot: AddEndpointsOptions['snapshot'];
        if (!config.disableNewNetns) {
          await lockNamespace(namespace.fd, namespace.identity.path, options.lockTimeoutMs ?? defaultLockTimeoutMs(), {
            signal: options.signal,
          });
          snapshot = await network.scan();
          refuseHeldNamespace(snapshot.links, namespace.identity, namespace.identity.path, stateDirectories(options));
        }
        await store.prepareToRecord();
        const attachOptions = {
          ...(options.hypervisor ? { hypervisor: options.hypervisor.kind } : {}),
          ...(snapshot ? { snapshot } : {}),
        };
        await attachRecorded(network, attachOptions, keeper).catch((error: unknown) => {
          throw namingTheOwner(error, namespace.identity, namespace.identity.path, options.stateDirectory);
        });
        try {
          options.checkEndpoints?.(network.endpoints());
        } catch (error) {
          // Nothing half-built: a refused device configuration undoes the plumbing and the record.
          await undoAfterFailure(error, network, `attach of ${id}`, keeper);
        }
        if (network.endpoints().length === 0 && !config.disableNewNetns) {
          // As Kata ("no network interfaces found"): not an error (the runtime may configure the pod
          // later, and add-iface adds NICs), but never silent.
          publish(channels.notice, () => ({
            operation: 'attach',
            endpoint: '',
            message: `the VM gets no network: no link of ${config.namespacePath} was attached (none has an address or was named with --interface); add-iface or attach --interface adds one`,
          }));
        }
        const dropped = droppedRoutesNotice(chooseGuestRoutes(network.endpoints()).dropped);
        if (dropped) publish(channels.notice, () => ({ operation: 'attach', endpoint: '', message: dropped }));
        return {
          id,
          endpoints: [...network.endpoints()],
          guest: generateGuestNetwork(network.endpoints()),
          statePath: store.statePath,
          skipped: network.skippedNotices(),
        };
      } finally {
        network.close();
        namespace.close();
      }
    },
    options.lockTimeoutMs,
    { operation: 'attachSandbox', signal: options.signal },
  );
}

/** The state directory a command names, besides every one gc knows. */
function stateDirectories(options: { stateDirectory?: string }): string[] {
  return options.stateDirectory ? [options.stateDirectory] : [];
}

/**
 * A link vcnet needs, made by another sandbox in the same namespace (an attach retried under a new
 * sandbox id, say): the error names that sandbox and its record, found only on this failure path.
 */
function namingTheOwner(
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

/**
 * `error` with the LinkNameTakenError it is (or an AttachError's cause) replaced by `replace`'s,
 * its cause carried over, so the cause chain lists it once; any other error as it is.
 */
function replacingTakenName(error: unknown, replace: (taken: LinkNameTakenError) => LinkNameTakenError): unknown {
  if (error instanceof LinkNameTakenError) return replace(error);
  if (error instanceof AttachError && error.cause instanceof LinkNameTakenError)
    return new AttachError(String(error.value), replace(error.cause), error.rolledBack);
  return error;
}

export interface PlannedEndpoint {
  /** The pod link. */
  source: string;
  type: string;
  /** Undefined when the VM uses the device as it is (nothing to change). */
  plan?: Plan;
  /** The plan as `ip`/`tc` commands to run inside the namespace. */
  commands: string[];
}

/** planSandboxAttach's options. */
export interface PlanSandboxAttachOptions {
  stateDirectory?: string;
  agentSocket?: string;
}

/**
 * What attach would do, endpoint by endpoint, without changing anything (`vcnet attach --dry-run`).
 * The input is checked as attachSandbox checks it: a plan is never printed for an attach that would be refused.
 */
export async function planSandboxAttach(
  config: NetworkConfig,
  id = 'sandbox',
  hypervisor?: HypervisorRecord['kind'],
  options: PlanSandboxAttachOptions = {},
): Promise<PlannedEndpoint[]> {
  options = optionsArgument(options, 'options', ['stateDirectory', 'agentSocket']);
  stringOption(options.agentSocket, 'agentSocket', 'a socket path or hvsock://PATH:PORT');
  if (hypervisor !== undefined) checkHypervisorKind(hypervisor, 'hypervisor');
  config = validateNetworkConfig(config);
  validateSandboxId(id);
  refuseMacvtapInUserNamespace(config.model, 'model');
  if (options.agentSocket !== undefined) parseAgentAddress(options.agentSocket, 'agentSocket');
  // As attach refuses it, first: a dry run for a taken id would print a plan attach never runs.
  const store = new SandboxStore(id, options.stateDirectory);
  if (store.read()) throw new SandboxExistsError(id, store.statePath, store.root);
  const network = Network.open(config, id);
  try {
    // As attach refuses a held namespace (without its lock: a dry run changes nothing).
    const snapshot = config.disableNewNetns ? undefined : await network.scan();
    if (snapshot)
      refuseHeldNamespace(
        snapshot.links,
        identityOfNamespaceAt(config.namespacePath),
        config.namespacePath,
        stateDirectories(options),
      );
    const planOptions = { ...(hypervisor ? { hypervisor } : {}), ...(snapshot ? { snapshot } : {}) };
    const planned = await network.planEndpoints(planOptions).catch((error: unknown) => {
      // As attach says it: a taken name made by another sandbox names that sandbox and its record.
      let identity: NamespaceIdentity | undefined;
      try {
        identity = identityOfNamespaceAt(config.namespacePath);
      } catch {
        throw error;
      }
      throw namingTheOwner(error, identity, config.namespacePath, options.stateDirectory);
    });
    return planned.map(({ endpoint, plan }) => ({
      source: endpoint.properties.link.name,
      type: endpoint.type,
      ...(plan ? { plan } : {}),
      // Chosen as attach chooses it (Kata's range): the printed index is a likely free one, not a reservation.
      commands: plan ? commandsOf(plan, { macvtapIndex: () => randomMacvtapIndex() }) : [],
    }));
  } finally {
    network.close();
  }
}

export interface DetachResult {
  id: string;
  found: boolean;
  report?: UndoReport;
  /** The recorded namespace no longer exists: the record was dropped, nothing else was done. */
  namespaceGone?: string;
  /**
   * The recorded path was gone but the namespace was not (a process still ran in it): detach worked
   * through this path instead (a /proc/PID/ns/net), and `heldBy` is that process.
   */
  namespaceHeldAt?: string;
  heldBy?: number;
  /** With namespaceHeldAt: the recorded path was not gone but names another namespace now (left untouched). */
  namespacePathReused?: boolean;
}

/** detachSandbox's options. */
export interface DetachSandboxOptions {
  stateDirectory?: string;
  connectHotplug?: (state: SandboxState) => Promise<HotplugTarget | undefined>;
  lockTimeoutMs?: number;
  /** As attachSandbox's: honoured while waiting for the lock and before anything is undone. */
  signal?: AbortSignal;
}

/**
 * Undoes what attach recorded, from the state file alone, in the namespace the record names (checked
 * by identity: a path that now names another namespace is refused). An unknown sandbox is not an
 * error; a record whose namespace is gone is dropped, and the result says so.
 */
export async function detachSandbox(id: string, options: DetachSandboxOptions = {}): Promise<DetachResult> {
  options = optionsArgument(options, 'options', ['stateDirectory', 'connectHotplug', 'lockTimeoutMs', 'signal']);
  lockTimeoutOption(options.lockTimeoutMs);
  signalOption(options.signal);
  functionOption(options.connectHotplug, 'connectHotplug');
  const store = new SandboxStore(id, options.stateDirectory);
  return store.withLockIfRecorded(
    async () => {
      const state = store.read<SandboxState>();
      if (!state) return { id, found: false };
      let recorded: RecordedNetwork;
      try {
        recorded = openRecordedNetwork(state, id, store.statePath);
      } catch (error) {
        if (!(error instanceof NamespaceGoneError)) throw error;
        // Everything attach made lived in that namespace and went with it.
        store.remove();
        return { id, found: true, namespaceGone: state.namespace.path };
      }
      const { network, heldElsewhere } = recorded;
      try {
        // From before its look at the namespace to its last change: no attach or vcnet-cni ADD adds a
        // link to vcnet's group in between, which the undo's one group delete would take along.
        await lockRecordedNamespace(recorded, state, options.lockTimeoutMs, { signal: options.signal });
        if (state.network.endpoints.length === 0) await refuseEmptyRecordBesideLinks(recorded, state, store);
        if (heldElsewhere)
          publish(channels.notice, () => heldElsewhereNotice('detach', id, state.namespace.path, heldElsewhere));
        // A running VM gives its NICs back first (best effort: a dead VM holds nothing).
        const hotplug = await options.connectHotplug?.(state).catch(() => undefined);
        // Not a refusal (a VM left running by a crashed runtime must still be cleaned up), but said.
        if (hotplug) {
          const socket = state.hypervisor?.controlSocket;
          publish(channels.notice, () => ({
            operation: 'detach',
            endpoint: '',
            message: `sandbox ${id}'s VM is still running (its control socket ${socket ?? ''} answers): its NICs are unplugged first, and their taps removed even if the VM does not let them go; stop the VM before detaching`,
            details: { sandbox: id, ...(socket ? { socket } : {}) },
          }));
        } else {
          // A VM vcnet has no socket of (a VMM launched with the fds or names attach printed).
          for (const held of await heldDevices(network, state.namespace.path)) {
            const by = held.pids.length > 0 ? ` by pid ${held.pids.join(', ')}` : '';
            publish(channels.notice, () => ({
              operation: 'detach',
              endpoint: held.device,
              message: `sandbox ${id}'s ${held.device} is still open${by}: the VM is still running; it is detached anyway and the VM loses that NIC. Stop the VM first`,
              details: { sandbox: id, device: held.device, ...(held.pids.length > 0 ? { pids: held.pids } : {}) },
            }));
          }
        }
        const report = await detachRecorded(
          network,
          `detach of ${id}`,
          {
            persist: () => store.write({ ...state, network: network.save() }),
            discard: () => store.remove(),
            path: store.statePath,
          },
          hotplug ? { hotplug } : {},
        );
        return {
          id,
          found: true,
          report,
          ...(heldElsewhere
            ? {
                namespaceHeldAt: heldElsewhere.path,
                ...(heldElsewhere.pid !== undefined ? { heldBy: heldElsewhere.pid } : {}),
                ...(heldElsewhere.pathReused ? { namespacePathReused: true } : {}),
              }
            : {}),
        };
      } finally {
        recorded.close();
      }
    },
    options.lockTimeoutMs,
    { operation: 'detachSandbox', signal: options.signal },
  );
}

/**
 * A record with no endpoint is legitimate (a pod with nothing to attach), but one beside links of
 * vcnet's group that no other record claims is likely a damaged one (`"endpoints": []`): detaching
 * it would drop the record and leave those links with nobody to remove them. Refused, nothing changed.
 */
async function refuseEmptyRecordBesideLinks(
  recorded: RecordedNetwork,
  state: SandboxState,
  store: SandboxStore,
): Promise<void> {
  if (state.network.config.disableNewNetns) return; // the host's namespace: other sandboxes' taps live there
  const handle = NetlinkHandle.open(recorded.namespace.entryPath);
  let links: Link[];
  try {
    links = await handle.links();
  } finally {
    handle.close();
  }
  const grouped = links.filter((link) => link.group === VCNET_LINK_GROUP);
  if (grouped.length === 0) return;
  const others = recordsOfNamespace(recorded.namespace.identity, [store.root]).filter(
    (other) => other.file !== store.statePath,
  );
  const unclaimed = grouped.filter((link) => !others.some((other) => other.holds(link)));
  if (unclaimed.length === 0) return;
  const names = unclaimed.map((link) => link.name).join(', ');
  throw new StateInvalidError(
    store.statePath,
    'network.endpoints',
    `is [] (no endpoint), but the namespace ${state.namespace.path} holds ${names} in vcnet's link group, which no other record claims: this record may have lost them`,
    [],
    `nothing was changed; restore the record, or remove it (${shellWord(`${store.root}/${state.id}`)}) and run \`vcnet gc --netns ${shellWord(state.namespace.path)}\` to remove ${names}`,
  );
}

/** Says that a record's namespace path is gone while a process keeps the namespace alive. */
function heldElsewhereNotice(
  operation: string,
  id: string,
  recordedPath: string,
  heldElsewhere: NonNullable<RecordedNetwork['heldElsewhere']>,
): { operation: string; endpoint: string; message: string; details: Record<string, unknown> } {
  const holder =
    heldElsewhere.pid === undefined
      ? `a mount still holds that namespace (${heldElsewhere.path})`
      : heldElsewhere.path.includes('/fd/')
        ? `process ${heldElsewhere.pid} still holds that namespace open (${heldElsewhere.path})`
        : `process ${heldElsewhere.pid} still runs in that namespace (${heldElsewhere.path})`;
  return {
    operation,
    endpoint: '',
    message: heldElsewhere.pathReused
      ? `sandbox ${id}: its namespace path ${recordedPath} now names another namespace (left untouched), but ${holder.replace('that namespace', 'the recorded one')}: what attach made is still there and is undone through it`
      : `sandbox ${id}: its namespace path ${recordedPath} is gone, but ${holder}: what attach made is still there and is undone through it`,
    details: {
      sandbox: id,
      namespace: recordedPath,
      heldAt: heldElsewhere.path,
      ...(heldElsewhere.pathReused ? { pathReused: true } : {}),
      ...(heldElsewhere.pid !== undefined ? { pid: heldElsewhere.pid } : {}),
    },
  };
}

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
  heldElsewhere?: { path: string; pid?: number; pathReused?: boolean };
  close(): void;
}

/**
 * Opens the namespace a record names, by identity (NamespaceGoneError when it no longer exists,
 * NamespaceChangedError when its path now names another while the recorded one lives elsewhere),
 * and loads the record's network in it.
 */
export function openRecordedNetwork(
  record: { namespace: NamespaceIdentity; network: NetworkState; createdAt?: string },
  sandboxId: string,
  statePath: string,
): RecordedNetwork {
  let namespace: OpenedNamespace;
  try {
    namespace = openRecordedNamespace(record.namespace, statePath, record.createdAt);
  } catch (error) {
    if (error instanceof NamespaceGoneError) {
      // Only the path is gone (`ip netns del` while a VMM or another process still runs in it): what
      // attach made lives on with the namespace, so it is undone through whatever holds it.
      const relocated = openNamespaceHeldElsewhere(record.namespace, statePath);
      if (!relocated) throw error;
      const { opened, heldAt, pid } = relocated;
      return loadRecordedNetwork(record, sandboxId, opened, { path: heldAt, ...(pid !== undefined ? { pid } : {}) });
    }
    if (!(error instanceof NamespaceChangedError)) throw error;
    // A reused path (a namespace re-created under the same name, a PID reused): the recorded
    // namespace, while something still holds it, is reached through that holder by identity
    // (device, inode and cookie), as when the path was deleted; the path, which now names another
    // namespace, is never touched. When nothing holds it, it is gone with everything attach made.
    const relocated = openNamespaceHeldElsewhere(record.namespace, statePath);
    if (relocated) {
      const { opened, heldAt, pid } = relocated;
      return loadRecordedNetwork(record, sandboxId, opened, {
        path: heldAt,
        ...(pid !== undefined ? { pid } : {}),
        pathReused: true,
      });
    }
    const livesAt = whereNamespaceLives(record.namespace);
    if (livesAt === undefined) throw new NamespaceGoneError(record.namespace, statePath);
    throw new NamespaceChangedError(record.namespace, error.found, statePath, livesAt);
  }
  return loadRecordedNetwork(record, sandboxId, namespace, undefined);
}

function loadRecordedNetwork(
  record: { network: NetworkState },
  sandboxId: string,
  namespace: OpenedNamespace,
  heldElsewhere: RecordedNetwork['heldElsewhere'],
): RecordedNetwork {
  let network: Network;
  try {
    network = Network.load(record.network, sandboxId, namespace.entryPath);
  } catch (error) {
    namespace.close();
    throw error;
  }
  return {
    network,
    namespace,
    ...(heldElsewhere ? { heldElsewhere } : {}),
    close: () => {
      network.close();
      namespace.close();
    },
  };
}

export interface PlannedDetach {
  id: string;
  found: boolean;
  /** The recorded namespace no longer exists: detach would only drop the record. */
  namespaceGone?: string;
  namespacePath?: string;
  /** The recorded path is gone but a process keeps the namespace: detach would work through this path. */
  namespaceHeldAt?: string;
  /** With namespaceHeldAt: the recorded path names another namespace now, which detach would not touch. */
  namespacePathReused?: boolean;
  /** The changes detach would send, in order, as data and as `ip`/`tc` commands. */
  steps: Array<{ change: Change; command: string }>;
  /** What detach would find already gone, and what it would leave as it is (and why). */
  alreadyGone: string[];
  /** What detach would leave because someone else uses it too, and why ("ingress qdisc on eth0: it holds …"). */
  kept: string[];
  /**
   * What an attach cut short recorded ahead and never made (a link it had chosen an index for, what
   * goes on it, the pod link steps after it): detach passes it over, neither undone nor counted.
   */
  neverMade: string[];
  notices: Array<{ link: string; message: string }>;
  /** The VM's control socket when one is recorded: detach would unplug its NICs first. */
  hotplugSocket?: string;
}

/** planSandboxDetach's options. */
export interface PlanSandboxDetachOptions {
  stateDirectory?: string;
}

/**
 * What `detachSandbox` would do, read from the record and the namespace as they are now; nothing is
 * changed and no lock is taken (records are replaced atomically, so a concurrent command is seen
 * before or after, never half-written). The namespace is opened by identity, as detach does.
 */
export async function planSandboxDetach(id: string, options: PlanSandboxDetachOptions = {}): Promise<PlannedDetach> {
  options = optionsArgument(options, 'options', ['stateDirectory']);
  const store = new SandboxStore(id, options.stateDirectory);
  const state = store.read<SandboxState>();
  const none = { steps: [], alreadyGone: [], kept: [], neverMade: [], notices: [] };
  if (!state) return { id, found: false, ...none };
  let recorded: RecordedNetwork;
  try {
    recorded = openRecordedNetwork(state, id, store.statePath);
  } catch (error) {
    if (!(error instanceof NamespaceGoneError)) throw error;
    return { id, found: true, namespaceGone: state.namespace.path, ...none };
  }
  try {
    const plan = await recorded.network.planRemoveEndpoints();
    const hotplugSocket = state.hypervisor?.controlSocket;
    return {
      id,
      found: true,
      namespacePath: state.namespace.path,
      ...(recorded.heldElsewhere ? { namespaceHeldAt: recorded.heldElsewhere.path } : {}),
      ...(recorded.heldElsewhere?.pathReused ? { namespacePathReused: true } : {}),
      steps: plan.steps.map((step) => ({ change: step.change, command: commandOf(step.change) })),
      alreadyGone: describeRecords(plan.alreadyGone),
      kept: plan.kept.map(describeKept),
      neverMade: describeRecords(plan.neverMade),
      notices: plan.notices,
      ...(hotplugSocket ? { hotplugSocket } : {}),
    };
  } finally {
    recorded.close();
  }
}

export function readSandbox(id: string, stateDirectory?: string): SandboxState | undefined {
  return new SandboxStore(id, stateDirectory).read<SandboxState>();
}
