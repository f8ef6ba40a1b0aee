/**
 * The library's diagnostics channels: a subscriber receives the events; without one, no event object
 * is built (the factory passed to traced/publish is never called) and the work runs as is.
 */
import { channel as channelNamed, tracingChannel } from 'node:diagnostics_channel';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  type AttachEvent,
  channels,
  DiagnosticsChannel,
  isObserved,
  publish,
  reportNotice,
  traced,
  tracing,
} from '../../src/diagnostics.js';
import { ErrnoOutcomes, ErrorCodes } from '../../src/error-codes.js';
import type { NamespaceSnapshot, NetlinkHandle } from '../../src/netlink/handle.js';
import type { Endpoint } from '../../src/network/endpoint/endpoint.js';
import { noticeDroppedGuestRoutes } from '../../src/network/guest.js';
import { noticeRoutesNotForGuest } from '../../src/network/network.js';
import { noticeRoutesTakenMeanwhile } from '../../src/network/plan/undo.js';
import { noticeNoNetwork } from '../../src/sandbox/no-network.js';
import { noticeStillInUse } from '../../src/sandbox/still-in-use.js';

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

  it('make a notice no handler and no subscriber took a process warning of type VcnetWarning', () => {
    const emitWarning = vi.spyOn(process, 'emitWarning').mockImplementation(() => {});
    cleanups.push(() => emitWarning.mockRestore());
    const event = { operation: 'watch', endpoint: '', message: 'could not apply a change', error: new Error('boom') };
    reportNotice(() => event, undefined);
    reportNotice(
      () => event,
      undefined,
      ({ message }) => `sandbox sb1: ${message}`,
    );
    expect(emitWarning.mock.calls).toEqual([
      ['could not apply a change', 'VcnetWarning'],
      ['sandbox sb1: could not apply a change', 'VcnetWarning'],
    ]);
    const handled = vi.fn();
    reportNotice(() => event, handled);
    expect(handled).toHaveBeenCalledOnce();
    expect(emitWarning).toHaveBeenCalledTimes(2);
  });

  it('without a subscriber, build no event and run the work unchanged', async () => {
    expect(isObserved(tracing.attach)).toBe(false);
    const makeEvent = vi.fn(attachEvent);
    await expect(traced(tracing.attach, makeEvent, async () => 42)).resolves.toBe(42);
    await expect(traced(tracing.attach, makeEvent, async () => Promise.reject(new Error('boom')))).rejects.toThrow(
      'boom',
    );
    const makeWatch = vi.fn(() => ({ sandbox: 'sb1', added: [], removed: [], updated: [], failed: [] }));
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
    for (const name of Object.values(DiagnosticsChannel)) expect(name).toMatch(/^vcnet:[a-z]+(:[a-z]+(-[a-z]+)*)?$/);
  });

  it('name every channel src/ publishes on, in the table, the types and docs/diagnostics.md', () => {
    const root = new URL('../../', import.meta.url).pathname;
    const files = (directory: string): string[] =>
      readdirSync(directory).flatMap((name) => {
        const path = join(directory, name);
        return statSync(path).isDirectory() ? files(path) : path.endsWith('.ts') ? [path] : [];
      });
    const named = new Set<string>();
    for (const file of files(join(root, 'src'))) {
      const text = readFileSync(file, 'utf8');
      // A channel made from a literal name anywhere but the table is one the table does not know.
      const literal = [...text.matchAll(/(?:channel|tracingChannel)\(\s*'([^']+)'/g)].map((match) => match[1]!);
      expect(literal, file).toEqual([]);
      for (const match of text.matchAll(/'(vcnet:[a-z:-]+)'/g)) named.add(match[1]!);
    }
    const table = Object.values(DiagnosticsChannel) as string[];
    expect([...named].filter((name) => !table.includes(name))).toEqual([]);
    const documented = readFileSync(join(root, 'docs', 'diagnostics.md'), 'utf8');
    const documentedNames = [...documented.matchAll(/^\| `(vcnet:[a-z:-]+)` \|/gm)].map((match) => match[1]!);
    expect(documentedNames.sort()).toEqual([...table].sort());
    // Every table entry has its channel object.
    const made = [...Object.values(tracing), ...Object.values(channels)].length;
    expect(made).toBe(table.length);
  });

  it('cannot be renamed by a caller: the table, the error registry and its rows are frozen', () => {
    expect(Object.isFrozen(DiagnosticsChannel)).toBe(true);
    expect(Object.isFrozen(ErrorCodes)).toBe(true);
    expect(Object.values(ErrorCodes).every((row) => Object.isFrozen(row))).toBe(true);
    expect(Object.isFrozen(ErrnoOutcomes) && Object.isFrozen(ErrnoOutcomes.EPERM)).toBe(true);
    expect(() => {
      (ErrorCodes.VCNET_INVALID_INPUT as { exit: string }).exit = 'FAILED';
    }).toThrow(TypeError);
    expect(ErrorCodes.VCNET_INVALID_INPUT.exit).toBe('BAD_INPUT');
  });
});

