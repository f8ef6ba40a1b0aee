/**
 * Endpoints waiting for the guest without the sandbox lock (SandboxState.guestPending): add-iface
 * records the plugged endpoint with an entry here, gives the lock back while the guest shows the NIC
 * and its agent configures it, then takes the lock again to finish or undo it. What every other
 * command needs of these entries: whose they are, whether their add-iface still runs, and which
 * endpoints a push of the whole set leaves out.
 */
import { randomUUID } from 'node:crypto';
import { readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { longestPushMs } from '../agent/push-network.js';
import { hasSysPtrace, isKernelThread, isPermissionRefusal, procHidesProcesses } from '../netns/processes.js';
import type { Endpoint } from '../network/endpoint/endpoint.js';
import type { GuestPending, GuestPendingCommand, PidNamespaceId, SandboxState } from '../network/state/records.js';
import { defaultLockTimeoutMs } from '../network/state/store.js';

/** How long add-iface and the watch give each agent call of their push after a hot-plug. */
export const GUEST_PUSH_TIMEOUT_MS = 60_000;

/**
 * The longest an add-iface or watch keeps its entry after `since`: its push (longestPushMs: one
 * agent call per interface it sends, `interfaces`, each with the retries of a NIC not shown yet, then
 * routes and neighbours, at GUEST_PUSH_TIMEOUT_MS each), the lock taken again (`lockTimeoutMs`, its
 * own lock wait) and the route set sent again (30 s). Recorded in the entry (`waitsUntil`): a reader
 * that cannot see the command's process takes it as stopped past that.
 */
export function guestPendingWaitBoundMs(lockTimeoutMs: number, interfaces = 1): number {
  return longestPushMs(interfaces, GUEST_PUSH_TIMEOUT_MS) + lockTimeoutMs + 30_000;
}

/**
 * The bound an entry of an earlier build, which records no `waitsUntil`, is read with: 4 minutes, as
 * that build reckoned its push (three calls of 60 s, the default lock wait and the route set again);
 * its command may have waited longer for the lock (VCNET_LOCK_TIMEOUT).
 */
export const GUEST_PENDING_WAIT_BOUND_MS = 4 * 60_000;

/** The initial PID namespace's inode (the kernel's PROC_PID_INIT_INO): every other one descends from it. */
const INITIAL_PID_NAMESPACE_INODE = 0xeffffffc;

/** USER_HZ, the unit of /proc/PID/stat's start time: 100 on every architecture Node runs on. */
const CLOCK_TICKS_PER_SECOND = 100;
const NANOSECONDS_PER_TICK = BigInt(1e9 / CLOCK_TICKS_PER_SECOND);

/** The initial time namespace's inode (the kernel's PROC_TIME_INIT_INO), whose offsets are 0. */
const INITIAL_TIME_NAMESPACE_INODE = 0xeffffffa;

/** bootTimeOffsetNanoseconds once read: `unreadable` when it could not be. */
let bootTimeOffsetRead: { offset: bigint } | 'unreadable' | undefined;

/**
 * The boot-time offset of this process's time namespace, in nanoseconds: 0 outside such a namespace,
 * or where the kernel has none (before 5.6). The kernel shows every process's start time shifted by
 * the READER's offset (a CRIU-restored container, runc's `timeOffsets`, `unshare --time`), so the
 * same process has another start time from another time namespace. Undefined in a time namespace of
 * its own whose /proc/self/timens_offsets cannot be read (masked with an empty file, as runtimes mask
 * /proc files, or refused by a security module): taking 0 there would shift every start time this
 * process reads. Read once: a process does not change its time namespace.
 */
function bootTimeOffsetNanoseconds(): bigint | undefined {
  bootTimeOffsetRead ??= readBootTimeOffset();
  return bootTimeOffsetRead === 'unreadable' ? undefined : bootTimeOffsetRead.offset;
}

function readBootTimeOffset(): { offset: bigint } | 'unreadable' {
  try {
    // "boottime <seconds> <nanoseconds>", the seconds possibly negative, the nanoseconds 0..999999999.
    const match = /^boottime\s+(-?\d+)\s+(\d+)\s*$/m.exec(readFileSync('/proc/self/timens_offsets', 'utf8'));
    if (match) return { offset: BigInt(match[1] ?? '0') * 1_000_000_000n + BigInt(match[2] ?? '0') };
  } catch {
    // told below by the namespace itself
  }
  try {
    // The initial time namespace has no offset; any other may have one this process cannot know.
    return statSync('/proc/self/ns/time').ino === INITIAL_TIME_NAMESPACE_INODE ? { offset: 0n } : 'unreadable';
  } catch (error) {
    // No such link: a kernel without time namespaces, whose start times are its own.
    return (error as NodeJS.ErrnoException).code === 'ENOENT' ? { offset: 0n } : 'unreadable';
  }
}

/** `a / b` rounded down (BigInt's division rounds toward 0); `b` > 0. */
function floorDivide(a: bigint, b: bigint): bigint {
  const quotient = a / b;
  return a % b < 0n ? quotient - 1n : quotient;
}

/** 2^63 and 2^64 nanoseconds: the kernel keeps times below the first, and counts a start as a u64. */
const NANOSECONDS_TIME_MAX = 2n ** 63n;
const NANOSECONDS_U64_WRAP = 2n ** 64n;

/**
 * A start time `shown` (ticks, as this process's time namespace shows it) as the initial time
 * namespace shows it: `offset` (nanoseconds) taken off, in whole ticks, the same value or one tick
 * more (see sameStart). A process that started before this namespace's boot (its offset negative by
 * more than that process had run at its start) is shown wrapped below 0: the kernel adds the offset
 * to an unsigned count of nanoseconds, so it shows about 1.8e12 ticks, undone here.
 */
function startWithoutOffset(shown: bigint, offset: bigint): bigint {
  const shownNanoseconds = shown * NANOSECONDS_PER_TICK;
  if (shownNanoseconds < NANOSECONDS_TIME_MAX) return shown - floorDivide(offset, NANOSECONDS_PER_TICK);
  // The start lies in [lowest, lowest + one tick): its tick is that of lowest, or the next.
  const lowest = shownNanoseconds - NANOSECONDS_U64_WRAP - offset;
  return floorDivide(lowest, NANOSECONDS_PER_TICK) + 1n;
}

/**
 * The start time of process `pid` (field 22 of /proc/PID/stat, in clock ticks since boot) as the
 * initial time namespace shows it: this process's boot-time offset taken off, so a writer and a
 * reader in different time namespaces record and see the same value (give or take the one tick the
 * kernel's rounding of an offset that is not whole ticks may add: see sameStart). Undefined once it
 * is gone.
 */
function processStart(pid: number | string): string | undefined | typeof NOT_PERMITTED {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: fields are counted after its last ')'.
    const shown = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
    if (shown === undefined) return undefined;
    const offset = bootTimeOffsetNanoseconds();
    // An unknown offset leaves the start as shown: compared with nothing (see ownStart, sightOf).
    return offset === undefined || offset === 0n || !/^\d+$/.test(shown)
      ? shown
      : String(startWithoutOffset(BigInt(shown), offset));
  } catch (error) {
    // Refused, or hidden by a /proc mounted hidepid=: a pid missing there may be one of those.
    return isPermissionRefusal(error) || procHidesProcesses() !== undefined ? NOT_PERMITTED : undefined;
  }
}

