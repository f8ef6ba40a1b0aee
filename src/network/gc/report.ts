/**
 * What `vcnet gc` (collectGarbage) reports: what it removed, kept, left alone or could not read, and
 * what the kernel refused. Every part of gc (orphan links, state leftovers, unfinished attaches)
 * writes into one GarbageReport; these are its types and the ways a removal becomes an entry.
 */
import { errnoOf } from '../../errors.js';
import type { RequestOutcome } from '../../netlink/protocol.js';
import { removalFoundGone } from '../plan/undo.js';
import type { ClaimsOnlyDirectory, SkippedRecord } from '../state/owners.js';

/**
 * One thing `collectGarbage` removed (or would remove, in a dry run): an orphan link, filter or qdisc, or a
 * record whose namespace is gone.
 */
export interface GarbageItem {
  kind: 'link' | 'filter' | 'qdisc' | 'state';
  /** '' for a record directory without a record: it names no namespace. */
  namespacePath: string;
  /** The link's name, or the record's id (CNI: container/interface). */
  name: string;
  /** The record's file (kind state), or the directory removed when it held no record. */
  file?: string;
  /** Why it is garbage. */
  detail?: string;
  /** An unfinished attach's endpoint (kind state): the pod interface it was attaching. */
  interface?: string;
  /** True when that attach stopped before it made anything for the interface (only its record goes). */
  nothingMade?: true;
}

/** A vcnet link no record claims that a process holds open (a VM's tap): gc keeps it. */
export interface InUseLink {
  namespacePath: string;
  name: string;
  /** "in use by a process (fd open), kept", and how that is known. */
  detail: string;
}

/** What gc found in vcnet's way but leaves, as not vcnet's to remove. */
export interface LeftAloneItem {
  kind: 'link' | 'filter' | 'qdisc';
  namespacePath: string;
  /** The link's name (a filter's: the link it is on). */
  name: string;
  /** Why gc leaves it, and what to do about it. */
  detail: string;
}

/**
 * What `collectGarbage` did: what it removed, kept, left alone, skipped, withheld and could not examine, and
 * the state directories it read. `vcnet gc --json` prints it.
 */
export interface GarbageReport {
  dryRun: boolean;
  removed: GarbageItem[];
  /** vcnet links that live records own, or that a process holds open (inUse). */
  kept: number;
  /** Links no record claims that gc keeps because a process holds them open (a running VM's tap). */
  inUse: InUseLink[];
  /**
   * Records gc could not read (named, never acted on), and records it kept because it could not tell
   * whether their namespace still exists (`namespaceUnseen`).
   */
  skipped: SkippedRecord[];
  /**
   * Links in vcnet's group of a kind vcnet never makes (a veth, a bridge), and filters redirecting to
   * an orphan that a live record claims, and qdiscs the removed redirects leave that vcnet never adds
   * (a clsact; an htb root qdisc not of a rate limit's shape), and htbs of a rate limit's shape that
   * no record claims on a link no redirect of vcnet's is on or leads to (Kata's shape too, so nothing
   * proves them vcnet's): not vcnet's to remove, left with the reason.
   */
  leftAlone: LeftAloneItem[];
  /** The state directories read. */
  stateDirectories: string[];
  /**
   * State directories of another user's that gc, run as root, read for claims only (named with
   * --state-dir or by the registry): the links, filters and htbs their records name are kept, and
   * nothing in them is acted on (no record dropped, no unfinished attach finished, no file removed).
   * `owner`: the directory's owner's uid.
   */
  claimsOnly: ClaimsOnlyDirectory[];
  /**
   * Removals the kernel refused (the namespace changed while gc ran: run gc again; or not permitted:
   * `errno` EPERM/EACCES, run it with CAP_NET_ADMIN). What failed is not in `removed`.
   */
  failures: GarbageFailure[];
  /**
   * vcnet's links in namespaces no record read names, left alone: their records may be in a state
   * directory this gc does not know; and `filters`, when there are any: vcnet's redirects there to
   * an ifindex that no longer exists (they drop the link's ingress). Naming the namespace
   * (`namespaces`, --netns) removes them.
   */
  unclaimed: Array<{ namespacePath: string; links: string[]; filters?: string[] }>;
  /**
   * vcnet's links gc did not look at, per namespace, because a record it could not read (in `skipped`)
   * may be theirs: a record or directory of records unreadable (EIO...) withholds every namespace, one
   * that names its namespace but is damaged withholds that one. Counted in `kept` too. With
   * `beingChanged` (and the `reason`): another command (an attach, detach, vcnet-cni ADD or DEL) held
   * the namespace's lock, so gc left all of it, vcnet's links as its first look listed them, for its next run.
   */
  withheld: Array<{ namespacePath: string; links: string[]; beingChanged?: true; reason?: string }>;
  /**
   * vcnet's links gc left, per namespace, because the record claiming them is being changed by
   * another process right now (it holds the namespace's or the sandbox's lock: an attach, detach,
   * add-iface or vcnet-cni ADD/DEL); the record is in `skipped` with `beingChanged`. Not live: gc
   * finishes them when run again once that process is done. Counted in `kept` too.
   */
  beingChanged: Array<{ namespacePath: string; links: string[] }>;
  /**
   * Named namespace paths (`namespaces`, --netns) where no namespace is and that no record read
   * names: nothing to collect there (a pod already gone, its records already dropped). Also a named
   * path that records name where a file, no namespace, is now (a mount point left after its
   * namespace was unmounted): its records are taken as those of a namespace that is not there.
   */
  absent: Array<{ namespacePath: string; detail: string }>;
  /**
   * Entries of a state directory that hold no records and are no directory (a symbolic link that
   * leads to none, a FIFO, a regular file, a socket): passed over, as they name no sandbox, and
   * listed so a stray file is seen. Nothing else changes for them (gc still collects).
   */
  ignored: Array<{ path: string; reason: string }>;
  /**
   * Records kept because their namespace, its path gone, is kept alive only by a socket made in it,
   * or a tap of it, that a process outside it holds (`heldAt`, /proc/PID/fd/N): what attach made
   * lives on there, so the record that undoes it stays. detach (or DEL) undoes it through that fd;
   * once the process closes it, the namespace goes and gc drops the record.
   */
  heldOutside: Array<{ file: string; namespacePath: string; heldAt: string; pid: number; through: 'socket' | 'tap' }>;
}

