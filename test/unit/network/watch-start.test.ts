/**
 * Where a watch starts from (src/sandbox/watch-start.ts): the record's view of the pod, compared with
 * the namespace by the watcher's first read. What changed while no watch ran comes as that change.
 * The VM side is test/e2e/watch-start-vm.test.ts.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { EndpointState } from '../../../src/network/endpoint/endpoint.js';
import {
  diffInterfaces,
  type InterfaceSource,
  type NamespaceChange,
  NamespaceWatcher,
} from '../../../src/network/namespace-watcher.js';
import type { NetworkInfo } from '../../../src/network/network-info.js';
import { ENDPOINT_STATE_VERSION } from '../../../src/network/state/content-versions.js';
import { REPLACED_LINK_INDEX, watchStartView } from '../../../src/sandbox/watch-start.js';
import { address, info, link, route } from './fixtures.js';

const podLink = (overrides: Parameters<typeof link>[0] = {}) =>
  info({
    link: link({ index: 5, name: 'eth1', address: '02:00:00:00:01:02', ...overrides }),
    addresses: [address('10.1.0.2', 24, { index: 5 })],
    routes: [route({ destination: '10.99.0.0', destinationLength: 16, gateway: '10.1.0.1', outputIndex: 5 })],
  });

function endpoint(properties: NetworkInfo, overrides: Partial<EndpointState> = {}): EndpointState {
  return {
    version: ENDPOINT_STATE_VERSION,
    type: 'virtual',
    index: 1,
    name: properties.link.name,
    properties,
    plumbing: {
      model: 'tcfilter',
      steps: [],
      tapName: 'tap1_kata',
      tapIndex: 9,
      guestHardwareAddress: properties.link.address ?? '',
      queues: 1,
    },
    deviceMtu: properties.link.mtu,
    ...overrides,
  };
}

const eth0 = info({ link: link({ index: 2, name: 'eth0' }) });
const tap = (index = 9) => info({ link: link({ index, name: 'tap1_kata', kind: 'tun', group: 0 }) });

/** What the watcher's first read reports: the start view against the namespace now. */
function firstChange(present: NetworkInfo[], endpoints: EndpointState[]) {
  const view = watchStartView(present, endpoints);
  const byName = (list: readonly NetworkInfo[]) => new Map(list.map((entry) => [entry.link.name, entry]));
  const change = diffInterfaces(byName(view.interfaces), byName(present));
  return {
    removed: change.removedInterfaces,
    added: change.addedInterfaces.map((entry) => `${entry.link.name}@${entry.link.index}`),
    changed: change.changedInterfaces.map((entry) => entry.link.name),
    macChanged: (change.macChangedInterfaces ?? []).map((entry) => entry.link.name),
    view,
  };
}

