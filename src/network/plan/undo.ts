/**
 * Undo, for rollback and detach alike: records planned against the namespace as it is now (planUndo,
 * plan-detach.ts), sent in one batch through sendBatch (batch-send.ts), as attach and the tc repair
 * send theirs, every refusal answered so the rest goes on; "already gone" is every way the kernel says so for the object
 * kind, so undo converges however often it is repeated. An attach that fails is rolled back here
 * (rollBackAttach): when its undo is refused too, the journal keeps exactly what is left and the
 * error says what (VCNET_ROLLBACK_INCOMPLETE); `vcnet detach` or `vcnet gc` finish the job from that
 * record. Records said as the objects they name (describeRecords) for the messages.
 */
import { channels, publish } from '../../diagnostics.js';
import { errnoOf, RollbackIncompleteError } from '../../errors.js';
import { ipToBytes } from '../../netlink/codec/address-format.js';
import { InterfaceFlag } from '../../netlink/codec/link/message.js';
import type { Link } from '../../netlink/codec/link.js';
import { type Neighbour, NeighbourFlag } from '../../netlink/codec/neighbour.js';
import { answerLost, NetlinkError } from '../../netlink/errors.js';
import type { NetlinkHandle } from '../../netlink/handle.js';
import { heldDeviceAt } from '../../netns/held-device-fds.js';
import { othersInQdiscs } from '../foreign-filters.js';
import { podBatchesInPlace, podLinkView } from './batch-evidence.js';
import { publishStep, sendBatch } from './batch-send.js';
import {
  comebackNeedsAllPromoteSecondaries,
  type DetachNotice,
  type DetachPlan,
  type DetachStep,
  type KeptRecord,
  linkResolver,
  planDetach,
  routeTakenNotice,
  unconfirmedLinksAbsent,
} from './plan-detach.js';
import { routeArguments } from './route-command.js';
import { placeOfRecord, placeOfRoute } from './route-place.js';
import type { Change, PlumbingStep } from './types.js';

/**
 * What a detach or rollback did with its records: how many changes it undid, found already gone or kept, and
 * the kernel's refusals.
 */
export interface UndoReport {
  undone: number;
  alreadyGone: number;
  /**
   * How many records the undo left because someone else uses them too (an ingress qdisc holding
   * another tool's filter): always `keptRecords.length` (0 in a report without records, which has
   * no `keptRecords`). Kept as a field, not derived: it is the count `vcnet detach --json` and the
   * detach log line give beside the list, and part of the library's UndoReport.
   */
  kept: number;
  /** The kernel's refusals (NetlinkError, with its errno), or why a step could not be sent. */
  failures: Error[];
  /** The records of what is still there after the undo (empty when everything went), `notChecked` included. */
  left: PlumbingStep[];
  /**
   * The records in `left` whose state is not known: the kernel's answer to their undo was lost and
   * no look afterwards could be made. They may be gone; the record keeps them, and a later detach
   * finds out. Absent or empty: everything in `left` was seen there.
   */
  notChecked?: PlumbingStep[];
  /**
   * The records of what the kernel undid (recordsShownBy each accepted change): what went, not what
   * was already gone or never made. A link's records stand for what was on it.
   */
  undid?: PlumbingStep[];
  /**
   * The records of what the undo left in place on purpose, and why (`kept` counts them): a qdisc vcnet
   * added that another tool has put its own filter in since. Settled: in no record afterwards.
   */
  keptRecords?: KeptRecord[];
  /** NICs the running VM did not release: their plumbing and records were kept (Network.removeEndpoints). */
  stillPlugged?: Array<{ endpoint: string; deviceId: string; error: Error }>;
}

/**
 * The records a detach step stands for when saying what went: a link deleted stands for itself (what
 * was on it, made or not, went with it); any other change for every record it settles.
 */
export function recordsShownBy(step: DetachStep): PlumbingStep[] {
  const { op } = step.change;
  if (op === 'delete-link' || op === 'delete-link-group') {
    return step.settles.filter((record) => record.step === 'create-link');
  }
  return step.settles;
}

