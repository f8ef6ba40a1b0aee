/**
 * The journaled attach/detach core every operation that changes a pod namespace for a VM goes through:
 * the CLI, the CNI plugin (one record per container interface), the kata-network commands and
 * `vcnet watch` alike. The network layer plans and applies (network/plan/); this file keeps the record
 * in step through a RecordKeeper:
 *
 *   the intent is written before the first change and every step before it is sent (the journal);
 *   a failed attach whose undo was complete leaves no record (or the record as it was);
 *   a failed attach or detach whose undo was refused keeps a record of exactly what is left, which
 *   `vcnet detach` (again) or `vcnet gc` finish.
 */
import { causeChain, type DetachFinishedBy, DetachIncompleteError, RollbackIncompleteError } from '../errors.js';
import { CloudHypervisorConnectionError } from '../hypervisor/cloud-hypervisor-client.js';
import type { HotplugTarget } from '../hypervisor/device.js';
import { DeviceNotHotpluggableError, QmpConnectionError } from '../hypervisor/errors.js';
import type { Endpoint } from '../network/endpoint/endpoint.js';
import { AttachError, completedAttachHandedOver } from '../network/model/plumbing-context.js';
import type { AddEndpointsOptions, Network } from '../network/network.js';
import { LinkNameTakenError } from '../network/plan/plan-attach.js';
import {
  type AttachOperation,
  describeRecords,
  recordOfLeftNotUpdated,
  type UndoReport,
  undoLeftSome,
} from '../network/plan/undo.js';
import { stateDirectoryFlag } from '../network/state/default-directories.js';

/** How an operation keeps its record: `persist` writes what the network holds now, `discard` what it means to have none. */
export interface RecordKeeper {
  persist(): void;
  /**
   * Told just before the write that records a finished attach (`true`: attachSandbox clears
   * `attaching`), and `false` when that write failed and the attach is undone: what its undo leaves
   * is then recorded as an unfinished attach's again, which gc finishes.
   */
  finishing?(finished: boolean): void;
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
    record.finishing?.(true);
    record.persist();
  } catch (error) {
    // The attach is done but its final record could not be written (disk full, I/O error): an
    // attach nobody can see is undone, as any other failed one.
    record.finishing?.(false);
    throw await undoCompletedAttach(network, added, record, error as Error, options.hotplug, options.operation);
  }
  return added;
}

/**
 * Undoes `added`, an attach attachRecorded completed, after `error` ended what came after it (its
 * final record, or a caller's own step that records more, as vcnet-cni's device): what nobody was
 * told is attached is not left made. Returns the error to throw: `error`, or RollbackIncompleteError
 * when the undo was refused (the record then keeps what is left).
 */
export async function undoCompletedAttach(
  network: Network,
  added: readonly Endpoint[],
  record: RecordKeeper,
  error: Error,
  hotplug?: HotplugTarget,
  operation?: AttachOperation,
): Promise<Error> {
  const { failures, left, notChecked, handedOver } = await network.undoAttached(added, hotplug, operation);
  if (left.length > 0) {
    // The record keeps exactly what is left (the last one written names everything the attach made,
    // which detach and gc would take for there). A write refused again leaves that one, and says so.
    try {
      record.persist();
    } catch (writeError) {
      failures.push(recordOfLeftNotUpdated(writeError));
    }
    // Said as a rollback during the attach says it: what was seen left, what could not be looked at,
    // and what another tool holds now (in no record).
    return undoLeftSome('attach', error, { failures, left, notChecked, handedOver });
  }
  if (network.endpoints().length === 0) record.discard();
  else persistIfPossible(record);
  // Everything went but what another tool holds now: the error says that stays, as an attach's does.
  if (handedOver.length > 0) {
    return completedAttachHandedOver(
      added.map((endpoint) => endpoint.properties.link.name),
      error,
      handedOver,
    );
  }
  return error;
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
    // Said apart, as the rollback says them: what was seen still there, and what could not be looked at.
    const notChecked = report.notChecked ?? [];
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
          ...report.left.filter((step) => !notChecked.includes(step)),
        ]),
      ],
      record.path,
      stillPlugged.length > 0 ? stillPluggedHint(record.path, stillPlugged, unreachable, options.sandbox) : undefined,
      [...report.failures, ...stillPlugged.map((entry) => entry.error)],
      options.finishedBy,
      describeRecords(notChecked),
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
      [...refused.leftObjects, ...refused.notChecked],
      refused.hint,
      undefined,
      refused.notChecked,
    );
  }
  throw failure;
}

/**
 * `error` with the LinkNameTakenError it is (or an AttachError's cause) replaced by `replace`'s,
 * its cause carried over, so the cause chain lists it once; any other error as it is.
 */
export function replacingTakenName(
  error: unknown,
  replace: (taken: LinkNameTakenError) => LinkNameTakenError,
): unknown {
  if (error instanceof LinkNameTakenError) return replace(error);
  if (error instanceof AttachError && error.cause instanceof LinkNameTakenError)
    return new AttachError(
      String(error.value),
      replace(error.cause),
      error.rolledBack,
      undefined,
      error.handedOver,
      error.alsoUndone,
    );
  return error;
}
