/**
 * The processes /proc shows and the identity of a file one of them holds: the pieces every walk over
 * /proc/PID (namespace holders, gc's live namespaces and open devices, a sandbox's held devices) shares.
 */
import { readdirSync, statSync } from 'node:fs';

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

/** Whether `path` names the file of this device and inode now (false when it is gone or not readable). */
export function isSameFile(path: string, identity: { dev: number; ino: number }): boolean {
  const found = fileIdentity(path);
  return found !== undefined && found.dev === identity.dev && found.ino === identity.ino;
}
