/**
 * detachSandbox: undoes what attach recorded, from the state file alone, in the namespace the record
 * names (opened by identity: recorded-network.ts), through the journaled core (recorded.ts); and the
 * refusal that is detach's own. What still uses the sandbox (a VM, a holder of the namespace) is said
 * by still-in-use.ts, as vcnet-cni's DEL says it.
 */
import { functionOption, lockTimeoutOption, numberOption, optionsArgument, signalOption } from '../arguments.js';
import type { HotplugTarget } from '../hypervisor/device.js';
import { NamespaceGoneError } from '../netns/namespace-identity.js';
import { closeRecordQueueFds } from '../network/endpoint/held-queue-fds.js';
import { VCNET_LINK_GROUP } from '../network/plan/plan-attach.js';
import type { UndoReport } from '../network/plan/undo.js';
import { lockRecordedNamespace, openRecordedNetwork, type RecordedNetwork } from '../network/recorded-network.js';
import {
  giveLocksBackIfQmpBusy,
  QMP_HANDSHAKE_UNDER_LOCK_MS,
  vmmWaitWithoutLocksMs,
  withVmmWaitedWithoutLocks,
} from '../network/sandbox-vmm-wait.js';
import { type EarlierBoot, RecordFromEarlierBootError } from '../network/state/boot-id.js';
import { recordsOfNamespace } from '../network/state/owners.js';
import { StateInvalidError } from '../network/state/record-envelope.js';
import type { SandboxState } from '../network/state/records.js';
import { SandboxStore } from '../network/state/store.js';
import { shellWord } from '../shell-word.js';
import { detachRecorded } from './recorded.js';
import { noticeStillInUse } from './still-in-use.js';

/** What detachSandbox did: whether it found the sandbox, the undo's report, and how it reached the namespace. */
export interface DetachResult {
  id: string;
  found: boolean;
  report?: UndoReport;
  /** The recorded namespace no longer exists: the record was dropped, nothing else was done. */
  namespaceGone?: string;
  /**
   * With namespaceGone: the record was written in an earlier boot (the boot ids), so it names nothing
   * that exists; dropped without looking at its namespace, processes or sockets, nothing undone.
   */
  fromEarlierBoot?: EarlierBoot;
  /**
   * The recorded path was gone but the namespace was not (a process still ran in it): detach worked
   * through this path instead (a /proc/PID/ns/net), and `heldBy` is that process.
   */
  namespaceHeldAt?: string;
  heldBy?: number;
  /** With namespaceHeldAt: the recorded path was not gone but names another namespace now (left untouched). */
  namespacePathReused?: boolean;
  /**
   * With namespaceHeldAt: it is a socket made in the namespace, or a tap of it, that `heldBy` holds
   * from outside it (/proc/PID/fd/N): detach entered the namespace that fd belongs to (SIOCGSKNS, TUNGETDEVNETNS).
   */
  namespaceHeldThrough?: 'socket' | 'tap';
}

/** What detachSandbox tells its connectHotplug. */
export interface DetachHotplugConnect {
  /**
   * The bound to give a QMP connect (`QmpClient.connect(socket, { timeoutMs })`): QMP was waited for
   * just before, without the locks, so QEMU greets at once unless another client took it meanwhile.
   */
  qmpHandshakeTimeoutMs: number;
}

/** detachSandbox's options. */
export interface DetachSandboxOptions {
  stateDirectory?: string;
  /**
   * What unplugs the running VM's NICs before their plumbing goes; undefined, or a failure, and the
   * NICs are left in the VM (the notice says which device the VM still holds). Called under the
   * sandbox's and the namespace's locks, after detach waited for the recorded QEMU's QMP without
   * them (`qmpWaitMs`). A QmpConnectionError of a QMP that did not greet (another client took it
   * in between) gives the locks back: detach waits again and runs again from the start, until
   * `qmpWaitMs` is spent.
   */
  connectHotplug?: (state: SandboxState, connect: DetachHotplugConnect) => Promise<HotplugTarget | undefined>;
  lockTimeoutMs?: number;
  /**
   * How long to wait, without the locks, for the QMP socket of the sandbox's QEMU to greet before
   * connectHotplug (only with connectHotplug, for a record naming a QEMU socket). Default
   * VCNET_QMP_CONNECT_TIMEOUT seconds when set, else 3000 (a wedged VM must not keep detach
   * waiting); 0 for none (a caller that holds QMP itself and hands its connection to connectHotplug).
   */
  qmpWaitMs?: number;
  /** As attachSandbox's: honoured while waiting for QMP and the lock, and before anything is undone. */
  signal?: AbortSignal;
}