/** An object any read of which throws: handed to a notice site, it proves whether the site looked at it. */
function untouchable<T>(what: string): T {
  return new Proxy(
    {},
    {
      get(_target, property) {
        throw new Error(`${what}.${String(property)} was read`);
      },
      has() {
        throw new Error(`${what} was looked into`);
      },
    },
  ) as T;
}

describe('a notice site without a subscriber', () => {
  const cleanups: Array<() => void> = [];
  afterEach(() => {
    for (const cleanup of cleanups.splice(0)) cleanup();
  });
  const subscribe = () => {
    const listener = () => {};
    channels.notice.subscribe(listener);
    cleanups.push(() => channels.notice.unsubscribe(listener));
  };
  const subject = {
    operation: 'detach',
    sandbox: 'sb1',
    named: 'sandbox sb1',
    madeBy: 'attach',
    stopTheVm: 'Stop the VM first',
    namespacePath: '/run/netns/pod',
  };
  // Each site, given inputs it may only read to build its notice (or to decide whether there is one).
  const sites: Array<[string, () => unknown]> = [
    [
      'no network (sandbox/no-network.ts)',
      () => noticeNoNetwork('attach', untouchable<Endpoint[]>('attached'), '/run/netns/pod', { noAddress: 'x' }),
    ],
    [
      'routes not for the guest (network/network.ts)',
      () =>
        noticeRoutesNotForGuest(untouchable<NamespaceSnapshot>('snapshot'), [untouchable<Endpoint>('added')], false),
    ],
    [
      'dropped guest routes (attach, push)',
      () => noticeDroppedGuestRoutes(untouchable<Endpoint[]>('endpoints'), untouchable('about')),
    ],
    [
      'devices still open (sandbox/still-in-use.ts)',
      () =>
        noticeStillInUse(
          { heldElsewhere: undefined, network: untouchable('network'), namespace: untouchable('namespace') } as never,
          subject,
        ),
    ],
    [
      'routes taken meanwhile (network/plan/undo.ts)',
      () => noticeRoutesTakenMeanwhile(untouchable<NetlinkHandle>('handle'), [untouchable('step')]),
    ],
  ];

  it.each(sites)('%s: computes nothing (its inputs are not read)', async (_site, run) => {
    expect(channels.notice.hasSubscribers).toBe(false);
    await expect(Promise.resolve().then(run)).resolves.toBeUndefined();
  });

  it.each(sites)('%s: reads them for a subscriber (so the test above can fail)', async (_site, run) => {
    subscribe();
    await expect(Promise.resolve().then(run)).rejects.toThrow(/was read|was looked into/);
  });

  it('publish: a builder that finds nothing to tell publishes nothing', () => {
    const received: unknown[] = [];
    const listener = (message: unknown) => received.push(message);
    channels.notice.subscribe(listener);
    cleanups.push(() => channels.notice.unsubscribe(listener));
    publish(channels.notice, () => undefined);
    expect(received).toEqual([]);
  });
});
