/**
 * `vcnet list` and the library's listSandboxes: what vcnet has recorded, one entry per record (a
 * sandbox vcnet attach made, a vcnet-cni interface), each with a state told from the record itself
 * and where its namespace lives now (its path, or the holder detach would reach it through). It reads
 * only: no lock is taken, nothing written or removed, nothing sent to any namespace (gc is what acts
 * on what it shows); a namespace is opened only to read its cookie, on a probe socket closed at once.
 */
import { statSync } from 'node:fs';
import { optionsArgument, stringOption } from '../arguments.js';
import { classifyError, VcnetError } from '../errors.js';
import { heldDeviceAt } from '../netns/held-device-fds.js';
import { describeUnseen, hintForUnseen, NamespaceHolders } from '../netns/namespace-holders.js';
import { type NamespaceCookies, placeOfRecordedNamespace } from '../netns/namespace-liveness.js';
import { isUnfinished } from '../network/model/plumbing-context.js';
import { earlierBootOf } from '../network/state/boot-id.js';
import { gcStateDirectoryFlag, stateDirectoryFlag } from '../network/state/default-directories.js';
import { flockHolderAt } from '../network/state/lock.js';
import { knownStateDirectories, type SkippedRecord, trustedDirectories } from '../network/state/owners.js';
import { salvageNamespacePathTold } from '../network/state/record-envelope.js';
import { type CheckedRecord, type RecordEntry, visitRecords } from '../network/state/record-visit.js';
import { stateDirectory } from '../network/state/store.js';
import { refuseUntrustedDirectory } from '../network/state/trust.js';
import {
  decideUnreadable,
  settleByHand,
  toldByUnreadable,
  type UnreadableNamespaceWhereabouts,
} from '../network/state/unreadable-records.js';
import { shellWord } from '../shell-word.js';
import {
  entryNames,
  guestPendingVerdict,
  isEntryProcess,
  notPermittedWhy,
  TIME_OFFSET_UNREADABLE_REASON,
  WITHOUT_NSPID_REASON,
} from './guest-pending.js';

/**
 * A record's state, from the record and where its namespace lives now:
 * - `attached`: complete, of this boot, its namespace alive (at its path, or held elsewhere:
 *   `namespaceHeldAt`);
 * - `unfinished`: an attach (or its rollback) that a killed process left part-way: gc finishes undoing
 *   it (a vcnet-cni one: the runtime's CNI DEL);
 * - `earlier-boot`: written in an earlier boot, so it names nothing that exists now; gc removes it;
 * - `namespace-gone`: nothing holds the recorded namespace any more (not its path, nor any /var/run/netns
 *   entry, process, mount or fd; or a later namespace has its inode, by cookie); with `namespaceUnseen`,
 *   nothing vcnet could see holds it, but some processes could not be looked into;
 * - `unreadable`: damaged, truncated, not a regular file, another format version: `error` says why.
 */
export type SandboxListingState = 'attached' | 'unfinished' | 'earlier-boot' | 'namespace-gone' | 'unreadable';

/** An endpoint a record lists: the guest NIC and the pod link it stands for. */
export interface SandboxListingEndpoint {
  /** The endpoint's name (the guest NIC's). */
  guestName: string;
  /** The pod link it stands for (in the sandbox's namespace). */
  podLink: string;
  /** The endpoint type (virtual, macvlan, physical, tap...). */
  type: string;
  /** The internetworking model of its plumbing; `pending` while its attach has not finished. */
  model: string;
  /** The tap or macvtap vcnet made for it, when it made one. */
  device?: string;
  /**
   * Plugged by an add-iface that gave the lock back while the guest configures it: `waiting` while
   * that add-iface runs, `stopped` when it was stopped before it finished (the NIC stays plugged),
   * `finishing` when its wait is over and its process holds the sandbox's lock (recording the outcome,
   * or undoing the endpoint when the guest failed).
   */
  guestPending?: 'waiting' | 'stopped' | 'finishing';
  /**
   * An add-iface failed and its undo did not finish: the VM may still hold the NIC (a paused VM, a
   * guest that ignores the eject, a VMM that did not answer the unplug). Pushes of the whole set leave
   * it out; del-iface finishes it.
   */
  unplugUnfinished?: true;
  /**
   * True when guestPending is a guess: the add-iface runs in a PID namespace this process sees no
   * process of, or this process may not look at its process (another user's, to a reader without
   * root), so it is taken as waiting until its longest wait past its start, then as stopped.
   */
  guestPendingGuessed?: true;
}

