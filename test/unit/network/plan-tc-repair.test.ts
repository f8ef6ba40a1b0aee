/**
 * planTrafficControlRepair without root: the records attach writes (planAttach, as intentOf records
 * them, at the indexes chosen for vcnet's links) over namespaces dumped after someone deleted vcnet's
 * tc objects, or put their own in their place. What the plan makes again is what attach made (the
 * same change builders, the same rate on each link); what another tool holds is left and said; and
 * the kernel's answers come back as restored or failed, with nothing half-built left.
 */
import { describe, expect, it } from 'vitest';
import { InterfaceFlag } from '../../../src/netlink/codec/link/message.js';
import type { Link } from '../../../src/netlink/codec/link.js';
import { MATCH_ALL_U32_KEYS } from '../../../src/netlink/codec/tc/filter/u32.js';
import { ETH_P_ALL, type Filter } from '../../../src/netlink/codec/tc/filter.js';
import { INGRESS_HANDLE, parseHandle, TC_H_INGRESS, TC_H_ROOT } from '../../../src/netlink/codec/tc/message.js';
import type { TrafficClass } from '../../../src/netlink/codec/tc/qdisc/htb.js';
import type { Qdisc } from '../../../src/netlink/codec/tc/qdisc.js';
import { NetlinkError } from '../../../src/netlink/errors.js';
import type { NetlinkHandle } from '../../../src/netlink/handle.js';
import { commandOf } from '../../../src/network/plan/commands.js';
import { FILTER_PRIORITY, ifbName, planAttach } from '../../../src/network/plan/plan-attach.js';
import { intentOf } from '../../../src/network/plan/plan-intent.js';
import {
  isRestore,
  planTrafficControlRepair,
  type RepairableEndpoint,
  type RepairSnapshot,
  repairChanges,
  repairClassLinks,
  repairFilterLists,
  repairOutcomes,
} from '../../../src/network/plan/plan-tc-repair.js';
import type { Change, Plan, PlumbingStep, RateLimit } from '../../../src/network/plan/types.js';
import { repairTrafficControl } from '../../../src/network/tc-repair.js';
import { link, planSnapshot } from './fixtures.js';

const RATES: RateLimit = { rxBitsPerSecond: 10_000_000, txBitsPerSecond: 20_000_000 };
const tcOps = new Set(['add-qdisc', 'add-class', 'add-filter']);

/** An endpoint attached with `model` and `rateLimit`, its record as attach writes it, and the namespace's links after. */
function attached(model: Plan['model'], rateLimit?: RateLimit) {
  const pod = link({ txQueueLength: 0 });
  const plan = planAttach(
    planSnapshot({ links: [link({ index: 1, name: 'lo', kind: undefined }), pod] }),
    { queues: 1, ...(rateLimit ? { rateLimit } : {}) },
    {
      model,
      source: pod,
      tapName: model === 'existing' ? 'eth0' : 'tap0_kata',
      ...(model === 'macvtap' ? { spareHardwareAddress: '0a:00:00:00:00:01' } : {}),
    },
  );
  const intent = intentOf(plan);
  // As recorded once the attach is done: the links made where chosen, confirmed.
  const steps = JSON.parse(
    JSON.stringify(intent.records, (key, value) => (key === 'unconfirmed' || key === 'madeAfter' ? undefined : value)),
  ) as PlumbingStep[];
  const made = [...intent.chosenIndexes].map(([name, index]) =>
    link({ index, name, kind: name.startsWith('ifb') ? 'ifb' : model === 'macvtap' ? 'macvtap' : 'tun' }),
  );
  const tapIndex = intent.chosenIndexes.get(plan.device.name) ?? plan.device.index ?? 0;
  const endpoint: RepairableEndpoint = {
    name: 'eth0',
    properties: { link: { name: 'eth0', index: pod.index } },
    plumbing: { model, steps, tapName: plan.device.name, tapIndex },
  };
  const links: Link[] = [link({ index: 1, name: 'lo', kind: undefined }), pod, ...made];
  const byName = (name: string) => links.find((candidate) => candidate.name === name)!;
  return { plan, endpoint, links, byName, tapIndex };
}

/** The tc changes of an attach plan, as commands. */
function attachTc(plan: Plan): string[] {
  return commands(plan.steps.map(({ change }) => change).filter((change) => tcOps.has(change.op)));
}

