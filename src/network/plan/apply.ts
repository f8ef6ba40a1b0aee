/**
 * The one executor of plans. It journals every step before the kernel is asked to make it (the
 * plan's intent, in one record write before the first change: see ApplyContext.journal), sends the
 * steps in as few netlink batches as names allow (a batch ends only where a later step needs the index
 * of a link the batch creates, and at the tap ioctl), and on failure undoes the completed steps in
 * reverse. When that undo is refused too, the journal keeps exactly what is left and the error says
 * what (VCNET_ROLLBACK_INCOMPLETE); `vcnet detach` or `vcnet gc` finish the job from that record.
 *
 * Detach runs through here as well (undoPlan): "already gone" is every way the kernel says so for
 * the object kind, so undo converges however often it is repeated.
 */
import { randomInt } from 'node:crypto';
import { channels, publish } from '../../diagnostics.js';
import { errnoOf, RollbackIncompleteError, SystemCallError } from '../../errors.js';
import { nativeDevices } from '../../native/devices.js';
import type { Link, LinkSpec } from '../../netlink/codec/link.js';
import { NeighbourFlag } from '../../netlink/codec/neighbour.js';
import type { RouteSpec } from '../../netlink/codec/route.js';
import { MATCH_ALL_U32_KEYS } from '../../netlink/codec/tc/filter/u32.js';
import type { NetlinkError } from '../../netlink/errors.js';
import type { ChangeBatch, NetlinkHandle } from '../../netlink/handle.js';
import { testSeam } from '../../test-seams.js';
import { othersInQdiscs } from '../foreign-filters.js';
import { addIngressQdiscRetrying } from '../ingress-qdisc.js';
import { createMacvtapAtUniqueIndex, randomMacvtapIndex } from '../model/macvtap-index.js';
import { tapOwnershipFields } from '../tap-owner.js';
import { podBatchesInPlace, podLinkView } from './batch-evidence.js';
import { commandOf } from './commands.js';
import { LinkNameTakenError } from './plan-attach.js';
import {
  createdLinkNames,
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
import type { Change, LinkRef, Plan, PlanStep, PlumbingStep, RouteRecord } from './types.js';

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

export interface ApplyContext {
  handle: NetlinkHandle;
  namespacePath: string;
  /** Keep the tap's queue fds open and return them (a hypervisor started by this process). */
  keepFds: boolean;
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
}

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
  const chosenIndexes = new Map<string, number>();
  for (const { change } of plan.steps) {
    if ((change.op !== 'create-tap' && change.op !== 'create-link') || chosenIndexes.has(change.link.name)) continue;
    chosenIndexes.set(
      change.link.name,
      change.op === 'create-link' && change.kind === 'macvtap' ? randomMacvtapIndex() : randomLinkIndex(),
    );
  }
  const records = recordsOf(plan.steps, new Map(), chosenIndexes);
  const made = createdLinkNames(records);
  const journaledAhead = records.every(
    (record) => record.step === 'create-link' || made.has(record.link) || record.madeAfter !== undefined,
  );
  return { plan, chosenIndexes, records, journaledAhead };
}

function sameIndexes(a: ReadonlyMap<string, number>, b: ReadonlyMap<string, number>): boolean {
  if (a.size !== b.size) return false;
  for (const [name, index] of a) if (b.get(name) !== index) return false;
  return true;
}

export interface AppliedPlan {
  /** The undo records of what was made, in order. */
  records: PlumbingStep[];
  /** Indexes of the links the plan created, by name. */
  createdIndexes: Map<string, number>;
  tapFds: number[];
}

