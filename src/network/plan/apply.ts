/**
 * The one executor of plans, its entry. applyPlan journals every step before the kernel is asked to
 * make it (the plan's intent, in one record write before the first change: see ApplyContext.journal;
 * plan-intent.ts), sends the steps in as few netlink batches as names allow (a batch ends only where
 * a later step needs the index of a link the batch creates, and at the tap ioctl; batch-send.ts), and
 * on failure undoes the completed steps in reverse (undo.ts). sendChanges sends the watch's repairs.
 *
 * The executor's parts: batch-send.ts (batches, the EBUSY retry), link-creation.ts (taps, ifbs and
 * their indexes), plan-intent.ts (what is journaled), undo.ts (rollback and detach).
 */
import { answerLost } from '../../netlink/errors.js';
import type { NetlinkHandle } from '../../netlink/handle.js';
import { testSeam } from '../../test-seams.js';
import { type ChangeAnswer, linkSpecOf, publishStep, sendBatch } from './batch-send.js';
import { closeFds, createTapAtChosenIndex, ifbIndexTaken, randomLinkIndex, type TapContext } from './link-creation.js';
import { createMacvtapAtUniqueIndex } from './macvtap-index.js';
import type { KeptRecord } from './plan-detach.js';
import { chosenIndexesOf, type PlanIntent, recordsOf, sameIndexes } from './plan-intent.js';
import type { Change, LinkRef, Plan, PlanStep, PlumbingStep } from './types.js';
import { type AttachOperation, rollBackAttach } from './undo.js';

/**
 * Test seam (never set in production): called before each step is sent, with its position. A hook
 * that throws makes that step fail (the steps before it are sent first); one that waits holds the
 * attach there (crash tests kill the process then). Set it with setApplyTestHook.
 *
 * It is kept on globalThis (src/test-seams.ts), not in this module: the `vcnet` and `vcnet-cni`
 * programs are bundles with their own copy of this module, and a test preloads dist/ to set the hook.
 */
export type ApplyTestHook = (step: PlanStep, position: number) => void | Promise<void>;
const applySeam = testSeam<ApplyTestHook>('applyStep');

export function setApplyTestHook(hook: ApplyTestHook | undefined): void {
  applySeam.set(hook);
}

export interface ApplyContext extends TapContext {
  /**
   * Told the records of everything that may exist, before the first send: the intent of the whole
   * plan (every step's record, each link it makes at the index chosen for it, `unconfirmed`), so a
   * crash at any point leaves a record that detach and gc can undo (undo tolerates objects that were
   * never made, and deletes at an unconfirmed index only the link with the recorded name, kind and
   * group). Told again only when that record no longer says what may exist: a link made at another
   * index than the one on record (a taken index tried again), or after a failure, what is left.
   */
  journal?: (records: PlumbingStep[]) => void;
  /**
   * The plan's intent (intentOf), already journaled by the caller with others (Network.addEndpoints
   * writes the intents of all its endpoints in one record): the executor makes the links at its
   * indexes and writes no record until one of them changes. A record write per endpoint made an
   * attach quadratic in the endpoints (each write is the whole record).
   */
  intent?: PlanIntent;
  /** Told what the rollback of a failed apply left in place for another tool (rollBackAttach). */
  handedOver?: (kept: readonly KeptRecord[]) => void;
  /** The command the apply is part of, which a rollback's notices name (default attach). */
  operation?: AttachOperation;
}

export interface AppliedPlan {
  /** The undo records of what was made, in order. */
  records: PlumbingStep[];
  /** Indexes of the links the plan created, by name. */
  createdIndexes: Map<string, number>;
  tapFds: number[];
}

function linksOf(change: Change): LinkRef[] {
  switch (change.op) {
    case 'create-tap':
    case 'create-link':
      return change.op === 'create-link' && change.parent ? [change.parent] : [];
    case 'delete-link-group':
      return [];
    case 'add-filter':
      return [change.link, change.redirectTo];
    default:
      return [change.link];
  }
}

