/**
 * Watches a pod namespace for what the guest would see change: interfaces coming and going, their
 * addresses, routes, MTU, administrative flags and permanent neighbours (`vcnet watch` keeps the VM
 * in step with it).
 *
 * Events are only a trigger: after a quiet spell (the debounce) the watcher takes a fresh snapshot
 * through its own request socket and diffs it against the last one. Diffing whole snapshots stays
 * right through bursts, through events that arrive out of order and through lost events (ENOBUFS
 * just triggers the same resync), and a burst of hundreds of events costs a few snapshots.
 *
 *   const watcher = await NamespaceWatcher.start('/var/run/netns/pod', { onChange: (change) => apply(change) });
 *   ...
 *   await watcher.stop();
 */
import { reportNotice } from '../diagnostics.js';
import { InvalidInputError, SystemCallError } from '../errors.js';
import { MessageType } from '../netlink/codec/constants.js';
import { InterfaceFlag } from '../netlink/codec/link/message.js';
import { decodeNeighbour, NeighbourState } from '../netlink/codec/neighbour.js';
import type { RawMessage } from '../netlink/codec/reader.js';
import { NetlinkHandle } from '../netlink/handle.js';
import { NetlinkSocket } from '../netlink/transport.js';
import type { OpenedNamespace } from '../netns/namespace-identity.js';
import { guestRoute, isValidGuestRoute } from './guest.js';
import type { NetworkInfo } from './network-info.js';
import { VCNET_LINK_GROUP } from './plan/plan-attach.js';
import { interfacesOf } from './scan.js';

/** The rtnetlink multicast groups watched (RTNLGRP_*). */
const WatchedGroup = {
  LINK: 1,
  NEIGH: 3,
  IPV4_IFADDR: 5,
  IPV4_ROUTE: 7,
  IPV6_IFADDR: 9,
  IPV6_ROUTE: 11,
} as const;

/** bind() takes groups below 32 as a bitmask, group N being bit N-1. */
const GROUP_MASK = Object.values(WatchedGroup).reduce((mask, group) => mask | (1 << (group - 1)), 0);

/** RTNLGRP_TC: qdiscs, classes, filters, actions and chains (NamespaceWatcherOptions.trafficControl). */
const TC_GROUP = 4;

/** The messages RTNLGRP_TC carries: qdisc, class, filter (36-47), action (48-51), chain (100-103). */
function isTrafficControlMessage(type: number): boolean {
  return (type >= MessageType.NEWQDISC && type <= 51) || (type >= 100 && type <= 103);
}

/** vcnet's own taps and ifbs: plumbing it made, never something to hot-plug. */
const VCNET_LINK_NAME = /^(tap|ifb)\d+_kata$/;

/**
 * A link vcnet made, or that looks like one: named as its taps and ifbs, or in its link group. Never
 * hot-plugged (a tenant's tun put in vcnet's group is not a new endpoint); watched only for going away.
 */
function isVcnetLink(info: NetworkInfo): boolean {
  return VCNET_LINK_NAME.test(info.link.name) || info.link.group === VCNET_LINK_GROUP;
}

/** How long a watcher waits for a burst of events to end before it reads (options.debounceMs). */
export const DEFAULT_DEBOUNCE_MS = 200;
/** A snapshot or onChange that failed is tried again after a growing wait, up to this. */
export const MAX_RETRY_DELAY_MS = 30_000;

/**
 * The wait before try `attempt` (1, 2, ...) of something that failed, for a watcher debouncing
 * `debounceMs`: twice the debounce (at least 100 ms) at first, doubling, never more than
 * MAX_RETRY_DELAY_MS. The one schedule of a watch: the watcher's own retry of a change (unbounded:
 * a change is never dropped) and the sandbox watch's retry of tc objects (tc-repair-retry.ts, a
 * bounded number of tries) both wait this long.
 */
export function retryDelayMs(debounceMs: number, attempt: number): number {
  return Math.min(MAX_RETRY_DELAY_MS, Math.max(100, debounceMs) * 2 ** Math.min(attempt, 16));
}

/**
 * Flags someone sets on purpose. RUNNING, LOWER_UP and DORMANT follow the carrier by themselves (a
 * veth peer going up flips them) and would report changes nobody made.
 */
