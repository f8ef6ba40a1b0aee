/**
 * A pod link without a transmit queue (txqueuelen 0: CNI's bridge and ptp plugins make their veths
 * so). The kernel gives such a link a queue of 1000 when it gets a qdisc (ingress or htb alike), and
 * deleting the qdisc leaves it so. Attach sets it back to 0; the record must say what the link had
 * from before that first qdisc on, so that an attach stopped anywhere after it (a fault rolled back,
 * or a kill then gc) puts 0 back too, and never calls the kernel's 1000 someone else's change.
 */
import { describe, expect, it } from 'vitest';
import type { Link } from '../../../src/netlink/codec/link.js';
import { INGRESS_HANDLE, TC_H_INGRESS } from '../../../src/netlink/codec/tc/message.js';
import type { Qdisc } from '../../../src/netlink/codec/tc/qdisc.js';
import { commandsOf } from '../../../src/network/plan/commands.js';
import { planAttach, VCNET_LINK_GROUP } from '../../../src/network/plan/plan-attach.js';
import { type DetachPlan, planDetach } from '../../../src/network/plan/plan-detach.js';
import { intentOf } from '../../../src/network/plan/plan-intent.js';
import type { Plan, PlanStep, PlumbingStep, RateLimit } from '../../../src/network/plan/types.js';
import { link, planSnapshot } from './fixtures.js';

const RATES: RateLimit = { rxBitsPerSecond: 10_000_000, txBitsPerSecond: 20_000_000 };
const queueless = (overrides: Partial<Link> = {}): Link => link({ txQueueLength: 0, ...overrides });
const tap = link({ index: 7, name: 'tap0_kata', kind: 'tun', group: VCNET_LINK_GROUP, txQueueLength: 500 });
const podIngress: Qdisc = { index: 2, kind: 'ingress', handle: INGRESS_HANDLE, parent: TC_H_INGRESS } as Qdisc;

function planFor(rateLimit: RateLimit | undefined, qdiscs: Qdisc[] = []): Plan {
  return planAttach(
    planSnapshot({ links: [queueless()], qdiscs }),
    { queues: 1, ...(rateLimit ? { rateLimit } : {}) },
    { model: 'tcfilter', source: queueless(), tapName: 'tap0_kata' },
  );
}

/** The transmit queue length of link `name` (without one before) after `steps`, as the kernel keeps it (a qdisc gives it 1000). */
function queueAfter(steps: readonly PlanStep[], name = 'eth0'): number {
  let queue = 0;
  for (const { change } of steps) {
    if (change.op === 'create-tap' || change.op === 'create-link' || change.op === 'delete-link-group') continue;
    if (change.link.name !== name) continue;
    if (change.op === 'add-qdisc' && queue === 0) queue = 1000;
    if (change.op === 'set-link' && change.set.txQueueLength !== undefined) queue = change.set.txQueueLength;
  }
  return queue;
}

/** The transmit queue length of link `name` once a detach plan is sent (deleting a qdisc leaves it as it is). */
function queueAfterDetach(plan: DetachPlan, start: number, name = 'eth0'): number {
  let queue = start;
  for (const { change } of plan.steps) {
    if (change.op === 'set-link' && change.link.name === name && change.set.txQueueLength !== undefined) {
      queue = change.set.txQueueLength;
    }
  }
  return queue;
}

const recordsOf = (steps: readonly PlanStep[]): PlumbingStep[] =>
  steps.flatMap((step) => (step.record ? [step.record] : []));
const onEth0 = (commands: string[]) =>
  commands.filter((command) => /^(ip link set|tc \w+ add) dev eth0 /.test(command));