/** What this process may not look at: another user's process (see processStart, pidNamespaceOf). */
const NOT_PERMITTED = 'not-permitted';

/**
 * A /proc whose status files have no NSpid line (Linux before 4.1, older gVisor): a process's pid in
 * its own PID namespace is not shown, so the entry's pid cannot be matched to any process there.
 */
const WITHOUT_NSPID = 'without-nspid';

/**
 * processStart of this process, which may always look at itself. Undefined when its time
 * namespace's offset is unknown: a start shifted by it would match this process from no reader, and
 * without one a reader tells by the pid (an entry of an earlier build records none either).
 */
function ownStart(): string | undefined {
  if (bootTimeOffsetNanoseconds() === undefined) return undefined;
  const start = processStart('self');
  return start === NOT_PERMITTED ? undefined : start;
}

/**
 * Whether two start times (processStart's) are of the same process: equal, or one tick apart. The
 * kernel rounds a start time shifted by a time namespace's offset down to whole ticks, so a writer and
 * a reader whose offsets hold parts of a tick may see the same start a tick apart. No other process
 * has that pid so soon: a pid comes back only once the kernel has handed out every other one.
 */
function sameStart(recorded: string, seen: string): boolean {
  if (recorded === seen) return true;
  const a = Number(recorded);
  const b = Number(seen);
  return Number.isSafeInteger(a) && Number.isSafeInteger(b) && Math.abs(a - b) === 1;
}