/** Records as the objects they name: "tun tap0_kata", "ingress qdisc on eth0"... */
export function describeRecords(records: readonly PlumbingStep[]): string[] {
  return records.map(describeRecord);
}

function describeRecord(record: PlumbingStep): string {
  switch (record.step) {
    case 'create-link':
      return `${record.kind} ${record.name}`;
    case 'add-qdisc':
      return `${record.kind} qdisc on ${record.link}`;
    case 'add-filter':
      return `${record.kind} filter prio ${record.priority} on ${record.link}`;
    case 'change-link':
      return `changed attributes of ${record.link} (${Object.keys(record.before).join(', ')})`;
    case 'remove-addresses':
      return `addresses removed from ${record.link} (${record.addresses.map((a) => `${a.address}/${a.prefixLength}`).join(', ')})`;
    case 'remove-routes':
      return `routes removed from ${record.link}`;
    case 'remove-neighbours':
      return `neighbours removed from ${record.link}`;
  }
}

/** What an undo of an attach's records came to: refusals, what is left, what was not looked at, what was handed over. */
export interface AttachUndoOutcome {
  failures: readonly string[];
  /** Every record still kept, those not checked among them. */
  left: PlumbingStep[];
  notChecked: readonly PlumbingStep[];
  /** Each already described (describeHandedOver). */
  handedOver: readonly string[];
}

/**
 * The error of `what` failing with `cause` and its undo leaving `outcome.left`: what was seen left,
 * apart from what could not be looked at, and what another tool holds now (in no record).
 */
export function undoLeftSome(what: string, cause: Error, outcome: AttachUndoOutcome): RollbackIncompleteError {
  const { failures, left, notChecked, handedOver } = outcome;
  return new RollbackIncompleteError(
    what,
    cause,
    failures,
    describeRecords(left.filter((record) => !notChecked.includes(record))),
    left,
    undefined,
    undefined,
    describeRecords(notChecked),
    undefined,
    handedOver,
  );
}

/**
 * Undoes what an attach made, journals what is left, and throws: the attach's own error when the
 * undo was complete, RollbackIncompleteError naming what is left when the kernel refused part of it.
 * "Complete" is said only once a look at the namespace afterwards (stillInPlace) finds none of it.
 * `records` holds what may have been made too: a change whose answer was lost (apply.ts).
 * `handedOver` is told what the undo left in place on purpose, as detach does (a qdisc vcnet added
 * that holds another tool's filter now): that tool's from then on, in no record, so the caller's
 * error says it stays rather than that everything went.
 */
