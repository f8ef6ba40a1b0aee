/**
 * planDetach: the changes that undo what a record says an attach made, from the record and the links
 * the namespace has now. Pure. Objects on a link that is itself deleted go with it, filters inside a
 * qdisc that is deleted go with the qdisc, and vcnet's links are deleted by group when the group holds
 * exactly them (one RCU grace period instead of one per link). Every change lists the records it
 * settles, so whatever the kernel refuses can be kept in the record, and nothing else.
 */
import type { Link } from '../../netlink/codec/link.js';
import type { PlumbingStep } from '../plumbing.js';
import { undoChangesOf } from './inverse.js';
import { VCNET_LINK_GROUP } from './plan-attach.js';
import type { Change, LinkRef } from './types.js';

export interface DetachStep {
  change: Change;
  /** The records this change settles when the kernel accepts it (or says the object is gone). */
  settles: PlumbingStep[];
}

export interface DetachPlan {
  steps: DetachStep[];
  /** Records whose link is already gone: nothing to do for them. */
  alreadyGone: PlumbingStep[];
}

export function planDetach(
  records: readonly PlumbingStep[],
  snapshot: {
    links: readonly Link[];
    /** Qdiscs vcnet added that now hold someone else's filter (foreign-filters.ts): kept, only our filters go. */
    keptQdiscs?: ReadonlySet<string>;
  },
): DetachPlan {
  const byName = new Map(snapshot.links.map((link) => [link.name, link]));
  const refOf = (name: string): LinkRef => {
    const link = byName.get(name);
    return link ? { role: 'pod', name, index: link.index } : { role: 'pod', name };
  };
  const createdNames = new Set(records.flatMap((record) => (record.step === 'create-link' ? [record.name] : [])));
  const alreadyGone: PlumbingStep[] = [];

  // One deletion per created link that still exists (or one for the whole group).
  const linkSteps = new Map<string, DetachStep>();
  for (const record of records) {
    if (record.step !== 'create-link') continue;
    const link = byName.get(record.name);
    if (!link) {
      alreadyGone.push(record);
      continue;
    }
    const existing = linkSteps.get(record.name);
    if (existing) existing.settles.push(record);
    else linkSteps.set(record.name, { change: undoChangesOf(record, refOf)[0]!, settles: [record] });
  }
  const groupMembers = snapshot.links.filter((link) => link.group === VCNET_LINK_GROUP).map((link) => link.name);
  const byGroup =
    linkSteps.size > 1 && groupMembers.length === linkSteps.size && groupMembers.every((name) => linkSteps.has(name));

  // Qdiscs to delete, so the filters inside them can go with them.
  const qdiscKey = (link: string, parent: number) => `${link}/${parent >>> 16}`;
  const qdiscSteps = new Map<string, DetachStep>();
  for (const record of records) {
    if (record.step !== 'add-qdisc' || createdNames.has(record.link) || !byName.has(record.link)) continue;
    if (snapshot.keptQdiscs?.has(qdiscKey(record.link, record.handle))) continue;
    qdiscSteps.set(qdiscKey(record.link, record.handle), {
      change: undoChangesOf(record, refOf)[0]!,
      settles: [record],
    });
  }

  const steps: DetachStep[] = [];
  for (const record of [...records].reverse()) {
    if (record.step === 'create-link') continue;
    const owner = linkSteps.get(record.link);
    if (owner) {
      owner.settles.push(record); // goes with its link
    } else if (createdNames.has(record.link) || !byName.has(record.link)) {
      alreadyGone.push(record);
    } else if (record.step === 'add-qdisc') {
      const qdiscStep = qdiscSteps.get(qdiscKey(record.link, record.handle));
      // A kept qdisc is no longer ours to delete: its record is settled without a change.
      if (qdiscStep) steps.push(qdiscStep);
      else alreadyGone.push(record);
    } else if (record.step === 'add-filter' && qdiscSteps.has(qdiscKey(record.link, record.parent))) {
      qdiscSteps.get(qdiscKey(record.link, record.parent))!.settles.push(record);
    } else {
      const changes = undoChangesOf(record, refOf);
      if (changes.length === 0) alreadyGone.push(record); // e.g. a route whose other next-hop link is gone
      for (const change of changes) steps.push({ change, settles: [record] });
    }
  }

  if (byGroup) {
    const links = [...linkSteps.keys()].map(refOf);
    steps.push({
      change: { op: 'delete-link-group', group: VCNET_LINK_GROUP, links },
      settles: [...linkSteps.values()].flatMap((step) => step.settles),
    });
  } else {
    steps.push(...linkSteps.values());
  }
  return { steps, alreadyGone };
}