/** The PID namespace of process `pid` (`self`: this one); undefined when it cannot be looked at. */
function pidNamespaceOf(pid: number | string): PidNamespaceId | undefined | typeof NOT_PERMITTED {
  try {
    const link = statSync(`/proc/${pid}/ns/pid`);
    return { device: link.dev, inode: link.ino };
  } catch (error) {
    // Another user's: the kernel lets only root, CAP_SYS_PTRACE or a process allowed to ptrace it read its namespace links.
    return isPermissionRefusal(error) ? NOT_PERMITTED : undefined;
  }
}

/** pidNamespaceOf this process, which may always look at itself. */
function ownPidNamespace(): PidNamespaceId | undefined {
  const namespace = pidNamespaceOf('self');
  return namespace === NOT_PERMITTED ? undefined : namespace;
}

function sameNamespace(a: PidNamespaceId, b: PidNamespaceId): boolean {
  return a.device === b.device && a.inode === b.inode;
}

/**
 * Which PID namespace's pids this /proc shows, as against this process's: `own`; `ancestor` (one
 * mounted in a parent namespace: `unshare --pid --fork` without --mount-proc, a container given the
 * host's /proc), which shows this process under another pid, so /proc/<its getpid()> there is
 * another process; or `none`, where /proc/self names nothing: a procfs of a namespace this process
 * is not in (a container's mount namespace entered without its PID namespace, `nsenter -m`), or no
 * procfs, where no pid can be looked up at all.
 */
function procView(): 'own' | 'ancestor' | 'none' {
  try {
    return readlinkSync('/proc/self') === String(process.pid) ? 'own' : 'ancestor';
  } catch {
    return 'none';
  }
}

/**
 * A new entry for `endpoint`, this process's (`by`: the command it runs), whose push sends
 * `wait.interfaces` interfaces (default 1) and which takes the lock again within
 * `wait.lockTimeoutMs` (default VCNET_LOCK_TIMEOUT or 30 s) once the guest's part is done.
 */
export function guestPendingEntry(
  endpoint: Endpoint,
  by: GuestPendingCommand,
  wait: { lockTimeoutMs?: number | undefined; interfaces?: number } = {},
): GuestPending {
  const lockTimeoutMs = wait.lockTimeoutMs ?? defaultLockTimeoutMs();
  // Through `self`: /proc/<process.pid> is another process when this /proc is a parent namespace's.
  const pidStart = ownStart();
  const pidNamespace = ownPidNamespace();
  const now = Date.now();
  return {
    name: endpoint.name,
    podLink: endpoint.properties.link.name,
    token: randomUUID(),
    pid: process.pid,
    ...(pidStart !== undefined ? { pidStart } : {}),
    ...(pidNamespace !== undefined ? { pidNamespace } : {}),
    since: new Date(now).toISOString(),
    waitsUntil: new Date(now + guestPendingWaitBoundMs(lockTimeoutMs, wait.interfaces)).toISOString(),
    by,
  };
}

/**
 * What a reader sees of an entry's process: `same` (its pid namespace is the reader's, and the
 * reader's /proc shows that namespace's pids; or the entry names none: the pid looked up as it is),
 * `translated` (another namespace the reader sees processes of, or the reader's own seen through a
 * parent namespace's /proc: `start` is that of the process with the entry's pid in that namespace,
 * undefined when there is none), or
 * `unseen` (a namespace the reader sees no process of: an ancestor's, a sibling's, or one gone; or
 * any, through a /proc that shows no pid of the reader's own; `initial` when the reader is in the
 * initial namespace, where every live namespace shows), or `not-permitted` (the reader may not look
 * at the processes that would tell: another user's, to a reader without root), or `without-nspid`
 * (the namespace's processes show, but not their pids in it: no NSpid lines in this /proc), or
 * `time-offset-unreadable` (a process has the entry's pid, but the reader's time namespace does not
 * show its offset, which shifts the start time it sees, so whether it is the entry's cannot be told).
 */