export async function rollBackAttach(
  handle: NetlinkHandle,
  records: PlumbingStep[],
  error: Error,
  journal: ((left: PlumbingStep[]) => void) | undefined,
  handedOver?: (kept: readonly KeptRecord[]) => void,
  /** The command the attach is part of, which the rollback's notices name. */
  rollbackOf: AttachOperation = 'attach',
): Promise<never> {
  let report: {
    failures: Array<{ message: string }>;
    left: PlumbingStep[];
    notChecked?: PlumbingStep[];
    keptRecords?: KeptRecord[];
  };
  try {
    report = await undoRecords(handle, records, undefined, undefined, rollbackOf);
  } catch (undoError) {
    // The undo could not even start (its dump of the links was refused, say): nothing it was meant
    // to remove is known to be gone, so all of it is left, and said so: not checked.
    report = { failures: [{ message: (undoError as Error).message }], left: [...records], notChecked: [...records] };
  }
  if (report.left.length < records.length) {
    let found: PlumbingStep[];
    let looked = true;
    try {
      found = await stillInPlace(handle, records);
    } catch (lookError) {
      looked = false;
      // Not known to be gone: all of it stays in the record (detach and gc take what is gone in their
      // stride), but what the undo handed over: never sent, so there, and another tool's, in no record.
      const handedOverRecords = new Set((report.keptRecords ?? []).map((kept) => kept.record));
      found = records.filter((record) => !handedOverRecords.has(record));
      report.failures.push({
        message: `what the undo left could not be checked (${(lookError as Error).message}): all of it is kept in the record`,
      });
      // What the undo did not see refused (and what it did not hear of) is not known to be there.
      const refused = new Set(report.left.filter((record) => !report.notChecked?.includes(record)));
      report.notChecked = found.filter((record) => !refused.has(record));
    }
    const missed = found.filter((record) => !report.left.includes(record));
    if (missed.length > 0 && looked) {
      report.failures.push({
        message: `still there after the undo: ${describeRecords(missed).join(', ')}`,
      });
    }
    const left = new Set([...report.left, ...missed]);
    report.left = records.filter((record) => left.has(record));
  }
  if (report.keptRecords && report.keptRecords.length > 0) handedOver?.(report.keptRecords);
  let journalFailure: Error | undefined;
  try {
    journal?.(report.left);
  } catch (writeError) {
    // A full or read-only state directory: the last record written still lists every step sent
    // (each is journaled before it is sent), so detach and gc can finish from it.
    journalFailure = writeError as Error;
  }
  if (report.left.length > 0) {
    throw undoLeftSome('attach', error, {
      failures: [
        ...report.failures.map((failure) => failure.message),
        ...(journalFailure ? [recordOfLeftNotUpdated(journalFailure)] : []),
      ],
      left: report.left,
      notChecked: report.notChecked ?? [],
      handedOver: (report.keptRecords ?? []).map(describeHandedOver),
    });
  }
  throw error;
}

/**
 * The records whose objects are in the namespace after their undo, as a fresh plan of that undo
 * (planUndo) against the namespace now finds them: a link of vcnet's still there (by the index it was
 * made at, under any name), a qdisc or filter, an address or route not back, a link attribute not
 * back as it was, a neighbour not back. What every undo plan asserts again whatever the namespace
 * holds (address flags, the prefix route an address put back makes, a root qdisc reset) is no sign.
 */
export async function stillInPlace(handle: NetlinkHandle, records: readonly PlumbingStep[]): Promise<PlumbingStep[]> {
  if (records.length === 0) return [];
  const links = await handle.links();
  const plan = await planUndo(handle, records, links);
  const restoring = plan.steps.flatMap((step) => (step.change.op === 'add-neighbour' ? [step.change.neighbour] : []));
  const isProxy = (neighbour: { flags?: number }) => ((neighbour.flags ?? 0) & NeighbourFlag.PROXY) !== 0;
  const neighbours = [
    ...(restoring.some((neighbour) => !isProxy(neighbour)) ? await handle.neighbours() : []),
    ...(restoring.some(isProxy) ? await handle.proxyNeighbours() : []),
  ];
  const byIndex = new Map(links.map((link) => [link.index, link]));
  const found = new Set<PlumbingStep>();
  for (const step of plan.steps) {
    if (!stillToDo(step.change, byIndex, neighbours)) continue;
    for (const record of step.settles) found.add(record);
  }
  return records.filter((record) => found.has(record));
}

function stillToDo(change: Change, links: ReadonlyMap<number, Link>, neighbours: readonly Neighbour[]): boolean {
  switch (change.op) {
    case 'delete-link':
    case 'delete-link-group':
    case 'delete-qdisc':
    case 'delete-filter':
    case 'add-address':
    case 'add-route':
      return true;
    case 'set-link': {
      const link = change.link.index === undefined ? undefined : links.get(change.link.index);
      return link === undefined || !linkHas(link, change.set);
    }
    case 'add-neighbour': {
      const { destination, linkLayerAddress, flags } = change.neighbour;
      const wanted = ipToBytes(destination).toString('hex');
      const proxy = ((flags ?? 0) & NeighbourFlag.PROXY) !== 0;
      return !neighbours.some(
        (there) =>
          there.index === change.link.index &&
          ((there.flags & NeighbourFlag.PROXY) !== 0) === proxy &&
          ipToBytes(there.destination).toString('hex') === wanted &&
          (linkLayerAddress === undefined || there.linkLayerAddress?.toLowerCase() === linkLayerAddress.toLowerCase()),
      );
    }
    default:
      return false;
  }
}