const ADMINISTRATIVE_FLAGS =
  InterfaceFlag.UP | InterfaceFlag.NOARP | InterfaceFlag.PROMISC | InterfaceFlag.ALLMULTI | InterfaceFlag.MULTICAST;

export interface NamespaceChange {
  /** Interfaces that were not there before, or were deleted and made again under the same name. */
  addedInterfaces: NetworkInfo[];
  /** Names of interfaces gone (deleted, renamed, moved away, or made again: then also in added). */
  removedInterfaces: string[];
  /**
   * vcnet's own links (isVcnetLink) that were there and are gone, each by the name and ifindex it
   * had: deleted, moved out, renamed, or made again (another ifindex). A VM whose NIC used one is
   * left without its backend. A name alone does not say whose it was: a new endpoint may reuse the
   * name of a tap vcnet itself deleted in the same change.
   */
  removedVcnetLinks?: Array<{ name: string; index: number }>;
  /** Interfaces whose addresses, routes, MTU, administrative flags or permanent neighbours changed. */
  changedInterfaces: NetworkInfo[];
  /**
   * Interfaces (same ifindex) whose MAC changed, whatever else did. Not something the guest is told:
   * a NIC's MAC is fixed once plugged, so the caller says what it means (sandbox-watch.ts does for a
   * tcfilter endpoint, whose guest NIC has the pod link's MAC of its attach). Only present when there are some.
   */
  macChangedInterfaces?: NetworkInfo[];
  /**
   * Only with NamespaceWatcherOptions.trafficControl: some qdisc, class or filter in the namespace
   * changed since the last change delivered (or may have: events were lost, or the watch just
   * started). The watcher does not say which: the caller compares what it made with the kernel.
   */
  trafficControl?: true;
  /** When the snapshot the change comes from was read. */
  snapshotAt: Date;
}

export interface NamespaceWatcherOptions {
  /** Quiet time after the last event before the namespace is read again. Default 200. */
  debounceMs?: number;
  /**
   * Longest a steady stream of events may hold the read back, counted from the first event not yet
   * read. Default max(1000, 5 × debounceMs).
   */
  maxDelayMs?: number;
  /**
   * Also watch tc (RTNLGRP_TC): a qdisc, class or filter changed makes a change with
   * `trafficControl: true`, even when no interface changed; so does the first read, made at once, and
   * a read after lost events. Default false.
   */
  trafficControl?: boolean;
  /** Links to leave out by name; default: vcnet's own taps and ifbs (VCNET_LINK_NAME). */
  ignore?: (linkName: string) => boolean;
  /**
   * Interfaces there at start that are left out of the baseline: the first read, made at once,
   * reports them as added (a watch that undid an unfinished attach of one attaches it as new).
   */
  newAtStart?: readonly string[];
  /**
   * The view the first read is compared with, made from the interfaces there at start (`present`);
   * default: those, so nothing is reported until something changes. A watch starting over a record
   * gives the interfaces as last applied, and what changed while nothing watched is its first change.
   * `vcnetLinks`: vcnet's own links that view has, by name and ifindex, besides those there now.
   */
  startView?: (present: readonly NetworkInfo[]) => {
    interfaces: readonly NetworkInfo[];
    vcnetLinks?: ReadonlyArray<{ name: string; index: number }>;
  };
  /**
   * Called with each non-empty change, never twice at once: events during a call lead to another
   * read once it returns. A throw goes to onError, and the change is not taken as delivered: the
   * namespace is read again after a growing wait (as a failed read is), and the change comes again,
   * with whatever changed since, against the same baseline. So onChange must be idempotent: an
   * interface it already handled before throwing comes again.
   * To stop from in here, call stop() without awaiting it (it waits for this call to end).
   */
  onChange: (change: NamespaceChange) => void | Promise<void>;
  /**
   * Failed snapshots (retried by themselves), receive errors, and throws of onChange. Given here, a
   * failure is reported by this handler only; without it, each is published on vcnet:notice, and
   * with no subscriber there it is a process warning.
   */
  onError?: (error: Error) => void;
}

/** What the watcher reads: the kernel in start(); any list of interfaces for tests and other callers. */
export interface InterfaceSource {
  /** The interfaces present now (loopback left out). */
  read(): Promise<NetworkInfo[]>;
  /** Releases what reading holds (sockets); a promise settles once their fds are closed. */
  close(): void | Promise<void>;
}

