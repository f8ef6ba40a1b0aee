/**
 * Others' tc objects are not ours to delete: an ingress qdisc vcnet added stays when someone else has
 * put a filter into it since (vcnet then deletes only its own filters, by priority). Read before the
 * undo batch is built, so detach decides from what the kernel holds now, not from the record alone.
 */
import type { Link } from '../netlink/codec/link.js';
import type { NetlinkHandle } from '../netlink/handle.js';
import { createdLinkNames, qdiscKey } from './plan/plan-detach.js';
import type { PlumbingStep } from './plan/types.js';

/** Keys (link/major) of the qdiscs vcnet added that now hold filters vcnet did not add. */
export async function qdiscsHoldingOthersFilters(
  handle: Pick<NetlinkHandle, 'filters'>,
  steps: readonly PlumbingStep[],
  /** The link a record means now (plan-detach.ts linkResolver). */
  resolve: (name: string, index?: number) => Link | undefined,
): Promise<Set<string>> {
  // A qdisc on a link vcnet created goes with that link, whoever's filters are in it.
  const deletedLinks = createdLinkNames(steps);
  const kept = new Set<string>();
  for (const step of steps) {
    if (step.step !== 'add-qdisc' || deletedLinks.has(step.link)) continue;
    const link = resolve(step.link, step.index);
    if (!link) continue;
    const ours = new Set(
      steps
        .filter(
          (other) =>
            other.step === 'add-filter' && other.link === step.link && other.parent >>> 16 === step.handle >>> 16,
        )
        .map((other) => (other as { priority: number }).priority),
    );
    const present = await handle.filters(link.index, step.handle).catch(() => []);
    if (present.some((filter) => !ours.has(filter.priority))) kept.add(qdiscKey(step.link, step.handle));
  }
  return kept;
}
