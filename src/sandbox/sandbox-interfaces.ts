/**
 * The `kata-runtime kata-network` operations on a recorded sandbox: add-iface, del-iface,
 * list-ifaces, update-routes, list-routes. On a sandbox with a running VM (QMP and agent sockets
 * recorded) they hot-plug through QMP and configure the guest through the agent; without one they
 * change the host plumbing and the record only. The list commands read the agent alone, and answer
 * the recorded view when it does not answer. Every change runs under the sandbox lock, is validated
 * before anything changes, and is rolled back whole when a later step fails.
 */
import { AgentClient } from '../agent/client.js';
import { AgentConnectError, AgentStatusError } from '../agent/errors.js';
import type { Route } from '../agent/generated/types_pb.js';
import {
  interfaceFromJson,
  interfaceRequestFromJson,
  interfaceToJson,
  type KataInterfaceJson,
  type KataJsonReadOptions,
  type KataRouteJson,
  parseKataJsonText,
  routesFromJson,
  routesRequestFromJson,
  routeToJson,
} from '../agent/kata-network-json.js';
import { routeUpdatesOf } from '../agent/network-request.js';
import { StatusCode } from '../agent/ttrpc/status-code.js';
import {
  booleanOption,
  functionOption,
  lockTimeoutOption,
  numberOption,
  optionsArgument,
  signalOption,
} from '../arguments.js';
import { reportNotice } from '../diagnostics.js';
import { InvalidInputError, RollbackIncompleteError, VcnetError } from '../errors.js';
import { CloudHypervisorConnectionError } from '../hypervisor/cloud-hypervisor-client.js';
import { QmpConnectionError } from '../hypervisor/errors.js';
import {
  DEFAULT_QMP_CONNECT_TIMEOUT_MS,
  defaultQmpConnectTimeoutMs,
  QMP_CONNECT_TIMEOUT_VARIABLE,
  QmpClient,
} from '../hypervisor/qmp.js';
import { QemuHotplugSessions } from '../hypervisor/qmp-network-hotplug.js';
import type { Endpoint } from '../network/endpoint/endpoint.js';
import { type GuestInterface, type GuestRoute, generateGuestNetwork } from '../network/guest.js';
import type { Network } from '../network/network.js';
import type { EndpointType } from '../network/network-info.js';
import { openRecordedNetwork } from '../network/recorded-network.js';
import {
  askVmm,
  CLOUD_HYPERVISOR_PING_UNDER_LOCK_MS,
  cloudHypervisorPingFailure,
  cloudHypervisorPingUnanswered,
  QMP_HANDSHAKE_UNDER_LOCK_MS,
  waitedInAll,
} from '../network/sandbox-vmm-wait.js';
import { interfacesOf, loopbackNames } from '../network/scan.js';
import { DEFAULT_STATE_DIRECTORY, stateDirectoryFlag } from '../network/state/default-directories.js';
import type { GuestPending, SandboxState } from '../network/state/records.js';
import { SandboxLockedError, SandboxStore } from '../network/state/store.js';
import { timeUnderLock } from '../network/time-under-lock.js';
import { UnplugIfRunning, type VmmToUnplugFrom, vmGone, vmGoneAfter } from '../network/unfinished-attach.js';
import { shellWord } from '../shell-word.js';
import { resolveAddInterfaceRequest } from './add-interface-request.js';
import {
  entriesOfEndpoints,
  entryNames,
  GUEST_PUSH_TIMEOUT_MS,
  guessedWords,
  guestPendingEntry,
  guestPendingVerdict,
  withoutEntries,
} from './guest-pending.js';
import { pushEndpoints, recordedRoutesAfter, sandboxRouteSet } from './guest-push.js';
import { explainTakenHotplugId } from './hotplug-id-taken.js';
import {
  agentConnectWaitMs,
  connectCloudHypervisor,
  refuseRunningFirecracker,
  type VirtualMachine,
} from './hypervisor-connection.js';
import { LIST_AGENT_TIMEOUT_MS } from './list-timeout.js';
import { pingBeforeUnplugIfCloudHypervisor } from './ping-before-unplug.js';
import { attachRecorded, detachRecorded, type RecordKeeper, undoAfterFailure } from './recorded.js';
import { endpointsToPush, hotplugUnfinished, unplugUnfinishedEntry } from './unplug-unfinished.js';

/**
 * How long an agent connect made under the sandbox lock tries a socket that is missing or refuses
 * before the lock is given back and the wait goes on without it. A running VM's agent socket takes
 * a connection at once (QEMU's chardev queues it even before the guest reads), so a longer wait is
 * for a VM still starting or a socket not linked yet.
 */
export const AGENT_CONNECT_UNDER_LOCK_MS = 1_000;

/**
 * No record of the sandbox in the state directory (`VCNET_SANDBOX_NOT_FOUND`): it was never attached there,
 * or was detached.
 */
export class SandboxNotFoundError extends VcnetError {
  static override readonly errorName: string = 'SandboxNotFoundError';
  constructor(id: string, path: string, stateDirectory = DEFAULT_STATE_DIRECTORY) {
    super('VCNET_SANDBOX_NOT_FOUND', `sandbox ${id} is not attached (no state in ${path})`, {
      value: id,
      // The three ways to get here, most common first: a misspelt id, another state directory, no attach yet.
      hint: `check the sandbox id's spelling: \`vcnet list\` shows the sandboxes recorded in every state directory vcnet knows, each with its directory; if it was attached with another state directory, name that one (--state-dir DIR, or VCNET_STATE_DIR=DIR); if it was never attached, attach it first: \`vcnet attach --sandbox ${id} --netns PATH${stateDirectoryFlag(stateDirectory)}\``,
    });
  }
}

/**
 * A read that must come from the guest (list-ifaces/list-routes `--live`, the library's `live`) of a
 * sandbox whose record names no agent: the guest cannot be asked. VCNET_AGENT_CONNECT, as an agent
 * that does not answer: either way the guest's own view cannot be had. Thrown in the library's
 * words (its functions and options); the CLI says it in its own (inCliWords), as configureGuest's
 * missing agentSocket is said under --agent.
 */
export class AgentNotRecordedError extends VcnetError {
  static override readonly errorName: string = 'AgentNotRecordedError';
  constructor(
    private readonly id: string,
    private readonly stateDirectory = DEFAULT_STATE_DIRECTORY,
    /** What was asked: the list commands can fall back on the recorded view, iptables cannot. */
    private readonly asked: 'list' | 'iptables' = 'list',
    words: 'library' | 'cli' = 'library',
  ) {
    const calls = asked === 'iptables' ? 'getIpTables() or setIpTables()' : 'listInterfaces() or listRoutes()';
    const hint =
      words === 'cli'
        ? // attach refuses a sandbox that is attached: recording an agent means detaching first.
          `an agent is recorded only by attach, which refuses an attached sandbox: detach it (vcnet detach --sandbox ${id}${stateDirectoryFlag(stateDirectory)}, its VM loses its network until then) and attach it again with the running VM's sockets (--netns PATH --qmp SOCKET --agent SOCKET; --api-socket for Cloud Hypervisor or Firecracker), or ask the agent without recording it (the library's AgentClient.connect(SOCKET) and its ${calls}${asked === 'list' ? '; `vcnet configure-guest --agent SOCKET` configures the guest' : ''})${asked === 'list' ? '. Leave out --live for the recorded view' : ''}`
        : `an agent is recorded only by attachSandbox, which refuses an attached sandbox: detachSandbox('${id}', { stateDirectory: '${stateDirectory}' }) (its VM loses its network until then), then attachSandbox again with the running VM's sockets (its hypervisor and agentSocket options), or ask the agent without recording it (AgentClient.connect(SOCKET) and its ${calls}${asked === 'list' ? "; configureGuest's agentSocket option configures the guest" : ''})${asked === 'list' ? '. Leave out live (or live: false) for the recorded view' : ''}`;
    super('VCNET_AGENT_CONNECT', `sandbox ${id} has no agent recorded: its guest cannot be asked`, {
      value: id,
      hint,
    });
  }

  /** The same refusal with a hint in the CLI's words: its commands and flags. */
  inCliWords(): AgentNotRecordedError {
    return new AgentNotRecordedError(this.id, this.stateDirectory, this.asked, 'cli');
  }
}

