/**
 * An attach killed after its pod-link batch but before its last record write leaves the intent on
 * record: its own link `unconfirmed`, each pod-link step `madeAfter` it. When that link is gone too
 * (deleted by hand, renamed), its absence does not say "never made": the pod link does. A batch is
 * one sendto the kernel processes to its end, so any one of its steps in place (vcnet's redirect
 * filter, its htb, the MAC it set) means all were made, and they are undone; nothing of it in place
 * (or only what another tool may have done as well) means never made, and left as it is.
 */
import { describe, expect, it } from 'vitest';
import type { Link } from '../../../src/netlink/codec/link.js';
import type { Filter } from '../../../src/netlink/codec/tc/filter.js';
import { ETH_P_ALL } from '../../../src/netlink/codec/tc/filter.js';
import { INGRESS_HANDLE, TC_H_ROOT } from '../../../src/netlink/codec/tc/message.js';
import type { TrafficClass } from '../../../src/netlink/codec/tc/qdisc/htb.js';
import type { Qdisc } from '../../../src/netlink/codec/tc/qdisc.js';
import { isVcnetHtb } from '../../../src/network/foreign-filters.js';
import { filterViewKey, type PodLinkView, podBatchesInPlace } from '../../../src/network/plan/batch-evidence.js';
import { FILTER_PRIORITY, htbChanges, planAttach, VCNET_LINK_GROUP } from '../../../src/network/plan/plan-attach.js';
import { planDetach, unconfirmedLinksAbsent } from '../../../src/network/plan/plan-detach.js';
import { intentOf } from '../../../src/network/plan/plan-intent.js';
import type { PlumbingStep } from '../../../src/network/plan/types.js';
import { link, planSnapshot } from './fixtures.js';

const SPARE = '0a:00:00:00:00:01';
const RATES = { rxBitsPerSecond: 30_000_000, txBitsPerSecond: 20_000_000 };
const eth0 = link();

const tcfilterRecords = () =>
  intentOf(
    planAttach(
      { ...planSnapshot(), links: [planSnapshot().links[0]!, eth0] },
      { queues: 1, rateLimit: RATES },
      { model: 'tcfilter', source: eth0, tapName: 'tap0_kata' },
    ),
  ).records;

const macvtapRecords = () =>
  intentOf(
    planAttach(
      { ...planSnapshot(), links: [planSnapshot().links[0]!, eth0] },
      { queues: 1 },
      { model: 'macvtap', source: eth0, tapName: 'tap0_kata', spareHardwareAddress: SPARE, now: 1 },
    ),
  ).records;

const chosen = (records: readonly PlumbingStep[]) =>
  (records.find((record) => record.step === 'create-link') as { index: number }).index;

/** A u32 match-all on eth0's ingress at `priority` redirecting to `target` (its head and hash table too, as dumped). */
function redirect(priority: number, target: number): Filter[] {
  const base = { index: eth0.index, parent: INGRESS_HANDLE, priority, protocol: ETH_P_ALL, kind: 'u32' };
  return [
    { ...base, handle: 0, options: { kind: 'u32' } },
    { ...base, handle: 0x80000000, options: { kind: 'u32', keys: [], actions: [] } },
    {
      ...base,
      handle: 0x80000800,
      options: {
        kind: 'u32',
        keys: [{ mask: 0, value: 0, offset: 0, offsetMask: 0 }],
        actions: [{ kind: 'mirred', direction: 'egress', mode: 'redirect', targetIndex: target }],
      },
    },
  ];
}

function view(overrides: Partial<PodLinkView> = {}): PodLinkView {
  return { links: [eth0], filters: new Map(), vcnetHtbs: new Map(), ...overrides };
}

const onIngress = (filters: Filter[]) => new Map([[filterViewKey(eth0.index, INGRESS_HANDLE), filters]]);

