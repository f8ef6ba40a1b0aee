/**
 * What `vcnet watch` does when tc objects vcnet made for an attached endpoint have gone while the
 * endpoint stays (a `tc qdisc del dev eth0 ingress`, another tool flushing the link's ingress, an htb
 * or one of its classes deleted): dumps what the plan reads, plans what to make again (plan/plan-tc-repair.ts, pure), sends
 * it through the executor in one batch (plan/apply.ts sendChanges) and says what came of each object.
 * The caller holds the sandbox lock and says the outcome.
 */
import { errnoOf } from '../errors.js';
import type { Link } from '../netlink/codec/link.js';
import type { Filter } from '../netlink/codec/tc/filter.js';
import { tcMajor } from '../netlink/codec/tc/message.js';
import type { TrafficClass } from '../netlink/codec/tc/qdisc/htb.js';
import { answerLost } from '../netlink/errors.js';
import type { NetlinkHandle } from '../netlink/handle.js';
import { recordedFilterNow } from './foreign-filters.js';
import { sendChanges } from './plan/apply.js';
import type { ChangeAnswer } from './plan/batch-send.js';
import { commandOf } from './plan/commands.js';
import { linkResolver } from './plan/plan-detach.js';
import {
  hasTrafficControl,
  isRestore,
  planTrafficControlRepair,
  type RepairableEndpoint,
  repairChanges,
  repairClassLinks,
  repairFilterLists,
  repairOutcomes,
  type TrafficControlRepair,
  type TrafficControlRepairPlan,
} from './plan/plan-tc-repair.js';
import type { Change, PlumbingStep, RateLimit } from './plan/types.js';
import { alreadyDone } from './plan/undo.js';

/**
 * Puts back the tc objects `endpoint`'s record says vcnet made that are missing now; says what it
 * did (nothing when all are there). `rateLimit` is the sandbox's (the one attach used): an htb is
 * made again with it. A dump that fails throws (the watch checks again with the next change).
 */
export async function repairTrafficControl(
  handle: Pick<NetlinkHandle, 'links' | 'qdiscs' | 'filters' | 'classes' | 'changes' | 'addQdisc'> &
    Partial<Pick<NetlinkHandle, 'namespacePath'>>,
  endpoint: RepairableEndpoint,
  rateLimit: RateLimit | undefined,
): Promise<TrafficControlRepair[]> {
  if (!hasTrafficControl(endpoint)) return [];
  const plan = await look(handle, endpoint, rateLimit);
  const answers = await sendChanges(handle, repairChanges(plan));
  // Answers lost: the kernel ran the whole send, so what it made is seen by a second look, as the
  // executor's undo plans again against the namespace when its own answers are lost.
  const again = answers.some((answer) => !answer.ok && answerLost(answer.error))
    ? await look(handle, endpoint, rateLimit).catch((error: Error) => error)
    : undefined;
  const { outcomes, undo } = repairOutcomes(plan, answers, again);
  // Nothing half-built: what the kernel made of a restore it refused part of goes again.
  // Its outcome says `failed` either way: the watch tries again (tc-repair-retry.ts).
  if (undo.length > 0) {
    // The links are listed once for the whole undo, and only if a filter's undo needs them.
    let links: Promise<Link[]> | undefined;
    const linksNow = () => {
      links ??= handle.links();
      return links;
    };
    const planned: PlannedUndo[] = [];
    for (const change of undo) planned.push(...(await undoNow(handle, linksNow, plan, change)));
    const sent = planned.filter((entry) => entry.answer === undefined).map((entry) => entry.change);
    const answers = await sendChanges(handle, sent).catch((error: Error) =>
      sent.map(() => ({ ok: false, error }) as const),
    );
    let position = 0;
    const undone = planned.map((entry) => ({
      ...entry,
      answer: entry.answer ?? answers[position++] ?? { ok: false, error: new Error('the kernel did not answer') },
    }));
    await sayWhatIsLeft(handle, plan, outcomes, undone);
  }
  return outcomes;
}

/** A change that takes away part of a restore, and `of`, the undo change of the restore it stands for. */
interface PlannedUndo {
  change: Change;
  of: Change;
  /** Known without sending: the change is not sent. */
  answer?: ChangeAnswer;
}

/**
 * The changes that take away what `change`, an undo of the plan, names, planned against the
 * namespace now. A filter the watch put back goes by priority only while the priority holds vcnet's
 * alone: its ingress qdisc came from another tool between the look and the send, and when that one
 * had a u32 at vcnet's priority and protocol the kernel made vcnet's redirect a node of it. Deleting
 * the priority would take theirs; vcnet's node goes by its handle (foreign-filters.ts
 * recordedFilterNow, as detach does it). Any other change goes as planned.
 */
async function undoNow(
  handle: Pick<NetlinkHandle, 'filters'>,
  /** The namespace's links, listed once per repair (its first call lists them). */
  linksNow: () => Promise<Link[]>,
  plan: TrafficControlRepairPlan,
  change: Change,
): Promise<PlannedUndo[]> {
  if (change.op !== 'delete-filter' || change.handle !== undefined) return [{ change, of: change }];
  const added = plan.objects
    .filter(isRestore)
    .find((restore) => restore.undo.includes(change))
    ?.changes.find((made) => made.op === 'add-filter');
  if (added?.op !== 'add-filter' || added.link.index === undefined || added.redirectTo.index === undefined)
    return [{ change, of: change }];
  const record = recordOf(added);
  let dumped: Filter[];
  let links: Link[];
  try {
    dumped = await handle.filters(added.link.index, change.parent);
    links = await linksNow();
  } catch (error) {
    // Unseen, vcnet's filter cannot be told from another's node beside it: nothing is deleted.
    const why = new Error(`the filters of ${added.link.name} could not be listed: ${(error as Error).message}`);
    return [{ change, of: change, answer: { ok: false, error: why } }];
  }
  const now = recordedFilterNow(record, dumped, new Set([added.redirectTo.index]), linkResolver(links));
  switch (now.found) {
    case 'gone':
      return [];
    case 'alone':
      return [{ change, of: change }];
    case 'beside':
      return now.ownNodes.map((node) => ({ change: { ...change, handle: node }, of: change }));
    case 'taken':
      return [{ change, of: change, answer: { ok: false, error: new Error(now.reason) } }];
  }
}