/** The sandbox's running VM; `stateDirectory` (the store's root) only goes into hints. */
export async function connectVirtualMachine(
  state: SandboxState,
  stateDirectory?: string,
  /**
   * `qmpHandshakeTimeoutMs`: the bound of QMP's handshake, or of Cloud Hypervisor's vmm.ping (default
   * VCNET_QMP_CONNECT_TIMEOUT or 30 s, as QmpClient.connect's); `agentConnectTimeoutMs`: the bound of the agent's connect,
   * asked when that connect starts (default AGENT_CONNECT_TIMEOUT_MS).
   */
  options: { qmpHandshakeTimeoutMs?: number; agentConnectTimeoutMs?: () => number } = {},
): Promise<VirtualMachine | undefined> {
  const agentConnectTimeoutMs = options.agentConnectTimeoutMs ?? agentConnectWaitMs;
  // Firecracker and Cloud Hypervisor: see hypervisor-connection.ts.
  refuseRunningFirecracker(state);
  if (state.hypervisor?.kind === 'clh')
    return connectCloudHypervisor(state, agentConnectTimeoutMs, options.qmpHandshakeTimeoutMs);
  const qmpPath = recordedQmpPath(state);
  if (!qmpPath || !state.agentSocket) return undefined;
  // QEMU must answer before anything changes. The connection that showed it is kept for the plugs
  // and unplugs that follow (QEMU serves one client at a time: one closed here and opened again for
  // the plug let another client take QMP in between, and the plug waited for it under the sandbox
  // lock, up to VCNET_QMP_CONNECT_TIMEOUT). The caller lets go of it (releaseControl) before the
  // agent wait after a plug, which may last a minute: QMP is other clients' again meanwhile.
  let qmp: QmpClient;
  try {
    const timeout = options.qmpHandshakeTimeoutMs;
    qmp = await QmpClient.connect(qmpPath, timeout === undefined ? {} : { timeoutMs: timeout });
  } catch (error) {
    if (!(error instanceof QmpConnectionError)) throw error;
    throw sandboxQmpUnreachable(error, state, qmpPath, stateDirectory);
  }
  let agent: AgentClient;
  try {
    agent = await AgentClient.connect(state.agentSocket, { deadlineMs: agentConnectTimeoutMs() });
  } catch (error) {
    await qmp.close();
    throw error;
  }
  // No machine type in the record: the target asks QEMU (q35: a free vcnet root port; pc: pci.0).
  const hotplug = new QemuHotplugSessions(qmpPath, { timeoutMs: 20_000 }).useConnection(qmp);
  return {
    hotplug,
    agent,
    releaseControl: () => hotplug.release(),
    close: async () => {
      agent.close();
      await hotplug.release();
    },
  };
}

/** The QMP socket connectVirtualMachine connects to: a QEMU sandbox's, with an agent to configure the NICs. */
function recordedQmpPath(state: SandboxState): string | undefined {
  return state.hypervisor?.kind === 'qemu' && state.agentSocket ? state.hypervisor.controlSocket : undefined;
}

/** A QMP connection error said of sandbox `state.id`'s VM, with what to do. */
function sandboxQmpUnreachable(
  error: QmpConnectionError,
  state: SandboxState,
  qmpPath: string,
  stateDirectory: string | undefined,
  /** The wait, when it went on without the lock: the error's own bound is only the last part of it. */
  wait?: VmWait,
): QmpConnectionError {
  // The time measured, as Cloud Hypervisor's is (cloudHypervisorBusyPastWait), not the budget.
  const inAll =
    wait === undefined ? '' : `: no greeting ${waitedInAll(wait, QMP_HANDSHAKE_UNDER_LOCK_MS, 'QMP having greeted')}`;
  const detach = `\`vcnet detach --sandbox ${state.id}${stateDirectory ? stateDirectoryFlag(stateDirectory) : ''}\``;
  // No socket there, or nobody listening: no QEMU serves it (not started yet, or stopped); another
  // client holding QMP, which the other hint is about, would still have it listening.
  const hint = vmGone(error)
    ? `nothing was changed. No QEMU serves QMP on ${qmpPath}: if the VM has not started yet, start it with \`-qmp unix:${qmpPath},server=on,wait=off\` (the --qmp socket attach recorded) and try again; if it has stopped, ${detach} removes what the sandbox has left`
    : `nothing was changed. If the VM has stopped, ${detach} removes what the sandbox has left; if it runs, check that no other client holds its QMP socket (\`ss -xp | grep ${qmpPath}\` shows who) and try again (QEMU serves one at a time; vcnet waits for it without holding the sandbox's lock, so other commands on the sandbox go ahead meanwhile; to wait longer, ${QMP_CONNECT_TIMEOUT_VARIABLE}=<seconds>, default ${DEFAULT_QMP_CONNECT_TIMEOUT_MS / 1000})`;
  return new QmpConnectionError(`${error.message} (sandbox ${state.id}'s VM${inAll})`, qmpPath, error, hint);
}

/**
 * QMP greeted within its wait, but that wait was used up (by the wait for the agent or for the lock)
 * before it was tried again under the lock, and another client had taken it by then: said as that.
 */
function qmpTakenAfterItsWait(
  error: QmpConnectionError,
  state: SandboxState,
  qmpPath: string,
  stateDirectory: string,
  budgetMs: number,
): QmpConnectionError {
  const cause = error.cause instanceof QmpConnectionError ? error.cause : error;
  return new QmpConnectionError(
    `${cause.message} (sandbox ${state.id}'s VM: QMP answered before, within its ${budgetMs} ms wait, but that wait was used up by the time the command ran again under the sandbox's lock, and another client held QMP then; it was tried for ${QMP_HANDSHAKE_UNDER_LOCK_MS} ms more under the lock)`,
    qmpPath,
    cause,
    `nothing was changed. Another client took the VM's QMP socket meanwhile (\`ss -xp | grep ${qmpPath}\` shows who; QEMU serves one at a time): try again once it lets go, or give the wait more time: ${QMP_CONNECT_TIMEOUT_VARIABLE}=<seconds> (default ${DEFAULT_QMP_CONNECT_TIMEOUT_MS / 1000}) bounds the wait for QMP counted from the command's first try, the wait for the agent included. If the VM has stopped, \`vcnet detach --sandbox ${state.id}${stateDirectoryFlag(stateDirectory)}\` removes what the sandbox has left`,
  );
}

/**
 * Under the lock, the VMM did not answer within its bound there (QMP_HANDSHAKE_UNDER_LOCK_MS for QMP's
 * greeting, CLOUD_HYPERVISOR_PING_UNDER_LOCK_MS for Cloud Hypervisor's vmm.ping): the lock goes, the
 * wait goes on without it.
 */
class VmmBusyUnderLock extends Error {
  constructor(
    readonly state: SandboxState,
    readonly vmm: VmmToUnplugFrom,
    readonly stateDirectory: string,
    /** The command, as the error at the wait's end names it. */
    readonly command: string,
  ) {
    super(`VMM ${vmm.controlSocket} busy`);
  }
}

/** The words of withSandboxAndVm's operations in the errors a user reads: the CLI's commands. */
const COMMAND_OF_OPERATION: Record<string, string> = {
  addInterface: 'add-iface',
  removeInterface: 'del-iface',
  updateRoutes: 'update-routes',
  watchSandbox: 'watch',
};

/**
 * Cloud Hypervisor answered no vmm.ping by the end of `wait` (`error`: the last ping's timeout):
 * said as gc and watch say a VMM busy past their wait (cloudHypervisorPingUnanswered), nothing changed.
 */
function cloudHypervisorBusyPastWait(
  error: CloudHypervisorConnectionError,
  state: SandboxState,
  apiSocket: string,
  stateDirectory: string,
  command: string,
  wait: VmWait,
): CloudHypervisorConnectionError {
  // The time measured, not the budget: a try under the lock after an answer gets its whole bound,
  // past the budget. Every such try is counted.
  const waited = waitedInAll(wait, CLOUD_HYPERVISOR_PING_UNDER_LOCK_MS, 'vmm.ping answered');
  return new CloudHypervisorConnectionError(
    apiSocket,
    `sandbox ${state.id}: ${cloudHypervisorPingUnanswered(apiSocket, command, waited, error)}`,
    'timeout',
    error,
    `nothing was changed. vcnet waited for the VMM without holding the sandbox's lock, so other commands on the sandbox went ahead meanwhile: try again once the VM answers; to wait longer, ${QMP_CONNECT_TIMEOUT_VARIABLE}=<seconds> (default ${DEFAULT_QMP_CONNECT_TIMEOUT_MS / 1000}). If the VM has stopped, \`vcnet detach --sandbox ${state.id}${stateDirectoryFlag(stateDirectory)}\` removes what the sandbox has left`,
  );
}