interface ResolvedOptions {
  debounceMs: number;
  trafficControl: boolean;
  maxDelayMs: number;
  ignore: (linkName: string) => boolean;
  onChange: (change: NamespaceChange) => void | Promise<void>;
  onError: (error: Error) => void;
}

function milliseconds(field: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isFinite(value) || value < 0 || value > 3_600_000) {
    throw new InvalidInputError(field, value, 'milliseconds from 0 to 3600000');
  }
  return value;
}

function resolveOptions(options: NamespaceWatcherOptions): ResolvedOptions {
  const debounceMs = milliseconds('debounceMs', options.debounceMs, DEFAULT_DEBOUNCE_MS);
  const maxDelayMs = milliseconds('maxDelayMs', options.maxDelayMs, Math.max(1000, 5 * debounceMs));
  return {
    debounceMs,
    trafficControl: options.trafficControl === true,
    maxDelayMs: Math.max(maxDelayMs, debounceMs),
    ignore: options.ignore ?? ((name) => VCNET_LINK_NAME.test(name)),
    onChange: options.onChange,
    // A caller's onError reports for itself (watchSandbox publishes its own notice, naming the
    // sandbox): a notice here as well would be a second one for the same failure.
    onError:
      options.onError ??
      ((error) =>
        reportNotice(
          () => ({
            operation: 'watch',
            endpoint: '',
            message: `could not read or apply a namespace change: ${error.message}`,
            error,
          }),
          undefined,
        )),
  };
}

/**
 * What of an interface the guest would be told, as one comparable string: MTU, administrative
 * flags, addresses, the routes Kata copies (not the kernel's own) and permanent neighbours. Dynamic
 * neighbours are left out: they come and go with traffic.
 */
export function guestSignature(info: NetworkInfo): string {
  return JSON.stringify({
    mtu: info.link.mtu,
    flags: info.link.flags & ADMINISTRATIVE_FLAGS,
    addresses: info.addresses
      .map((address) => `${address.address}/${address.prefixLength}${address.peer ? ` peer ${address.peer}` : ''}`)
      .sort(),
    routes: info.routes
      .filter(isValidGuestRoute)
      .map((route) => JSON.stringify(guestRoute(route, '')))
      .sort(),
    neighbours: info.neighbours
      .filter((neighbour) => neighbour.state === NeighbourState.PERMANENT)
      .map((neighbour) => `${neighbour.destination} ${neighbour.linkLayerAddress ?? ''}`)
      .sort(),
  });
}

/**
 * The change from one view to the next, both keyed by link name. An interface whose index changed
 * was deleted and made again between the views: the old one is removed and the new one added, as
 * everything built on the old index (tc redirects, taps) is gone.
 */
export function diffInterfaces(
  previous: ReadonlyMap<string, NetworkInfo>,
  current: ReadonlyMap<string, NetworkInfo>,
): Omit<NamespaceChange, 'snapshotAt'> {
  const change: Omit<NamespaceChange, 'snapshotAt'> = {
    addedInterfaces: [],
    removedInterfaces: [],
    changedInterfaces: [],
  };
  for (const [name, before] of previous) {
    const after = current.get(name);
    if (!after || after.link.index !== before.link.index) change.removedInterfaces.push(name);
  }
  for (const [name, after] of current) {
    const before = previous.get(name);
    if (!before || before.link.index !== after.link.index) {
      change.addedInterfaces.push(after);
      continue;
    }
    if (guestSignature(before) !== guestSignature(after)) change.changedInterfaces.push(after);
    if ((before.link.address ?? '').toLowerCase() !== (after.link.address ?? '').toLowerCase()) {
      change.macChangedInterfaces = [...(change.macChangedInterfaces ?? []), after];
    }
  }
  return change;
}

function isEmpty(change: Omit<NamespaceChange, 'snapshotAt'>): boolean {
  return (
    (change.trafficControl ? 1 : 0) +
      change.addedInterfaces.length +
      change.removedInterfaces.length +
      change.changedInterfaces.length +
      (change.macChangedInterfaces?.length ?? 0) +
      (change.removedVcnetLinks?.length ?? 0) ===
    0
  );
}

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}

const neighbourKey = (index: number, destination: string): string => `${index} ${destination}`;

