/**
 * planTrafficControlRepair: what `vcnet watch` sends when tc objects vcnet made for an attached
 * endpoint have gone while the endpoint stays: someone ran `tc qdisc del dev eth0 ingress`, another
 * tool flushed the link's ingress, a CNI plugin made the link's qdiscs again, an htb was deleted.
 * Without its redirect filters a tcfilter VM gets no frame from its pod link (or the pod link none
 * from the VM), and without its htb the rate limit is gone. Without a class of an htb that is there
 * (`tc class del dev eth0 classid 1:2`) the htb sends every frame through its direct queue, unlimited:
 * the class is made again under it.
 *
 * The record is the reference, read step by step: each ingress qdisc, u32 redirect filter and htb
 * rate limit it says vcnet added, on a link that is still there, is looked for in a dump of the
 * namespace, and one that is missing is planned again as attach makes it (the same change builders:
 * plan-attach.ts ingressChange, redirectChange, htbChanges; same link, handle, parent, priority,
 * protocol, redirect target; an htb with the rate attach gave its link, rateLimitPlacement), so the
 * record stays true and detach undoes it as before. A place another tool's object holds now (a
 * filter of its own at vcnet's priority, a clsact where vcnet's ingress was, a root qdisc of its own
 * where the htb was) is left as it is: the outcome says what holds it and what to do. vcnet's ifb of a
 * rate limit, deleted, is not made again (lostIfb): the outcome says what it breaks and what to do.
 *
 * Pure: no I/O. tc-repair.ts dumps the namespace, sends the plan's changes through the executor
 * (apply.ts sendChanges) and says the outcomes (repairOutcomes) under the sandbox lock.
 */
import { hintFromCause, isTransientFailure } from '../../errors.js';
import { InterfaceFlag } from '../../netlink/codec/link/message.js';
import type { Link } from '../../netlink/codec/link.js';
import type { Filter } from '../../netlink/codec/tc/filter.js';
import { formatHandle, INGRESS_HANDLE, TC_H_INGRESS, TC_H_ROOT } from '../../netlink/codec/tc/message.js';
import type { TrafficClass } from '../../netlink/codec/tc/qdisc/htb.js';
import type { Qdisc } from '../../netlink/codec/tc/qdisc.js';
import { answerLost } from '../../netlink/errors.js';
import { commandIn, shellWord } from '../../shell-word.js';
import { chainZeroOwnTables, describeFilters, isVcnetRedirect } from '../foreign-filters.js';
import { undoOf } from './inverse.js';
import { QUEUE_LENGTH_WITH_FIRST_QDISC } from './older-records.js';
import {
  DEFAULT_ROOT_QDISCS,
  HTB_DEFAULT_CLASS,
  HTB_PARENT_CLASS,
  HTB_ROOT_HANDLE,
  htbChanges,
  ifbName,
  ingressChange,
  rateLimitPlacement,
  redirectChange,
} from './plan-attach.js';
import { linkResolver } from './plan-detach.js';
import type { Change, LinkRef, Plan, PlumbingStep, RateLimit } from './types.js';

/** What the check did about one tc object of an endpoint's record. */
export interface TrafficControlRepair {
  /** The link the object is on: the pod link, or vcnet's tap, macvtap or ifb. */
  link: string;
  /**
   * The object, as tc names it: `ingress qdisc ffff:`, `filter prio 49152 (redirect to tap0_kata)`,
   * `htb qdisc 1:`, `htb class 1:2` (or `htb classes 1:1, 1:2`).
   */
  object: string;
  /**
   * `restored`: it was gone and is made again as recorded. `taken`: another tool's object holds its
   * place now, left as it is. `failed`: it is gone and could not be made again (the message says why).
   */
  outcome: 'restored' | 'taken' | 'failed';
  /** For people: link, object, what was done and, when it was not, what to do. */
  message: string;
  /**
   * On a `failed` object the kernel refused for a reason that may pass (errors.ts
   * isTransientFailure: EBUSY, ENOBUFS, ...): the watch tries again on a timer. Not there for a
   * refusal a retry cannot change (EINVAL, EOPNOTSUPP), nor for what is known without sending.
   */
  transient?: true;
}

/** The part of an endpoint the check reads: its guest name, pod link and plumbing record. */
export interface RepairableEndpoint {
  name: string;
  properties: { link: Pick<Link, 'name' | 'index'> };
  /** As an endpoint's AttachedPlumbing has it (model/plumbing-context.ts), or its record. */
  plumbing:
    | { model: Plan['model'] | 'pending'; steps: PlumbingStep[]; tapName: string; tapIndex: number; partial?: true }
    | undefined;
}

