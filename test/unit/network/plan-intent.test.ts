/**
 * An attach journals its plan's intent (every record it may leave) before its first change. A step
 * on a pod link cannot be told made from never made by looking at the namespace (another tool may
 * have added an ingress qdisc there, or removed the address, since), so each such record names the
 * link of vcnet's the plan makes before it (`madeAfter`), and detach passes over it while that link,
 * recorded `unconfirmed`, is not there. That holds only if every plan makes a link of its own before
 * its first step on a pod link: checked here for every model and option that changes the order.
 */
import { describe, expect, it } from 'vitest';
import { AddressFlag } from '../../../src/netlink/codec/address.js';
import { InterfaceFlag } from '../../../src/netlink/codec/link/message.js';
import type { Link } from '../../../src/netlink/codec/link.js';
import { ETH_P_ALL } from '../../../src/netlink/codec/tc/filter.js';
import { CLSACT_INGRESS_PARENT, INGRESS_HANDLE, TC_H_INGRESS } from '../../../src/netlink/codec/tc/message.js';
import type { AttachRequest } from '../../../src/network/plan/plan-attach.js';
import {
  type PlanConfig,
  type PlanSnapshot,
  planAttach,
  VCNET_LINK_GROUP,
} from '../../../src/network/plan/plan-attach.js';
import { planDetach } from '../../../src/network/plan/plan-detach.js';
import { intentOf } from '../../../src/network/plan/plan-intent.js';
import type { Change, Plan, PlumbingStep } from '../../../src/network/plan/types.js';
import { address, link, permanent, planSnapshot, route } from './fixtures.js';

const SPARE = '0a:00:00:00:00:01';
const RATES = { rxBitsPerSecond: 30_000_000, txBitsPerSecond: 20_000_000 };

/** planSnapshot's pod with `source` as eth0, a privacy address, an IPv6 route via a gateway and a proxy ARP entry. */
function snapshot(source: Link, overrides: Partial<PlanSnapshot> = {}): PlanSnapshot {
  const pod = planSnapshot();
  return {
    ...pod,
    links: [pod.links[0]!, source],
    addresses: [...pod.addresses, address('fd00::99', 64, { flags: AddressFlag.TEMPORARY })],
    routes: [...pod.routes, route({ family: 10, destination: 'fd00:1::', destinationLength: 64, gateway: 'fd00::1' })],
    proxyNeighbours: [{ index: 2, family: 2, destination: '10.88.0.50', state: permanent, flags: 8, type: 1 }],
    ...overrides,
  };
}

const eth0 = link();
const ingressOnEth0 = (kind: 'ingress' | 'clsact'): Partial<PlanSnapshot> => ({
  qdiscs: [{ index: 2, kind, handle: INGRESS_HANDLE, parent: TC_H_INGRESS } as PlanSnapshot['qdiscs'][number]],
  filters: [
    {
      index: 2,
      kind: 'u32',
      parent: kind === 'clsact' ? CLSACT_INGRESS_PARENT : INGRESS_HANDLE,
      priority: 7,
      protocol: ETH_P_ALL,
      options: { kind: 'u32', unparsed: true },
    } as NonNullable<PlanSnapshot['filters']>[number],
  ],
});

