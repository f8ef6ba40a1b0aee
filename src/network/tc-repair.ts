/**
 * What `vcnet watch` does when tc objects vcnet made for an attached endpoint have gone while the
 * endpoint stays (a `tc qdisc del dev eth0 ingress`, another tool flushing the link's ingress, an htb
 * or one of its classes deleted): dumps what the plan reads, plans what to make again (plan/plan-tc-repair.ts, pure), sends
 * it through the executor in one batch (plan/apply.ts sendChanges) and says what came of each object.
 * The caller holds the sandbox lock and says the outcome.
 */
import { errnoOf } from '../errors.js';
import type { Filter } from '../netlink/codec/tc/filter.js';
import { tcMajor } from '../netlink/codec/tc/message.js';
import type { TrafficClass } from '../netlink/codec/tc/qdisc/htb.js';
import { answerLost } from '../netlink/errors.js';
import type { NetlinkHandle } from '../netlink/handle.js';
import { sendChanges } from './plan/apply.js';
import type { ChangeAnswer } from './plan/batch-send.js';
import { commandOf } from './plan/commands.js';
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
import type { Change, RateLimit } from './plan/types.js';
import { alreadyDone } from './plan/undo.js';

/**
 * Puts back the tc objects `endpoint`'s record says vcnet made that are missing now; says what it
 * did (nothing when all are there). `rateLimit` is the sandbox's (the one attach used): an htb is
 * made again with it. A dump that fails throws (the watch checks again with the next change).
 */
export async function repairTrafficControl(
  handle: Pick<NetlinkHandle, 'links' | 'qdiscs' | 'filters' | 'classes' | 'changes' | 'addQdisc'>,
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
    const undone = await sendChanges(handle, undo).catch((error: Error) =>
      undo.map(() => ({ ok: false, error }) as const),
    );
    await sayWhatIsLeft(handle, plan, outcomes, undo, undone);
  }
  return outcomes;
}

/** Dumps what the plan reads and plans the repair. */
async function look(
  handle: Pick<NetlinkHandle, 'links' | 'qdiscs' | 'filters' | 'classes'>,
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
  return planTrafficControlRepair(endpoint, { links, qdiscs, filters, classes }, rateLimit);
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
  handle: Pick<NetlinkHandle, 'qdiscs' | 'filters'>,
  plan: TrafficControlRepairPlan,
  outcomes: TrafficControlRepair[],
  undo: readonly Change[],
  undone: readonly ChangeAnswer[],
): Promise<void> {
  const restores = plan.objects.filter(isRestore);
  for (const [position, change] of undo.entries()) {
    const answer = undone[position] ?? { ok: false, error: new Error('the kernel did not answer') };
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
    const restore = restores.find((candidate) => candidate.undo.includes(change));
    if (!restore) continue;
    const said = restore.needs ?? restore;
    const outcome = outcomes.find(
      (candidate) => candidate.outcome === 'failed' && candidate.link === said.link && candidate.object === said.object,
    );
    if (!outcome) continue;
    outcome.message += `; the part of vcnet's ${restore.object} on ${restore.link} the kernel made could not be taken away again (${why}: \`${commandOf(change)}\` in the pod's namespace removes it`;
  }
}
