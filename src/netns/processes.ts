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

/** PF_KTHREAD (include/linux/sched.h): the kernel sets it on its own threads only; no process can set or keep it. */
const PF_KTHREAD = 0x00200000;

/**
 * Whether a /proc/PID/stat line is a kernel thread's: PF_KTHREAD in its flags (field 9), which
 * /proc/PID/stat shows to anyone, without CAP_SYS_PTRACE (ppid 2 would not do: in a pid namespace
 * pid 2 is an ordinary process, whose children a holder search must look into). undefined when the
 * line cannot be read as one. The command name (field 2) is in parentheses and may hold spaces and
 * parentheses itself: the fields after it start after the last ')'.
 */
export function isKernelThreadStat(stat: string): boolean | undefined {
  const end = stat.lastIndexOf(')');
  if (end < 0) return undefined;
  // state (field 3), ppid, pgrp, session, tty_nr, tpgid, flags (field 9)
  const flags = stat
    .slice(end + 1)
    .trim()
    .split(/\s+/)[6];
  if (flags === undefined || !/^\d+$/.test(flags)) return undefined;
  return (Number(flags) & PF_KTHREAD) !== 0;
}

/**
 * Whether /proc/PID is a kernel thread (kthreadd and its children: kworkers, ksoftirqd...). They run
 * in the initial namespaces and hold no fds, so they never hold a namespace vcnet made; without
 * CAP_SYS_PTRACE their /proc/PID/ns/net and fds are refused to root (their capabilities are not a
 * subset of its own), which says nothing about a pod's namespace. false when it cannot be told
 * (the process exited, /proc/PID/stat unreadable).
 */
export function isKernelThread(pid: number): boolean {
  try {
    return isKernelThreadStat(readFileSync(`/proc/${pid}/stat`, 'utf8')) === true;
  } catch {
    return false;
  }
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
