/**
 * The queue fds this process holds for endpoints of a recorded sandbox (what attachSandbox answered,
 * then endpoint.openQueueFds()), by record file: the detach or del-iface of that record closes them.
 * A long-lived caller may hand them to its VMM and never close its own copies: each sandbox would
 * then leave fds of a deleted macvtap in this process, until it runs out of them. The endpoint is held weakly; its fd numbers are kept, so the fds of an endpoint the caller dropped are
 * closed all the same (nothing else can close them then).
 */
import { closeFds } from '../plan/link-creation.js';

/** What this registry needs of an endpoint (endpoint.ts imports this file, not the other way). */
export interface QueueFdHolder {
  readonly index: number;
  readonly plumbing?: { tapName: string; tapFds: number[]; vhostFds: number[] } | undefined;
  closeFds(): void;
}

interface HeldQueueFds {
  record: string;
  endpoint: WeakRef<QueueFdHolder>;
  /** The endpoint's recorded identity: a detach matches its own loaded copy of the record by it. */
  index: number;
  tapName: string;
  fds: number[];
}

const recordOf = new WeakMap<QueueFdHolder, string>();
const heldBy = new WeakMap<QueueFdHolder, HeldQueueFds>();
const heldByRecord = new Map<string, Set<HeldQueueFds>>();

/** Ties endpoints to the record that lists them (its state file's path): their queue fds are then closed with it. */
export function tieToRecord(endpoints: readonly QueueFdHolder[], record: string): void {
  for (const endpoint of endpoints) {
    recordOf.set(endpoint, record);
    noteQueueFds(endpoint);
  }
}

/** Called when an endpoint's fds change (opened, closed): what it holds now is what is kept. */
export function noteQueueFds(endpoint: QueueFdHolder): void {
  forget(endpoint);
  const record = recordOf.get(endpoint);
  const plumbing = endpoint.plumbing;
  if (record === undefined || !plumbing) return;
  const fds = [...plumbing.tapFds, ...plumbing.vhostFds];
  if (fds.length === 0) return;
  const held: HeldQueueFds = {
    record,
    endpoint: new WeakRef(endpoint),
    index: endpoint.index,
    tapName: plumbing.tapName,
    fds,
  };
  heldBy.set(endpoint, held);
  const entries = heldByRecord.get(record) ?? new Set();
  entries.add(held);
  heldByRecord.set(record, entries);
}

function forget(endpoint: QueueFdHolder): void {
  const held = heldBy.get(endpoint);
  if (!held) return;
  heldBy.delete(endpoint);
  drop(held);
}

function drop(held: HeldQueueFds): void {
  const entries = heldByRecord.get(held.record);
  entries?.delete(held);
  if (entries?.size === 0) heldByRecord.delete(held.record);
}

/**
 * Closes the queue fds this process holds for `record`'s endpoints: those of `endpoints` (matched by
 * index and tap, as the record's own copies of them), or all when `endpoints` is absent.
 */
export function closeRecordQueueFds(record: string, endpoints?: readonly QueueFdHolder[]): void {
  const entries = heldByRecord.get(record);
  if (!entries) return;
  for (const held of [...entries]) {
    const named =
      endpoints === undefined ||
      endpoints.some(
        (endpoint) =>
          endpoint.index === held.index &&
          (endpoint.plumbing === undefined || endpoint.plumbing.tapName === held.tapName),
      );
    if (!named) continue;
    const endpoint = held.endpoint.deref();
    // The endpoint's own close empties its lists, so a later closeFds() never closes a reused number.
    if (endpoint && heldBy.get(endpoint) === held) endpoint.closeFds();
    else closeFds(held.fds);
    drop(held);
  }
}

const recordOfNetwork = new WeakMap<object, string>();

/** Ties a network loaded from a record to it: its removal of endpoints closes their queue fds held here. */
export function tieNetworkToRecord(network: object, record: string): void {
  recordOfNetwork.set(network, record);
}

/** The record a network was loaded from, if tied. */
export function networkRecord(network: object): string | undefined {
  return recordOfNetwork.get(network);
}
