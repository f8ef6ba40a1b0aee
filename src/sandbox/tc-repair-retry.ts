/**
 * The watch's second try at tc objects it could not put back (network/tc-repair.ts): an object the
 * kernel refused for now (EBUSY, ENOBUFS: errors.ts isTransientFailure), or a dump that failed, was
 * otherwise checked again only with the next tc change in the namespace, which may never come.
 * After such a check the watch asks for another one on a timer, after the watch's one retry wait
 * (namespace-watcher.ts retryDelayMs, doubling), and stops after TRAFFIC_CONTROL_RETRIES tries in a
 * row (what keeps failing is said once; a later tc change checks again as before). A refusal a retry
 * cannot change (EINVAL, EOPNOTSUPP, a place vcnet does not own) asks for no timer: the caller says
 * `false` for it, as for a check with nothing failed, which starts the count again. `stop()` clears
 * the timer: nothing is left running after the watch.
 */
import { retryDelayMs } from '../network/namespace-watcher.js';
import { testSeam } from '../test-seams.js';

/** How many checks in a row the timer asks for after failed ones. */
export const TRAFFIC_CONTROL_RETRIES = 5;

/**
 * Test seam (never set in production), on globalThis as apply.ts's (src/test-seams.ts): told each time
 * a check on the timer is asked for, with the try's number and its wait, so a test can see that none
 * was (a refusal a retry cannot change) without waiting for a timer that is not there.
 */
const retryArmedSeam = testSeam<(attempt: number, delayMs: number) => void>('trafficControlRetry');

export function setTrafficControlRetryTestHook(hook: ((attempt: number, delayMs: number) => void) | undefined): void {
  retryArmedSeam.set(hook);
}

export class TrafficControlRetry {
  private timer: NodeJS.Timeout | undefined;
  private attempts = 0;
  private stopped = false;

  /**
   * `debounceMs`: the watch's (retryDelayMs: the first wait is twice it, at least 200 ms, each one
   * after twice the one before). `check` asks for a check (the watcher's resync); `gaveUp` is called
   * once when the tries are used up while something still fails.
   */
  constructor(
    private readonly debounceMs: number,
    private readonly check: () => void,
    private readonly gaveUp: () => void,
  ) {}

  /**
   * After a tc check: `failed` when an object could not be made again for a reason that may pass
   * (isTransientFailure), or the check could not be made.
   */
  checked(failed: boolean): void {
    if (this.stopped) return;
    if (!failed) {
      this.attempts = 0;
      this.clear();
      return;
    }
    if (this.timer !== undefined) return;
    if (this.attempts >= TRAFFIC_CONTROL_RETRIES) {
      // Said once: the next tc change checks again, and a check that succeeds starts the count again.
      if (this.attempts === TRAFFIC_CONTROL_RETRIES) this.gaveUp();
      this.attempts = TRAFFIC_CONTROL_RETRIES + 1;
      return;
    }
    this.attempts++;
    const delayMs = retryDelayMs(this.debounceMs, this.attempts);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (!this.stopped) this.check();
    }, delayMs);
    retryArmedSeam.hook()?.(this.attempts, delayMs);
  }

  /** No check is asked for after this. */
  stop(): void {
    this.stopped = true;
    this.clear();
  }

  private clear(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }
}

/** How long the tries after a first failed check take in all, for a watch debouncing `debounceMs` (for what the watch says). */
export function trafficControlRetryWindowMs(debounceMs: number): number {
  let total = 0;
  for (let attempt = 1; attempt <= TRAFFIC_CONTROL_RETRIES; attempt++) total += retryDelayMs(debounceMs, attempt);
  return total;
}
