/**
 * The record files of a state directory as gc reads them (`<id>/state.json`, a sandbox's;
 * `<id>/interfaces/<name>/state.json`, a CNI interface's), what else an entry there may be (an
 * alias of another entry, a stray file), and the removal of a record's directory. Kept apart from
 * what the records say (owners.ts): this is only where they are.
 */
import { lstatSync, readdirSync, readlinkSync, realpathSync, rmdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { errnoOf } from '../../errors.js';

/** A record file of a state directory: a sandbox's, or (with `interfaceName`) a CNI interface's. */
export interface RecordFile {
  /** The sandbox or CNI container id: the name of its directory under the state directory. */
  id: string;
  /** `<state directory>/<id>`. */
  directory: string;
  /** `<directory>/state.json`, or `<directory>/interfaces/<interfaceName>/state.json`. */
  file: string;
  interfaceName?: string;
}

/**
 * The record files of a state directory, as gc reads them: `<id>/state.json` (a sandbox) and
 * `<id>/interfaces/<name>/state.json` (a CNI interface), each only when something is at that path.
 * Entries starting with a dot (.locks, temporary files) are none.
 */
export function* recordFiles(
  root: string,
  /** A directory that is there but cannot be listed (anything but ENOENT/ENOTDIR). */
  onUnlistable: (directory: string, error: unknown) => void,
  /** An entry that led to no record and is no directory (strayEntry says what it is). */
  onStray?: (path: string, reason: string) => void,
): Generator<RecordFile> {
  const realRoot = realPathOf(root) ?? root;
  for (const id of readdirOrReport(root, onUnlistable)) {
    if (id.startsWith('.')) continue; // .locks, temporary files
    const directory = join(root, id);
    const alias = aliasWithin(directory, realRoot);
    if (alias !== undefined) {
      // Its records are read as those of the entry it names: read through it too, they would be
      // taken for another sandbox's (an id mismatch, skipped), and that sandbox's links withheld.
      onStray?.(directory, alias);
      continue;
    }
    const sandboxFile = join(directory, 'state.json');
    let found = false;
    if (isThere(sandboxFile)) {
      found = true;
      yield { id, directory, file: sandboxFile };
    }
    for (const interfaceName of readdirOrReport(join(directory, 'interfaces'), onUnlistable)) {
      const file = join(directory, 'interfaces', interfaceName, 'state.json');
      // Only a record vcnet-cni's DEL set aside (state.json.unreadable-*): nothing owned, nothing to report.
      if (isThere(file)) {
        found = true;
        yield { id, directory, file, interfaceName };
      }
    }
    if (!found && onStray) {
      const reason = strayEntry(directory);
      if (reason !== undefined) onStray(directory, reason);
    }
  }
}

/** `path` with every symbolic link resolved; undefined when it leads nowhere (dangling, a loop). */
function realPathOf(path: string): string | undefined {
  try {
    return realpathSync(path);
  } catch {
    return undefined;
  }
}

/**
 * When the entry at `path` is a symbolic link that leads into the state directory itself (another
 * entry of it, or the directory): an alias, whose records gc reads where they are. Why it is
 * passed over, as `ignored` says it; undefined for anything else. A link that leads out of the
 * state directory is still read (as session 19 decided): the records it leads to may be read
 * nowhere else, and passing them over would let gc take a live sandbox's links for orphans.
 */
function aliasWithin(path: string, realRoot: string): string | undefined {
  try {
    if (!lstatSync(path).isSymbolicLink()) return undefined;
  } catch {
    return undefined;
  }
  const target = realPathOf(path);
  if (target === undefined || (target !== realRoot && !target.startsWith(`${realRoot}/`))) return undefined;
  let written: string;
  try {
    written = readlinkSync(path);
  } catch {
    written = target;
  }
  return `a symbolic link to ${written}, in this state directory: its records are read there, not through the link`;
}

/**
 * What an entry of a state directory that holds no records is, when it is no directory: a symbolic
 * link (dangling, a loop, or to something that holds no records), a FIFO, a regular file, a socket,
 * a device: it names no sandbox. undefined for a directory (an attach's or DEL's leftover, tidied
 * elsewhere) or an entry gone meanwhile.
 */
function strayEntry(path: string): string | undefined {
  let stats: ReturnType<typeof lstatSync>;
  try {
    stats = lstatSync(path);
  } catch {
    return undefined;
  }
  if (stats.isDirectory()) return undefined;
  return stats.isSymbolicLink()
    ? 'a symbolic link that leads to no directory of records'
    : stats.isFIFO()
      ? 'a FIFO'
      : stats.isFile()
        ? 'a regular file'
        : stats.isSocket()
          ? 'a socket'
          : 'a device node';
}

/** Whether anything (a link too, even a dangling one) is at `path`. */
function isThere(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * The entries of a directory of records: none when it is not one (ENOENT, ENOTDIR, and ELOOP: a
 * symbolic link loop, such as a stray `ln -s x x`, leads to nothing that can hold records); any
 * other error (EIO, EMFILE, ENOMEM, EACCES) is not "no records": reported, and read as none.
 */
function readdirOrReport(directory: string, onUnlistable: (directory: string, error: unknown) => void): string[] {
  try {
    return readdirSync(directory);
  } catch (error) {
    const code = errnoOf(error);
    if (code !== 'ENOENT' && code !== 'ENOTDIR' && code !== 'ELOOP') onUnlistable(directory, error);
    return [];
  }
}

/** Removes a record's directory with everything in it (nothing there: nothing to do). */
export function removeTree(directory: string): void {
  rmSync(directory, { recursive: true, force: true });
}

/** Removes a directory only when it is empty. */
export function removeEmpty(directory: string): void {
  try {
    rmdirSync(directory);
  } catch {
    // not empty: something else is recorded there
  }
}