/**
 * What the plan reads: the namespace's links and qdiscs, the filters of the lists repairFilterLists
 * names and the classes of the links repairClassLinks names.
 */
export interface RepairSnapshot {
  links: readonly Link[];
  qdiscs: readonly Qdisc[];
  filters: readonly Filter[];
  classes: readonly TrafficClass[];
  /** The pod's namespace (undefined: this one), for the tc commands the outcomes quote. */
  namespacePath?: string | undefined;
}

/**
 * `tc OBJECT VERB dev LINK REST` run in the pod's namespace, to paste into a host shell: a bare one
 * there acts on a host link of the pod link's name. The link name is quoted (a tenant picks it).
 */
function tcCommandOn(
  namespacePath: string | undefined,
  link: Link,
  object: string,
  verb: string,
  rest: string,
): string {
  return `${commandIn(namespacePath, 'tc')} ${object} ${verb} dev ${shellWord(link.name)} ${rest}`;
}

/** One object to make again: the changes that make it, and what is said once the kernel answers them. */
export interface TrafficControlRestore {
  link: string;
  object: string;
  /** The changes that make it, as attach makes it: it is restored when the kernel makes all of them. */
  changes: Change[];
  /** Sent right after them, their answers not counted: the pod link's transmit queue of 0 put back. */
  tidy: Change[];
  /**
   * What takes it away again when it is made only in part (an htb whose class was refused), or made
   * where the ingress qdisc it needs could not be made: nothing is left half-built.
   */
  undo: Change[];
  /** The ingress qdisc restore this filter goes in: when that one fails, its outcome says so and this one nothing. */
  needs?: TrafficControlRestore;
  /** Said when it is made. */
  restored: string;
  /**
   * Said when it is not, with the kernel's reason and `next`, what the watch does about it
   * (repairOutcomes: tries again shortly, or only with the next tc change when a retry cannot help).
   */
  failed: (reason: string, next: string) => string;
}

export interface TrafficControlRepairPlan {
  /**
   * Each object that is not as recorded, in the record's order (ingress qdiscs, then filters, then
   * htbs): its outcome when it is known without sending anything (`taken`, `failed`), else the
   * restore to send.
   */
  objects: Array<TrafficControlRepair | TrafficControlRestore>;
}

type FilterRecord = Extract<PlumbingStep, { step: 'add-filter' }>;
type QdiscRecord = Extract<PlumbingStep, { step: 'add-qdisc' }>;

export function isRestore(object: TrafficControlRepair | TrafficControlRestore): object is TrafficControlRestore {
  return 'changes' in object;
}

/** The changes a plan sends, in order: each restore's, then its tidy ones. */
export function repairChanges(plan: TrafficControlRepairPlan): Change[] {
  return plan.objects.filter(isRestore).flatMap((restore) => [...restore.changes, ...restore.tidy]);
}

/** An endpoint's record, its links resolved in a dump of the namespace. */
interface ReadRecord {
  plumbing: Omit<NonNullable<RepairableEndpoint['plumbing']>, 'model'> & { model: Plan['model'] };
  pod: Link;
  /** The link a record names now: by ifindex when it has one (its own, or the create-link's), else by name. */
  resolve: (name: string, index?: number) => Link | undefined;
  /** The links whose ingress hook holds vcnet's recorded ingress qdisc's place now: another tool's qdisc. */
  ingressTaken: Map<number, Qdisc>;
  /** The links whose recorded ingress qdisc is gone, nothing in its place: it is made again. */
  ingressGone: Set<number>;
}

/** Whether `endpoint`'s record names any tc object vcnet made (nothing to check, nor to dump, when not). */
export function hasTrafficControl(endpoint: RepairableEndpoint): boolean {
  const plumbing = endpoint.plumbing;
  if (!plumbing || plumbing.model === 'pending' || plumbing.partial) return false;
  return plumbing.steps.some((step) => step.step === 'add-qdisc' || step.step === 'add-filter');
}