/** Node's own, taken at load: a test's fake timers do not stop the watchers' turns. */
const nextCheckPhase: typeof setImmediate = globalThis.setImmediate;
/** Whether a read started in this event-loop turn (cleared in the loop's next check phase). */
let turnTaken = false;
/** Settles when the last read that had to wait got its turn: the next one waits for it, then its own. */
let lastWait: Promise<void> = Promise.resolve();

function takeTurn(): void {
  turnTaken = true;
  nextCheckPhase(() => {
    turnTaken = false;
  });
}

/**
 * Resolves at once when no other watcher's read started in this event-loop turn, else in a turn of
 * its own: the reads (and the onChange calls after them) of every watcher in this process start one
 * per turn, each once the loop has run its due timers and I/O since the last one started. Watchers with the same
 * debounce have their timers in one of Node's timer lists, whose due timers run back to back, and a
 * change set that never waits on I/O (netlink is read synchronously) runs whole inside its timer's
 * callback: 8 watches whose pods each got a link at once held the loop 400-960 ms at a time, 3 to 6
 * change sets in one stretch. Not a queue of change sets: one waiting on I/O (a hot-plug, a link
 * deletion) does not hold the next one up.
 */
function ownEventLoopTurn(): Promise<void> | undefined {
  if (!turnTaken) {
    takeTurn();
    return undefined;
  }
  // Two check phases on: the loop's timers phase lies between, whatever phase the last read started in.
  const turn = lastWait
    .then(() => new Promise<void>((resolve) => nextCheckPhase(resolve)))
    .then(
      () =>
        new Promise<void>((resolve) =>
          nextCheckPhase(() => {
            takeTurn();
            resolve();
          }),
        ),
    );
  lastWait = turn;
  return turn;
}

export class NamespaceWatcher {
  private baseline = new Map<string, NetworkInfo>();
  /** vcnet's own links of the baseline, name to ifindex. */
  private vcnetLinks = new Map<string, number>();
  /** Permanent neighbours of the baseline: their updates (even to FAILED, on delete) matter. */
  private permanentNeighbours = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  /** When the first event not yet covered by a read arrived (maxDelayMs counts from it). */
  private pendingSince: number | undefined;
  /** The read and onChange under way, if any. */
  private inFlight: Promise<void> | undefined;
  private failedAttempts = 0;
  /** After a failed read or onChange, the next read waits until then. */
  private notBefore = 0;
  private stopped = false;
  /** Set by stop(): settles once the source has closed what it holds (its sockets' fds). */
  private closing: Promise<void> | undefined;
  /** The change the last read found and could not deliver (onChange failed), until one is delivered. */
  private undelivered: Omit<NamespaceChange, 'snapshotAt'> | undefined;
  /** A tc event (or lost events) since the last change delivered (options.trafficControl only). */
  private trafficControlPending = false;

  private constructor(
    private readonly source: InterfaceSource,
    private readonly options: ResolvedOptions,
  ) {}

  /**
   * Watches the namespace at `namespacePath` (/var/run/netns/X, /proc/PID/ns/net), or one opened and
   * checked by identity, whose socket (the one its cookie was read on) then reads the snapshots.
   * Interfaces there now (or options.startView's view of them) are the baseline and are not
   * reported; resolves once they are read and events flow.
   */
  static async start(namespace: string | OpenedNamespace, options: NamespaceWatcherOptions): Promise<NamespaceWatcher> {
    const namespacePath = typeof namespace === 'string' ? namespace : namespace.entryPath;
    // Refused here, before any socket opens; over() resolves them for the watcher.
    resolveOptions(options);
    // Bound to the groups before the baseline is read: whatever changes meanwhile is queued on the
    // socket and leads to a read as soon as it is drained.
    const events = NetlinkSocket.open(
      namespacePath,
      options.trafficControl === true ? GROUP_MASK | (1 << (TC_GROUP - 1)) : GROUP_MASK,
    );
    let handle: NetlinkHandle;
    try {
      // The events come on a socket of their own (bound to the groups); snapshots are read on this one.
      handle =
        typeof namespace === 'string' ? NetlinkHandle.open(namespacePath) : namespace.netlinkHandle(namespacePath);
    } catch (error) {
      events.close();
      throw error;
    }
    const watcher = await NamespaceWatcher.over(
      {
        read: async () => interfacesOf(await handle.snapshot()),
        close: async () => {
          await Promise.all([events.close(), handle.close()]);
        },
      },
      options,
    );
    // Set before listening: the socket stops its poller when nobody takes notifications.
    events.onNotification = (message) => watcher.notificationArrived(message);
    events.onReceiveError = (error) => {
      // ENOBUFS: the kernel dropped events; the next snapshot catches up with all of them.
      if (!(error instanceof SystemCallError && error.errno === 'ENOBUFS')) watcher.report(error);
      watcher.resync({ trafficControl: true });
    };
    try {
      events.startListening();
    } catch (error) {
      await watcher.stop();
      throw error;
    }
    return watcher;
  }

