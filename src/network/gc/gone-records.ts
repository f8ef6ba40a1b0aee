/**
 * gc's step 3: records whose namespace exists nowhere (no /var/run/netns entry, no process, not at
 * its path; or its inode now another namespace's, by cookie) are dropped, each under its sandbox's
 * lock. One whose namespace vcnet cannot tell is gone (a holder it could not look into) is kept and
 * said in `skipped`. Looked at again here: a namespace may have appeared since gc started.
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { heldDeviceAt } from '../../netns/held-device-fds.js';
import {
  describeUnseen,
  hintForUnseen,
  type NamespaceHolders,
  type NamespaceHoldersUnseen,
} from '../../netns/namespace-holders.js';
import { identityOfKey, type NamespaceKey, pathHolds } from '../../netns/namespace-liveness.js';
import { lookAtFile } from '../../netns/processes.js';
import { testSeam } from '../../test-seams.js';
import { closeRecordQueueFds } from '../endpoint/held-queue-fds.js';
import { earlierBootReason } from '../state/boot-id.js';
import { FileLock, lockHeldBy, tryLockFile } from '../state/lock.js';
import type { EarlierBootRecord, RecordedNamespace, RecordOwner, SalvagedRecord } from '../state/owners.js';
import { decideUnreadable, settleByHand, type UnreadableNamespaceWhereabouts } from '../state/unreadable-records.js';
import { describeLockHolder, type GarbageReport } from './report.js';

/** Test seam (never set in production): told each record gc is about to drop, before it takes its lock. */
const dropSeam = testSeam<(file: string) => void>('gcDrop');

export function setGcDropTestHook(hook: ((file: string) => void) | undefined): void {
  dropSeam.set(hook);
}

export interface GoneRecordsContext {
  /** Records whose inode a later namespace has now (another cookie): their namespace is gone. */
  replaced: ReadonlySet<RecordedNamespace>;
  /** Live namespaces when gc started, and again now. */
  live: ReadonlyMap<NamespaceKey, string>;
  nowLive: ReadonlyMap<NamespaceKey, string>;
  /** Whether a record is of the namespaces gc was given (--netns: by path or by identity); always without. */
  inScope: (record: RecordedNamespace) => boolean;
  /** Where namespaces are held, listed once per gc (the first time it is asked). */
  holders: () => NamespaceHolders;
  /** The cookie of the live namespace with a record's device and inode, if one is known. */
  liveCookie: (record: RecordedNamespace) => string | undefined;
}

export function dropGoneRecords(
  owners: readonly RecordOwner[],
  context: GoneRecordsContext,
  report: GarbageReport,
): void {
  const { replaced, inScope, liveCookie } = context;
  for (const owner of owners) {
    if (!inScope(owner)) continue;
    // A holder of a replaced one's inode holds the new namespace (no two live namespaces share one).
    const gone = replaced.has(owner);
    const found: Whereabouts = gone ? { at: 'nowhere' } : whereaboutsOf(owner, context);
    if (found.at === 'held') {
      const { heldOutside } = found;
      if (heldOutside)
        report.heldOutside.push({ file: owner.file, namespacePath: owner.namespacePath, ...heldOutside });
      continue;
    }
    // Nothing vcnet could see holds it, but it did not see everything: a VMM of another user may
    // hold it (no CAP_SYS_PTRACE, /proc's hidepid=). Kept, with what it claims, and said.
    if (found.at === 'unseen') {
      report.skipped.push({ file: owner.file, namespaceUnseen: true, reason: unseenReason(owner, found.unseen) });
      continue;
    }
    dropUnderLock(
      owner,
      {
        skippedBecause: `its namespace (${owner.namespacePath}) exists nowhere`,
        detail: gone
          ? `its namespace (inode ${identityOfKey(owner.key).ino}, cookie ${owner.cookie}) exists nowhere: the namespace with that inode now is another one (cookie ${liveCookie(owner)})`
          : `its namespace (inode ${identityOfKey(owner.key).ino}) exists nowhere`,
        // Its macvtaps went with the namespace: so do the queue fds this process held for them.
        afterRemove: () => closeRecordQueueFds(resolve(owner.file)),
      },
      report,
    );
  }
}

/**
 * gc's step 3, for records it cannot read that still tell their namespace's device, inode and path
 * (SalvagedRecord): when nothing holds that inode any more, or its salvaged cookie is not that of the
 * namespace with that inode now, their namespace is gone with all they made, so each is dropped under
 * its sandbox's lock as a readable record of a gone namespace is, in place of being named in
 * `skipped`. One whose namespace is alive stays skipped for what it was; one whose namespace may be
 * held where gc could not look stays skipped and says so. With --netns, only those of the namespaces
 * given (`inScope`: by path, or by device and inode when the path they tell is damaged or moved).
 */
