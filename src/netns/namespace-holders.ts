/**
 * The search for what still holds a namespace whose recorded path is gone (or names another one now):
 * a /var/run/netns entry, a process or thread in it, an nsfs mount of it, an fd on it. Detach and gc
 * reach the recorded namespace through a holder, by identity (namespace-identity.ts), and say when a
 * search could not see everything (NamespaceUnseenError) rather than take the namespace for gone.
 */
import { readdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { errnoOf, VcnetError } from '../errors.js';
import { appendTo } from '../multimap.js';
import { shellWord } from '../shell-word.js';
import {
  type HeldDeviceFd,
  type HeldDeviceIndex,
  type HeldDeviceKind,
  heldDeviceAt,
  namespacesOfHeldDevices,
} from './held-device-fds.js';
import { namespaceFdsByInode, nsfsMountsByInode } from './mountinfo.js';
import {
  isLaterNamespaceOfSameInode,
  NamespaceChangedError,
  type NamespaceIdentity,
  type OpenedNamespace,
  openRecordedNamespace,
  pinnedPathOf,
} from './namespace-identity.js';
import {
  hasSysPtrace,
  isKernelThread,
  isPermissionRefusal,
  lookAtFile,
  processIds,
  procHidesProcesses,
} from './processes.js';

/**
 * Where a namespace of this identity can still be opened when its recorded path is gone: a
 * /var/run/netns entry, then a process (/proc/PID/ns/net), then a thread that entered it alone
 * (/proc/PID/task/TID/ns/net), then an nsfs bind mount of it anywhere (this mount namespace's, then
 * another's through /proc/PID/root), then an fd a process holds on it (/proc/PID/fd/N), then a socket
 * made in it or a tap of it that a process outside it holds (/proc/PID/fd/N too: held-device-fds.ts);
 * each only when the ones before found nothing. A VMM or a holder left in a namespace whose bind mount was
 * deleted, or a runtime's own mount of it, keeps it, and what attach made in it, alive.
 */
export function namespaceHolderPaths(
  identity: { dev: number; ino: number },
  /** Look at threads too when no process has it (default); false stops at processes. */
  options: { threads?: boolean } = {},
): string[] {
  return new NamespaceHolders().of(identity, options);
}

/**
 * Whether `path` reaches something through this process (/proc/self/..., /proc/thread-self/...,
 * /dev/fd/N, /proc/<its pid>/...): in a command quoted for a host shell it names the pasting
 * process's own (another namespace, or none), and once this process exits, nothing.
 */
export function isOwnProcessPath(path: string): boolean {
  const absolute = resolve(path);
  const pid = /^\/proc\/(\d+|self|thread-self)(?:\/|$)/.exec(absolute)?.[1];
  if (pid !== undefined) return pid === 'self' || pid === 'thread-self' || Number(pid) === process.pid;
  return /^\/dev\/(?:fd(?:\/|$)|stdin$|stdout$|stderr$)/.test(absolute);
}

/**
 * The path a command quoted for a host shell enters the namespace at `path` by: `path` itself, unless
 * it reaches the namespace through this process (isOwnProcessPath: `vcnet gc --netns /proc/self/fd/3`,
 * or a namespace only this process is in), or through another process's socket or tap
 * (/proc/PID/fd/N, heldDeviceAt), which a pasted command cannot (nsenter cannot open a socket); then
 * another holder of it (namespaceHolderPaths: a /var/run/netns pin, a process in it, a mount, another
 * process's fd on it), leaving out this process's own and the sockets and taps. undefined: none found.
 */
export function pathOutlivingThisProcess(path: string, identity: { dev: number; ino: number }): string | undefined {
  if (!isOwnProcessPath(path) && heldDeviceAt(path) === undefined) return path;
  return namespaceHolderPaths(identity).find(
    (holder) => !isOwnProcessPath(holder) && heldDeviceAt(holder) === undefined,
  );
}

/**
 * namespaceHolderPaths for many namespaces at once (gc: one look per gone record): each place is
 * listed at most once, the first time a namespace looked for needs it (processes, then threads,
 * then nsfs mounts, then every process's fds), and indexed by inode; what a list found is checked
 * (stat'ed) against the identity asked about only then. A snapshot: it does not see holders that
 * appear after a place was listed.
 */
export class NamespaceHolders {
  #pids: number[] | undefined;
  #processes: Map<string, string[]> | undefined;
  #threads: Map<string, string[]> | undefined;
  #ownMounts: Map<number, string[]> | undefined;
  #otherMounts: Map<number, string[]> | undefined;
  #fds: Map<number, string[]> | undefined;
  /** The sockets and tun/tap fds the walk for #fds read, asked about only when it found nothing. */
  readonly #deviceFds: HeldDeviceFd[] = [];
  #devices: HeldDeviceIndex | undefined;
  /**
   * The processes some look of this search was refused at (EACCES, EPERM: another user's process
   * without CAP_SYS_PTRACE): any of them may hold the namespace. A process that exited is not here,
   * nor a kernel thread (see #kernelThreads).
   */
  readonly #refused = new Set<number>();
  /**
   * Refused processes that are kernel threads (PF_KTHREAD): they run in the initial namespaces and
   * hold no fds, so they hold no namespace vcnet made; not counted, and not looked into again (their
   * threads, mounts and fds). Without CAP_SYS_PTRACE root is refused every one of them, which made a
   * search never able to say a namespace is gone.
   */
  readonly #kernelThreads = new Set<number>();
  /** Places outside /proc/PID it was refused at (a bind mount of the namespace in a directory it cannot search). */
  readonly #refusedPaths = new Set<string>();
  #hidepid: string | undefined | null = null;
  readonly #askDevices: boolean;

  /** `devices: false` stops before the sockets and taps (the benchmark's baseline: the search as it was without them). */
  constructor(options: { devices?: boolean } = {}) {
    this.#askDevices = options.devices ?? true;
  }

  /** Where a namespace of this identity can still be opened, as namespaceHolderPaths says. */
  of(identity: { dev: number; ino: number }, options: { threads?: boolean } = {}): string[] {
    const found: string[] = [];
    const pinned = pinnedPathOf(identity);
    if (pinned) found.push(pinned);
    found.push(...(this.#processesByKey().get(`${identity.dev}:${identity.ino}`) ?? []));
    if (found.length > 0 || options.threads === false) return found;
    found.push(...(this.#threadsByKey().get(`${identity.dev}:${identity.ino}`) ?? []));
    if (found.length > 0) return found;
    // Then a bind mount of it outside /var/run/netns (Docker's /var/run/docker/netns/*, rootless
    // podman's /run/user/UID/netns/*), in this mount namespace, then in another one.
    const same = (path: string) => {
      const looked = lookAtFile(path);
      if (looked === 'refused') this.refusedAt(path);
      return typeof looked === 'object' && looked.dev === identity.dev && looked.ino === identity.ino;
    };
    const refuse = (pid: number) => this.#refuse(pid);
    this.#ownMounts ??= nsfsMountsByInode(['self'], refuse);
    found.push(...(this.#ownMounts.get(identity.ino) ?? []).filter(same));
    if (found.length > 0) return found;
    this.#otherMounts ??= nsfsMountsByInode(this.#processesToLookInto(), refuse);
    found.push(...(this.#otherMounts.get(identity.ino) ?? []).filter(same));
    if (found.length > 0) return found;
    // Last, an fd a process keeps open on it (`exec 3</proc/PID/ns/net`, a runtime holding it).
    this.#fds ??= namespaceFdsByInode(this.#processesToLookInto(), refuse, this.#deviceFds);
    found.push(...[...(this.#fds.get(identity.ino) ?? []), ...(this.#fds.get(-1) ?? [])].filter(same));
    if (found.length > 0 || !this.#askDevices) return found;
    // Then a socket made in it, or a tap of it, that a process outside it keeps open: the namespace
    // lives as long as that fd does, and no path of it is left anywhere.
    this.#devices ??= namespacesOfHeldDevices(this.#deviceFds, refuse);
    return [...(this.#devices.byKey.get(`${identity.dev}:${identity.ino}`) ?? [])];
  }

  /** How many sockets and taps the search asked the namespace of (0 when it never got that far): for the benchmark. */
  get devicesAsked(): number {
    return this.#devices?.asked ?? 0;
  }

  /**
   * Why a search that found nothing cannot say the namespace is gone: the processes it could not
   * look into, and /proc's hidepid= when it hides other users' processes. undefined when it saw all.
   * Meaningful after of() found nothing (every place was looked at then).
   */
  unseen(): NamespaceHoldersUnseen | undefined {
    if (this.#hidepid === null) this.#hidepid = procHidesProcesses();
    // With CAP_SYS_PTRACE in effect, a process it is still refused is kept from it by a security
    // module or a user namespace boundary, which no capability lifts: as before, not looked into
    // (else gc would never drop a record where such a process runs, as the init of some sandboxes).
    const processes = this.#refused.size === 0 || hasSysPtrace() ? [] : [...this.#refused].sort((a, b) => a - b);
    const kernelLacks = this.#devices?.kernelLacks ?? [];
    if (
      processes.length === 0 &&
      this.#refusedPaths.size === 0 &&
      this.#hidepid === undefined &&
      kernelLacks.length === 0
    )
      return undefined;
    return {
      processes,
      ...(this.#refusedPaths.size === 0 ? {} : { paths: [...this.#refusedPaths].sort() }),
      ...(this.#hidepid === undefined ? {} : { hidepid: this.#hidepid }),
      ...(kernelLacks.length === 0 ? {} : { kernelLacks: [...kernelLacks] }),
    };
  }

  /** Counts the process a refused /proc/PID/... path belongs to (a holder found that could not be opened, too). */
  refusedAt(path: string): void {
    const pid = /^\/proc\/(\d+)\//.exec(path)?.[1];
    if (pid !== undefined) this.#refuse(Number(pid));
    else this.#refusedPaths.add(path);
  }

  /** A process some look was refused at: counted unless it is a kernel thread (read once, from /proc/PID/stat). */
  #refuse(pid: number): void {
    if (this.#refused.has(pid) || this.#kernelThreads.has(pid)) return;
    if (isKernelThread(pid)) this.#kernelThreads.add(pid);
    else this.#refused.add(pid);
  }

  #processIds(): number[] {
    this.#pids ??= processIds();
    return this.#pids;
  }

  /** The processes past the first look (/proc/PID/ns/net): every one but the kernel threads found by then. */
  #processesToLookInto(): number[] {
    if (this.#kernelThreads.size === 0) return this.#processIds();
    return this.#processIds().filter((pid) => !this.#kernelThreads.has(pid));
  }

  #processesByKey(): Map<string, string[]> {
    this.#processes ??= this.#byIdentityKey(this.#processIds().map((pid) => `/proc/${pid}/ns/net`));
    return this.#processes;
  }

  #threadsByKey(): Map<string, string[]> {
    if (this.#threads) return this.#threads;
    const paths: string[] = [];
    for (const pid of this.#processesToLookInto()) {
      let tids: string[];
      try {
        tids = readdirSync(`/proc/${pid}/task`);
      } catch (error) {
        if (isPermissionRefusal(error)) this.#refuse(pid);
        continue;
      }
      // The main thread is the process, looked at above.
      for (const tid of tids) if (Number(tid) !== pid) paths.push(`/proc/${pid}/task/${tid}/ns/net`);
    }
    this.#threads = this.#byIdentityKey(paths);
    return this.#threads;
  }

  /** The paths that can be stat'ed, by their `dev:ino`; a refused one counts its process. */
  #byIdentityKey(paths: readonly string[]): Map<string, string[]> {
    const found = new Map<string, string[]>();
    for (const path of paths) {
      const looked = lookAtFile(path);
      if (looked === 'refused') this.refusedAt(path);
      if (typeof looked !== 'object') continue;
      const key = `${looked.dev}:${looked.ino}`;
      appendTo(found, key, path);
    }
    return found;
  }
}

/** What a holder search could not see (NamespaceHolders.unseen). */
export interface NamespaceHoldersUnseen {
  /** The processes whose /proc/PID/ns/net, threads, mounts or fds it was refused (EACCES, EPERM). */
  processes: number[];
  /** Other places that may hold it and could not be looked at (EACCES): a bind mount, the recorded path. */
  paths?: string[];
  /** /proc's hidepid= when it hides other users' processes from vcnet (no CAP_SYS_PTRACE). */
  hidepid?: string;
  /**
   * The calls this kernel lacks to ask which namespace a socket or tap another process holds
   * belongs to ("pidfd_getfd (Linux 5.6)"): such a holder could not be looked for.
   */
  kernelLacks?: string[];
}

/** Why an unseen search cannot tell, as messages say it. */
export function describeUnseen(unseen: NamespaceHoldersUnseen): string {
  const parts: string[] = [];
  const count = unseen.processes.length;
  if (count > 0)
    parts.push(
      `${count} process${count === 1 ? '' : 'es'} could not be looked into (${count === 1 ? 'its' : 'their'} /proc/PID/ns/net, threads, mounts or fds: permission denied; ${count === 1 ? 'pid' : 'pids'} ${unseen.processes.slice(0, 8).join(', ')}${count > 8 ? ', ...' : ''})`,
    );
  if (unseen.paths !== undefined && unseen.paths.length > 0)
    parts.push(`${unseen.paths.join(', ')} could not be looked at (permission denied)`);
  if (unseen.hidepid !== undefined)
    parts.push(`/proc is mounted with hidepid=${unseen.hidepid}, which hides other users' processes from vcnet`);
  if (unseen.kernelLacks !== undefined && unseen.kernelLacks.length > 0)
    parts.push(
      `this kernel lacks ${unseen.kernelLacks.join(' and ')}, so the sockets and taps processes hold (each keeps the namespace it was made in alive) could not be asked which namespace they belong to`,
    );
  return parts.join('; ');
}

/** What to do about an unseen search, as hints say it. */
export const UNSEEN_HINT =
  "give vcnet CAP_SYS_PTRACE (with it, it may read any process's /proc/PID/ns/net and fds, and sees through /proc's hidepid=), or run it as full root: the holder of the namespace (a VMM run as another user, a runtime's pause process) may be one of those processes";

/**
 * What to do about this unseen search: UNSEEN_HINT when something was hidden from vcnet, which a
 * capability lifts; for a kernel that lacks the calls alone, no capability helps, and it says so.
 */
export function hintForUnseen(unseen: NamespaceHoldersUnseen): string {
  const hidden = unseen.processes.length > 0 || (unseen.paths?.length ?? 0) > 0 || unseen.hidepid !== undefined;
  const kernel =
    unseen.kernelLacks !== undefined && unseen.kernelLacks.length > 0
      ? 'no capability gives this kernel what it lacks: on it, a namespace only a socket or tap keeps alive cannot be told from a gone one (a newer kernel can)'
      : undefined;
  if (kernel === undefined) return UNSEEN_HINT;
  return hidden ? `${UNSEEN_HINT}; ${kernel}` : kernel;
}

/**
 * Whether the namespace a record names still exists cannot be told: its path is gone (or names
 * another namespace, or cannot be looked at), and some process that may hold it could not be looked
 * into. Nothing is done and the record is kept: taking it for gone would forget a live sandbox and
 * leave its tap and filters running in that namespace.
 */
export class NamespaceUnseenError extends VcnetError {
  static override readonly errorName: string = 'NamespaceUnseenError';
  constructor(
    readonly recorded: NamespaceIdentity,
    file: string,
    readonly unseen: NamespaceHoldersUnseen,
    /** What the caller adds before the usual hint (one clause, no final period). */
    firstHint?: string,
  ) {
    super(
      'VCNET_NETNS_UNSEEN',
      `whether the namespace recorded in ${file} (${recorded.path}, inode ${recorded.ino}) still exists cannot be told: ${describeUnseen(unseen)}; the record is kept and nothing was changed`,
      {
        value: recorded.path,
        // No command takes a namespace it could not see for gone: the operator who knows is the way out.
        hint: `${firstHint === undefined ? '' : `${firstHint}; or `}${hintForUnseen(unseen)}; or, once you know nothing holds it any more (the sandbox's VM and every process of its pod have exited), drop the record by hand: rm -r ${shellWord(dirname(file))} (what vcnet made lived in that namespace and went with it)`,
      },
    );
  }
}

/** A recorded namespace opened somewhere other than its recorded path, which is gone. */
export interface RelocatedNamespace {
  opened: OpenedNamespace;
  /** The path it was opened through (a /proc/PID/ns/net, a thread's, or another /var/run/netns entry). */
  heldAt: string;
  /** The process holding it, when found through /proc. */
  pid?: number;
  /** When `heldAt` is a socket made in it or a tap of it, which a process outside it holds: which. */
  through?: HeldDeviceKind;
}

/**
 * Opens a recorded namespace whose path is gone through whatever still holds it, checked by
 * identity (cookie too: an inode number can be handed to a new namespace). undefined when nothing
 * holds it, or a later namespace has its inode (isLaterNamespaceOfSameInode): then it is really gone. NamespaceUnseenError when nothing it could see holds it but some
 * process could not be looked into (no CAP_SYS_PTRACE, /proc's hidepid=): it may not be gone.
 */
export function openNamespaceHeldElsewhere(
  recorded: NamespaceIdentity,
  file: string,
  /** gc's index of holders, shared by all its records (default: looked for afresh). */
  holders: NamespaceHolders = new NamespaceHolders(),
): RelocatedNamespace | undefined {
  for (const heldAt of holders.of(recorded)) {
    let opened: OpenedNamespace;
    try {
      opened = openRecordedNamespace({ ...recorded, path: heldAt }, file);
    } catch (error) {
      // A later namespace has its inode: the recorded one is gone, whatever could not be looked into.
      if (error instanceof NamespaceChangedError && isLaterNamespaceOfSameInode(recorded, error.found))
        return undefined;
      // The process ended meanwhile, the inode now names another namespace, or this holder cannot
      // be opened by us: try the next one.
      const errno = errnoOf(error);
      if (errno === 'EACCES' || errno === 'EPERM') holders.refusedAt(heldAt);
      continue;
    }
    // Records and messages keep naming the recorded path; heldAt says where it was reached.
    opened.identity.path = recorded.path;
    // A process in it (or one of its threads), or one holding an fd on it; a mount has no process.
    const pid = /^\/proc\/(\d+)\/(?:ns|task|fd)\//.exec(heldAt)?.[1];
    const through = heldDeviceAt(heldAt)?.kind;
    return { opened, heldAt, ...(pid ? { pid: Number(pid) } : {}), ...(through ? { through } : {}) };
  }
  // Nothing vcnet could see holds it: gone only when it saw every process (and every holder it
  // found could be opened); else a VMM of another user may be keeping it, and what attach made, alive.
  const unseen = holders.unseen();
  if (unseen) throw new NamespaceUnseenError(recorded, file, unseen);
  return undefined;
}