  /**
   * Watches any interface source; events are fed by calling resync(). start() is this over the
   * kernel; unit tests use it with a fake.
   */
  static async over(source: InterfaceSource, options: NamespaceWatcherOptions): Promise<NamespaceWatcher> {
    try {
      const watcher = new NamespaceWatcher(source, resolveOptions(options));
      const interfaces = await source.read();
      const view = options.startView?.(interfaces);
      const baseline = watcher.keep([...(view?.interfaces ?? interfaces)]);
      const newAtStart = (options.newAtStart ?? []).filter((name) => baseline.delete(name));
      const vcnetLinks = vcnetLinksOf(interfaces);
      for (const link of view?.vcnetLinks ?? []) vcnetLinks.set(link.name, link.index);
      watcher.setBaseline(baseline, vcnetLinks);
      // A view of its own: read again at once, and whatever differs from it is the first change.
      // Watching tc: what changed in it before the watch started is not known, so the first read says it may have.
      if (watcher.options.trafficControl) watcher.resync({ trafficControl: true });
      else if (newAtStart.length > 0 || view) watcher.resync();
      return watcher;
    } catch (error) {
      await source.close();
      throw error;
    }
  }

  /** The interfaces as of the last change delivered: at first, those there at start (or the start view). */
  interfaces(): NetworkInfo[] {
    return [...this.baseline.values()];
  }

  /**
   * Reads the namespace again after the debounce, as if an event had arrived; `trafficControl` (with
   * options.trafficControl), as if a tc event had: the change then says so, even with no interface changed.
   */
  resync(reason: { trafficControl?: boolean } = {}): void {
    if (this.stopped) return;
    if (reason.trafficControl && this.options.trafficControl) this.trafficControlPending = true;
    this.pendingSince ??= Date.now();
    // A read under way arms the timer again when it ends, so onChange calls never overlap.
    if (this.inFlight) return;
    this.arm();
  }

  /**
   * Reads the namespace and delivers what changed now, instead of after the debounce (or a retry):
   * for a watch about to stop, so a change made just before is not lost. Resolves with the change that
   * could not be delivered, if any (onError was told why); undefined when nothing is left.
   */
  async flush(): Promise<Omit<NamespaceChange, 'snapshotAt'> | undefined> {
    await this.inFlight;
    if (this.stopped) return this.undelivered;
    // Read even with nothing pending: the event of a change made just now may not have been read yet.
    clearTimeout(this.timer);
    this.timer = undefined;
    this.pendingSince = undefined;
    const read = this.readAndReport();
    this.inFlight = read.then(() => undefined);
    await read;
    this.inFlight = undefined;
    return this.undelivered;
  }

  /**
   * Stops watching: no onChange call starts after this, the sockets are closed (nothing keeps the
   * process alive), and the promise resolves once an onChange call under way has returned.
   */
  async stop(): Promise<void> {
    if (!this.stopped) {
      this.stopped = true;
      clearTimeout(this.timer);
      this.timer = undefined;
      this.closing = Promise.resolve(this.source.close());
    }
    await this.inFlight;
    await this.closing;
  }

  private notificationArrived(message: RawMessage): void {
    if (isTrafficControlMessage(message.type)) {
      this.resync({ trafficControl: true });
      return;
    }
    if (message.type === MessageType.NEWNEIGH || message.type === MessageType.DELNEIGH) {
      // ARP and NDP churn with traffic; only permanent entries reach the guest.
      try {
        const neighbour = decodeNeighbour(message);
        const permanent = (neighbour.state & NeighbourState.PERMANENT) !== 0;
        if (!permanent && !this.permanentNeighbours.has(neighbourKey(neighbour.index, neighbour.destination))) return;
      } catch {
        // Undecodable: read the namespace to be sure.
      }
    }
    this.resync();
  }