function readRecord(
  endpoint: RepairableEndpoint,
  snapshot: Pick<RepairSnapshot, 'links' | 'qdiscs'>,
): ReadRecord | undefined {
  const plumbing = endpoint.plumbing;
  if (!plumbing || plumbing.model === 'pending' || !hasTrafficControl(endpoint)) return undefined;
  const model = plumbing.model;
  const { links } = snapshot;
  const byIndex = new Map(links.map((link) => [link.index, link]));
  const pod = byIndex.get(endpoint.properties.link.index);
  // A pod link that is gone is the link-removed path's.
  if (!pod || pod.name !== endpoint.properties.link.name) return undefined;
  // The device the VM uses (a tap or macvtap vcnet made, or an existing one: the pod link itself)
  // is gone: the lost-device path's.
  if (plumbing.tapIndex > 0 && byIndex.get(plumbing.tapIndex)?.name !== plumbing.tapName) return undefined;
  const made = new Map(
    plumbing.steps.flatMap((step) =>
      step.step === 'create-link' && step.index !== undefined ? [[step.name, step.index]] : [],
    ),
  );
  const resolve = (name: string, index?: number): Link | undefined => {
    const known =
      index ?? made.get(name) ?? (name === plumbing.tapName && plumbing.tapIndex > 0 ? plumbing.tapIndex : undefined);
    if (known !== undefined) {
      const link = byIndex.get(known);
      return link && (link.name === name || known === pod.index) ? link : undefined;
    }
    return links.find((link) => link.name === name);
  };
  const ingressTaken = new Map<number, Qdisc>();
  const ingressGone = new Set<number>();
  for (const record of plumbing.steps) {
    if (record.step !== 'add-qdisc' || record.kind !== 'ingress') continue;
    const link = resolve(record.link, record.index);
    if (!link) continue;
    const hook = ingressHook(snapshot.qdiscs, link);
    if (hook?.kind === 'ingress' && hook.handle === record.handle) continue;
    if (hook) ingressTaken.set(link.index, hook);
    else ingressGone.add(link.index);
  }
  return { plumbing: { ...plumbing, model }, pod, resolve, ingressTaken, ingressGone };
}

function ingressHook(qdiscs: readonly Qdisc[], link: Link): Qdisc | undefined {
  return qdiscs.find((qdisc) => qdisc.index === link.index && qdisc.parent === TC_H_INGRESS);
}

/**
 * The filter lists (link, parent) the plan reads, from a dump of links and qdiscs: those of the
 * links a recorded redirect filter is on whose ingress hook holds a qdisc the filter may be in.
 */
export function repairFilterLists(
  endpoint: RepairableEndpoint,
  snapshot: Pick<RepairSnapshot, 'links' | 'qdiscs'>,
): Array<{ index: number; parent: number }> {
  const read = readRecord(endpoint, snapshot);
  if (!read) return [];
  const lists = new Map<string, { index: number; parent: number }>();
  for (const record of read.plumbing.steps) {
    if (record.step !== 'add-filter') continue;
    const link = read.resolve(record.link, record.index);
    if (!link || read.ingressTaken.has(link.index) || read.ingressGone.has(link.index)) continue;
    if (!ingressHook(snapshot.qdiscs, link)) continue;
    lists.set(`${link.index}/${record.parent}`, { index: link.index, parent: record.parent });
  }
  return [...lists.values()];
}

/**
 * The links whose classes the plan reads, from a dump of links and qdiscs: those a recorded htb is
 * on whose root is vcnet's htb still (one that is gone is made again whole, classes and all).
 */
export function repairClassLinks(
  endpoint: RepairableEndpoint,
  snapshot: Pick<RepairSnapshot, 'links' | 'qdiscs'>,
): number[] {
  const read = readRecord(endpoint, snapshot);
  if (!read) return [];
  const indexes = new Set<number>();
  for (const record of read.plumbing.steps) {
    if (record.step !== 'add-qdisc' || record.kind !== 'htb' || record.handle !== HTB_ROOT_HANDLE) continue;
    const link = read.resolve(record.link, record.index);
    if (link && isVcnetHtbRoot(snapshot.qdiscs, link)) indexes.add(link.index);
  }
  return [...indexes];
}

function rootQdisc(qdiscs: readonly Qdisc[], link: Link): Qdisc | undefined {
  return qdiscs.find((qdisc) => qdisc.index === link.index && qdisc.parent === TC_H_ROOT);
}

function isVcnetHtbRoot(qdiscs: readonly Qdisc[], link: Link): boolean {
  const root = rootQdisc(qdiscs, link);
  return root?.kind === 'htb' && root.handle === HTB_ROOT_HANDLE;
}

/**
 * What to send to put back the tc objects `endpoint`'s record says vcnet made that are missing from
 * `snapshot`, and what is found in their place (nothing when all are there). An endpoint whose device
 * (tap, macvtap) is gone is left to the lost-device path, a pod link that is gone to the link-removed
 * path: nothing is planned for them. `rateLimit` is the sandbox's (the one attach used): an htb is
 * made again with the rate it gives that link.
 */
