/**
 * The one enumeration of records, which gc's owners (owners.ts) and `vcnet list` share: every record
 * of some state directories, read never through a link and never blocking on a FIFO, each checked
 * against its kind's schema. Its checked records are typed as their zod schemas yield them: this
 * module is internal, and no declaration of vcnet's public ones reaches it (zod's types do not compile
 * in a project without esModuleInterop; test/unit/public-types.test.ts holds that).
 */
import { join } from 'node:path';
import type { z } from 'zod';
import { cniContentSchema, sandboxContentSchema } from './network-content-schema.js';
import { damagedRecordText, parseRecord, type RecordEnvelope, StateInvalidError } from './record-envelope.js';
import { type RecordFile, recordFiles, removeEmpty, removeTree } from './record-files.js';
import { LOCK_DIRECTORY_NAME, readRecordFile } from './store.js';
/** A record file found in a state directory, with what gc needs to act on it under its lock. */
export interface RecordEntry extends RecordFile {
  /** The state directory it was found in. */
  root: string;
  /** How gc names it: the sandbox id, or `<container id>/<interface name>` for a vcnet-cni record. */
  key: string;
  /** The lock guarding it (`<root>/.locks/<id>`). */
  lockPath: string;
  /**
   * Removes the record's directory and whatever parent it emptied, if its file still holds the text
   * read by visitRecords; false (nothing removed) when it was written again or removed since.
   */
  remove: () => boolean;
}

/**
 * The text of a record file now (a record that is not UTF-8: with U+FFFD for its bad bytes, as
 * visitRecords read it); undefined when it is gone or cannot be read as one.
 */
function readRecordFileOrNone(file: string): string | undefined {
  try {
    return readRecordFile(file);
  } catch (error) {
    return damagedRecordText(error);
  }
}

/** A record read and checked against its schema: a sandbox's (vcnet attach) or a vcnet-cni interface's. */
export type CheckedRecord =
  | { kind: 'sandbox'; record: RecordEnvelope & z.infer<typeof sandboxContentSchema> }
  | { kind: 'cni'; record: RecordEnvelope & z.infer<typeof cniContentSchema> };

/** What visitRecords reports, entry by entry. */
export interface RecordVisitor {
  /** A record read and checked. */
  record(entry: RecordEntry, checked: CheckedRecord): void;
  /**
   * A record that cannot be used: `text` undefined when it could not be read at all (not a regular
   * file: a VcnetError; EIO, EMFILE, EACCES: a SystemCallError), else what it holds (it failed its check).
   */
  unusable(entry: RecordEntry, error: unknown, text: string | undefined): void;
  /** A directory of records that is there but cannot be listed (recordFiles). */
  unlistable(directory: string, error: unknown): void;
  /** An entry that is no record (recordFiles' `onStray`). */
  stray?(path: string, reason: string): void;
}

/**
 * Reads every record of these (trusted) state directories, never through a link and never blocking
 * on a FIFO, and checks each against its schema: the one enumeration of records, which gc's owners
 * and `vcnet list` share. Reads only: takes no lock, opens no namespace.
 */
export function visitRecords(roots: readonly string[], visitor: RecordVisitor): void {
  for (const root of roots) {
    const stray = visitor.stray ? (path: string, reason: string) => visitor.stray?.(path, reason) : undefined;
    for (const found of recordFiles(root, (directory, error) => visitor.unlistable(directory, error), stray)) {
      const { id, directory, file, interfaceName } = found;
      const lockPath = join(root, LOCK_DIRECTORY_NAME, id);
      const interfaces = join(directory, 'interfaces');
      let text: string | undefined;
      const removeRecord =
        interfaceName === undefined
          ? () => removeTree(directory)
          : () => {
              removeTree(join(interfaces, interfaceName));
              removeEmpty(interfaces);
              removeEmpty(directory);
            };
      // Only the record read here: one written again since (the sandbox detached and attached again
      // under the same id) names what its reader never looked at.
      const remove = () => {
        if (text === undefined || readRecordFileOrNone(file) !== text) return false;
        removeRecord();
        return true;
      };
      const key = interfaceName === undefined ? id : `${id}/${interfaceName}`;
      const entry: RecordEntry = { ...found, root, key, lockPath, remove };
      try {
        // Never through a link, never blocking on a FIFO: the error names the file, not its content.
        text = readRecordFile(file);
      } catch (error) {
        // A record that is not UTF-8 is damaged, but what its text still says is salvaged as for any other.
        text = damagedRecordText(error);
        visitor.unusable(entry, error, text);
        continue;
      }
      if (text === undefined) continue; // removed meanwhile
      let checked: CheckedRecord;
      try {
        checked = checkRecord(text, entry);
      } catch (error) {
        visitor.unusable(entry, error, text);
        continue;
      }
      visitor.record(entry, checked);
    }
  }
}

/** A record's text checked against the schema of its kind: the sandbox's, or the CNI interface's. */
function checkRecord(text: string, { id, file, interfaceName }: RecordEntry): CheckedRecord {
  if (interfaceName === undefined)
    return { kind: 'sandbox', record: parseRecord(text, file, { expectedId: id, content: sandboxContentSchema }) };
  const record = parseRecord(text, file, { expectedId: id, content: cniContentSchema });
  if (record.interfaceName !== interfaceName)
    throw new StateInvalidError(
      file,
      'interfaceName',
      `is ${JSON.stringify(record.interfaceName)}, not ${interfaceName}`,
      record.interfaceName,
    );
  return { kind: 'cni', record };
}
