/**
 * Waits for a sandbox VMM's control socket made without the sandbox's and its namespace's locks:
 * QEMU's QMP, which serves one client at a time, and Cloud Hypervisor's API, which answers one
 * request at a time (a VMM slow or hung on one answers no other). Waiting under the locks made every
 * other command on the sandbox time out on them. detach (sandbox/detach.ts, QMP only), and gc's and
 * watch's undo of an unfinished hot-plug (gc/unfinished.ts, sandbox/sandbox-watch.ts) run their work
 * under the locks through withVmmWaitedWithoutLocks; add-iface, del-iface, watch and update-routes
 * through withSandboxAndVm (sandbox/sandbox-interfaces.ts), which gives QMP the same
 * QMP_HANDSHAKE_UNDER_LOCK_MS, and Cloud Hypervisor's vmm.ping CLOUD_HYPERVISOR_PING_UNDER_LOCK_MS,
 * under the lock, and asks the VMM without it through askVmm. Apart from that one: the CLI loads this module for
 * every command (`vcnet detach`, `vcnet gc`), and that one brings the agent's protobuf code.
 */
import { causeChain } from '../errors.js';
import {
  CloudHypervisorApiError,
  CloudHypervisorClient,
  CloudHypervisorConnectionError,
  type CloudHypervisorRequestOptions,
} from '../hypervisor/cloud-hypervisor-client.js';
import { controlSocketGone } from '../hypervisor/control-socket-probe.js';
import { QmpConnectionError } from '../hypervisor/errors.js';
import { QmpClient, qmpConnectTimeoutSetMs } from '../hypervisor/qmp.js';
import { earlierBootOf } from './state/boot-id.js';
import type { SandboxState } from './state/records.js';
import { SandboxStore } from './state/store.js';
import { type TriesUnderLock, timeUnderLock } from './time-under-lock.js';
import { type VmmToUnplugFrom, vmGone } from './unfinished-attach.js';

/**
 * How long a QMP handshake made under the sandbox lock waits once QMP was waited for without it.
 * QEMU greets within milliseconds when no other client holds QMP (at most 52 ms measured, a TCG
 * guest booting at load 10), so a longer wait is for another client that took QMP in between.
 */
export const QMP_HANDSHAKE_UNDER_LOCK_MS = 1_000;

/**
 * How long vmm.ping made under the sandbox lock waits for Cloud Hypervisor's answer once the VMM
 * answered one without the lock: a VMM that serves requests answers in milliseconds, so a longer
 * wait is for one that took another client's request in between, or hung since (as
 * QMP_HANDSHAKE_UNDER_LOCK_MS is for QMP).
 */
export const CLOUD_HYPERVISOR_PING_UNDER_LOCK_MS = 1_000;

/**
 * How long detach and gc wait for the VMM (QEMU's QMP, Cloud Hypervisor's API) when the user set no
 * VCNET_QMP_CONNECT_TIMEOUT: they must go ahead when the VM is wedged (a crashed runtime's leftover),
 * so they wait less than other commands; a VM that is gone refuses at once. Past it detach does not
 * unplug the NICs (the warning says the VM still holds them), and gc leaves an unfinished hot-plug
 * for its next run.
 */
export const VMM_WAIT_WITHOUT_LOCKS_MS = 3_000;

/**
 * detach's and gc's wait for a busy VMM (made without the locks): VCNET_QMP_CONNECT_TIMEOUT when the
 * user set it (how long they said vcnet may wait for another QMP client, or for a Cloud Hypervisor
 * busy with another request; an unplug skipped after 3 s leaves the running VM NICs whose taps are
 * deleted), else VMM_WAIT_WITHOUT_LOCKS_MS.
 */
export function vmmWaitWithoutLocksMs(): number {
  return qmpConnectTimeoutSetMs() ?? VMM_WAIT_WITHOUT_LOCKS_MS;
}

