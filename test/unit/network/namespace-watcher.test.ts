/**
 * NamespaceWatcher's scheduling and diffing over a fake interface source, with fake timers: debounce,
 * the longest delay under a steady stream of events, serialized onChange calls, retries, stop().
 * The kernel side is in test/integration/network/namespace-watcher.test.ts.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { InterfaceFlag } from '../../../src/netlink/codec/link/message.js';
import { NeighbourState } from '../../../src/netlink/codec/neighbour.js';
import { RouteProtocol } from '../../../src/netlink/codec/route.js';
import {
  diffInterfaces,
  guestSignature,
  type InterfaceSource,
  type NamespaceChange,
  NamespaceWatcher,
} from '../../../src/network/namespace-watcher.js';
import type { NetworkInfo } from '../../../src/network/network-info.js';
import { address, info, link, route } from './fixtures.js';

/** An interface source whose content the test sets; counts reads and can be told to fail. */
class FakeSource implements InterfaceSource {
  interfaces: NetworkInfo[] = [];
  reads = 0;
  failNext = 0;
  closed = false;

  async read(): Promise<NetworkInfo[]> {
    this.reads++;
    if (this.failNext > 0) {
      this.failNext--;
      throw new Error('dump failed');
    }
    return structuredClone(this.interfaces);
  }

  close(): void {
    this.closed = true;
  }
}

const eth = (index: number, name = `eth${index}`) => info({ link: link({ index, name }) });
const byName = (list: NetworkInfo[]) => new Map(list.map((entry) => [entry.link.name, entry]));
const names = (list: NetworkInfo[]) => list.map((entry) => entry.link.name);

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe('diffInterfaces', () => {
  it('reports added, removed and changed interfaces by name', () => {
    const before = byName([eth(2), eth(3)]);
    const after = byName([info({ link: link({ index: 2, name: 'eth2', mtu: 1400 }) }), eth(4)]);
    const change = diffInterfaces(before, after);
    expect(names(change.addedInterfaces)).toEqual(['eth4']);
    expect(change.removedInterfaces).toEqual(['eth3']);
    expect(names(change.changedInterfaces)).toEqual(['eth2']);
  });

  it('reports an interface made again under the same name as removed and added (its index changed)', () => {
    const change = diffInterfaces(byName([eth(2, 'eth0')]), byName([eth(7, 'eth0')]));
    expect(change.removedInterfaces).toEqual(['eth0']);
    expect(change.addedInterfaces.map((entry) => entry.link.index)).toEqual([7]);
    expect(change.changedInterfaces).toEqual([]);
  });

  it('reports a MAC changed on the same link apart: nothing the guest is told of changed', () => {
    const before = byName([info({ link: link({ index: 2, name: 'eth0', address: '02:00:00:00:00:01' }) })]);
    const change = diffInterfaces(
      before,
      byName([info({ link: link({ index: 2, name: 'eth0', address: '02:00:00:00:00:aa' }) })]),
    );
    expect(change.changedInterfaces).toEqual([]);
    expect(change.macChangedInterfaces?.map((entry) => entry.link.address)).toEqual(['02:00:00:00:00:aa']);
    // In capitals it is the same MAC; on a link made again (another ifindex) it is no change of a link's.
    expect(
      diffInterfaces(
        before,
        byName([info({ link: link({ index: 2, name: 'eth0', address: '02:00:00:00:00:01'.toUpperCase() }) })]),
      ).macChangedInterfaces,
    ).toBeUndefined();
    expect(
      diffInterfaces(before, byName([info({ link: link({ index: 9, name: 'eth0', address: '02:00:00:00:00:aa' }) })]))
        .macChangedInterfaces,
    ).toBeUndefined();
  });
});

