/**
 * gc's step 3b: sandbox records with endpoints whose attach never completed (a crash, or an undo the
 * kernel refused) and whose lock is free. Nobody is working on them, so gc finishes undoing what those
 * endpoints recorded, in the namespace the record names (by identity), and reports it as the real run
 * would (in a dry run: what the undo would take away). A NIC such an attach hot-plugged into the
 * sandbox's running VM is unplugged first: through QEMU's QMP, which another client may hold (QEMU
 * serves one at a time), or Cloud Hypervisor's API, which a request before gc's may hold (it answers
 * one at a time): gc waits for either without the locks, as detach does for QMP
 * (network/sandbox-vmm-wait.ts).
 */
import { errnoOf } from '../../errors.js';
import type { QmpClient } from '../../hypervisor/qmp.js';
import type { NamespaceHolders } from '../../netns/namespace-holders.js';
import { isUnfinished } from '../model/plumbing-context.js';
import type { PlumbingStep } from '../plan/types.js';
import { describeRecords, recordsShownBy } from '../plan/undo.js';
import { lockRecordedNamespace, openRecordedNetwork } from '../recorded-network.js';
import {
  reachVmmUnderLocks,
  type VmmWaitSoFar,
  vmmBusyPastWait,
  vmmWaitWithoutLocksMs,
  withVmmWaitedWithoutLocks,
} from '../sandbox-vmm-wait.js';
import { NamespaceBusyError } from '../state/namespace-lock.js';
import type { SandboxState } from '../state/records.js';
import { SandboxLockedError, SandboxStore } from '../state/store.js';
import { hasUnfinishedAttach, undoUnfinishedEndpoints, vmmToUnplugFrom } from '../unfinished-attach.js';
import { describeLockHolder, type GarbageItem, type GarbageReport } from './report.js';

/**
 * A record with endpoints whose attach never completed and whose lock is free: nobody is working on
 * it, so gc undoes what those endpoints recorded, in the namespace the record names (by identity).
 * Returns true when it left such a record because another process is changing it right now (its
 * sandbox's or its namespace's lock is taken, another client held its QEMU's QMP past gc's wait, or
 * its Cloud Hypervisor answered no vmm.ping in it): listed in `skipped` with `beingChanged`.
 */
export async function finishUnfinished(
  id: string,
  root: string,
  report: GarbageReport,
  holders: NamespaceHolders,
): Promise<boolean> {
  const store = new SandboxStore(id, root);
  // The record read without the lock, only to know whether its VMM is to be waited for: only a real
  // run's undo of a hot-plug reaches it, never a dry run, nor any other record's gc.
  let peek: SandboxState | undefined;
  try {
    peek = report.dryRun ? undefined : store.read<SandboxState>();
  } catch {
    peek = undefined; // damaged, or gone meanwhile: the run under the lock says so
  }
  const vmmWaitMs = peek && vmmToUnplugFrom(peek) ? vmmWaitWithoutLocksMs() : 0;
  try {
    return await withVmmWaitedWithoutLocks(id, root, { waitMs: vmmWaitMs, kinds: 'qemu-and-clh' }, (_deadline, wait) =>
      finishUnderLocks(store, report, holders, wait),
    );
  } catch (error) {
    if (!(error instanceof SandboxLockedError)) {
      report.skipped.push({ file: store.statePath, reason: (error as Error).message });
      return false;
    }
    // Someone is working on the sandbox right now (an attach under way, a detach, an add-iface). A
    // record with nothing unfinished is a live sandbox's; one with an unfinished attach (read as
    // it is: records are replaced whole) is left to that process, and said, as gc did not finish it.
    let current: SandboxState | undefined;
    try {
      current = store.read<SandboxState>();
    } catch {
      return false; // damaged, or gone meanwhile: that process settles it
    }
    if (!current || !hasUnfinishedAttach(current)) return false;
    report.skipped.push({
      file: store.statePath,
      reason: `the unfinished attach of sandbox ${id} was left as it is: ${describeLockHolder(Number(error.value))} is changing it right now (it holds the sandbox's lock); run gc again once that is done`,
      beingChanged: true,
    });
    return true;
  }
}

/**
 * finishUnfinished's one run under the sandbox's lock and its namespace's. Its VMM (`vmmWait`: the
 * wait for it so far, which counts this run's try under the locks) is reached before anything is
 * changed or reported (reachVmmUnderLocks: QEMU's QMP greets within QMP_HANDSHAKE_UNDER_LOCK_MS, Cloud
 * Hypervisor answers vmm.ping within CLOUD_HYPERVISOR_PING_UNDER_LOCK_MS): taken by another client
 * while the wait has time left, the locks go back and the run starts again from a fresh read; still
 * taken past it, the record is left for gc's next run.
 */