/**
 * Which VMMs a run of withVmmWaitedWithoutLocks waits for: QEMU's QMP alone (detach, which unplugs
 * only from QEMU), or Cloud Hypervisor's API too (gc's and watch's undo of a hot-plug).
 */
export type VmmKinds = 'qemu' | 'qemu-and-clh';

/**
 * Waits, holding no lock, until the control socket of sandbox `id`'s VMM (as its record names it,
 * read without the lock) answers, for up to `timeoutMs`: QEMU's QMP greets (that connection closed
 * at once, for the next client), Cloud Hypervisor answers vmm.ping (with `kinds` 'qemu-and-clh').
 * For a caller whose own try under the lock tells what it found: whatever this finds (no record, no
 * VMM, a socket gone or still busy) it says nothing. A record from an earlier boot is left alone: the
 * socket at its path, if any, is a new VM's, which detach and gc never touch (they drop such a record
 * unread). Aborting `signal` ends the wait with its reason.
 */
export async function waitForSandboxVmm(
  id: string,
  stateDirectory: string | undefined,
  timeoutMs: number,
  kinds: VmmKinds,
  signal?: AbortSignal,
): Promise<void> {
  let hypervisor: SandboxState['hypervisor'];
  try {
    const state = new SandboxStore(id, stateDirectory).read<SandboxState>();
    if (state && earlierBootOf(state)) return;
    hypervisor = state?.hypervisor;
  } catch {
    return; // a record that cannot be read: the run under the lock says why
  }
  if (!hypervisor?.controlSocket) return;
  const { kind, controlSocket } = hypervisor;
  if (kind === 'firecracker' || (kind === 'clh' && kinds === 'qemu')) return;
  try {
    await askVmm({ kind, controlSocket }, timeoutMs, signal);
  } catch (error) {
    // What it found of the VMM is the run under the lock's to say (an error status is an answer):
    // only an abort, or a failure of vcnet's own, goes up.
    const foundOfVmm =
      error instanceof QmpConnectionError ||
      error instanceof CloudHypervisorConnectionError ||
      error instanceof CloudHypervisorApiError;
    if (!foundOfVmm) throw error;
  }
}

/**
 * Asks the VMM of `vmm` for an answer that changes nothing, for up to `timeoutMs`: QEMU's QMP greets
 * (that connection closed at once, for the next client), Cloud Hypervisor answers vmm.ping. Its
 * failure is the connect's or the ping's own error (an error status of Cloud Hypervisor is an
 * answer, thrown as CloudHypervisorApiError); aborting `signal` ends it with its reason.
 */
export async function askVmm(vmm: VmmToUnplugFrom, timeoutMs: number, signal?: AbortSignal): Promise<void> {
  const withSignal = signal ? { signal } : {};
  if (vmm.kind === 'qemu') await (await QmpClient.connect(vmm.controlSocket, { timeoutMs, ...withSignal })).close();
  else await pingCloudHypervisor(vmm.controlSocket, { timeoutMs, ...withSignal });
}

/**
 * Cloud Hypervisor's vmm.ping at `socket`. A connection closed without an answer (failure
 * 'answered': reset, ended early) is looked at again: a VMM killed while it read the ping leaves its
 * socket file, which refuses connections since, and that is thrown as the VM gone ('unreachable')
 * in place of the ping's error; a socket that still takes connections answered, in its way.
 */
export async function pingCloudHypervisor(socket: string, options: CloudHypervisorRequestOptions): Promise<void> {
  try {
    await new CloudHypervisorClient(socket).ping(options);
  } catch (error) {
    if (
      error instanceof CloudHypervisorConnectionError &&
      error.failure === 'answered' &&
      (await controlSocketGone(socket, { settle: true }))
    )
      throw new CloudHypervisorConnectionError(
        socket,
        'GET /api/v1/vmm.ping: the connection closed without an answer, and the socket refuses connections since: the VMM is gone',
        'unreachable',
        error,
      );
    throw error;
  }
}