describe('guestSignature', () => {
  const base = info({
    addresses: [address('10.0.0.2', 24)],
    routes: [route({ destination: '10.1.0.0', destinationLength: 16, gateway: '10.0.0.1', mtu: 1400 })],
  });

  it('changes with what the guest is told: addresses, routes and their MTU, MTU, UP and NOARP, permanent neighbours', () => {
    const variants: NetworkInfo[] = [
      { ...base, addresses: [address('10.0.0.3', 24)] },
      { ...base, addresses: [address('10.0.0.2', 25)] },
      { ...base, routes: [{ ...base.routes[0]!, mtu: 1300 }] },
      { ...base, routes: [] },
      { ...base, link: { ...base.link, mtu: 9000 } },
      { ...base, link: { ...base.link, flags: base.link.flags & ~InterfaceFlag.UP } },
      { ...base, link: { ...base.link, flags: base.link.flags | InterfaceFlag.NOARP } },
      {
        ...base,
        neighbours: [
          {
            index: 2,
            family: 2,
            destination: '10.0.0.9',
            linkLayerAddress: '02:00:00:00:00:09',
            state: NeighbourState.PERMANENT,
            flags: 0,
            type: 1,
          },
        ],
      },
    ];
    for (const variant of variants) expect(guestSignature(variant)).not.toBe(guestSignature(base));
  });

  it('ignores carrier flags, the order of lists, kernel routes, dynamic neighbours and address flags', () => {
    const same: NetworkInfo[] = [
      { ...base, link: { ...base.link, flags: base.link.flags | InterfaceFlag.RUNNING | InterfaceFlag.LOWER_UP } },
      { ...base, addresses: [{ ...base.addresses[0]!, flags: 0x40 /* tentative */ }] },
      {
        ...base,
        routes: [
          ...base.routes,
          route({ destination: '10.0.0.0', destinationLength: 24, protocol: RouteProtocol.KERNEL }),
        ],
      },
      {
        ...base,
        neighbours: [
          {
            index: 2,
            family: 2,
            destination: '10.0.0.1',
            linkLayerAddress: '02:00:00:00:00:01',
            state: NeighbourState.STALE,
            flags: 0,
            type: 1,
          },
        ],
      },
    ];
    for (const variant of same) expect(guestSignature(variant)).toBe(guestSignature(base));
    const twoAddresses = { ...base, addresses: [address('10.0.0.2', 24), address('fd00::2', 64)] };
    expect(guestSignature({ ...twoAddresses, addresses: [...twoAddresses.addresses].reverse() })).toBe(
      guestSignature(twoAddresses),
    );
  });
});

