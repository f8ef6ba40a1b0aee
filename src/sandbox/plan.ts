/**
 * The dry runs: what attachSandbox and detachSandbox would do (`vcnet attach --dry-run`, `vcnet
 * detach --dry-run`), checked as they check it and read from the namespace as it is now; nothing is
 * changed and no lock is taken.
 */
import { parseAgentAddress } from '../agent/hybrid-vsock.js';
import { functionOption, optionsArgument, stringOption } from '../arguments.js';
import { identityOfNamespaceAt, NamespaceGoneError, type NamespaceIdentity } from '../netns/namespace-identity.js';
import { type NetworkConfig, validateNetworkConfig } from '../network/config.js';
import type { Endpoint } from '../network/endpoint/endpoint.js';
import { noticeDroppedGuestRoutes } from '../network/guest.js';
import { Network, noticeRoutesNotForGuest, type SkippedNotice } from '../network/network.js';
import { commandOf, commandsOf } from '../network/plan/commands.js';
import { randomMacvtapIndex } from '../network/plan/macvtap-index.js';
import type { Change, Plan } from '../network/plan/types.js';
import { describeKept, describeRecords } from '../network/plan/undo.js';
import { openRecordedNetwork, type RecordedNetwork } from '../network/recorded-network.js';
import { type EarlierBoot, earlierBootOf, RecordFromEarlierBootError } from '../network/state/boot-id.js';
import type { HypervisorRecord, SandboxState } from '../network/state/records.js';
import { SandboxStore, validateSandboxId } from '../network/state/store.js';
import { refuseMacvtapInUserNamespace } from '../network/user-namespace.js';
import {
  checkHypervisorKind,
  namingTheOwner,
  refuseMultiQueueFirecracker,
  SandboxExistsError,
  stateDirectories,
} from './attach.js';
import { refuseHeldNamespace } from './namespace-hold.js';
import { ATTACH_NO_NETWORK_ADVICE, noticeNoNetwork } from './no-network.js';

/**
 * One pod link of `planSandboxAttach`'s answer: its endpoint type, its `Plan` (none when the VM uses the
 * device as it is) and the plan as `ip`/`tc` commands.
 */
export interface PlannedEndpoint {
  /** The pod link. */
  source: string;
  type: string;
  /** Undefined when the VM uses the device as it is (nothing to change). */
  plan?: Plan;
  /** The plan as `ip`/`tc` commands to run inside the namespace. */
  commands: string[];
}

/**
 * What `planSandboxAttach` answers: the plan of each pod link attach would take, and the links it would
 * leave out, as attachSandbox's `skipped` says them.
 */
export interface PlannedAttach {
  endpoints: PlannedEndpoint[];
  /** One notice per pod link attach would skip (no address and not named, a VM's device...). */
  skipped: SkippedNotice[];
}

/** planSandboxAttach's options. */
export interface PlanSandboxAttachOptions {
  stateDirectory?: string;
  agentSocket?: string;
  /**
   * attachSandbox's checkEndpoints for a plan: runs on the planned endpoints (not attached: no
   * plumbing) with their plans (the CLI checks the VMM's device configuration with
   * plannedDeviceConfig); when it throws, its error is the dry run's.
   */
  checkEndpoints?: (planned: ReadonlyArray<{ endpoint: Endpoint; plan: Plan | undefined }>) => void;
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
): Promise<PlannedAttach> {
  options = optionsArgument(options, 'options', ['stateDirectory', 'agentSocket', 'checkEndpoints']);
  functionOption(options.checkEndpoints, 'checkEndpoints');
  stringOption(options.agentSocket, 'agentSocket', 'a socket path or hvsock://PATH:PORT');
  if (hypervisor !== undefined) checkHypervisorKind(hypervisor, 'hypervisor');
  config = validateNetworkConfig(config);
  refuseMultiQueueFirecracker(hypervisor, config.queues);
  validateSandboxId(id);
  refuseMacvtapInUserNamespace(config.model, 'model');
  if (options.agentSocket !== undefined) parseAgentAddress(options.agentSocket, 'agentSocket');
  // As attach refuses it, first: a dry run for a taken id would print a plan attach never runs.
  const store = new SandboxStore(id, options.stateDirectory);
  // (A record from an earlier boot is not refused: attach drops it and goes on.)
  const existing = store.read<SandboxState>();
  if (existing && !earlierBootOf(existing)) throw new SandboxExistsError(id, store.statePath, store.root);
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
    options.checkEndpoints?.(planned);
    // As attach says it (the same notice, so the CLI prints it as attach's warning): a plan that
    // leaves the VM with no network, or none with an address, is no surprise once run.
    if (!config.disableNewNetns)
      noticeNoNetwork(
        'attach',
        planned.map(({ endpoint }) => endpoint),
        config.namespacePath,
        ATTACH_NO_NETWORK_ADVICE,
      );
    // As attach tells them: the pod routes the guest would not get.
    const endpoints = planned.map(({ endpoint }) => endpoint);
    if (snapshot) noticeRoutesNotForGuest(snapshot, endpoints, false);
    noticeDroppedGuestRoutes(endpoints, () => ({ operation: 'attach', endpoint: '' }));
    return {
      endpoints: planned.map(({ endpoint, plan }) => ({
        source: endpoint.properties.link.name,
        type: endpoint.type,
        ...(plan ? { plan } : {}),
        // Chosen as attach chooses it (Kata's range): the printed index is a likely free one, not a reservation.
        commands: plan ? commandsOf(plan, { macvtapIndex: () => randomMacvtapIndex() }) : [],
      })),
      skipped: network.skippedNotices(),
    };
  } finally {
    await network.close();
  }
}

/**
 * What `planSandboxDetach` answers: whether the sandbox is recorded, its namespace (or where it is held now)
 * and what detach would undo.
 */
export interface PlannedDetach {
  id: string;
  found: boolean;
  /** The recorded namespace no longer exists: detach would only drop the record. */
  namespaceGone?: string;
  /** With namespaceGone: the record was written in an earlier boot, and names nothing that exists (DetachResult's). */
  fromEarlierBoot?: EarlierBoot;
  namespacePath?: string;
  /** The recorded path is gone but a process keeps the namespace: detach would work through this path. */
  namespaceHeldAt?: string;
  /** With namespaceHeldAt: the recorded path names another namespace now, which detach would not touch. */
  namespacePathReused?: boolean;
  /** With namespaceHeldAt: a socket made in the namespace, or a tap of it, a process outside it holds (DetachResult's). */
  namespaceHeldThrough?: 'socket' | 'tap';
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
    const earlier = error instanceof RecordFromEarlierBootError ? { fromEarlierBoot: error.earlier } : {};
    return { id, found: true, namespaceGone: state.namespace.path, ...earlier, ...none };
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
      ...(recorded.heldElsewhere?.through !== undefined
        ? { namespaceHeldThrough: recorded.heldElsewhere.through }
        : {}),
      steps: plan.steps.map((step) => ({ change: step.change, command: commandOf(step.change) })),
      alreadyGone: describeRecords(plan.alreadyGone),
      kept: plan.kept.map(describeKept),
      neverMade: describeRecords(plan.neverMade),
      notices: plan.notices,
      ...(hotplugSocket ? { hotplugSocket } : {}),
    };
  } finally {
    await recorded.close();
  }
}