  private report(error: unknown): void {
    try {
      this.options.onError(asError(error));
    } catch {
      // An onError that throws must not take the watcher (or the event loop callback) down with it.
    }
  }

  private keep(interfaces: NetworkInfo[]): Map<string, NetworkInfo> {
    return new Map(
      interfaces.filter((info) => !this.options.ignore(info.link.name)).map((info) => [info.link.name, info]),
    );
  }

  private setBaseline(baseline: Map<string, NetworkInfo>, vcnetLinks: Map<string, number>): void {
    this.baseline = baseline;
    this.vcnetLinks = vcnetLinks;
    this.permanentNeighbours = new Set(
      [...baseline.values()].flatMap((info) =>
        info.neighbours
          .filter((neighbour) => neighbour.state === NeighbourState.PERMANENT)
          .map((neighbour) => neighbourKey(neighbour.index, neighbour.destination)),
      ),
    );
  }

  /** Starts the debounce timer: debounceMs from now, but not past maxDelayMs after the first pending event. */
  private arm(): void {
    clearTimeout(this.timer);
    const now = Date.now();
    const waited = now - (this.pendingSince ?? now);
    const debounced = Math.max(0, Math.min(this.options.debounceMs, this.options.maxDelayMs - waited));
    this.timer = setTimeout(() => this.run(), Math.max(debounced, this.notBefore - now));
  }

  private run(): void {
    this.timer = undefined;
    this.pendingSince = undefined;
    this.inFlight = this.readAndReport().then((delivered) => {
      this.inFlight = undefined;
      if (this.stopped) return;
      if (delivered) {
        this.failedAttempts = 0;
        this.notBefore = 0;
      } else {
        // Read again even without new events: the change that triggered this one is still undelivered.
        this.failedAttempts++;
        this.notBefore = Date.now() + retryDelayMs(this.options.debounceMs, this.failedAttempts);
        this.pendingSince ??= Date.now();
      }
      if (this.pendingSince !== undefined) this.arm();
    });
  }

  /** One read, diff and onChange call; false when the read or onChange failed. Never rejects. */
  private async readAndReport(): Promise<boolean> {
    const waiting = ownEventLoopTurn();
    if (waiting) {
      await waiting;
      if (this.stopped) return true;
    }
    let current: Map<string, NetworkInfo>;
    let vcnetLinks: Map<string, number>;
    let snapshotAt: Date;
    // Taken before the read: a tc event during it or onChange leads to another change.
    const trafficControl = this.trafficControlPending;
    this.trafficControlPending = false;
    try {
      const interfaces = await this.source.read();
      current = this.keep(interfaces);
      vcnetLinks = vcnetLinksOf(interfaces);
      snapshotAt = new Date();
    } catch (error) {
      // After stop() the read fails because its socket was closed: nothing to report.
      if (!this.stopped) this.report(error);
      if (trafficControl) this.trafficControlPending = true;
      return false;
    }
    if (this.stopped) return true;
    const removedVcnetLinks = [...this.vcnetLinks]
      .filter(([name, index]) => vcnetLinks.get(name) !== index)
      .map(([name, index]) => ({ name, index }));
    const change = {
      ...diffInterfaces(this.baseline, current),
      ...(removedVcnetLinks.length > 0 ? { removedVcnetLinks } : {}),
      ...(trafficControl ? { trafficControl: true as const } : {}),
    };
    if (isEmpty(change)) {
      this.undelivered = undefined;
      this.setBaseline(current, vcnetLinks);
      return true;
    }
    try {
      await this.options.onChange({ ...change, snapshotAt });
    } catch (error) {
      // The baseline stays: the next read reports this change again (a VM that did not answer, a
      // lock held too long), rather than losing it until something else changes.
      this.undelivered = change;
      if (trafficControl) this.trafficControlPending = true;
      this.report(error);
      return false;
    }
    this.undelivered = undefined;
    this.setBaseline(current, vcnetLinks);
    return true;
  }
}

function vcnetLinksOf(interfaces: readonly NetworkInfo[]): Map<string, number> {
  return new Map(interfaces.filter(isVcnetLink).map((info) => [info.link.name, info.link.index]));
}
