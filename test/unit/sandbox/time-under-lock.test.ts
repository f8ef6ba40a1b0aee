/**
 * The note a wait's error ends with (QMP's, the agent's): how much of the wait was under the sandbox's
 * lock, from the tries there that withSandboxAndVm counted. QMP's said "only the first 1000 ms" after
 * any number of tries under the lock (a wait without it that ended with a greeting is followed by
 * another); the agent's counted them.
 */
import { describe, expect, it } from 'vitest';
import { timeUnderLock } from '../../../src/network/time-under-lock.js';

describe('timeUnderLock', () => {
  it('one try under the lock: only the first bound of it', () => {
    expect(timeUnderLock({ triesUnderLock: 1, msUnderLock: 1003 }, 1000, 'QMP having greeted')).toBe(
      "only the first 1000 ms of it under the sandbox's lock",
    );
  });

  it('two tries under the lock (QMP greeted in between, without it): the time counted in both, and how many', () => {
    const note = timeUnderLock({ triesUnderLock: 2, msUnderLock: 2004 }, 1000, 'QMP having greeted');
    expect(note).toBe(
      "2004 ms of it in 2 tries under the sandbox's lock (at most 1000 ms each, QMP having greeted in between without it)",
    );
    expect(note).not.toContain('only the first');
  });

  it("the agent's words: what answered in between is the caller's", () => {
    expect(timeUnderLock({ triesUnderLock: 3, msUnderLock: 2500 }, 1000, 'the agent having answered')).toMatch(
      /^2500 ms of it in 3 tries .*the agent having answered in between without it\)$/,
    );
  });
});
