/**
 * What the executor journals of a plan: its intent (an index chosen for every link it makes, and the
 * records of all its steps, written before the first change), and the records of the steps made so
 * far, naming each link the plan made by the index it was made at.
 */

import { randomLinkIndex } from './link-creation.js';
import { randomMacvtapIndex } from './macvtap-index.js';
import { createdLinkNames } from './plan-detach.js';
import type { Plan, PlanStep, PlumbingStep } from './types.js';

/** What a plan may leave once applied, with the index of each link it makes chosen up front. */
export interface PlanIntent {
  plan: Plan;
  chosenIndexes: ReadonlyMap<string, number>;
  /** The records of every step, the links at their chosen indexes (`unconfirmed`): what is journaled before the first change. */
  records: PlumbingStep[];
  /**
   * Whether the records may be journaled ahead of the attach, with other endpoints' in one write:
   * every step on a link vcnet did not make comes after a link the plan makes (its `madeAfter`), so a
   * detach from the record can tell a step never made by that link's absence. A plan with a step on a
   * pod link before any link of its own (rate limits on an existing device) cannot: its records are
   * journaled before its first batch is sent, as they were before the intent.
   */
  journaledAhead: boolean;
}

/**
 * A plan's intent: an index chosen for every link it makes (taps and ifbs from LINK_INDEX_BASE, a
 * macvtap in its own range: macvtap-index.ts), and the records of all its steps. Pure but for the
 * random indexes.
 */
export function intentOf(plan: Plan): PlanIntent {
  const chosenIndexes = chosenIndexesOf(plan);
  const records = recordsOf(plan.steps, new Map(), chosenIndexes);
  const made = createdLinkNames(records);
  const journaledAhead = records.every(
    (record) => record.step === 'create-link' || made.has(record.link) || record.madeAfter !== undefined,
  );
  return { plan, chosenIndexes, records, journaledAhead };
}

/**
 * The index chosen for every link a plan makes (a random one each): the part of the intent the
 * executor needs when no caller journaled the intent ahead (applyPlan), without its records.
 */
export function chosenIndexesOf(plan: Plan): Map<string, number> {
  const chosenIndexes = new Map<string, number>();
  for (const { change } of plan.steps) {
    if ((change.op !== 'create-tap' && change.op !== 'create-link') || chosenIndexes.has(change.link.name)) continue;
    chosenIndexes.set(
      change.link.name,
      change.op === 'create-link' && change.kind === 'macvtap' ? randomMacvtapIndex() : randomLinkIndex(),
    );
  }
  return chosenIndexes;
}

export function sameIndexes(a: ReadonlyMap<string, number>, b: ReadonlyMap<string, number>): boolean {
  if (a.size !== b.size) return false;
  for (const [name, index] of a) if (b.get(name) !== index) return false;
  return true;
}

/**
 * The records of the steps, with the indexes of the links the plan made as far as they exist: a
 * create-link record and a filter redirecting to a made link then name it by identity, not by a name
 * anyone in the namespace can take over or change. With `chosenIndexes` (a record journaled before
 * all of it is made), a link not made yet is at its chosen index, `unconfirmed`, and each step on a
 * link vcnet did not make (a pod link) after it names it `madeAfter`: a detach that finds that link
 * absent knows the attach stopped before the step (plan-detach.ts), and leaves what is there now.
 */
export function recordsOf(
  steps: readonly PlanStep[],
  createdIndexes: ReadonlyMap<string, number>,
  chosenIndexes?: ReadonlyMap<string, number>,
): PlumbingStep[] {
  // Built only for a record journaled ahead, the one case that reads it (an attach's end does not).
  let ownLinks: Set<string> | undefined;
  if (chosenIndexes) {
    ownLinks = new Set();
    for (const { change } of steps) {
      if (change.op === 'create-tap' || change.op === 'create-link') ownLinks.add(change.link.name);
    }
  }
  const records: PlumbingStep[] = [];
  // The link of vcnet's made last before the step, while it is not known to be made.
  let unmadeBefore: string | undefined;
  for (const step of steps) {
    const { change } = step;
    if (change.op === 'create-tap' || change.op === 'create-link') {
      unmadeBefore = createdIndexes.has(change.link.name) ? undefined : change.link.name;
    }
    if (!step.record) continue;
    const record = withCreatedIndex(step.record, createdIndexes);
    if (!chosenIndexes || !ownLinks) {
      records.push(record);
    } else if (record.step !== 'create-link') {
      records.push(
        unmadeBefore !== undefined && !ownLinks.has(record.link) ? { ...record, madeAfter: unmadeBefore } : record,
      );
    } else if (record.index !== undefined) {
      records.push(record);
    } else {
      // Chosen, not yet confirmed by the kernel: the index may be someone else's by the time the
      // record is read (a crash before the create, another tool's link made there since), so detach
      // and gc delete the link there only if it also has the recorded name, kind and vcnet's group.
      const chosen = chosenIndexes.get(record.name);
      records.push(chosen === undefined ? record : { ...record, index: chosen, unconfirmed: true as const });
    }
  }
  return records;
}

function withCreatedIndex(record: PlumbingStep, createdIndexes: ReadonlyMap<string, number>): PlumbingStep {
  if (record.step === 'create-link' && record.index === undefined) {
    const index = createdIndexes.get(record.name);
    return index === undefined ? record : { ...record, index };
  }
  if (record.step === 'add-filter' && record.redirectTo && record.redirectTo.index === undefined) {
    const index = createdIndexes.get(record.redirectTo.link);
    return index === undefined ? record : { ...record, redirectTo: { ...record.redirectTo, index } };
  }
  return record;
}