export function planTrafficControlRepair(
  endpoint: RepairableEndpoint,
  snapshot: RepairSnapshot,
  rateLimit: RateLimit | undefined,
): TrafficControlRepairPlan {
  const read = readRecord(endpoint, snapshot);
  if (!read) return { objects: [] };
  const { plumbing, pod, resolve } = read;
  const steps = plumbing.steps;
  /** How a change names a link of the endpoint (every one is there: by its index). */
  const refOf = (link: Link): LinkRef => ({
    role: link.index === pod.index ? 'pod' : link.name === plumbing.tapName ? tapRole(plumbing.model) : 'ifb',
    name: link.name,
    index: link.index,
  });
  const objects: TrafficControlRepairPlan['objects'] = [];
  const ingressRestores = new Map<number, TrafficControlRestore>();
  for (const record of steps) {
    if (record.step !== 'add-qdisc' || record.kind !== 'ingress') continue;
    const link = resolve(record.link, record.index);
    if (!link) continue;
    const object = planIngress(link, record, read, refOf(link), snapshot.namespacePath);
    if (!object) continue;
    objects.push(object);
    if (isRestore(object)) ingressRestores.set(link.index, object);
  }
  for (const record of steps) {
    if (record.step !== 'add-filter') continue;
    const link = resolve(record.link, record.index);
    if (!link || read.ingressTaken.has(link.index)) continue;
    const target = redirectTarget(record, link, pod, plumbing.tapIndex, resolve);
    // The link it redirects to is gone: the lost-device or link-removed path says so.
    if (!target) continue;
    const restoring = ingressRestores.get(link.index);
    const object = planFilter(link, record, target, snapshot, steps, restoring, refOf);
    if (object) objects.push(object);
  }
  for (const record of steps) {
    if (record.step !== 'create-link' || record.kind !== 'ifb' || resolve(record.name, record.index)) continue;
    objects.push(lostIfb(record.name, plumbing.model, plumbing.model === 'existing' ? pod.name : plumbing.tapName));
  }
  const rates = rateLimitPlacement(plumbing.model, rateLimit);
  for (const record of steps) {
    if (record.step !== 'add-qdisc' || record.kind !== 'htb') continue;
    const link = resolve(record.link, record.index);
    if (!link) continue;
    const rate = htbRate(plumbing, link, pod, rates);
    if (isVcnetHtbRoot(snapshot.qdiscs, link)) {
      objects.push(...planHtbClasses(link, rate, snapshot.classes, refOf(link)));
      continue;
    }
    const object = planHtb(
      link,
      record,
      rate,
      snapshot.qdiscs,
      link.index === pod.index,
      refOf(link),
      snapshot.namespacePath,
    );
    if (object) objects.push(object);
  }
  return { objects };
}

function tapRole(model: Plan['model']): LinkRef['role'] {
  return model === 'macvtap' ? 'macvtap' : 'tap';
}

function planIngress(
  link: Link,
  record: QdiscRecord,
  read: ReadRecord,
  ref: LinkRef,
  namespacePath: string | undefined,
): TrafficControlRepair | TrafficControlRestore | undefined {
  const object = `ingress qdisc ${formatHandle(record.handle)}`;
  const hook = read.ingressTaken.get(link.index);
  if (hook) {
    return {
      link: link.name,
      object,
      outcome: 'taken',
      message: `${link.name}'s ingress hook, where vcnet's ${object} was, holds another tool's ${hook.kind} qdisc ${formatHandle(hook.handle)}: vcnet left it, and its redirect filters on ${link.name} are not there; \`${tcCommandOn(namespacePath, link, 'qdisc', 'del', hook.kind === 'clsact' ? 'clsact' : 'ingress')}\` lets the watch put vcnet's back, or \`vcnet del-iface\` and \`vcnet add-iface\` attach the link again beside it`,
    };
  }
  if (!read.ingressGone.has(link.index)) return undefined;
  return {
    link: link.name,
    object,
    changes: [ingressChange(ref)],
    tidy: [],
    undo: [],
    restored: `vcnet's ${object} on ${link.name} was gone (deleted by someone else): made again as recorded`,
    failed: (reason, next) =>
      `vcnet's ${object} on ${link.name} is gone and could not be made again (${reason}); ${next}, or \`vcnet del-iface\` and \`vcnet add-iface\` attach the link again`,
  };
}

/** The link a recorded redirect filter sends to now; undefined when that link is gone. */
function redirectTarget(
  record: FilterRecord,
  link: Link,
  pod: Link,
  tapIndex: number,
  resolve: (name: string, index?: number) => Link | undefined,
): Link | undefined {
  if (record.redirectTo) return resolve(record.redirectTo.link, record.redirectTo.index);
  // Records of older builds do not say: the pod link's filter sends to the tap, the tap's to the pod link.
  if (link.index === pod.index) return tapIndex > 0 ? resolve('', tapIndex) : undefined;
  return link.index === tapIndex ? pod : undefined;
}