export type GuestPendingSight =
  | { kind: 'same'; start: string | undefined }
  | { kind: 'translated'; start: string | undefined }
  | { kind: 'unseen'; initial: boolean }
  | { kind: 'not-permitted' }
  | { kind: 'without-nspid' }
  | { kind: 'time-offset-unreadable' };

/** Whether the entry's command still runs, and whether that is a guess (told by time, its process out of sight). */
export interface GuestPendingVerdict {
  running: boolean;
  guessed: boolean;
  /** Set on a guess made because this process may not look at the entry's process (another user's). */
  notPermitted?: true;
  /** Set on a guess made because this /proc shows no process's pid in its own namespace (no NSpid lines). */
  withoutNSpid?: true;
  /** Set on a guess made because this process's time namespace does not show its offset (timens_offsets). */
  timeOffsetUnreadable?: true;
}

/**
 * The decision, from what the reader sees (`sight`) at `nowMs`: a process seen is the entry's when
 * its start time is the recorded one, and waits no longer than the `waitsUntil` it recorded; a
 * namespace out of sight (or whose pids this /proc does not show) is a guess, the command running
 * until the entry's `waitsUntil` (an earlier build's entry: GUEST_PENDING_WAIT_BOUND_MS past
 * `since`). From the initial namespace none is out of sight but a dead one: stopped, surely.
 */
export function decideGuestPending(entry: GuestPending, sight: GuestPendingSight, nowMs: number): GuestPendingVerdict {
  // Past its own deadline the command waits no more, though its process may live on: a library
  // caller's addInterface (or a watch) whose finish could not take the lock again left the entry
  // behind and returned. The deadline bounds its push, the part without the lock, with room to
  // spare: it counts the lock wait and the route set sent again too.
  const deadline = entry.waitsUntil === undefined ? Number.NaN : Date.parse(entry.waitsUntil);
  const pastDeadline = Number.isFinite(deadline) && nowMs >= deadline;
  if (sight.kind === 'same' || sight.kind === 'translated') {
    const alive = sight.start !== undefined && (entry.pidStart === undefined || sameStart(entry.pidStart, sight.start));
    return { running: alive && !pastDeadline, guessed: false };
  }
  // Which process it is matters only before the deadline.
  if (sight.kind === 'time-offset-unreadable' && pastDeadline) return { running: false, guessed: false };
  if (sight.kind === 'unseen' && sight.initial) return { running: false, guessed: false };
  const until = guestPendingWaitEnd(entry);
  // An unreadable time gives no bound to wait for: taken as past it.
  const running = Number.isFinite(until) && nowMs < until;
  return {
    running,
    guessed: true,
    ...(sight.kind === 'not-permitted' ? { notPermitted: true as const } : {}),
    ...(sight.kind === 'without-nspid' ? { withoutNSpid: true as const } : {}),
    ...(sight.kind === 'time-offset-unreadable' ? { timeOffsetUnreadable: true as const } : {}),
  };
}

/**
 * Why this process may not look at a command's process (`reason`), and which `vcnet list` may
 * (`remedy`). The kernel lets a reader at another process's namespace links when it has the same
 * uid and every capability that process has, or CAP_SYS_PTRACE: a user other than root lacks the
 * first; root lacks it for a process with capabilities it has not (root without CAP_SYS_PTRACE, a
 * container's); root with CAP_SYS_PTRACE is refused only by a security module or a user namespace
 * boundary. `euid` and `status` (/proc/self/status) are this process's unless given.
 */
export function notPermittedWhy(euid?: number, status?: string): NotPermittedWhy {
  // This process's own is read once: `vcnet list` asks for each record it notes, and the answer
  // (its euid, its capabilities: /proc/self/status) does not change while it runs.
  if (euid === undefined && status === undefined) {
    ownNotPermittedWhy ??= notPermittedWhyOf(process.geteuid?.() ?? 0, undefined);
    return ownNotPermittedWhy;
  }
  return notPermittedWhyOf(euid ?? process.geteuid?.() ?? 0, status);
}

