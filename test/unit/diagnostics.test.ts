/**
 * The library's diagnostics channels: a subscriber receives the events; without one, no event object
 * is built (the factory passed to traced/publish is never called) and the work runs as is.
 */
import { channel as channelNamed, tracingChannel } from 'node:diagnostics_channel';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  type AttachEvent,
  channels,
  DiagnosticsChannel,
  isObserved,
  publish,
  traced,
  tracing,
} from '../../src/diagnostics.js';

const attachEvent = (): AttachEvent => ({
  sandbox: 'sb1',
  namespacePath: '/run/netns/pod',
  model: 'tcfilter',
  hotplug: false,
});

describe('diagnostics channels', () => {
  const cleanups: Array<() => void> = [];
  afterEach(() => {
    for (const cleanup of cleanups.splice(0)) cleanup();
  });

  it('without a subscriber, build no event and run the work unchanged', async () => {
    expect(isObserved(tracing.attach)).toBe(false);
    const makeEvent = vi.fn(attachEvent);
    await expect(traced(tracing.attach, makeEvent, async () => 42)).resolves.toBe(42);
    await expect(traced(tracing.attach, makeEvent, async () => Promise.reject(new Error('boom')))).rejects.toThrow(
      'boom',
    );
    const makeWatch = vi.fn(() => ({ sandbox: 'sb1', added: [], removed: [], updated: [] }));
    publish(channels.watch, makeWatch);
    expect(makeEvent).not.toHaveBeenCalled();
    expect(makeWatch).not.toHaveBeenCalled();
  });

  it('deliver start, the result and the end of a traced operation to a subscriber (by channel name)', async () => {
    const seen: Array<[string, unknown]> = [];
    const subscriber = {
      start: (event: object) => seen.push(['start', { ...event }]),
      end: () => undefined,
      asyncStart: () => undefined,
      asyncEnd: (event: object) => seen.push(['asyncEnd', { ...event }]),
      error: (event: { error: unknown }) => seen.push(['error', (event.error as Error).message]),
    };
    const byName = tracingChannel(DiagnosticsChannel.attach);
    byName.subscribe(subscriber);
    cleanups.push(() => byName.unsubscribe(subscriber));
    const makeEvent = vi.fn(attachEvent);
    await traced(tracing.attach, makeEvent, async () => 'tap0_kata');
    await expect(traced(tracing.attach, makeEvent, async () => Promise.reject(new Error('refused')))).rejects.toThrow();
    expect(makeEvent).toHaveBeenCalledTimes(2);
    expect(seen).toEqual([
      ['start', attachEvent()],
      ['asyncEnd', { ...attachEvent(), result: 'tap0_kata' }],
      ['start', attachEvent()],
      ['error', 'refused'],
      ['asyncEnd', { ...attachEvent(), error: expect.any(Error) }],
    ]);
  });

  it('deliver plain events to a subscriber, and stop when it unsubscribes', () => {
    const received: unknown[] = [];
    const onMessage = (message: unknown) => received.push(message);
    const byName = channelNamed(DiagnosticsChannel.planStep);
    byName.subscribe(onMessage);
    const step = {
      namespacePath: '/run/netns/pod',
      step: 'ip tuntap add dev tap0_kata mode tap',
      phase: 'apply',
    } as const;
    publish(channels.planStep, () => step);
    byName.unsubscribe(onMessage);
    const makeStep = vi.fn(() => step);
    publish(channels.planStep, makeStep);
    expect(received).toEqual([step]);
    expect(makeStep).not.toHaveBeenCalled();
  });

  it('are named vcnet:<layer>:<what>', () => {
    for (const name of Object.values(DiagnosticsChannel)) expect(name).toMatch(/^vcnet:[a-z]+(:[a-z]+)?$/);
  });
});