/**
 * Cloud Hypervisor's API socket not there, or nobody listening on it (`error`, vmGone): said of
 * sandbox `state.id`'s VM with what to do, as a gone QEMU's QMP is (sandboxQmpUnreachable), not with
 * the hint for a VM never reached. Still vmGone: del-iface and the watch remove the host side alone.
 */
function cloudHypervisorGone(
  error: CloudHypervisorConnectionError,
  state: SandboxState,
  apiSocket: string,
  stateDirectory: string,
): CloudHypervisorConnectionError {
  const prefix = `Cloud Hypervisor API ${apiSocket}: `;
  const detail = error.message.startsWith(prefix) ? error.message.slice(prefix.length) : error.message;
  return new CloudHypervisorConnectionError(
    apiSocket,
    `${detail} (sandbox ${state.id}'s VM)`,
    error.failure,
    error,
    `nothing was changed. If the VM has stopped, \`vcnet detach --sandbox ${state.id}${stateDirectoryFlag(stateDirectory)}\` removes what the sandbox has left; if it runs, its API socket is not at the path the record names (vcnet attach --api-socket)`,
  );
}

/**
 * Under the lock, the agent's socket stayed missing or refusing (the guest still starting, a full
 * listen queue) for AGENT_CONNECT_UNDER_LOCK_MS: the lock goes, the wait goes on without it.
 */
class AgentUnreachableUnderLock extends Error {
  constructor(
    readonly state: SandboxState,
    readonly agentSocket: string,
  ) {
    super(`agent ${agentSocket} not reached`);
  }
}

/** What withSandboxAndVm's work gets: the sandbox, and the connect to its VM it uses instead of connectVirtualMachine. */
export interface OpenSandboxWithVm extends OpenSandbox {
  /** connectVirtualMachine(state, store.root), whose waits for a busy QMP and an agent not there yet are made without the lock. */
  connectVirtualMachine(): Promise<VirtualMachine | undefined>;
}

/** One wait of withSandboxAndVm's (QMP's, the agent's): its budget, counted from its first connect. */
interface VmWait {
  /** When its first connect began: what its error says it waited is measured from here. */
  startedAt: number;
  budgetMs: number;
  deadline: number;
  /** Connects tried so far, under the lock and without it (the agent's error counts them all). */
  attempts: number;
  /** It was waited for without the lock: its error says how long in all, and how little of it under the lock. */
  waitedWithoutLock: boolean;
  /** The tries under the lock that failed, and how long they took: a wait without the lock that ended with an answer is followed by another. */
  triesUnderLock: number;
  msUnderLock: number;
  /**
   * The socket answered since the last connect under the lock (a wait without the lock ended with an
   * answer; QMP greeted before the agent's wait): the next connect under the lock gets its full bound.
   */
  answered: boolean;
}

function startWait(budgetMs: number): VmWait {
  const startedAt = Date.now();
  return {
    startedAt,
    budgetMs,
    deadline: startedAt + budgetMs,
    attempts: 0,
    waitedWithoutLock: false,
    triesUnderLock: 0,
    msUnderLock: 0,
    answered: false,
  };
}

/** The waits of one withSandboxAndVm, kept across its runs. */
interface VmWaits {
  qmp?: VmWait;
  agent?: VmWait;
}

/**
 * withSandbox for work that connects to the sandbox's running VM: the waits for QEMU's QMP and for
 * the guest agent's socket are made without the sandbox lock. QEMU serves one QMP client at a time,
 * and another one (Kata's runtime, a monitoring tool, another vcnet command's plug) may hold it for
 * long; an agent's socket may be missing or refusing for seconds (a guest still booting, a runtime
 * that links the socket once the VM is up). Waited for under the lock, either made every other
 * command on the sandbox (list-ifaces, add-iface, detach, vcnet-cni DEL) time out on the lock. Under
 * the lock, `work`'s connect waits QMP_HANDSHAKE_UNDER_LOCK_MS for QMP and
 * AGENT_CONNECT_UNDER_LOCK_MS for the agent; past either the lock is given back, that socket waited
 * for without it (closed at once once it answers), and `work` run again from the start under the
 * lock, with the record read again: whatever changed meanwhile is seen, and no plumbing changes
 * without the lock. So `work` must change nothing before it connects. Each wait's budget runs from
 * its first connect: VCNET_QMP_CONNECT_TIMEOUT (default 30 s) for QMP, as a connect's own,
 * AGENT_CONNECT_TIMEOUT_MS for the agent; a socket that still does not answer at its end is the
 * error connectVirtualMachine throws, said before the lock is taken again.
 *
 * The plugs and unplugs run on the QMP connection that greeted under the lock, kept until `work`
 * lets go of it (releaseControl, before its agent wait): no other client comes between the check
 * and the plug. Only an unplug after that (a rollback's, when the agent push failed) connects anew
 * under the lock, for as long as VCNET_QMP_CONNECT_TIMEOUT says: a rollback half done cannot give
 * the lock back and start again; past that wait it is a RollbackIncompleteError, the record keeping
 * what is left. add-iface's push after a plug (which waits for the guest to show the NIC) runs
 * after `work`, without the lock: the endpoint is recorded as guestPending first, every other push
 * of the whole set leaves it out meanwhile (a route set naming a NIC the guest has not configured
 * yet is refused whole), and finishAddedInterface takes the lock again to finish or undo it; the
 * watch's push goes the same way (finishWatchPush). update-routes' agent call is still answered
 * under the lock. An abort of `where`'s
 * signal ends a wait without the lock with its reason, nothing changed yet.
 */
export async function withSandboxAndVm<T>(
  id: string,
  operation: string,
  where: Parameters<typeof withSandbox>[2],
  work: (sandbox: OpenSandboxWithVm) => Promise<T>,
): Promise<T> {
  const waits: VmWaits = {};
  const signal = typeof where === 'object' ? where.signal : undefined;
  for (;;) {
    try {
      return await withSandbox(id, operation, where, (sandbox) =>
        work({ ...sandbox, connectVirtualMachine: () => connectUnderLock(sandbox, waits, operation) }),
      );
    } catch (error) {
      if (error instanceof VmmBusyUnderLock && waits.qmp) await waitForVmmWithoutLock(error, waits.qmp, signal);
      else if (error instanceof AgentUnreachableUnderLock && waits.agent)
        await waitForAgentWithoutLock(error, waits.agent, signal);
      else throw error;
    }
  }
}

/** A connect's bound under the lock: what is left of the wait, at most `underLockMs` (all of it once the socket answered). */
function boundUnderLock(wait: VmWait, underLockMs: number): { timeoutMs: number; last: boolean } {
  const left = wait.deadline - Date.now();
  const timeoutMs = wait.answered ? underLockMs : Math.max(1, Math.min(left, underLockMs));
  wait.answered = false;
  return { timeoutMs, last: left <= underLockMs };
}

/**
 * connectVirtualMachine under the lock with short bounds on QMP's handshake and the agent's connect;
 * past one (QMP held by another client, the agent's socket not there yet) QmpBusyUnderLock or
 * AgentUnreachableUnderLock, unless that wait's budget ends first: then its error, as without this.
 */