interface NotPermittedWhy {
  reason: string;
  remedy: string;
}

let ownNotPermittedWhy: NotPermittedWhy | undefined;

function notPermittedWhyOf(euid: number, status: string | undefined): NotPermittedWhy {
  if (euid !== 0) {
    return {
      reason: "another user's process: looking at it takes root or CAP_SYS_PTRACE",
      remedy: '`vcnet list` as root tells by the process',
    };
  }
  if (!hasSysPtrace(status)) {
    return {
      reason:
        'a process with capabilities this one lacks: root without CAP_SYS_PTRACE may look only at processes whose capabilities it has itself',
      remedy: '`vcnet list` as root with CAP_SYS_PTRACE tells by the process',
    };
  }
  return {
    reason: 'refused by a security module or a user namespace boundary, which no capability of this process lifts',
    remedy: "`vcnet list` as the host's root, outside that boundary, tells by the process",
  };
}

/** Why a reader's /proc cannot tell which process of another PID namespace is the command's. */
export const WITHOUT_NSPID_REASON =
  'this /proc shows no pid of its PID namespace (no NSpid lines in /proc/PID/status: Linux before 4.1, or an older gVisor)';

/** Why a reader cannot tell whether the process with an entry's pid is the entry's command. */
export const TIME_OFFSET_UNREADABLE_REASON =
  "this process's time namespace does not show its boot-time offset (/proc/self/timens_offsets unreadable), which shifts the start time it sees of the process with the command's pid";

/**
 * What a note adds about a verdict told by time (`guessed`): that it is a guess, why, and the time
 * it turns (or turned) on. Undefined for a verdict told by the command's process.
 */
export function guessedWords(entry: GuestPending, verdict: GuestPendingVerdict): string | undefined {
  if (!verdict.guessed) return undefined;
  const end = guestPendingWaitEnd(entry);
  // Whole seconds: the bound is a guess, its milliseconds only noise.
  const at = Number.isFinite(end) ? new Date(end).toISOString().replace(/\.\d{3}Z$/, 'Z') : 'an unreadable time';
  if (verdict.withoutNSpid)
    return verdict.running
      ? `guessed: ${WITHOUT_NSPID_REASON}, so it is taken as waiting until its longest wait ends, at ${at}`
      : `guessed: ${WITHOUT_NSPID_REASON}, and its longest wait ended at ${at}`;
  if (verdict.timeOffsetUnreadable)
    return verdict.running
      ? `guessed: ${TIME_OFFSET_UNREADABLE_REASON}, so it is taken as waiting until its longest wait ends, at ${at}`
      : `guessed: ${TIME_OFFSET_UNREADABLE_REASON}, and its longest wait ended at ${at}`;
  if (verdict.notPermitted) {
    const { reason } = notPermittedWhy();
    return verdict.running
      ? `guessed: this process may not look at it (${reason}), so it is taken as waiting until its longest wait ends, at ${at}`
      : `guessed: this process may not look at it (${reason}), and its longest wait ended at ${at}`;
  }
  return verdict.running
    ? `guessed: it runs in a PID namespace not seen from here, so it is taken as waiting until its longest wait ends, at ${at}`
    : `guessed: it ran in a PID namespace not seen from here, and its longest wait ended at ${at}`;
}

/** When `entry`'s command stops waiting at the latest (ms since the epoch; NaN when its time is unreadable). */
export function guestPendingWaitEnd(entry: GuestPending): number {
  if (entry.waitsUntil !== undefined) return Date.parse(entry.waitsUntil);
  return Date.parse(entry.since) + GUEST_PENDING_WAIT_BOUND_MS;
}

/**
 * The process with pid `pid` in namespace `namespace`, found through this /proc: a process whose
 * namespace it is, and whose NSpid line (its pid in each namespace from this /proc's down to its own)
 * ends in `pid`. Undefined when no process of that namespace shows here; else its start time, or
 * undefined when none has that pid; WITHOUT_NSPID when this /proc gives no NSpid line to match.
 */
