/**
 * A filter vcnet recorded on a pod link that is not there now, in a qdisc that is (deleted by hand
 * with `tc filter del`, or never made by an attach cut short): the plan classifies it already gone,
 * as it does a recorded qdisc the link lacks, so detach, `detach --dry-run` and `gc --dry-run` all
 * read it from the plan (plan.alreadyGone) rather than a deletion the kernel answers "gone". A filter
 * dump that fails proves nothing: the filter stays planned. A scripted handle stands in for the
 * kernel's dumps; test/integration/cli/detach-missing-filter.test.ts runs the same on a real one.
 */
import { describe, expect, it } from 'vitest';
import type { Link } from '../../../src/netlink/codec/link.js';
import type { Filter } from '../../../src/netlink/codec/tc/filter.js';
import { ETH_P_ALL } from '../../../src/netlink/codec/tc/filter.js';
import { CLSACT_INGRESS_PARENT, INGRESS_HANDLE, TC_H_INGRESS } from '../../../src/netlink/codec/tc/message.js';
import type { Qdisc } from '../../../src/netlink/codec/tc/qdisc.js';
import type { NetlinkHandle } from '../../../src/netlink/handle.js';
import { commandOf } from '../../../src/network/plan/commands.js';
import { FILTER_PRIORITY, planAttach, VCNET_LINK_GROUP } from '../../../src/network/plan/plan-attach.js';
import { planDetach } from '../../../src/network/plan/plan-detach.js';
import type { PlumbingStep } from '../../../src/network/plan/types.js';
import { planUndo, recordsShownBy } from '../../../src/network/plan/undo.js';
import { link, planSnapshot } from './fixtures.js';

const eth0 = link();
const tap = link({ index: 7, name: 'tap0_kata', kind: 'tun', group: VCNET_LINK_GROUP });

const ingressOf = (index: number, kind = 'ingress'): Qdisc => ({
  index,
  handle: INGRESS_HANDLE,
  parent: TC_H_INGRESS,
  kind,
  options: { kind },
});

/** The records of a tcfilter attach on eth0 as apply writes them (the tap at ifindex 7), eth0's qdisc `existing` before attach. */
function records(existing?: Qdisc): PlumbingStep[] {
  const plan = planAttach(
    planSnapshot(existing ? { qdiscs: [existing] } : {}),
    { queues: 1 },
    { model: 'tcfilter', source: eth0, tapName: 'tap0_kata' },
  );
  return plan.steps.flatMap((step): PlumbingStep[] => {
    const record = step.record;
    if (!record) return [];
    if (record.step === 'create-link') return [{ ...record, index: 7 }];
    if (record.step === 'add-filter' && record.redirectTo?.link === 'tap0_kata')
      return [{ ...record, redirectTo: { link: 'tap0_kata', index: 7 } }];
    return [record];
  });
}

/** vcnet's u32 match-all on eth0 at `priority` under `parent`, redirecting to the tap, as dumped (head, hash table, node). */
function vcnetRedirect(priority: number, parent = INGRESS_HANDLE): Filter[] {
  const base = { index: eth0.index, parent, priority, protocol: ETH_P_ALL, kind: 'u32' };
  return [
    { ...base, handle: 0, options: { kind: 'u32' } },
    { ...base, handle: 0x80000000, options: { kind: 'u32', keys: [], actions: [] } },
    {
      ...base,
      handle: 0x80000800,
      options: {
        kind: 'u32',
        keys: [{ mask: 0, value: 0, offset: 0, offsetMask: 0 }],
        actions: [{ kind: 'mirred', direction: 'egress', mode: 'redirect', targetIndex: tap.index }],
      },
    },
  ];
}

/** Another tool's filter on eth0's ingress at `priority` (a u32 head: not a redirect to the tap). */
function theirs(priority: number, parent = INGRESS_HANDLE): Filter {
  return {
    index: eth0.index,
    parent,
    handle: 0x80000800,
    priority,
    protocol: ETH_P_ALL,
    kind: 'u32',
    options: { kind: 'u32', keys: [{ mask: 0xff, value: 1, offset: 0, offsetMask: 0 }], actions: [] },
  };
}

/** A handle whose dumps answer with eth0's qdiscs and filters as given; a `null` filter dump is refused. */
function handleWith(view: { qdiscs: Qdisc[]; filters: Filter[] | null; links?: Link[] }): NetlinkHandle {
  return {
    links: async () => view.links ?? [eth0, tap],
    qdiscs: async (index?: number) => view.qdiscs.filter((qdisc) => index === undefined || qdisc.index === index),
    filters: async (index: number, parent: number) => {
      if (view.filters === null) throw Object.assign(new Error('refused: EPERM'), { errno: 'EPERM' });
      return view.filters.filter((filter) => filter.index === index && filter.parent >>> 16 === parent >>> 16);
    },
    classes: async () => [],
    routes: async () => [],
  } as unknown as NetlinkHandle;
}

const commands = (plan: { steps: Array<{ change: Parameters<typeof commandOf>[0] }> }) =>
  plan.steps.map((step) => commandOf(step.change));
const described = (list: readonly PlumbingStep[]) =>
  list.map((record) =>
    record.step === 'create-link' ? `${record.step} ${record.name}` : `${record.step} ${record.link}`,
  );