/** A run under the locks found the VMM taken by another client, with time left to wait for it without them. */
class VmmTakenUnderLocks extends Error {
  constructor() {
    super('the VMM was taken by another client under the locks');
  }
}

/** A connect error of a QMP that is there and did not greet (held by another client), not of a VM gone. */
function qmpBusy(error: unknown): boolean {
  return causeChain(error).some((link) => link instanceof QmpConnectionError && !vmGone(link));
}

/**
 * For a run of withVmmWaitedWithoutLocks, under the locks, when its QMP connect failed with `error`:
 * a QMP another client holds while the wait has time left (before `qmpDeadline`) gives the locks back
 * (it throws; the run must have changed nothing yet), to wait for QMP without them and run again.
 * Otherwise it returns, and the run settles the error itself.
 */
export function giveLocksBackIfQmpBusy(error: unknown, qmpDeadline: number | undefined): void {
  if (qmpDeadline !== undefined && Date.now() < qmpDeadline && qmpBusy(error)) throw new VmmTakenUnderLocks();
}

/**
 * For a run of withVmmWaitedWithoutLocks, under the locks: connects to the QMP at `qmpPath`, giving
 * the handshake QMP_HANDSHAKE_UNDER_LOCK_MS. A QMP taken again by another client while the wait has
 * time left gives the locks back (giveLocksBackIfQmpBusy). Otherwise the connection, or the connect's
 * error for the run to settle: a VM gone (vmGone) holds no NIC; a QMP still held past the wait is
 * left alone (qmpHeldPastWait says so).
 */
export async function connectQmpUnderLocks(
  qmpPath: string,
  qmpDeadline: number | undefined,
): Promise<QmpClient | QmpConnectionError> {
  try {
    return await QmpClient.connect(qmpPath, { timeoutMs: QMP_HANDSHAKE_UNDER_LOCK_MS });
  } catch (error) {
    if (!(error instanceof QmpConnectionError)) throw error;
    giveLocksBackIfQmpBusy(error, qmpDeadline);
    return error;
  }
}

/** Counts one try under the locks, begun at `startedAt`, that found the VMM busy, into `wait`. */
function countTryUnderLock(wait: VmmWaitSoFar, startedAt: number): void {
  wait.triesUnderLock += 1;
  wait.msUnderLock += Date.now() - startedAt;
}

/**
 * How a run of withVmmWaitedWithoutLocks has waited for its VMM so far: from `startedAt` (before its
 * first wait without the locks) until `deadline` (undefined: no wait without them), with the tries
 * under the locks that found the VMM busy (reachVmmUnderLocks counts them, and the time they took).
 * A try under the locks follows every wait without them that ended with an answer, and takes up to
 * QMP_HANDSHAKE_UNDER_LOCK_MS or CLOUD_HYPERVISOR_PING_UNDER_LOCK_MS: the run may outlast its wait
 * by one such try, and spend several of them under the locks, which its message must say.
 */
export interface VmmWaitSoFar extends TriesUnderLock {
  readonly startedAt: number;
  readonly deadline: number | undefined;
}

/**
 * How long a wait for a VMM that did not answer by the end of it (`wait`, measured until now) took,
 * and how much of it under the sandbox's lock (`boundMs` each try; `answered`: what answered in
 * between without the lock): gc's and the watch's undo (vmmBusyPastWait), and withSandboxAndVm's.
 */
export function waitedInAll(
  wait: Pick<VmmWaitSoFar, 'startedAt' | 'triesUnderLock' | 'msUnderLock'>,
  boundMs: number,
  answered: string,
): string {
  const inAllMs = Date.now() - wait.startedAt;
  if (wait.triesUnderLock > 1) {
    return `under the sandbox's lock within ${inAllMs} ms in all, ${timeUnderLock(wait, boundMs, answered)}`;
  }
  return `within ${inAllMs} ms in all, ${wait.msUnderLock} ms of it under the sandbox's lock (at most ${boundMs} ms), the rest without it`;
}