function findInNamespace(
  namespace: PidNamespaceId,
  pid: number,
): { start: string | undefined } | typeof NOT_PERMITTED | typeof WITHOUT_NSPID | undefined {
  let names: string[];
  try {
    names = readdirSync('/proc');
  } catch {
    return undefined;
  }
  let seen = false;
  // Refusals that leave the process sought unfound but perhaps among those refused. Not a kernel
  // thread's (refused to root without CAP_SYS_PTRACE too), never a command's; nor pid 1's, the init
  // of this /proc's namespace (a machine's or container's init, which may refuse even root).
  let notPermitted = false;
  // A process of the namespace without an NSpid line might be the one sought: none can be ruled out.
  let withoutNSpid = false;
  for (const name of names) {
    if (!/^\d+$/.test(name)) continue;
    const of = pidNamespaceOf(name);
    if (of === NOT_PERMITTED && name !== '1' && !isKernelThread(Number(name))) notPermitted = true;
    if (of === undefined || of === NOT_PERMITTED || !sameNamespace(of, namespace)) continue;
    seen = true;
    let status: string;
    try {
      status = readFileSync(`/proc/${name}/status`, 'utf8');
    } catch {
      continue;
    }
    const nspid = /^NSpid:\s*(.*)$/m.exec(status)?.[1]?.trim().split(/\s+/);
    if (nspid === undefined) withoutNSpid = true;
    if (nspid?.at(-1) === String(pid)) {
      const start = processStart(name);
      // Gone between the two reads: looked at as any other pid of the namespace.
      if (start !== undefined && start !== NOT_PERMITTED) return { start };
    }
  }
  if (withoutNSpid) return WITHOUT_NSPID;
  if (notPermitted || procHidesProcesses() !== undefined) return NOT_PERMITTED;
  return seen ? { start: undefined } : undefined;
}

/**
 * What this process sees of `entry`'s process (see GuestPendingSight): a process found with its pid
 * whose start cannot be compared with the recorded one (this time namespace's offset unknown) is a
 * guess; none found is told as it is.
 */
function sightOf(entry: GuestPending): GuestPendingSight {
  const sight = sightOfProcess(entry);
  const comparesStart = (sight.kind === 'same' || sight.kind === 'translated') && sight.start !== undefined;
  if (comparesStart && entry.pidStart !== undefined && bootTimeOffsetNanoseconds() === undefined)
    return { kind: 'time-offset-unreadable' };
  return sight;
}

function sightOfProcess(entry: GuestPending): GuestPendingSight {
  const view = procView();
  // Its pids are another namespace's, or none: a lookup there would call a running command stopped.
  if (view === 'none') return { kind: 'unseen', initial: false };
  const own = ownPidNamespace();
  const sameAs = (start: ReturnType<typeof processStart>): GuestPendingSight =>
    start === NOT_PERMITTED ? { kind: 'not-permitted' } : { kind: 'same', start };
  if (entry.pidNamespace === undefined || own === undefined) return sameAs(processStart(entry.pid));
  // The entry's pid is one of this namespace: looked up as it is only when this /proc shows this namespace's pids.
  if (sameNamespace(own, entry.pidNamespace) && view === 'own') return sameAs(processStart(entry.pid));
  const found = findInNamespace(entry.pidNamespace, entry.pid);
  if (found === NOT_PERMITTED) return { kind: 'not-permitted' };
  if (found === WITHOUT_NSPID) return { kind: 'without-nspid' };
  if (found) return { kind: 'translated', start: found.start };
  return { kind: 'unseen', initial: own.inode === INITIAL_PID_NAMESPACE_INODE };
}

/**
 * Whether process `pid`, as this /proc shows it (the holder /proc/locks names of the sandbox's lock),
 * is the command that wrote `entry`: its pid in its own PID namespace, that namespace and its start
 * time those the entry records. False when any of them cannot be told.
 */
export function isEntryProcess(entry: GuestPending, pid: number): boolean {
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return false;
  }
  // Its pid in its own namespace: the last of its NSpid line (none before Linux 4.1: this one).
  const ownPid = /^NSpid:\s*(.*)$/m.exec(status)?.[1]?.trim().split(/\s+/).at(-1) ?? String(pid);
  if (ownPid !== String(entry.pid)) return false;
  if (entry.pidNamespace !== undefined) {
    const namespace = pidNamespaceOf(pid);
    if (namespace === undefined || namespace === NOT_PERMITTED || !sameNamespace(namespace, entry.pidNamespace))
      return false;
  }
  if (entry.pidStart === undefined) return true;
  // A start seen shifted by an unknown offset tells nothing.
  if (bootTimeOffsetNanoseconds() === undefined) return false;
  const start = processStart(pid);
  return start !== undefined && start !== NOT_PERMITTED && sameStart(entry.pidStart, start);
}