describe('tcfilter on a pod link without a transmit queue', () => {
  it('gives eth0 the queue its first qdisc brings before it, and sets 0 back right after each qdisc (after the classes)', () => {
    expect(onEth0(commandsOf(planFor(undefined)))).toEqual([
      'ip link set dev eth0 txqueuelen 1000',
      'tc qdisc add dev eth0 ingress',
      'ip link set dev eth0 txqueuelen 0',
      'tc filter add dev eth0 parent ffff: protocol all prio 49152 u32 match u32 0 0 action mirred egress redirect dev tap0_kata',
    ]);
    // The htb classes are made while the link has a queue: a leaf queue takes the link's length.
    expect(onEth0(commandsOf(planFor(RATES)))).toEqual([
      'ip link set dev eth0 txqueuelen 1000',
      'tc qdisc add dev eth0 ingress',
      'ip link set dev eth0 txqueuelen 0',
      'tc filter add dev eth0 parent ffff: protocol all prio 49152 u32 match u32 0 0 action mirred egress redirect dev tap0_kata',
      'tc qdisc add dev eth0 root handle 1: htb default 2',
      'tc class add dev eth0 parent 1: classid 1:1 htb rate 20000000bit ceil 20000000bit burst 4100 cburst 4100',
      'tc class add dev eth0 parent 1:1 classid 1:2 htb rate 20000000bit ceil 20000000bit burst 4100 cburst 4100',
      'ip link set dev eth0 txqueuelen 0',
    ]);
    // Beside the pod's own ingress qdisc, only the htb is vcnet's first qdisc there.
    expect(onEth0(commandsOf(planFor(RATES, [podIngress]))).slice(1)).toEqual([
      'ip link set dev eth0 txqueuelen 1000',
      'tc qdisc add dev eth0 root handle 1: htb default 2',
      'tc class add dev eth0 parent 1: classid 1:1 htb rate 20000000bit ceil 20000000bit burst 4100 cburst 4100',
      'tc class add dev eth0 parent 1:1 classid 1:2 htb rate 20000000bit ceil 20000000bit burst 4100 cburst 4100',
      'ip link set dev eth0 txqueuelen 0',
    ]);
    // Nothing on eth0's queue where vcnet adds no qdisc to it.
    expect(onEth0(commandsOf(planFor(undefined, [podIngress]))).join('\n')).not.toContain('txqueuelen');
  });

  it('records the queue length before the first qdisc, and what the kernel gives with it; setting 0 back needs no record', () => {
    const plan = planFor(RATES);
    const queueSteps = plan.steps.filter((step) => step.change.op === 'set-link' && step.change.link.name === 'eth0');
    expect(queueSteps.map((step) => step.record)).toEqual([
      { step: 'change-link', link: 'eth0', index: 2, before: { txQueueLength: 0 }, set: { txQueueLength: 1000 } },
      undefined,
      undefined,
    ]);
    const records = recordsOf(plan.steps);
    const raised = records.findIndex((record) => record.step === 'change-link');
    const firstQdisc = records.findIndex((record) => record.step === 'add-qdisc' && record.link === 'eth0');
    expect(raised).toBeLessThan(firstQdisc);
  });

  for (const [what, rateLimit, qdiscs] of [
    ['no rate limits', undefined, []],
    ['rx and tx limits', RATES, []],
    ['tx limit beside its own ingress qdisc', { txBitsPerSecond: 1_000_000 }, [podIngress]],
  ] as const) {
    it(`${what}: the undo of an attach stopped before any step puts txqueuelen 0 back, without a notice`, () => {
      const plan = planFor(rateLimit, [...qdiscs]);
      for (let made = 0; made <= plan.steps.length; made++) {
        const completed = plan.steps.slice(0, made);
        const queue = queueAfter(completed);
        const undo = planDetach(recordsOf(completed), { links: [queueless({ txQueueLength: queue }), tap] });
        expect(queueAfterDetach(undo, queue), `undo after ${made} steps (eth0 at ${queue})`).toBe(0);
        expect(undo.notices, `undo after ${made} steps`).toEqual([]);
      }
    });
  }

  it('a kill after the first qdisc, then gc: the intent on record puts 0 back, and says nothing of the queue', () => {
    const { records } = intentOf(planFor(RATES));
    const chosen = (records.find((record) => record.step === 'create-link') as { index: number }).index;
    const undo = planDetach(records, { links: [queueless({ txQueueLength: 1000 }), { ...tap, index: chosen }] });
    expect(queueAfterDetach(undo, 1000)).toBe(0);
    expect(undo.notices).toEqual([]);
  });

  it("the previous build's record (0 set back as its last step) killed before that step: 0 put back, without a notice", () => {
    const records: PlumbingStep[] = [
      { step: 'create-link', name: 'tap0_kata', kind: 'tun', index: 7 },
      { step: 'add-qdisc', link: 'eth0', index: 2, handle: INGRESS_HANDLE, parent: TC_H_INGRESS, kind: 'ingress' },
      { step: 'change-link', link: 'eth0', index: 2, before: { txQueueLength: 0 }, set: { txQueueLength: 0 } },
    ];
    const undo = planDetach(records, { links: [queueless({ txQueueLength: 1000 }), tap] });
    expect(queueAfterDetach(undo, 1000)).toBe(0);
    expect(undo.notices).toEqual([]);
  });

  it('leaves a length someone set after attach, and says so', () => {
    const { records } = intentOf(planFor(undefined));
    const chosen = (records.find((record) => record.step === 'create-link') as { index: number }).index;
    const undo = planDetach(records, { links: [queueless({ txQueueLength: 500 }), { ...tap, index: chosen }] });
    expect(queueAfterDetach(undo, 500)).toBe(500);
    expect(undo.notices.map((notice) => notice.message)).toEqual([
      expect.stringContaining('left the transmit queue length of eth0 as it is (500)'),
    ]);
  });

  it("a device used as it is (existing) without a transmit queue keeps none, its htb's classes made with the kernel's", () => {
    const device = queueless({ index: 9, name: 'mvt', kind: 'macvtap' });
    const plan = planAttach(
      planSnapshot({ links: [device] }),
      { queues: 1, rateLimit: RATES },
      { model: 'existing', source: device, tapName: 'mvt' },
    );
    const onDevice = commandsOf(plan).filter((command) => / dev mvt /.test(command) && !command.includes('class'));
    expect(onDevice).toEqual([
      'ip link set dev mvt txqueuelen 1000',
      'tc qdisc add dev mvt root handle 1: htb default 2',
      'ip link set dev mvt txqueuelen 0',
      'tc qdisc add dev mvt ingress',
      'ip link set dev mvt txqueuelen 0',
      expect.stringMatching(/^tc filter add dev mvt parent ffff: /),
    ]);
    for (let made = 0; made <= plan.steps.length; made++) {
      const completed = plan.steps.slice(0, made);
      const queue = queueAfter(completed, 'mvt');
      const undo = planDetach(recordsOf(completed), { links: [{ ...device, txQueueLength: queue }] });
      const after = queueAfterDetach(undo, queue, 'mvt');
      expect(after, `undo after ${made} steps (mvt at ${queue})`).toBe(0);
    }
  });
});