function planFilter(
  link: Link,
  record: FilterRecord,
  target: Link,
  snapshot: RepairSnapshot,
  steps: readonly PlumbingStep[],
  restoring: TrafficControlRestore | undefined,
  refOf: (link: Link) => LinkRef,
): TrafficControlRepair | TrafficControlRestore | undefined {
  const object = `filter prio ${record.priority} (redirect to ${target.name})`;
  // The ingress qdisc planned again before it is vcnet's ffff:, with no filter in it yet.
  const hook: Pick<Qdisc, 'kind' | 'handle'> | undefined = restoring
    ? { kind: 'ingress', handle: INGRESS_HANDLE }
    : ingressHook(snapshot.qdiscs, link);
  if (!hook) {
    // vcnet's filter was in another tool's ingress qdisc (attach found it there), which is gone: the
    // record does not say vcnet made one, so it does not make one nobody would delete.
    const ours = steps.some(
      (step) => step.step === 'add-qdisc' && step.kind === 'ingress' && step.link === record.link,
    );
    if (ours) return undefined;
    return {
      link: link.name,
      object,
      outcome: 'failed',
      message: `${link.name}'s ingress qdisc, another tool's that vcnet's ${object} was in, is gone and took the filter with it: vcnet does not make a qdisc it does not own; \`${tcCommandOn(snapshot.namespacePath, link, 'qdisc', 'add', 'ingress')}\` lets the watch put its filter back, or \`vcnet del-iface\` and \`vcnet add-iface\` attach the link again`,
    };
  }
  const targets = new Set([target.index]);
  // Chain 0's, where vcnet adds its filter: another chain's at this priority does not hold its place
  // (u32 lists every table of a priority under each chain: chainZeroOwnTables).
  const present = restoring
    ? []
    : chainZeroOwnTables(
        snapshot.filters.filter((filter) => filter.index === link.index && filter.priority === record.priority),
        (filter) =>
          'keys' in filter.options &&
          filter.options.actions.length > 0 &&
          isVcnetRedirect(filter, record.kind, targets),
      );
  if (present.length > 0) {
    const strangers = present.filter((filter) => !isVcnetRedirect(filter, record.kind, targets));
    if (strangers.length === 0) return undefined;
    // vcnet's redirect node is there, another's node beside it in the same u32 (added at vcnet's
    // priority and protocol since): nothing of vcnet's is gone. Detach deletes vcnet's node by handle.
    const ownNode = present.some(
      (filter) => !strangers.includes(filter) && 'keys' in filter.options && filter.options.actions.length > 0,
    );
    if (ownNode) return undefined;
    return {
      link: link.name,
      object,
      outcome: 'taken',
      message: `vcnet's ${object} on ${link.name} is gone and another tool's filter holds its priority now (${describeFilters(strangers, linkResolver(snapshot.links))}): vcnet left it, and frames ${link.name} receives ${strangers.length < present.length ? 'may not' : 'do not'} reach ${target.name}; \`${tcCommandOn(snapshot.namespacePath, link, 'filter', 'del', `ingress prio ${record.priority}`)}\` lets the watch put vcnet's back, or \`vcnet del-iface\` removes the endpoint`,
    };
  }
  const change = redirectChange(refOf(link), refOf(target), record.parent, record.priority, record.protocol);
  const undo = undoOf(change);
  return {
    link: link.name,
    object,
    changes: [change],
    tidy: [],
    undo: restoring && undo ? [undo] : [],
    ...(restoring ? { needs: restoring } : {}),
    restored: `vcnet's ${object} on ${link.name} was gone (deleted by someone else${hook.kind === 'ingress' && hook.handle === INGRESS_HANDLE ? ', or its ingress qdisc' : ''}): made again as recorded`,
    failed: (reason, next) =>
      `vcnet's ${object} on ${link.name} is gone and could not be made again (${reason}); frames ${link.name} receives do not reach ${target.name}: ${next}, or \`vcnet del-iface\` and \`vcnet add-iface\` attach the link again`,
  };
}

/**
 * vcnet's ifb of a rate limit, gone (deleted by someone else) while the device it serves stays: the
 * device's redirect to it is still there, with no target, and drops every frame it takes. It is not
 * made again: the record and that redirect name the old ifb (its ifindex), and a new one would be
 * another link that detach does not know. Said, with what to do.
 */
function lostIfb(name: string, model: Plan['model'], device: string): TrafficControlRepair {
  // rateLimitPlacement: the ifb carries tx (what the VM sends) for a tap, rx (what it receives) otherwise.
  const frames = model === 'none' ? 'the VM sends' : 'sent to the VM';
  return {
    link: name,
    object: `ifb ${name}`,
    outcome: 'failed',
    message: `vcnet's ifb ${name}, which the rate limit of the frames ${frames} through ${device} goes through, is gone (deleted by someone else): ${device}'s redirect to it drops every such frame, and vcnet does not make it again (a new ifb would be a link its record does not name); \`vcnet del-iface\` and \`vcnet add-iface\` attach the link again with its rate limits`,
  };
}

