/**
 * Who made a test's namespace or a run's temporary directory, written down so that a later run can
 * remove what an interrupted one left (SIGKILL, a crash: no handler ran) without touching what a
 * live run of another user or helper on the same machine made. An owner is a process id with its
 * start time: a dead process's id may be reused, a start time is not.
 */
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * What every test namespace's name starts with: VCNET_TEST_NAMESPACE_PREFIX, for a machine shared by
 * several runs whose namespaces must be told apart by name; `vcnet` by default.
 */
export const NAMESPACE_PREFIX = process.env.VCNET_TEST_NAMESPACE_PREFIX || 'vcnet';

/** `PID STARTTIME` of a live process (starttime: field 22 of /proc/PID/stat), undefined when it is gone. */
export function processIdentity(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: count fields after the last ')'.
    const startTime = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
    return startTime ? `${pid} ${startTime}` : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The clock ticks /proc counts a start time in (USER_HZ): 100 on every Linux architecture, whatever
 * the kernel's own HZ, as procfs(5) and the /proc ABI fix it.
 */
const TICKS_PER_SECOND = 100;

/** When a live process started, in milliseconds since the epoch (its start time after the boot, /proc/stat's btime), undefined when it is gone. */
export function processStartedAt(pid: number): number | undefined {
  const ticks = Number(processIdentity(pid)?.split(' ')[1]);
  const bootSeconds = Number(/^btime (\d+)$/m.exec(readFileSync('/proc/stat', 'utf8'))?.[1]);
  if (!Number.isFinite(ticks) || !Number.isFinite(bootSeconds)) return undefined;
  return bootSeconds * 1000 + (ticks * 1000) / TICKS_PER_SECOND;
}

/** The start times (processStartedAt) of the live processes one of whose arguments contains `name`. */
export function startTimesOfProcessesNamed(name: string): number[] {
  const starts: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let argumentsOf: string[];
    try {
      argumentsOf = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
    } catch {
      continue; // ended meanwhile
    }
    if (!argumentsOf.some((argument) => argument.includes(name))) continue;
    const started = processStartedAt(Number(entry));
    if (started !== undefined) starts.push(started);
  }
  return starts;
}

/** This process's owner record. */
export function ownerRecord(): string {
  return processIdentity(process.pid) ?? `${process.pid} unknown`;
}

/** Whether the process a record names still runs (the same process, not a later one with its id). */
export function ownerAlive(record: string): boolean {
  const pid = Number(record.trim().split(' ')[0]);
  if (!Number.isInteger(pid) || pid <= 0) return true; // unreadable: not ours to judge, keep
  return processIdentity(pid) === record.trim();
}

/**
 * The directory of the owner records of the test namespaces named `${prefix}-*`, one file per
 * namespace, named as it and holding its owner record. Under /run, as /run/netns is: both are gone
 * after a reboot.
 */
export function namespaceOwnersDirectory(prefix: string): string {
  return join('/run/vcnet-test-namespaces', prefix);
}

export function recordNamespaceOwner(prefix: string, name: string): void {
  const directory = namespaceOwnersDirectory(prefix);
  mkdirSync(directory, { recursive: true });
  writeFileSync(join(directory, name), `${ownerRecord()}\n`);
}

export function forgetNamespaceOwner(prefix: string, name: string): void {
  rmSync(join(namespaceOwnersDirectory(prefix), name), { force: true });
}

/** The namespaces of `prefix` whose recorded owner is dead. */
export function namespacesOfDeadOwners(prefix: string): string[] {
  let names: string[];
  try {
    names = readdirSync(namespaceOwnersDirectory(prefix));
  } catch {
    return [];
  }
  return names.filter((name) => {
    try {
      return !ownerAlive(readFileSync(join(namespaceOwnersDirectory(prefix), name), 'utf8'));
    } catch {
      return false; // removed meanwhile by its owner
    }
  });
}