const commands = (changes: readonly Change[]): string[] => changes.map((change) => commandOf(change));

function ingress(index: number, kind = 'ingress', handle = INGRESS_HANDLE): Qdisc {
  return { index, handle, parent: TC_H_INGRESS, kind, options: { kind: 'ingress' } } as Qdisc;
}

function root(index: number, kind: string, handle: number): Qdisc {
  return { index, handle, parent: TC_H_ROOT, kind, options: { kind } } as Qdisc;
}

/** vcnet's two htb classes on `index`, as dumped: 1:1 under the root, 1:2 under 1:1. */
function htbClasses(index: number, rateBitsPerSecond: number): TrafficClass[] {
  const common = { index, kind: 'htb', rateBitsPerSecond, ceilBitsPerSecond: rateBitsPerSecond };
  return [
    { ...common, handle: parseHandle('1:1'), parent: TC_H_ROOT },
    { ...common, handle: parseHandle('1:2'), parent: parseHandle('1:1') },
  ];
}

function redirect(index: number, targetIndex: number, priority = FILTER_PRIORITY): Filter {
  return {
    index,
    parent: 0xfffffff2,
    handle: 0x80000800,
    priority,
    protocol: ETH_P_ALL,
    kind: 'u32',
    options: {
      kind: 'u32',
      keys: MATCH_ALL_U32_KEYS,
      actions: [{ kind: 'mirred', direction: 'egress', mode: 'redirect', targetIndex }],
    },
  } as Filter;
}

describe('planTrafficControlRepair: a namespace whose tc objects were all deleted', () => {
  for (const model of ['tcfilter', 'none', 'macvtap', 'existing'] as const) {
    it(`${model}: makes again exactly the tc objects attach made, each htb at the rate attach gave its link`, () => {
      const { plan, endpoint, links } = attached(model, RATES);
      const repair = planTrafficControlRepair(endpoint, { links, qdiscs: [], filters: [], classes: [] }, RATES);
      const changes = repairChanges(repair).filter((change) => tcOps.has(change.op));
      expect(commands(changes).sort()).toEqual(attachTc(plan).sort());
      // Every link named by its index (they are all there), the redirect target too.
      for (const change of changes) {
        if (!('link' in change)) continue;
        expect(change.link.index).toBe(links.find((candidate) => candidate.name === change.link.name)?.index);
        if (change.op === 'add-filter') expect(change.redirectTo.index).toBeDefined();
      }
      expect(repair.objects.every(isRestore)).toBe(true);
    });
  }

  it("tcfilter: the pod link's transmit queue of 0 is put back after its htb, as attach does", () => {
    const { endpoint, links } = attached('tcfilter', RATES);
    const repair = planTrafficControlRepair(endpoint, { links, qdiscs: [], filters: [], classes: [] }, RATES);
    const changes = repairChanges(repair);
    expect(changes.at(-1)).toEqual({
      op: 'set-link',
      link: { role: 'pod', name: 'eth0', index: 2 },
      set: { txQueueLength: 0 },
    });
    const objects = repair.objects.filter(isRestore).map((restore) => `${restore.link}: ${restore.object}`);
    expect(objects).toEqual([
      'tap0_kata: ingress qdisc ffff:',
      'eth0: ingress qdisc ffff:',
      'eth0: filter prio 49152 (redirect to tap0_kata)',
      'tap0_kata: filter prio 49152 (redirect to eth0)',
      'tap0_kata: htb qdisc 1:',
      'eth0: htb qdisc 1:',
    ]);
  });

  it('none: tx on the ifb, rx on the tap (rateLimitPlacement)', () => {
    const { endpoint, links } = attached('none', RATES);
    const classes = repairChanges(
      planTrafficControlRepair(endpoint, { links, qdiscs: [], filters: [], classes: [] }, RATES),
    )
      .filter((change) => change.op === 'add-class')
      .map((change) => [change.link.name, change.op === 'add-class' ? change.rateBitsPerSecond : 0]);
    expect(classes).toEqual([
      ['tap0_kata', 10_000_000],
      ['tap0_kata', 10_000_000],
      [ifbName('tap0_kata'), 20_000_000],
      [ifbName('tap0_kata'), 20_000_000],
    ]);
  });

  it('an htb the sandbox has no rate for any more is not made: failed, and why', () => {
    const { endpoint, links } = attached('tcfilter', RATES);
    const repair = planTrafficControlRepair(
      endpoint,
      { links, qdiscs: [], filters: [], classes: [] },
      { rxBitsPerSecond: 1 },
    );
    expect(repair.objects.find((object) => !isRestore(object))).toMatchObject({
      link: 'eth0',
      object: 'htb qdisc 1:',
      outcome: 'failed',
    });
  });
});

