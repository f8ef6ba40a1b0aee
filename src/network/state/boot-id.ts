/**
 * The boot a record was written in. A state directory kept on disk outlives a reboot, and after one
 * a record's namespace inode and cookie (cookies restart), the pids around it and its sockets' paths
 * can all name new, unrelated objects: the identity checks cannot tell. The kernel's boot id can: a
 * record of another boot names nothing that still exists, and nothing is done because of it.
 * Records without a boot id (older builds, a /proc without it) are judged as before.
 */
import { readFileSync } from 'node:fs';
import { NamespaceGoneError, type NamespaceIdentity } from '../../netns/namespace-identity.js';

export const BOOT_ID_FILE = '/proc/sys/kernel/random/boot_id';

/** What the kernel writes there: a random UUID, new at every boot. */
export const BOOT_ID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

let bootIdRead: { id: string | undefined } | undefined;

/**
 * This boot's id, or undefined when the kernel does not say (no procfs, a sandboxed /proc): the one
 * place vcnet reads it. Read once per process: a process does not outlive its boot.
 */
export function currentBootId(): string | undefined {
  if (bootIdRead === undefined) {
    let id: string | undefined;
    try {
      const text = readFileSync(BOOT_ID_FILE, 'utf8').trim();
      if (BOOT_ID_PATTERN.test(text)) id = text;
    } catch {
      // not readable here: records are written without one, and judged as before
    }
    bootIdRead = { id };
  }
  return bootIdRead.id;
}

/** The boot id a new record carries (none when this boot's cannot be read). */
export function bootIdField(): { bootId?: string } {
  const id = currentBootId();
  return id === undefined ? {} : { bootId: id };
}

/** The boots of a record written in another boot than this one; undefined when it is this boot's, or nothing can tell. */
export function earlierBootOf(record: { bootId?: string | undefined }): EarlierBoot | undefined {
  const current = currentBootId();
  if (record.bootId === undefined || current === undefined || record.bootId === current) return undefined;
  return { bootId: record.bootId, currentBootId: current };
}

/**
 * When this boot began, in milliseconds since the epoch (/proc/stat's btime), or undefined when the
 * kernel does not say. Read once per process.
 */
let bootStartRead: { at: number | undefined } | undefined;
function bootStart(): number | undefined {
  if (bootStartRead === undefined) {
    let at: number | undefined;
    try {
      const seconds = /^btime (\d+)$/m.exec(readFileSync('/proc/stat', 'utf8'))?.[1];
      if (seconds !== undefined) at = Number(seconds) * 1000;
    } catch {
      // not readable here: a damaged record is never taken for an earlier boot's
    }
    bootStartRead = { at };
  }
  return bootStartRead.at;
}

/**
 * The boots of a record that cannot be read, when it was written in an earlier boot: only when both
 * the boot id and the creation time it still tells say so (another boot id, and a time before this
 * boot began). The record is damaged, so one field alone does not decide: a boot id damaged into
 * another UUID would make a live sandbox's record look like an earlier boot's. A clock set back
 * across the reboot makes the time disagree, and then the record is judged by its namespace as before.
 */
export function earlierBootOfDamaged(salvaged: { bootId?: string; createdAt?: string }): EarlierBoot | undefined {
  const earlier = earlierBootOf(salvaged);
  const began = bootStart();
  if (!earlier || salvaged.createdAt === undefined || began === undefined) return undefined;
  const created = Date.parse(salvaged.createdAt);
  return Number.isFinite(created) && created < began ? earlier : undefined;
}

/** The two boots of a record written in another boot than this one (earlierBootOf). */
export interface EarlierBoot {
  /** The boot the record was written in. */
  bootId: string;
  /** This boot. */
  currentBootId: string;
}

/** Why a record of another boot names nothing: said the same by every command. */
export function earlierBootReason(earlier: EarlierBoot): string {
  return `it was written in an earlier boot (boot id ${earlier.bootId}; this boot is ${earlier.currentBootId}): its namespace, VM and everything it made went with that boot, and the inode, cookie, pids and socket paths it names may be new, unrelated objects now`;
}

/**
 * A record written in an earlier boot: its namespace is gone (with everything made in it), so it is
 * a NamespaceGoneError, which detach, vcnet-cni DEL and gc answer by dropping the record; nothing is
 * looked up by what it names (another pod may have that inode and cookie now).
 */
export class RecordFromEarlierBootError extends NamespaceGoneError {
  static override readonly errorName: string = 'RecordFromEarlierBootError';
  constructor(
    recorded: NamespaceIdentity,
    readonly file: string,
    readonly earlier: EarlierBoot,
    hint = `nothing was changed; \`vcnet detach\` (or the runtime's CNI DEL, or \`vcnet gc\`) drops the record, touching nothing`,
  ) {
    super(recorded, file, undefined, {
      message: `the record ${file} names nothing that exists: ${earlierBootReason(earlier)}`,
      hint,
    });
  }
}

/** Throws RecordFromEarlierBootError for a record of another boot, before anything it names is looked at. */
export function refuseEarlierBoot(
  record: { namespace: NamespaceIdentity; bootId?: string | undefined },
  file: string,
  hint?: string,
): void {
  const earlier = earlierBootOf(record);
  if (earlier) throw new RecordFromEarlierBootError(record.namespace, file, earlier, hint);
}
