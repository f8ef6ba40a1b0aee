/**
 * What `vcnet watch` does when tc objects vcnet made for an attached endpoint have gone while the
 * endpoint stays (a `tc qdisc del dev eth0 ingress`, another tool flushing the link's ingress, an htb
 * or one of its classes deleted): dumps what the plan reads, plans what to make again (plan/plan-tc-repair.ts, pure), sends
 * it through the executor in one batch (plan/apply.ts sendChanges) and says what came of each object.
 * The caller holds the sandbox lock and says the outcome.
 */
import { errnoOf } from '../errors.js';
import type { Filter } from '../netlink/codec/tc/filter.js';
import type { TrafficClass } from '../netlink/codec/tc/qdisc/htb.js';
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
  const [links, qdiscs] = [await handle.links(), await handle.qdiscs()];
  const filters: Filter[] = [];
  for (const { index, parent } of repairFilterLists(endpoint, { links, qdiscs })) {
    filters.push(...(await handle.filters(index, parent)));
  }
  const classes: TrafficClass[] = [];
  for (const index of repairClassLinks(endpoint, { links, qdiscs })) classes.push(...(await handle.classes(index)));
  const plan = planTrafficControlRepair(endpoint, { links, qdiscs, filters, classes }, rateLimit);
  const answers = await sendChanges(handle, repairChanges(plan));
  const { outcomes, undo } = repairOutcomes(plan, answers);
  // Nothing half-built: what the kernel made of a restore it refused part of goes again.
  // Its outcome says `failed` either way: the watch tries again (tc-repair-retry.ts).
  if (undo.length > 0) {
    const undone = await sendChanges(handle, undo).catch((error: Error) =>
      undo.map(() => ({ ok: false, error }) as const),
    );
    sayWhatIsLeft(plan, outcomes, undo, undone);
  }
  return outcomes;
}

/**
 * An undo the kernel refused (or a send that failed) leaves part of a restore made: the failed
 * outcome of that restore (or of the ingress qdisc it needed) says what is left and how to remove it.
 */
function sayWhatIsLeft(
  plan: TrafficControlRepairPlan,
  outcomes: TrafficControlRepair[],
  undo: readonly Change[],
  undone: readonly ChangeAnswer[],
): void {
  const restores = plan.objects.filter(isRestore);
  undo.forEach((change, position) => {
    const answer = undone[position] ?? { ok: false, error: new Error('the kernel did not answer') };
    if (answer.ok || alreadyDone(change, errnoOf(answer.error) ?? '')) return;
    const restore = restores.find((candidate) => candidate.undo.includes(change));
    if (!restore) return;
    const said = restore.needs ?? restore;
    const outcome = outcomes.find(
      (candidate) => candidate.outcome === 'failed' && candidate.link === said.link && candidate.object === said.object,
    );
    if (!outcome) return;
    outcome.message += `; the part of vcnet's ${restore.object} on ${restore.link} the kernel made could not be taken away again (${answer.error.message}) and is left: \`${commandOf(change)}\` in the pod's namespace removes it`;
  });
}