/** Whether `link` has each attribute as `set` says. */
function linkHas(link: Link, set: Extract<Change, { op: 'set-link' }>['set']): boolean {
  return (
    (set.address === undefined || link.address?.toLowerCase() === set.address.toLowerCase()) &&
    (set.mtu === undefined || link.mtu === set.mtu) &&
    (set.up === undefined || ((link.flags & InterfaceFlag.UP) !== 0) === set.up) &&
    (set.group === undefined || link.group === set.group) &&
    (set.ipv6AddressGeneration === undefined || link.ipv6AddressGeneration === set.ipv6AddressGeneration) &&
    (set.txQueueLength === undefined || link.txQueueLength === set.txQueueLength)
  );
}

/** Errors by which the kernel says an object is already gone, per kind of undo. */
const GONE_ERRNOS = new Set(['ENOENT', 'ENODEV', 'ESRCH', 'EADDRNOTAVAIL']);
/**
 * A qdisc or filter that is gone (or whose link or parent qdisc is) can also be answered EINVAL:
 * "Invalid handle", "Cannot find specified qdisc on specified device", "Filter with specified
 * priority/protocol not found"… The request was built from vcnet's own record, so EINVAL there means gone.
 */
const TC_GONE_ERRNOS = new Set([...GONE_ERRNOS, 'EINVAL']);
/** Errors by which the kernel says a restored object is already back. */
const PRESENT_ERRNOS = new Set(['EEXIST']);

/** How many changes a step counts for, in a detach's report and its dry run alike: a group delete is each of its links. */
export function changeCount(change: Change): number {
  return change.op === 'delete-link-group' ? change.links.length : 1;
}

/**
 * Whether the kernel's `errno` refusing the removal of a link, qdisc or filter says it is gone already
 * (detach's rule, and gc's: a removal refused so counts as done, not as failed).
 */
export function removalFoundGone(kind: 'link' | 'qdisc' | 'filter', errno: string): boolean {
  return (kind === 'link' ? GONE_ERRNOS : TC_GONE_ERRNOS).has(errno);
}

export function alreadyDone(change: Change, errno: string): boolean {
  switch (change.op) {
    case 'delete-qdisc':
      return removalFoundGone('qdisc', errno);
    case 'delete-filter':
      return removalFoundGone('filter', errno);
    case 'add-address':
    case 'add-route':
    case 'add-neighbour':
    case 'set-link':
      return PRESENT_ERRNOS.has(errno) || GONE_ERRNOS.has(errno);
    default:
      return GONE_ERRNOS.has(errno);
  }
}

/** What a rollback says of a record it left in place: "the ingress qdisc on eth0, which stays: it holds …". */
export function describeHandedOver(kept: KeptRecord): string {
  return `the ${describeRecord(kept.record)}, which stays: ${kept.reason}`;
}

/** What detach says of a record it keeps: "kept the ingress qdisc on eth0: it holds …". */
export function describeKept(kept: KeptRecord): string {
  return `${describeRecord(kept.record)}: ${kept.reason}`;
}

function keptNotice(kept: KeptRecord): DetachNotice {
  const link = kept.record.step === 'create-link' ? kept.record.name : kept.record.link;
  if (kept.record.step === 'add-filter') return { link, message: `kept the ${describeKept(kept)}` };
  return { link, message: `kept the ${describeKept(kept)}; only vcnet's own filters in it were deleted` };
}

/**
 * Sends a detach plan in one batch, through the executor's one loop (sendBatch) with its refusals
 * answered, not thrown: undo goes on past a step the kernel refuses, and each refusal keeps the
 * records its step settles in `left`; so does a change whose answer was lost (`unanswered`).
 */