/** One record of a state directory, as listSandboxes describes it. */
export interface SandboxListing {
  /** The sandbox id, or `<container id>/<interface name>` for a vcnet-cni record (as gc names it). */
  id: string;
  /** Who wrote it: `sandbox` (vcnet attach, the library) or `cni` (vcnet-cni ADD). */
  kind: 'sandbox' | 'cni';
  /** vcnet-cni records: the container id and the interface name (CNI_CONTAINERID, CNI_IFNAME). */
  containerId?: string;
  interfaceName?: string;
  state: SandboxListingState;
  /** Why the state is not `attached` (or, for one, where its namespace lives now), in a sentence. */
  detail?: string;
  /**
   * What to run about it: the gc command that finishes or removes it; for an unreadable record whose
   * text was read, what gc does with it (drops it once the namespace it still names is gone, else
   * keeps it) and how to settle it by hand; for one that could not be read at all, the error's hint.
   */
  hint?: string;
  /**
   * An `unfinished` record whose lock a process holds right now (an attach, detach, add-iface or
   * vcnet-cni ADD/DEL at work on it): gc leaves it alone, as its `beingChanged` says.
   */
  beingChanged?: true;
  /** The namespace path it names (absent when an unreadable record does not say). */
  namespacePath?: string;
  /**
   * An unreadable record's namespace path holds bytes that are not UTF-8 (damage): `namespacePath`
   * writes each as `\xNN` and a backslash as `\\`, as `ls -b` does; gc's words name it the same.
   */
  namespacePathNotUtf8?: true;
  /**
   * The recorded path no longer holds the recorded namespace, and this does (another /var/run/netns
   * entry, a /proc/PID/ns/net, a mount or an fd): where detach reaches it. For an unreadable record
   * that still tells its namespace's device and inode: where that namespace is (a damaged path, or
   * one it moved from, holds none), the path its hint gives `vcnet gc --netns`.
   */
  namespaceHeldAt?: string;
  /** `namespace-gone` told without seeing everything: some processes (or paths) could not be looked into. */
  namespaceUnseen?: true;
  /** Its endpoints (none for an unreadable record). */
  endpoints: SandboxListingEndpoint[];
  /** The names of its endpoints whose add-iface waits (or waited, and was stopped) for the guest: see SandboxListingEndpoint.guestPending. */
  guestPending?: string[];
  /** The names of its endpoints whose failed add-iface's undo did not finish: see SandboxListingEndpoint.unplugUnfinished. */
  unplugUnfinished?: string[];
  /** The hypervisor kind it records (qemu, clh, firecracker), when it records one. */
  hypervisor?: string;
  createdAt?: string;
  /** The state directory it is in, and its file. */
  stateDirectory: string;
  file: string;
  /** Why it could not be read (state `unreadable`): the error's code, message (naming the file) and hint. */
  error?: { code: string; message: string; hint?: string; errno?: string };
}

/** What listSandboxes reads. */
export interface ListSandboxesOptions {
  /**
   * Only this state directory. Default: every state directory `vcnet gc` reads (the CLI's and
   * vcnet-cni's defaults, $VCNET_STATE_DIR, and every directory recorded in the registry).
   */
  stateDirectory?: string;
}