async function finishUnderLocks(
  store: SandboxStore,
  report: GarbageReport,
  holders: NamespaceHolders,
  vmmWait: VmmWaitSoFar,
): Promise<boolean> {
  const id = store.id;
  return store.withLockIfRecorded(
    async () => {
      const current = store.read<SandboxState>();
      if (!current) return false;
      // An attach killed before its last write (its lock is free now): all of it goes, the
      // endpoints it finished too, as nothing was ever handed to a VM.
      const killedAttach = current.attaching === true;
      if (!hasUnfinishedAttach(current)) return false;
      // Opened as detach opens it: a path gone or re-used by another namespace is followed to the
      // recorded namespace through whatever holds it, never acted on in the namespace at that path.
      const recorded = openRecordedNetwork(current, id, store.statePath, holders);
      let qmp: QmpClient | undefined;
      try {
        // The namespace's lock, as detach and vcnet-cni DEL take it before their undo, without waiting:
        // another command changing vcnet's link group in it right now (a detach, a new attach) may
        // be making or taking what this record names, so gc leaves the record for its next run.
        try {
          await lockRecordedNamespace(recorded, current, 0);
        } catch (error) {
          if (!(error instanceof NamespaceBusyError)) throw error;
          report.skipped.push({
            file: store.statePath,
            reason: `the unfinished attach of sandbox ${id} was left as it is: its namespace ${current.namespace.path} is being changed right now by ${describeLockHolder(error.holder)} (an attach, detach or vcnet-cni ADD or DEL); run gc again once that is done`,
            beingChanged: true,
          });
          return true;
        }
        // A live sandbox's unfinished hot-plug may have put its NIC in the VM: its VMM first, before
        // anything is changed or reported (a run that gives the locks back for it starts again).
        const vmm = report.dryRun ? undefined : vmmToUnplugFrom(current);
        const reached = vmm === undefined ? undefined : await reachVmmUnderLocks(vmm, vmmWait);
        qmp = reached?.outcome === 'answered' ? reached.qmp : undefined;
        // A VM gone holds no NIC: the host side goes alone.
        const vmGoneAtConnect = reached?.outcome === 'gone';
        if (vmm !== undefined && reached?.outcome === 'busy') {
          report.skipped.push({
            file: store.statePath,
            reason: `the unfinished attach of sandbox ${id} was left as it is: ${vmmBusyPastWait(vmm, 'gc', vmmWait, reached.error)}; nothing was changed: run gc again once it is free (to wait longer, VCNET_QMP_CONNECT_TIMEOUT=<seconds>)`,
            beingChanged: true,
          });
          return true;
        }
        const { network } = recorded;
        const unfinished = network.endpoints().filter((endpoint) => killedAttach || isUnfinished(endpoint.plumbing));
        // What the attach journaled ahead and never got to is not said to be removed (plan-detach.ts),
        // nor what was already gone: only what the undo takes away (in a dry run: would take away).
        const plan = await network.planRemoveEndpoints(unfinished);
        const neverMade = new Set(plan.neverMade);
        // Kept before the undo, which forgets the records of what went.
        const recordsOf = new Map(unfinished.map((endpoint) => [endpoint, [...endpoint.records]]));
        const describe = (endpoint: (typeof unfinished)[number], undid: ReadonlySet<PlumbingStep>): GarbageItem => {
          const records = recordsOf.get(endpoint) ?? [];
          const listed = records.filter((record) => undid.has(record));
          const name = endpoint.properties.link.name;
          const nothingMade = listed.length === 0 && records.every((record) => neverMade.has(record));
          return {
            kind: 'state',
            namespacePath: current.namespace.path,
            name: id,
            file: store.statePath,
            detail:
              listed.length > 0
                ? `unfinished attach of ${name}: ${describeRecords(listed).join(', ')}`
                : nothingMade
                  ? `unfinished attach of ${name}, stopped before it made anything`
                  : `unfinished attach of ${name}: nothing of it left to undo`,
            interface: name,
            ...(nothingMade ? { nothingMade: true as const } : {}),
          };
        };
        if (killedAttach && unfinished.length === 0) {
          report.removed.push({
            kind: 'state',
            namespacePath: current.namespace.path,
            name: id,
            file: store.statePath,
            detail: 'the record of an attach killed before it made anything',
          });
        }
        if (report.dryRun) {
          // The plan's own steps, as the real run reports what they undid: what is already gone (a
          // qdisc or filter journaled ahead and never made, one deleted by hand) the plan left out.
          const wouldUndo = new Set(plan.steps.flatMap(recordsShownBy));
          report.removed.push(...unfinished.map((endpoint) => describe(endpoint, wouldUndo)));
          return false;
        }
        // A live sandbox's unfinished hot-plug may have put its NIC in the VM: unplugged first (on the
        // QMP connection greeted above), and kept (with its record) while the VM holds it. A killed
        // attach handed nothing to a VM, and a VM gone took its NICs along.
        const undo = await undoUnfinishedEndpoints(
          network,
          unfinished,
          killedAttach || vmGoneAtConnect ? undefined : current.hypervisor,
          qmp,
        );
        const undid = new Set(undo.undid ?? []);
        // An endpoint the kernel refused to undo in part stays in the network (and in the record).
        const remaining = new Set(network.endpoints());
        // A live sandbox's unfinished add-iface: only that endpoint went; the record stays, and says so.
        const recordStays = remaining.size > 0 ? ` (the record of sandbox ${id} stays, without it)` : '';
        for (const endpoint of unfinished) {
          if (remaining.has(endpoint)) continue;
          const item = describe(endpoint, undid);
          report.removed.push({ ...item, detail: `${item.detail}${recordStays}` });
        }
        for (const failure of undo.failures) {
          report.failures.push({
            namespacePath: current.namespace.path,
            reason: failure.message,
            errno: errnoOf(failure),
          });
        }
        for (const endpoint of unfinished) {
          const plugged = undo.stillPlugged?.find((entry) => entry.endpoint === endpoint.name);
          if (!plugged || !remaining.has(endpoint)) continue;
          report.failures.push({
            namespacePath: current.namespace.path,
            reason: `unfinished attach of ${endpoint.properties.link.name} (sandbox ${id}): ${plugged.deviceId} may still be in the VM, so its record and plumbing stay (gc tries again; \`vcnet del-iface\` removes it once the VM lets go): ${plugged.error.message}`,
          });
        }
        if (network.endpoints().length === 0) store.remove();
        else store.write({ ...current, network: network.save() });
        return false;
      } finally {
        await qmp?.close();
        await recorded.close();
      }
    },
    0,
    { operation: 'collectGarbage' },
  );
}