describe('planTrafficControlRepair: what is there, and what another tool holds', () => {
  /** The namespace as attach left it (tcfilter, rate limits). */
  function intact() {
    const a = attached('tcfilter', RATES);
    const pod = 2;
    const tap = a.tapIndex;
    const snapshot: RepairSnapshot = {
      links: a.links,
      qdiscs: [ingress(pod), ingress(tap), root(pod, 'htb', parseHandle('1:')), root(tap, 'htb', parseHandle('1:'))],
      filters: [redirect(pod, tap), redirect(tap, pod)],
      classes: [...htbClasses(pod, RATES.txBitsPerSecond!), ...htbClasses(tap, RATES.rxBitsPerSecond!)],
    };
    return { ...a, pod, tap, snapshot };
  }

  it('plans nothing when every object is as recorded, and lists the filters it reads', () => {
    const { endpoint, snapshot, pod, tap } = intact();
    expect(planTrafficControlRepair(endpoint, snapshot, RATES).objects).toEqual([]);
    expect(repairFilterLists(endpoint, snapshot)).toEqual([
      { index: pod, parent: INGRESS_HANDLE },
      { index: tap, parent: INGRESS_HANDLE },
    ]);
  });

  it('plans nothing for an endpoint whose tap or pod link is gone (the lost-device and link-removed paths)', () => {
    const { endpoint, snapshot, tap } = intact();
    const noTap = { ...snapshot, qdiscs: [], filters: [], links: snapshot.links.filter((l) => l.index !== tap) };
    expect(planTrafficControlRepair(endpoint, noTap, RATES).objects).toEqual([]);
    const noPod = { ...snapshot, qdiscs: [], filters: [], links: snapshot.links.filter((l) => l.index !== 2) };
    expect(planTrafficControlRepair(endpoint, noPod, RATES).objects).toEqual([]);
  });

  it("leaves another tool's filter at vcnet's priority, and says what to do", () => {
    const { endpoint, snapshot, pod, tap } = intact();
    // Theirs redirects to lo (ifindex 1), at vcnet's priority on eth0.
    const repair = planTrafficControlRepair(
      endpoint,
      { ...snapshot, filters: [redirect(pod, 1), redirect(tap, pod)] },
      RATES,
    );
    expect(repairChanges(repair)).toEqual([]);
    expect(repair.objects).toEqual([
      expect.objectContaining({
        link: 'eth0',
        object: 'filter prio 49152 (redirect to tap0_kata)',
        outcome: 'taken',
        message: expect.stringContaining('tc filter del dev eth0 ingress prio 49152'),
      }),
    ]);
  });

  it("leaves a clsact where vcnet's ingress was, and does not read or plan its filters", () => {
    const { endpoint, snapshot, pod, tap } = intact();
    const qdiscs = snapshot.qdiscs.map((qdisc) =>
      qdisc.index === pod && qdisc.parent === TC_H_INGRESS ? ingress(pod, 'clsact', 0xffff0000) : qdisc,
    );
    const repair = planTrafficControlRepair(endpoint, { ...snapshot, qdiscs, filters: [redirect(tap, pod)] }, RATES);
    expect(repair.objects).toEqual([
      expect.objectContaining({ link: 'eth0', object: 'ingress qdisc ffff:', outcome: 'taken' }),
    ]);
    expect(repairFilterLists(endpoint, { ...snapshot, qdiscs })).toEqual([{ index: tap, parent: INGRESS_HANDLE }]);
  });

  it("leaves another tool's root qdisc where vcnet's htb was", () => {
    const { endpoint, snapshot, tap } = intact();
    const qdiscs = snapshot.qdiscs.map((qdisc) =>
      qdisc.index === tap && qdisc.parent === TC_H_ROOT ? root(tap, 'tbf', parseHandle('8001:')) : qdisc,
    );
    const repair = planTrafficControlRepair(endpoint, { ...snapshot, qdiscs }, RATES);
    expect(repair.objects).toEqual([
      expect.objectContaining({ link: 'tap0_kata', object: 'htb qdisc 1:', outcome: 'taken' }),
    ]);
  });

  it('makes an htb again where the root qdisc is a default one, not on a link that is down', () => {
    const { endpoint, snapshot, tap, links } = intact();
    const qdiscs = snapshot.qdiscs.map((qdisc) =>
      qdisc.index === tap && qdisc.parent === TC_H_ROOT ? root(tap, 'fq_codel', parseHandle('8001:')) : qdisc,
    );
    const repair = planTrafficControlRepair(endpoint, { ...snapshot, qdiscs }, RATES);
    expect(commands(repairChanges(repair))).toEqual([
      'tc qdisc add dev tap0_kata root handle 1: htb default 2',
      'tc class add dev tap0_kata parent 1: classid 1:1 htb rate 10000000bit ceil 10000000bit burst 2850 cburst 2850',
      'tc class add dev tap0_kata parent 1:1 classid 1:2 htb rate 10000000bit ceil 10000000bit burst 2850 cburst 2850',
    ]);
    const down = links.map((l) => (l.index === tap ? { ...l, flags: l.flags & ~InterfaceFlag.UP } : l));
    const noop = qdiscs.map((qdisc) =>
      qdisc.index === tap && qdisc.parent === TC_H_ROOT ? root(tap, 'noop', 0) : qdisc,
    );
    expect(planTrafficControlRepair(endpoint, { ...snapshot, links: down, qdiscs: noop }, RATES).objects).toEqual([]);
  });
});