/** Whether the command that wrote `entry` still runs, as this process can tell (see decideGuestPending). */
export function guestPendingVerdict(entry: GuestPending, nowMs = Date.now()): GuestPendingVerdict {
  return decideGuestPending(entry, sightOf(entry), nowMs);
}

/**
 * Whether `entry` is this process's: its pid, in this PID namespace (two containerised commands may
 * both be pid 1), and its start time.
 */
export function isOwnEntry(entry: GuestPending): boolean {
  if (entry.pid !== process.pid) return false;
  const own = ownPidNamespace();
  if (entry.pidNamespace !== undefined && own !== undefined && !sameNamespace(own, entry.pidNamespace)) return false;
  const start = ownStart();
  return entry.pidStart === undefined || (start !== undefined && sameStart(entry.pidStart, start));
}

/** Whether the add-iface (or watch) that wrote `entry` still runs (the same process, started at the same time). */
export function guestPendingRunning(entry: GuestPending): boolean {
  return guestPendingVerdict(entry).running;
}

/** The verdict of each of `state`'s guestPending entries, by token: read once, for every use a command makes of them. */
export type GuestPendingVerdicts = ReadonlyMap<string, GuestPendingVerdict>;

/** guestPendingVerdict of every entry of `state`, at one moment. */
export function guestPendingVerdicts(state: SandboxState, nowMs = Date.now()): GuestPendingVerdicts {
  return new Map((state.guestPending ?? []).map((entry) => [entry.token, guestPendingVerdict(entry, nowMs)]));
}

/**
 * The endpoints a push of the whole set (routes, interfaces) leaves out: those an add-iface still
 * running is waiting for the guest to show. Their routes name a NIC the guest may not have yet (the
 * agent would refuse the whole set), and their add-iface sends them itself. `verdicts`: as the
 * caller read them (a command that also says what it left out must say it of the same verdicts).
 */
export function awaitedByAnother(state: SandboxState, verdicts = guestPendingVerdicts(state)): Set<string> {
  return new Set(
    (state.guestPending ?? []).filter((entry) => verdicts.get(entry.token)?.running).map((entry) => entry.name),
  );
}

/** `endpoints` without those awaitedByAnother names. */
export function withoutAwaited<T extends Endpoint>(
  endpoints: readonly T[],
  state: SandboxState,
  verdicts?: GuestPendingVerdicts,
): T[] {
  const awaited = awaitedByAnother(state, verdicts);
  return endpoints.filter((endpoint) => !awaited.has(endpoint.name));
}

/** Whether `entry` (a guestPending or unplugUnfinished entry) is about `endpoint`: the same guest name and pod link. */
export function entryNames(
  entry: { name: string; podLink: string },
  endpoint: { name: string; properties: { link: { name: string } } },
): boolean {
  return endpoint.name === entry.name && endpoint.properties.link.name === entry.podLink;
}

/**
 * The entries (guestPending or unplugUnfinished ones) whose endpoint the record still holds (by name
 * and pod link): an endpoint removed (del-iface, the watch, an undo) takes its entry with it.
 * Undefined when none are left.
 */
export function entriesOfEndpoints<Entry extends { name: string; podLink: string }>(
  entries: readonly Entry[] | undefined,
  endpoints: readonly Endpoint[],
): Entry[] | undefined {
  const kept = (entries ?? []).filter((entry) => endpoints.some((endpoint) => entryNames(entry, endpoint)));
  return kept.length > 0 ? kept : undefined;
}

/** The entries left once those with `tokens` are removed (undefined when none are). */
export function withoutEntries(
  entries: readonly GuestPending[] | undefined,
  ...tokens: string[]
): GuestPending[] | undefined {
  const kept = (entries ?? []).filter((entry) => !tokens.includes(entry.token));
  return kept.length > 0 ? kept : undefined;
}
