/**
 * Many calls waiting for locks with one long-lived signal (a daemon's shutdown signal given to every
 * call): one abort listener on it in all, so Node never prints MaxListenersExceededWarning, and an
 * abort still ends every wait with the signal's reason.
 */
import { getEventListeners, getMaxListeners } from 'node:events';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { pollForLock } from '../../../src/network/state/lock.js';

const warnings: Error[] = [];
const onWarning = (warning: Error) => warnings.push(warning);
beforeEach(() => {
  warnings.length = 0;
  process.on('warning', onWarning);
});
afterEach(() => {
  process.off('warning', onWarning);
});

/** After the warnings Node emits on a later tick. */
const settle = () => new Promise((resolve) => setTimeout(resolve, 20));

it('15 waits on one signal add one abort listener, removed when the last wait ends', async () => {
  const controller = new AbortController();
  let free = false;
  let most = 0;
  const waits = Array.from({ length: 15 }, (_, index) =>
    pollForLock(
      () => {
        most = Math.max(most, getEventListeners(controller.signal, 'abort').length);
        return free ? index : undefined;
      },
      10_000,
      () => new Error('timed out'),
      controller.signal,
    ),
  );
  await new Promise((resolve) => setTimeout(resolve, 50));
  expect(getEventListeners(controller.signal, 'abort')).toHaveLength(1);
  free = true;
  expect(await Promise.all(waits)).toEqual([...Array(15).keys()]);
  await settle();
  expect(most).toBeLessThanOrEqual(1);
  expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
  expect(getMaxListeners(controller.signal)).toBe(10);
  expect(warnings.map((warning) => warning.name)).toEqual([]);
});

it('an abort ends all 15 waits with its reason', async () => {
  const controller = new AbortController();
  const waits = Array.from({ length: 15 }, () =>
    pollForLock(
      () => undefined,
      10_000,
      () => new Error('timed out'),
      controller.signal,
    ).catch((error: unknown) => error),
  );
  await new Promise((resolve) => setTimeout(resolve, 30));
  const reason = new Error('the daemon is shutting down');
  controller.abort(reason);
  expect(await Promise.all(waits)).toEqual(Array(15).fill(reason));
  await settle();
  expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
  expect(warnings.map((warning) => warning.name)).toEqual([]);
});
