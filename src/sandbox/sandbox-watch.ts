/**
 * `vcnet watch`: keeps a sandbox's VM in step with its pod namespace. A new interface is attached
 * (and hot-plugged and configured when the VM runs), a deleted one is unplugged and its plumbing
 * removed, and address, route and MTU changes are pushed to the guest agent (route MTU included).
 * Each change set is applied under the sandbox lock and recorded, like the kata-network commands.
 */

import { existsSync, statSync } from 'node:fs';
import { onAbort } from '../abort-listeners.js';
import { AgentConnectError } from '../agent/errors.js';
import { functionOption, numberOption, optionsArgument, signalOption } from '../arguments.js';
import { channels, publish, reportNotice } from '../diagnostics.js';
import { classifyError, type ErrorCode, hintFromCause, isTransientFailure } from '../errors.js';
import { controlSocketGone } from '../hypervisor/control-socket-probe.js';
import { defaultQmpConnectTimeoutMs } from '../hypervisor/qmp.js';
import { LinkNotFoundError } from '../netlink/errors.js';
import { pastedCommandIn } from '../netns/held-device-fds.js';
import { NamespaceGoneError, type OpenedNamespace, openRecordedNamespace } from '../netns/namespace-identity.js';
import { classifyInterface } from '../network/endpoint/create-endpoint.js';
import type { Endpoint } from '../network/endpoint/endpoint.js';
import { type GuestRoute, generateGuestNetwork } from '../network/guest.js';
import {
  DEFAULT_DEBOUNCE_MS,
  MAX_RETRY_DELAY_MS,
  type NamespaceChange,
  NamespaceWatcher,
  retryDelayMs,
} from '../network/namespace-watcher.js';
import type { Network } from '../network/network.js';
import type { NetworkInfo } from '../network/network-info.js';
import {
  reachVmmUnderLocks,
  type VmmWaitSoFar,
  vmmBusyPastWait,
  withVmmWaitedWithoutLocks,
} from '../network/sandbox-vmm-wait.js';
import { hasConfiguredAddress, linksToAttach } from '../network/scan.js';
import { refuseEarlierBoot } from '../network/state/boot-id.js';
import { stateDirectoryFlag } from '../network/state/default-directories.js';
import type { GuestPending, SandboxState } from '../network/state/records.js';
import { SandboxStore } from '../network/state/store.js';
import {
  notUndoneReason,
  undoUnfinishedEndpoints,
  unfinishedEndpoints,
  vmGone,
  vmmToUnplugFrom,
} from '../network/unfinished-attach.js';
import { macvtapLinkRefusedHere, refusedMacvtapAdvice } from '../network/user-namespace.js';
import { shellWord } from '../shell-word.js';
import { testSeam, waitThroughSeam } from '../test-seams.js';
import { AttachRetries } from './attach-retry.js';
import { GUEST_PUSH_TIMEOUT_MS, guestPendingEntry, isOwnEntry, withoutEntries } from './guest-pending.js';
import { pushEndpoints, recordedRoutesAfter } from './guest-push.js';
import { heldDevices } from './held-devices.js';
import { explainTakenHotplugId } from './hotplug-id-taken.js';
import { refuseRunningFirecracker, type VirtualMachine } from './hypervisor-connection.js';
import { attachRecorded, detachRecorded } from './recorded.js';
import {
  newIndexOptions,
  SandboxNotFoundError,
  sandboxRecordKeeper,
  sendRouteSetIfChanged,
  withSandbox,
  withSandboxAndVm,
} from './sandbox-interfaces.js';
import { TRAFFIC_CONTROL_RETRIES, TrafficControlRetry, trafficControlRetryWindowMs } from './tc-repair-retry.js';
import { endpointsToPush } from './unplug-unfinished.js';
import { mergeChange, watchStartView } from './watch-start.js';

/**
 * What one change set of a watch did: the pod interfaces added, removed and updated, and those that could not
 * be attached.
 */
export interface WatchSummary {
  added: string[];
  removed: string[];
  updated: string[];
  /**
   * New interfaces that could not be attached (each on its own: the others went ahead), with the code
   * of what decided (classifyError), the message and its hint. Retried with the next change, except
   * a link `refused` for what it is (WatchFailure).
   */
  failed: WatchFailure[];
  /**
   * Endpoints whose tap or macvtap (vcnet's, recorded) went away from the namespace while they stay
   * attached: their VM NIC has no backend. Only present when there are some.
   */
  lostDevices?: Array<{ endpoint: string; device: string; message: string }>;
  /** New links not attached because the sandbox had maxEndpoints endpoints; left alone from then on. Only present when there are some. */
  overLimit?: string[];
  /**
   * tc objects vcnet made for attached endpoints (ingress qdiscs, redirect filters, htb rate limits)
   * that someone else deleted: `restored` made again as the record has them; `taken` left alone, as
   * another tool's object holds the place now; `failed` could not be made again. Each is also a
   * notice (the message says what to do). Only present when there are some.
   */
  trafficControl?: Array<{
    endpoint: string;
    link: string;
    object: string;
    outcome: 'restored' | 'taken' | 'failed';
    message: string;
    /** On a `failed` one the kernel refused for now (EBUSY, ENOBUFS...): tried again on a timer. */
    transient?: true;
  }>;
  /**
   * tcfilter endpoints whose pod link's MAC changed (or came back to the guest's): the guest NIC keeps
   * `guestMac`, the one it was plugged with; the pod link has `podMac` now. Not followed: each is a
   * notice saying what it means and what to do. Only present when there are some.
   */
  macChanges?: Array<{ endpoint: string; link: string; guestMac: string; podMac: string; message: string }>;
}

/**
 * A link a watch could not attach. `refused`: vcnet refuses the link for what it is (a kind it
 * connects to no VM, a tun, a macvtap in a user namespace other than the initial one): trying again
 * cannot help, so it is reported once and not tried again while that link (its ifindex) is there.
 */
export interface WatchFailure {
  name: string;
  code: ErrorCode;
  message: string;
  hint?: string;
  refused?: true;
}

/** Codes of an attach refused for what the link is, whatever is tried again (a macvtap in a user namespace aside). */
const REFUSED_FOR_WHAT_IT_IS: ReadonlySet<ErrorCode> = new Set([
  'VCNET_UNSUPPORTED_INTERFACE',
  'VCNET_TUN_UNSUPPORTED',
  'VCNET_TUNTAP_MODE_UNKNOWN',
  'VCNET_PHYSICAL_UNSUPPORTED',
]);

/**
 * Options of `watchSandbox`: the state directory, the debounce of changes (milliseconds), handlers for
 * applied changes and errors, the most endpoints it attaches, and a signal that stops the watch.
 */
export interface SandboxWatchOptions {
  stateDirectory?: string;
  debounceMs?: number;
  /** Each change set that did something (a pass that changed nothing in the sandbox is not given). */
  onApplied?: (summary: WatchSummary) => void;
  /**
   * A change that could not be applied (tried again by itself, after a growing wait): called when it
   * first fails and when a try fails for another reason, not at each try; a notice on vcnet:notice
   * says when it is applied at last. Each call is also published, once, on
   * vcnet:notice (with `handled: true` when onError is given); with no onError and no subscriber
   * there, it is a process warning of type VcnetWarning, never lost and never written by vcnet.
   */
  onError?: (error: Error) => void;
  /**
   * The most endpoints the sandbox may have: a new link beyond it is not attached (a notice says so)
   * and is left alone from then on, as add-iface can attach it. Default: no limit.
   */
  maxEndpoints?: number;
  /**
   * Aborting it stops the watch as `stop()` does (no pending change applied; `ended` settles with
   * undefined). One already aborted rejects with its reason before anything is read or changed; an
   * abort while the watch starts (waiting for the sandbox lock, say) rejects with it too, nothing left running.
   */
  signal?: AbortSignal;
}