describe('planTrafficControlRepair: classes deleted under an htb that is there', () => {
  function intactWithout(remove: (entry: TrafficClass) => boolean) {
    const a = attached('tcfilter', RATES);
    const pod = 2;
    const tap = a.tapIndex;
    const snapshot: RepairSnapshot = {
      links: a.links,
      qdiscs: [ingress(pod), ingress(tap), root(pod, 'htb', parseHandle('1:')), root(tap, 'htb', parseHandle('1:'))],
      filters: [redirect(pod, tap), redirect(tap, pod)],
      classes: [...htbClasses(pod, RATES.txBitsPerSecond!), ...htbClasses(tap, RATES.rxBitsPerSecond!)].filter(
        (entry) => !remove(entry),
      ),
    };
    return { ...a, pod, tap, snapshot };
  }

  it("reads the classes of each link whose root is still vcnet's htb, none where it is gone", () => {
    const { endpoint, snapshot, pod, tap } = intactWithout(() => false);
    expect(repairClassLinks(endpoint, snapshot)).toEqual([tap, pod]);
    const noTapHtb = snapshot.qdiscs.filter((qdisc) => !(qdisc.index === tap && qdisc.parent === TC_H_ROOT));
    expect(repairClassLinks(endpoint, { ...snapshot, qdiscs: noTapHtb })).toEqual([pod]);
  });

  it("makes the pod link's default class 1:2 again, its leaf queue as long as attach's (txqueuelen 1000 meanwhile)", () => {
    const { endpoint, snapshot, pod } = intactWithout(
      (entry) => entry.index === 2 && entry.handle === parseHandle('1:2'),
    );
    const repair = planTrafficControlRepair(endpoint, snapshot, RATES);
    expect(repair.objects).toEqual([
      expect.objectContaining({ link: 'eth0', object: 'htb class 1:2', tidy: expect.any(Array) }),
    ]);
    expect(commands(repairChanges(repair))).toEqual([
      'ip link set dev eth0 txqueuelen 1000',
      'tc class add dev eth0 parent 1:1 classid 1:2 htb rate 20000000bit ceil 20000000bit burst 4100 cburst 4100',
      'ip link set dev eth0 txqueuelen 0',
    ]);
    const { outcomes } = repairOutcomes(repair, [{ ok: true }, { ok: true }, { ok: true }]);
    expect(outcomes).toEqual([
      expect.objectContaining({
        link: 'eth0',
        outcome: 'restored',
        message: expect.stringContaining('direct queue, unlimited'),
      }),
    ]);
    expect(pod).toBe(2);
  });

  it("makes both of the tap's classes again, parent first; the tap's own queue length is left", () => {
    const { endpoint, snapshot, tap } = intactWithout((entry) => entry.index !== 2);
    const tapLinks = snapshot.links.map((l) => (l.index === tap ? { ...l, txQueueLength: 500 } : l));
    const repair = planTrafficControlRepair(endpoint, { ...snapshot, links: tapLinks }, RATES);
    expect(repair.objects).toEqual([expect.objectContaining({ link: 'tap0_kata', object: 'htb classes 1:1, 1:2' })]);
    expect(commands(repairChanges(repair))).toEqual([
      'tc class add dev tap0_kata parent 1: classid 1:1 htb rate 10000000bit ceil 10000000bit burst 2850 cburst 2850',
      'tc class add dev tap0_kata parent 1:1 classid 1:2 htb rate 10000000bit ceil 10000000bit burst 2850 cburst 2850',
    ]);
  });

  it("a class at vcnet's handle whose rate or ceil someone changed gets the sandbox's back, in place", () => {
    const { endpoint, snapshot, pod } = intactWithout(() => false);
    const changed = snapshot.classes.map((entry) =>
      entry.index === pod && entry.handle === parseHandle('1:2') ? { ...entry, rateBitsPerSecond: 1_000 } : entry,
    );
    const repair = planTrafficControlRepair(endpoint, { ...snapshot, classes: changed }, RATES);
    expect(repair.objects).toHaveLength(1);
    const [object] = repair.objects;
    expect(object).toMatchObject({ object: 'htb class 1:2', restored: expect.stringContaining('rate 1000') });
    expect(repairChanges(repair)).toEqual([
      expect.objectContaining({ op: 'add-class', handle: parseHandle('1:2'), change: true }),
    ]);
    const [change] = repairChanges(repair);
    expect(change && commandOf(change)).toMatch(
      /^tc class change dev \S+ parent 1:1 classid 1:2 htb rate (\d+)bit ceil \1bit/,
    );
    // Only the ceil changed: changed back too. A rate the kernel keeps in whole bytes per second
    // (one not a multiple of 8 bits) is not taken as changed.
    const ceil = snapshot.classes.map((entry) => ({ ...entry, ceilBitsPerSecond: (entry.rateBitsPerSecond ?? 0) * 2 }));
    expect(repairChanges(planTrafficControlRepair(endpoint, { ...snapshot, classes: ceil }, RATES))).toHaveLength(4);
    const odd: RateLimit = { rxBitsPerSecond: 10_000_007, txBitsPerSecond: 20_000_007 };
    expect(planTrafficControlRepair(endpoint, snapshot, odd).objects).toEqual([]);
  });

  it('a class gone with no rate in the record is failed', () => {
    const { endpoint, snapshot } = intactWithout(() => false);
    const without = snapshot.classes.filter((entry) => entry.index !== 2 || entry.handle !== parseHandle('1:2'));
    const repair = planTrafficControlRepair(
      endpoint,
      { ...snapshot, classes: without },
      { rxBitsPerSecond: 10_000_000 },
    );
    expect(repairChanges(repair)).toEqual([]);
    expect(repair.objects).toEqual([
      expect.objectContaining({ link: 'eth0', object: 'htb class 1:2', outcome: 'failed' }),
    ]);
  });
});