/**
 * Lists the records vcnet keeps (vcnet attach's sandboxes, vcnet-cni's interfaces), one entry per
 * record with its state and endpoints: read-only (no lock, no netlink, no namespace entered). A record
 * that cannot be read is listed as `unreadable` with its error, never thrown; a state directory that
 * does not exist lists nothing. A `stateDirectory` another user could change is refused
 * (StateDirectoryError, VCNET_STATE_DIR), as every command refuses it; without one, such a directory
 * the registry names is listed as one `unreadable` entry.
 *
 * @example
 * ```ts
 * import { listSandboxes } from 'vcnet';
 *
 * for (const sandbox of await listSandboxes({ stateDirectory: '/run/vcnet/sandboxes' })) {
 *   console.log(`${sandbox.id} ${sandbox.state} ${sandbox.namespacePath ?? '-'}`);
 * }
 * ```
 */
export async function listSandboxes(options: ListSandboxesOptions = {}): Promise<SandboxListing[]> {
  options = optionsArgument(options, 'options', ['stateDirectory']);
  stringOption(options.stateDirectory, 'stateDirectory', 'a state directory path');
  const skipped: SkippedRecord[] = [];
  let roots: string[];
  if (options.stateDirectory !== undefined) {
    const directory = stateDirectory(options.stateDirectory);
    refuseUntrustedDirectory(directory, { follow: true, rootToo: true });
    roots = [directory];
  } else {
    roots = trustedDirectories(knownStateDirectories(), skipped);
  }
  const listings: SandboxListing[] = [];
  // One holder search for every record (each place listed once, the first time a record needs it).
  let holders: NamespaceHolders | undefined;
  const holdersOnce = () => {
    holders ??= new NamespaceHolders();
    return holders;
  };
  // One probe socket per namespace for its cookie, however many records name it.
  const cookies: NamespaceCookies = new Map();
  visitRecords(roots, {
    record: (entry, checked) => listings.push(describeRecord(entry, checked, holdersOnce, cookies)),
    unusable: (entry, error, text) => {
      const listing = unreadableListing(entry, error, text);
      if (text !== undefined) {
        const { hint, heldAt } = whatGcDoesWithUnreadable(entry, text, holdersOnce, cookies);
        listing.hint = hint;
        if (heldAt !== undefined) listing.namespaceHeldAt = heldAt;
      }
      listings.push(listing);
    },
    unlistable: (directory, error) =>
      listings.push({
        ...unreadableListing({ key: directory, root: directory, file: directory }, error),
        detail: `the directory cannot be listed: ${(error as Error).message}`,
      }),
  });
  for (const { file, reason, closedRootDirectory } of skipped)
    listings.push({
      id: file,
      kind: 'sandbox',
      state: 'unreadable',
      detail: reason,
      endpoints: [],
      stateDirectory: file,
      file,
      error: { code: 'VCNET_STATE_DIR', message: reason },
      ...(closedRootDirectory ? { hint: closedRootDirectoryHint(file, roots) } : {}),
    });
  // readdir's order is the file system's: sorted (by code point, whatever the locale), so two
  // listings compare line by line.
  const order = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
  return listings.sort((a, b) => order(a.stateDirectory, b.stateDirectory) || order(a.id, b.id));
}

/**
 * What to do about a state directory of root's that this user may not read (a user other than root
 * lists root's default directories too): root lists it; this user's own directories list without it.
 */
function closedRootDirectoryHint(directory: string, readable: readonly string[]): string {
  const user = process.geteuid?.() ?? 0;
  const own = readable.filter((candidate) => {
    try {
      return statSync(candidate).uid === user;
    } catch {
      return false;
    }
  });
  const ownList =
    own.length > 0
      ? `; \`vcnet list --state-dir ${shellWord(own[0]!)}\` lists this user's own records alone (exit 0)`
      : '';
  return `${directory} is a state directory of root's, closed to this user (uid ${user}): run \`vcnet list\` as root to see the records in it${ownList}`;
}