/** Why a run left its undo when the QMP at `qmpPath` did not greet `command` (`error`) by the end of its wait (`wait`). */
export function qmpHeldPastWait(qmpPath: string, command: string, wait: VmmWaitSoFar, error: Error): string {
  const waited = waitedInAll(wait, QMP_HANDSHAKE_UNDER_LOCK_MS, 'QMP having greeted');
  return `its VM's QMP socket ${qmpPath} did not greet ${command} ${waited} (${error.message}); another client may hold it (QEMU serves one at a time: \`ss -xp | grep ${qmpPath}\` shows who)`;
}

/**
 * What a run under the locks found of the VMM it is to unplug from (reachVmmUnderLocks): it answers
 * (QEMU: `qmp`, the connection that greeted, to unplug on; the caller closes it), it is gone (not
 * running: it holds no NIC), or it did not answer by the end of the wait (`error`: left alone).
 */
export type VmmUnderLocks =
  | { outcome: 'answered'; qmp?: QmpClient }
  | { outcome: 'gone'; error: Error }
  | { outcome: 'busy'; error: Error };

/**
 * For a run of withVmmWaitedWithoutLocks (kinds 'qemu-and-clh'), under the locks, before it changes
 * anything: whether the VMM of `vmm` answers now. QEMU: its QMP connected (connectQmpUnderLocks).
 * Cloud Hypervisor: vmm.ping answered within CLOUD_HYPERVISOR_PING_UNDER_LOCK_MS (an error status
 * is an answer too; so is a reply that is not the API's, and an EACCES: the unplug says what it
 * finds). A VMM taken again by another request while the wait (`wait`) has time left gives the
 * locks back (it throws, as giveLocksBackIfQmpBusy does). Every try that finds the VMM busy is
 * counted in `wait`, for the message of a VMM still busy past it (vmmBusyPastWait).
 */
export async function reachVmmUnderLocks(vmm: VmmToUnplugFrom, wait: VmmWaitSoFar): Promise<VmmUnderLocks> {
  const startedAt = Date.now();
  if (vmm.kind === 'qemu') {
    let connected: QmpClient | QmpConnectionError;
    try {
      connected = await connectQmpUnderLocks(vmm.controlSocket, wait.deadline);
    } catch (error) {
      if (error instanceof VmmTakenUnderLocks) countTryUnderLock(wait, startedAt);
      throw error;
    }
    if (connected instanceof QmpClient) return { outcome: 'answered', qmp: connected };
    if (vmGone(connected)) return { outcome: 'gone', error: connected };
    countTryUnderLock(wait, startedAt);
    return { outcome: 'busy', error: connected };
  }
  try {
    await pingCloudHypervisor(vmm.controlSocket, { timeoutMs: CLOUD_HYPERVISOR_PING_UNDER_LOCK_MS });
    return { outcome: 'answered' };
  } catch (error) {
    const failed = cloudHypervisorPingFailure(error);
    if (failed === 'answered') return { outcome: 'answered' };
    if (failed === undefined) throw error;
    const connection = error as CloudHypervisorConnectionError;
    if (failed === 'gone') return { outcome: 'gone', error: connection };
    countTryUnderLock(wait, startedAt);
    if (wait.deadline !== undefined && Date.now() < wait.deadline) throw new VmmTakenUnderLocks();
    return { outcome: 'busy', error: connection };
  }
}

/**
 * What a failed vmm.ping (`error`) says of a Cloud Hypervisor VMM: 'answered' for an error status or
 * a reply that is not the API's (the request that follows says what it finds), 'gone' for its API
 * socket not there or refusing (vmGone), 'busy' for no answer in time (its API serves one request at
 * a time: slow or hung on another). undefined: not a failure of the ping's.
 */