async function connectUnderLock(
  sandbox: OpenSandbox,
  waits: VmWaits,
  operation: string,
): Promise<VirtualMachine | undefined> {
  waits.qmp ??= startWait(defaultQmpConnectTimeoutMs());
  const qmpAnswered = waits.qmp.answered;
  const apiSocket = sandbox.state.hypervisor?.kind === 'clh' ? sandbox.state.hypervisor.controlSocket : undefined;
  const qmp = boundUnderLock(waits.qmp, apiSocket ? CLOUD_HYPERVISOR_PING_UNDER_LOCK_MS : QMP_HANDSHAKE_UNDER_LOCK_MS);
  let agentLast = true;
  let agentStart = Date.now();
  const qmpStart = agentStart;
  try {
    return await connectVirtualMachine(sandbox.state, sandbox.store.root, {
      qmpHandshakeTimeoutMs: qmp.timeoutMs,
      agentConnectTimeoutMs: () => {
        // QMP greeted (asked after it): a run again after the agent's wait gets a whole handshake, not
        // what that wait left of QMP's budget (1 ms, once it outlasted the budget: a free QMP refused).
        if (waits.qmp) waits.qmp.answered = true;
        waits.agent ??= startWait(agentConnectWaitMs());
        const agent = boundUnderLock(waits.agent, AGENT_CONNECT_UNDER_LOCK_MS);
        agentLast = agent.last;
        agentStart = Date.now();
        return agent.timeoutMs;
      },
    });
  } catch (error) {
    if (error instanceof AgentConnectError && waits.agent) {
      waits.agent.attempts += error.attempts;
      waits.agent.triesUnderLock += 1;
      waits.agent.msUnderLock += Date.now() - agentStart;
      const agentSocket = sandbox.state.agentSocket;
      // A failure no wait changes (EACCES), or the budget's end: said at once, as before.
      if (agentLast || !error.deadlineReached || !agentSocket)
        throw agentUnreachable(error, sandbox.state, waits.agent);
      throw new AgentUnreachableUnderLock(sandbox.state, agentSocket);
    }
    const command = COMMAND_OF_OPERATION[operation] ?? operation;
    // Cloud Hypervisor did not answer vmm.ping (its only other failure connectCloudHypervisor throws, a VM gone, is said at once below).
    const pingUnanswered =
      apiSocket !== undefined && error instanceof CloudHypervisorConnectionError && error.failure === 'timeout';
    // Counted for the error at the wait's end: after an answer without the lock, the VMM is tried under it again.
    if (error instanceof QmpConnectionError || pingUnanswered) {
      waits.qmp.triesUnderLock += 1;
      waits.qmp.msUnderLock += Date.now() - qmpStart;
    }
    if (apiSocket && error instanceof CloudHypervisorConnectionError && pingUnanswered) {
      if (qmp.last)
        throw cloudHypervisorBusyPastWait(error, sandbox.state, apiSocket, sandbox.store.root, command, waits.qmp);
      throw new VmmBusyUnderLock(sandbox.state, { kind: 'clh', controlSocket: apiSocket }, sandbox.store.root, command);
    }
    if (apiSocket && error instanceof CloudHypervisorConnectionError && vmGone(error))
      throw cloudHypervisorGone(error, sandbox.state, apiSocket, sandbox.store.root);
    const qmpPath = recordedQmpPath(sandbox.state);
    // QMP answered within its wait, which ran out (on the agent's wait, the lock) before it was tried
    // again, another client holding it now: not a wait for QMP that lasted VCNET_QMP_CONNECT_TIMEOUT.
    if (qmp.last && qmpAnswered && qmpPath && error instanceof QmpConnectionError && !vmGone(error))
      throw qmpTakenAfterItsWait(error, sandbox.state, qmpPath, sandbox.store.root, waits.qmp.budgetMs);
    // A VM gone is said at once, as before; any other failure is said by the wait without the lock.
    if (qmp.last || !qmpPath || !(error instanceof QmpConnectionError) || vmGone(error)) throw error;
    throw new VmmBusyUnderLock(sandbox.state, { kind: 'qemu', controlSocket: qmpPath }, sandbox.store.root, command);
  }
}

/**
 * Waits without the lock until the VMM answers (askVmm: QMP greets, closed again at once for the
 * next client; Cloud Hypervisor answers vmm.ping, told as cloudHypervisorPingFailure tells it, so
 * an error status or a reply that is not the API's is an answer here as under the lock) or the
 * wait's deadline. A VMM that refuses (the VM gone) is left to the connect under the lock, which
 * says what it finds; no answer by the deadline is said as the connect under the lock says it at
 * its wait's end. Aborting `signal` ends the wait with its reason (nothing was changed yet), its
 * connection closed.
 */
async function waitForVmmWithoutLock(
  busy: VmmBusyUnderLock,
  wait: VmWait,
  signal: AbortSignal | undefined,
): Promise<void> {
  const { controlSocket } = busy.vmm;
  try {
    await askVmm(busy.vmm, Math.max(1, wait.deadline - Date.now()), signal);
    wait.answered = true;
  } catch (error) {
    const pingFailure = busy.vmm.kind === 'clh' ? cloudHypervisorPingFailure(error) : undefined;
    // The next ping under the lock gets its whole bound after an answer, whatever it was.
    if (pingFailure === 'answered') wait.answered = true;
    if (pingFailure === 'answered' || pingFailure === 'gone') return;
    if (pingFailure === 'busy')
      throw cloudHypervisorBusyPastWait(
        error as CloudHypervisorConnectionError,
        busy.state,
        controlSocket,
        busy.stateDirectory,
        busy.command,
        wait,
      );
    if (!(error instanceof QmpConnectionError)) throw error;
    if (vmGone(error)) return;
    throw sandboxQmpUnreachable(error, busy.state, controlSocket, busy.stateDirectory, wait);
  }
}

/**
 * Waits without the lock until the agent's socket takes a connection (closed again at once) or the
 * wait's deadline; a failure is said as the connect under the lock would say it, with the whole wait.
 */
async function waitForAgentWithoutLock(
  unreachable: AgentUnreachableUnderLock,
  wait: VmWait,
  signal: AbortSignal | undefined,
): Promise<void> {
  wait.waitedWithoutLock = true;
  try {
    const agent = await AgentClient.connect(unreachable.agentSocket, {
      deadlineMs: Math.max(1, wait.deadline - Date.now()),
      ...(signal ? { signal } : {}),
    });
    agent.close();
    wait.answered = true;
  } catch (error) {
    // Aborted: the caller's reason, as an abort of the wait for QMP gives it (the agent's connect
    // says it as a connect error "cancelled").
    if (signal?.aborted) throw signal.reason;
    if (!(error instanceof AgentConnectError)) throw error;
    wait.attempts += error.attempts;
    throw agentUnreachable(error, unreachable.state, wait);
  }
}

/** The agent's connect error; once it was waited for without the lock, with the whole wait and how little of it was under the lock. */
function agentUnreachable(error: AgentConnectError, state: SandboxState, wait: VmWait): AgentConnectError {
  if (!wait.waitedWithoutLock) return error;
  return new AgentConnectError(
    error.socketPath,
    wait.attempts,
    wait.budgetMs - Math.max(0, wait.deadline - Date.now()),
    error.cause,
    error.hint,
    {
      deadlineReached: error.deadlineReached,
      // After an answer without the lock, the agent is tried under it again (and may fail again).
      note: `sandbox ${state.id}'s agent; ${timeUnderLock(wait, AGENT_CONNECT_UNDER_LOCK_MS, 'the agent having answered')}, the rest without it`,
    },
  );
}

/** How the sandbox's VM was found gone, in the words watch uses too. */
function goneVmWords(state: SandboxState): string {
  const socket = state.hypervisor?.controlSocket;
  return `sandbox ${state.id}'s VM is gone (its control socket${socket ? ` ${socket}` : ''} is not there, or nobody listens on it)`;
}

/**
 * add-iface's failure when the VM turned out gone (killed while it plugged the NIC or while the guest
 * was told): the NIC went with the VM and the interface's host side was undone, so nothing of it is
 * left; the rest of the sandbox is the VM's to clean up (`vcnet detach`).
 */
function goneVmFailure(state: SandboxState, stateDirectory: string, what: string, cause: Error): VcnetError {
  const message = `${what} failed: ${goneVmWords(state)}: its NIC went with it and the interface was undone on the host side (${cause.message})`;
  const socket = state.hypervisor?.controlSocket ?? '';
  // The VM ran and went away: not the hint for an API socket never reached ("start cloud-hypervisor").
  const hint = `nothing of the interface is left. The sandbox's other interfaces stay for its VM: \`vcnet detach --sandbox ${state.id}${stateDirectoryFlag(stateDirectory)}\` removes them now the VM has stopped (or start the VM again and add the interface then)`;
  if (state.hypervisor?.kind === 'clh')
    return new CloudHypervisorConnectionError(socket, message, 'unreachable', cause, hint);
  return new QmpConnectionError(message, socket, cause, hint);
}

/** Says that `names` were removed on the host side only, the VM being gone (as watch says it). */
function noticeGoneVm(state: SandboxState, operation: string, names: string, error: Error): void {
  reportNotice(
    () => ({
      operation,
      endpoint: names,
      message: `${goneVmWords(state)}: removed ${names} on the host side only, as there is no NIC to unplug`,
      error,
    }),
    undefined,
  );
}

export interface OpenSandbox {
  store: SandboxStore;
  state: SandboxState;
  network: Network;
}

