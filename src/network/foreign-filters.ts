/**
 * Others' tc objects in the qdiscs vcnet added on pod links, read before the undo batch is built, so
 * detach decides from what the kernel holds now, not from the record alone:
 *   ingress  one qdisc per link that every tc user shares: it stays when someone else has put a
 *            filter into it since (vcnet then deletes only its own filters, by priority). A filter at
 *            a priority vcnet recorded is vcnet's only while it is what vcnet put there: a u32
 *            match-all whose one action is a mirred egress redirect to the recorded link (by
 *            ifindex). Another filter there (its own replaced, or one beside it that deleting the
 *            priority would take along) is kept, with its record, and so is the qdisc; so in an
 *            ingress or clsact qdisc the link had before attach, which vcnet never deletes.
 *   htb      vcnet's rate limit, on a link that had no shaping before attach (plan-attach refuses to
 *            replace a configured root): it goes, with whatever was put into it, so the link is as it
 *            was before attach; a notice names what of another tool's went with it.
 */
import type { Link } from '../netlink/codec/link.js';
import type { Filter } from '../netlink/codec/tc/filter.js';
import { formatHandle, TC_H_ROOT, tcMajor, tcMinor } from '../netlink/codec/tc/message.js';
import type { TrafficClass } from '../netlink/codec/tc/qdisc/htb.js';
import type { Qdisc } from '../netlink/codec/tc/qdisc.js';
import type { NetlinkHandle } from '../netlink/handle.js';
import { HTB_DEFAULT_CLASS, HTB_PARENT_CLASS, HTB_ROOT_HANDLE } from './plan/plan-attach.js';
import { createdLinkNames, filterKey, qdiscKey } from './plan/plan-detach.js';
import type { PlumbingStep } from './plan/types.js';

export interface OthersInQdiscs {
  /** Ingress qdiscs vcnet added that hold another tool's filter (key → why): kept, only vcnet's filters go. */
  kept: Map<string, string>;
  /** Shaping qdiscs vcnet added that hold another tool's filters, classes or qdiscs (key → what): deleted with them. */
  deletedWith: Map<string, string>;
  /** vcnet's filter records whose priority holds another's filter now (filterKey → why): kept, not deleted. */
  keptFilters: Map<string, string>;
  /**
   * vcnet's u32 filter records whose priority holds another's u32 node beside vcnet's (filterKey →
   * the handles of vcnet's nodes): only those nodes are deleted, by handle; the priority stays with
   * the other's. A kept redirect to a tap detach deletes would drop every frame it matches.
   */
  ownNodes: Map<string, number[]>;
  /**
   * Qdiscs the records say vcnet added on pod links that the link does not have now (qdiscKey): an
   * attach cut short journaled them and never made them, or they were deleted since. Already gone,
   * with the filters recorded in them: nothing is sent for them, by detach or in its dry run alike.
   */
  absent: Set<string>;
  /**
   * vcnet's filter records on pod links whose qdisc is there (its own, or one the link had before
   * attach) but that hold no filter at the recorded priority and protocol now (filterKey): deleted by
   * hand since, or never made by an attach cut short. Already gone: nothing is sent for them, by
   * detach, its dry run or gc alike. A filter dump that fails proves nothing: the filter stays planned.
   */
  absentFilters: Set<string>;
}

/**
 * Whether a dumped filter is (part of) the one vcnet adds: a u32 whose one action redirects every
 * frame to `targets`' egress. A u32 priority also dumps its head (handle 0, no options) and its hash
 * table (no selector, no action): those are vcnet's filter's as well.
 */
export function isVcnetRedirect(filter: Filter, kind: string, targets: ReadonlySet<number>): boolean {
  if (filter.kind !== kind || filter.options.kind !== 'u32') return false;
  if (!('keys' in filter.options)) return filter.handle === 0;
  const { keys, actions, classId } = filter.options;
  if (actions.length === 0 && keys.length === 0 && classId === undefined) return true;
  if (actions.length !== 1 || classId !== undefined || !keys.every((key) => key.mask === 0)) return false;
  const action = actions[0]!;
  return (
    action.kind === 'mirred' &&
    'targetIndex' in action &&
    action.direction === 'egress' &&
    action.mode === 'redirect' &&
    targets.has(action.targetIndex)
  );
}