describe('planDetach: absentFilters', () => {
  it('counts a recorded filter its qdisc no longer holds already gone, and deletes the qdisc for itself alone', () => {
    const plan = planDetach(records(), {
      links: [eth0, tap],
      absentFilters: new Set([`eth0/65535/${FILTER_PRIORITY}`]),
    });
    expect(commands(plan)).toEqual(['ip link del dev tap0_kata', 'tc qdisc del dev eth0 ingress']);
    expect(plan.steps[1]?.settles.map((record) => record.step)).toEqual(['add-qdisc']);
    expect(described(plan.alreadyGone)).toEqual(['add-filter eth0']);
  });

  it('plans no filter deletion for it in a qdisc that is kept', () => {
    const plan = planDetach(records(), {
      links: [eth0, tap],
      keptQdiscs: new Map([['eth0/65535', "it holds another tool's filter (prio 7)"]]),
      absentFilters: new Set([`eth0/65535/${FILTER_PRIORITY}`]),
    });
    expect(commands(plan)).toEqual(['ip link del dev tap0_kata']);
    expect(described(plan.alreadyGone)).toEqual(['add-filter eth0']);
    expect(plan.kept.map((kept) => kept.record.step)).toEqual(['add-qdisc']);
  });
});

describe('planUndo: a recorded filter missing from a qdisc that is there', () => {
  it("vcnet's ingress qdisc, emptied by hand: the qdisc goes, the filter is already gone", async () => {
    const plan = await planUndo(handleWith({ qdiscs: [ingressOf(2)], filters: [] }), records());
    expect(commands(plan)).toEqual(['ip link del dev tap0_kata', 'tc qdisc del dev eth0 ingress']);
    expect(described(plan.alreadyGone)).toEqual(['add-filter eth0']);
    // What gc --dry-run says the undo removes: the plan's steps, the filter not among them.
    expect(described(plan.steps.flatMap(recordsShownBy))).toEqual(['create-link tap0_kata', 'add-qdisc eth0']);
  });

  it("vcnet's ingress qdisc kept for another tool's filter: no deletion for vcnet's missing one", async () => {
    const plan = await planUndo(handleWith({ qdiscs: [ingressOf(2)], filters: [theirs(7)] }), records());
    expect(commands(plan)).toEqual(['ip link del dev tap0_kata']);
    expect(described(plan.alreadyGone)).toEqual(['add-filter eth0']);
    expect(plan.kept.map((kept) => kept.reason)).toEqual(["it holds another tool's filter (prio 7)"]);
  });

  for (const kind of ['ingress', 'clsact'] as const) {
    it(`an ${kind} qdisc eth0 had before attach: no deletion of vcnet's filter it no longer holds`, async () => {
      const existing = ingressOf(2, kind);
      const parent = kind === 'clsact' ? CLSACT_INGRESS_PARENT : INGRESS_HANDLE;
      const recorded = records(existing);
      expect(recorded.filter((record) => record.step === 'add-qdisc').map((record) => record.link)).toEqual([
        'tap0_kata',
      ]);
      const gone = await planUndo(handleWith({ qdiscs: [existing], filters: [theirs(3, parent)] }), recorded);
      expect(commands(gone)).toEqual(['ip link del dev tap0_kata']);
      expect(described(gone.alreadyGone)).toEqual(['add-filter eth0']);
      // Still there: deleted by its priority, as before.
      const there = await planUndo(
        handleWith({ qdiscs: [existing], filters: [theirs(3, parent), ...vcnetRedirect(FILTER_PRIORITY, parent)] }),
        recorded,
      );
      expect(commands(there)).toEqual([
        'ip link del dev tap0_kata',
        expect.stringMatching(
          new RegExp(`^tc filter del dev eth0 parent ${kind === 'clsact' ? 'ffff:fff2' : 'ffff:'} `),
        ),
      ]);
      expect(there.alreadyGone).toEqual([]);
    });
  }

  it('a filter that is there is deleted with its qdisc, as before', async () => {
    const plan = await planUndo(
      handleWith({ qdiscs: [ingressOf(2)], filters: vcnetRedirect(FILTER_PRIORITY) }),
      records(),
    );
    expect(commands(plan)).toEqual(['ip link del dev tap0_kata', 'tc qdisc del dev eth0 ingress']);
    expect(plan.steps[1]?.settles.map((record) => record.step)).toEqual(['add-qdisc', 'add-filter']);
    expect(plan.alreadyGone).toEqual([]);
  });

  it('a filter dump that fails proves nothing: the filter stays planned', async () => {
    const own = await planUndo(handleWith({ qdiscs: [ingressOf(2)], filters: null }), records());
    expect(own.steps[1]?.settles.map((record) => record.step)).toEqual(['add-qdisc', 'add-filter']);
    expect(own.alreadyGone).toEqual([]);
    const existing = ingressOf(2);
    const before = await planUndo(handleWith({ qdiscs: [existing], filters: null }), records(existing));
    expect(commands(before)).toEqual(['ip link del dev tap0_kata', expect.stringMatching(/^tc filter del dev eth0 /)]);
    expect(before.alreadyGone).toEqual([]);
  });
});