export async function withSandbox<T>(
  id: string,
  /** The library call, named when another call of this process finds the sandbox locked. */
  operation: string,
  /** The state directory, or it with how long to wait for another command (default VCNET_LOCK_TIMEOUT or 30 s). */
  where:
    | string
    | undefined
    | {
        stateDirectory?: string | undefined;
        lockTimeoutMs?: number | undefined;
        readOnly?: boolean;
        signal?: AbortSignal | undefined;
      },
  work: (sandbox: OpenSandbox) => Promise<T>,
): Promise<T> {
  const { stateDirectory, lockTimeoutMs, readOnly, signal } =
    typeof where === 'object' ? where : { stateDirectory: where, readOnly: false, signal: undefined };
  const store = new SandboxStore(id, stateDirectory);
  const locked = async () => {
    const state = store.read<SandboxState>();
    if (!state) throw new SandboxNotFoundError(id, store.statePath, store.root);
    // Only the namespace the record names, through one fd (refused when the path now names another).
    const recorded = openRecordedNetwork(state, id, store.statePath);
    try {
      return await work({ store, state, network: recorded.network });
    } finally {
      await recorded.close();
    }
  };
  // An undefined lockTimeoutMs takes withLockIfRecorded's default (VCNET_LOCK_TIMEOUT or 30 s).
  return store.withLockIfRecorded(locked, lockTimeoutMs, { readOnly: readOnly === true, operation, signal });
}

/** Options of the commands that read kata-network JSON. */
export interface KataNetworkOptions {
  stateDirectory?: string;
  /** How long to wait for another command on the sandbox (ms); default VCNET_LOCK_TIMEOUT or 30 s. */
  lockTimeoutMs?: number;
  /** Told the keys that matched no field and were ignored (as Go ignores them), once per input. */
  onIgnoredKeys?: (paths: string[]) => void;
  /** Honoured while waiting for the sandbox lock and before anything changes, as attachSandbox's. */
  signal?: AbortSignal;
}

/** The options of add-iface, del-iface and update-routes, checked with their text before anything is read. */
function kataNetworkOptions(given: KataNetworkOptions, text: unknown): KataNetworkOptions {
  const options = optionsArgument(given, 'options', ['stateDirectory', 'lockTimeoutMs', 'onIgnoredKeys', 'signal']);
  signalOption(options.signal);
  functionOption(options.onIgnoredKeys, 'onIgnoredKeys');
  lockTimeoutOption(options.lockTimeoutMs);
  if (typeof text !== 'string') {
    throw new InvalidInputError('text', text, 'the request as JSON text (JSON.stringify an object first)');
  }
  return options;
}

/**
 * A request's JSON text read by `read` (interfaceRequestFromJson, routesRequestFromJson); the keys
 * it ignored, as Go's decoder ignores them, go to onIgnoredKeys in one call.
 */
function kataRequest<Value>(
  text: string,
  field: 'interface' | 'routes',
  read: (json: unknown, readOptions: KataJsonReadOptions) => Value,
  options: KataNetworkOptions,
): Value {
  const ignoredKeys: string[] = [];
  const value = read(parseKataJsonText(text, field), { ignoredKeys });
  if (ignoredKeys.length > 0) options.onIgnoredKeys?.(ignoredKeys);
  return value;
}

/** The Interface of add-iface's or del-iface's JSON text. */
function interfaceRequest(text: string, options: KataNetworkOptions): ReturnType<typeof interfaceFromJson> {
  return kataRequest(text, 'interface', interfaceRequestFromJson, options);
}

function guestInterfaceOf(endpoint: Endpoint): GuestInterface {
  const found = generateGuestNetwork([endpoint]).interfaces[0];
  if (!found) throw new Error(`no guest interface for ${endpoint.name}`);
  return found;
}

/**
 * What `addInterface` answers: the guest interface added (Kata's JSON form), the pod link it came from and
 * the endpoint type inferred.
 */
export interface AddInterfaceResult {
  interface: KataInterfaceJson;
  /** Set when `type` was missing and taken from the device in the namespace. */
  inferredType?: EndpointType;
  /**
   * The `type` given, when the link has a vhost-user socket and became a vhost-user endpoint instead
   * (Kata looks for the socket before it reads type).
   */
  typeOverridden?: string;
  /** The `device` given, passed over because it names no pod link while `name` does (Kata reads only `name`). */
  deviceIgnored?: string;
  /** The pod namespace link the interface was made from. */
  podDevice: string;
  hotplugged: boolean;
}

/**
 * What add-iface left to do once it gave the sandbox lock back: the guest's part (show the NIC,
 * configure it), then, under the lock again, finish or undo the endpoint its entry names.
 */
interface GuestPart {
  vm: VirtualMachine;
  entry: GuestPending;
  endpoint: Endpoint;
  /** The endpoints whose routes the push sends: the sandbox's, less those another add-iface waits for. */
  routed: Endpoint[];
  guestRoutes: GuestRoute[] | undefined;
  /** The record's createdAt: a record of a later attach under the same id has another. */
  createdAt: string;
  guestName: string;
  /** The sandbox's state directory (its commands' --state-dir). */
  stateDirectory: string;
}

/** add-iface: validates the Interface JSON, attaches the device, hot-plugs and configures it when a VM runs. */
export async function addInterface(
  id: string,
  text: string,
  options: KataNetworkOptions = {},
): Promise<AddInterfaceResult> {
  options = kataNetworkOptions(options, text);
  const message = interfaceRequest(text, options);
  // Nothing is changed before the VM's connect: run again when a busy QMP or an agent not there yet was waited for without the lock.
  const plugged = await withSandboxAndVm(
    id,
    'addInterface',
    options,
    async ({
      store,
      state,
      network,
      connectVirtualMachine,
    }): Promise<{ result: AddInterfaceResult; guest?: GuestPart }> => {
      const existing = network.endpoints();
      const snapshot = await network.scan();
      // kata-network input as Kata reads it: see add-interface-request.ts.
      const {
        info,
        guestName,
        requestedType: requested,
        typeOverridden,
        deviceIgnored,
        podDevice,
      } = resolveAddInterfaceRequest(message, interfacesOf(snapshot), existing, {
        ...(network.config.vhostUserStorePath ? { vhostUserStorePath: network.config.vhostUserStorePath } : {}),
        loopbacks: loopbackNames(snapshot),
        sandbox: {
          id,
          stateDirectory: store.root,
          namespacePath: network.config.namespacePath,
          reachedAt: network.reachedAt,
          guestPending: (state.guestPending ?? []).map((entry) => {
            const verdict = guestPendingVerdict(entry);
            const guessed = guessedWords(entry, verdict);
            return { name: entry.name, running: verdict.running, by: entry.by, ...(guessed ? { guessed } : {}) };
          }),
        },
      });
      let inferredType: EndpointType | undefined;

      const vm = await connectVirtualMachine();
      // Handed over with the guest's part: closed once that part is done, not here.
      let handedOver = false;
      const keeper = sandboxRecordKeeper(store, state, network);
      try {
        const [endpoint] = await attachRecorded(
          network,
          {
            interfaces: [info],
            snapshot,
            guestNames: { [info.link.name]: guestName },
            ...(requested ? { requestedType: requested as EndpointType } : {}),
            keepFds: vm !== undefined,
            ...(vm ? { hotplug: vm.hotplug } : {}),
            ...newIndexOptions(state),
            operation: 'add-iface',
          },
          keeper,
        ).catch(async (error: unknown) => {
          // A VM killed while it plugged the NIC (the connection closed, its socket now refuses): the
          // plug's undo of the host side was complete, and no NIC is left in a VM that is gone.
          if (
            !(error instanceof RollbackIncompleteError) &&
            vm !== undefined &&
            (await vmGoneAfter(error, state.hypervisor?.controlSocket))
          )
            throw goneVmFailure(state, store.root, `add-iface ${guestName}`, error as Error);
          // QEMU's "Duplicate ID" for a NIC no endpoint records: said as that, with how to remove it.
          if (!(error instanceof RollbackIncompleteError))
            throw explainTakenHotplugId(error, { sandbox: id, link: info.link.name, state, network });
          // `vcnet detach` would take the whole live sandbox down; gc finishes only the unfinished interface.
          throw error.retold(
            `add-iface ${guestName}`,
            `${store.statePath} keeps what is left of this interface: \`vcnet gc --netns ${shellWord(network.config.namespacePath)}${stateDirectoryFlag(store.root)}\` removes it once the cause is fixed and leaves the rest of sandbox ${id} alone (\`vcnet detach\` would detach the whole sandbox)`,
          );
        });
        if (!endpoint) throw new Error('no endpoint was created');
        endpoint.closeFds();
        inferredType = requested ? undefined : endpoint.type;
        const guest = guestInterfaceOf(endpoint);
        if (state.guestRoutes !== undefined)
          state.guestRoutes = recordedRoutesAfter(state.guestRoutes, { added: [endpoint] });
        const result: AddInterfaceResult = {
          interface: interfaceToJson(interfaceFromJson(guest)),
          podDevice,
          ...(inferredType ? { inferredType } : {}),
          ...(typeOverridden !== undefined ? { typeOverridden } : {}),
          ...(deviceIgnored !== undefined ? { deviceIgnored } : {}),
          hotplugged: vm !== undefined,
        };
        if (!vm) {
          keeper.persist();
          return { result };
        }
        // The guest may take seconds to show the NIC (a minute under TCG): recorded as waiting for
        // it, and the lock given back meanwhile; finishAddedInterface takes it again.
        const entry = guestPendingEntry(endpoint, 'add-iface', { lockTimeoutMs: options.lockTimeoutMs });
        const routed = endpointsToPush(network.endpoints(), state, {
          sandbox: id,
          operation: 'add-iface',
          stateDirectory: store.root,
        });
        state.guestPending = [...(state.guestPending ?? []), entry];
        keeper.persist();
        // QMP is other clients' again while the guest is waited for.
        await vm.releaseControl();
        handedOver = true;
        return {
          result,
          guest: {
            vm,
            entry,
            endpoint,
            routed,
            guestRoutes: state.guestRoutes,
            createdAt: state.createdAt,
            guestName,
            stateDirectory: store.root,
          },
        };
      } finally {
        if (!handedOver) await vm?.close();
      }
    },
  );
  const guest = plugged.guest;
  if (!guest) return plugged.result;
  try {
    let failure: { error: unknown } | undefined;
    try {
      // Kata's push: interface (retried until the NIC shows), the full route set, neighbours.
      await pushEndpoints(guest.vm.agent, [guest.endpoint], guest.routed, guest.guestRoutes, {
        timeoutMs: GUEST_PUSH_TIMEOUT_MS,
        sandbox: id,
      });
    } catch (error) {
      failure = { error };
    }
    await finishAddedInterface(id, options, guest, failure);
    return plugged.result;
  } finally {
    await guest.vm.close();
  }
}