/** "u32, redirect to eth9 (ifindex 7); …", each different description once: filters that are not vcnet's, for a notice. */
export function describeFilters(
  filters: readonly Filter[],
  resolve: (name: string, index?: number) => Link | undefined,
): string {
  return [...new Set(filters.map((filter) => describeFilter(filter, resolve)))].join('; ');
}

/** "u32, redirect to eth9 (ifindex 7)", for a notice about a filter that is not vcnet's. */
function describeFilter(filter: Filter, resolve: (name: string, index?: number) => Link | undefined): string {
  const actions = 'actions' in filter.options ? filter.options.actions : [];
  const redirect = actions.find((action) => action.kind === 'mirred' && 'targetIndex' in action);
  if (!redirect || !('targetIndex' in redirect)) return filter.kind;
  const target = resolve('', redirect.targetIndex);
  return `${filter.kind}, ${redirect.mode} to ${target ? `${target.name} (ifindex ${redirect.targetIndex})` : `ifindex ${redirect.targetIndex}`}`;
}

/** "prio 3, 7": a u32 filter dumps as several entries (its hash table, its nodes) under one priority. */
function priorities(filters: ReadonlyArray<{ priority: number }>): string {
  return [...new Set(filters.map((filter) => filter.priority))].join(', ');
}

/**
 * Whether a link's root qdisc, with the classes, filters and qdiscs of that link, has exactly the
 * shape a vcnet rate limit makes (plan-attach.ts htbSteps): an htb, handle 1:, default class 2, class
 * 1:1 under the root and 1:2 under it, both with rate = ceil at the same rate, no other class, no
 * filter on it and no qdisc under it.
 */
export function isVcnetHtb(
  root: Qdisc,
  classes: readonly TrafficClass[],
  filters: readonly Filter[],
  qdiscs: readonly Qdisc[],
): boolean {
  if (root.kind !== 'htb') return false;
  const defaultClass = 'defaultClass' in root.options ? root.options.defaultClass : undefined;
  const underneath = qdiscs.filter((qdisc) => qdisc !== root && tcMajor(qdisc.parent) === tcMajor(root.handle));
  const outer = classes.find((entry) => entry.handle === HTB_PARENT_CLASS);
  const inner = classes.find((entry) => entry.handle === HTB_DEFAULT_CLASS);
  return (
    root.handle === HTB_ROOT_HANDLE &&
    defaultClass === tcMinor(HTB_DEFAULT_CLASS) &&
    classes.length === 2 &&
    // The kernel dumps a class under the root qdisc with parent "root" (ffff:ffff), not 1:.
    (outer?.parent === TC_H_ROOT || outer?.parent === HTB_ROOT_HANDLE) &&
    inner?.parent === HTB_PARENT_CLASS &&
    outer.rateBitsPerSecond !== undefined &&
    outer.rateBitsPerSecond === outer.ceilBitsPerSecond &&
    inner.rateBitsPerSecond === outer.rateBitsPerSecond &&
    inner.ceilBitsPerSecond === outer.rateBitsPerSecond &&
    filters.length === 0 &&
    underneath.length === 0
  );
}

/** The classes vcnet's htb tree has (plan-attach.ts htbSteps): major:1 and major:2. */
function isVcnetClass(classHandle: number, qdiscHandle: number): boolean {
  const minor = tcMinor(classHandle);
  return (
    tcMajor(classHandle) === tcMajor(qdiscHandle) &&
    (minor === tcMinor(HTB_PARENT_CLASS) || minor === tcMinor(HTB_DEFAULT_CLASS))
  );
}

