/**
 * Waits for a sandbox QEMU's QMP made without the sandbox's and its namespace's locks (QEMU serves
 * one QMP client at a time, and waiting for another one under the locks made every other command on
 * the sandbox time out on them). detach (sandbox/detach.ts) and gc's undo of an unfinished hot-plug
 * (gc/unfinished.ts) run their work under the locks through withQmpWaitedWithoutLocks; add-iface,
 * del-iface, watch and update-routes through withSandboxAndVm (sandbox/sandbox-interfaces.ts), which
 * gives QMP the same QMP_HANDSHAKE_UNDER_LOCK_MS under the lock. Apart from that one: the CLI loads
 * this module for every command (`vcnet detach`, `vcnet gc`), and that one brings the agent's
 * protobuf code.
 */
import { causeChain } from '../errors.js';
import { QmpConnectionError } from '../hypervisor/errors.js';
import { QmpClient, qmpConnectTimeoutSetMs } from '../hypervisor/qmp.js';
import { earlierBootOf } from './state/boot-id.js';
import type { SandboxState } from './state/records.js';
import { SandboxStore } from './state/store.js';
import { vmGone } from './unfinished-attach.js';

/**
 * How long a QMP handshake made under the sandbox lock waits once QMP was waited for without it.
 * QEMU greets within milliseconds when no other client holds QMP (at most 52 ms measured, a TCG
 * guest booting at load 10), so a longer wait is for another client that took QMP in between.
 */
export const QMP_HANDSHAKE_UNDER_LOCK_MS = 1_000;

/**
 * How long detach and gc wait for the VM's QMP when the user set no VCNET_QMP_CONNECT_TIMEOUT: they
 * must go ahead when the VM is wedged (a crashed runtime's leftover), so they wait less than other
 * commands; a VM that is gone refuses at once. Past it detach does not unplug the NICs (the warning
 * says the VM still holds them), and gc leaves an unfinished hot-plug for its next run.
 */
export const QMP_WAIT_WITHOUT_LOCKS_MS = 3_000;

/**
 * detach's and gc's wait for a busy QMP (made without the locks): VCNET_QMP_CONNECT_TIMEOUT when the
 * user set it (how long they said vcnet may wait for another QMP client; an unplug skipped after 3 s
 * leaves the running VM NICs whose taps are deleted), else QMP_WAIT_WITHOUT_LOCKS_MS.
 */
export function qmpWaitWithoutLocksMs(): number {
  return qmpConnectTimeoutSetMs() ?? QMP_WAIT_WITHOUT_LOCKS_MS;
}

/**
 * Waits, holding no lock, until the QMP socket of sandbox `id`'s QEMU (as its record names it, read
 * without the lock) greets, for up to `timeoutMs`; closes that connection at once, for the next
 * client. For a caller whose own connect under the lock tells what it found: whatever this finds (no
 * record, no QEMU, a QMP gone or still busy) it says nothing. A record from an earlier boot is left
 * alone: the socket at its path, if any, is a new VM's, which detach and gc never touch (they drop
 * such a record unread). Aborting `signal` ends the wait with its reason.
 */
export async function waitForSandboxQmp(
  id: string,
  stateDirectory: string | undefined,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<void> {
  let qmpPath: string | undefined;
  try {
    const state = new SandboxStore(id, stateDirectory).read<SandboxState>();
    if (state && earlierBootOf(state)) return;
    qmpPath = state?.hypervisor?.kind === 'qemu' ? state.hypervisor.controlSocket : undefined;
  } catch {
    return; // a record that cannot be read: the run under the lock says why
  }
  if (!qmpPath) return;
  try {
    await (await QmpClient.connect(qmpPath, { timeoutMs, ...(signal ? { signal } : {}) })).close();
  } catch (error) {
    if (!(error instanceof QmpConnectionError)) throw error;
  }
}

/** A run under the locks found QMP taken by another client, with time left to wait for it without them. */
class QmpTakenUnderLocks extends Error {
  constructor() {
    super('QMP taken by another client under the locks');
  }
}

/** A connect error of a QMP that is there and did not greet (held by another client), not of a VM gone. */
function qmpBusy(error: unknown): boolean {
  return causeChain(error).some((link) => link instanceof QmpConnectionError && !vmGone(link));
}

/**
 * For a run of withQmpWaitedWithoutLocks, under the locks, when its QMP connect failed with `error`:
 * a QMP another client holds while the wait has time left (before `qmpDeadline`) gives the locks back
 * (it throws; the run must have changed nothing yet), to wait for QMP without them and run again.
 * Otherwise it returns, and the run settles the error itself.
 */
export function giveLocksBackIfQmpBusy(error: unknown, qmpDeadline: number | undefined): void {
  if (qmpDeadline !== undefined && Date.now() < qmpDeadline && qmpBusy(error)) throw new QmpTakenUnderLocks();
}

/**
 * For a run of withQmpWaitedWithoutLocks, under the locks: connects to the QMP at `qmpPath`, giving
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

/** Why a run left its undo when the QMP at `qmpPath` did not greet `command` (`error`) by the end of its wait of `waitMs`. */
export function qmpHeldPastWait(qmpPath: string, command: string, waitMs: number, error: Error): string {
  return `its VM's QMP socket ${qmpPath} did not greet ${command} within ${Math.max(waitMs, QMP_HANDSHAKE_UNDER_LOCK_MS)} ms in all, at most ${QMP_HANDSHAKE_UNDER_LOCK_MS} ms of it under the sandbox's lock (${error.message}); another client may hold it (QEMU serves one at a time: \`ss -xp | grep ${qmpPath}\` shows who)`;
}

/**
 * Runs `underLocks` (which takes the locks and connects to QMP under them, giving the handshake
 * QMP_HANDSHAKE_UNDER_LOCK_MS) once the QMP of sandbox `id`'s QEMU was waited for without the locks,
 * for up to `waitMs` (0: not waited for). A run that finds QMP taken again (giveLocksBackIfQmpBusy)
 * gives the locks back before it changes anything; QMP is waited for again without them, and
 * `underLocks` runs again from the start, reading the record anew (whatever changed meanwhile is
 * seen), until `waitMs` is spent. `underLocks` gets the end of that wait (undefined without one):
 * past it, a QMP still busy is its own to settle (detach goes on without the unplug, gc leaves the record).
 * Aborting `signal` ends a wait without the locks with its reason: nothing is undone before them.
 */
export async function withQmpWaitedWithoutLocks<T>(
  id: string,
  stateDirectory: string | undefined,
  waitMs: number,
  underLocks: (qmpDeadline: number | undefined) => Promise<T>,
  signal?: AbortSignal,
): Promise<T> {
  const deadline = Date.now() + waitMs;
  if (waitMs > 0) await waitForSandboxQmp(id, stateDirectory, waitMs, signal);
  for (;;) {
    try {
      return await underLocks(waitMs > 0 ? deadline : undefined);
    } catch (error) {
      if (!(error instanceof QmpTakenUnderLocks)) throw error;
      await waitForSandboxQmp(id, stateDirectory, Math.max(1, deadline - Date.now()), signal);
    }
  }
}
