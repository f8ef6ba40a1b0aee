/**
 * What `vcnet watch` does when tc objects vcnet made for an attached endpoint have gone while the
 * endpoint stays (a `tc qdisc del dev eth0 ingress`, another tool flushing the link's ingress, an htb
 * or one of its classes deleted): dumps what the plan reads, plans what to make again (plan/plan-tc-repair.ts, pure), sends
 * it through the executor in one batch (plan/apply.ts sendChanges) and says what came of each object.
 * The caller holds the sandbox lock and says the outcome.
 */
import type { Filter } from '../netlink/codec/tc/filter.js';
import type { TrafficClass } from '../netlink/codec/tc/qdisc/htb.js';
import type { NetlinkHandle } from '../netlink/handle.js';
import { sendChanges } from './plan/apply.js';
import {
  hasTrafficControl,
  planTrafficControlRepair,
  type RepairableEndpoint,
  repairChanges,
  repairClassLinks,
  repairFilterLists,
  repairOutcomes,
  type TrafficControlRepair,
} from './plan/plan-tc-repair.js';
import type { RateLimit } from './plan/types.js';

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
  if (undo.length > 0) await sendChanges(handle, undo).catch(() => []);
  return outcomes;
}