describe('planTrafficControlRepair: an ifb of a rate limit deleted', () => {
  for (const [model, frames] of [
    ['none', 'the VM sends'],
    ['macvtap', 'sent to the VM'],
  ] as const) {
    it(`${model}: not made again, failed, with what it breaks and what to do; nothing sent`, () => {
      const { endpoint, links, tapIndex } = attached(model, RATES);
      const device = model === 'none' ? 'tap0_kata' : links.find((l) => l.index === tapIndex)!.name;
      const gone = links.filter((l) => l.name !== ifbName(device));
      const snapshot: RepairSnapshot = {
        links: gone,
        qdiscs: [ingress(tapIndex), root(tapIndex, 'htb', parseHandle('1:'))],
        filters: [redirect(tapIndex, 0, FILTER_PRIORITY - 1)],
        // The rate attach gave the device (rateLimitPlacement): rx on a none tap, tx on a macvtap.
        classes: htbClasses(tapIndex, model === 'none' ? 10_000_000 : 20_000_000),
      };
      const repair = planTrafficControlRepair(endpoint, snapshot, RATES);
      expect(repairChanges(repair)).toEqual([]);
      expect(repair.objects).toEqual([
        {
          link: ifbName(device),
          object: `ifb ${ifbName(device)}`,
          outcome: 'failed',
          message: expect.stringContaining(`the frames ${frames} through ${device}`),
        },
      ]);
    });
  }
});