/**
 * The sandbox's route set once more, under the lock, when it is no longer the one a push made
 * without it (add-iface's, the watch's: `pushed`) sent: another add-iface or the watch finished
 * meanwhile (its routes were left out of this push, and the agent replaced the whole set), or
 * update-routes gave a new set. A failure is warned about (`by` names the command and its
 * interfaces): the interfaces themselves are configured.
 */
export async function sendRouteSetIfChanged(
  id: string,
  pushed: Pick<GuestPart, 'vm' | 'routed' | 'guestRoutes'>,
  routed: readonly Endpoint[],
  guestRoutes: readonly GuestRoute[] | undefined,
  by: { operation: 'add-iface' | 'watch'; endpoint: string },
): Promise<void> {
  const sent = sandboxRouteSet(pushed.routed, pushed.guestRoutes);
  const due = sandboxRouteSet(routed, guestRoutes);
  if (JSON.stringify(due) === JSON.stringify(sent)) return;
  try {
    await pushed.vm.agent.updateRoutes(routesFromJson(due), { timeoutMs: 30_000 });
  } catch (error) {
    const command = by.operation === 'watch' ? 'vcnet watch' : 'add-iface';
    reportNotice(
      () => ({
        operation: by.operation,
        endpoint: by.endpoint,
        message: `sandbox ${id}: the route set changed while ${command} waited for the guest, and sending it again failed: \`vcnet configure-guest --sandbox ${shellWord(id)}\` sends it`,
        error: error as Error,
      }),
      undefined,
    );
  }
}

/**
 * add-iface's last step, under the sandbox lock again after the guest's part: from a fresh read of
 * the record, clears the endpoint's guestPending entry, or when the guest failed, undoes the
 * endpoint as a failed add-iface is undone (unplug, host plumbing, record). Only the endpoint the
 * entry names, in the record of the same attach: one that a del-iface, a detach or a new attach
 * removed meanwhile is left as that command left it, and said so.
 */
async function finishAddedInterface(
  id: string,
  options: KataNetworkOptions,
  guest: GuestPart,
  failure: { error: unknown } | undefined,
): Promise<void> {
  const { vm, entry, guestName } = guest;
  // The push ran to its end: its outcome is recorded whatever the caller's signal says now.
  const where = {
    ...(options.stateDirectory !== undefined ? { stateDirectory: options.stateDirectory } : {}),
    ...(options.lockTimeoutMs !== undefined ? { lockTimeoutMs: options.lockTimeoutMs } : {}),
  };
  const removedMeanwhile = (how: string): void => {
    reportNotice(
      () => ({
        operation: 'add-iface',
        endpoint: guestName,
        message: `sandbox ${id}: ${guestName} ${how} while add-iface waited for the guest${
          failure ? ' (which failed)' : ''
        }: add-iface leaves it as that command left it`,
        ...(failure?.error instanceof Error ? { error: failure.error } : {}),
      }),
      undefined,
    );
    if (failure) throw failure.error;
  };
  try {
    await withSandbox(id, 'addInterface', where, async ({ store, state, network }) => {
      const held =
        state.createdAt === guest.createdAt && state.guestPending?.some((kept) => kept.token === entry.token);
      const endpoint = held
        ? network
            .endpoints()
            .find(
              (candidate) =>
                entryNames(entry, candidate) && candidate.plumbing?.tapName === guest.endpoint.plumbing?.tapName,
            )
        : undefined;
      if (!endpoint) {
        removedMeanwhile(
          state.createdAt === guest.createdAt
            ? 'was removed from the record (del-iface, or vcnet watch as its pod link went)'
            : 'went with its sandbox (detached and attached again)',
        );
        return;
      }
      state.guestPending = withoutEntries(state.guestPending, entry.token);
      const keeper = sandboxRecordKeeper(store, state, network);
      if (!failure) {
        keeper.persist();
        await sendRouteSetIfChanged(id, guest, endpointsToPush(network.endpoints(), state), state.guestRoutes, {
          operation: 'add-iface',
          endpoint: guestName,
        });
        return;
      }
      const { error } = failure;
      // The guest kernel never had the NIC: neither does the recorded route set.
      if (state.guestRoutes !== undefined)
        state.guestRoutes = recordedRoutesAfter(state.guestRoutes, { removed: [endpoint] });
      // A VM killed meanwhile (the guest's failure is often that) took the NIC with it. The lock was
      // given back during the push: a Cloud Hypervisor busy since answers vmm.ping under it first.
      const unplug = new UnplugIfRunning(
        pingBeforeUnplugIfCloudHypervisor(vm.hotplug, state.hypervisor),
        state.hypervisor?.controlSocket,
      );
      await undoAfterFailure(error, network, `add-iface ${guestName}`, keeper, {
        endpoints: [endpoint],
        hotplug: unplug,
        requireUnplug: true,
        sandbox: { id, stateDirectory: store.root },
      }).catch((thrown: unknown) => {
        if (thrown === error && unplug.goneBy)
          throw goneVmFailure(state, store.root, `add-iface ${guestName}`, error as Error);
        // The VM kept the NIC: kept for del-iface, and left out of pushes of the whole set meanwhile.
        if (thrown instanceof RollbackIncompleteError && network.endpoints().includes(endpoint)) {
          state.unplugUnfinished = [...(state.unplugUnfinished ?? []), unplugUnfinishedEntry(endpoint)];
          keeper.persist();
        }
        throw thrown;
      });
    });
  } catch (error) {
    if (error instanceof SandboxLockedError) throw unfinishedForLock(id, guest, failure, error);
    if (!(error instanceof SandboxNotFoundError)) throw error;
    removedMeanwhile('went with its sandbox (detached)');
  }
}

/**
 * finishAddedInterface could not take the lock again (another command held it past the lock
 * timeout): the endpoint is neither finished nor undone, and its entry stays, a stopped add-iface's
 * once this process exits or, for a library caller's process that lives on, once the deadline the
 * entry records has passed (decideGuestPending). Said as that, with the guest's outcome (its failure is the cause), not as
 * a lock error after which nothing was changed.
 */