describe('watchStartView', () => {
  it('is the namespace itself when the record and the pod agree, with the recorded tap', () => {
    const { removed, added, changed, view } = firstChange([eth0, podLink(), tap()], [endpoint(podLink())]);
    expect([removed, added, changed]).toEqual([[], [], []]);
    expect(view.vcnetLinks).toEqual([{ name: 'tap1_kata', index: 9 }]);
  });

  it('takes a recorded pod link that is gone as removed (a CNI DEL while no watch ran)', () => {
    const { removed, added, changed } = firstChange([eth0, tap()], [endpoint(podLink())]);
    expect([removed, added, changed]).toEqual([['eth1'], [], []]);
  });

  it('takes a pod link made again under a recorded name (another ifindex) as removed and added', () => {
    const { removed, added } = firstChange([eth0, podLink({ index: 12 })], [endpoint(podLink())]);
    expect([removed, added]).toEqual([['eth1'], ['eth1@12']]);
  });

  it('takes the recorded ifindex with another kind as another link', () => {
    const { removed, added, view } = firstChange([eth0, podLink({ kind: 'macvlan' })], [endpoint(podLink())]);
    expect([removed, added]).toEqual([['eth1'], ['eth1@5']]);
    expect(view.interfaces.find((entry) => entry.link.name === 'eth1')?.link.index).toBe(REPLACED_LINK_INDEX);
  });

  it('takes the recorded ifindex with another MAC as the same link, as a running watch does (nothing to do)', () => {
    for (const address of ['02:00:00:00:01:07', '02:00:00:00:01:02'.toUpperCase()]) {
      const { removed, added, changed } = firstChange([eth0, podLink({ address })], [endpoint(podLink())]);
      expect([removed, added, changed]).toEqual([[], [], []]);
    }
  });

  it('takes a tcfilter pod link whose MAC is not the recorded one (the guest NIC’s) as a MAC change, to be said', () => {
    expect(firstChange([eth0, podLink({ address: '02:00:00:00:01:07' })], [endpoint(podLink())]).macChanged).toEqual([
      'eth1',
    ]);
    // The same MAC in capitals is the same MAC.
    const capitals = podLink({ address: '02:00:00:00:01:0A' });
    expect(firstChange([capitals], [endpoint(podLink({ address: '02:00:00:00:01:0a' }))]).macChanged).toEqual([]);
    // With another change too: both are said.
    const moved = { ...podLink({ address: '02:00:00:00:01:07' }), addresses: [address('10.1.0.7', 24, { index: 5 })] };
    expect(firstChange([moved], [endpoint(podLink())])).toMatchObject({ changed: ['eth1'], macChanged: ['eth1'] });
  });

  it('takes a recorded pod link renamed (same ifindex) as removed under its name and added under the new one', () => {
    const renamed = podLink({ name: 'eth8' });
    const { removed, added, changed, view } = firstChange([eth0, renamed, tap()], [endpoint(podLink())]);
    expect([removed, added, changed]).toEqual([['eth1'], ['eth8@5'], []]);
    // Not in the view: not a link there at start, which a watch would leave alone.
    expect(view.interfaces.map((entry) => entry.link.name).sort()).toEqual(['eth0', 'eth1', 'tap1_kata']);
  });

  it('takes two recorded pod links that swapped names as both removed and added', () => {
    const eth2 = (overrides: Parameters<typeof link>[0] = {}) => podLink({ name: 'eth2', index: 6, ...overrides });
    const { removed, added } = firstChange(
      [eth0, podLink({ index: 6 }), eth2({ index: 5 })],
      [endpoint(podLink()), endpoint(eth2())],
    );
    expect([removed.sort(), added.sort()]).toEqual([
      ['eth1', 'eth2'],
      ['eth1@6', 'eth2@5'],
    ]);
  });

  it('takes the recorded ifindex under another name and kind as another link there at start', () => {
    const other = podLink({ name: 'eth8', kind: 'macvlan' });
    const { removed, added, view } = firstChange([eth0, other], [endpoint(podLink())]);
    expect([removed, added]).toEqual([['eth1'], []]);
    expect(view.interfaces.map((entry) => entry.link.name)).toContain('eth8');
  });

  it('takes a route added, an address changed or the MTU lowered as changed', () => {
    const more = podLink();
    more.routes.push(route({ destination: '10.123.0.0', destinationLength: 16, gateway: '10.1.0.1', outputIndex: 5 }));
    const variants = [
      more,
      { ...podLink(), addresses: [address('10.1.0.7', 24, { index: 5 })] },
      podLink({ mtu: 1400 }),
    ];
    for (const now of variants) expect(firstChange([now], [endpoint(podLink())]).changed).toEqual(['eth1']);
  });

  it('does not take an MTU above the guest NIC’s (it stays capped) as a change', () => {
    expect(firstChange([podLink({ mtu: 9000 })], [endpoint(podLink())]).changed).toEqual([]);
  });

  it('takes a macvtap endpoint’s pod link by ifindex, with the private MAC attach gave it or another, not by its addresses', () => {
    const recorded = endpoint(podLink(), {
      type: 'macvtap',
      plumbing: {
        model: 'macvtap',
        steps: [
          {
            step: 'change-link',
            link: 'eth1',
            index: 5,
            before: { address: '02:00:00:00:01:02' },
            set: { address: '06:00:00:00:00:aa' },
          },
        ],
        tapName: 'tap1_kata',
        tapIndex: 9,
        guestHardwareAddress: '02:00:00:00:01:02',
        queues: 1,
      },
    });
    const asLeft = info({ link: link({ index: 5, name: 'eth1', address: '06:00:00:00:00:aa' }) });
    expect(firstChange([asLeft], [recorded])).toMatchObject({ removed: [], added: [], changed: [], macChanged: [] });
    // Its MAC set back (or to any other): not followed, as while watching; the guest keeps the recorded
    // one, and its macvtap has it, whatever the pod link's MAC: nothing to say.
    const other = info({ link: link({ index: 5, name: 'eth1', address: '02:00:00:00:01:02' }) });
    expect(firstChange([other], [recorded])).toMatchObject({ removed: [], added: [], changed: [], macChanged: [] });
  });

  it('leaves out physical endpoints (their link is with VFIO) and unfinished attaches', () => {
    const physical = endpoint(podLink(), { type: 'physical', plumbing: undefined });
    const pending = endpoint(podLink({ name: 'eth2', index: 6 }), {
      plumbing: { ...endpoint(podLink()).plumbing!, model: 'pending' },
    });
    const { removed, view } = firstChange([eth0], [physical, pending]);
    expect(removed).toEqual([]);
    expect(view.vcnetLinks).toEqual([]);
  });
});

/** An interface source whose content the test sets. */
class FakeSource implements InterfaceSource {
  interfaces: NetworkInfo[] = [];
  async read(): Promise<NetworkInfo[]> {
    return structuredClone(this.interfaces);
  }
  close(): void {}
}

describe('NamespaceWatcher with a start view', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('reads again at once and reports what differs from the view, a recorded tap gone included', async () => {
    const source = new FakeSource();
    source.interfaces = [eth0, podLink({ index: 12 })];
    const changes: NamespaceChange[] = [];
    const watcher = await NamespaceWatcher.over(source, {
      debounceMs: 50,
      onChange: (change) => {
        changes.push(change);
      },
      startView: (present) => watchStartView(present, [endpoint(podLink())]),
    });
    expect(watcher.interfaces().find((entry) => entry.link.name === 'eth1')?.link.index).toBe(5);
    await vi.advanceTimersByTimeAsync(100);
    expect(changes).toHaveLength(1);
    expect(changes[0]?.removedInterfaces).toEqual(['eth1']);
    expect(changes[0]?.addedInterfaces.map((entry) => entry.link.index)).toEqual([12]);
    expect(changes[0]?.removedVcnetLinks).toEqual([{ name: 'tap1_kata', index: 9 }]);
    // Delivered: the namespace is the baseline from then on.
    await vi.advanceTimersByTimeAsync(1000);
    expect(changes).toHaveLength(1);
    await watcher.stop();
  });
});
