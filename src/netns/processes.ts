/**
 * The processes /proc shows and the identity of a file one of them holds: the pieces every walk over
 * /proc/PID (namespace holders, gc's live namespaces and open devices, a sandbox's held devices) shares.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { missingCapabilities } from '../errors.js';

/** The pids /proc lists in this pid namespace; empty when /proc cannot be read. */
export function processIds(): number[] {
  let names: string[];
  try {
    names = readdirSync('/proc');
  } catch {
    return [];
  }
  return names.filter((name) => /^\d+$/.test(name)).map(Number);
}

/** A file's device and inode, which name a namespace (nsfs) for as long as it lives; undefined when it is gone or not readable. */
export function fileIdentity(path: string): { dev: number; ino: number } | undefined {
  try {
    const { dev, ino } = statSync(path);
    return { dev, ino };
  } catch {
    return undefined;
  }
}

/** Whether a failed look at /proc was refused (EACCES, EPERM): the file may be there, vcnet may not see it. */
export function isPermissionRefusal(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | null)?.code;
  return code === 'EACCES' || code === 'EPERM';
}

/**
 * fileIdentity, telling a file that is not there (or a process that exited: ENOENT, ESRCH) from
 * one this process may not look at (EACCES, EPERM: another user's process without CAP_SYS_PTRACE,
 * a directory it cannot search): 'refused' says nothing about whether it exists.
 */
export function lookAtFile(path: string): { dev: number; ino: number } | 'missing' | 'refused' {
  try {
    const { dev, ino } = statSync(path);
    return { dev, ino };
  } catch (error) {
    return isPermissionRefusal(error) ? 'refused' : 'missing';
  }
}

/**
 * The hidepid= option of the /proc vcnet lists processes in, when it hides other users' processes
 * from this one ("invisible", "ptraceable" or "noaccess", or their numbers): CAP_SYS_PTRACE sees
 * through it. undefined when /proc shows every process (hidepid off, or CAP_SYS_PTRACE in effect).
 */
export function procHidesProcesses(mountinfo?: string, status?: string): string | undefined {
  let mounts = mountinfo;
  let capabilities = status;
  try {
    mounts ??= readFileSync('/proc/self/mountinfo', 'utf8');
    capabilities ??= readFileSync('/proc/self/status', 'utf8');
  } catch {
    return undefined;
  }
  if (hasSysPtrace(capabilities)) return undefined;
  let hidepid: string | undefined;
  for (const line of mounts.split('\n')) {
    const fields = line.split(' ');
    const separator = fields.indexOf('-');
    if (separator <= 0 || fields[4] !== '/proc' || fields[separator + 1] !== 'proc') continue;
    // The last mount on /proc is the one a path lookup finds.
    hidepid = /(?:^|,)hidepid=([^,]+)/.exec(fields[separator + 3] ?? '')?.[1];
  }
  return hidepid === undefined || hidepid === 'off' || hidepid === '0' ? undefined : hidepid;
}

/** CAP_SYS_PTRACE's bit in CapEff (linux/capability.h). */
const CAP_SYS_PTRACE_BIT = 19n;

/**
 * Whether this process has CAP_SYS_PTRACE in effect (CapEff of /proc/self/status): what lets it
 * look into any process's /proc/PID/ns/net and fds. A refusal with it in effect comes from a
 * security module or a user namespace boundary, which no capability of this process lifts.
 */
export function hasSysPtrace(status?: string): boolean {
  return missingCapabilities(status, [['CAP_SYS_PTRACE', CAP_SYS_PTRACE_BIT]])?.length === 0;
}

/** Whether `path` names the file of this device and inode now (false when it is gone or not readable). */
export function isSameFile(path: string, identity: { dev: number; ino: number }): boolean {
  const found = fileIdentity(path);
  return found !== undefined && found.dev === identity.dev && found.ino === identity.ino;
}