describe('repairOutcomes: the answers, back to each object', () => {
  const refused = (message: string) => ({ ok: false as const, error: new Error(message) });
  const ok = { ok: true as const };

  it('restored when all its changes are made; the tidy changes do not count', () => {
    const { endpoint, links } = attached('tcfilter', { txBitsPerSecond: 1000 });
    const plan = planTrafficControlRepair(
      endpoint,
      { links, qdiscs: [ingress(2), ingress(links.at(-1)!.index)], filters: [], classes: [] },
      { txBitsPerSecond: 1000 },
    );
    const changes = repairChanges(plan);
    // The two redirects, the htb (qdisc, two classes) and the transmit queue put back.
    expect(changes.map((change) => change.op)).toEqual([
      'add-filter',
      'add-filter',
      'add-qdisc',
      'add-class',
      'add-class',
      'set-link',
    ]);
    const answers = changes.map((_, position) => (position === 5 ? refused('EPERM') : ok));
    const { outcomes, undo } = repairOutcomes(plan, answers);
    expect(outcomes.map((outcome) => outcome.outcome)).toEqual(['restored', 'restored', 'restored']);
    expect(undo).toEqual([]);
  });

  it('an htb whose class is refused is failed, and its qdisc goes again (nothing half-built)', () => {
    const { endpoint, links } = attached('tcfilter', { rxBitsPerSecond: 1000 });
    const tap = links.at(-1)!.index;
    const plan = planTrafficControlRepair(
      endpoint,
      {
        links,
        qdiscs: [ingress(2), ingress(tap)],
        filters: [redirect(2, tap), redirect(tap, 2)],
        classes: [],
      },
      { rxBitsPerSecond: 1000 },
    );
    const answers = [ok, ok, refused('add htb class 1:2 on link: ENOMEM')];
    const { outcomes, undo } = repairOutcomes(plan, answers);
    expect(outcomes).toEqual([
      expect.objectContaining({
        link: 'tap0_kata',
        outcome: 'failed',
        message: expect.stringContaining('could not be made again (add htb class 1:2 on link: ENOMEM)'),
      }),
    ]);
    expect(undo).toEqual<Change[]>([
      {
        op: 'delete-qdisc',
        link: { role: 'tap', name: 'tap0_kata', index: tap },
        kind: 'htb',
        handle: parseHandle('1:'),
        parent: TC_H_ROOT,
      },
    ]);
    // A refused qdisc leaves nothing to take away.
    expect(repairOutcomes(plan, [refused('EEXIST'), refused('EINVAL'), refused('EINVAL')]).undo).toEqual([]);
  });

  it('a restore whose answers were lost is told by a second look: made, not made, or made in part (its undo goes)', () => {
    const { endpoint, links } = attached('tcfilter', { rxBitsPerSecond: 1000 });
    const tap = links.at(-1)!.index;
    const snapshot = (qdiscs: Qdisc[], classes: TrafficClass[]): RepairSnapshot => ({
      links,
      qdiscs: [ingress(2), ingress(tap), ...qdiscs],
      filters: [redirect(2, tap), redirect(tap, 2)],
      classes,
    });
    const plan = planTrafficControlRepair(endpoint, snapshot([], []), { rxBitsPerSecond: 1000 });
    const lost = {
      ok: false as const,
      error: NetlinkError.fromFailure(
        { type: 36, description: 'add htb qdisc' },
        Object.assign(new Error('recvmsg: ENOBUFS'), { errno: 'ENOBUFS' }),
        undefined,
      ),
    };
    const answers = [lost, lost, lost];
    const lookAgain = (qdiscs: Qdisc[], classes: TrafficClass[]) =>
      repairOutcomes(
        plan,
        answers,
        planTrafficControlRepair(endpoint, snapshot(qdiscs, classes), { rxBitsPerSecond: 1000 }),
      );
    const htb = root(tap, 'htb', parseHandle('1:'));
    // All there: restored, nothing to undo.
    const made = lookAgain([htb], htbClasses(tap, 1000));
    expect(made.outcomes.map((outcome) => outcome.outcome)).toEqual(['restored']);
    expect(made.undo).toEqual([]);
    // Nothing there: failed (tried again on a timer), nothing to undo.
    const notMade = lookAgain([], []);
    expect(notMade.outcomes).toEqual([
      expect.objectContaining({ outcome: 'failed', transient: true, message: expect.stringContaining('still gone') }),
    ]);
    expect(notMade.undo).toEqual([]);
    // The htb there, a class missing: made in part, and the htb goes again.
    const part = lookAgain([htb], htbClasses(tap, 1000).slice(0, 1));
    expect(part.outcomes).toEqual([
      expect.objectContaining({ outcome: 'failed', transient: true, message: expect.stringContaining('only in part') }),
    ]);
    expect(part.undo.map((change) => change.op)).toEqual(['delete-qdisc']);
    // The second look failed: failed, tried again.
    const unknown = repairOutcomes(plan, answers, new Error('dump failed'));
    expect(unknown.outcomes).toEqual([expect.objectContaining({ outcome: 'failed', transient: true })]);
  });

  it('a refusal that may pass is transient (tried again on a timer), one a retry cannot change is not, with its hint', () => {
    const { endpoint, links } = attached('tcfilter');
    const tap = links.at(-1)!.index;
    const plan = planTrafficControlRepair(
      endpoint,
      { links, qdiscs: [ingress(2), ingress(tap)], filters: [redirect(tap, 2)], classes: [] },
      undefined,
    );
    const kernel = (errno: number) =>
      new NetlinkError(
        { type: 44, description: 'add u32 filter' },
        { errno, requestType: 44, requestSequence: 1 },
        undefined,
      );
    const [busy] = repairOutcomes(plan, [{ ok: false, error: kernel(16) }]).outcomes;
    expect(busy).toMatchObject({ outcome: 'failed', transient: true });
    expect(busy?.message).toContain('the watch tries again shortly');
    const [unsupported] = repairOutcomes(plan, [{ ok: false, error: kernel(95) }]).outcomes;
    expect(unsupported).toMatchObject({ outcome: 'failed' });
    expect(unsupported).not.toHaveProperty('transient');
    expect(unsupported?.message).toContain('this kernel does not support it');
    expect(unsupported?.message).toContain('tries again only with the next tc change');
  });

  it('a filter whose ingress qdisc could not be made says nothing: the qdisc says it', () => {
    const { endpoint, links } = attached('tcfilter');
    const tap = links.at(-1)!.index;
    const plan = planTrafficControlRepair(
      endpoint,
      { links, qdiscs: [ingress(tap)], filters: [redirect(tap, 2)], classes: [] },
      undefined,
    );
    expect(commands(repairChanges(plan))).toEqual([
      'tc qdisc add dev eth0 ingress',
      'tc filter add dev eth0 parent ffff: protocol all prio 49152 u32 match u32 0 0 action mirred egress redirect dev tap0_kata',
    ]);
    const { outcomes } = repairOutcomes(plan, [refused('EBUSY'), refused('EINVAL')]);
    expect(outcomes).toEqual([
      expect.objectContaining({ link: 'eth0', object: 'ingress qdisc ffff:', outcome: 'failed' }),
    ]);
    // Another tool's ingress qdisc came between the dump and the send: vcnet's filter made in it goes again.
    const raced = repairOutcomes(plan, [refused('EEXIST'), ok]);
    expect(raced.outcomes).toEqual([expect.objectContaining({ object: 'ingress qdisc ffff:', outcome: 'failed' })]);
    expect(raced.undo).toEqual<Change[]>([
      {
        op: 'delete-filter',
        link: { role: 'pod', name: 'eth0', index: 2 },
        parent: INGRESS_HANDLE,
        priority: FILTER_PRIORITY,
        protocol: ETH_P_ALL,
        kind: 'u32',
      },
    ]);
    expect(repairOutcomes(plan, [ok, ok]).outcomes).toEqual([
      expect.objectContaining({ object: 'ingress qdisc ffff:', outcome: 'restored' }),
      expect.objectContaining({
        object: 'filter prio 49152 (redirect to tap0_kata)',
        outcome: 'restored',
        message: expect.stringContaining('or its ingress qdisc'),
      }),
    ]);
  });
});