describe('NamespaceWatcher scheduling', () => {
  async function watch(source: FakeSource, options: { debounceMs?: number; maxDelayMs?: number } = {}) {
    const changes: NamespaceChange[] = [];
    const errors: Error[] = [];
    const watcher = await NamespaceWatcher.over(source, {
      debounceMs: 100,
      ...options,
      onChange: (change) => void changes.push(change),
      onError: (error) => void errors.push(error),
    });
    return { watcher, changes, errors };
  }

  it('takes the interfaces there at start as the baseline and leaves vcnet taps out', async () => {
    const source = new FakeSource();
    source.interfaces = [eth(2)];
    const { watcher, changes } = await watch(source);
    source.interfaces = [eth(2), eth(3, 'tap0_kata'), eth(4, 'ifb0_kata'), eth(5, 'tap0_kata2')];
    watcher.resync();
    await vi.advanceTimersByTimeAsync(150);
    expect(changes).toHaveLength(1);
    expect(names(changes[0]!.addedInterfaces)).toEqual(['tap0_kata2']);
    expect(changes[0]!.snapshotAt).toBeInstanceOf(Date);
    await watcher.stop();
  });

  it('debounces a burst into one read and one change', async () => {
    const source = new FakeSource();
    const { watcher, changes } = await watch(source);
    for (let i = 0; i < 200; i++) {
      source.interfaces = [...source.interfaces, eth(10 + i)];
      watcher.resync();
      await vi.advanceTimersByTimeAsync(1);
    }
    await vi.advanceTimersByTimeAsync(150);
    // The burst lasts 200 ms: under maxDelayMs (1000), so one read after it.
    expect(source.reads).toBe(2);
    expect(changes).toHaveLength(1);
    expect(changes[0]!.addedInterfaces).toHaveLength(200);
    await watcher.stop();
  });

  it('reads at least every maxDelayMs while events never stop', async () => {
    const source = new FakeSource();
    const { watcher, changes } = await watch(source, { debounceMs: 100, maxDelayMs: 500 });
    for (let i = 0; i < 100; i++) {
      source.interfaces = [eth(10 + i)];
      watcher.resync();
      await vi.advanceTimersByTimeAsync(50);
    }
    // 5000 ms of events 50 ms apart: a read every 500 ms, never held back by the debounce for good.
    expect(changes.length).toBeGreaterThanOrEqual(8);
    expect(changes.length).toBeLessThanOrEqual(11);
    await watcher.stop();
  });

  it('never runs two onChange calls at once, and reads again for events that came during one', async () => {
    const source = new FakeSource();
    let running = 0;
    let overlapped = false;
    const seen: string[][] = [];
    let release: (() => void) | undefined;
    const watcher = await NamespaceWatcher.over(source, {
      debounceMs: 100,
      onChange: async (change) => {
        running++;
        if (running > 1) overlapped = true;
        seen.push(names(change.addedInterfaces));
        await new Promise<void>((resolve) => {
          release = resolve;
        });
        running--;
      },
    });
    source.interfaces = [eth(2)];
    watcher.resync();
    await vi.advanceTimersByTimeAsync(150);
    expect(seen).toEqual([['eth2']]);
    // Events while onChange runs: nothing new starts until it returns.
    source.interfaces = [eth(2), eth(3)];
    watcher.resync();
    await vi.advanceTimersByTimeAsync(1000);
    expect(seen).toHaveLength(1);
    release?.();
    await vi.advanceTimersByTimeAsync(150);
    expect(seen).toEqual([['eth2'], ['eth3']]);
    release?.();
    expect(overlapped).toBe(false);
    await watcher.stop();
  });

  it('reports a failed read and retries it without a new event', async () => {
    const source = new FakeSource();
    const { watcher, changes, errors } = await watch(source);
    source.interfaces = [eth(2)];
    source.failNext = 2;
    watcher.resync();
    await vi.advanceTimersByTimeAsync(5000);
    expect(errors.map((error) => error.message)).toEqual(['dump failed', 'dump failed']);
    expect(changes).toHaveLength(1);
    expect(names(changes[0]!.addedInterfaces)).toEqual(['eth2']);
    await watcher.stop();
  });

  it('gives a throw of onChange to onError and brings the change again, without a new event, until it is taken', async () => {
    const source = new FakeSource();
    const errors: Error[] = [];
    const seen: NamespaceChange[] = [];
    let failures = 2;
    const watcher = await NamespaceWatcher.over(source, {
      debounceMs: 10,
      onChange: (change) => {
        seen.push(change);
        if (failures-- > 0) throw new Error('apply failed');
      },
      onError: (error) => void errors.push(error),
    });
    source.interfaces = [eth(2)];
    watcher.resync();
    await vi.advanceTimersByTimeAsync(50);
    expect(seen).toHaveLength(1);
    // Meanwhile eth3 appears: the retry carries both, against the baseline that was never applied.
    source.interfaces = [eth(2), eth(3)];
    await vi.advanceTimersByTimeAsync(10_000);
    expect(errors.map((error) => error.message)).toEqual(['apply failed', 'apply failed']);
    expect(seen.map((change) => names(change.addedInterfaces))).toEqual([['eth2'], ['eth2', 'eth3'], ['eth2', 'eth3']]);
    // Taken: nothing comes again, and the next change is against the new baseline.
    await vi.advanceTimersByTimeAsync(60_000);
    expect(seen).toHaveLength(3);
    source.interfaces = [eth(3)];
    watcher.resync();
    await vi.advanceTimersByTimeAsync(50);
    expect(seen[3]?.removedInterfaces).toEqual(['eth2']);
    expect(seen[3]?.addedInterfaces).toEqual([]);
    await watcher.stop();
  });

  it('stop() closes the source, drops a pending read and waits for an onChange under way', async () => {
    const source = new FakeSource();
    const { watcher, changes } = await watch(source);
    source.interfaces = [eth(2)];
    watcher.resync();
    await watcher.stop();
    expect(source.closed).toBe(true);
    watcher.resync();
    await vi.advanceTimersByTimeAsync(1000);
    expect(changes).toEqual([]);
    expect(source.reads).toBe(1);
    expect(vi.getTimerCount()).toBe(0);

    const slow = new FakeSource();
    let finished = false;
    const busy = await NamespaceWatcher.over(slow, {
      debounceMs: 10,
      onChange: async () => {
        await new Promise((resolve) => setTimeout(resolve, 500));
        finished = true;
      },
    });
    slow.interfaces = [eth(2)];
    busy.resync();
    await vi.advanceTimersByTimeAsync(20);
    const stopped = busy.stop();
    await vi.advanceTimersByTimeAsync(600);
    await stopped;
    expect(finished).toBe(true);
  });

  it('refuses a negative debounce', async () => {
    await expect(NamespaceWatcher.over(new FakeSource(), { debounceMs: -1, onChange: () => {} })).rejects.toThrow(
      /debounceMs/,
    );
  });
});