export function dropUnreadableOfGone(
  records: readonly SalvagedRecord[],
  context: GoneRecordsContext,
  report: GarbageReport,
): void {
  const { replaced, inScope, liveCookie } = context;
  for (const record of records) {
    if (!inScope(record)) continue;
    const gone = replaced.has(record);
    // The decision `vcnet list` states too, now that where its namespace is has been looked at.
    const decision = decideUnreadable(record.told, {
      whereabouts: (): UnreadableNamespaceWhereabouts => {
        if (gone) return { at: 'nowhere', laterCookie: liveCookie(record) };
        const found = whereaboutsOf(record, context);
        if (found.at !== 'held') return found.at === 'nowhere' ? { at: 'nowhere' } : found;
        return found.path === record.namespacePath ? { at: 'there' } : { at: 'there', heldAt: found.path };
      },
    });
    const unreadable = report.skipped.find((entry) => entry.file === record.file);
    if (decision.action === 'keep' && decision.because === 'namespace-there') {
      if (unreadable)
        unreadable.reason = `${unreadable.reason}; ${keptWhileHeld(record, decision.heldAt ?? record.namespacePath)}`;
      continue;
    }
    if (decision.action === 'keep' && decision.because === 'namespace-unseen') {
      const unseen = unseenReason(record, decision.unseen);
      if (unreadable) Object.assign(unreadable, { namespaceUnseen: true, reason: `${unreadable.reason}; ${unseen}` });
      else report.skipped.push({ file: record.file, namespaceUnseen: true, reason: unseen });
      continue;
    }
    // Never otherwise: what a salvaged record tells (identity and path) is decided by its namespace.
    if (decision.action !== 'drop') continue;
    if (unreadable) report.skipped.splice(report.skipped.indexOf(unreadable), 1);
    const why = unreadable?.reason ?? 'damaged';
    const { ino } = identityOfKey(record.key);
    dropUnderLock(
      record,
      {
        skippedBecause: `it cannot be read (${why}) and its namespace (${record.namespacePath}) exists nowhere`,
        detail: gone
          ? `unreadable (${why}); its namespace (inode ${ino}, cookie ${record.cookie}, as the record still tells) exists nowhere: the namespace with that inode now is another one (cookie ${liveCookie(record)})`
          : `unreadable (${why}); its namespace (inode ${ino}, as the record still tells) exists nowhere`,
        afterRemove: () => closeRecordQueueFds(resolve(record.file)),
      },
      report,
    );
  }
}

/**
 * Why an unreadable record whose namespace's inode is held is kept, and how a person settles it. A
 * record without a cookie cannot be told from a later namespace that got the inode, and nothing else
 * it may still hold tells them apart: the nsfs inode's times are set when its file is first looked
 * at, not when the namespace was made, and a later pod has links of the same names and ifindexes.
 */
function keptWhileHeld(record: SalvagedRecord, namespacePath: string): string {
  const { ino } = identityOfKey(record.key);
  const which =
    record.cookie === undefined
      ? `a namespace has inode ${ino} now, and nothing else the record holds tells whether it is the recorded one or a later one either, so gc keeps the record until nothing holds that inode`
      : `its namespace (inode ${ino}, cookie ${record.cookie}) is still there, so gc keeps the record, drops it once that namespace is gone, and leaves vcnet's links there alone meanwhile`;
  return `${which}; to settle it now: ${settleByHand(record.owner, namespacePath)}`;
}

/**
 * Where the namespace with a record's device and inode is: `held`, with the path gc saw it at (its
 * recorded path while that holds it, else a /var/run/netns entry or a process; else a thread, a
 * mount or an fd, the holder search looked for only here, before a drop), the one answer gc acts on
 * and names in its texts (the recorded path may have moved, or a byte of it be damaged in a record
 * that is not UTF-8); `nowhere`; or what gc could not look into, which may hold it (unseenHolders).
 */
function whereaboutsOf(
  record: RecordedNamespace,
  { live, nowLive, holders }: Pick<GoneRecordsContext, 'live' | 'nowLive' | 'holders'>,
): Whereabouts {
  // The maps' path first: when it is the recorded one, the answer is that path with no stat.
  const mapped = live.get(record.key) ?? nowLive.get(record.key);
  const seenAt =
    mapped === record.namespacePath || pathHolds(record.namespacePath, record.key) ? record.namespacePath : mapped;
  if (seenAt !== undefined) return { at: 'held', path: seenAt };
  // A thread alone in the namespace keeps it too: every process's threads, mounts and fds are read
  // only when there is a record to drop.
  const [heldAt] = holders().of(identityOfKey(record.key));
  if (heldAt !== undefined) {
    // A socket or tap a process outside it holds: the one holder no path shows, so gc says where it is.
    const device = heldDeviceAt(heldAt);
    return {
      at: 'held',
      path: heldAt,
      ...(device ? { heldOutside: { heldAt, pid: device.pid, through: device.kind } } : {}),
    };
  }
  const unseen = unseenHolders(record, holders());
  return unseen === undefined ? { at: 'nowhere' } : { at: 'unseen', unseen };
}

