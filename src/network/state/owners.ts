/**
 * The records that own what vcnet made: every record (sandboxes', CNI interfaces') in every state
 * directory vcnet knows (registry.ts), each with the namespace it names (by identity) and the links
 * and filters it made. gc reads them to tell orphans from what a live record owns; an attach reads
 * them to name who holds a link it finds in its way (recordsHoldingLink, recordsOfNamespace).
 * Records gc cannot use are named (`skipped`), and what they may be about is left alone (Untouchable).
 */
import { lstatSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { errnoOf, SystemCallError } from '../../errors.js';
import {
  damagedIdentityField,
  type NamespaceIdentity,
  type OpenedNamespace,
  openNetworkNamespace,
  RecordedIdentityDamagedError,
  sameNamespace,
} from '../../netns/namespace-identity.js';
import { identityOfKey, keyOf, type NamespaceKey, pathHolds } from '../../netns/namespace-liveness.js';
import { fileIdentity } from '../../netns/processes.js';
import { shellWord } from '../../shell-word.js';
import { type EarlierBoot, earlierBootOf } from './boot-id.js';
import { DEFAULT_CNI_STATE_DIRECTORY, DEFAULT_STATE_DIRECTORY } from './default-directories.js';
import { addedFilters, addedHtbs, createdLinks } from './network-content-schema.js';
import { damagedRecordText } from './record-envelope.js';
import { recordFiles } from './record-files.js';
import { visitRecords } from './record-visit.js';
import { registeredStateDirectories } from './registry.js';
import { readRecordFile, stateDirectory } from './store.js';
import { readableForClaims, refuseUntrustedDirectory } from './trust.js';
import {
  decideUnreadable,
  settleByHand,
  type ToldByUnreadable,
  toldByUnreadable,
  type UnreadableRecordOwner,
} from './unreadable-records.js';

export interface RecordOwner {
  id: string;
  file: string;
  /** The directory removed with the record, and the lock guarding it. */
  directory: string;
  lockPath: string;
  /** Removes the record's directory and whatever parent it emptied, if unchanged since read (RecordEntry's). */
  remove: () => boolean;
  namespacePath: string;
  key: NamespaceKey;
  /** The recorded namespace's cookie: tells it from a later namespace the kernel gave its inode. */
  cookie?: string;
  links: Array<{ name: string; index?: number }>;
  filters: Array<{ link: string; index?: number; parent: number; priority: number }>;
  /** The htb root qdiscs (rate limits) it added, each on its link (by index when recorded). */
  htbs: Array<{ link: string; index?: number; handle: number }>;
  /**
   * True for a record in another user's directory that gc (as root) reads for claims only: what it
   * names is kept, and gc never acts on it (never drops it, never finishes its attach).
   */
  claimsOnly?: true;
}

/** Which namespace a record names: its device and inode, and the path it was recorded at. */
export type RecordedNamespace = Pick<RecordOwner, 'key' | 'namespacePath'>;

/** A state directory of another user's that gc, run as root, read for claims only (readableForClaims). */
export interface ClaimsOnlyDirectory {
  directory: string;
  /** Its owner's uid. */
  owner: number;
}

/**
 * A record written in an earlier boot (boot-id.ts): it names nothing that exists, so it owns nothing
 * and protects nothing; gc removes it, and nothing it names is looked at.
 */
export type EarlierBootRecord = Pick<
  RecordOwner,
  'id' | 'file' | 'directory' | 'lockPath' | 'remove' | 'namespacePath' | 'claimsOnly'
> & {
  earlier: EarlierBoot;
  /**
   * Why the record cannot be read, for one that still tells its boot id and creation time, both of an
   * earlier boot (earlierBootOfDamaged): dropped as a readable one of an earlier boot.
   */
  unreadable?: string;
};

/** Whether a record's created link is `link`: by ifindex when recorded, else by name. */
export function claims(recorded: { name: string; index?: number }, link: { name: string; index?: number }): boolean {
  return recorded.index !== undefined ? recorded.index === link.index : recorded.name === link.name;
}

/** Every state directory gc reads: defaults, $VCNET_STATE_DIR, the registry, and the given ones. */
export function knownStateDirectories(extra: readonly string[] = []): string[] {
  const directories = [DEFAULT_STATE_DIRECTORY, DEFAULT_CNI_STATE_DIRECTORY];
  // Set but empty is refused here too (stateDirectory says so), as every other command refuses it.
  if (process.env.VCNET_STATE_DIR !== undefined) directories.push(stateDirectory());
  directories.push(...registeredStateDirectories(), ...extra.map((directory) => resolve(directory)));
  return [...new Set(directories)];
}

/**
 * Whether a record names the namespace of this identity: its device and inode, and its cookie when
 * both sides know one. A record of a gone namespace whose inode the kernel gave a later namespace
 * names the gone one (a cookie is never reused), not the later one.
 */
function namesNamespace(owner: RecordOwner, identity: { dev: number; ino: number; cookie?: string }): boolean {
  return sameNamespace({ ...identityOfKey(owner.key), cookie: owner.cookie }, identity);
}

/**
 * The records (sandboxes, CNI interfaces) in every known state directory that made `linkName` in the
 * namespace of this identity (its cookie compared when given): who to name when a new attach finds
 * that link there.
 */
export function recordsHoldingLink(
  identity: { dev: number; ino: number; cookie?: string },
  link: { name: string; index?: number },
  extraDirectories: readonly string[] = [],
): Array<{ id: string; file: string }> {
  return readOwners(knownStateDirectories(extraDirectories))
    .owners.filter((owner) => namesNamespace(owner, identity) && owner.links.some((recorded) => claims(recorded, link)))
    .map(({ id, file }) => ({ id, file }));
}

/**
 * The records (sandboxes, CNI interfaces) in every known state directory that name this namespace
 * (its cookie compared when given), each with `holds(link)`: whether it made that link (by ifindex
 * when recorded, else by name).
 */
export function recordsOfNamespace(
  identity: { dev: number; ino: number; cookie?: string },
  extraDirectories: readonly string[] = [],
): Array<{ id: string; file: string; holds: (link: { name: string; index?: number }) => boolean }> {
  return readOwners(knownStateDirectories(extraDirectories))
    .owners.filter((owner) => namesNamespace(owner, identity))
    .map(({ id, file, links }) => ({
      id,
      file,
      holds: (link: { name: string; index?: number }) => links.some((recorded) => claims(recorded, link)),
    }));
}

/**
 * The directories among `directories` gc may read records from: the rule every other command holds a
 * state directory to (trust.ts: owned by vcnet's user, or root, and writable by neither group nor
 * others). Another user's records could claim links, name namespaces, or put a FIFO or a link to any
 * file where a record should be; such a directory is skipped, with the reason, in `skipped`.
 */
export function trustedDirectories(
  directories: readonly string[],
  skipped: SkippedRecord[],
  untouchable?: Untouchable,
): string[] {
  return readableDirectories(directories, skipped, untouchable, false).map(({ directory }) => directory);
}

/**
 * trustedDirectories, and with `claimsOnly` (gc run as root) also the directories of another user's
 * it reads for claims only (readableForClaims), each with its owner.
 */
function readableDirectories(
  directories: readonly string[],
  skipped: SkippedRecord[],
  untouchable: Untouchable | undefined,
  claimsOnly: boolean,
): Array<{ directory: string; owner?: number }> {
  const readable: Array<{ directory: string; owner?: number }> = [];
  for (const directory of directories) {
    try {
      if (!claimsOnly) {
        refuseUntrustedDirectory(directory, { follow: true, rootToo: true });
        readable.push({ directory });
        continue;
      }
      const owner = readableForClaims(directory);
      readable.push(owner === undefined ? { directory } : { directory, owner });
    } catch (error) {
      if (isClosedRootDirectory(directory, error)) {
        // Not even looked up (a directory of root's above it): the next step would say the same again.
        // gc's hint, naming every such directory, is added once they are all known (withClosedRootHint);
        // list gives its own (the flag tells it why the directory was not read).
        skipped.push({ file: directory, reason: `not read: ${(error as Error).message}`, closedRootDirectory: true });
        if (untouchable) untouchable.everything = true;
        continue;
      }
      skipped.push({ file: directory, reason: `not read: ${(error as Error).message}` });
      if (untouchable) protectNamespacesNamedIn(directory, untouchable, skipped);
    }
  }
  return readable;
}

/**
 * For a gc run as a user other than root: whether `error` (EACCES) keeps it out of `directory`, a
 * directory of root's (or closed by one of root's above it). The default state directories are
 * root's; what is in them is root's sandboxes', and this user cannot tell that plumbing from
 * leftovers, so gc removes nothing: withClosedRootHint says so, once for all such directories.
 */
function isClosedRootDirectory(directory: string, error: unknown): boolean {
  const user = process.geteuid?.() ?? 0;
  return user !== 0 && errnoOf(error) === 'EACCES' && ownerOfNearest(directory) === 0;
}

/**
 * Appends to each `closedRootDirectory` entry of `skipped` the hint that names them all: what is
 * going on, and what to do, in place of "fix the file system". One text for all (the CLI says it
 * once; --json keeps each entry whole). `directories`: all gc reads, to name this user's own.
 */
function withClosedRootHint(skipped: SkippedRecord[], directories: readonly string[]): void {
  const closed = skipped.filter((entry) => entry.closedRootDirectory);
  if (closed.length === 0) return;
  const user = process.geteuid?.() ?? 0;
  const own = directories.filter((candidate) => ownerOfNearest(candidate, false) === user);
  const stateDirectories = own.length > 0 ? own.map(shellWord).join(' ') : "<this user's state directory>";
  const files = closed.map((entry) => entry.file);
  const named =
    files.length === 1 ? `${files[0]} is` : `${files.slice(0, -1).join(', ')} and ${files[files.length - 1]} are`;
  const hint = `${named} root's and may hold root's records, which this user (uid ${user}) cannot read: gc cannot tell root's sandboxes' plumbing from leftovers, so it removes no link, filter or qdisc in any namespace this run (its exit status stays 0). To collect this user's leftovers, run \`vcnet gc --state-dir ${stateDirectories}\` as root (add --netns to keep it to this user's pods; root's gc reads this user's records for claims only: they keep what they name), or detach this user's sandboxes as this user (\`vcnet detach\` works from the record alone)`;
  for (const entry of closed) entry.reason = `${entry.reason}; ${hint}`;
}

/**
 * The owner of `path`, or with `upwards` of the nearest directory above it that can be looked up
 * (the one that closes it to this user); undefined when none can.
 */
function ownerOfNearest(path: string, upwards = true): number | undefined {
  for (let current = path; ; current = dirname(current)) {
    try {
      return lstatSync(current).uid;
    } catch {
      if (!upwards || current === dirname(current)) return undefined;
    }
  }
}

/** A record gc cannot use: named in its report (`skipped`), never acted on. */
export interface SkippedRecord {
  file: string;
  reason: string;
  /**
   * True for a record kept because whether its namespace still exists cannot be told (its path is
   * gone or unreadable, and processes that may hold it could not be looked into: no CAP_SYS_PTRACE,
   * /proc's hidepid=): gc neither drops it nor removes anything it claims.
   */
  namespaceUnseen?: true;
  /**
   * True for a record gc left for its next run because another process is changing it right now: an
   * unfinished attach whose namespace's lock another command (an attach, detach or vcnet-cni ADD/DEL)
   * holds, or whose sandbox's lock another process holds, or whose running QEMU's QMP (to unplug the
   * NIC it hot-plugged) another client held past gc's wait for it; and a record of a namespace gone
   * whose sandbox's lock another process holds.
   */
  beingChanged?: true;
  /**
   * True for a state directory of root's that gc (or list) run as another user cannot read (EACCES):
   * gc's reason ends in one hint naming every such directory (the CLI says it once).
   */
  closedRootDirectory?: true;
}

/**
 * The namespaces gc must not remove links from: those named by records it could not use as owners,
 * or all of them (`everything`) when a record or a state directory could not be read at all, so the
 * namespace it is about cannot be known (in doubt, nothing is removed; records are still dropped).
 */
export interface Untouchable {
  keys: Set<NamespaceKey>;
  everything: boolean;
  /**
   * Records gc could not use whose namespace's device, inode and path survived: each leaves the
   * namespace with that device and inode alone unless it is a later namespace (another cookie, when
   * the record still tells one), which gc tells; one whose inode nothing holds gc drops.
   */
  salvaged: SalvagedRecord[];
}

/**
 * A record gc could not read whose namespace device, inode and path are whole (salvageNamespace,
 * salvageNamespacePath): it claims nothing gc can use, but says which namespace it is about. When
 * nothing holds that inode any more, or the namespace with it has another cookie than the one the
 * record still tells (the kernel gave a gone namespace's inode to a later one), the record is of a
 * gone namespace, and gc drops it as a readable record of a gone namespace (a later one is not left
 * alone for it); otherwise that namespace is left alone, as for any record gc cannot read.
 */
export interface SalvagedRecord
  extends Pick<
    RecordOwner,
    'id' | 'file' | 'directory' | 'lockPath' | 'remove' | 'namespacePath' | 'key' | 'claimsOnly' | 'cookie'
  > {
  /** Whose it is, for the words that tell a person how to settle it when gc keeps it. */
  owner: UnreadableRecordOwner;
  /** What it still tells, for decideUnreadable once gc has looked for its namespace. */
  told: ToldByUnreadable;
}

const LEFT_ALONE_EVERYWHERE =
  'so gc removes no link, filter or qdisc in any namespace this run (the records there may be of a live sandbox); fix the file system or its permissions and run gc again';

/**
 * A directory of records gc could not list (EIO, EMFILE, EACCES...): skipped, and nothing removed
 * anywhere (one of root's closed to this user gets its hint from withClosedRootHint).
 */
function unlistable(skipped: SkippedRecord[], untouchable: Untouchable) {
  return (directory: string, error: unknown) => {
    untouchable.everything = true;
    if (isClosedRootDirectory(directory, error)) {
      skipped.push({ file: directory, reason: `not listed: ${(error as Error).message}`, closedRootDirectory: true });
      return;
    }
    skipped.push({ file: directory, reason: `not listed: ${(error as Error).message}; ${LEFT_ALONE_EVERYWHERE}` });
  };
}

/** What a record that cannot say its namespace costs while it is there. */
const LEFT_ALONE_EVERYWHERE_WHILE_KEPT =
  "so gc removes no link, filter or qdisc in any namespace while it is there (it may be a live sandbox's record, and nothing left in it tells which namespace or whether that still exists)";

/**
 * Leaves alone the namespace a record gc cannot use is about, as `decision` (decideUnreadable) says,
 * and says how (a clause for the reason it was skipped; empty when its identity is whole): the one its
 * identity names (with its path and a `record` to drop, a SalvagedRecord: gc tells whether that
 * namespace is gone); when only its path is whole (the record cut inside its namespace object), the
 * namespace at that path now. When neither can be told (cut before the path, a path that holds no
 * namespace now), the record may be any live sandbox's: every namespace is left alone, unless
 * `anyNamespace` is false (a directory vcnet does not trust, whose files must not stop gc everywhere).
 */
function leaveAloneItsNamespace(
  told: ToldByUnreadable,
  untouchable: Untouchable,
  anyNamespace: boolean,
  record?: Omit<SalvagedRecord, 'key' | 'cookie' | 'namespacePath' | 'told'> & { owner: UnreadableRecordOwner },
): string {
  const decision = decideUnreadable(told);
  if (decision.action === 'drop-once-gone') {
    const { identity } = decision;
    if (record) {
      const { cookie } = identity;
      const { owner, ...named } = record;
      untouchable.salvaged.push({
        ...named,
        owner,
        told,
        namespacePath: decision.path,
        key: keyOf(identity),
        ...(cookie === undefined ? {} : { cookie }),
      });
    } else untouchable.keys.add(keyOf(identity));
    if (identity.cookie !== undefined) return '';
    // A later namespace the kernel gave the recorded one's inode looks the same by device and inode.
    return `; it keeps no readable cookie of its namespace, so gc cannot tell the namespace with inode ${identity.ino} now from the recorded one and leaves it alone (it may be a later namespace that got the inode)`;
  }
  if (decision.because === 'path-only') {
    untouchable.keys.add(keyOf(decision.namespaceThere));
    // Never dropped: with no inode, "nothing holds it" cannot be told of the namespace it was about.
    const settle = record ? `: ${settleByHand(record.owner, decision.path)}` : '';
    return `; its namespace's identity is not readable, so gc leaves the namespace now at ${decision.path} alone and keeps the record${settle}`;
  }
  if (decision.because !== 'unknown') return ''; // decided before: an earlier boot's, never read here
  const unknown =
    decision.path === undefined
      ? 'it does not say which namespace it is about'
      : `it names ${decision.path}, which holds no network namespace now (${decision.pathError})`;
  if (!anyNamespace) return '';
  untouchable.everything = true;
  // All gc has left is the file's name (the sandbox id): whether that sandbox runs is the person's to tell.
  const settle = record ? `: ${settleByHand(record.owner, undefined)}` : '';
  return `; ${unknown}, ${LEFT_ALONE_EVERYWHERE_WHILE_KEPT}${settle}`;
}

/**
 * A directory vcnet no longer trusts may still hold the records of live sandboxes (its mode or owner
 * changed by mistake): what they made must not be taken for orphans. Its records are read only for
 * the namespace they name (never through a link, never blocking), and those namespaces are left
 * alone. Another user can make gc leave a namespace alone this way, never make it remove anything.
 */
function protectNamespacesNamedIn(directory: string, untouchable: Untouchable, skipped: SkippedRecord[]): void {
  const protect = (file: string) => {
    try {
      const text = readRecordFile(file);
      // Only what it names is believed, to protect it: not its boot, which would let it protect nothing.
      if (text !== undefined) {
        const { earlier: _, ...named } = toldByUnreadable(text);
        leaveAloneItsNamespace(named, untouchable, false);
      }
    } catch (error) {
      // Not UTF-8: damaged, but what it names is believed as above.
      const damaged = damagedRecordText(error);
      if (damaged !== undefined) {
        const { earlier: _, ...named } = toldByUnreadable(damaged);
        leaveAloneItsNamespace(named, untouchable, false);
      }
      // Not a regular file: it names nothing gc can rely on. Unreadable (EIO...): it may name any.
      if (error instanceof SystemCallError) untouchable.everything = true;
    }
  };
  for (const { file } of recordFiles(directory, unlistable(skipped, untouchable))) protect(file);
}

export function readOwners(
  directories: readonly string[],
  options: {
    /**
     * gc run as root: another user's directories (readableForClaims) are read too, their records
     * marked `claimsOnly` and the directories listed in `claimsOnly`; else they are skipped.
     */
    claimsOnly?: boolean;
  } = {},
): {
  owners: RecordOwner[];
  /** Records of an earlier boot: not owners of anything. */
  earlierBoot: EarlierBootRecord[];
  skipped: SkippedRecord[];
  untouchable: Untouchable;
  ignored: Array<{ path: string; reason: string }>;
  /** The directories read for claims only (with `claimsOnly`). */
  claimsOnly: ClaimsOnlyDirectory[];
} {
  const owners: RecordOwner[] = [];
  const claimsOnly: ClaimsOnlyDirectory[] = [];
  const earlierBoot: EarlierBootRecord[] = [];
  const skipped: SkippedRecord[] = [];
  const ignored: Array<{ path: string; reason: string }> = [];
  const untouchable: Untouchable = { keys: new Set(), everything: false, salvaged: [] };
  for (const { directory: root, owner } of readableDirectories(
    directories,
    skipped,
    untouchable,
    options.claimsOnly ?? false,
  )) {
    if (owner !== undefined) claimsOnly.push({ directory: root, owner });
    const mark = owner !== undefined ? ({ claimsOnly: true } as const) : {};
    visitRecords([root], {
      unlistable: unlistable(skipped, untouchable),
      stray: (path, reason) => ignored.push({ path, reason }),
      unusable: ({ key: id, id: owningId, interfaceName, file, directory, lockPath, remove }, error, text) => {
        if (text !== undefined) {
          const told = toldByUnreadable(text);
          const decision = decideUnreadable(told);
          if (decision.action === 'drop' && decision.because === 'earlier-boot') {
            // As a readable record of an earlier boot: it names nothing that exists, so it protects
            // nothing (its inode may be a new pod's namespace now) and gc drops it.
            const namespacePath = decision.path ?? '';
            const { earlier } = decision;
            const unreadable = (error as Error).message;
            earlierBoot.push({ id, file, directory, lockPath, remove, namespacePath, earlier, unreadable, ...mark });
            return;
          }
          const owner = { file, id: owningId, ...(interfaceName === undefined ? {} : { interfaceName }) };
          const record = { id, file, directory, lockPath, remove, owner, ...mark };
          skipped.push({
            file,
            reason: `${(error as Error).message}${leaveAloneItsNamespace(told, untouchable, true, record)}`,
          });
          return;
        }
        if (!(error instanceof SystemCallError)) {
          // A link, a FIFO, a directory where the record should be: not a record, it names nothing.
          skipped.push({ file, reason: (error as Error).message });
          return;
        }
        // Unreadable (EIO, EMFILE, EACCES...): a record is there, of a namespace gc cannot know.
        skipped.push({ file, reason: `${(error as Error).message}; ${LEFT_ALONE_EVERYWHERE}` });
        untouchable.everything = true;
      },
      record: ({ key: id, file, directory, lockPath, remove }, { record }) => {
        const named = { id, file, directory, lockPath, remove, namespacePath: record.namespace.path, ...mark };
        const earlier = earlierBootOf(record);
        if (earlier) {
          // Its inode and cookie may be a new pod's now: not even looked at.
          earlierBoot.push({ ...named, earlier });
          return;
        }
        const damaged = damagedIdentity(record, file);
        if (damaged) {
          // Its namespace is alive at its path under another inode: dropping the record as "exists
          // nowhere" would orphan what attach made there. Read as unreadable, that namespace left alone.
          skipped.push({ file, reason: damaged.error.message });
          untouchable.keys.add(damaged.key);
          return;
        }
        owners.push({
          ...named,
          key: keyOf(record.namespace),
          ...(record.namespace.cookie === undefined ? {} : { cookie: record.namespace.cookie }),
          links: createdLinks(record.network),
          filters: addedFilters(record.network),
          htbs: addedHtbs(record.network),
        });
      },
    });
  }
  withClosedRootHint(skipped, directories);
  return { owners, earlierBoot, skipped, untouchable, ignored, claimsOnly };
}

/**
 * A record whose path holds, under another device or inode, the namespace with its cookie: the
 * record's number is damaged (RecordedIdentityDamagedError), with the key of the namespace found.
 * Looked into only when the path holds another inode than recorded (a reused or damaged one).
 */
function damagedIdentity(
  record: { namespace: NamespaceIdentity; createdAt: string },
  file: string,
): { error: RecordedIdentityDamagedError; key: NamespaceKey } | undefined {
  const recorded = record.namespace;
  if (recorded.cookie === undefined || pathHolds(recorded.path, keyOf(recorded))) return undefined;
  if (fileIdentity(recorded.path) === undefined) return undefined;
  let opened: OpenedNamespace;
  try {
    // A look only (its socket a probe, closed unused): no work follows here in that namespace.
    opened = openNetworkNamespace(recorded.path);
  } catch {
    return undefined; // not a network namespace now: as before, the record's namespace is looked for by inode
  }
  try {
    const field = damagedIdentityField(recorded, opened.identity, record.createdAt);
    if (!field) return undefined;
    return {
      error: new RecordedIdentityDamagedError(file, field, recorded, opened.identity),
      key: keyOf(opened.identity),
    };
  } finally {
    opened.close();
  }
}