/**
 * Which pod links a watch leaves alone, kept across its change sets. The rule: a watch attaches a link
 * that appears after it started, and a link that had no address when it started (attach skipped it)
 * once it gets one. It never attaches a link that had an address and was not attached when the watch
 * started, nor one removed from the VM with del-iface since: add-iface does that on purpose. A link
 * deleted from the namespace and made again is a new link.
 */
export interface WatchMemory {
  /** Pod links present and not attached that the watch does not attach. */
  leftAlone: Set<string>;
  /** Pod links attached when the last change set was applied (one missing later went with del-iface). */
  attached: Set<string>;
  /**
   * tc objects found held by another tool's (or not to be made again) at the last check, by endpoint,
   * link and object: said once, not again with every tc change, until they are put back or change.
   */
  trafficControlReported?: Map<string, string>;
  /** Links refused for what they are (WatchFailure.refused), by name, with their ifindex and kind: not tried again. */
  refused?: Map<string, { index: number; kind: string | undefined; failure: WatchFailure }>;
  /** New links whose attach failed, with the code and message said (a notice): not said again per try. */
  attachFailuresSaid?: Map<string, string>;
  /** The failures of the last change set (names, codes, messages): the same again is not reported again. */
  reportedFailures?: string;
  /**
   * Whether the last tc check left something it could not make again for a reason that may pass
   * (isTransientFailure), or could not be made: the watch checks again on a timer (TrafficControlRetry).
   */
  trafficControlFailed?: boolean;
  /** Endpoints whose tc objects the last check could not read: said once while that goes on. */
  trafficControlDumpFailed?: Set<string>;
  /** How long TrafficControlRetry's tries take in all (said with a failure that is tried again). */
  trafficControlRetryWindowMs?: number;
  /** The first wait before a new link that could not be attached is tried again (AttachRetries), for what the watch says. */
  attachRetryFirstMs?: number;
  /** The pod link MAC last said of each tcfilter endpoint (by link name and ifindex): a change brought again is not said again. */
  macSaid?: Map<string, string>;
  /** Endpoints whose note that pushes leave them out (endpointsToPush) was said: once per watch while they stay left out. */
  leftOutSaid?: Set<string>;
}

/** The memory of a watch starting over `interfaces` (the namespace) and `attached` (the record's pod links). */
function startWatchMemory(interfaces: readonly NetworkInfo[], attached: Iterable<string>): WatchMemory {
  const attachedSet = new Set(attached);
  const leftAlone = new Set(
    interfaces
      // As attach counts addresses: the IPv6 link-local one every up link gets does not count, or
      // a link attach skipped would never be attached once it gets a real one.
      .filter((info) => !attachedSet.has(info.link.name) && hasConfiguredAddress(info))
      .map((info) => info.link.name),
  );
  return {
    leftAlone,
    attached: attachedSet,
    trafficControlReported: new Map(),
    refused: new Map(),
    attachFailuresSaid: new Map(),
    macSaid: new Map(),
    leftOutSaid: new Set(),
  };
}

/**
 * What watch says of a tcfilter pod link whose MAC changed (checkGuestMacs). Its commands are pasted
 * on the host: the ip command acts in the pod's namespace (a bare `ip` would set a host link of that
 * name), and the link name, which the pod's owner picks, is one quoted word.
 */
export function macChangeNotice(change: {
  id: string;
  link: string;
  /** The guest NIC's name. */
  nic: string;
  guestMac: string;
  podMac: string;
  /** Where the pod namespace was reached (Network.reachedAt): what the quoted ip command names. */
  namespacePath: string;
  stateDirectory: string;
}): string {
  const { id, link, nic, guestMac, podMac } = change;
  if (podMac === guestMac)
    return `sandbox ${id}: ${link} has the MAC of the VM's NIC ${nic} again (${guestMac}): frames sent to it reach the VM`;
  const ip = pastedCommandIn(change.namespacePath, 'ip');
  const setBack = `${ip.command} link set ${shellWord(link)} address ${guestMac}`;
  const sandbox = `${shellWord(id)}${stateDirectoryFlag(change.stateDirectory)}`;
  return `sandbox ${id}: ${link}'s MAC changed to ${podMac}, but the VM's NIC ${nic} keeps ${guestMac}, the MAC it was plugged with (a NIC's MAC is fixed once plugged): peers that learn it by ARP or neighbour discovery still reach the VM, as the guest answers with ${guestMac}; frames sent to ${podMac} (a static neighbour or bridge fdb entry, or a CNI result read since) reach the VM and are dropped by its NIC as not its own. Set ${link}'s MAC back (\`${setBack}\`), or plug the NIC again with the new one: \`vcnet del-iface ${sandbox} FILE\` then \`vcnet add-iface ${sandbox} FILE\`, FILE being {"name": ${JSON.stringify(link)}}${ip.unenterable === undefined ? '' : `; ${ip.unenterable}`}`;
}

/**
 * Says what a MAC changed on a tcfilter endpoint's pod link means. Its guest NIC has the MAC the link
 * had at attach, fixed once plugged (Kata too reads it at attach only), and the redirect passes every
 * frame to the guest whatever its destination: peers that learn the address by ARP get the guest's
 * answer, with the guest's MAC, and frames sent to the link's new MAC are dropped by the guest NIC.
 * Not followed (the record keeps the guest's MAC): said, with what to do, and said when it is back.
 */
function checkGuestMacs(
  id: string,
  change: NamespaceChange,
  network: Network,
  stateDirectory: string,
  summary: WatchSummary,
  memory?: WatchMemory,
): void {
  for (const info of change.macChangedInterfaces ?? []) {
    const endpoint = network
      .endpoints()
      .find(
        (candidate) =>
          candidate.properties.link.name === info.link.name && candidate.properties.link.index === info.link.index,
      );
    if (endpoint?.plumbing?.model !== 'tcfilter') continue;
    const link = info.link.name;
    const guestMac = endpoint.hardwareAddress.toLowerCase();
    const podMac = (info.link.address ?? '').toLowerCase();
    const key = `${link} ${info.link.index}`;
    if (memory?.macSaid?.get(key) === podMac) continue;
    memory?.macSaid?.set(key, podMac);
    const message = macChangeNotice({
      id,
      link,
      nic: endpoint.name,
      guestMac,
      podMac,
      // Where this change was seen: the recorded path may name another namespace by now (the pod
      // re-created while its VM runs), and a command quoting it would set that one's link.
      namespacePath: network.reachedAt,
      stateDirectory,
    });
    summary.macChanges = [...(summary.macChanges ?? []), { endpoint: endpoint.name, link, guestMac, podMac, message }];
    publish(channels.notice, () => ({
      operation: 'watch',
      endpoint: link,
      message,
      details: { sandbox: id, link, guestMac, podMac },
    }));
  }
}

/**
 * The tc check of a watch (change.trafficControl): each endpoint still attached gets back the tc
 * objects its record says vcnet made that someone deleted (network/tc-repair.ts). A place another
 * tool's object holds now is not touched: said once (memory), until it changes. Run under the
 * sandbox lock, so never beside a detach or del-iface of the same sandbox: an endpoint they removed
 * is no longer in the record, and nothing of it is made again.
 */
