/**
 * vcnet-cni's open-file limit (RLIMIT_NOFILE), and what to say when it runs out. A runtime starts
 * the plugin with its own limit: systemd's LimitNOFILE= of containerd's or CRI-O's unit, or what a
 * containerized runtime was given. Node raises the soft limit to the hard one as it starts (node.cc,
 * as Go's runtime does for the Go plugins), so the hard limit is the one that counts. Node alone
 * needs about 20 descriptors to start (its event loops and worker threads); loading vcnet-cni's
 * chunks and one ADD (netlink sockets, namespace fds, the lock files, the tap) bring it to 27 (Node
 * 20, measured with strace: docs/cni.md).
 *
 * src/cni/main.ts, which may import nothing of vcnet's, holds a copy of MINIMUM_OPEN_FILES, the
 * parse and the hint, and the launcher (install.ts) the number: test/integration/cni/cni-file-limit.test.ts
 * compares what each says with these.
 */
import { readFileSync } from 'node:fs';

/**
 * The open files vcnet-cni asks for: twice its measured need, for more interfaces, the logger
 * (VCNET_LOG_LEVEL), the trace exporter's sockets and another Node version's threads.
 */
export const MINIMUM_OPEN_FILES = 64;

/** The soft and hard open-file limits of this process. */
export interface OpenFileLimit {
  soft: number;
  hard: number;
}

/** The "Max open files" row of /proc/PID/limits; undefined when it is missing or not two numbers. */
export function parseOpenFileLimit(limits: string): OpenFileLimit | undefined {
  const row = /^Max open files\s+(\d+)\s+(\d+)\s/m.exec(limits);
  return row ? { soft: Number(row[1]), hard: Number(row[2]) } : undefined;
}

/** This process's open-file limit; undefined when /proc/self/limits cannot be read (no /proc, or no file left to open it). */
export function readOpenFileLimit(): OpenFileLimit | undefined {
  try {
    return parseOpenFileLimit(readFileSync('/proc/self/limits', 'utf8'));
  } catch {
    return undefined;
  }
}

/**
 * What to do when vcnet-cni ran out of open files (EMFILE), for a CNI error's details: the limit it
 * had, what it needs, and where a node sets it (a plugin inherits its runtime's limit).
 */
export function openFileLimitHint(limit: OpenFileLimit | undefined): string {
  const had =
    limit === undefined
      ? 'the hard open-file limit of vcnet-cni (ulimit -Hn) is too low'
      : `the open-file limit of vcnet-cni is ${limit.soft} (hard limit ${limit.hard})`;
  return `${had}; it needs ${MINIMUM_OPEN_FILES} besides the files its runtime leaves open in it: raise LimitNOFILE= of the container runtime's service (systemctl edit containerd, or crio), whose limits its CNI plugins inherit, then retry (node raises the soft limit to the hard one as it starts: the hard limit is the one that counts)`;
}