/** A record read and checked: its state, from the record and where its namespace lives now. */
function describeRecord(
  entry: RecordEntry,
  { kind, record }: CheckedRecord,
  holders: () => NamespaceHolders,
  cookies: NamespaceCookies,
): SandboxListing {
  const namespacePath = record.namespace.path;
  const pendingEntries = kind === 'sandbox' ? (record.guestPending ?? []) : [];
  const lockPath = entry.lockPath;
  // /proc/locks is read once per record, when first asked: every endpoint's question is of this one lock.
  let lockHolder: { pid: number | undefined } | undefined;
  const lockHolderNow = () => {
    lockHolder ??= { pid: flockHolderAt(lockPath) };
    return lockHolder.pid;
  };
  // Endpoints whose verdict is a guess because this process may not look at their command's process.
  const notPermitted: string[] = [];
  // Endpoints whose verdict is a guess because this /proc shows no pid of another namespace (no NSpid).
  const withoutNSpid: string[] = [];
  // Endpoints whose verdict is a guess because this process's time namespace hides its offset.
  const timeOffsetUnreadable: string[] = [];
  // Endpoints whose command, its wait for the guest over, holds the sandbox's lock to finish or undo them.
  const finishing: { name: string; by: string; pid: number }[] = [];
  const pendingStateOf = (endpoint: { name: string; properties: { link: { name: string } } }) => {
    const entry = pendingEntries.find((candidate) => entryNames(candidate, endpoint));
    if (entry === undefined) return undefined;
    const verdict = guestPendingVerdict(entry);
    // Past its wait (a push that took nearly its whole bound, then the lock wait), the command may be
    // finishing or undoing the endpoint under the lock: /proc/locks tells, without taking the lock.
    const holder = verdict.running ? undefined : lockHolderNow();
    if (holder !== undefined && isEntryProcess(entry, holder)) {
      finishing.push({ name: endpoint.name, by: entry.by === 'watch' ? '`vcnet watch`' : 'add-iface', pid: holder });
      return { state: 'finishing' as const, guessed: false };
    }
    if (verdict.notPermitted) notPermitted.push(endpoint.name);
    if (verdict.withoutNSpid) withoutNSpid.push(endpoint.name);
    if (verdict.timeOffsetUnreadable) timeOffsetUnreadable.push(endpoint.name);
    return { state: verdict.running ? ('waiting' as const) : ('stopped' as const), guessed: verdict.guessed };
  };
  const unplugEntries = kind === 'sandbox' ? (record.unplugUnfinished ?? []) : [];
  const isUnplugUnfinished = (endpoint: { name: string; properties: { link: { name: string } } }) =>
    unplugEntries.some((entry) => entryNames(entry, endpoint));
  const listing: SandboxListing = {
    id: entry.key,
    kind,
    ...(kind === 'cni' ? { containerId: entry.id, interfaceName: record.interfaceName } : {}),
    state: 'attached',
    namespacePath,
    endpoints: record.network.endpoints.map((endpoint) => {
      const guestPending = pendingStateOf(endpoint);
      return {
        guestName: endpoint.name,
        podLink: endpoint.properties.link.name,
        type: endpoint.type,
        model: endpoint.plumbing.model,
        ...(endpoint.plumbing.tapName ? { device: endpoint.plumbing.tapName } : {}),
        ...(guestPending ? { guestPending: guestPending.state } : {}),
        ...(guestPending?.guessed ? { guestPendingGuessed: true as const } : {}),
        ...(isUnplugUnfinished(endpoint) ? { unplugUnfinished: true as const } : {}),
      };
    }),
    ...(kind === 'sandbox' && record.hypervisor ? { hypervisor: record.hypervisor.kind } : {}),
    createdAt: record.createdAt,
    stateDirectory: entry.root,
    file: entry.file,
  };
  const pendingNames = listing.endpoints
    .filter((endpoint) => endpoint.guestPending)
    .map((endpoint) => endpoint.guestName);
  if (pendingNames.length > 0) listing.guestPending = pendingNames;
  const unpluggedNames = listing.endpoints
    .filter((endpoint) => endpoint.unplugUnfinished)
    .map((endpoint) => endpoint.guestName);
  if (unpluggedNames.length > 0) listing.unplugUnfinished = unpluggedNames;
  const gc = `vcnet gc --netns ${shellWord(namespacePath)}${gcStateDirectoryFlag(entry.file)}`;
  const earlier = earlierBootOf(record);
  if (earlier) {
    // Its inode may be a new pod's namespace now: not looked at.
    return {
      ...listing,
      state: 'earlier-boot',
      detail: `written in an earlier boot (boot id ${earlier.bootId}; this boot is ${earlier.currentBootId}): what it names went with that boot`,
      hint: `${gc} removes the record`,
    };
  }
  // Where detach would reach it: its path, else whatever holds it (cookie checked: an inode number
  // is handed to the next namespace made).
  const place = placeOfRecordedNamespace(record.namespace, holders(), cookies);
  const recorded = `inode ${record.namespace.ino}${record.namespace.cookie ? `, cookie ${record.namespace.cookie}` : ''}`;
  if (place.at === 'nowhere')
    return {
      ...listing,
      state: 'namespace-gone',
      detail:
        place.laterCookie === undefined
          ? `nothing holds the recorded namespace (${recorded}) any more: not ${namespacePath}, nor any /var/run/netns entry, process, mount or fd`
          : `the recorded namespace (${recorded}) is gone: a later namespace has its inode now (cookie ${place.laterCookie})`,
      hint: `${gc} drops the record`,
    };
  if (place.at === 'unseen')
    return {
      ...listing,
      state: 'namespace-gone',
      namespaceUnseen: true,
      detail: `${namespacePath} no longer holds the recorded namespace (${recorded}) and nothing vcnet could see does, but it may still be held: ${describeUnseen(place.unseen)}`,
      hint: hintForUnseen(place.unseen),
    };
  const heldAt = place.at === 'elsewhere' ? place.heldAt : undefined;
  if (heldAt !== undefined) listing.namespaceHeldAt = heldAt;
  const device = heldAt === undefined ? undefined : heldDeviceAt(heldAt);
  const livesAt =
    heldAt === undefined
      ? ''
      : `${namespacePath} no longer holds the recorded namespace; it lives at ${heldAt}${device ? ` (a ${device.kind === 'socket' ? 'socket made in it' : 'tap of it'} that process ${device.pid}, outside it, holds: that fd alone keeps it alive)` : ''}`;
  const endpoints = record.network.endpoints;
  const pending = endpoints.filter((endpoint) => isUnfinished(endpoint.plumbing));
  // An attached endpoint whose undo (detach, del-iface) the kernel refused in part: the record keeps
  // what is left, which gc keeps as claimed (it finishes only attaches); detach finishes it.
  const undoLeft = endpoints.filter((endpoint) => !isUnfinished(endpoint.plumbing) && endpoint.plumbing.partial);
  // What undoes a record: vcnet detach for a sandbox's, the runtime's CNI DEL for a vcnet-cni one's.
  const detach = `vcnet detach --sandbox ${shellWord(entry.id)}${stateDirectoryFlag(entry.root)}`;
  const cniDel = `the runtime's CNI DEL of container ${entry.id} (interface ${record.interfaceName})`;
  const killedAttach = kind === 'sandbox' && record.attaching === true;
  const addUnderWay = kind === 'cni' && record.device === undefined;
  if (pending.length > 0 || undoLeft.length > 0 || killedAttach || addUnderWay) {
    const names = (of: typeof endpoints) => of.map((endpoint) => endpoint.properties.link.name).join(', ');
    const detail = killedAttach
      ? 'an attach that did not finish'
      : addUnderWay
        ? 'a vcnet-cni ADD that did not finish'
        : pending.length > 0
          ? `the attach or undo of ${names(pending)} did not finish`
          : `the undo of ${names(undoLeft)} did not finish (the kernel refused part of it)`;
    // Told from /proc/locks, without taking the lock: a command at work on it now (gc leaves it).
    const holder = lockHolderNow();
    const where = livesAt === '' ? '' : ` (${livesAt})`;
    if (holder !== undefined)
      return {
        ...listing,
        state: 'unfinished',
        detail: `${detail}${where}: process ${holder} is changing it right now (it holds the record's lock)`,
        hint: 'run vcnet list again once that process is done',
        beingChanged: true,
      };
    return {
      ...listing,
      state: 'unfinished',
      detail: `${detail}${where}, and nothing is working on it (a killed process left it)`,
      // gc finishes a sandbox's attach, detach what an undo left; a vcnet-cni record is the runtime's
      // to finish (its CNI DEL).
      hint:
        kind !== 'sandbox'
          ? `${cniDel} undoes it`
          : killedAttach || pending.length > 0
            ? `${gc} finishes undoing it`
            : `${detach} removes what is left`,
    };
  }
  if (heldAt !== undefined)
    return {
      ...listing,
      detail: livesAt,
      hint: `${kind === 'sandbox' ? detach : cniDel} undoes it there`,
    };
  const id = shellWord(entry.id);
  const flag = stateDirectoryFlag(entry.root);
  const details: string[] = [];
  const hints: string[] = [];
  // An add-iface (or watch) stopped while it waited for the guest: its NIC is plugged, maybe not configured.
  const stopped = listing.endpoints.filter((endpoint) => endpoint.guestPending === 'stopped');
  if (stopped.length > 0) {
    const names = stopped.map((endpoint) => endpoint.guestName);
    const byWatch = new Set(pendingEntries.filter((pending) => pending.by === 'watch').map((pending) => pending.name));
    const stoppedOf = (command: string, of: string[]) =>
      of.length === 0 ? [] : [`the ${command} that plugged ${of.join(', ')} was stopped while it waited for the guest`];
    const stops = [
      ...stoppedOf(
        'add-iface',
        names.filter((name) => !byWatch.has(name)),
      ),
      ...stoppedOf(
        '`vcnet watch`',
        names.filter((name) => byWatch.has(name)),
      ),
    ];
    // Told by time: its process runs in a PID namespace this one sees nothing of (or whose pids this
    // /proc does not show), or one this process may not look at.
    const guessed = stopped.filter((endpoint) => endpoint.guestPendingGuessed).map((endpoint) => endpoint.guestName);
    const unseen = guessed.filter(
      (name) => !notPermitted.includes(name) && !withoutNSpid.includes(name) && !timeOffsetUnreadable.includes(name),
    );
    const hidden = guessed.filter((name) => notPermitted.includes(name));
    const unmatched = guessed.filter((name) => withoutNSpid.includes(name));
    const unplaced = guessed.filter((name) => timeOffsetUnreadable.includes(name));
    const guesses = [
      ...(unseen.length === 0
        ? []
        : [`a guess for ${unseen.join(', ')}: the PID namespace of its command is not seen from here`]),
      ...(hidden.length === 0
        ? []
        : [`a guess for ${hidden.join(', ')}: this process may not look at its command (${notPermittedWhy().reason})`]),
      ...(unmatched.length === 0 ? [] : [`a guess for ${unmatched.join(', ')}: ${WITHOUT_NSPID_REASON}`]),
      ...(unplaced.length === 0 ? [] : [`a guess for ${unplaced.join(', ')}: ${TIME_OFFSET_UNREADABLE_REASON}`]),
    ];
    const guess = guesses.length === 0 ? '' : ` (${guesses.join('; ')}, and its longest wait for the guest has passed)`;
    details.push(`${stops.join('; ')}${guess}: the NIC is plugged, the guest may not have it configured`);
    hints.push(
      `\`vcnet configure-guest --sandbox ${id}${flag}\` tells the guest its configuration again; or \`vcnet del-iface ${id} FILE${flag}\` (FILE: {"name":"${names[0]}"}) removes it`,
    );
  }
  for (const { name, by, pid } of finishing) {
    details.push(
      `the ${by} that plugged ${name} is done waiting for the guest and holds the sandbox's lock (process ${pid}): it is recording the outcome, or undoing ${name} when the guest failed`,
    );
  }
  if (finishing.length > 0) hints.push('run vcnet list again once that process is done');
  // Not checked, only guessed by time: said, with what would check it.
  const waitingNotPermitted = listing.endpoints
    .filter((endpoint) => endpoint.guestPending === 'waiting' && notPermitted.includes(endpoint.guestName))
    .map((endpoint) => endpoint.guestName);
  if (waitingNotPermitted.length > 0)
    details.push(
      `the command that plugged ${waitingNotPermitted.join(', ')} is taken as waiting for the guest until its longest wait ends, a guess: this process may not look at that command (${notPermittedWhy().reason})`,
    );
  if (notPermitted.length > 0) hints.push(notPermittedWhy().remedy);
  // A failed add-iface whose undo the VM did not complete: its NIC stays for del-iface, unconfigured.
  if (unpluggedNames.length > 0) {
    const many = unpluggedNames.length > 1;
    details.push(
      `the add-iface of ${unpluggedNames.join(', ')} failed and the undo of it did not finish (the VM may still hold the NIC${many ? 's' : ''}): what the guest is told leaves ${many ? 'them' : 'it'} out`,
    );
    hints.push(
      `\`vcnet del-iface ${id} FILE${flag}\` with ${unpluggedNames.map((name) => JSON.stringify({ name })).join(', ')} finishes ${many ? 'them' : 'it'} once the VM releases the NIC${many ? 's' : ''} or has stopped`,
    );
  }
  return details.length === 0 ? listing : { ...listing, detail: details.join('; '), hint: hints.join('; ') };
}