async function undoPlan(
  handle: NetlinkHandle,
  plan: DetachPlan,
  undoOf: UndoOf,
): Promise<UndoReport & { unanswered: DetachStep[] }> {
  const report: UndoReport & { unanswered: DetachStep[] } = {
    undone: 0,
    alreadyGone: plan.alreadyGone.length,
    kept: plan.kept.length,
    keptRecords: plan.kept,
    failures: [],
    left: [],
    undid: [],
    unanswered: [],
  };
  if (plan.steps.length === 0) return report;
  const answers = await sendBatch(
    handle,
    plan.steps.map((step) => step.change),
    {
      indexOf: (ref) => {
        if (ref.index === undefined) throw new Error(`link ${ref.name} is not in the namespace`); // planDetach skips those
        return ref.index;
      },
    },
  );
  const left = new Set<PlumbingStep>();
  const placesTaken: DetachStep[] = [];
  answers.forEach((answer, position) => {
    const step = plan.steps[position]!;
    publishStep(handle, step.change, 'undo', answer.ok ? undefined : answer.error);
    if (answer.ok) {
      report.undone += changeCount(step.change);
      report.undid!.push(...recordsShownBy(step));
      return;
    }
    const errno = errnoOf(answer.error);
    if (errno !== undefined && alreadyDone(step.change, errno)) {
      report.alreadyGone++;
      if (step.change.op === 'add-route' && errno === 'EEXIST') placesTaken.push(step);
    } else {
      if (answerLost(answer.error)) report.unanswered.push(step);
      report.failures.push(answer.error);
      for (const record of step.settles) left.add(record);
    }
  });
  report.left = [...left];
  if (placesTaken.length > 0) await noticeRoutesTakenMeanwhile(handle, placesTaken, undoOf);
  return report;
}

/**
 * After changes whose answers were lost (a receive that failed: the kernel ran the whole send, or
 * none of it when the send itself failed), the records they settle are planned again against the
 * namespace as it is now, and what is still there is sent again: so the report says what went and
 * what is left as the kernel has it, not as the lost answers left it unknown. When even that look
 * fails, those records stay in `left`, with the failures that say why.
 */
async function settleUnanswered(
  handle: NetlinkHandle,
  report: UndoReport & { unanswered: DetachStep[] },
  undoOf: UndoOf,
  completed?: ReadonlySet<PlumbingStep>,
): Promise<UndoReport> {
  const { unanswered, ...settled } = report;
  if (unanswered.length === 0) return settled;
  const uncertain = [...new Set(unanswered.flatMap((step) => step.settles))];
  let plan: DetachPlan;
  let again: UndoReport & { unanswered: DetachStep[] };
  try {
    plan = await planUndo(handle, uncertain, undefined, completed);
    again = await undoPlan(handle, plan, undoOf);
  } catch (lookError) {
    // The records stay left, not checked, each failure saying its answer was lost; and why the look failed.
    if (lookError instanceof NetlinkError) settled.failures.push(lookError);
    settled.notChecked = settled.left.filter((record) => uncertain.includes(record));
    return settled;
  }
  // The first send did what the second look finds gone.
  const gone = new Set([...plan.alreadyGone, ...plan.neverMade]);
  for (const step of unanswered) {
    if (!step.settles.every((record) => gone.has(record))) continue;
    settled.undone += changeCount(step.change);
    settled.undid!.push(...recordsShownBy(step));
  }
  settled.undone += again.undone;
  settled.undid!.push(...(again.undid ?? []));
  settled.alreadyGone += again.alreadyGone - plan.alreadyGone.length;
  const stillUncertain = new Set(uncertain);
  const leftAgain = new Set(again.left);
  settled.left = settled.left.filter((record) => !stillUncertain.has(record) || leftAgain.has(record));
  for (const record of again.left) if (!settled.left.includes(record)) settled.left.push(record);
  settled.failures = [...settled.failures.filter((failure) => !answerLost(failure)), ...again.failures];
  // What the second send's answers lost too is not known either.
  const lostAgain = new Set(again.unanswered.flatMap((step) => step.settles));
  const notChecked = settled.left.filter((record) => lostAgain.has(record));
  if (notChecked.length > 0) settled.notChecked = notChecked;
  return settled;
}