/**
 * A handle over a namespace where someone deleted eth0's ingress and both htbs (the tap's ingress and
 * redirect are there): it records each batch it is sent and answers each request as `refusal` says.
 */
function deletedHandle(links: Link[], tapIndex: number, refusal: (request: string) => string | undefined) {
  const sent: string[][] = [];
  const handle = {
    // The pod's, as the watch's handle names it: the commands the outcomes quote act there.
    namespacePath: '/var/run/netns/pod',
    links: async () => links,
    qdiscs: async () => [ingress(tapIndex)],
    filters: async (index: number) => (index === tapIndex ? [redirect(tapIndex, 2)] : []),
    addQdisc: async () => {},
    changes: () => {
      const requests: string[] = [];
      const add = (request: string) => {
        requests.push(request);
        return batch;
      };
      const batch = {
        addQdisc: (spec: { index: number; options: { kind: string } }) =>
          add(`qdisc ${spec.options.kind} ${spec.index}`),
        addHtbClass: (spec: { index: number; handle: number }) =>
          add(`class ${spec.index} ${(spec.handle & 0xffff).toString()}`),
        addFilter: (spec: { index: number }) => add(`filter ${spec.index}`),
        deleteQdisc: (index: number) => add(`delete-qdisc ${index}`),
        setLink: (index: number) => add(`set ${index}`),
        send: async () => {
          sent.push([...requests]);
          return requests.map((request) => {
            const errno = refusal(request);
            return errno
              ? { ok: false as const, error: Object.assign(new Error(`refused: ${errno}`), { errno }) }
              : { ok: true as const, messages: [] };
          });
        },
      };
      return batch;
    },
  };
  return { handle: handle as unknown as NetlinkHandle, sent };
}