const cases: Array<{ what: string; snapshot: PlanSnapshot; config: PlanConfig; request: AttachRequest }> = [];
for (const rateLimit of [undefined, RATES, { rxBitsPerSecond: 1_000_000 }, { txBitsPerSecond: 1_000_000 }]) {
  const config: PlanConfig = { queues: 1, ...(rateLimit ? { rateLimit } : {}) };
  const limits = rateLimit ? ` with ${Object.keys(rateLimit).join(' and ')}` : '';
  cases.push(
    {
      what: `tcfilter${limits}`,
      snapshot: snapshot(eth0),
      config,
      request: { model: 'tcfilter', source: eth0, tapName: 'tap0_kata' },
    },
    {
      what: `tcfilter on a veth without a transmit queue${limits}`,
      snapshot: snapshot(link({ txQueueLength: 0 })),
      config,
      request: { model: 'tcfilter', source: link({ txQueueLength: 0 }), tapName: 'tap0_kata' },
    },
    {
      what: `tcfilter beside the pod link's own ingress qdisc${limits}`,
      snapshot: snapshot(eth0, ingressOnEth0('ingress')),
      config,
      request: { model: 'tcfilter', source: eth0, tapName: 'tap0_kata' },
    },
    {
      what: `tcfilter under the pod link's clsact${limits}`,
      snapshot: snapshot(eth0, ingressOnEth0('clsact')),
      config,
      request: { model: 'tcfilter', source: eth0, tapName: 'tap0_kata' },
    },
    {
      what: `macvtap (neighbours, proxy entries, routes, IPv4 and IPv6 addresses)${limits}`,
      snapshot: snapshot(eth0),
      config,
      request: { model: 'macvtap', source: eth0, tapName: 'tap0_kata', spareHardwareAddress: SPARE, now: 1 },
    },
    {
      what: `macvtap on a pod link never brought up${limits}`,
      snapshot: snapshot(link({ flags: InterfaceFlag.BROADCAST, qdisc: 'noop' })),
      config,
      request: {
        model: 'macvtap',
        source: link({ flags: InterfaceFlag.BROADCAST, qdisc: 'noop' }),
        tapName: 'tap0_kata',
        spareHardwareAddress: SPARE,
      },
    },
    {
      what: `macvtap below IPv6's minimum MTU${limits}`,
      snapshot: snapshot(link({ mtu: 1000 })),
      config,
      request: { model: 'macvtap', source: link({ mtu: 1000 }), tapName: 'tap0_kata', spareHardwareAddress: SPARE },
    },
    {
      what: `none, lending the pod link's MAC${limits}`,
      snapshot: snapshot(eth0),
      config,
      request: { model: 'none', source: eth0, tapName: 'tap0_kata' },
    },
  );
}

/** The pod links a change acts on (a macvtap made on one is vcnet's own link: undone by deleting it). */
function podLinksOf(change: Change): string[] {
  if (change.op === 'create-tap' || change.op === 'create-link' || change.op === 'delete-link-group') return [];
  return change.link.role === 'pod' ? [change.link.name] : [];
}

const ownLinkAt = (plan: Plan) =>
  plan.steps.findIndex(({ change }) => change.op === 'create-tap' || change.op === 'create-link');

describe('every model makes a link of its own before its first step on a pod link', () => {
  for (const { what, snapshot: scanned, config, request } of cases) {
    it(what, () => {
      const plan = planAttach(scanned, config, request);
      const first = ownLinkAt(plan);
      expect(first, 'the plan makes a link').toBe(0);
      const onPod = plan.steps.findIndex(({ change }) => podLinksOf(change).length > 0);
      if (onPod >= 0) expect(onPod, 'first step on a pod link').toBeGreaterThan(first);

      const intent = intentOf(plan);
      expect(intent.journaledAhead).toBe(true);
      const own = new Set(intent.records.flatMap((record) => (record.step === 'create-link' ? [record.name] : [])));
      for (const record of intent.records) {
        if (record.step === 'create-link') {
          expect(record).toMatchObject({ unconfirmed: true, index: expect.any(Number) });
        } else if (own.has(record.link)) {
          expect(record.madeAfter, `${record.step} on vcnet's ${record.link}`).toBeUndefined();
        } else {
          expect(record.madeAfter, `${record.step} on ${record.link}`).toBe('tap0_kata');
        }
      }
    });
  }

  it('rate limits on a device the VM uses as it is (existing) start on that pod link: journaled before its batch', () => {
    const device = link({ index: 9, name: 'vm-nic0', kind: 'macvtap' });
    for (const rateLimit of [RATES, { txBitsPerSecond: 1_000_000 }]) {
      const plan = planAttach(
        snapshot(device, { links: [device] }),
        { queues: 1, rateLimit },
        { model: 'existing', source: device, tapName: 'vm-nic0' },
      );
      expect(plan.steps[0]?.change).toMatchObject({ op: 'add-qdisc', kind: 'htb', link: { role: 'pod' } });
      expect(intentOf(plan).journaledAhead).toBe(false);
    }
    // rx alone: its ifb comes first, and what follows on the device is recorded as made after it.
    const rxOnly = intentOf(
      planAttach(
        snapshot(device, { links: [device] }),
        { queues: 1, rateLimit: { rxBitsPerSecond: 1_000_000 } },
        { model: 'existing', source: device, tapName: 'vm-nic0' },
      ),
    );
    expect(rxOnly.journaledAhead).toBe(true);
  });
});