export function cloudHypervisorPingFailure(error: unknown): 'answered' | 'gone' | 'busy' | undefined {
  if (error instanceof CloudHypervisorApiError) return 'answered';
  if (!(error instanceof CloudHypervisorConnectionError)) return undefined;
  if (vmGone(error)) return 'gone';
  return error.failure === 'timeout' ? 'busy' : 'answered';
}

/**
 * Why a run of withVmmWaitedWithoutLocks (gc's, watch's undo) left its undo when the VMM of `vmm` did
 * not answer `command` (`error`) by the end of its wait (`wait`, with its tries under the lock
 * counted): for QEMU, qmpHeldPastWait; for Cloud Hypervisor, cloudHypervisorPingUnanswered.
 */
export function vmmBusyPastWait(vmm: VmmToUnplugFrom, command: string, wait: VmmWaitSoFar, error: Error): string {
  if (vmm.kind === 'qemu') return qmpHeldPastWait(vmm.controlSocket, command, wait, error);
  const waited = waitedInAll(wait, CLOUD_HYPERVISOR_PING_UNDER_LOCK_MS, 'vmm.ping answered');
  return cloudHypervisorPingUnanswered(vmm.controlSocket, command, waited, error);
}

/**
 * Why a command left its work when Cloud Hypervisor's API at `socket` did not answer `command`'s
 * vmm.ping (`error`): `waited` says how long, and how much of it under the sandbox's lock.
 */
export function cloudHypervisorPingUnanswered(socket: string, command: string, waited: string, error: Error): string {
  return `its VM's Cloud Hypervisor API socket ${socket} did not answer ${command}'s vmm.ping ${waited} (${error.message}); Cloud Hypervisor answers one request at a time, so the VMM is slow or hung on another (a guest slow to take a device, another client's request, a wedged VMM): check the VM (\`ss -xp | grep ${socket}\` shows who is connected)`;
}

/**
 * Runs `underLocks` (which takes the locks and reaches the VMM under them: connectQmpUnderLocks,
 * reachVmmUnderLocks) once the VMM of sandbox `id` was waited for without the locks
 * (waitForSandboxVmm, of `kinds`), for up to `waitMs` (0: not waited for). A run that finds the VMM
 * taken again (giveLocksBackIfQmpBusy, reachVmmUnderLocks) gives the locks back before it changes
 * anything; the VMM is waited for again without them, and `underLocks` runs again from the start,
 * reading the record anew (whatever changed meanwhile is seen), until `waitMs` is spent.
 * `underLocks` gets the end of that wait (undefined without one): past it, a VMM still busy is its
 * own to settle (detach goes on without the unplug, gc leaves the record, watch the endpoint); and
 * the wait so far, for reachVmmUnderLocks to count its tries in and vmmBusyPastWait to say.
 * Aborting `signal` ends a wait without the locks with its reason: nothing is undone before them.
 */
export async function withVmmWaitedWithoutLocks<T>(
  id: string,
  stateDirectory: string | undefined,
  { waitMs, kinds }: { waitMs: number; kinds: VmmKinds },
  underLocks: (deadline: number | undefined, wait: VmmWaitSoFar) => Promise<T>,
  signal?: AbortSignal,
): Promise<T> {
  const startedAt = Date.now();
  const deadline = startedAt + waitMs;
  const wait: VmmWaitSoFar = {
    startedAt,
    deadline: waitMs > 0 ? deadline : undefined,
    triesUnderLock: 0,
    msUnderLock: 0,
  };
  if (waitMs > 0) await waitForSandboxVmm(id, stateDirectory, waitMs, kinds, signal);
  for (;;) {
    try {
      return await underLocks(wait.deadline, wait);
    } catch (error) {
      if (!(error instanceof VmmTakenUnderLocks)) throw error;
      await waitForSandboxVmm(id, stateDirectory, Math.max(1, deadline - Date.now()), kinds, signal);
    }
  }
}