/**
 * The rate the htb on `link` enforces, as attach placed it (rateLimitPlacement): which of the
 * endpoint's links `link` is (its device, the device's ifb, or the pod link) picks it.
 */
function htbRate(
  plumbing: ReadRecord['plumbing'],
  link: Link,
  pod: Link,
  rates: ReturnType<typeof rateLimitPlacement>,
): number | undefined {
  const device = plumbing.model === 'existing' ? pod.name : plumbing.tapName;
  if (plumbing.model === 'tcfilter')
    return link.name === device ? rates.device : link.index === pod.index ? rates.pod : undefined;
  return link.name === device ? rates.device : link.name === ifbName(device) ? rates.ifb : undefined;
}

function planHtb(
  link: Link,
  record: QdiscRecord,
  rate: number | undefined,
  qdiscs: readonly Qdisc[],
  isPodLink: boolean,
  ref: LinkRef,
  namespacePath: string | undefined,
): TrafficControlRepair | TrafficControlRestore | undefined {
  const object = `htb qdisc ${formatHandle(record.handle)}`;
  // vcnet's htb is always 1: (plan-attach.ts htbChanges); another handle is no record of its.
  if (record.handle !== HTB_ROOT_HANDLE) return undefined;
  // vcnet's htb still there is planHtbClasses' (the caller checks isVcnetHtbRoot first).
  const root = rootQdisc(qdiscs, link);
  // A link that is down has the noop qdisc until it comes up: nothing to shape, and htb could not be told apart.
  if ((link.flags & InterfaceFlag.UP) === 0 && (!root || root.kind === 'noop')) return undefined;
  if (root && root.handle !== 0 && !DEFAULT_ROOT_QDISCS.has(root.kind)) {
    return {
      link: link.name,
      object,
      outcome: 'taken',
      message: `vcnet's rate limit on ${link.name} (${object}) is gone and another tool's ${root.kind} qdisc ${formatHandle(root.handle)} is its root now: vcnet left it, and the rate limit does not apply; \`${tcCommandOn(namespacePath, link, 'qdisc', 'del', 'root')}\` lets the watch make vcnet's htb again`,
    };
  }
  if (rate === undefined) {
    return {
      link: link.name,
      object,
      outcome: 'failed',
      message: `vcnet's rate limit on ${link.name} (${object}) is gone and the sandbox's record has no rate for it: it is not made again; \`vcnet del-iface\` and \`vcnet add-iface\` attach the link again with the sandbox's rate limits`,
    };
  }
  const changes = htbChanges(ref, rate);
  const undo = undoOf(changes[0]!);
  return {
    link: link.name,
    object,
    changes,
    // A link with no transmit queue (CNI's veths) gets one of 1000 with its first qdisc: set back, as attach does.
    tidy: isPodLink && link.txQueueLength === 0 ? [{ op: 'set-link', link: ref, set: { txQueueLength: 0 } }] : [],
    undo: undo ? [undo] : [],
    restored: `vcnet's rate limit on ${link.name} (${object}, ${rate} bit/s) was gone (deleted by someone else): made again as attach makes it`,
    failed: (reason, next) =>
      `vcnet's rate limit on ${link.name} (${object}, ${rate} bit/s) is gone and could not be made again (${reason}): the link is not rate limited; ${next}, or \`vcnet del-iface\` and \`vcnet add-iface\` attach the link again`,
  };
}

/**
 * The classes of vcnet's htb on `link` (there: isVcnetHtbRoot) that someone deleted: made again under
 * it as attach makes them (htbChanges), at the rate attach gave the link; and those whose rate or ceil
 * someone changed (`tc class change … rate …`) get the sandbox's rate back: the record is the
 * reference, as for every other object (a rate of its own is the sandbox's config, then del-iface and
 * add-iface). Both said, with the rate found.
 */
function planHtbClasses(
  link: Link,
  rate: number | undefined,
  classes: readonly TrafficClass[],
  ref: LinkRef,
): Array<TrafficControlRepair | TrafficControlRestore> {
  const mine = classes.filter((entry) => entry.index === link.index);
  const present = new Set(mine.map((entry) => entry.handle));
  const missing = [HTB_PARENT_CLASS, HTB_DEFAULT_CLASS].filter((handle) => !present.has(handle));
  const changed = rate === undefined ? undefined : planHtbRateChanged(link, rate, mine, ref);
  const made = planMissingHtbClasses(link, rate, missing, ref);
  return [...(made ? [made] : []), ...(changed ? [changed] : [])];
}

