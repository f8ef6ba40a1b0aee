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
import type { Link } from '../../netlink/codec/link.js';
import type { NetlinkHandle } from '../../netlink/handle.js';
import { othersInQdiscs } from '../foreign-filters.js';
import { podBatchesInPlace, podLinkView } from './batch-evidence.js';
import { publishStep, sendBatch } from './batch-send.js';
import {
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

export interface UndoReport {
  undone: number;
  alreadyGone: number;
  /** Records of what detach left because someone else uses it too (an ingress qdisc holding another tool's filter). */
  kept: number;
  /** The kernel's refusals (NetlinkError, with its errno), or why a step could not be sent. */
  failures: Error[];
  /** The records of what is still there after the undo (empty when everything went). */
  left: PlumbingStep[];
  /**
   * The records of what the kernel undid (recordsShownBy each accepted change): what went, not what
   * was already gone or never made. A link's records stand for what was on it.
   */
  undid?: PlumbingStep[];
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

/**
 * Undoes what an attach made, journals what is left, and throws: the attach's own error when the
 * undo was complete, RollbackIncompleteError naming what is left when the kernel refused part of it.
 */
export async function rollBackAttach(
  handle: NetlinkHandle,
  records: PlumbingStep[],
  error: Error,
  journal: ((left: PlumbingStep[]) => void) | undefined,
  createdIndexes?: ReadonlyMap<string, number>,
): Promise<never> {
  let report: { failures: Array<{ message: string }>; left: PlumbingStep[] };
  try {
    report = await undoRecords(handle, records);
  } catch (undoError) {
    // The undo could not even start (its dump of the links was refused, say): nothing it was meant
    // to remove is known to be gone, so all of it is left, and said so.
    report = { failures: [{ message: (undoError as Error).message }], left: [...records] };
  }
  if (createdIndexes) {
    const survivors = await linksStillThere(handle, records, report.left, createdIndexes);
    report.failures.push(...survivors.map((survivor) => ({ message: survivor.message })));
    report.left.push(...survivors.map((survivor) => survivor.record));
  }
  let journalFailure: Error | undefined;
  try {
    journal?.(report.left);
  } catch (writeError) {
    // A full or read-only state directory: the last record written still lists every step sent
    // (each is journaled before it is sent), so detach and gc can finish from it.
    journalFailure = writeError as Error;
  }
  if (report.left.length > 0) {
    throw new RollbackIncompleteError(
      'attach',
      error,
      [
        ...report.failures.map((failure) => failure.message),
        ...(journalFailure ? [`the record of what is left was not updated: ${journalFailure.message}`] : []),
      ],
      describeRecords(report.left),
      report.left,
    );
  }
  throw error;
}

/**
 * The links the attach made that are still there after its undo, looked up by the ifindex each got
 * when it was made: "everything it had made was removed" is said only once this finds none. The
 * undo finds a record's link by its index too, but takes "no such device" as gone, and a record
 * journaled before its link existed has no index. Each survivor is recorded under the name it has
 * now, so detach and gc find it; a link whose index holds another kind now is not ours.
 */
async function linksStillThere(
  handle: NetlinkHandle,
  records: readonly PlumbingStep[],
  left: readonly PlumbingStep[],
  createdIndexes: ReadonlyMap<string, number>,
): Promise<Array<{ record: PlumbingStep; message: string }>> {
  const survivors: Array<{ record: PlumbingStep; message: string }> = [];
  for (const record of records) {
    if (record.step !== 'create-link' || left.includes(record)) continue;
    const index = createdIndexes.get(record.name);
    if (index === undefined) continue;
    let link: Link | undefined;
    try {
      link = await handle.findLink({ index });
    } catch (lookupError) {
      // Not known to be gone: kept, under the name it was made with.
      survivors.push({
        record,
        message: `${record.name} (ifindex ${index}) could not be checked after its undo: ${(lookupError as Error).message}`,
      });
      continue;
    }
    if (!link || link.kind !== record.kind) continue;
    survivors.push({
      record: { ...record, name: link.name },
      message: `${record.name} (ifindex ${index}) was still there after its undo${link.name === record.name ? '' : `, renamed ${link.name}`}`,
    });
  }
  return survivors;
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

export function alreadyDone(change: Change, errno: string): boolean {
  switch (change.op) {
    case 'delete-qdisc':
    case 'delete-filter':
      return TC_GONE_ERRNOS.has(errno);
    case 'add-address':
    case 'add-route':
    case 'add-neighbour':
    case 'set-link':
      return PRESENT_ERRNOS.has(errno) || GONE_ERRNOS.has(errno);
    default:
      return GONE_ERRNOS.has(errno);
  }
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
 * records its step settles in `left`.
 */
async function undoPlan(handle: NetlinkHandle, plan: DetachPlan): Promise<UndoReport> {
  const report: UndoReport = {
    undone: 0,
    alreadyGone: plan.alreadyGone.length,
    kept: plan.kept.length,
    failures: [],
    left: [],
    undid: [],
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
      report.failures.push(answer.error);
      for (const record of step.settles) left.add(record);
    }
  });
  report.left = [...left];
  if (placesTaken.length > 0) await noticeRoutesTakenMeanwhile(handle, placesTaken);
  return report;
}

/**
 * Routes the plan put back in a free place that the kernel found taken (EEXIST) when the batch came:
 * someone set a route there between the plan and its send. Theirs stays, as when the plan finds it,
 * and the same notice says so; a route that is the recorded one is left silently.
 */
async function noticeRoutesTakenMeanwhile(handle: NetlinkHandle, steps: readonly DetachStep[]): Promise<void> {
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
        message: `did not put back the route ${routeArguments(step.change.route, step.change.link)}: a route was set in its place as detach sent it, and the routes could not be listed to say which (${(error as Error).message})`,
      });
    }
  }
  for (const notice of notices) {
    publish(channels.notice, () => ({ operation: 'detach', endpoint: notice.link, message: notice.message }));
  }
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
  // A link journaled ahead and absent now: made and gone, or never made? Its pod-link steps tell.
  const absent = unconfirmedLinksAbsent(records, links);
  const batchesInPlace =
    absent.size > 0 ? podBatchesInPlace(records, absent, await podLinkView(handle, records, absent, links)) : undefined;
  return planDetach(records, {
    links,
    ...(routes ? { routes } : {}),
    ...(addresses ? { addresses } : {}),
    ...(batchesInPlace ? { batchesInPlace } : {}),
    keptQdiscs: others.kept,
    qdiscsDeletedWith: others.deletedWith,
    keptFilters: others.keptFilters,
    absentQdiscs: others.absent,
    absentFilters: others.absentFilters,
    now: Date.now(),
  });
}

/** Undoes records (detach, rollback): plans against the links there now, then sends. */
export async function undoRecords(
  handle: NetlinkHandle,
  records: readonly PlumbingStep[],
  knownLinks?: readonly Link[],
): Promise<UndoReport> {
  if (records.length === 0) return { undone: 0, alreadyGone: 0, kept: 0, failures: [], left: [] };
  const plan = await planUndo(handle, records, knownLinks);
  for (const notice of [...plan.notices, ...plan.kept.map(keptNotice)]) {
    publish(channels.notice, () => ({ operation: 'detach', endpoint: notice.link, message: notice.message }));
  }
  const report = await undoPlan(handle, plan);
  // Keep the attach order in what is left, so the next detach undoes it in reverse again.
  const left = new Set(report.left);
  report.left = records.filter((record) => left.has(record));
  return report;
}