/** A namespace `collectGarbage` could not examine or clean, with why and the kernel's errno. */
export interface GarbageFailure {
  namespacePath: string;
  reason: string;
  /** The errno the kernel answered (EPERM, EBUSY...), when one did. */
  errno?: string;
}

/** A report with nothing in it yet: what collectGarbage starts from (and tests build theirs from). */
export function emptyGarbageReport({
  dryRun,
  stateDirectories,
}: {
  dryRun: boolean;
  stateDirectories: string[];
}): GarbageReport {
  return {
    dryRun,
    removed: [],
    kept: 0,
    inUse: [],
    skipped: [],
    leftAlone: [],
    stateDirectories,
    claimsOnly: [],
    failures: [],
    unclaimed: [],
    withheld: [],
    beingChanged: [],
    absent: [],
    ignored: [],
    heldOutside: [],
  };
}

/** Who holds a lock gc found taken, for its reasons: 0 is a holder /proc/locks did not name. */
export function describeLockHolder(pid: number): string {
  return pid > 0 ? `process ${pid}` : 'another process (which one cannot be known)';
}

/** What a thrown error says as a failure: its message, and its errno when it has one. */
export function failureOf(error: unknown): { reason: string; errno?: string } {
  const errno = errnoOf(error);
  return { reason: (error as Error)?.message ?? String(error), ...(errno === undefined ? {} : { errno }) };
}

/**
 * The answers to a batch of removals, into the report: `planned` holds one item per request of the
 * batch, in order, and `outcomes` the batch's answers (ChangeBatch.send: one per request, in the same
 * order). An item is reported removed only when its request was answered ok; one the kernel refused
 * goes to `failures`, with the kernel's error, unless the refusal says the object is gone already
 * (ENODEV, ENOENT; for a qdisc or filter also EINVAL, detach's rule: removalFoundGone): something
 * else removed it meanwhile (a detach, a pod namespace going, a hand), which is what gc wanted, so
 * it is neither removed by this gc nor failed. An item with no answer at all (`outcomes` shorter than
 * `planned`: never, while each item is planned with its request) is not known removed: a failure too.
 */
export function reportOutcomes(
  planned: readonly GarbageItem[],
  outcomes: readonly RequestOutcome[],
  namespacePath: string,
  report: GarbageReport,
): void {
  planned.forEach((item, position) => {
    const outcome = outcomes[position];
    if (outcome?.ok) report.removed.push(item);
    else if (outcome && item.kind !== 'state' && removalFoundGone(item.kind, outcome.error.errno ?? '')) return;
    else if (outcome)
      report.failures.push({ namespacePath, reason: outcome.error.message, errno: outcome.error.errno });
    else
      report.failures.push({
        namespacePath,
        reason: `${item.kind} ${item.name}: no answer to its removal request, so it is not known removed (run gc again)`,
      });
  });
}