/** What another tool put into vcnet's htb on `index`: filters on it or its classes, classes, child qdiscs. */
async function othersInShapingQdisc(
  handle: Pick<NetlinkHandle, 'filters' | 'classes' | 'qdiscs'>,
  index: number,
  qdiscHandle: number,
): Promise<string[]> {
  const major = tcMajor(qdiscHandle);
  const classes = (await handle.classes(index).catch(() => [])).filter((cls) => tcMajor(cls.handle) === major);
  const theirs: string[] = [];
  for (const parent of [qdiscHandle, ...classes.map((cls) => cls.handle)]) {
    // vcnet adds no filter to its htb: every filter in it is another tool's.
    const filters = await handle.filters(index, parent).catch(() => []);
    if (filters.length > 0) {
      const kinds = [...new Set(filters.map((filter) => filter.kind))].join(', ');
      const where = parent === qdiscHandle ? '' : ` on class ${formatHandle(parent)}`;
      theirs.push(`filter prio ${priorities(filters)} (${kinds})${where}`);
    }
  }
  for (const cls of classes)
    if (!isVcnetClass(cls.handle, qdiscHandle)) theirs.push(`class ${formatHandle(cls.handle)}`);
  const children = (await handle.qdiscs(index).catch(() => [])).filter(
    (qdisc) => tcMajor(qdisc.parent) === major && tcMajor(qdisc.handle) !== major && qdisc.handle !== 0,
  );
  for (const qdisc of children) theirs.push(`${qdisc.kind} qdisc ${formatHandle(qdisc.handle)}`);
  return theirs;
}

/** For the qdiscs the records say vcnet added on pod links: those kept, and those that take others' objects with them. */
export async function othersInQdiscs(
  handle: Pick<NetlinkHandle, 'filters' | 'classes' | 'qdiscs'>,
  steps: readonly PlumbingStep[],
  /** The link a record means now (plan-detach.ts linkResolver). */
  resolve: (name: string, index?: number) => Link | undefined,
): Promise<OthersInQdiscs> {
  // A qdisc on a link vcnet created goes with that link, whoever's filters are in it.
  const deletedLinks = createdLinkNames(steps);
  const result: OthersInQdiscs = {
    kept: new Map(),
    deletedWith: new Map(),
    keptFilters: new Map(),
    ownNodes: new Map(),
    absent: new Set(),
    absentFilters: new Set(),
  };
  // Records of older builds do not say where their filter redirects: to a link the records made.
  const madeIndexes = new Set(
    steps.flatMap((step) => {
      if (step.step !== 'create-link') return [];
      const link = resolve(step.name, step.index);
      return link ? [link.index] : [];
    }),
  );
  for (const step of steps) {
    if (step.step !== 'add-qdisc' || deletedLinks.has(step.link)) continue;
    const link = resolve(step.link, step.index);
    if (!link) continue;
    const key = qdiscKey(step.link, step.handle);
    // A dump that fails proves nothing: the qdisc is planned as there, and the kernel's answer decides.
    const qdiscs = await handle.qdiscs(link.index).catch(() => undefined);
    if (qdiscs && !qdiscs.some((qdisc) => qdisc.handle === step.handle && qdisc.kind === step.kind)) {
      result.absent.add(key);
      continue;
    }
    if (step.kind !== 'ingress') {
      const theirs = await othersInShapingQdisc(handle, link.index, step.handle);
      if (theirs.length > 0) result.deletedWith.set(key, theirs.join(', '));
      continue;
    }
    const records = steps.filter(
      (other): other is Extract<PlumbingStep, { step: 'add-filter' }> =>
        other.step === 'add-filter' && other.link === step.link && tcMajor(other.parent) === tcMajor(step.handle),
    );
    const dumped = await handle.filters(link.index, step.handle).catch(() => undefined);
    const present = dumped ?? [];
    const ours = new Set<number>();
    for (const record of records) {
      if (classifyRecordedFilter(record, dumped, madeIndexes, resolve, result)) ours.add(record.priority);
    }
    // Another chain's filter is theirs at any priority: deleting vcnet's priority leaves it in the qdisc.
    const theirs = present.filter((filter) => (filter.chain ?? 0) !== 0 || !ours.has(filter.priority));
    if (theirs.length > 0) {
      const several = new Set(theirs.map((filter) => filter.priority)).size > 1;
      result.kept.set(key, `it holds another tool's filter${several ? 's' : ''} (prio ${priorities(theirs)})`);
    }
  }
  await filtersInOthersQdiscs(handle, steps, resolve, deletedLinks, madeIndexes, result);
  return result;
}

