/**
 * Waits for a sandbox QEMU's QMP made without the sandbox lock (QEMU serves one QMP client at a time,
 * and waiting for another one under the lock made every other command on the sandbox time out on
 * it). Apart from sandbox-interfaces.ts (withSandboxAndVm): the CLI loads this module for every
 * command (`vcnet detach`), and that one brings the agent's protobuf code.
 */
import { QmpConnectionError } from '../hypervisor/errors.js';
import { QmpClient, qmpConnectTimeoutSetMs } from '../hypervisor/qmp.js';
import { earlierBootOf } from '../network/state/boot-id.js';
import type { SandboxState } from '../network/state/records.js';
import { SandboxStore } from '../network/state/store.js';

/**
 * How long a QMP handshake made under the sandbox lock waits once QMP was waited for without it.
 * QEMU greets within milliseconds when no other client holds QMP (at most 52 ms measured, a TCG
 * guest booting at load 10), so a longer wait is for another client that took QMP in between.
 */
export const QMP_HANDSHAKE_UNDER_LOCK_MS = 1_000;

/**
 * How long detach waits for the VM's QMP when the user set no VCNET_QMP_CONNECT_TIMEOUT: detach must
 * go ahead when the VM is wedged (a crashed runtime's leftover), so it waits less than other
 * commands; a VM that is gone refuses at once. Past it the NICs are not unplugged (the warning says
 * the VM still holds them).
 */
export const DETACH_QMP_WAIT_MS = 3_000;

/**
 * detach's wait for a busy QMP (made without the locks): VCNET_QMP_CONNECT_TIMEOUT when the user set
 * it (how long they said vcnet may wait for another QMP client; an unplug skipped after 3 s leaves the
 * running VM NICs whose taps are deleted), else DETACH_QMP_WAIT_MS.
 */
export function detachQmpWaitMs(): number {
  return qmpConnectTimeoutSetMs() ?? DETACH_QMP_WAIT_MS;
}

/**
 * Waits, holding no lock, until the QMP socket of sandbox `id`'s QEMU (as its record names it, read
 * without the lock) greets, for up to `timeoutMs`; closes that connection at once, for the next
 * client. For a caller whose own connect under the lock is best effort (detachSandbox's connectHotplug): whatever
 * this finds (no record, no QEMU, a QMP gone or still busy) it says nothing, and that connect tells.
 * A record from an earlier boot is left alone: the socket at its path, if any, is a new VM's, which
 * detach never touches (it drops such a record unread). Aborting `signal` ends the wait with its reason.
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
    return; // a record that cannot be read: detach says why, under the lock
  }
  if (!qmpPath) return;
  try {
    await (await QmpClient.connect(qmpPath, { timeoutMs, ...(signal ? { signal } : {}) })).close();
  } catch (error) {
    if (!(error instanceof QmpConnectionError)) throw error;
  }
}
