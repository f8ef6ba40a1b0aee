/**
 * How much of a wait for a VM's socket (QMP's, Cloud Hypervisor's API, the agent's) was spent under
 * the sandbox's lock, as its error says it: withSandboxAndVm's, and gc's and the watch's undo
 * (withVmmWaitedWithoutLocks). A wait without the lock that ends with an answer is followed by another
 * try under the lock, which may fail again: the note counts every such try, not only the first.
 */

/** The failed tries under the lock of one wait, and how long they took in all. */
export interface TriesUnderLock {
  triesUnderLock: number;
  msUnderLock: number;
}

/**
 * The part of a wait's error that says how much of it was under the lock: "only the first `boundMs`
 * ms of it" for one try, else the counted time and tries (`answered`: what answered in between,
 * without the lock, such as "the agent having answered").
 */
export function timeUnderLock(tries: TriesUnderLock, boundMs: number, answered: string): string {
  if (tries.triesUnderLock > 1) {
    return `${tries.msUnderLock} ms of it in ${tries.triesUnderLock} tries under the sandbox's lock (at most ${boundMs} ms each, ${answered} in between without it)`;
  }
  return `only the first ${boundMs} ms of it under the sandbox's lock`;
}