describe('podBatchesInPlace: a gone link of vcnet made its pod-link batch when any step of it shows', () => {
  it('the tap recorded unconfirmed and absent is what is asked about', () => {
    const records = tcfilterRecords();
    expect([...unconfirmedLinksAbsent(records, [eth0])]).toEqual(['tap0_kata']);
  });

  it("nothing on eth0, or another tool's htb and empty ingress: never made", () => {
    const records = tcfilterRecords();
    const absent = unconfirmedLinksAbsent(records, [eth0]);
    expect(podBatchesInPlace(records, absent, view())).toEqual(new Set());
    expect(podBatchesInPlace(records, absent, view({ filters: onIngress([]) }))).toEqual(new Set());
  });

  it("vcnet's redirect at its recorded priority, to the tap's index or to a deleted link (0): made", () => {
    const records = tcfilterRecords();
    const absent = unconfirmedLinksAbsent(records, [eth0]);
    for (const target of [0, chosen(records)]) {
      const inPlace = podBatchesInPlace(
        records,
        absent,
        view({ filters: onIngress(redirect(FILTER_PRIORITY, target)) }),
      );
      expect(inPlace, `a redirect to ifindex ${target}`).toEqual(new Set(['tap0_kata']));
    }
  });

  it("a redirect to another link, or at another priority, or only the filter's head: not vcnet's, never made", () => {
    const records = tcfilterRecords();
    const absent = unconfirmedLinksAbsent(records, [eth0]);
    for (const filters of [
      redirect(FILTER_PRIORITY, 7),
      redirect(FILTER_PRIORITY + 1, 0),
      redirect(FILTER_PRIORITY, 0).slice(0, 2),
    ]) {
      expect(podBatchesInPlace(records, absent, view({ filters: onIngress(filters) }))).toEqual(new Set());
    }
  });

  it("eth0's root htb of a vcnet rate limit's shape: made", () => {
    const records = tcfilterRecords();
    const absent = unconfirmedLinksAbsent(records, [eth0]);
    const inPlace = podBatchesInPlace(records, absent, view({ vcnetHtbs: new Map([[eth0.index, 0x10000]]) }));
    expect(inPlace).toEqual(new Set(['tap0_kata']));
  });

  it('macvtap: eth0 with the private MAC vcnet set is made; with its own MAC, never made', () => {
    const records = macvtapRecords();
    const absent = unconfirmedLinksAbsent(records, [eth0]);
    expect(absent).toEqual(new Set(['tap0_kata']));
    const changed = link({ address: SPARE });
    expect(podBatchesInPlace(records, absent, view({ links: [changed] }))).toEqual(new Set(['tap0_kata']));
    expect(podBatchesInPlace(records, absent, view())).toEqual(new Set());
  });
});

describe('planDetach with the batches shown in place: undone as usual, the gone link counted as gone', () => {
  it('tcfilter: the redirect, its ingress qdisc and the htb on eth0 go; the tap and its records were already gone', () => {
    const records = tcfilterRecords();
    const plan = planDetach(records, { links: [eth0], batchesInPlace: new Set(['tap0_kata']) });
    expect(plan.neverMade).toEqual([]);
    expect(plan.steps.map((step) => `${step.change.op} ${'kind' in step.change ? step.change.kind : ''}`)).toEqual([
      'delete-qdisc htb',
      'delete-qdisc ingress',
    ]);
    const settled = plan.steps.flatMap((step) => step.settles);
    expect(new Set([...settled, ...plan.alreadyGone])).toEqual(new Set(records));
    // Without the evidence, as before: nothing of it is touched.
    expect(planDetach(records, { links: [eth0] }).neverMade).toEqual(records);
  });

  it("macvtap: eth0's MAC, addresses, routes and neighbours come back", () => {
    const records = macvtapRecords();
    const changed = link({ address: SPARE });
    const plan = planDetach(records, { links: [changed], batchesInPlace: new Set(['tap0_kata']) });
    expect(plan.neverMade).toEqual([]);
    const ops = plan.steps.map((step) => step.change.op);
    expect(ops).toContain('set-link');
    expect(ops).toContain('add-address');
    expect(ops).toContain('add-route');
    expect(ops).toContain('add-neighbour');
    expect(plan.steps.find((step) => step.change.op === 'set-link')?.change).toMatchObject({
      set: { address: eth0.address },
    });
  });
});

