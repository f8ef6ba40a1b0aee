/**
 * detachSandbox: undoes what attach recorded, from the state file alone, in the namespace the record
 * names (opened by identity: recorded-network.ts), through the journaled core (recorded.ts); and the
 * refusal and notice that are detach's own.
 */
import { functionOption, lockTimeoutOption, optionsArgument, signalOption } from '../arguments.js';
import { channels, publish } from '../diagnostics.js';
import type { Link } from '../netlink/codec/link.js';
import { NetlinkHandle } from '../netlink/handle.js';
import { NamespaceGoneError } from '../netns/namespace-identity.js';
import type { HotplugTarget } from '../network/endpoint/endpoint.js';
import { VCNET_LINK_GROUP } from '../network/plan/plan-attach.js';
import type { UndoReport } from '../network/plan/undo.js';
import { recordsOfNamespace } from '../network/state/owners.js';
import { StateInvalidError } from '../network/state/record-envelope.js';
import type { SandboxState } from '../network/state/records.js';
import { SandboxStore } from '../network/state/store.js';
import { shellWord } from '../shell-word.js';
import { heldDevices } from './held-devices.js';
import { detachRecorded } from './recorded.js';
import { lockRecordedNamespace, openRecordedNetwork, type RecordedNetwork } from './recorded-network.js';

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
  const handle = NetlinkHandle.open(recorded.namespace.entryPath);
  let links: Link[];
  try {
    links = await handle.links();
  } finally {
    await handle.close();
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
