/**
 * What commands killed half-way leave in a state directory without any record: a record directory
 * with no record in it (a DEL or detach stopped between removing the record and its directories),
 * and a lock file with no record directory (an attach stopped before its first write). gc removes
 * them under their own lock, when nobody holds it; they belong to no namespace.
 */
import { type Dirent, existsSync, lstatSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { safeReaddir } from '../../directory-entries.js';
import { FileLock, tryLockFile } from '../state/lock.js';
import { trustedDirectories } from '../state/owners.js';
import { removeTree } from '../state/record-files.js';
import { LOCK_DIRECTORY_NAME, STATE_TEMPORARY_FILE } from '../state/store.js';
import type { GarbageReport } from './report.js';

/** Whether the tree holds nothing but directories and a write's temporary files: no record, nothing set aside. */
function holdsNoRecord(directory: string): boolean {
  let entries: Dirent[];
  try {
    entries = readdirSync(directory, { withFileTypes: true });
  } catch {
    return false;
  }
  return entries.every((entry) =>
    entry.isDirectory() ? holdsNoRecord(join(directory, entry.name)) : isDeadWritersTemporaryFile(entry.name),
  );
}

/** Whether a process of this pid runs (in gc's pid namespace; 0 and garbage count as none). */
function processRuns(pid: number): boolean {
  return pid > 0 && existsSync(`/proc/${pid}`);
}

/** A record write's temporary file whose writer (`.state.<pid>.tmp`) is gone. */
function isDeadWritersTemporaryFile(name: string): boolean {
  if (!STATE_TEMPORARY_FILE.test(name)) return false;
  return !processRuns(Number(/\d+/.exec(name)?.[0]));
}

/** The pid a lock file's holder wrote into it (0 when unreadable or empty). */
function pidWrittenIn(lockPath: string): number {
  try {
    const pid = Number.parseInt(readFileSync(lockPath, 'utf8').trim(), 10);
    return Number.isInteger(pid) ? pid : 0;
  } catch {
    return 0;
  }
}

/**
 * Lock files of sandboxes with no record directory: an attach killed after taking its lock and
 * before its first write. Removed under that very lock (a live attach holds it: left alone), and
 * only while no record directory exists. A dry run takes no lock: it lists those whose writer's pid
 * is gone.
 */
function collectStaleLockFiles(root: string, dryRun: boolean, report: GarbageReport): void {
  const locks = join(root, LOCK_DIRECTORY_NAME);
  for (const id of safeReaddir(locks)) {
    const lockPath = join(locks, id);
    if (id.startsWith('.') || existsSync(join(root, id))) continue;
    try {
      if (!lstatSync(lockPath).isFile()) continue; // a link or anything else: not vcnet's to remove
    } catch {
      continue;
    }
    if (dryRun && processRuns(pidWrittenIn(lockPath))) continue;
    const lock = dryRun ? undefined : tryLockFile(lockPath);
    if (lock && !(lock instanceof FileLock)) continue; // an attach under way
    try {
      if (existsSync(join(root, id))) continue; // it wrote its record meanwhile
      report.removed.push({
        kind: 'state',
        namespacePath: '',
        name: id,
        file: lockPath,
        detail:
          'a lock file without a record directory (an attach killed before its first write, or a record removed by hand)',
      });
    } finally {
      lock?.release({ removeFile: !existsSync(join(root, id)) });
    }
  }
}

/**
 * A record directory with no record in it (an attach killed after making the directory, before
 * writing the record in it; a DEL or detach killed between removing the record and its directory),
 * and its lock file: removed under that lock, when nobody holds it.
 */
export function collectEmptyRecordDirectories(
  directories: readonly string[],
  dryRun: boolean,
  report: GarbageReport,
): void {
  // Not another user's directory (readOwners named it in `skipped`): what is in it is not vcnet's.
  for (const root of trustedDirectories(directories, [])) {
    for (const id of safeReaddir(root)) {
      if (id.startsWith('.')) continue;
      const directory = join(root, id);
      if (!holdsNoRecord(directory)) continue;
      const lock = dryRun ? undefined : tryLockFile(join(root, LOCK_DIRECTORY_NAME, id));
      if (lock && !(lock instanceof FileLock)) continue; // being changed right now: next time
      try {
        // Looked at again under the lock: a command may have written a record meanwhile.
        if (!holdsNoRecord(directory)) continue;
        report.removed.push({
          kind: 'state',
          namespacePath: '',
          name: id,
          file: directory,
          detail: 'a record directory without a record (an attach, DEL or detach was interrupted)',
        });
        if (!dryRun) removeTree(directory);
      } finally {
        lock?.release({ removeFile: !existsSync(directory) });
      }
    }
    collectStaleLockFiles(root, dryRun, report);
  }
}