/**
 * Sorts one filter record of vcnet's by what its qdisc holds at the recorded priority now (`dumped`;
 * undefined: the dump failed, which proves nothing): true when what is there is vcnet's alone (or
 * nothing: then, with a dump, it is already gone, `absentFilters`); false when another's filter is
 * there, which deleting the priority would take along (recordedFilterNow): then only vcnet's own
 * nodes are deleted, by handle (`ownNodes`), and the record is kept (`keptFilters`) when none of
 * vcnet's is left there (another's filter in its place): in vcnet's qdisc or not.
 */
function classifyRecordedFilter(
  record: Extract<PlumbingStep, { step: 'add-filter' }>,
  dumped: readonly Filter[] | undefined,
  madeIndexes: ReadonlySet<number>,
  resolve: (name: string, index?: number) => Link | undefined,
  result: OthersInQdiscs,
): boolean {
  const targetIndex = record.redirectTo?.index;
  const targets = new Set(targetIndex !== undefined ? [targetIndex] : madeIndexes);
  // A mirred whose link was deleted dumps ifindex 0: vcnet's still, once its recorded target is gone.
  if (targetIndex === undefined || !resolve('', targetIndex)) targets.add(0);
  const key = filterKey(record.link, record.parent, record.priority);
  const now = recordedFilterNow(record, dumped ?? [], targets, resolve);
  switch (now.found) {
    case 'gone':
      if (dumped) result.absentFilters.add(key);
      return true;
    case 'alone':
      return true;
    case 'beside':
      result.ownNodes.set(key, now.ownNodes);
      return false;
    case 'taken':
      result.keptFilters.set(key, now.reason);
      return false;
  }
}

/** What one priority of a qdisc holds now of a filter vcnet added there (recordedFilterNow). */
export type RecordedFilterNow =
  /** Nothing at its priority and protocol: deleted since, or never made. */
  | { found: 'gone' }
  /** vcnet's alone: deleting the priority takes nothing else. */
  | { found: 'alone' }
  /** vcnet's u32 nodes (their handles) beside another's nodes in the same u32: deleted one by one. */
  | { found: 'beside'; ownNodes: number[] }
  /** Another's filter there that deleting vcnet's cannot leave: why, for a notice. */
  | { found: 'taken'; reason: string };

/**
 * What `dumped` (the filters of the record's qdisc) holds at the priority of `record`, a filter vcnet
 * added there redirecting to `targets`. A u32 another tool adds at vcnet's priority and protocol
 * joins vcnet's u32 as a second node (and vcnet's, added where theirs was, joins theirs): deleting
 * the priority would take theirs along, so vcnet's nodes go by handle. The head and hash table dump
 * with no keys, and stay with theirs. Used by detach and gc (classifyRecordedFilter) and by the
 * watch's undo of a filter it put back (tc-repair.ts).
 */