/**
 * What gc does with a record it cannot read, as gc decides it (decideUnreadable, which gc acts on),
 * and what settles it when gc keeps it: gc drops one that still tells its namespace's device, inode
 * and path once that namespace is gone; it keeps any other, and only the person can tell whether its
 * sandbox still runs. `heldAt`: where its namespace is, when its recorded path does not hold it.
 */
function whatGcDoesWithUnreadable(
  entry: RecordEntry,
  text: string,
  holders: () => NamespaceHolders,
  cookies: NamespaceCookies,
): { hint: string; heldAt?: string } {
  const owner = {
    file: entry.file,
    id: entry.id,
    ...(entry.interfaceName ? { interfaceName: entry.interfaceName } : {}),
  };
  const stateDirectory = gcStateDirectoryFlag(entry.file);
  const gcOf = (path: string | undefined) =>
    `vcnet gc${path === undefined ? '' : ` --netns ${shellWord(path)}`}${stateDirectory}`;
  const decision = decideUnreadable(toldByUnreadable(text), {
    whereabouts: (identity, path): UnreadableNamespaceWhereabouts => {
      const place = placeOfRecordedNamespace({ path, ...identity }, holders(), cookies);
      if (place.at === 'nowhere')
        return { at: 'nowhere', ...(place.laterCookie === undefined ? {} : { laterCookie: place.laterCookie }) };
      if (place.at === 'unseen') return place;
      return { at: 'there', ...(place.at === 'elsewhere' ? { heldAt: place.heldAt } : {}) };
    },
  });
  // Where its namespace is when the recorded path does not hold it: the listing's namespaceHeldAt.
  const heldAt = decision.action === 'keep' && decision.because === 'namespace-there' ? decision.heldAt : undefined;
  const hint = ((): string => {
    switch (decision.action) {
      case 'drop':
        if (decision.because === 'earlier-boot') {
          const { earlier } = decision;
          return `written in an earlier boot, as its boot id and creation time both still tell (boot id ${earlier.bootId}; this boot is ${earlier.currentBootId}): what it names went with that boot; \`${gcOf(decision.path)}\` drops the record`;
        }
        return `its namespace (inode ${decision.identity.ino}, as the record still tells) is gone${decision.laterCookie === undefined ? '' : ` (a later namespace has its inode now, cookie ${decision.laterCookie})`}, and what the record made went with it: \`${gcOf(decision.path)}\` drops the record`;
      case 'drop-once-gone':
        // Not given without whereabouts, which list always looks for.
        return `gc drops it once its namespace (inode ${decision.identity.ino}) is gone (\`${gcOf(decision.path)}\`)`;
      case 'keep':
        break;
    }
    switch (decision.because) {
      case 'namespace-unseen':
        return `gc keeps it: whether its namespace (inode ${decision.identity.ino}) still exists cannot be told (${describeUnseen(decision.unseen)}); ${hintForUnseen(decision.unseen)}`;
      case 'namespace-there': {
        const { identity, path } = decision;
        // Collected where the namespace is now: gc --netns at a recorded path that no longer holds it
        // (moved, or a byte of it damaged) finds nothing there to collect.
        const settle = settleByHand(owner, decision.heldAt ?? path);
        if (identity.cookie === undefined)
          return `gc keeps it: a namespace with inode ${identity.ino} is there now, and without a readable cookie nothing tells whether it is the recorded one or a later one that got the inode; gc drops the record once nothing holds that inode, and leaves vcnet's links in that namespace alone meanwhile; to settle it now: ${settle}`;
        return `gc keeps it while its namespace (inode ${identity.ino}) is there${decision.heldAt === undefined ? '' : ` (at ${decision.heldAt})`}, leaving vcnet's links there alone, and drops it once that namespace is gone (\`${gcOf(path)}\`); to settle it now: ${settle}`;
      }
      case 'path-only':
        return `gc keeps it, and leaves the namespace now at ${decision.path} alone: the record's namespace identity is damaged, so whether that namespace is the recorded one cannot be told; ${settleByHand(owner, decision.path)}`;
      case 'unknown':
        return `it does not say which namespace it is about${decision.path === undefined ? '' : ` (it names ${decision.path}, where no namespace is now)`}, so gc keeps it and removes no link, filter or qdisc in any namespace while it is there; ${settleByHand(owner, undefined)}`;
    }
  })();
  return heldAt === undefined ? { hint } : { hint, heldAt };
}