async function checkTrafficControl(
  id: string,
  network: Network,
  summary: WatchSummary,
  memory: WatchMemory | undefined,
): Promise<void> {
  const found = new Map<string, string>();
  let failed = false;
  // What the timer's tries take in all, for the first line of a failure (none is said per try).
  const window = memory?.trafficControlRetryWindowMs;
  const retrying =
    window === undefined
      ? ''
      : ` (tried again for up to ${(window / 1000).toFixed(1)} s, ${TRAFFIC_CONTROL_RETRIES} times, without another line until it is made or the watch gives up)`;
  const dumpFailed = new Set<string>();
  for (const endpoint of network.endpoints()) {
    let outcomes: Awaited<ReturnType<Network['repairTrafficControl']>>;
    try {
      outcomes = await network.repairTrafficControl(endpoint);
    } catch (error) {
      // A dump that failed (the link went meanwhile): checked again shortly, and with the next change.
      // Said once while it keeps failing.
      const transient = isTransientFailure(error);
      if (transient) failed = true;
      dumpFailed.add(endpoint.name);
      if (memory?.trafficControlDumpFailed?.has(endpoint.name)) continue;
      publish(channels.notice, () => ({
        operation: 'watch',
        endpoint: endpoint.properties.link.name,
        message: `could not check vcnet's tc objects of ${endpoint.name} in sandbox ${id}; checked again ${transient ? `shortly${retrying} and ` : ''}with the next tc change`,
        error,
      }));
      continue;
    }
    for (const outcome of outcomes) {
      // Only what may pass is tried on the timer: a refusal a retry cannot change waits for a tc change.
      if (outcome.outcome === 'failed' && outcome.transient) {
        failed = true;
        outcome.message += retrying;
      }
      const key = `${endpoint.name} ${outcome.link} ${outcome.object}`;
      if (outcome.outcome !== 'restored') {
        found.set(key, outcome.message);
        if (memory?.trafficControlReported?.get(key) === outcome.message) continue;
      }
      summary.trafficControl = [...(summary.trafficControl ?? []), { endpoint: endpoint.name, ...outcome }];
      publish(channels.notice, () => ({
        operation: 'watch',
        endpoint: endpoint.properties.link.name,
        message: `sandbox ${id}, endpoint ${endpoint.name}: ${outcome.message}`,
        details: { sandbox: id, link: outcome.link, object: outcome.object, outcome: outcome.outcome },
      }));
    }
  }
  if (memory) {
    memory.trafficControlReported = found;
    memory.trafficControlFailed = failed;
    memory.trafficControlDumpFailed = dumpFailed;
  }
}

/**
 * Applies one change set to the sandbox (exported for tests and for one-shot use). With `memory` (a
 * watch), links it leaves alone are not attached (see WatchMemory), and the memory follows the change.
 */
export async function applyNamespaceChange(
  id: string,
  change: NamespaceChange,
  stateDirectory?: string,
  memory?: WatchMemory,
  limits: { maxEndpoints?: number } = {},
): Promise<WatchSummary> {
  const { summary, waiting } = await applyChange(id, change, stateDirectory, memory, limits);
  reportSummary(id, summary, memory);
  if (waiting) throw waiting;
  return summary;
}

/**
 * applyNamespaceChange without the report (the watch reports it, to onApplied too). `waiting`: what
 * kept the rest of the change from being applied (the VM is gone) after `summary` was done and
 * recorded: the summary is reported all the same, and the change tried again.
 */