/**
 * Routes the plan put back in a free place that the kernel found taken (EEXIST) when the batch came:
 * someone set a route there between the plan and its send. Theirs stays, as when the plan finds it,
 * and the same notice says so; a route that is the recorded one is left silently.
 */
export async function noticeRoutesTakenMeanwhile(
  handle: NetlinkHandle,
  steps: readonly DetachStep[],
  undoOf: UndoOf = 'detach',
): Promise<void> {
  // Two dumps only a listener needs: the undo leaves their route in place either way.
  if (!channels.notice.hasSubscribers) return;
  const notices: DetachNotice[] = [];
  try {
    const [routes, links] = await Promise.all([handle.routes({ table: 'all' }), handle.links()]);
    for (const step of steps) {
      if (step.change.op !== 'add-route') continue;
      const place = placeOfRecord(step.change.route);
      const there = routes.find((route) => placeOfRoute(route) === place);
      const notice = there && routeTakenNotice(step, there, links);
      if (notice) notices.push(notice);
    }
  } catch (error) {
    for (const step of steps) {
      if (step.change.op !== 'add-route') continue;
      notices.push({
        link: step.change.link.name,
        message: `did not put back the route ${routeArguments(step.change.route, step.change.link)}: a route was set in its place as the undo was sent, and the routes could not be listed to say which (${(error as Error).message})`,
      });
    }
  }
  for (const notice of notices) publishUndoNotice(notice, undoOf);
}

/**
 * The command an attach of endpoints is part of, as the notices of its rollback name it
 * (vcnet:notice's `operation`): `vcnet attach` (and vcnet-cni ADD), `vcnet add-iface`, or a `vcnet
 * watch` attaching a link it found.
 */
export type AttachOperation = (typeof ATTACH_OPERATIONS)[number];
/** Every AttachOperation, for the check of a caller's value (Network.addEndpoints). */
export const ATTACH_OPERATIONS = ['attach', 'add-iface', 'watch'] as const;

/** The failure an undo's error lists when the record of what it left could not be written. */
export function recordOfLeftNotUpdated(writeError: unknown): string {
  return `the record of what is left was not updated: ${(writeError as Error).message}`;
}

/**
 * Whose undo it is, as its notices say: a detach's, or the rollback of a failed attach (its own
 * endpoint's, or the endpoints the same attach had made before it) made by the command named.
 */
export type UndoOf = 'detach' | AttachOperation;

/**
 * A notice of an undo, published under the operation the user ran: a rollback's is that command's
 * (attach, add-iface or watch), its text begun with the rollback it is part of.
 */
function publishUndoNotice(notice: DetachNotice, undoOf: UndoOf): void {
  publish(channels.notice, () =>
    undoOf === 'detach'
      ? { operation: 'detach', endpoint: notice.link, message: notice.message }
      : {
          operation: undoOf,
          endpoint: notice.link,
          message: `rolling back the failed ${undoOf === 'add-iface' ? 'add-iface' : 'attach'}: ${notice.message}`,
        },
  );
}

/**
 * The plan that undoes records, against the namespace as it is now (its links, and the qdiscs and
 * filters vcnet recorded on pod links): what detach sends, what `vcnet detach --dry-run` prints, and what
 * `vcnet gc --dry-run` says an unfinished attach's undo would remove (recordsShownBy of its steps).
 * What is already gone is classified here, the one place: no step is planned that the kernel would
 * answer "gone". Reads only.
 */