describe('repairTrafficControl: dump, plan, one batch through the executor', () => {
  it('sends the whole repair in one batch, and takes away an htb whose class the kernel refused', async () => {
    const { endpoint, links, tapIndex } = attached('tcfilter', RATES);
    // eth0's class 1:2 cannot be made.
    const { handle, sent } = deletedHandle(links, tapIndex, (request) =>
      request === 'class 2 2' ? 'ENOMEM' : undefined,
    );
    const outcomes = await repairTrafficControl(handle, endpoint, RATES);
    expect(sent).toEqual([
      [
        'qdisc ingress 2',
        'filter 2',
        `qdisc htb ${tapIndex}`,
        `class ${tapIndex} 1`,
        `class ${tapIndex} 2`,
        'qdisc htb 2',
        'class 2 1',
        'class 2 2',
        'set 2',
      ],
      // Nothing half-built: eth0's htb goes again.
      ['delete-qdisc 2'],
    ]);
    expect(outcomes.map((outcome) => `${outcome.link} ${outcome.object} ${outcome.outcome}`)).toEqual([
      'eth0 ingress qdisc ffff: restored',
      'eth0 filter prio 49152 (redirect to tap0_kata) restored',
      'tap0_kata htb qdisc 1: restored',
      'eth0 htb qdisc 1: failed',
    ]);
    expect(outcomes.at(-1)?.message).not.toContain('is left');
  });

  it('an htb whose undo the kernel refused too is said to be left, with the command that removes it', async () => {
    const { endpoint, links, tapIndex } = attached('tcfilter', RATES);
    const { handle, sent } = deletedHandle(links, tapIndex, (request) =>
      request === 'class 2 2' ? 'ENOMEM' : request === 'delete-qdisc 2' ? 'EPERM' : undefined,
    );
    const outcomes = await repairTrafficControl(handle, endpoint, RATES);
    expect(sent.at(-1)).toEqual(['delete-qdisc 2']);
    const failed = outcomes.filter((outcome) => outcome.outcome === 'failed');
    expect(failed).toEqual([
      expect.objectContaining({
        link: 'eth0',
        object: 'htb qdisc 1:',
        message: expect.stringContaining(
          "the part of vcnet's htb qdisc 1: on eth0 the kernel made could not be taken away again (refused: EPERM) and is left: `nsenter --net=/var/run/netns/pod tc qdisc del dev eth0 root handle 1:` removes it",
        ),
      }),
    ]);
  });

  it('an undo that finds the htb gone already leaves nothing to say', async () => {
    const { endpoint, links, tapIndex } = attached('tcfilter', RATES);
    const { handle } = deletedHandle(links, tapIndex, (request) =>
      request === 'class 2 2' ? 'ENOMEM' : request === 'delete-qdisc 2' ? 'ENOENT' : undefined,
    );
    const outcomes = await repairTrafficControl(handle, endpoint, RATES);
    expect(outcomes.at(-1)).toEqual(expect.objectContaining({ object: 'htb qdisc 1:', outcome: 'failed' }));
    expect(outcomes.at(-1)?.message).not.toContain('is left');
  });
});