function unfinishedForLock(
  id: string,
  guest: GuestPart,
  failure: { error: unknown } | undefined,
  locked: SandboxLockedError,
): VcnetError {
  const { guestName } = guest;
  const flag = stateDirectoryFlag(guest.stateDirectory);
  const sandbox = shellWord(id);
  const outcome = failure
    ? `the guest did not configure ${guestName} (${failure.error instanceof Error ? failure.error.message : String(failure.error)}), and add-iface could not take the lock again to undo it`
    : `the guest configured ${guestName}, and add-iface could not take the lock again to finish it`;
  return new VcnetError(
    'VCNET_SANDBOX_LOCKED',
    `add-iface ${guestName} on sandbox ${id} is unfinished: ${outcome}: ${locked.message}. ${guestName} stays plugged and recorded as waiting for the guest (\`vcnet list\` shows it guest-pending(stopped) once this process has exited, at the latest from ${guest.entry.waitsUntil ?? guest.entry.since}, the deadline its entry records)`,
    {
      value: locked.value,
      hint: `once that command is done, ${
        failure ? `\`vcnet del-iface ${sandbox} FILE${flag}\` (FILE: {"name":"${guestName}"}) removes it, or ` : ''
      }\`vcnet configure-guest --sandbox ${sandbox}${flag}\` tells the guest its configuration again and clears the record's entry${
        failure ? '' : ' (the interface works meanwhile)'
      }`,
      cause: failure?.error ?? locked,
    },
  );
}

/** The sandbox record as the network holds it now; a sandbox keeps its record with no endpoints too. */
export function sandboxRecordKeeper(store: SandboxStore, state: SandboxState, network: Network): RecordKeeper {
  // Every endpoint is in the list (and journaled) before its NIC reaches the VM: counted here, no
  // index the VM may still hold is given again.
  const countIndices = () => {
    if (state.hypervisor?.kind !== 'clh') return;
    const above = network.endpoints().map((endpoint) => endpoint.index + 1);
    state.nextDeviceIndex = Math.max(state.nextDeviceIndex ?? 0, ...above);
  };
  countIndices();
  const persist = () => {
    countIndices();
    // An endpoint removed (del-iface, the watch, an undo) takes its entries with it.
    const guestPending = entriesOfEndpoints(state.guestPending, network.endpoints());
    if (guestPending) state.guestPending = guestPending;
    else delete state.guestPending;
    const unplugUnfinished = entriesOfEndpoints(state.unplugUnfinished, network.endpoints());
    if (unplugUnfinished) state.unplugUnfinished = unplugUnfinished;
    else delete state.unplugUnfinished;
    store.write({ ...state, network: network.save() });
  };
  return { persist, discard: persist, path: store.statePath };
}

/** Where new endpoints' indices start: above every NIC a Cloud Hypervisor VM may still hold (see nextDeviceIndex). */
export function newIndexOptions(state: SandboxState): { firstIndex?: number } {
  return state.hypervisor?.kind === 'clh' && state.nextDeviceIndex !== undefined
    ? { firstIndex: state.nextDeviceIndex }
    : {};
}

/** del-iface: finds the interface by name (or device, or hwAddr), unplugs it and removes its plumbing. */
export async function removeInterface(
  id: string,
  text: string,
  options: KataNetworkOptions = {},
): Promise<KataInterfaceJson> {
  options = kataNetworkOptions(options, text);
  const message = interfaceRequest(text, options);
  if (!message.name && !message.device && !message.hwAddr) {
    throw new InvalidInputError(
      'interface.name',
      message.name,
      'the guest name, device or hwAddr of an interface of the sandbox',
    );
  }
  // Nothing is changed before the VM's connect: run again when a busy QMP or an agent not there yet was waited for without the lock.
  return withSandboxAndVm(id, 'removeInterface', options, async ({ store, state, network, connectVirtualMachine }) => {
    const endpoint = network
      .endpoints()
      .find(
        (candidate) =>
          (message.name && candidate.name === message.name) ||
          (!message.name && message.device && candidate.properties.link.name === message.device) ||
          (!message.name && !message.device && candidate.hardwareAddress === message.hwAddr.toLowerCase()),
      );
    if (!endpoint) {
      throw new InvalidInputError(
        message.name ? 'interface.name' : message.device ? 'interface.device' : 'interface.hwAddr',
        message.name || message.device || message.hwAddr,
        `an interface of sandbox ${id}: ${
          network
            .endpoints()
            .map((candidate) => candidate.name)
            .join(', ') || 'none'
        }`,
      );
    }
    // Kata finds the interface by hwAddr alone: a name naming another NIC than the MAC is a mistake, not a choice.
    if (message.hwAddr && endpoint.hardwareAddress && message.hwAddr.toLowerCase() !== endpoint.hardwareAddress) {
      throw new InvalidInputError(
        'interface.hwAddr',
        message.hwAddr,
        `the MAC of ${endpoint.name} (${endpoint.hardwareAddress}), or leave hwAddr out`,
        `${message.name ? 'name' : 'device'} and hwAddr name different interfaces; nothing was removed`,
      );
    }
    // A device naming no interface of the sandbox is passed over, as add-iface passes it over (Kata's
    // users write the host side's name there, and Kata reads no device); one naming another interface is a mistake.
    if (
      message.device &&
      message.name &&
      endpoint.properties.link.name !== message.device &&
      network
        .endpoints()
        .some((candidate) => candidate.properties.link.name === message.device || candidate.name === message.device)
    ) {
      throw new InvalidInputError(
        'interface.device',
        message.device,
        `the pod link of ${endpoint.name} (${endpoint.properties.link.name}), or leave device out`,
        'name and device name different interfaces; nothing was removed',
      );
    }
    const removed = interfaceToJson(interfaceFromJson(guestInterfaceOf(endpoint)));
    // A VM that is gone (its socket not there, nobody listening on it; also when that shows only
    // after QMP closed mid-unplug) holds no NIC: the host side goes alone, as watch does it.
    let goneBy: Error | undefined;
    const vm = await connectVirtualMachine().catch((error: unknown) => {
      if (!vmGone(error)) throw error;
      goneBy = error as Error;
      return undefined;
    });
    const unplug = vm ? new UnplugIfRunning(vm.hotplug, state.hypervisor?.controlSocket) : undefined;
    const keeper = sandboxRecordKeeper(store, state, network);
    try {
      await detachRecorded(network, `del-iface ${endpoint.name}`, keeper, {
        endpoints: [endpoint],
        ...(unplug ? { hotplug: unplug, requireUnplug: true } : {}),
        sandbox: { id, stateDirectory: store.root },
      });
      goneBy ??= unplug?.goneBy;
      if (goneBy) noticeGoneVm(state, 'del-iface', endpoint.name, goneBy);
      // The guest kernel drops the NIC's routes with it: so does the recorded route set.
      if (state.guestRoutes?.some((route) => route.device === endpoint.name)) {
        state.guestRoutes = recordedRoutesAfter(state.guestRoutes, { removed: [endpoint] });
        keeper.persist();
      }
      return removed;
    } finally {
      await vm?.close();
    }
  });
}

/** Options of the read-only commands, list-ifaces and list-routes. */
export interface ListOptions {
  stateDirectory?: string;
  /** How long to wait for another command on the sandbox (ms); default VCNET_LOCK_TIMEOUT or 30 s. */
  lockTimeoutMs?: number;
  /**
   * Bound on the whole exchange with the agent, connecting and answering: past it the recorded view
   * is answered. Default 3 s (LIST_AGENT_TIMEOUT_MS).
   */
  timeoutMs?: number;
  /**
   * Only what the guest's agent answers: an agent that does not answer in time throws its error, and
   * a sandbox whose record names no agent throws AgentNotRecordedError (VCNET_AGENT_CONNECT), instead
   * of answering the recorded view. Default false.
   */
  live?: boolean;
  /**
   * Told when an agent is recorded but did not answer in time (the VM is not up yet, or its socket
   * accepts and nobody serves it): the recorded view is answered instead. Not called with `live`.
   */
  onAgentUnreachable?: (error: AgentConnectError | AgentStatusError) => void;
  /** Aborting rejects with the signal's reason while the call waits for the sandbox lock, as attachSandbox's. */
  signal?: AbortSignal;
}