/** Applies a plan; on failure undoes what it made and throws (RollbackIncompleteError when undo fails too). */
export async function applyPlan(plan: Plan, context: ApplyContext): Promise<AppliedPlan> {
  const { handle } = context;
  const createdIndexes = new Map<string, number>();
  // The caller's intent, journaled ahead; without one only its chosen indexes are needed here (its
  // records are what journal() writes before the first send, made then).
  const intent = context.intent?.plan === plan ? context.intent : undefined;
  // The index each link vcnet makes is made at, chosen before it exists: every record journaled of it
  // names it by that identity, never by a name someone else may hold by the time detach or gc reads
  // the record (a record whose next write failed, say). A link not made is in no record of `completed`.
  const chosenIndexes = intent ? new Map<string, number>(intent.chosenIndexes) : chosenIndexesOf(plan);
  const recorded = (steps: readonly PlanStep[]): PlumbingStep[] => recordsOf(steps, createdIndexes, chosenIndexes);
  // The indexes of the intent on record (undefined: none written yet). The intent names every step,
  // so it is written once, before the first change, and again only when a link is to be made at an
  // index other than the recorded one (or a link of the recorded name is made in its place).
  let onRecord: ReadonlyMap<string, number> | undefined = intent?.journaledAhead ? intent.chosenIndexes : undefined;
  const journal = (): void => {
    if (onRecord && sameIndexes(onRecord, chosenIndexes)) return;
    context.journal?.(recorded(plan.steps));
    onRecord = new Map(chosenIndexes);
  };
  // How many indexes each ifb was tried at: a taken one (EEXIST for a free name) is someone's link.
  const ifbAttempts = new Map<string, number>();
  const completed: PlanStep[] = [];
  // Steps sent whose answer was never read (answerLost): the kernel runs a send whole, so each may
  // have been made, and is undone as if it were (the undo takes "already gone" in its stride).
  const maybeMade: PlanStep[] = [];
  const tapFds: number[] = [];
  // The steps for the next batch: sent when a later step needs what they make, and at the end (a
  // plan that is only a tap ioctl sends no batch).
  let queued: PlanStep[] = [];

  const indexOf = (ref: LinkRef): number | undefined => ref.index ?? createdIndexes.get(ref.name);
  const resolved = (ref: LinkRef): number => {
    const index = indexOf(ref);
    if (index === undefined) throw new Error(`link ${ref.name} was not resolved`); // a bug in the loop below
    return index;
  };
  const queue = (step: PlanStep): void => {
    const { change } = step;
    if (change.op === 'create-link' && change.kind === 'ifb' && !chosenIndexes.has(change.link.name)) {
      chosenIndexes.set(change.link.name, randomLinkIndex());
    }
    queued.push(step);
  };
  const flush = async (): Promise<void> => {
    if (queued.length === 0) return;
    const sending = queued;
    queued = [];
    await sendBatch(
      handle,
      sending.map((step) => step.change),
      {
        indexOf: resolved,
        chosenIndexes,
        // Every send is journaled first: the record names all that may exist after it.
        beforeSend: journal,
        answered: (position, answer) => {
          const step = sending[position]!;
          publishStep(handle, step.change, 'apply', answer.ok ? undefined : answer.error);
          if (!answer.ok) {
            if (answerLost(answer.error) && !maybeMade.includes(step)) maybeMade.push(step);
            return;
          }
          completed.push(step);
          const made = step.change.op === 'create-link' ? chosenIndexes.get(step.change.link.name) : undefined;
          if (made !== undefined && step.change.op === 'create-link') createdIndexes.set(step.change.link.name, made);
        },
        // Any other refusal fails the attach (undone below), but for an ifb refused at an index
        // someone else's link holds: another index for it, and it goes again.
        failOnRefusal: true,
        retryRefused: async (position, error) => {
          const taken = await ifbIndexTaken(handle, sending[position]!.change, error, ifbAttempts);
          if (taken !== undefined) chosenIndexes.set(taken, randomLinkIndex());
          return taken !== undefined;
        },
      },
    );
  };

  try {
    for (const [position, step] of plan.steps.entries()) {
      const { change } = step;
      if (change.op === 'create-tap') await flush();
      // A step that names a link this batch creates waits for it: its index is needed.
      for (const ref of linksOf(change)) {
        if (indexOf(ref) !== undefined) continue;
        await flush();
        createdIndexes.set(ref.name, (await handle.linkByName(ref.name)).index);
      }
      const testHook = applySeam.hook();
      if (testHook) {
        // The steps before it are sent first, so a fault (or a kill) lands exactly between steps,
        // whatever batch boundaries the executor would otherwise choose.
        await flush();
        await testHook(step, position);
      }
      if (change.op === 'create-tap') {
        const created = await createTapAtChosenIndex(context, change, chosenIndexes.get(change.link.name), (index) => {
          chosenIndexes.set(change.link.name, index);
          journal();
        });
        publishStep(handle, change, 'apply');
        tapFds.push(...created.fds);
        createdIndexes.set(change.link.name, created.index);
        completed.push(step);
        // A native shim built before it took `ifindex` makes the tap wherever the kernel likes: the
        // record is put right at once (rebuild it: npm run build:native).
        if (created.index !== chosenIndexes.get(change.link.name)) {
          chosenIndexes.set(change.link.name, created.index);
          journal();
        }
        continue;
      }
      if (change.op === 'create-link' && change.kind === 'macvtap') {
        // Made on its own at a random high index, so its host-global /dev/tap<index> is its own (issue 13).
        await flush();
        const first = chosenIndexes.get(change.link.name);
        const created = await createMacvtapAtUniqueIndex(handle, linkSpecOf(change, resolved), {
          ...(first !== undefined ? { first } : {}),
          beforeCreate: (index) => {
            chosenIndexes.set(change.link.name, index);
            journal();
          },
        }).catch((error: unknown) => {
          // Made at the index chosen last, perhaps: undone as if it were, by that identity.
          if (answerLost(error)) maybeMade.push(step);
          throw error;
        });
        publishStep(handle, change, 'apply');
        createdIndexes.set(change.link.name, created.index);
        completed.push(step);
        continue;
      }
      queue(step);
    }
    await flush();
    return { records: recordsOf(completed, createdIndexes), createdIndexes, tapFds };
  } catch (error) {
    closeFds(tapFds);
    // In plan order, so the undo runs in reverse of it; a link maybe made is recorded at its chosen
    // index, `unconfirmed`, and what the plan put on pod links after it says so (recordsOf).
    const made = plan.steps.filter((step) => completed.includes(step) || maybeMade.includes(step));
    return rollBackAttach(
      handle,
      recorded(made),
      error as Error,
      context.journal,
      context.handedOver,
      context.operation,
    );
  }
}

/**
 * Sends changes to links that are all there (each named with its index) in one batch, and says the
 * kernel's answer to each, in order: a refused change neither stops the others nor throws. An
 * ingress qdisc refused with EBUSY is tried again as attach tries it (sendBatch). `vcnet watch`
 * sends the tc objects it puts back through here (tc-repair.ts).
 */
export function sendChanges(
  handle: Pick<NetlinkHandle, 'changes' | 'addQdisc' | 'qdiscs'>,
  changes: readonly Change[],
): Promise<ChangeAnswer[]> {
  return sendBatch(handle, changes, {
    indexOf: (ref) => {
      if (ref.index === undefined) throw new Error(`link ${ref.name} has no index`); // sendChanges is for links that are there
      return ref.index;
    },
  });
}