export interface UndoReport {
  undone: number;
  alreadyGone: number;
  /** Records of what detach left because someone else uses it too (an ingress qdisc holding another tool's filter). */
  kept: number;
  failures: NetlinkError[];
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

function isIngressQdisc(change: Change): change is Extract<Change, { op: 'add-qdisc' }> {
  return change.op === 'add-qdisc' && change.kind === 'ingress';
}

/**
 * The records of the steps, with the indexes of the links the plan made as far as they exist: a
 * create-link record and a filter redirecting to a made link then name it by identity, not by a name
 * anyone in the namespace can take over or change. With `chosenIndexes` (a record journaled before
 * all of it is made), a link not made yet is at its chosen index, `unconfirmed`, and each step on a
 * link vcnet did not make (a pod link) after it names it `madeAfter`: a detach that finds that link
 * absent knows the attach stopped before the step (plan-detach.ts), and leaves what is there now.
 */
function recordsOf(
  steps: readonly PlanStep[],
  createdIndexes: ReadonlyMap<string, number>,
  chosenIndexes?: ReadonlyMap<string, number>,
): PlumbingStep[] {
  const ownLinks = new Set(
    steps.flatMap(({ change }) =>
      change.op === 'create-tap' || change.op === 'create-link' ? [change.link.name] : [],
    ),
  );
  // The link of vcnet's made last before the step, while it is not known to be made.
  let unmadeBefore: string | undefined;
  return steps.flatMap((step) => {
    const { change } = step;
    if (change.op === 'create-tap' || change.op === 'create-link') {
      unmadeBefore = createdIndexes.has(change.link.name) ? undefined : change.link.name;
    }
    if (!step.record) return [];
    const record = withCreatedIndex(step.record, createdIndexes);
    if (!chosenIndexes) return [record];
    if (record.step !== 'create-link') {
      return [
        unmadeBefore !== undefined && !ownLinks.has(record.link) ? { ...record, madeAfter: unmadeBefore } : record,
      ];
    }
    if (record.index !== undefined) return [record];
    // Chosen, not yet confirmed by the kernel: the index may be someone else's by the time the record
    // is read (a crash before the create, another tool's link made there since), so detach and gc
    // delete the link there only if it also has the recorded name, kind and vcnet's group.
    const chosen = chosenIndexes.get(record.name);
    return [chosen === undefined ? record : { ...record, index: chosen, unconfirmed: true as const }];
  });
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

/** One event per step on vcnet:plan:step, built only when someone listens. */
function publishStep(handle: NetlinkHandle, change: Change, phase: 'apply' | 'undo', error?: unknown): void {
  publish(channels.planStep, () => ({
    namespacePath: handle.namespacePath,
    step: commandOf(change),
    phase,
    ...(error !== undefined ? { error } : {}),
  }));
}

/**
 * Where vcnet makes its taps and ifbs: far above the indexes the kernel hands out by itself (it
 * counts up from 1 in each namespace), and apart from the macvtaps' 8192-73727 (macvtap-index.ts).
 */
export const LINK_INDEX_BASE = 1 << 20;
export const LINK_INDEX_RANGE = 1 << 20;
/** How many indexes a tap is tried at before the attach gives up (each taken one is someone's link). */
const TAP_INDEX_ATTEMPTS = 16;

export function randomLinkIndex(random: (max: number) => number = randomInt): number {
  const forced = linkIndexSeam.hook()?.();
  return forced ?? LINK_INDEX_BASE + random(LINK_INDEX_RANGE);
}

/**
 * Test seam (never set in production), kept on globalThis as the apply hook is: returns the index the
 * next tap or ifb is tried at (undefined: a random one), so a test can make it one that is taken.
 */
const linkIndexSeam = testSeam<() => number | undefined>('linkIndex');

export function setLinkIndexTestHook(hook: (() => number | undefined) | undefined): void {
  linkIndexSeam.set(hook);
}

/** Applies a plan; on failure undoes what it made and throws (RollbackIncompleteError when undo fails too). */
export async function applyPlan(plan: Plan, context: ApplyContext): Promise<AppliedPlan> {
  const { handle } = context;
  const createdIndexes = new Map<string, number>();
  const intent = context.intent?.plan === plan ? context.intent : intentOf(plan);
  // The index each link vcnet makes is made at, chosen before it exists: every record journaled of it
  // names it by that identity, never by a name someone else may hold by the time detach or gc reads
  // the record (a record whose next write failed, say). A link not made is in no record of `completed`.
  const chosenIndexes = new Map<string, number>(intent.chosenIndexes);
  const recorded = (steps: readonly PlanStep[]): PlumbingStep[] => recordsOf(steps, createdIndexes, chosenIndexes);
  // The indexes of the intent on record (undefined: none written yet). The intent names every step,
  // so it is written once, before the first change, and again only when a link is to be made at an
  // index other than the recorded one (or a link of the recorded name is made in its place).
  let onRecord: ReadonlyMap<string, number> | undefined =
    intent === context.intent && intent.journaledAhead ? intent.chosenIndexes : undefined;
  const journal = (): void => {
    if (onRecord && sameIndexes(onRecord, chosenIndexes)) return;
    context.journal?.(recorded(plan.steps));
    onRecord = new Map(chosenIndexes);
  };
  // How many indexes each ifb was tried at: a taken one (EEXIST for a free name) is someone's link.
  const ifbAttempts = new Map<string, number>();
  const completed: PlanStep[] = [];
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
          if (!answer.ok) return;
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
    return rollBackAttach(handle, recorded(completed), error as Error, context.journal, createdIndexes);
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

/**
 * Whether a refusal is an ifb's create refused with EEXIST for an index someone else's link holds
 * (its name is free): the name of the ifb to make again at another index. Throws when the ifb has
 * been tried at TAP_INDEX_ATTEMPTS indexes, each taken.
 */
async function ifbIndexTaken(
  handle: NetlinkHandle,
  change: Change,
  error: Error,
  attempts: Map<string, number>,
): Promise<string | undefined> {
  if (change.op !== 'create-link' || change.kind !== 'ifb' || errnoOf(error) !== 'EEXIST') return undefined;
  if (await handle.findLink({ name: change.link.name })) return undefined;
  const tried = (attempts.get(change.link.name) ?? 0) + 1;
  attempts.set(change.link.name, tried);
  if (tried < TAP_INDEX_ATTEMPTS) return change.link.name;
  throw new SystemCallError(
    `add ifb link ${change.link.name} (${TAP_INDEX_ATTEMPTS} indexes from ${LINK_INDEX_BASE} tried, each taken)`,
    Object.assign(new Error(error.message), { code: 'EEXIST' }) as NodeJS.ErrnoException,
    TAKEN_INDEXES_HINT,
  );
}

const TAKEN_INDEXES_HINT =
  "every index tried was another link's: many links at vcnet's indexes in this namespace? Run the command again (other indexes are tried), or remove the links vcnet did not make";

/**
 * Makes the tap at an index chosen (and journaled, by `beforeCreate`) before it exists. EBUSY is
 * the kernel saying the name or the index is taken: a taken name fails the attach, a taken index is
 * someone's link, and another index is tried.
 */
async function createTapAtChosenIndex(
  context: ApplyContext,
  change: Extract<Change, { op: 'create-tap' }>,
  first: number | undefined,
  beforeCreate: (index: number) => void,
): Promise<{ index: number; fds: number[] }> {
  let lastError: unknown;
  for (let attempt = 0; attempt < TAP_INDEX_ATTEMPTS; attempt++) {
    const index = attempt === 0 && first !== undefined ? first : randomLinkIndex();
    beforeCreate(index);
    try {
      return createTap(context, change, index);
    } catch (error) {
      if (!(error instanceof LinkNameTakenError)) throw error;
      const holder = await context.handle.findLink({ name: change.link.name });
      if (holder) throw new LinkNameTakenError(change.link.name, holder, error.cause);
      lastError = error;
    }
  }
  throw new SystemCallError(
    `create tap ${change.link.name} (${TAP_INDEX_ATTEMPTS} indexes from ${LINK_INDEX_BASE} tried, each taken)`,
    ((lastError as Error).cause ?? lastError) as NodeJS.ErrnoException,
    TAKEN_INDEXES_HINT,
  );
}

function createTap(context: ApplyContext, change: Extract<Change, { op: 'create-tap' }>, index?: number) {
  const { handle } = context;
  const ownership = tapOwnershipFields({
    ...(change.owner !== undefined ? { tapOwner: change.owner } : {}),
    ...(change.group !== undefined ? { tapGroup: change.group } : {}),
  });
  try {
    // The handle's own namespace, and its socket for the tap's index: no path lookup, no socket of its own.
    const namespaceFd = context.namespacePath ? handle.namespaceFd() : undefined;
    return nativeDevices.createTun(context.namespacePath, change.link.name, {
      ...(namespaceFd !== undefined ? { namespaceFd } : {}),
      indexSocket: handle.socket.fd,
      tap: true,
      vnetHdr: true,
      multiQueue: change.multiQueue,
      queues: change.queues,
      // Never a tap without owner and group: any uid in the namespace could then open it (tap-owner.ts).
      ...(ownership.tapOwner !== undefined ? { owner: ownership.tapOwner } : {}),
      ...(ownership.tapGroup !== undefined ? { group: ownership.tapGroup } : {}),
      // Persist so the tap outlives this process (the CLI exits before the VM starts).
      persist: true,
      keepFds: context.keepFds,
      ...(index !== undefined ? { ifindex: index } : {}),
    });
  } catch (error) {
    // The first queue is opened with IFF_TUN_EXCL: EBUSY is the kernel saying the name is taken.
    if (errnoOf(error) === 'EBUSY') {
      throw new LinkNameTakenError(change.link.name, undefined, error);
    }
    throw new SystemCallError(`create tap ${change.link.name}`, error as NodeJS.ErrnoException);
  }
}

export function closeFds(fds: number[]): void {
  for (const fd of fds) {
    try {
      nativeDevices.closeFd(fd);
    } catch {
      // already closed
    }
  }
}

/** The link a create-link change makes, with its parent's index resolved (and its own, when chosen). */
function linkSpecOf(
  change: Extract<Change, { op: 'create-link' }>,
  indexOf: (ref: LinkRef) => number,
  chosenIndex?: number,
): LinkSpec {
  return {
    name: change.link.name,
    ...(chosenIndex !== undefined ? { index: chosenIndex } : {}),
    ...(change.parent ? { parentIndex: indexOf(change.parent) } : {}),
    ...(change.mtu !== undefined ? { mtu: change.mtu } : {}),
    ...(change.address ? { address: change.address } : {}),
    ...(change.group !== undefined ? { group: change.group } : {}),
    ...(change.txQueueLength !== undefined ? { txQueueLength: change.txQueueLength } : {}),
    ...(change.allMulticast ? { allMulticast: true } : {}),
    data: change.kind === 'macvtap' ? { kind: 'macvtap', mode: 'bridge' } : { kind: 'ifb' },
  };
}

/** Puts one change in a batch, with link indexes resolved. */
export function queueChange(
  batch: ChangeBatch,
  change: Change,
  indexOf: (ref: LinkRef) => number,
  chosenIndexes?: ReadonlyMap<string, number>,
): void {
  switch (change.op) {
    case 'create-tap':
      throw new Error('a tap is made by ioctl, not netlink');
    case 'create-link':
      batch.addLink(linkSpecOf(change, indexOf, chosenIndexes?.get(change.link.name)));
      return;
    case 'delete-link':
      batch.deleteLink(indexOf(change.link), `delete ${change.kind} ${change.link.name}`);
      return;
    case 'delete-link-group':
      batch.deleteLinkGroup(change.group);
      return;
    case 'set-link':
      batch.setLink(
        indexOf(change.link),
        change.set,
        `set ${Object.keys(change.set).join(', ')} of ${change.link.name}`,
      );
      return;
    case 'add-qdisc':
      batch.addQdisc({
        index: indexOf(change.link),
        handle: change.handle,
        parent: change.parent,
        options: change.kind === 'htb' ? { kind: 'htb', defaultClass: change.defaultClass ?? 0 } : { kind: 'ingress' },
      });
      return;
    case 'delete-qdisc':
      batch.deleteQdisc(indexOf(change.link), change.handle, change.parent);
      return;
    case 'add-class':
      batch.addHtbClass({
        index: indexOf(change.link),
        handle: change.handle,
        parent: change.parent,
        rateBitsPerSecond: change.rateBitsPerSecond,
      });
      return;
    case 'add-filter':
      batch.addFilter({
        index: indexOf(change.link),
        parent: change.parent,
        priority: change.priority,
        protocol: change.protocol,
        options: {
          kind: 'u32',
          keys: MATCH_ALL_U32_KEYS,
          actions: [{ kind: 'mirred', direction: 'egress', mode: 'redirect', targetIndex: indexOf(change.redirectTo) }],
        },
      });
      return;
    case 'delete-filter':
      batch.deleteFilter({
        index: indexOf(change.link),
        parent: change.parent,
        priority: change.priority,
        protocol: change.protocol,
        kind: change.kind,
      });
      return;
    case 'add-address':
      batch.addAddress({ index: indexOf(change.link), ...change.address });
      return;
    case 'change-address':
      batch.changeAddress({ index: indexOf(change.link), ...change.address });
      return;
    case 'delete-address':
      // A point-to-point address is known by its local address and its peer (IFA_ADDRESS): without
      // the peer the kernel finds no such address (EADDRNOTAVAIL).
      batch.deleteAddress(
        {
          index: indexOf(change.link),
          address: change.address.address,
          prefixLength: change.address.prefixLength,
          ...(change.address.peer ? { peer: change.address.peer } : {}),
        },
        `delete address ${change.address.address}/${change.address.prefixLength}${change.address.peer ? ` peer ${change.address.peer}` : ''} on ${change.link.name}`,
      );
      return;
    case 'add-route':
      // Added, not replaced, so a route set in its place since attach stays; replaced only where an
      // address put back just before made the kernel's own prefix route there (CNI ptp's
      // `10.x.0.0/24 via <gw>`, which ptp itself sets by RouteReplace over it).
      batch.addRoute(
        routeSpecOf(change.route, indexOf(change.link)),
        change.replace === true,
        `${change.replace ? 'replace' : 'add'} route ${routeArguments(change.route, change.link)}`,
      );
      return;
    case 'delete-route':
      batch.deleteRoute(
        routeSpecOf(change.route, indexOf(change.link)),
        `delete route ${routeArguments(change.route, change.link)}`,
      );
      return;
    case 'add-neighbour':
      batch.addNeighbour({ index: indexOf(change.link), ...change.neighbour }, true);
      return;
    case 'delete-neighbour':
      batch.deleteNeighbour({
        index: indexOf(change.link),
        destination: change.neighbour.destination,
        // NTF_PROXY makes it the proxy entry that goes, not an ordinary neighbour of that address.
        flags: (change.neighbour.flags ?? 0) & NeighbourFlag.PROXY,
      });
      return;
  }
}

/** The kernel's answer to one change sent. */
export type ChangeAnswer = { ok: true } | { ok: false; error: Error };

/** How sendBatch uses its caller's state, and what it does with a refusal. */
export interface BatchSending {
  /** The index of a link a change names: there already, or made by a change sent before it. */
  indexOf: (ref: LinkRef) => number;
  /** The index each link the changes make is made at (queueChange). */
  chosenIndexes?: ReadonlyMap<string, number>;
  /** Called before each send, a batch or an ingress qdisc on its own (attach journals). */
  beforeSend?: () => void;
  /** Told each answer a batch gives, in order, and an ingress qdisc's once it is there. */
  answered?: (position: number, answer: ChangeAnswer) => void;
  /**
   * Whether a refusal (other than an ingress qdisc's EBUSY, which is retried) throws, ending the
   * send (attach, which then undoes what it made); otherwise it is that change's answer and the
   * other changes go on (the watch's repair).
   */
  failOnRefusal?: boolean;
  /**
   * Asked before a refusal is thrown: true when the caller has taken away its cause (an ifb to be
   * made at another index), and the change and all the batch refused after it go again.
   */
  retryRefused?: (position: number, error: Error) => Promise<boolean>;
}

/**
 * The executor's one way of sending changes: all in one netlink batch, then each refusal in order.
 * An ingress qdisc refused with EBUSY (another tc user changing that link's qdiscs for a moment) is
 * added again on its own as Kata does (addIngressQdiscRetrying), and the changes on its link the
 * batch refused after it (its filters fail while it is missing) go again once it is there. Any other
 * refusal is thrown or answered, as `sending` says. Returns the answer to each change, in order.
 */
export async function sendBatch(
  transport: Pick<NetlinkHandle, 'changes' | 'addQdisc' | 'qdiscs'>,
  changes: readonly Change[],
  sending: BatchSending,
): Promise<ChangeAnswer[]> {
  const answers: ChangeAnswer[] = [];
  const answer = (position: number, given: ChangeAnswer): void => {
    answers[position] = given;
    sending.answered?.(position, given);
  };
  const send = async (positions: readonly number[]): Promise<void> => {
    sending.beforeSend?.();
    const batch = transport.changes();
    for (const position of positions) queueChange(batch, changes[position]!, sending.indexOf, sending.chosenIndexes);
    const outcomes = await batch.send();
    positions.forEach((position, sent) => {
      const outcome = outcomes[sent];
      answer(
        position,
        outcome?.ok ? { ok: true } : { ok: false, error: outcome?.error ?? new Error('the kernel did not answer') },
      );
    });
    await settleRefusals(positions);
  };
  // The refusals of one send, in order. What goes again is settled by that send, not here.
  const settleRefusals = async (positions: readonly number[]): Promise<void> => {
    const sentAgain = new Set<number>();
    const refusedAfter = (at: number, which: (change: Change) => boolean): number[] =>
      positions.slice(at).filter((position) => !answers[position]!.ok && which(changes[position]!));
    for (const [at, position] of positions.entries()) {
      const current = answers[position]!;
      if (current.ok || sentAgain.has(position)) continue;
      const change = changes[position]!;
      let error = current.error;
      if (isIngressQdisc(change) && errnoOf(error) === 'EBUSY') {
        sending.beforeSend?.();
        const link = { index: sending.indexOf(change.link), name: change.link.name };
        const refusedAlone = await addIngressQdiscRetrying(transport, link).then(
          () => undefined,
          (failure: unknown) => failure as Error,
        );
        if (refusedAlone === undefined) {
          answer(position, { ok: true });
          const again = refusedAfter(at + 1, (later) => onLink(later, change.link));
          for (const later of again) sentAgain.add(later);
          if (again.length > 0) await send(again);
          continue;
        }
        error = refusedAlone;
        answers[position] = { ok: false, error };
      }
      if (!sending.failOnRefusal) continue;
      if (!(await sending.retryRefused?.(position, error))) throw error;
      const again = refusedAfter(at, () => true);
      for (const later of again) sentAgain.add(later);
      await send(again);
    }
  };
  if (changes.length > 0) await send(changes.map((_, position) => position));
  return answers;
}

/** Whether a change is on `link` (by index where both say it, else by name: a link made in this plan has no index in it). */
function onLink(change: Change, link: LinkRef): boolean {
  if (!('link' in change)) return false;
  const { index, name } = change.link;
  return index !== undefined && link.index !== undefined ? index === link.index : name === link.name;
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

/**
 * A route with its link resolved. A multipath route names its links in its hops alone: with RTA_OIF
 * as well, the kernel would match a delete against the first hop only.
 */
function routeSpecOf(route: RouteRecord, linkIndex: number): RouteSpec {
  const { nextHops, ...rest } = route;
  if (!nextHops || nextHops.length === 0) return { ...rest, outputIndex: linkIndex };
  return {
    ...rest,
    nextHops: nextHops.map(({ link, ...hop }) => ({ ...hop, outputIndex: link ? link.index : linkIndex })),
  };
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

/** Sends a detach plan in one batch; what the kernel refuses stays in `left`. */
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
  const batch = handle.changes();
  for (const step of plan.steps) {
    queueChange(batch, step.change, (ref) => {
      if (ref.index === undefined) throw new Error(`link ${ref.name} is not in the namespace`); // planDetach skips those
      return ref.index;
    });
  }
  const outcomes = await batch.send();
  const left = new Set<PlumbingStep>();
  const placesTaken: DetachStep[] = [];
  outcomes.forEach((outcome, position) => {
    const step = plan.steps[position]!;
    publishStep(handle, step.change, 'undo', outcome.ok ? undefined : outcome.error);
    if (outcome.ok) {
      report.undone += changeCount(step.change);
      report.undid!.push(...recordsShownBy(step));
    } else if (alreadyDone(step.change, outcome.error.errno)) {
      report.alreadyGone++;
      if (step.change.op === 'add-route' && outcome.error.errno === 'EEXIST') placesTaken.push(step);
    } else {
      report.failures.push(outcome.error);
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
