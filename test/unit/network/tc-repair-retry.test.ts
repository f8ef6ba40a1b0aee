/**
 * TrafficControlRetry, the watch's timer for tc objects it could not put back: with fake timers, the
 * checks it asks for after failed ones (waits doubling from twice the base), the bound, the count
 * starting again after a check with nothing failed, and no timer left once stopped.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  setTrafficControlRetryTestHook,
  TRAFFIC_CONTROL_RETRIES,
  TrafficControlRetry,
} from '../../../src/sandbox/tc-repair-retry.js';

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
  setTrafficControlRetryTestHook(undefined);
});

/** A retry whose checks all fail again, as a watch would report them; the times of its checks. */
function alwaysFailing(baseMs: number) {
  const checks: number[] = [];
  let gaveUp = 0;
  const start = Date.now();
  const retry = new TrafficControlRetry(
    baseMs,
    () => {
      checks.push(Date.now() - start);
      retry.checked(true);
    },
    () => gaveUp++,
  );
  return { retry, checks, gaveUp: () => gaveUp };
}

describe('TrafficControlRetry', () => {
  it('asks for a check after each failed one, waits doubling, and gives up once after the last', () => {
    const { retry, checks, gaveUp } = alwaysFailing(100);
    retry.checked(true);
    vi.advanceTimersByTime(60_000);
    expect(TRAFFIC_CONTROL_RETRIES).toBe(5);
    expect(checks).toEqual([200, 600, 1400, 3000, 6200]);
    expect(gaveUp()).toBe(1);
    expect(vi.getTimerCount()).toBe(0);
    // Another failed check (a tc change) asks for no more, and is not said again.
    retry.checked(true);
    expect(vi.getTimerCount()).toBe(0);
    expect(gaveUp()).toBe(1);
  });

  it('a check with nothing failed clears the timer and starts the count again', () => {
    const { retry, checks } = alwaysFailing(100);
    retry.checked(true);
    vi.advanceTimersByTime(200);
    expect(checks).toEqual([200]);
    retry.checked(false);
    expect(vi.getTimerCount()).toBe(0);
    retry.checked(true);
    vi.advanceTimersByTime(199);
    expect(checks).toEqual([200]);
    vi.advanceTimersByTime(1);
    expect(checks).toEqual([200, 400]);
  });

  it('a failed check while one is already asked for adds no second timer', () => {
    const { retry, checks } = alwaysFailing(100);
    retry.checked(true);
    retry.checked(true);
    expect(vi.getTimerCount()).toBe(1);
    vi.advanceTimersByTime(200);
    expect(checks).toEqual([200]);
  });

  it('leaves no timer once stopped, and asks for nothing after', () => {
    const { retry, checks } = alwaysFailing(100);
    retry.checked(true);
    expect(vi.getTimerCount()).toBe(1);
    retry.stop();
    expect(vi.getTimerCount()).toBe(0);
    retry.checked(true);
    vi.advanceTimersByTime(60_000);
    expect(checks).toEqual([]);
  });

  it("tells the test seam each check it asks for, with the try's number and wait, and nothing else", () => {
    const asked: Array<[number, number]> = [];
    setTrafficControlRetryTestHook((attempt, delayMs) => asked.push([attempt, delayMs]));
    const { retry } = alwaysFailing(100);
    retry.checked(false);
    expect(asked).toEqual([]);
    retry.checked(true);
    retry.checked(true);
    vi.advanceTimersByTime(60_000);
    expect(asked).toEqual([
      [1, 200],
      [2, 400],
      [3, 800],
      [4, 1600],
      [5, 3200],
    ]);
  });
});