/** The record attach would keep of `added`, vcnet's redirect: what recordedFilterNow looks for. */
function recordOf(added: Extract<Change, { op: 'add-filter' }>): Extract<PlumbingStep, { step: 'add-filter' }> {
  return {
    step: 'add-filter',
    link: added.link.name,
    ...(added.link.index !== undefined ? { index: added.link.index } : {}),
    parent: added.parent,
    priority: added.priority,
    protocol: added.protocol,
    kind: 'u32',
    redirectTo: {
      link: added.redirectTo.name,
      ...(added.redirectTo.index !== undefined ? { index: added.redirectTo.index } : {}),
    },
  };
}

/** Dumps what the plan reads and plans the repair. */
async function look(
  handle: Pick<NetlinkHandle, 'links' | 'qdiscs' | 'filters' | 'classes'> &
    Partial<Pick<NetlinkHandle, 'namespacePath'>>,
  endpoint: RepairableEndpoint,
  rateLimit: RateLimit | undefined,
): Promise<TrafficControlRepairPlan> {
  const [links, qdiscs] = [await handle.links(), await handle.qdiscs()];
  const filters: Filter[] = [];
  for (const { index, parent } of repairFilterLists(endpoint, { links, qdiscs })) {
    filters.push(...(await handle.filters(index, parent)));
  }
  const classes: TrafficClass[] = [];
  for (const index of repairClassLinks(endpoint, { links, qdiscs })) classes.push(...(await handle.classes(index)));
  return planTrafficControlRepair(
    endpoint,
    { links, qdiscs, filters, classes, namespacePath: handle.namespacePath },
    rateLimit,
  );
}

/**
 * Whether what an undo's delete names is still there, looked at after its answer was lost
 * (undefined: the look failed). A filter is vcnet's by what the delete names (chain 0, priority,
 * protocol, kind, and the u32 node when it names one): another tool's filter at that priority in
 * another chain, or another node the delete did not name, is not it.
 */
async function stillThere(
  handle: Pick<NetlinkHandle, 'qdiscs' | 'filters'>,
  change: Change,
): Promise<boolean | undefined> {
  if (change.op !== 'delete-qdisc' && change.op !== 'delete-filter') return undefined;
  const index = change.link.index;
  if (index === undefined) return undefined;
  try {
    const qdiscs = await handle.qdiscs();
    if (change.op === 'delete-qdisc') {
      return qdiscs.some(
        (qdisc) => qdisc.index === index && qdisc.handle === change.handle && qdisc.parent === change.parent,
      );
    }
    // A filter's parent names its qdisc by its major (ffff: of an ingress, ffff:fff2 of a clsact's
    // ingress hook): no such qdisc, no filter either.
    if (!qdiscs.some((qdisc) => qdisc.index === index && tcMajor(qdisc.handle) === tcMajor(change.parent)))
      return false;
    const filters = await handle.filters(index, change.parent);
    return filters.some(
      (filter) =>
        (filter.chain ?? 0) === 0 &&
        filter.priority === change.priority &&
        filter.protocol === change.protocol &&
        filter.kind === change.kind &&
        (change.handle === undefined || filter.handle === change.handle),
    );
  } catch {
    return undefined;
  }
}

/**
 * An undo the kernel refused (or a send that failed) leaves part of a restore made: the failed
 * outcome of that restore (or of the ingress qdisc it needed) says what is left and how to remove it.
 */
async function sayWhatIsLeft(
  handle: Pick<NetlinkHandle, 'qdiscs' | 'filters'> & Partial<Pick<NetlinkHandle, 'namespacePath'>>,
  plan: TrafficControlRepairPlan,
  outcomes: TrafficControlRepair[],
  undone: ReadonlyArray<Required<PlannedUndo>>,
): Promise<void> {
  const restores = plan.objects.filter(isRestore);
  for (const { change, of, answer } of undone) {
    if (answer.ok || alreadyDone(change, errnoOf(answer.error) ?? '')) continue;
    let why = `${answer.error.message}) and is left`;
    if (answerLost(answer.error)) {
      // Maybe taken away: a look says.
      const there = await stillThere(handle, change);
      if (there === false) continue;
      why =
        there === true
          ? `its answer was lost, and a second look finds it there) and is left`
          : `its answer was lost, and the namespace could not be looked at again) and may be left`;
    }
    const restore = restores.find((candidate) => candidate.undo.includes(of));
    if (!restore) continue;
    const said = restore.needs ?? restore;
    const outcome = outcomes.find(
      (candidate) => candidate.outcome === 'failed' && candidate.link === said.link && candidate.object === said.object,
    );
    if (!outcome) continue;
    // Run in the pod's namespace wherever it is pasted: a bare tc on the host acts on a host link of that name.
    const command = commandOf(change, { namespacePath: handle.namespacePath });
    outcome.message += `; the part of vcnet's ${restore.object} on ${restore.link} the kernel made could not be taken away again (${why}: \`${command}\` removes it`;
  }
}