/** The options of list-ifaces and list-routes, checked before anything is read. */
function listOptions(given: ListOptions): ListOptions {
  const options = optionsArgument(given, 'options', [
    'stateDirectory',
    'timeoutMs',
    'lockTimeoutMs',
    'live',
    'onAgentUnreachable',
    'signal',
  ]);
  signalOption(options.signal);
  lockTimeoutOption(options.lockTimeoutMs);
  booleanOption(options.live, 'live');
  numberOption(options.timeoutMs, 'timeoutMs', { min: 1, max: 3_600_000, integer: false, unit: 'milliseconds' });
  functionOption(options.onAgentUnreachable, 'onAgentUnreachable');
  return options;
}

/**
 * What the agent answers to a read-only command, which needs nothing else of the VM (any hypervisor,
 * Firecracker too): undefined when no agent is recorded, or when it does not answer within the
 * timeout; with `live`, both throw instead. The bound covers the call too: QEMU's chardev (server=on)
 * accepts a connection before the guest runs, and then nothing ever answers.
 */
async function askAgentForReading<T>(
  state: SandboxState,
  store: SandboxStore,
  options: ListOptions,
  ask: (agent: AgentClient, timeoutMs: number) => Promise<T>,
): Promise<T | undefined> {
  if (!state.agentSocket) {
    if (options.live) throw new AgentNotRecordedError(state.id, store.root);
    return undefined;
  }
  try {
    return await askAgentWithin(state.agentSocket, options.timeoutMs ?? LIST_AGENT_TIMEOUT_MS, ask);
  } catch (error) {
    const silent =
      error instanceof AgentConnectError ||
      (error instanceof AgentStatusError &&
        error.local &&
        (error.status === StatusCode.DEADLINE_EXCEEDED || error.status === StatusCode.UNAVAILABLE));
    if (!silent || options.live) throw error;
    options.onAgentUnreachable?.(error);
    return undefined;
  }
}

/**
 * Connects to the agent at `socket` and asks it, `timeoutMs` bounding both: `ask` gets what is left
 * of it for its call. The agent is closed after, whatever the answer.
 */
export async function askAgentWithin<T>(
  socket: string,
  timeoutMs: number,
  ask: (agent: AgentClient, timeoutMs: number) => Promise<T>,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  const agent = await AgentClient.connect(socket, { deadlineMs: timeoutMs });
  try {
    return await ask(agent, Math.max(1, deadline - Date.now()));
  } finally {
    agent.close();
  }
}

/** list-ifaces: what the guest has (from the agent) or will have (from the record). */
export async function listInterfaces(id: string, options: ListOptions = {}): Promise<KataInterfaceJson[]> {
  options = listOptions(options);
  // Reads only: on a read-only state directory it runs without the lock it could not take.
  return withSandbox(id, 'listInterfaces', { ...options, readOnly: true }, async ({ store, state, network }) => {
    const answered = await askAgentForReading(state, store, options, (agent, timeoutMs) =>
      agent.listInterfaces({ timeoutMs }),
    );
    if (answered) return answered.map(interfaceToJson);
    // What the guest will have: a NIC whose hot-plug (or its undo) did not finish it never
    // configured, and pushes leave out; list-routes leaves its routes out the same way.
    const listed = recordedViewOf(network.endpoints(), state, { sandbox: id, operation: 'list-ifaces' });
    return generateGuestNetwork(listed).interfaces.map((guest) => interfaceToJson(interfaceFromJson(guest)));
  });
}

/**
 * The endpoints a recorded view (list-ifaces, list-routes with no agent answering) shows: what the
 * next push would send the guest, less those whose hot-plug or its undo did not finish. Those left
 * out are said in a notice, pointing to `vcnet list`, which shows them with what finishes them.
 */
function recordedViewOf(
  endpoints: readonly Endpoint[],
  state: SandboxState,
  note: { sandbox: string; operation: 'list-ifaces' | 'list-routes' },
): Endpoint[] {
  const leftOut = endpoints.filter((endpoint) => hotplugUnfinished(endpoint, state));
  if (leftOut.length > 0) {
    const names = leftOut.map((endpoint) => endpoint.name);
    const many = names.length > 1;
    const message = `sandbox ${note.sandbox}: ${names.join(', ')} ${many ? 'are' : 'is'} not in this recorded view: ${many ? 'their' : 'its'} hot-plug, or the undo of it, did not finish, so the guest never configured ${many ? 'them' : 'it'} and pushes leave ${many ? 'them' : 'it'} out; \`vcnet list\` shows ${many ? 'them' : 'it'} and what finishes ${many ? 'them' : 'it'}`;
    reportNotice(() => ({ operation: note.operation, endpoint: names.join(','), message }), undefined);
  }
  return endpoints.filter((endpoint) => !leftOut.includes(endpoint));
}

/**
 * update-routes: replaces the guest's routes with the full set given, through the agent and in the
 * record. A null list (JSON `null`, or `{"Routes": null}`) changes nothing and answers null: Kata's
 * runtime sends no request for a nil list (kata_agent.go updateRoutes), and `[]` is how every route
 * is removed.
 */
export async function updateRoutes(
  id: string,
  text: string,
  options: KataNetworkOptions = {},
): Promise<KataRouteJson[] | null> {
  options = kataNetworkOptions(options, text);
  const routes = kataRequest(text, 'routes', routesRequestFromJson, options);
  if (routes === undefined) {
    // The sandbox must still be one: Kata's runtime finds it before it looks at the list.
    return withSandbox(id, 'updateRoutes', { ...options, readOnly: true }, async () => null);
  }
  routeUpdatesOf(routes, 'routes');
  // Nothing is changed before the VM's connect: run again when a busy QMP or an agent not there yet was waited for without the lock.
  return withSandboxAndVm(id, 'updateRoutes', options, async ({ store, state, network, connectVirtualMachine }) => {
    // A NIC whose hot-plug failed, its undo unfinished: as Kata, not routed to.
    const unfinished = network.endpoints().filter((endpoint) => hotplugUnfinished(endpoint, state));
    const devices = new Set(
      network
        .endpoints()
        .filter((endpoint) => !unfinished.includes(endpoint))
        .map((endpoint) => endpoint.name),
    );
    routes.forEach((route, index) => {
      if (unfinished.some((endpoint) => endpoint.name === route.device)) {
        throw new InvalidInputError(
          `routes[${index}].device`,
          route.device,
          `an interface of sandbox ${id} the guest has: ${[...devices].join(', ') || 'none'}`,
          `${route.device}'s hot-plug failed and the undo of it did not finish (the VM may still hold the NIC), so what the guest is told leaves it out: \`vcnet del-iface ${id} FILE${stateDirectoryFlag(store.root)}\` with {"name":"${route.device}"} finishes it once the VM releases the NIC or has stopped`,
        );
      }
      if (!devices.has(route.device)) {
        throw new InvalidInputError(
          `routes[${index}].device`,
          route.device,
          `an interface of sandbox ${id}: ${[...devices].join(', ') || 'none'}`,
        );
      }
    });
    const vm = await connectVirtualMachine();
    try {
      await vm?.releaseControl(); // only the agent is asked
      // The agent answers with the guest's whole table (its kernel routes too), as Kata prints it;
      // the record keeps the set given, which later pushes send again.
      const applied: Route[] = vm ? await vm.agent.updateRoutes(routes, { timeoutMs: 30_000 }) : routes;
      store.write({ ...state, guestRoutes: routes.map(routeToJson) as GuestRoute[] });
      return applied.map(routeToJson);
    } finally {
      await vm?.close();
    }
  });
}

/** list-routes: the guest's routes (agent), the recorded override, or what attach derived. */
export async function listRoutes(id: string, options: ListOptions = {}): Promise<KataRouteJson[]> {
  options = listOptions(options);
  // Reads only: on a read-only state directory it runs without the lock it could not take.
  return withSandbox(id, 'listRoutes', { ...options, readOnly: true }, async ({ store, state, network }) => {
    const answered = await askAgentForReading(state, store, options, (agent, timeoutMs) =>
      agent.listRoutes({ timeoutMs }),
    );
    if (answered) return answered.map(routeToJson);
    // What the next push would send: the set update-routes gave (as the NICs changed it since), else
    // the derived one; a NIC whose hot-plug (or its undo) did not finish left out, as pushes leave it.
    const routed = recordedViewOf(network.endpoints(), state, { sandbox: id, operation: 'list-routes' });
    return sandboxRouteSet(routed, state.guestRoutes).map((route) => routeToJson(routesFromJson([route])[0]!));
  });
}