async function applyChange(
  id: string,
  change: NamespaceChange,
  stateDirectory: string | undefined,
  memory: WatchMemory | undefined,
  limits: { maxEndpoints?: number },
  /** Aborted when the watch stops: ends a wait for the sandbox lock or a busy QMP, before anything changed. */
  signal?: AbortSignal,
  /** The `createdAt` of the record the watch started on: a record of another attach is not this watch's. */
  watchedRecord?: string,
): Promise<{ summary: WatchSummary; waiting?: Error }> {
  // A busy QMP and an agent not there yet are waited for without the lock (withSandboxAndVm): this
  // runs again up to its connect, which changes nothing (the memory follows the record; what is said
  // once stays said once). The MAC changes found by the first run: a run again, which the memory
  // tells they were said, still reports them.
  let macChanges: WatchSummary['macChanges'] | null = null;
  const where = signal ? { stateDirectory, signal } : stateDirectory;
  const applied = await withSandboxAndVm(id, 'watchSandbox', where, async (sandbox): Promise<AppliedChange> => {
    const { store, state, network } = sandbox;
    // Detached and attached again (perhaps in another namespace) since the watch started, as can
    // happen while a change waits for QMP without the lock: the change was seen in the namespace the
    // watch holds, so applying it to the new record would attach or remove the wrong links. The
    // sandbox this watch kept in step was detached: the watch ends, as when its record went.
    if (watchedRecord !== undefined && state.createdAt !== watchedRecord)
      throw new SandboxNotFoundError(id, store.statePath, store.root);
    // This watch's own entries, left by a push whose finish could not take the lock again (changes
    // are applied one at a time: none of its pushes runs now). Kept, they would leave their endpoints
    // out of every push while this process runs, this change's own retry too.
    const ownLeft = (state.guestPending ?? []).filter((entry) => entry.by === 'watch' && isOwnEntry(entry));
    if (ownLeft.length > 0) {
      state.guestPending = withoutEntries(state.guestPending, ...ownLeft.map((entry) => entry.token));
      sandboxRecordKeeper(store, state, network).persist();
    }
    const summary: WatchSummary = { added: [], removed: [], updated: [], failed: [] };
    if (memory) {
      const attachedNow = new Set(network.endpoints().map((endpoint) => endpoint.properties.link.name));
      // Attached at the last change and not now, with the link still there: del-iface took it out.
      for (const name of memory.attached) {
        if (!attachedNow.has(name) && !change.removedInterfaces.includes(name)) memory.leftAlone.add(name);
      }
      for (const name of change.removedInterfaces) memory.leftAlone.delete(name);
      memory.attached = attachedNow;
      // A refused link deleted, or made again (another ifindex): the new one is tried as any new link.
      for (const name of change.removedInterfaces) memory.refused?.delete(name);
      for (const name of change.removedInterfaces) memory.attachFailuresSaid?.delete(name);
      for (const info of [...change.addedInterfaces, ...change.changedInterfaces]) {
        if (memory.refused?.get(info.link.name)?.index !== info.link.index) memory.refused?.delete(info.link.name);
      }
    }
    // Said, not followed: needs neither the VM nor a push.
    if (macChanges === null) {
      checkGuestMacs(id, change, network, store.root, summary, memory);
      macChanges = summary.macChanges;
    } else if (macChanges) summary.macChanges = macChanges;
    // Only tc changed (or a MAC): put back what vcnet made, host side only; the VM is not needed (nor asked).
    const interfacesChanged =
      change.addedInterfaces.length +
        change.removedInterfaces.length +
        change.changedInterfaces.length +
        (change.removedVcnetLinks?.length ?? 0) >
      0;
    if (!interfacesChanged) {
      if (change.trafficControl) await checkTrafficControl(id, network, summary, memory);
      return { summary };
    }
    // A VM that is gone (its socket not there, nobody listening on it) holds no NIC: the removals
    // below are done on the host side only, as an unfinished hot-plug's undo does; the rest of the
    // change needs the VM and waits for it (the error, reported and tried again). A VMM that
    // answers and refuses, or does not answer in time, is no proof it is gone: the error as before.
    let goneVm: Error | undefined;
    const vm = await sandbox.connectVirtualMachine().catch((error: unknown) => {
      if (!vmGone(error)) throw error;
      goneVm = error as Error;
      return undefined;
    });
    // Handed over with the guest's part: closed once that part is done, not here.
    let handedOver = false;
    try {
      const byName = (name: string) => network.endpoints().find((endpoint) => endpoint.properties.link.name === name);
      // A pod link is its ifindex as well as its name: a link made again under an endpoint's name is
      // a new link, never an update of the endpoint (whose filters and NIC belong to the old one).
      const byLink = (link: { name: string; index: number }) => {
        const endpoint = byName(link.name);
        return endpoint?.properties.link.index === link.index ? endpoint : undefined;
      };
      const keeper = sandboxRecordKeeper(store, state, network);
      const toPush: Endpoint[] = [];
      const addedEndpoints: Endpoint[] = [];
      // Changed endpoints whose routes changed: only those replace their routes in a recorded set.
      const rerouted: Endpoint[] = [];
      // Removed: the links gone, and the endpoints whose pod link was replaced (its name on another ifindex).
      const replaced = [...change.addedInterfaces, ...change.changedInterfaces]
        .filter((info) => byName(info.link.name) !== undefined && byLink(info.link) === undefined)
        .map((info) => info.link.name);
      const gone = [...new Set([...change.removedInterfaces, ...replaced])]
        .map(byName)
        .filter((endpoint) => endpoint !== undefined);
      if (gone.length > 0) {
        await detachRecorded(network, `removing ${gone.map((endpoint) => endpoint.name).join(', ')}`, keeper, {
          endpoints: gone,
          ...(vm ? { hotplug: vm.hotplug, requireUnplug: true } : {}),
          sandbox: { id, stateDirectory: store.root },
        });
        summary.removed.push(...gone.map((endpoint) => endpoint.name));
        state.guestRoutes = recordedRoutesAfter(state.guestRoutes, { removed: gone });
        if (goneVm) {
          const error = goneVm;
          publish(channels.notice, () => {
            const names = gone.map((endpoint) => endpoint.name).join(', ');
            const message = `sandbox ${id}'s VM is gone (its control socket is not there, or nobody listens on it): removed ${names} on the host side only, as there is no NIC to unplug`;
            return { operation: 'watch', endpoint: names, message, error };
          });
        }
      }
      // After the removals: a device that went with its pod link (a macvtap) is no endpoint's any more.
      // Matched by ifindex as well as name: a tap vcnet deleted with one endpoint (the snapshot this
      // change came from still had it) may have its name reused by a new endpoint's tap since.
      for (const device of change.removedVcnetLinks ?? []) {
        const endpoint = network.endpoints().find((candidate) => isDeviceOf(candidate, device));
        if (!endpoint) continue;
        const lost = lostDevice(id, endpoint, device.name, vm !== undefined);
        summary.lostDevices = [...(summary.lostDevices ?? []), lost];
        publish(channels.notice, () => ({
          operation: 'watch',
          endpoint: endpoint.properties.link.name,
          message: lost.message,
        }));
      }
      // After the removals, before anything is attached (a new endpoint's objects are all there).
      if (change.trafficControl) await checkTrafficControl(id, network, summary, memory);
      if (goneVm) {
        keeper.persist();
        if (memory) memory.attached = new Set(network.endpoints().map((endpoint) => endpoint.properties.link.name));
        // What else the change brings (new links, changed ones) needs the VM: tried again with it.
        // The removals are done and recorded: reported all the same (a retry finds them done).
        if (change.addedInterfaces.length + change.changedInterfaces.length > 0) return { summary, waiting: goneVm };
        return { summary };
      }
      // nodes (issue 12): address-less links wait until they get one (network/scan.ts linksToAttach).
      const { selected: fresh } = linksToAttach(
        memory
          ? {
              ...change,
              changedInterfaces: change.changedInterfaces.filter((info) => !memory.leftAlone.has(info.link.name)),
            }
          : change,
        (name) => byName(name) !== undefined,
        new Set(state.network.config.namedInterfaces ?? []),
      );
      // Each interface on its own: one that cannot be attached (rolled back whole) is reported and
      // never keeps the others of the change from being attached.
      for (const info of fresh) {
        // Refused for what it is when it came: reported then, not tried again.
        if (memory?.refused?.get(info.link.name)?.index === info.link.index) continue;
        if (limits.maxEndpoints !== undefined && network.endpoints().length >= limits.maxEndpoints) {
          const name = info.link.name;
          summary.overLimit = [...(summary.overLimit ?? []), name];
          memory?.leftAlone.add(name);
          publish(channels.notice, () => ({
            operation: 'watch',
            endpoint: name,
            message: `did not attach ${name}: sandbox ${id} has ${network.endpoints().length} endpoints, the most watch's maxEndpoints (--max-endpoints) allows; ${macvtapLinkRefusedHere(info.link) ? refusedMacvtapAdvice([name]) : `\`vcnet add-iface ${id} FILE\` attaches it`}`,
          }));
          continue;
        }
        try {
          const added = await attachRecorded(
            network,
            {
              interfaces: [info],
              keepFds: vm !== undefined,
              ...(vm ? { hotplug: vm.hotplug } : {}),
              ...newIndexOptions(state),
              operation: 'watch',
            },
            keeper,
          );
          for (const endpoint of added) endpoint.closeFds();
          if (memory?.attachFailuresSaid?.delete(info.link.name)) {
            publish(channels.notice, () => ({
              operation: 'watch',
              endpoint: info.link.name,
              message: `attached ${info.link.name}, which could not be attached before`,
            }));
          }
          toPush.push(...added);
          addedEndpoints.push(...added);
          summary.added.push(...added.map((endpoint) => endpoint.name));
        } catch (attachError) {
          // Deleted again before it could be attached (veths that come and go within a debounce):
          // nothing to attach, report or retry; the attach undid what it had made.
          if (!(await linkStillThere(network, info.link))) continue;
          // QEMU's "Duplicate ID" for a NIC no endpoint records: said as that, with how to remove it.
          const error = explainTakenHotplugId(attachError, { sandbox: id, link: info.link.name, state, network });
          const failure = watchFailure(info, error);
          summary.failed.push(failure);
          if (failure.refused)
            memory?.refused?.set(info.link.name, { index: info.link.index, kind: info.link.kind, failure });
          // Said once while it fails the same way: it is tried with every change (each try is no news).
          const said = `${failure.code} ${failure.message}`;
          if (memory?.attachFailuresSaid?.get(info.link.name) === said) continue;
          memory?.attachFailuresSaid?.set(info.link.name, said);
          publish(channels.notice, () => ({
            operation: 'watch',
            endpoint: info.link.name,
            message: failure.refused
              ? `did not attach ${info.link.name}, which vcnet refuses (watch does not try it again while it is there): ${failure.hint ?? failure.message}`
              : `could not attach ${info.link.name}; tried again after a growing wait (${memory?.attachRetryFirstMs !== undefined ? `${memory.attachRetryFirstMs} ms, ` : ''}doubling, at most ${MAX_RETRY_DELAY_MS / 1000} s apart) and at once when it changes, until it is attached or deleted, with no warning per try and one when it is attached`,
            error,
          }));
        }
      }
      // An interface reported as added that is attached already comes again from a change that
      // failed part-way (the watcher reports it until it is applied): it may not have been pushed.
      const attachedBefore = change.addedInterfaces.filter((info) => byLink(info.link) !== undefined);
      for (const info of [...change.changedInterfaces, ...attachedBefore]) {
        const endpoint = byLink(info.link);
        if (!endpoint || summary.added.includes(endpoint.name)) continue;
        // Only a recorded set (update-routes) needs to know whether the endpoint's routes changed.
        const routesOf = () => JSON.stringify(generateGuestNetwork([endpoint]).routes);
        const routesBefore = state.guestRoutes !== undefined ? routesOf() : undefined;
        const movedIntoGuest = endpoint.plumbing?.model === 'macvtap';
        endpoint.updateProperties(mergeChange(endpoint.properties, info, endpoint.deviceMtu, movedIntoGuest));
        // The tap or macvtap follows the pod link's own MTU, as attach gave it (the guest's, capped by
        // host_mtu, comes with the push below); one that will not take it leaves the rest of the
        // change to go ahead.
        await network.followPodLinkMtu(endpoint, info.link.mtu).catch((error: unknown) =>
          publish(channels.notice, () => ({
            operation: 'watch',
            endpoint: info.link.name,
            message: `could not give ${endpoint.plumbing?.tapName} the MTU of ${info.link.name} (${info.link.mtu})`,
            error,
          })),
        );
        if (routesBefore !== undefined && routesOf() !== routesBefore) rerouted.push(endpoint);
        toPush.push(endpoint);
        summary.updated.push(endpoint.name);
      }
      // The recorded route set (update-routes) follows: new NICs bring their routes, changed ones their new ones.
      state.guestRoutes = recordedRoutesAfter(state.guestRoutes, { added: [...addedEndpoints, ...rerouted] });
      // Recorded before the push: a push that fails is retried with the change (the watcher reports
      // it again), and the host side of it is done and must not be forgotten meanwhile.
      keeper.persist();
      // One push for the whole change set: the interfaces, then the sandbox's full route set once.
      // QMP is other clients' again while the guest is waited for.
      await vm?.releaseControl();
      // An endpoint an add-iface still waits for the guest to show is that add-iface's to send: the
      // guest may not have its NIC yet, and the agent refuses a route set that names it.
      const pushed = endpointsToPush(toPush, state);
      if (!vm || pushed.length === 0) {
        if (memory) memory.attached = new Set(network.endpoints().map((endpoint) => endpoint.properties.link.name));
        return { summary };
      }
      // The guest may take seconds to show a new NIC (a minute under TCG): pushed without the lock,
      // the new endpoints recorded as waiting for the guest meanwhile (as add-iface's are), so other
      // pushes of the whole set leave them out; finishWatchPush takes the lock again to clear them.
      const routed = endpointsToPush(network.endpoints(), state, {
        sandbox: id,
        operation: 'watch',
        stateDirectory: store.root,
        ...(memory?.leftOutSaid ? { said: memory.leftOutSaid } : {}),
      });
      // The push sends every endpoint of the change, each its own agent call: counted in the entries' deadline.
      const entries = addedEndpoints.map((endpoint) =>
        guestPendingEntry(endpoint, 'watch', { interfaces: pushed.length }),
      );
      if (entries.length > 0) {
        state.guestPending = [...(state.guestPending ?? []), ...entries];
        keeper.persist();
      }
      handedOver = true;
      return {
        summary,
        guest: { vm, pushed, routed, guestRoutes: state.guestRoutes, createdAt: state.createdAt, entries },
      };
    } finally {
      if (!handedOver) await vm?.close();
    }
  });
  const guest = applied.guest;
  if (!guest) return applied;
  let failure: { error: unknown } | undefined;
  try {
    try {
      await pushEndpoints(guest.vm.agent, guest.pushed, guest.routed, guest.guestRoutes, {
        timeoutMs: GUEST_PUSH_TIMEOUT_MS,
        sandbox: id,
      });
    } catch (error) {
      failure = { error };
    }
    // The agent is asked again there when the route set changed meanwhile.
    await finishWatchPush(id, stateDirectory, memory, guest, failure === undefined);
  } finally {
    await guest.vm.close();
  }
  // A failed push is tried again with the change (the watcher reports it until it is applied): the
  // endpoints are attached and recorded, and pushed again then.
  if (failure) throw failure.error;
  return { summary: applied.summary };
}

/** What applyChange did under the lock, and the push it left to make without it. */
interface AppliedChange {
  summary: WatchSummary;
  waiting?: Error;
  guest?: {
    vm: VirtualMachine;
    /** The endpoints to push, and those whose routes the push sends. */
    pushed: Endpoint[];
    routed: Endpoint[];
    guestRoutes: GuestRoute[] | undefined;
    /** The record's createdAt: a record of a later attach under the same id has another. */
    createdAt: string;
    /** The guestPending entries of the endpoints this change added. */
    entries: GuestPending[];
  };
}

/**
 * The watch's push is done (or failed): under the lock again, its guestPending entries are cleared,
 * from a fresh read of the record; those a del-iface or detach removed meanwhile are gone already,
 * and a record of another attach holds none of them. After a push that went through (`pushed`), the
 * route set is sent again when it is no longer the one that push sent (update-routes, or an add-iface
 * finished, meanwhile): the agent replaced the guest's whole set with the older one. A failed push is
 * tried again with the change. The watch's memory of what is attached follows the record.
 */
async function finishWatchPush(
  id: string,
  stateDirectory: string | undefined,
  memory: WatchMemory | undefined,
  guest: NonNullable<AppliedChange['guest']>,
  pushed: boolean,
): Promise<void> {
  await withSandbox(id, 'watchSandbox', stateDirectory, async ({ store, state, network }) => {
    if (state.createdAt !== guest.createdAt) return;
    const before = state.guestPending?.length ?? 0;
    state.guestPending = withoutEntries(state.guestPending, ...guest.entries.map((entry) => entry.token));
    if ((state.guestPending?.length ?? 0) !== before) sandboxRecordKeeper(store, state, network).persist();
    if (memory) memory.attached = new Set(network.endpoints().map((endpoint) => endpoint.properties.link.name));
    if (pushed)
      await sendRouteSetIfChanged(id, guest, endpointsToPush(network.endpoints(), state), state.guestRoutes, {
        operation: 'watch',
        endpoint: guest.pushed.map((endpoint) => endpoint.name).join(', '),
      });
  }).catch((error: unknown) => {
    // Detached meanwhile: nothing of it to finish (the watch ends at its next change, as then).
    if (!(error instanceof SandboxNotFoundError)) throw error;
  });
}

/**
 * What a failed try is compared by, to say a failure once: its code and message, but for an agent
 * that could not be reached, whose message counts the attempts and the time of each try (every try
 * read as a new reason, one line each), the socket and the cause alone.
 */
function failureReason(error: Error): string {
  const { code } = classifyError(error);
  for (let cause: unknown = error; cause instanceof Error; cause = cause.cause) {
    if (cause instanceof AgentConnectError) return `${code} ${cause.socketPath} ${cause.reason}`;
  }
  return `${code} ${error.message}`;
}

/** The refusal of a link vcnet refuses for what it is, classified as attach does; undefined for one it can take. */
function refusalOf(info: NetworkInfo): WatchFailure | undefined {
  try {
    classifyInterface(info);
    return undefined;
  } catch (error) {
    const failure = watchFailure(info, error);
    return failure.refused ? failure : undefined;
  }
}

/**
 * A link's failed attach as a watch reports it: the deciding code, the message and the hint (for a
 * macvtap refused in a user namespace, what works instead), and whether vcnet refuses the link for
 * what it is.
 */
function watchFailure(info: NetworkInfo, error: unknown): WatchFailure {
  const { code } = classifyError(error);
  const macvtapHere = macvtapLinkRefusedHere(info.link);
  const refused = macvtapHere || REFUSED_FOR_WHAT_IT_IS.has(code);
  const hint = macvtapHere ? refusedMacvtapAdvice([info.link.name]) : hintFromCause(error);
  return {
    name: info.link.name,
    code,
    message: (error as Error).message,
    ...(hint !== undefined ? { hint } : {}),
    ...(refused ? { refused: true as const } : {}),
  };
}

/**
 * Publishes a change set on vcnet:watch when it is worth a report; says whether it was (the watch
 * gives it to onApplied then). Not one that did nothing to the sandbox (the deletion of a pod link's
 * tap, by the pass that removed the link, is read as a change of its own, and so is any change on a
 * link the watch leaves alone), unless its failures differ from the last change set's: a link that
 * failed again in the same way is not news.
 */
function reportSummary(id: string, summary: WatchSummary, memory: WatchMemory | undefined): boolean {
  const failures = JSON.stringify(
    summary.failed.map(({ name, code, message }) => [name, code, message]).sort((a, b) => (a[0]! < b[0]! ? -1 : 1)),
  );
  const repeated = memory?.reportedFailures === failures;
  if (memory) memory.reportedFailures = failures;
  const report = !isEmptySummary(summary) || (summary.failed.length > 0 && !repeated);
  if (report) publish(channels.watch, () => ({ sandbox: id, ...summary }));
  return report;
}

/** Whether a change set did nothing to the sandbox (its failures aside). */
function isEmptySummary(summary: WatchSummary): boolean {
  return (
    summary.added.length +
      summary.removed.length +
      summary.updated.length +
      (summary.lostDevices?.length ?? 0) +
      (summary.overLimit?.length ?? 0) +
      (summary.trafficControl?.length ?? 0) +
      (summary.macChanges?.length ?? 0) ===
    0
  );
}

/**
 * Whether `device` (a vcnet link gone from the namespace) was `endpoint`'s: same name and, when the
 * record has one (every device vcnet made), same ifindex.
 */
function isDeviceOf(endpoint: Endpoint, device: { name: string; index: number }): boolean {
  const plumbing = endpoint.plumbing;
  if (!plumbing || plumbing.tapName !== device.name) return false;
  return plumbing.tapIndex === 0 || plumbing.tapIndex === device.index;
}

/**
 * What a watch says when vcnet's device of an attached endpoint has gone (deleted, moved out of the
 * namespace, renamed): vcnet does not make it again on its own, as the VM's NIC was plugged with the
 * old one's file descriptors and would need unplugging and plugging again.
 */
function lostDevice(
  id: string,
  endpoint: Endpoint,
  device: string,
  running: boolean,
): { endpoint: string; device: string; message: string } {
  const pod = endpoint.properties.link.name;
  const left = running
    ? `the VM keeps its NIC ${endpoint.name}, which has no backend now and passes no traffic`
    : `the VM would get a NIC ${endpoint.name} with no backend`;
  return {
    endpoint: endpoint.name,
    device,
    message: `${device}, vcnet's device for ${pod} (endpoint ${endpoint.name}), is gone from the namespace (deleted, moved out or renamed by someone else): ${left}; \`vcnet del-iface ${id} FILE\` removes the endpoint (and the NIC), and \`vcnet add-iface ${id} FILE\` attaches ${pod} again`,
  };
}

/** Whether `link` (by index and name) is still in the namespace; true when that cannot be told. */
async function linkStillThere(network: Network, link: { index: number; name: string }): Promise<boolean> {
  try {
    return (await network.link(link.index)).name === link.name;
  } catch (error) {
    return !(error instanceof LinkNotFoundError);
  }
}

/** How often a watch looks whether its sandbox's record is still there, and its namespace path. */
const DETACH_POLL_MS = 1_000;
/** How often, once the namespace path is gone and a VM was left, the watch looks whether it still runs. */
const VM_POLL_MS = 5_000;

/**
 * Test seam (never set in production; src/test-seams.ts): given VM_POLL_MS, returns the period to
 * use, so a test that waits for the watch's next looks at a VM need not sit out 5 s for each.
 */
const vmPollSeam = testSeam<(productMs: number) => number>('watchVmPoll');

export function setWatchVmPollTestHook(hook: ((productMs: number) => number) | undefined): void {
  vmPollSeam.set(hook);
}

/**
 * Whether the recorded path still names the namespace the watch holds open (stat only: nothing is
 * opened, so a FIFO put there cannot block). The watch's fd keeps the namespace alive once the
 * path is gone: that is not the pod any more.
 */
function pathNamesNamespace(namespace: OpenedNamespace): boolean {
  try {
    const stats = statSync(namespace.identity.path);
    return stats.dev === namespace.identity.dev && stats.ino === namespace.identity.ino;
  } catch {
    return false;
  }
}

/**
 * Whether something still looks like the sandbox's VM: its control socket accepts a connection
 * (closed at once, before QMP's greeting: another client is never kept waiting), or, with no socket
 * recorded, a process holds one of vcnet's devices. As vmGone: only a socket not there or refused
 * is proof it is gone; one that does not answer in time is taken as running.
 */
async function vmStillRuns(
  id: string,
  stateDirectory: string | undefined,
  namespace: OpenedNamespace,
): Promise<boolean> {
  return withSandbox(id, 'watchSandbox', { stateDirectory, readOnly: true }, async ({ state, network }) => {
    const socket = state.hypervisor?.controlSocket;
    if (socket) return !(await controlSocketGone(socket));
    return (await heldDevices(network, namespace.entryPath)).length > 0;
  });
}

/** A running watch. */
export interface SandboxWatch {
  /**
   * Stops watching; resolves once a change being applied is done. With `applyPending`, a change
   * still waiting for the debounce (or a retry) is read and applied first; resolves with the names
   * of the new interfaces that were not attached (a watch started later leaves an addressed link
   * alone, so these need `vcnet add-iface`).
   */
  stop(options?: { applyPending?: boolean }): Promise<string[]>;
  /**
   * Links that had an address and were not attached when the watch started: by rule it never
   * attaches them, whatever changes on them later (add-iface does).
   */
  readonly leftAlone: readonly string[];
  /**
   * Of the links leftAlone and stop() name, those no vcnet command attaches where this process runs
   * (a macvtap outside the initial user namespace: add-iface refuses it too). Filled at start and by
   * stop(); a veth or macvlan in their place is what works.
   */
  readonly refused: ReadonlySet<string>;
  /**
   * Links vcnet refused for what they are (WatchFailure.refused), still there, by name: those left
   * alone at start (classified as attach does, never tried) and those refused while watching
   * (reported once, never tried again; stop() names these too); this says why and what to do.
   */
  readonly refusals: ReadonlyMap<string, WatchFailure>;
  /** The namespace watched, as the sandbox's record names it. */
  readonly namespacePath: string;
  /**
   * Pod links whose attach a process stopped part-way (a watch or add-iface killed) left recorded as
   * unfinished: the watch undid what was made for each when it started, and attaches it as a new link.
   */
  readonly undoneAttaches: readonly string[];
  /** Unfinished attaches the watch could not undo (the kernel refused a step): `vcnet gc` tries again. */
  readonly notUndone: ReadonlyArray<{ name: string; message: string }>;
  /**
   * Settles when watching ends: after stop(), or by itself when the sandbox's record is gone (it
   * was detached), then with that SandboxNotFoundError, or when the recorded namespace path is gone
   * (or names another namespace) and no VM is left (the pod was deleted), then with a
   * NamespaceGoneError: the watch's hold on the namespace was all that kept it.
   */
  readonly ended: Promise<SandboxNotFoundError | NamespaceGoneError | undefined>;
  /** `await using watch = await watchSandbox(...)` stops it (as `stop()`, no pending change applied) at the end of the block. */
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * Watches the sandbox's namespace until `stop()` or until the sandbox is detached. Change sets are
 * applied one after another; one that fails (a VM that does not answer, say) is reported to onError
 * and tried again, with whatever changed since, after a growing wait. Throws `SandboxNotFoundError`
 * for a sandbox that is not recorded, and the signal's reason when it is aborted while the watch starts.
 *
 * @example
 * ```ts
 * import { watchSandbox } from 'vcnet';
 *
 * const watch = await watchSandbox('sb1', {
 *   stateDirectory: '/run/vcnet/sandboxes',
 *   onApplied: (summary) => console.log('added', summary.added, 'removed', summary.removed),
 *   onError: (error) => console.error(error.message),
 * });
 * // ... later, when the sandbox goes:
 * await watch.stop();
 * ```
 */
export async function watchSandbox(id: string, options: SandboxWatchOptions = {}): Promise<SandboxWatch> {
  options = optionsArgument(options, 'options', [
    'stateDirectory',
    'debounceMs',
    'onApplied',
    'onError',
    'maxEndpoints',
    'signal',
  ]);
  const signal = signalOption(options.signal);
  numberOption(options.debounceMs, 'debounceMs', { min: 0, max: 3_600_000, integer: false, unit: 'milliseconds' });
  numberOption(options.maxEndpoints, 'maxEndpoints', { min: 1, max: 65_536 });
  functionOption(options.onApplied, 'onApplied');
  functionOption(options.onError, 'onError');
  signal?.throwIfAborted();
  const store = new SandboxStore(id, options.stateDirectory);
  let state = store.read<SandboxState>();
  if (!state) throw new SandboxNotFoundError(id, store.statePath, store.root);
  // Before anything: after a reboot its namespace's inode and cookie, its VM's sockets may be another pod's.
  refuseEarlierBoot(
    state,
    store.statePath,
    `nothing was started or changed; \`vcnet detach --sandbox ${shellWord(id)}${stateDirectoryFlag(store.root)}\` drops the record, touching nothing`,
  );
  refuseRunningFirecracker(state);
  const unfinished = await undoUnfinishedAttaches(id, options.stateDirectory, signal);
  state = store.read<SandboxState>() ?? state;
  // The recorded namespace by identity, as every other command: a path that now names another
  // namespace (a reused PID) is refused, and the watcher works through this fd, not the path.
  const namespace = openRecordedNamespace(state.namespace, store.statePath, state.createdAt);
  let endWith: (reason: SandboxNotFoundError | NamespaceGoneError | undefined) => void = () => {};
  const ended = new Promise<SandboxNotFoundError | NamespaceGoneError | undefined>((resolve) => {
    endWith = resolve;
  });
  let watcher: NamespaceWatcher;
  let memory: WatchMemory | undefined;
  let stopping: Promise<void> | undefined;
  let detachPoll: NodeJS.Timeout | undefined;
  let notApplied: string[] = [];
  const refused = new Set<string>();
  /** A change the watcher could not deliver, from its first failure until one is applied (onError). */
  let failing: { since: Date; tries: number; said: string | undefined } | undefined;
  // What the tc check could not put back is checked again on a timer too, not only with the next tc change.
  const debounceMs = options.debounceMs ?? DEFAULT_DEBOUNCE_MS;
  /** New links the watch could not attach: tried again after a growing wait, or with a change to them. */
  const attachRetries = new AttachRetries(debounceMs, () => watcher.resync({ trafficControl: true }));
  const trafficControlRetry = new TrafficControlRetry(
    debounceMs,
    () => watcher.resync({ trafficControl: true }),
    () =>
      publish(channels.notice, () => ({
        operation: 'watch',
        endpoint: '',
        message: `sandbox ${id}: vcnet's tc objects above that could not be made again still could not after ${TRAFFIC_CONTROL_RETRIES} more tries; the watch checks again with the next tc change in the namespace, or \`vcnet del-iface\` and \`vcnet add-iface\` attach the link again`,
        details: { sandbox: id },
      })),
  );
  // One listener on a daemon's long-lived signal for all its watches and waits (abort-listeners.ts).
  let stopWaiting: (() => void) | undefined;
  // A change still waiting for the lock or for a busy QMP (made without the lock, up to
  // VCNET_QMP_CONNECT_TIMEOUT) when the watch stops has changed nothing: given up, as a pending one.
  const stopApplying = new AbortController();
  const stop = (reason?: SandboxNotFoundError | NamespaceGoneError, applyPending = false): Promise<string[]> => {
    if (!applyPending || reason !== undefined) stopApplying.abort();
    clearInterval(detachPoll);
    trafficControlRetry.stop();
    attachRetries.stop();
    stopWaiting?.();
    stopping ??= (async () => {
      try {
        if (applyPending && reason === undefined) {
          const undelivered = await watcher.flush();
          const infos: Array<{ name: string; kind?: string | undefined }> = [
            ...(undelivered?.addedInterfaces ?? []),
            ...attachRetries.links(),
          ].map((info) => info.link);
          // Links vcnet refused are not attached either: named with what they are (refusals).
          // Those left alone at start were never to be attached: not named again.
          for (const [name, { kind }] of memory?.refused ?? [])
            if (!memory?.leftAlone.has(name)) infos.push({ name, kind });
          const names = new Set(infos.map((link) => link.name));
          for (const link of infos) if (macvtapLinkRefusedHere(link)) refused.add(link.name);
          notApplied = [...names];
        }
      } finally {
        try {
          await watcher.stop();
        } finally {
          namespace.close();
          endWith(reason);
        }
      }
    })();
    return stopping.then(() => notApplied);
  };
  try {
    // Its snapshots are read on the socket the namespace was identified by.
    watcher = await NamespaceWatcher.start(namespace, {
      ...(options.debounceMs !== undefined ? { debounceMs: options.debounceMs } : {}),
      // Read as added, at once: attached as the new links they now are.
      newAtStart: unfinished.undone,
      // tc objects vcnet made that someone deletes are put back (checkTrafficControl); at start too.
      trafficControl: true,
      // The record is where the watch starts: what changed while none ran comes as its first change.
      startView: (present) => watchStartView(present, (store.read<SandboxState>() ?? state).network.endpoints),
      onChange: async (change) => {
        const withRetries = attachRetries.due(change);
        let summary: WatchSummary;
        let waiting: Error | undefined;
        try {
          ({ summary, waiting } = await applyChange(
            id,
            withRetries,
            options.stateDirectory,
            memory,
            { ...(options.maxEndpoints !== undefined ? { maxEndpoints: options.maxEndpoints } : {}) },
            stopApplying.signal,
            state.createdAt,
          ));
        } catch (error) {
          // Stopped while it waited, before anything changed: not applied, as a pending change.
          if (stopApplying.signal.aborted && error === stopApplying.signal.reason) return;
          if (error instanceof SandboxNotFoundError) {
            // Detached meanwhile: nothing is left to keep in step. Not awaited: stop() waits for this call.
            void stop(error);
            return;
          }
          // The watcher reports it and brings the change again.
          throw error;
        }
        if (waiting) {
          // Part of it done (removals with the VM gone): that part is reported now, the rest tried again.
          if (reportSummary(id, summary, memory)) options.onApplied?.(summary);
          throw waiting;
        }
        if (failing) {
          // The one line after the first warning: the change that kept failing is applied now.
          const { since, tries } = failing;
          failing = undefined;
          publish(channels.notice, () => ({
            operation: 'watch',
            endpoint: '',
            message: `applied the namespace change to sandbox ${id} that could not be applied ${tries} ${tries > 1 ? 'times' : 'time'} since ${since.toISOString()}`,
            details: { sandbox: id, tries },
          }));
        }
        if (withRetries.trafficControl) trafficControlRetry.checked(memory?.trafficControlFailed === true);
        attachRetries.settle(
          withRetries,
          summary.failed.filter((failure) => !failure.refused).map((failure) => failure.name),
        );
        if (reportSummary(id, summary, memory)) options.onApplied?.(summary);
      },
      // Published on vcnet:notice always; with no onError and no subscriber, a process warning.
      // Once when a change first fails, not at each try of the watcher's timer (a watch under a
      // service manager would log one line per try); again only when it fails for another reason.
      onError: (error) => {
        const reason = failureReason(error);
        const first = failing === undefined;
        failing = { since: failing?.since ?? new Date(), tries: (failing?.tries ?? 0) + 1, said: failing?.said };
        if (!first && failing.said === reason) return;
        failing.said = reason;
        const handler = options.onError;
        const tries = failing.tries;
        reportNotice(
          () => {
            const retried = `it is tried again after a growing wait (${retryDelayMs(debounceMs, 1)} ms, doubling, at most ${MAX_RETRY_DELAY_MS / 1000} s apart) until it applies, with no warning per try and one when it applies, and watching goes on`;
            return {
              operation: 'watch',
              endpoint: '',
              message: first
                ? `could not apply a namespace change to sandbox ${id}; ${retried}: ${error.message}`
                : `could not apply a namespace change to sandbox ${id} (try ${tries}), now for another reason; ${retried}: ${error.message}`,
              error,
              details: { sandbox: id, namespacePath: state.namespace.path },
            };
          },
          handler && (() => handler(error)),
        );
      },
    });
  } catch (error) {
    namespace.close();
    throw error;
  }
  // Before any change is read (that waits for a timer): the start view (the record's pod links, the
  // others as they are now) is the watch's start.
  memory = startWatchMemory(
    watcher.interfaces(),
    state.network.endpoints.map((endpoint) => endpoint.properties.link.name),
  );
  memory.trafficControlRetryWindowMs = trafficControlRetryWindowMs(debounceMs);
  memory.attachRetryFirstMs = retryDelayMs(debounceMs, 1);
  for (const info of watcher.interfaces()) {
    if (!memory.leftAlone.has(info.link.name)) continue;
    if (macvtapLinkRefusedHere(info.link)) refused.add(info.link.name);
    else {
      // add-iface is no advice for a link vcnet refuses for what it is (a vxlan with an address):
      // classified as attach and add-iface do, it is named with its own refusal (refusals).
      const refusal = refusalOf(info);
      if (refusal)
        memory.refused?.set(info.link.name, { index: info.link.index, kind: info.link.kind, failure: refusal });
    }
  }
  // A detach changes nothing the watcher sees (the pod links stay): the record going ends the watch.
  // Nor does the pod's deletion (its namespace path removed): the watcher's own fd keeps the namespace.
  let pathGone: { vmCheckedAt: number } | undefined;
  let checkingVm = false;
  const namespacePath = state.namespace.path;
  const checkVm = async () => {
    checkingVm = true;
    try {
      const first = pathGone === undefined;
      pathGone = { vmCheckedAt: Date.now() };
      const running = await vmStillRuns(id, options.stateDirectory, namespace).catch((error: unknown) => {
        // Detached meanwhile: the record poll ends the watch. Otherwise no proof the VM is gone.
        return !(error instanceof SandboxNotFoundError);
      });
      if (running && !first) return;
      const detach = `\`vcnet detach --sandbox ${shellWord(id)}${stateDirectoryFlag(store.root)}\``;
      const message = running
        ? `sandbox ${id}'s namespace path ${namespacePath} is gone or names another namespace now (the pod was deleted); its VM still runs, so the watch goes on through the namespace it holds, and ends once the VM is gone; ${detach} removes what the sandbox has left`
        : `sandbox ${id}'s namespace path ${namespacePath} is gone or names another namespace now (the pod was deleted), and no VM is left: the watch ends, letting the namespace go (its hold was the last); ${detach} drops the record`;
      publish(channels.notice, () => ({
        operation: 'watch',
        endpoint: '',
        message,
        details: { sandbox: id, namespacePath },
      }));
      if (!running) void stop(new NamespaceGoneError(state.namespace, store.statePath));
    } finally {
      checkingVm = false;
    }
  };
  detachPoll = setInterval(() => {
    if (!existsSync(store.statePath)) {
      void stop(new SandboxNotFoundError(id, store.statePath, store.root));
      return;
    }
    if (checkingVm) return;
    const vmPollMs = waitThroughSeam(vmPollSeam, VM_POLL_MS);
    if (pathGone ? Date.now() - pathGone.vmCheckedAt >= vmPollMs : !pathNamesNamespace(namespace)) void checkVm();
  }, DETACH_POLL_MS);
  detachPoll.unref();
  if (signal?.aborted) {
    // Aborted while the watch started: stopped again, and refused as a call aborted before it began.
    await stop();
    signal.throwIfAborted();
  }
  if (signal) stopWaiting = onAbort(signal, () => void stop());
  return {
    stop: (stopOptions) => stop(undefined, stopOptions?.applyPending ?? false),
    leftAlone: [...memory.leftAlone],
    refused,
    get refusals() {
      return new Map([...(memory?.refused ?? [])].map(([name, { failure }]) => [name, failure]));
    },
    namespacePath: state.namespace.path,
    undoneAttaches: unfinished.undone,
    notUndone: unfinished.notUndone,
    ended,
    [Symbol.asyncDispose]: async () => {
      await stop(undefined, false);
    },
  };
}

/**
 * Undoes the endpoints the record keeps as unfinished (model 'pending': a watch or add-iface killed
 * while it attached them), as `vcnet gc` would, under the sandbox lock; an attach killed before its
 * first write (`attaching`) is gc's. A NIC such an attach hot-plugged is unplugged from the VM the
 * record names first (network/unfinished-attach.ts); one the VM keeps keeps its endpoint and record.
 * A QEMU's QMP another client holds, or a Cloud Hypervisor that answers no vmm.ping (slow or hung on
 * another request), is waited for without the lock (network/sandbox-vmm-wait.ts), as long as any
 * command waits for QMP (VCNET_QMP_CONNECT_TIMEOUT, else 30 s: as long as any other request to Cloud
 * Hypervisor waits for its answer): still busy past that, nothing is undone and watch starts anyway,
 * the endpoint left for gc or the next watch (a watch that refused to start would leave the pod's
 * links unwatched for a VM that may stay wedged).
 * Says which pod links it undid and which it could not.
 */
async function undoUnfinishedAttaches(
  id: string,
  stateDirectory: string | undefined,
  signal: AbortSignal | undefined,
): Promise<{ undone: string[]; notUndone: Array<{ name: string; message: string }> }> {
  // Read without the lock, only to know whether a VMM is to be waited for: most watches have nothing to undo.
  let peek: SandboxState | undefined;
  try {
    peek = new SandboxStore(id, stateDirectory).read<SandboxState>();
  } catch {
    peek = undefined; // the run under the lock says why
  }
  const vmmWaitMs = peek && vmmToUnplugFrom(peek) ? defaultQmpConnectTimeoutMs() : 0;
  const underLock = (_deadline: number | undefined, wait: VmmWaitSoFar) =>
    withSandbox(id, 'watchSandbox', { stateDirectory, signal }, async ({ store, state, network }) => {
      const unfinished = unfinishedEndpoints(network);
      if (state.attaching === true || unfinished.length === 0) return { undone: [], notUndone: [] };
      const vmm = vmmToUnplugFrom(state);
      const reached = vmm === undefined ? undefined : await reachVmmUnderLocks(vmm, wait);
      if (vmm !== undefined && reached?.outcome === 'busy') {
        const message = `${vmmBusyPastWait(vmm, 'watch', wait, reached.error)}; nothing of it was changed (to wait longer, VCNET_QMP_CONNECT_TIMEOUT=<seconds>)`;
        return {
          undone: [],
          notUndone: unfinished.map((endpoint) => ({ name: endpoint.properties.link.name, message })),
        };
      }
      const qmp = reached?.outcome === 'answered' ? reached.qmp : undefined;
      try {
        // A VM gone at the connect holds no NIC: the host side goes alone.
        const undo = await undoUnfinishedEndpoints(
          network,
          unfinished,
          reached?.outcome === 'gone' ? undefined : state.hypervisor,
          qmp,
        );
        sandboxRecordKeeper(store, state, network).persist();
        const remaining = new Set(network.endpoints());
        return {
          undone: unfinished
            .filter((endpoint) => !remaining.has(endpoint))
            .map((endpoint) => endpoint.properties.link.name),
          notUndone: unfinished
            .filter((endpoint) => remaining.has(endpoint))
            .map((endpoint) => ({ name: endpoint.properties.link.name, message: notUndoneReason(endpoint, undo) })),
        };
      } finally {
        await qmp?.close();
      }
    });
  return withVmmWaitedWithoutLocks(id, stateDirectory, { waitMs: vmmWaitMs, kinds: 'qemu-and-clh' }, underLock, signal);
}