export async function planUndo(
  handle: NetlinkHandle,
  records: readonly PlumbingStep[],
  knownLinks?: readonly Link[],
  /** The records of attaches that completed (planDetach's `completed`); the others may have stopped part-way. */
  completed?: ReadonlySet<PlumbingStep>,
): Promise<DetachPlan> {
  if (records.length === 0) return { steps: [], alreadyGone: [], neverMade: [], kept: [], notices: [] };
  const links = knownLinks ?? (await handle.links());
  // An ingress qdisc of ours that now holds someone else's filter stays; only our filters go. Our
  // htb goes, with whatever was put in it.
  const others = await othersInQdiscs(handle, records, linkResolver(links));
  // Every table: a recorded route goes back only where its place is still free.
  const routes = records.some((record) => record.step === 'remove-routes')
    ? await handle.routes({ table: 'all' })
    : undefined;
  // A recorded address goes back only where it is not there already.
  const addresses = records.some((record) => record.step === 'remove-addresses') ? await handle.addresses() : undefined;
  // Whether the kernel promotes secondaries on a link whose own setting is off: read only for a
  // notice that depends on it (a rare detach), as a sysctl inside the namespace.
  const allPromoteSecondaries =
    addresses && comebackNeedsAllPromoteSecondaries(records, links, addresses)
      ? allPromoteSecondariesOf(handle)
      : undefined;
  // A link journaled ahead and absent now: made and gone, or never made? Its pod-link steps tell.
  const absent = unconfirmedLinksAbsent(records, links);
  const batchesInPlace =
    absent.size > 0 ? podBatchesInPlace(records, absent, await podLinkView(handle, records, absent, links)) : undefined;
  return planDetach(records, {
    links,
    ...(routes ? { routes } : {}),
    ...(addresses ? { addresses } : {}),
    ...(allPromoteSecondaries !== undefined ? { allPromoteSecondaries } : {}),
    ...(batchesInPlace ? { batchesInPlace } : {}),
    keptQdiscs: others.kept,
    qdiscsDeletedWith: others.deletedWith,
    keptFilters: others.keptFilters,
    ownNodes: others.ownNodes,
    absentQdiscs: others.absent,
    absentFilters: others.absentFilters,
    now: Date.now(),
    namespacePath: handle.namespacePath,
    ...namespaceHeldThroughOf(handle.namespacePath),
    ...(completed ? { completed } : {}),
  });
}

/**
 * The socket or tap of another process that the handle reached its namespace through (a namespace
 * only that keeps: detach's /proc/PID/fd/N), which no command quoted to the user can enter.
 */
function namespaceHeldThroughOf(
  namespacePath: string | undefined,
): { namespaceHeldThrough: { pid: number; fd: number; kind: 'socket' | 'tap' } } | Record<string, never> {
  const held = namespacePath === undefined ? undefined : heldDeviceAt(namespacePath);
  return held ? { namespaceHeldThrough: { pid: held.pid, fd: held.fd, kind: held.kind } } : {};
}

/** net.ipv4.conf.all.promote_secondaries of the handle's namespace; undefined when it cannot be read. */
function allPromoteSecondariesOf(handle: NetlinkHandle): boolean | undefined {
  try {
    return handle.readNetSysctl('ipv4/conf/all/promote_secondaries') !== '0';
  } catch {
    return undefined;
  }
}

/** Undoes records (detach, rollback): plans against the links there now, then sends. */
export async function undoRecords(
  handle: NetlinkHandle,
  records: readonly PlumbingStep[],
  knownLinks?: readonly Link[],
  /** The records of attaches that completed (planDetach's `completed`): a detach's, not a rollback's. */
  completed?: ReadonlySet<PlumbingStep>,
  /** Whose undo it is, for its notices: a detach's, or a failed attach's rollback. */
  undoOf: UndoOf = 'detach',
): Promise<UndoReport> {
  if (records.length === 0) return { undone: 0, alreadyGone: 0, kept: 0, failures: [], left: [] };
  const plan = await planUndo(handle, records, knownLinks, completed);
  for (const notice of [...plan.notices, ...plan.kept.map(keptNotice)]) publishUndoNotice(notice, undoOf);
  const report = await settleUnanswered(handle, await undoPlan(handle, plan, undoOf), undoOf, completed);
  // Keep the attach order in what is left, so the next detach undoes it in reverse again.
  const left = new Set(report.left);
  report.left = records.filter((record) => left.has(record));
  if (report.notChecked) {
    const notChecked = new Set(report.notChecked);
    report.notChecked = records.filter((record) => notChecked.has(record));
  }
  return report;
}