/**
 * vcnet's classes on `link` whose rate or ceil is not the one attach gave them (`rate`, as the kernel
 * keeps it: whole bytes per second): changed back in place (`tc class change`), the htb and its
 * other class left as they are.
 */
function planHtbRateChanged(
  link: Link,
  rate: number,
  classes: readonly TrafficClass[],
  ref: LinkRef,
): TrafficControlRestore | undefined {
  const kept = Math.floor(rate / 8) * 8;
  const changed = classes.filter(
    (entry) =>
      (entry.handle === HTB_PARENT_CLASS || entry.handle === HTB_DEFAULT_CLASS) &&
      entry.kind === 'htb' &&
      entry.rateBitsPerSecond !== undefined &&
      (entry.rateBitsPerSecond !== kept || (entry.ceilBitsPerSecond ?? kept) !== kept),
  );
  if (changed.length === 0) return undefined;
  const handles = changed.map((entry) => formatHandle(entry.handle)).join(', ');
  const object = `htb ${changed.length > 1 ? 'classes' : 'class'} ${handles}`;
  const found = changed
    .map(
      (entry) => `${formatHandle(entry.handle)} rate ${entry.rateBitsPerSecond} ceil ${entry.ceilBitsPerSecond} bit/s`,
    )
    .join(', ');
  const handlesChanged = new Set(changed.map((entry) => entry.handle));
  return {
    link: link.name,
    object,
    changes: htbChanges(ref, rate).flatMap((change) =>
      change.op === 'add-class' && handlesChanged.has(change.handle) ? [{ ...change, change: true as const }] : [],
    ),
    tidy: [],
    undo: [],
    restored: `vcnet's rate limit on ${link.name} had its ${object} changed by someone else (${found}): set back to the sandbox's ${rate} bit/s, as attach made ${changed.length > 1 ? 'them' : 'it'}; for another rate, change the sandbox's rate limit in its configuration and attach the link again (\`vcnet del-iface\`, \`vcnet add-iface\`)`,
    failed: (reason, next) =>
      `vcnet's rate limit on ${link.name} had its ${object} changed by someone else (${found}) and could not be set back to the sandbox's ${rate} bit/s (${reason}); ${next}, or \`vcnet del-iface\` and \`vcnet add-iface\` attach the link again`,
  };
}

/** vcnet's classes missing under its htb on `link`, made again; see planHtbClasses. */
function planMissingHtbClasses(
  link: Link,
  rate: number | undefined,
  missing: readonly number[],
  ref: LinkRef,
): TrafficControlRepair | TrafficControlRestore | undefined {
  if (missing.length === 0) return undefined;
  const handles = missing.map((handle) => formatHandle(handle)).join(', ');
  const object = `htb ${missing.length > 1 ? 'classes' : 'class'} ${handles}`;
  const effect = `vcnet's htb qdisc ${formatHandle(HTB_ROOT_HANDLE)} on ${link.name} sends what ${missing.length > 1 ? 'they' : 'it'} took through its direct queue, unlimited`;
  if (rate === undefined) {
    return {
      link: link.name,
      object,
      outcome: 'failed',
      message: `vcnet's rate limit on ${link.name} lost its ${object} (deleted by someone else) and the sandbox's record has no rate for ${missing.length > 1 ? 'them' : 'it'}: not made again, and ${effect}; \`vcnet del-iface\` and \`vcnet add-iface\` attach the link again with the sandbox's rate limits`,
    };
  }
  // A class's leaf queue is as long as the link's transmit queue when the class is made: on a link
  // with none (CNI's veths, set back to 0 after attach's htb) it would drop every frame. Made with the
  // kernel's length, as attach's were (the htb gave the link one), and the link set back to 0 after.
  const noQueue = link.txQueueLength === 0;
  return {
    link: link.name,
    object,
    changes: [
      ...(noQueue
        ? [{ op: 'set-link' as const, link: ref, set: { txQueueLength: QUEUE_LENGTH_WITH_FIRST_QDISC } }]
        : []),
      ...htbChanges(ref, rate).filter((change) => change.op === 'add-class' && missing.includes(change.handle)),
    ],
    tidy: noQueue ? [{ op: 'set-link', link: ref, set: { txQueueLength: 0 } }] : [],
    // Classes go with their htb: detach's delete of the qdisc takes them.
    undo: [],
    restored: `vcnet's rate limit on ${link.name} had lost its ${object} (deleted by someone else; ${effect}): made again as attach makes ${missing.length > 1 ? 'them' : 'it'}, ${rate} bit/s`,
    failed: (reason, next) =>
      `vcnet's rate limit on ${link.name} lost its ${object} and ${missing.length > 1 ? 'they' : 'it'} could not be made again (${reason}): ${effect}; ${next}, or \`vcnet del-iface\` and \`vcnet add-iface\` attach the link again`,
  };
}