/**
 * Undoes what attach recorded, from the state file alone, in the namespace the record names (checked
 * by identity: a path that now names another namespace is refused). An unknown sandbox is not an
 * error; a record whose namespace is gone is dropped, and the result says so. Throws
 * `SandboxLockedError` or `NamespaceBusyError` when another call holds the sandbox or namespace
 * longer than `lockTimeoutMs`.
 *
 * @example
 * ```ts
 * import { detachSandbox } from 'vcnet';
 *
 * const result = await detachSandbox('sb1', { stateDirectory: '/run/vcnet/sandboxes' });
 * if (!result.found) console.log('sb1 was not attached');
 * else console.log(`${result.report?.undone ?? 0} change(s) undone`);
 * ```
 */
export async function detachSandbox(id: string, options: DetachSandboxOptions = {}): Promise<DetachResult> {
  options = optionsArgument(options, 'options', [
    'stateDirectory',
    'connectHotplug',
    'lockTimeoutMs',
    'qmpWaitMs',
    'signal',
  ]);
  lockTimeoutOption(options.lockTimeoutMs);
  signalOption(options.signal);
  functionOption(options.connectHotplug, 'connectHotplug');
  numberOption(options.qmpWaitMs, 'qmpWaitMs', { min: 0, max: 3_600_000, integer: false, unit: 'milliseconds' });
  // QEMU serves one QMP client at a time: a busy QMP is waited for before the locks, which keep every
  // other command on the sandbox (and attaches in its namespace) waiting while they are held.
  const qmpWaitMs = options.connectHotplug ? (options.qmpWaitMs ?? vmmWaitWithoutLocksMs()) : 0;
  return withVmmWaitedWithoutLocks(
    id,
    options.stateDirectory,
    { waitMs: qmpWaitMs, kinds: 'qemu' },
    (qmpDeadline) => detachUnderLocks(id, options, qmpDeadline),
    options.signal,
  );
}

/**
 * detachSandbox's one run under the locks. `qmpDeadline`: until when a QMP that connectHotplug found
 * busy is waited for without the locks (giveLocksBackIfQmpBusy) instead of going ahead without an unplug.
 */
async function detachUnderLocks(
  id: string,
  options: DetachSandboxOptions,
  qmpDeadline: number | undefined,
): Promise<DetachResult> {
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
        if (error instanceof RecordFromEarlierBootError) {
          // Nothing it names is this boot's: the record alone goes.
          store.remove();
          return { id, found: true, namespaceGone: state.namespace.path, fromEarlierBoot: error.earlier };
        }
        // Everything attach made lived in that namespace and went with it; so do this process's queue fds.
        closeRecordQueueFds(store.statePath);
        store.remove();
        return { id, found: true, namespaceGone: state.namespace.path };
      }
      const { network, heldElsewhere } = recorded;
      try {
        // From before its look at the namespace to its last change: no attach or vcnet-cni ADD adds a
        // link to vcnet's group in between, which the undo's one group delete would take along.
        await lockRecordedNamespace(recorded, state, options.lockTimeoutMs, { signal: options.signal });
        if (state.network.endpoints.length === 0) await refuseEmptyRecordBesideLinks(recorded, state, store);
        // This process's own queue fds go now: whatever still holds a device after is someone else.
        closeRecordQueueFds(store.statePath);
        // A running VM gives its NICs back first (best effort: a dead VM holds nothing). Before
        // anything is undone: a run given up here for a busy QMP has changed nothing but this
        // process's queue fds, closed above, which a run again would close all the same.
        const hotplug = await options
          .connectHotplug?.(state, { qmpHandshakeTimeoutMs: QMP_HANDSHAKE_UNDER_LOCK_MS })
          .catch((error: unknown) => {
            giveLocksBackIfQmpBusy(error, qmpDeadline);
            return undefined;
          });
        await noticeStillInUse(
          recorded,
          {
            operation: 'detach',
            sandbox: id,
            named: `sandbox ${id}`,
            madeBy: 'attach',
            stopTheVm: 'Stop the VM first',
            namespacePath: state.namespace.path,
          },
          hotplug ? { controlSocket: state.hypervisor?.controlSocket } : undefined,
        );
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
                ...(heldElsewhere.through !== undefined ? { namespaceHeldThrough: heldElsewhere.through } : {}),
              }
            : {}),
        };
      } finally {
        // Settled only once the socket's fds are closed too: the last link deletion went out on a pool
        // thread, whose end is reported after its answer was read.
        await recorded.close();
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
  // Through the network's own socket: the detach's one socket in the namespace.
  const { links } = await recorded.network.scan(['links']);
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