describe('NamespaceWatcher failures without onError', () => {
  /** A watcher whose every onChange throws, and what reached vcnet:notice, process.emitWarning and stderr. */
  async function failing(options: { subscribe: boolean; onError?: (error: Error) => void }) {
    const { channels } = await import('../../../src/diagnostics.js');
    const notices: unknown[] = [];
    const listener = (notice: unknown) => void notices.push(notice);
    if (options.subscribe) channels.notice.subscribe(listener);
    const emitWarning = vi.spyOn(process, 'emitWarning').mockImplementation(() => {});
    const stderr = vi.spyOn(process.stderr, 'write');
    const source = new FakeSource();
    const watcher = await NamespaceWatcher.over(source, {
      debounceMs: 10,
      onChange: () => {
        throw new Error('apply failed');
      },
      ...(options.onError ? { onError: options.onError } : {}),
    });
    source.interfaces = [eth(2)];
    watcher.resync();
    await vi.advanceTimersByTimeAsync(50);
    await watcher.stop();
    const result = {
      notices,
      warnings: emitWarning.mock.calls.length,
      warningArguments: emitWarning.mock.calls,
      stderrWrites: stderr.mock.calls.length,
    };
    channels.notice.unsubscribe(listener);
    emitWarning.mockRestore();
    stderr.mockRestore();
    return result;
  }

  it('publishes a failure on vcnet:notice and writes nothing when someone subscribes', async () => {
    const { notices, warnings, stderrWrites } = await failing({ subscribe: true });
    expect(notices).toEqual([
      expect.objectContaining({ operation: 'watch', message: expect.stringContaining('apply failed') }),
    ]);
    expect(notices[0]).not.toHaveProperty('handled');
    expect(warnings).toBe(0);
    expect(stderrWrites).toBe(0);
  });

  it('gives the failure to onError alone (the caller reports it); a process warning only when no one takes it', async () => {
    const errors: Error[] = [];
    const handled = await failing({ subscribe: true, onError: (error) => void errors.push(error) });
    expect(errors.map((error) => error.message)).toEqual(['apply failed']);
    // watchSandbox's onError publishes its own notice: one here too would be a second for one failure.
    expect(handled.notices).toEqual([]);
    expect(handled.warnings).toBe(0);
    const unheard = await failing({ subscribe: false });
    expect(unheard.warnings).toBe(1);
    // vcnet's own warning type, as every notice no one took (diagnostics.ts), not Node's generic Warning.
    expect(unheard.warningArguments[0]).toEqual([
      'could not read or apply a namespace change: apply failed',
      'VcnetWarning',
    ]);
  });
});

describe('NamespaceWatcher with trafficControl', () => {
  async function watch(source: FakeSource, trafficControl: boolean, onChange?: () => void) {
    const changes: NamespaceChange[] = [];
    const watcher = await NamespaceWatcher.over(source, {
      debounceMs: 100,
      trafficControl,
      onChange: (change) => {
        onChange?.();
        changes.push(change);
      },
      onError: () => {},
    });
    return { watcher, changes };
  }

  it('says tc may have changed at start and after a tc event, with no interface changed, one change per burst', async () => {
    const source = new FakeSource();
    source.interfaces = [eth(2)];
    const { watcher, changes } = await watch(source, true);
    await vi.advanceTimersByTimeAsync(150);
    expect(changes).toHaveLength(1);
    expect(changes[0]).toMatchObject({ trafficControl: true, addedInterfaces: [], removedInterfaces: [] });
    for (let i = 0; i < 50; i++) {
      watcher.resync({ trafficControl: true });
      await vi.advanceTimersByTimeAsync(1);
    }
    await vi.advanceTimersByTimeAsync(150);
    expect(changes).toHaveLength(2);
    expect(changes[1]?.trafficControl).toBe(true);
    // An interface event alone does not say it.
    source.interfaces = [eth(2), eth(3)];
    watcher.resync();
    await vi.advanceTimersByTimeAsync(150);
    expect(changes).toHaveLength(3);
    expect(changes[2]).not.toHaveProperty('trafficControl');
    await watcher.stop();
  });

  it('brings a tc change again after onChange failed with it', async () => {
    const source = new FakeSource();
    let failures = 1;
    const { watcher, changes } = await watch(source, true, () => {
      if (failures-- > 0) throw new Error('lock held');
    });
    await vi.advanceTimersByTimeAsync(1000);
    expect(changes).toHaveLength(1);
    expect(changes[0]?.trafficControl).toBe(true);
    await watcher.stop();
  });

  it('without the option: no change for tc, nothing at start', async () => {
    const source = new FakeSource();
    const { watcher, changes } = await watch(source, false);
    watcher.resync({ trafficControl: true });
    await vi.advanceTimersByTimeAsync(300);
    expect(changes).toEqual([]);
    await watcher.stop();
  });
});