/** Where whereaboutsOf found a record's namespace. */
type Whereabouts =
  | { at: 'held'; path: string; heldOutside?: HeldOutside }
  | { at: 'nowhere' }
  | { at: 'unseen'; unseen: NamespaceHoldersUnseen };

/** A namespace kept alive only by a socket made in it, or a tap of it, that process `pid` outside it holds. */
interface HeldOutside {
  heldAt: string;
  pid: number;
  through: 'socket' | 'tap';
}

/** Why a record whose namespace may be held where gc could not look is kept. */
function unseenReason(record: RecordedNamespace, unseen: NamespaceHoldersUnseen): string {
  return `whether its namespace (${record.namespacePath}, inode ${identityOfKey(record.key).ino}) still exists cannot be told: ${describeUnseen(unseen)}; ${hintForUnseen(unseen)}`;
}

/** A record gc drops: what it names and how it goes. */
interface DroppedRecord {
  id: string;
  file: string;
  directory: string;
  lockPath: string;
  namespacePath: string;
  /** false: removed nothing, the file having been written again or removed since gc read it. */
  remove: () => boolean;
}

/**
 * Drops one record under its sandbox's lock, taken without waiting: one another process holds the
 * lock of (a detach or DEL of it under way, most likely) is left to it and said in `skipped`.
 */
function dropUnderLock(
  record: DroppedRecord,
  why: { skippedBecause: string; detail: string; afterRemove?: () => void },
  report: GarbageReport,
): void {
  dropSeam.hook()?.(record.file);
  const lock = lockToDrop(record.lockPath, report.dryRun);
  if (lock && !(lock instanceof FileLock)) {
    report.skipped.push({
      file: record.file,
      reason: `${why.skippedBecause}, but ${describeLockHolder(lock.heldBy)} is changing the record right now (it holds the sandbox's lock); run gc again once that is done`,
      beingChanged: true,
    });
    return;
  }
  try {
    // Under the lock, only the record gc looked at: the sandbox may have been detached and attached
    // again meanwhile (the same id), its new record naming a live namespace gc never looked at.
    if (!report.dryRun && !record.remove()) {
      if (existsSync(record.file))
        report.skipped.push({
          file: record.file,
          reason: `${why.skippedBecause} (as gc read it), but it was written again since (the sandbox attached or changed again), so it was kept; run gc again to look at it as it is now`,
        });
      return;
    }
    report.removed.push({
      kind: 'state',
      namespacePath: record.namespacePath,
      name: record.id,
      file: record.file,
      detail: why.detail,
    });
    if (!report.dryRun) why.afterRemove?.();
  } finally {
    lock?.release({ removeFile: !existsSync(record.directory) });
  }
}

/**
 * The sandbox's lock, taken without waiting, to drop its record under; or who holds it. A dry run
 * only looks at it, as the real run would take it: else it would list as dropped a record the real
 * run leaves to the process changing it.
 */
function lockToDrop(lockPath: string, dryRun: boolean): FileLock | { heldBy: number } | undefined {
  if (!dryRun) return tryLockFile(lockPath);
  const heldBy = lockHeldBy(lockPath);
  return heldBy === undefined ? undefined : { heldBy };
}

/**
 * What a record's namespace may be hidden behind when nothing gc saw holds it: processes the holder
 * search could not look into, or the recorded path itself (another user's /proc/PID/ns/net, a
 * directory vcnet cannot search). undefined when gc saw everything: then it is gone.
 */
function unseenHolders(record: RecordedNamespace, holders: NamespaceHolders): NamespaceHoldersUnseen | undefined {
  const unseen = holders.unseen();
  if (lookAtFile(record.namespacePath) !== 'refused') return unseen;
  return { processes: [], ...unseen, paths: [...(unseen?.paths ?? []), record.namespacePath] };
}

/**
 * gc's step 3, for records written in an earlier boot: they name nothing that exists (their inode
 * and cookie may be a new pod's), so each is removed under its sandbox's lock, and nothing it names
 * is looked at. With --netns, the caller passes only those naming the paths given.
 */
export function dropEarlierBootRecords(records: readonly EarlierBootRecord[], report: GarbageReport): void {
  for (const record of records) {
    dropUnderLock(
      record,
      {
        skippedBecause: 'it is from an earlier boot',
        detail: `from an earlier boot: ${earlierBootReason(record.earlier)}${record.unreadable === undefined ? '' : ` (the record cannot be read: ${record.unreadable}; its boot id and creation time, both before this boot, still tell)`}`,
      },
      report,
    );
  }
}