export function recordedFilterNow(
  record: Extract<PlumbingStep, { step: 'add-filter' }>,
  dumped: readonly Filter[],
  targets: ReadonlySet<number>,
  resolve: (name: string, index?: number) => Link | undefined,
): RecordedFilterNow {
  const atPriority = chainZeroOwnTables(
    dumped.filter((filter) => filter.priority === record.priority),
    (filter) =>
      'keys' in filter.options && filter.options.actions.length > 0 && isVcnetRedirect(filter, record.kind, targets),
  );
  const strangers = atPriority.filter((filter) => !isVcnetRedirect(filter, record.kind, targets));
  if (strangers.length === 0) {
    return atPriority.some((filter) => filter.protocol === record.protocol) ? { found: 'alone' } : { found: 'gone' };
  }
  const ownNodes = atPriority
    .filter((filter) => !strangers.includes(filter) && 'keys' in filter.options && filter.options.actions.length > 0)
    .map((filter) => filter.handle);
  if (record.kind === 'u32' && ownNodes.length > 0 && strangers.every((filter) => filter.kind === 'u32')) {
    return { found: 'beside', ownNodes };
  }
  const mixed = ownNodes.length > 0;
  return {
    found: 'taken',
    reason: `prio ${record.priority} holds a filter that is not vcnet's (${describeFilters(strangers, resolve)})${mixed ? ", beside vcnet's, which cannot be deleted without it" : ''}`,
  };
}

/**
 * The entries a dump lists at one priority that can be vcnet's: chain 0's (vcnet adds no other). u32
 * keeps one set of hash tables per qdisc and dumps every table of a priority under each chain's
 * filter there, so with another chain's u32 at that priority chain 0 lists that filter's table and
 * nodes too: those in a table other than the one vcnet's own nodes (`isOwnNode`) are in are left
 * out, and deleting vcnet's priority in chain 0 leaves them (the kernel frees only the deleted
 * filter's own table while another filter shares the set). Without such a filter, a second table in
 * chain 0 is someone's and stays. Used by detach (classifyRecordedFilter) and gc (orphan-links.ts).
 */
export function chainZeroOwnTables(atPriority: readonly Filter[], isOwnNode: (filter: Filter) => boolean): Filter[] {
  const chainZero = atPriority.filter((filter) => (filter.chain ?? 0) === 0);
  if (!atPriority.some((filter) => (filter.chain ?? 0) !== 0 && filter.kind === 'u32')) return chainZero;
  const tables = new Set(chainZero.filter(isOwnNode).map((filter) => u32Table(filter.handle)));
  if (tables.size === 0) return chainZero;
  return chainZero.filter((filter) => filter.handle === 0 || tables.has(u32Table(filter.handle)));
}

/** The hash table a u32 handle is in (its top 12 bits: `800:` of `800::801`). */
function u32Table(handle: number): number {
  return handle >>> 20;
}

/**
 * vcnet's filters in an ingress (or clsact) qdisc a pod link had before attach (no add-qdisc record
 * of vcnet's holds them), sorted as those in vcnet's own (classifyRecordedFilter): no longer at the
 * recorded priority and protocol, already gone; beside another's filter at that priority, kept. A
 * dump that fails (the qdisc gone too, say) proves nothing.
 */
async function filtersInOthersQdiscs(
  handle: Pick<NetlinkHandle, 'filters'>,
  steps: readonly PlumbingStep[],
  resolve: (name: string, index?: number) => Link | undefined,
  deletedLinks: ReadonlySet<string>,
  madeIndexes: ReadonlySet<number>,
  result: OthersInQdiscs,
): Promise<void> {
  const recordedQdiscs = new Set(
    steps.flatMap((step) => (step.step === 'add-qdisc' ? [qdiscKey(step.link, step.handle)] : [])),
  );
  const dumps = new Map<string, Promise<Filter[] | undefined>>();
  for (const step of steps) {
    if (step.step !== 'add-filter' || deletedLinks.has(step.link)) continue;
    if (recordedQdiscs.has(qdiscKey(step.link, step.parent))) continue;
    const link = resolve(step.link, step.index);
    if (!link) continue;
    const dumpKey = `${link.index}/${step.parent}`;
    let dump = dumps.get(dumpKey);
    if (!dump) {
      dump = handle.filters(link.index, step.parent).catch(() => undefined);
      dumps.set(dumpKey, dump);
    }
    classifyRecordedFilter(step, await dump, madeIndexes, resolve, result);
  }
}