/**
 * A record (or directory) that could not be read: listed, with its error's code, message and hint,
 * and the namespace path it names when that part of its text (if read) is whole.
 */
function unreadableListing(
  entry: Pick<RecordEntry, 'key' | 'root' | 'file'> & { interfaceName?: string; id?: string },
  error: unknown,
  text?: string,
): SandboxListing {
  const told = text === undefined ? undefined : salvageNamespacePathTold(text);
  const { code, errno } = classifyError(error);
  const message = (error as Error)?.message ?? String(error);
  const hint = error instanceof VcnetError ? error.hint : undefined;
  return {
    id: entry.key,
    kind: entry.interfaceName === undefined ? 'sandbox' : 'cni',
    ...(entry.interfaceName !== undefined && entry.id !== undefined
      ? { containerId: entry.id, interfaceName: entry.interfaceName }
      : {}),
    state: 'unreadable',
    detail: message,
    ...(told !== undefined ? { namespacePath: told.path } : {}),
    ...(told?.notUtf8 ? { namespacePathNotUtf8: true as const } : {}),
    ...(hint ? { hint } : {}),
    endpoints: [],
    stateDirectory: entry.root,
    file: entry.file,
    error: { code, message, ...(hint ? { hint } : {}), ...(errno !== undefined ? { errno } : {}) },
  };
}