describe('planDetach of an intent: what the attach never got to is passed over, not undone nor counted', () => {
  const tcfilterIntent = () =>
    intentOf(
      planAttach(
        snapshot(eth0),
        { queues: 1, rateLimit: RATES },
        { model: 'tcfilter', source: eth0, tapName: 'tap0_kata' },
      ),
    );
  const tapAt = (index: number, overrides: Partial<Link> = {}) =>
    link({ index, name: 'tap0_kata', kind: 'tun', group: VCNET_LINK_GROUP, ...overrides });
  const chosen = (records: readonly PlumbingStep[]) =>
    (records.find((record) => record.step === 'create-link') as { index: number }).index;

  it('killed before its tap: nothing on eth0 is touched, whatever is there now, and nothing is counted', () => {
    const { records } = tcfilterIntent();
    const plan = planDetach(records, { links: [eth0] });
    expect(plan.steps).toEqual([]);
    expect(plan.alreadyGone).toEqual([]);
    expect(plan.neverMade).toEqual(records);
    expect(plan.notices).toEqual([]);
  });

  it('another link at the chosen index is not its tap: still passed over (and said)', () => {
    const { records } = tcfilterIntent();
    const theirs = link({ index: chosen(records), name: 'theirs0', kind: 'ifb' });
    const plan = planDetach(records, { links: [eth0, theirs] });
    expect(plan.steps).toEqual([]);
    expect(plan.neverMade).toEqual(records);
    expect(plan.notices.map((notice) => notice.message)).toEqual([expect.stringContaining('left theirs0')]);
  });

  it('its tap there (the attach started): what it may have done on eth0 is undone', () => {
    const { records } = tcfilterIntent();
    const plan = planDetach(records, { links: [eth0, tapAt(chosen(records))] });
    expect(plan.neverMade).toEqual([]);
    expect(plan.steps.map((step) => step.change.op)).toEqual(['delete-link', 'delete-qdisc', 'delete-qdisc']);
    // A tap not yet in vcnet's group (killed right after its ioctl) counts as made too.
    const early = planDetach(records, { links: [eth0, tapAt(chosen(records), { group: 0 })] });
    expect(early.neverMade).toEqual([]);
  });

  it('a pod step whose tap record is gone (detached, the rest refused) is undone: it was made', () => {
    const { records } = tcfilterIntent();
    const left = records.filter((record) => record.step !== 'create-link' && record.link === 'eth0');
    expect(left.every((record) => record.step !== 'create-link' && record.madeAfter === 'tap0_kata')).toBe(true);
    const plan = planDetach(left, { links: [eth0] });
    expect(plan.neverMade).toEqual([]);
    expect(plan.steps.length).toBeGreaterThan(0);
  });

  it('macvtap killed before its macvtap: no address, route or neighbour is put back', () => {
    const { records } = intentOf(
      planAttach(
        snapshot(eth0),
        { queues: 1 },
        { model: 'macvtap', source: eth0, tapName: 'tap0_kata', spareHardwareAddress: SPARE },
      ),
    );
    const plan = planDetach(records, { links: [link({ address: SPARE })] });
    expect(plan.steps).toEqual([]);
    expect(plan.alreadyGone).toEqual([]);
    expect(plan.neverMade).toEqual(records);
  });
});