/** The kernel's answer to one change (apply.ts sendChanges). */
export type RepairAnswer = { ok: true } | { ok: false; error: Error };

/**
 * What each object of `plan` came to, from the kernel's answers to repairChanges(plan), in order;
 * and the changes that take away a restore the kernel made only part of (an htb whose class was
 * refused): nothing half-built stays, and the watch tries again (on a timer, and with the next tc change).
 *
 * A restore whose answers were lost (answerLost: the kernel ran the whole send, so it may have been
 * made, wholly or in part) is told by `again`, the plan of a second look at the namespace after the
 * send (as the executor plans an undo again when its answers are lost): nothing left to do for it
 * there is `restored`; the same object still planned is `failed`, not made (tried again); another
 * object of its kind on its link (the htb there, a class missing under it) is made in part, and its
 * undo goes. `again` an Error (the look failed): `failed`, tried again.
 */
export function repairOutcomes(
  plan: TrafficControlRepairPlan,
  answers: readonly RepairAnswer[],
  again?: TrafficControlRepairPlan | Error,
): { outcomes: TrafficControlRepair[]; undo: Change[] } {
  const outcomes: TrafficControlRepair[] = [];
  const undo: Change[] = [];
  const failedRestores = new Set<TrafficControlRestore>();
  let position = 0;
  for (const object of plan.objects) {
    if (!isRestore(object)) {
      outcomes.push(object);
      continue;
    }
    const mine = answers.slice(position, position + object.changes.length);
    position += object.changes.length + object.tidy.length;
    const refused = mine.find((answer): answer is Extract<RepairAnswer, { ok: false }> => !answer.ok);
    const lost = refused !== undefined && answerLost(refused.error) ? seenAgain(object, again) : undefined;
    if (object.needs && failedRestores.has(object.needs)) {
      // A filter whose ingress qdisc could not be made: that qdisc's outcome says so. Made all the
      // same (another tool's ingress qdisc came there between the dump and the send), it goes again:
      // vcnet's filter is not left in another tool's qdisc, which detach would take for vcnet's own.
      failedRestores.add(object);
      if (mine[0]?.ok || (lost && lost.found !== 'same')) undo.push(...object.undo);
      continue;
    }
    if ((!refused && mine.length === object.changes.length) || lost?.found === 'nothing') {
      outcomes.push({ link: object.link, object: object.object, outcome: 'restored', message: object.restored });
      continue;
    }
    failedRestores.add(object);
    if (lost?.found === 'known') {
      // The second look finds another tool's object in its place, or knows without sending why not.
      outcomes.push(lost.outcome);
      continue;
    }
    if (mine[0]?.ok || lost?.found === 'part') undo.push(...object.undo);
    const reason = lost ? lost.reason : (refused?.error.message ?? 'no answer from the kernel');
    const transient = lost !== undefined || refused === undefined || isTransientFailure(refused.error);
    const hint = refused && !lost && hintFromCause(refused.error);
    const next = transient
      ? 'the watch tries again shortly and with the next tc change on it'
      : `sent again it would be refused again${hint ? ` (${hint})` : ''}, so the watch tries again only with the next tc change on it`;
    outcomes.push({
      link: object.link,
      object: object.object,
      outcome: 'failed',
      message: object.failed(reason, next),
      ...(transient ? { transient: true as const } : {}),
    });
  }
  return { outcomes, undo };
}

type SeenAgain =
  | { found: 'nothing' }
  | { found: 'known'; outcome: TrafficControlRepair }
  | { found: 'same' | 'part' | 'unknown'; reason: string };

/** What the second look (`again`) finds of a restore whose answers were lost; see repairOutcomes. */
function seenAgain(restore: TrafficControlRestore, again: TrafficControlRepairPlan | Error | undefined): SeenAgain {
  if (again === undefined || again instanceof Error) {
    const why = again ? `: ${again.message}` : '';
    return {
      found: 'unknown',
      reason: `the kernel's answer was lost, and the namespace could not be looked at again${why}`,
    };
  }
  const family = (object: string): string => (object.startsWith('htb ') ? 'htb' : object);
  const there = again.objects.filter(
    (object) => object.link === restore.link && family(object.object) === family(restore.object),
  );
  if (there.length === 0) return { found: 'nothing' };
  const same = there.find((object) => object.object === restore.object);
  if (same && !isRestore(same)) return { found: 'known', outcome: same };
  if (same) return { found: 'same', reason: "the kernel's answer was lost, and a second look finds it still gone" };
  return { found: 'part', reason: "the kernel's answer was lost, and a second look finds it made only in part" };
}