describe('a link journaled ahead and renamed since is the one attach made', () => {
  const tapAt = (index: number, overrides: Partial<Link> = {}) =>
    link({ index, name: 'tap0_kata', kind: 'tun', group: VCNET_LINK_GROUP, ...overrides });

  it("renamed in vcnet's group: deleted under its new name, and what is on eth0 undone", () => {
    const records = tcfilterRecords();
    const renamed = tapAt(chosen(records), { name: 'mine0' });
    const plan = planDetach(records, { links: [eth0, renamed] });
    expect(plan.neverMade).toEqual([]);
    expect(plan.steps[0]?.change).toMatchObject({ op: 'delete-link', link: { name: 'mine0' } });
    expect(plan.notices.map((notice) => notice.message)).toEqual([
      expect.stringContaining('was renamed mine0 after attach made it'),
    ]);
  });

  it('a tun at that index under another name outside the group is not: left, and the rest passed over', () => {
    const records = tcfilterRecords();
    const theirs = tapAt(chosen(records), { name: 'theirs0', group: 0 });
    const plan = planDetach(records, { links: [eth0, theirs] });
    expect(plan.steps).toEqual([]);
    expect(plan.neverMade).toEqual(records);
  });
});

describe('isVcnetHtb: the shape of a vcnet rate limit, nothing else', () => {
  const root: Qdisc = {
    index: 2,
    handle: 0x10000,
    parent: TC_H_ROOT,
    kind: 'htb',
    options: { kind: 'htb', defaultClass: 2 },
  };
  const cls = (handle: number, parent: number, rate = 5_000_000): TrafficClass => ({
    index: 2,
    handle,
    parent,
    kind: 'htb',
    rateBitsPerSecond: rate,
    ceilBitsPerSecond: rate,
  });
  const ours = [cls(0x10001, TC_H_ROOT), cls(0x10002, 0x10001)];

  it("vcnet's: 1: default 2, 1:1 and 1:2 at one rate", () => {
    expect(isVcnetHtb(root, ours, [], [root])).toBe(true);
  });

  it("another tool's: another default, another class, a class at another rate, a filter on it", () => {
    expect(isVcnetHtb({ ...root, options: { kind: 'htb', defaultClass: 0x10 } }, ours, [], [root])).toBe(false);
    expect(isVcnetHtb(root, [cls(0x10010, TC_H_ROOT)], [], [root])).toBe(false);
    expect(isVcnetHtb(root, [ours[0]!, cls(0x10002, 0x10001, 1_000)], [], [root])).toBe(false);
    expect(isVcnetHtb(root, ours, redirect(1, 0), [root])).toBe(false);
  });

  // The tree is written once (plan-attach.ts' HTB_* handles): the root's default class, the classes
  // made and what isVcnetHtb takes for vcnet's all follow them.
  it('is the tree attach makes: its default class is one of the classes it adds', () => {
    const changes = htbChanges({ role: 'pod', name: 'eth0', index: 2 }, 5_000_000);
    const qdisc = changes.find((change) => change.op === 'add-qdisc');
    const classes = changes.flatMap((change) => (change.op === 'add-class' ? [change] : []));
    if (qdisc?.op !== 'add-qdisc' || qdisc.defaultClass === undefined) throw new Error('no htb root with a default');
    const major = qdisc.handle >>> 16;
    expect(classes.map((added) => added.handle)).toContain(((major << 16) | qdisc.defaultClass) >>> 0);
    const made: Qdisc = {
      index: 2,
      handle: qdisc.handle,
      parent: qdisc.parent,
      kind: 'htb',
      options: { kind: 'htb', defaultClass: qdisc.defaultClass },
    };
    const madeClasses = classes.map((added) => cls(added.handle, added.parent, added.rateBitsPerSecond));
    expect(isVcnetHtb(made, madeClasses, [], [made])).toBe(true);
  });
});
