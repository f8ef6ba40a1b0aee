/**
 * The pod namespace's lock: an flock of the namespace's own nsfs inode (no file to leave behind,
 * released by the kernel when the process dies). Every writer of vcnet's link group in a pod namespace
 * (attach, detach, vcnet-cni ADD and DEL, and gc finishing an attach a killed process left) takes it,
 * always after its sandbox's (or container's) lock, never before (sandbox/namespace-hold.ts says why).
 * It lives below the network so that gc, which may not import the sandbox layer, takes the same lock.
 */
import { VcnetError } from '../../errors.js';
import { nativeFileLock } from '../../native/file-lock.js';
import { holderOf, pollForLock } from './lock.js';
import { CLI_LOCK_TIMEOUT_HINT } from './store.js';

/** The namespace stayed locked by another attach, detach or vcnet-cni ADD/DEL past the wait. */
export class NamespaceBusyError extends VcnetError {
  static override readonly errorName: string = 'NamespaceBusyError';
  constructor(
    namespacePath: string,
    readonly holder: number,
    waitedMs: number,
    howToWaitLonger = CLI_LOCK_TIMEOUT_HINT,
  ) {
    const who = holder > 0 ? `process ${holder}` : 'another process (which one cannot be known)';
    super(
      'VCNET_SANDBOX_LOCKED',
      `the namespace ${namespacePath} is being changed by ${who}, an attach, detach or vcnet-cni ADD or DEL in it (waited ${waitedMs} ms)`,
      {
        value: holder,
        hint: `wait for it to finish (vcnet changes one namespace one command at a time), or ${howToWaitLonger}`,
      },
    );
  }
}

/**
 * Takes the namespace's lock on `fd` (an open fd of the namespace), polling until `timeoutMs` (0:
 * one try, no wait); `howToWaitLonger` ends the busy error's hint (the flag or setting where the
 * caller runs), and `signal` stops the wait. Held until the fd is closed. Taken after the sandbox's
 * (container's) lock, never before, by every caller: two commands on one sandbox meet at its lock first.
 */
export async function lockNamespace(
  fd: number,
  namespacePath: string,
  timeoutMs: number,
  options: { howToWaitLonger?: string; signal?: AbortSignal | undefined } = {},
): Promise<void> {
  await pollForLock(
    () => (nativeFileLock.lockFile(fd, true) ? true : undefined),
    timeoutMs,
    () => new NamespaceBusyError(namespacePath, holderOf(fd), timeoutMs, options.howToWaitLonger),
    options.signal,
  );
}
