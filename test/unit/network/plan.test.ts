/**
 * Plans without root: planAttach/planDetach on constructed snapshots for every model and every
 * endpoint type. The steps, their undo records and their `ip`/`tc` commands are checked, and that
 * each undo is derived from its own change (same link, parent, priority, protocol, handle).
 */
import { describe, expect, it } from 'vitest';
import { AddressFlag } from '../../../src/netlink/codec/address.js';
import { InterfaceFlag } from '../../../src/netlink/codec/link/message.js';
import type { Link } from '../../../src/netlink/codec/link.js';
import { RouteTable } from '../../../src/netlink/codec/route.js';
import type { Filter } from '../../../src/netlink/codec/tc/filter.js';
import { ETH_P_ALL } from '../../../src/netlink/codec/tc/filter.js';
import {
  CLSACT_INGRESS_PARENT,
  INGRESS_HANDLE,
  TC_H_INGRESS,
  TC_H_ROOT,
} from '../../../src/netlink/codec/tc/message.js';
import type { Qdisc } from '../../../src/netlink/codec/tc/qdisc.js';
import { createEndpoint } from '../../../src/network/endpoint/create-endpoint.js';
import { commandOf, commandsOf } from '../../../src/network/plan/commands.js';
import { undoOf } from '../../../src/network/plan/inverse.js';
import {
  FILTER_PRIORITY,
  ifbName,
  LinkNameTakenError,
  type PlanSnapshot,
  planAttach,
  VCNET_LINK_GROUP,
} from '../../../src/network/plan/plan-attach.js';
import { planDetach } from '../../../src/network/plan/plan-detach.js';
import type { Plan } from '../../../src/network/plan/types.js';
import { alreadyDone } from '../../../src/network/plan/undo.js';
import { address, info, link, route, planSnapshot as snapshot } from './fixtures.js';

const SPARE = '0a:00:00:00:00:01';

const eth0 = (): Link => link();
const ops = (plan: Plan) => plan.steps.map((step) => step.change.op);

/** eth0's ingress-side qdisc (`ingress` or `clsact`), as the scan reports one another tool added. */
function podIngressQdisc(kind: 'ingress' | 'clsact'): Qdisc {
  return { index: 2, handle: INGRESS_HANDLE, parent: TC_H_INGRESS, kind, options: { kind } };
}

/** Another tool's u32 filter on eth0, reported under `parent` at `priority`. */
function theirU32Filter(parent: number, priority: number): Filter {
  return {
    index: 2,
    parent,
    handle: 0,
    priority,
    protocol: ETH_P_ALL,
    kind: 'u32',
    options: { kind: 'u32', keys: [], actions: [] },
  };
}

/** The tcfilter model's plan from eth0 to tap0_kata over `pod`. */
function planTcfilter(pod: PlanSnapshot, options: Parameters<typeof planAttach>[1] = { queues: 1 }): Plan {
  return planAttach(pod, options, { model: 'tcfilter', source: eth0(), tapName: 'tap0_kata' });
}

describe('planAttach: tcfilter', () => {
  const plan = planTcfilter(snapshot());

  it('makes the tap, puts it in vcnet group first, then qdiscs and both redirects', () => {
    expect(ops(plan)).toEqual([
      'create-tap',
      'set-link',
      'set-link',
      'add-qdisc',
      'add-qdisc',
      'add-filter',
      'add-filter',
    ]);
    expect(plan.steps[1]?.change).toEqual({
      op: 'set-link',
      link: { role: 'tap', name: 'tap0_kata' },
      set: { group: VCNET_LINK_GROUP },
    });
    expect(plan.device).toEqual({ role: 'tap', name: 'tap0_kata' });
    expect(plan.guestHardwareAddress).toBe('02:42:ac:11:00:02');
  });

  it('prints the equivalent ip/tc commands', () => {
    expect(commandsOf(plan)).toEqual([
      'ip tuntap add dev tap0_kata mode tap vnet_hdr',
      'ip link set dev tap0_kata group 30307',
      'ip link set dev tap0_kata mtu 1500 up',
      'tc qdisc add dev tap0_kata ingress',
      'tc qdisc add dev eth0 ingress',
      'tc filter add dev eth0 parent ffff: protocol all prio 49152 u32 match u32 0 0 action mirred egress redirect dev tap0_kata',
      'tc filter add dev tap0_kata parent ffff: protocol all prio 49152 u32 match u32 0 0 action mirred egress redirect dev eth0',
    ]);
  });

  it('records exactly the objects it creates, derived from each change', () => {
    expect(plan.steps.map((step) => step.record)).toEqual([
      { step: 'create-link', name: 'tap0_kata', kind: 'tun' },
      undefined,
      undefined,
      { step: 'add-qdisc', link: 'tap0_kata', handle: INGRESS_HANDLE, parent: TC_H_INGRESS, kind: 'ingress' },
      // Pod links are recorded by ifindex too (their identity); the name is a label.
      { step: 'add-qdisc', link: 'eth0', index: 2, handle: INGRESS_HANDLE, parent: TC_H_INGRESS, kind: 'ingress' },
      {
        step: 'add-filter',
        link: 'eth0',
        index: 2,
        parent: INGRESS_HANDLE,
        priority: FILTER_PRIORITY,
        protocol: ETH_P_ALL,
        kind: 'u32',
        // The tap's index is not known before it is made: apply fills it in (and the tap's own).
        redirectTo: { link: 'tap0_kata' },
      },
      {
        step: 'add-filter',
        link: 'tap0_kata',
        parent: INGRESS_HANDLE,
        priority: FILTER_PRIORITY,
        protocol: ETH_P_ALL,
        kind: 'u32',
        redirectTo: { link: 'eth0', index: 2 },
      },
    ]);
    for (const step of plan.steps) expect(step.undo).toEqual(undoOf(step.change));
  });

  it('is deterministic', () => {
    const again = planTcfilter(snapshot());
    expect(again).toEqual(plan);
  });

  it('makes a multi-queue tap when queues > 1', () => {
    const multi = planTcfilter(snapshot(), { queues: 4 });
    expect(multi.steps[0]?.change).toMatchObject({ op: 'create-tap', queues: 4, multiQueue: true });
    expect(commandOf(multi.steps[0]!.change)).toBe('ip tuntap add dev tap0_kata mode tap vnet_hdr multi_queue');
  });

  it('keeps an ingress qdisc the pod link has and takes a free filter priority beside its filters', () => {
    const beside = planTcfilter(
      snapshot({ qdiscs: [podIngressQdisc('ingress')], filters: [theirU32Filter(INGRESS_HANDLE, FILTER_PRIORITY)] }),
    );
    expect(beside.steps.filter((step) => step.change.op === 'add-qdisc')).toHaveLength(1);
    expect(
      beside.steps.find((step) => step.change.op === 'add-filter' && step.change.link.name === 'eth0')?.change,
    ).toMatchObject({ priority: FILTER_PRIORITY + 1 });
  });

  it.each([
    ["tc's `ingress` (ffff:fff2)", CLSACT_INGRESS_PARENT, 'parent ffff:fff2'],
    ["Kata's netlink parent (ffff:0)", INGRESS_HANDLE, 'parent ffff:'],
  ])(
    "adds its redirect beside another tool's filters under the parent the kernel reports them with, %s",
    (_label, reported, rendered) => {
      // The kernel reports a block's filters under the parent of the last one added: adding under
      // that one leaves it so (tc filter show prints the same lines after detach).
      const beside = planTcfilter(
        snapshot({ qdiscs: [podIngressQdisc('ingress')], filters: [theirU32Filter(reported, 60_000)] }),
      );
      const podFilter = beside.steps.find(
        (step) => step.change.op === 'add-filter' && step.change.link.name === 'eth0',
      );
      expect(podFilter?.change).toMatchObject({ parent: reported, priority: FILTER_PRIORITY });
      expect(podFilter?.record).toMatchObject({ parent: reported });
      expect(commandOf(podFilter!.change)).toContain(rendered);
    },
  );

  it('adds under clsact ingress when the pod link has clsact', () => {
    const beside = planTcfilter(snapshot({ qdiscs: [podIngressQdisc('clsact')] }));
    const podFilter = beside.steps.find((step) => step.change.op === 'add-filter' && step.change.link.name === 'eth0');
    expect(podFilter?.change).toMatchObject({ parent: CLSACT_INGRESS_PARENT });
    expect(podFilter?.record).toMatchObject({ parent: CLSACT_INGRESS_PARENT });
    expect(commandOf(podFilter!.change)).toContain('parent ffff:fff2');
  });

  it('shapes rx on the tap and tx on the pod link with htb trees', () => {
    const limited = planTcfilter(snapshot(), {
      queues: 1,
      rateLimit: { rxBitsPerSecond: 10_000_000, txBitsPerSecond: 20_000_000 },
    });
    const commands = commandsOf(limited);
    expect(commands).toContain('tc qdisc add dev tap0_kata root handle 1: htb default 2');
    expect(commands).toContain(
      'tc class add dev tap0_kata parent 1:1 classid 1:2 htb rate 10000000bit ceil 10000000bit burst 2850 cburst 2850',
    );
    expect(commands).toContain('tc qdisc add dev eth0 root handle 1: htb default 2');
    // Classes go with their qdisc: no record of their own.
    expect(
      limited.steps.filter((step) => step.change.op === 'add-class').every((step) => step.record === undefined),
    ).toBe(true);
    expect(
      limited.steps.find(
        (step) => step.change.op === 'add-qdisc' && step.change.kind === 'htb' && step.change.link.name === 'eth0',
      )?.record,
    ).toEqual({ step: 'add-qdisc', link: 'eth0', index: 2, handle: 0x10000, parent: TC_H_ROOT, kind: 'htb' });
  });

  it('refuses to replace a root qdisc somebody configured, naming it', () => {
    const theirs: Qdisc = {
      index: 2,
      handle: 0x50000,
      parent: TC_H_ROOT,
      kind: 'tbf',
      options: { kind: 'tbf', unparsed: true },
    };
    expect(() =>
      planTcfilter(snapshot({ qdiscs: [theirs] }), { queues: 1, rateLimit: { txBitsPerSecond: 1000 } }),
    ).toThrow(/root qdisc of eth0.*tbf/);
  });
});

/** eth0 as the kernel reports a link with IPv6: its link-local address made from the MAC (EUI-64). */
const eth0WithIpv6 = (): Link => link({ ipv6AddressGeneration: 'eui64' });

describe('planAttach: macvtap', () => {
  const plan = planAttach(
    snapshot(),
    { queues: 1 },
    { model: 'macvtap', source: eth0WithIpv6(), tapName: 'tap0_kata', spareHardwareAddress: SPARE },
  );

  it('makes the macvtap, removes permanent neighbours and non-kernel routes, moves the MAC, removes addresses', () => {
    expect(commandsOf(plan)).toEqual([
      'ip link add link eth0 name tap0_kata address 02:42:ac:11:00:02 mtu 1500 txqueuelen 1000 group 30307 allmulticast on type macvtap mode bridge',
      'ip neigh del 10.88.0.1 dev eth0',
      `ip route del default via 10.88.0.1 dev eth0 table ${RouteTable.MAIN} proto 3 scope 0`,
      'ip link set dev tap0_kata addrgenmode none',
      `ip link set dev eth0 address ${SPARE}`,
      'ip link set dev eth0 addrgenmode none',
      'ip address del 10.88.0.2/16 dev eth0',
      'ip address del fd00::2/64 dev eth0',
      'ip address del fe80::1/64 dev eth0',
      'ip link set dev tap0_kata up',
    ]);
  });

  it("takes the link-local address too (the guest's, from the MAC), and leaves generation alone where it is off", () => {
    const off = planAttach(
      snapshot(),
      { queues: 1 },
      {
        model: 'macvtap',
        source: link({ ipv6AddressGeneration: 'none' }),
        tapName: 'tap0_kata',
        spareHardwareAddress: SPARE,
      },
    );
    const commands = commandsOf(off);
    expect(commands).toContain('ip address del fe80::1/64 dev eth0');
    expect(commands).not.toContain('ip link set dev eth0 addrgenmode none');
    // The macvtap's own, from the guest's MAC, is never made.
    expect(commands).toContain('ip link set dev tap0_kata addrgenmode none');
  });

  it('sets no IPv6 address generation mode on a macvtap below 1280, where the kernel gives it no IPv6', () => {
    for (const mtu of [576, 68, 1279]) {
      const small = planAttach(
        snapshot({ links: [link({ mtu })] }),
        { queues: 1 },
        { model: 'macvtap', source: link({ mtu }), tapName: 'tap0_kata', spareHardwareAddress: SPARE },
      );
      const commands = commandsOf(small);
      expect(commands.find((c) => c.startsWith('ip link add'))).toContain(`mtu ${mtu} `);
      expect(commands).not.toContain('ip link set dev tap0_kata addrgenmode none');
    }
    expect(commandsOf(plan)).toContain('ip link set dev tap0_kata addrgenmode none');
  });

  it('deletes IPv4 addresses newest first (secondaries before their primary), IPv6 as listed', () => {
    const several = planAttach(
      snapshot({
        addresses: [
          address('10.88.0.2', 16),
          address('10.88.0.3', 16),
          address('10.88.0.4', 16),
          address('fd00::3', 64),
          address('fd00::2', 64),
        ],
      }),
      { queues: 1 },
      { model: 'macvtap', source: eth0(), tapName: 'tap0_kata', spareHardwareAddress: SPARE },
    );
    expect(commandsOf(several).filter((command) => command.startsWith('ip address del'))).toEqual([
      'ip address del 10.88.0.4/16 dev eth0',
      'ip address del 10.88.0.3/16 dev eth0',
      'ip address del 10.88.0.2/16 dev eth0',
      'ip address del fd00::3/64 dev eth0',
      'ip address del fd00::2/64 dev eth0',
    ]);
  });

  it('records how to put back what it removed or changed', () => {
    expect(plan.steps.map((step) => step.record?.step)).toEqual([
      'create-link',
      'remove-neighbours',
      'remove-routes',
      undefined,
      'change-link',
      'change-link',
      'remove-addresses',
      'remove-addresses',
      'remove-addresses',
      undefined,
    ]);
    // What vcnet set is recorded beside what was there, so detach can leave a value the user changed.
    expect(plan.steps[4]?.record).toEqual({
      step: 'change-link',
      link: 'eth0',
      index: 2,
      before: { address: '02:42:ac:11:00:02' },
      set: { address: SPARE },
    });
    expect(plan.steps[5]?.record).toEqual({
      step: 'change-link',
      link: 'eth0',
      index: 2,
      before: { ipv6AddressGeneration: 'eui64' },
      set: { ipv6AddressGeneration: 'none' },
    });
  });

  it('brings a down pod link up, and records that it was down', () => {
    const down = link({ flags: InterfaceFlag.BROADCAST });
    const planned = planAttach(
      snapshot(),
      { queues: 1 },
      { model: 'macvtap', source: down, tapName: 'tap0_kata', spareHardwareAddress: SPARE },
    );
    expect(
      planned.steps.find((step) => step.record?.step === 'change-link' && 'up' in step.record.before)?.record,
    ).toEqual({ step: 'change-link', link: 'eth0', index: 2, before: { up: false }, set: { up: true } });
  });

  it('takes away the default root qdisc a never-up link got from being brought up, and only that one', () => {
    const neverUp = link({ flags: InterfaceFlag.BROADCAST, qdisc: 'noop' });
    const records = planAttach(
      snapshot(),
      { queues: 1 },
      { model: 'macvtap', source: neverUp, tapName: 'tap0_kata', spareHardwareAddress: SPARE },
    ).steps.flatMap((step) => (step.record ? [step.record] : []));
    expect(records.find((record) => record.step === 'change-link' && 'up' in record.before)).toMatchObject({
      before: { up: false, qdisc: 'noop' },
    });
    const detachCommands = (qdisc: string) =>
      planDetach(records, { links: [link({ address: SPARE, qdisc })] }).steps.map((step) => commandOf(step.change));
    const withDefault = detachCommands('noqueue');
    const down = withDefault.indexOf('ip link set dev eth0 down');
    expect(down).toBeGreaterThanOrEqual(0);
    // Down first (deleting an up link's root qdisc gives it the default again), then replace and delete.
    expect(withDefault.slice(down + 1, down + 3)).toEqual([
      expect.stringMatching(/^tc qdisc add dev eth0 root handle 7663: htb/),
      expect.stringMatching(/^tc qdisc del dev eth0 root handle 7663:/),
    ]);
    expect(detachCommands('tbf').filter((command) => command.includes('root'))).toEqual([]);
  });

  it('shapes rx (towards the VM) through an ifb fed from the macvtap ingress, recorded under the parent it is added to', () => {
    const limited = planAttach(
      snapshot(),
      { queues: 1, rateLimit: { rxBitsPerSecond: 1_000_000 } },
      { model: 'macvtap', source: eth0(), tapName: 'tap0_kata', spareHardwareAddress: SPARE },
    );
    const commands = commandsOf(limited);
    expect(commands).toContain('ip link add name ifb0_kata group 30307 type ifb');
    expect(commands).toContain(
      'tc filter add dev tap0_kata parent ffff: protocol all prio 49151 u32 match u32 0 0 action mirred egress redirect dev ifb0_kata',
    );
    expect(commands).toContain('tc qdisc add dev ifb0_kata root handle 1: htb default 2');
    expect(commands).not.toContain('tc qdisc add dev tap0_kata root handle 1: htb default 2');
    const redirect = limited.steps.find((step) => step.change.op === 'add-filter');
    expect(redirect?.record).toEqual({
      step: 'add-filter',
      link: 'tap0_kata',
      parent: INGRESS_HANDLE,
      priority: FILTER_PRIORITY - 1,
      protocol: ETH_P_ALL,
      kind: 'u32',
      redirectTo: { link: 'ifb0_kata' },
    });
  });

  it('shapes tx (from the VM) with an htb on the macvtap egress, the reverse of a tap', () => {
    const rates = { rxBitsPerSecond: 50_000_000, txBitsPerSecond: 20_000_000 };
    const classRates = (plan: Plan) =>
      plan.steps.flatMap(({ change }) =>
        change.op === 'add-class' && change.handle === 0x10002 ? [[change.link.name, change.rateBitsPerSecond]] : [],
      );
    const macvtap = planAttach(
      snapshot(),
      { queues: 1, rateLimit: rates },
      { model: 'macvtap', source: eth0(), tapName: 'tap0_kata', spareHardwareAddress: SPARE },
    );
    expect(classRates(macvtap)).toEqual([
      ['tap0_kata', 20_000_000],
      ['ifb0_kata', 50_000_000],
    ]);
    const existing = planAttach(
      snapshot({ links: [...snapshot().links, link({ index: 9, name: 'vm-nic0', kind: 'macvtap' })] }),
      { queues: 1, rateLimit: rates },
      { model: 'existing', source: link({ index: 9, name: 'vm-nic0', kind: 'macvtap' }), tapName: 'vm-nic0' },
    );
    expect(classRates(existing)).toEqual([
      ['vm-nic0', 20_000_000],
      [ifbName('vm-nic0'), 50_000_000],
    ]);
    const tap = planAttach(snapshot(), { queues: 1, rateLimit: rates }, { model: 'none', tapName: 'tap0_kata' });
    expect(classRates(tap)).toEqual([
      ['tap0_kata', 50_000_000],
      ['ifb0_kata', 20_000_000],
    ]);
  });

  it('needs the spare MAC from the caller (the plan has no randomness)', () => {
    expect(() =>
      planAttach(snapshot(), { queues: 1 }, { model: 'macvtap', source: eth0(), tapName: 'tap0_kata' }),
    ).toThrow(/spareHardwareAddress/);
  });
});

describe('planAttach: none', () => {
  it('makes only a tap, with the given MTU, and leaves the guest MAC to the caller or the tap', () => {
    const plan = planAttach(snapshot(), { queues: 1 }, { model: 'none', tapName: 'tap0_kata', mtu: 9000 });
    expect(commandsOf(plan)).toEqual([
      'ip tuntap add dev tap0_kata mode tap vnet_hdr',
      'ip link set dev tap0_kata group 30307',
      'ip link set dev tap0_kata mtu 9000 up',
    ]);
    expect(plan.guestHardwareAddress).toBeUndefined();
  });

  it('rate limits rx on the tap and tx through an ifb', () => {
    const plan = planAttach(
      snapshot(),
      { queues: 1, rateLimit: { rxBitsPerSecond: 8000, txBitsPerSecond: 8000 } },
      { model: 'none', tapName: 'tap0_kata' },
    );
    expect(ops(plan)).toEqual([
      'create-tap',
      'set-link',
      'set-link',
      'add-qdisc',
      'add-class',
      'add-class',
      'create-link',
      'set-link',
      'add-qdisc',
      'add-filter',
      'add-qdisc',
      'add-class',
      'add-class',
    ]);
  });
});

describe('planAttach: a link to create whose name is taken', () => {
  const taken = (name: string, overrides: Partial<Link> = {}) =>
    snapshot({ links: [...snapshot().links, link({ index: 7, name, kind: 'tun', ...overrides })] });

  it('refuses a tap named like a link already there, naming it, before anything is changed', () => {
    const attempt = () => planTcfilter(taken('tap0_kata'));
    expect(attempt).toThrow(LinkNameTakenError);
    expect(attempt).toThrow(/a link named tap0_kata is already in the namespace \(index 7, tun\)/);
    try {
      attempt();
    } catch (error) {
      expect((error as LinkNameTakenError).code).toBe('VCNET_LINK_NAME_TAKEN');
      expect((error as LinkNameTakenError).value).toBe('tap0_kata');
      expect((error as LinkNameTakenError).hint).toContain('ip link del tap0_kata');
    }
  });

  it("points to detach and gc when the link is in vcnet's link group", () => {
    const attempt = () =>
      planAttach(
        taken('tap0_kata', { group: VCNET_LINK_GROUP }),
        { queues: 1 },
        { model: 'none', source: eth0(), tapName: 'tap0_kata' },
      );
    expect(attempt).toThrow(/in vcnet's link group/);
    try {
      attempt();
    } catch (error) {
      expect((error as LinkNameTakenError).hint).toMatch(/vcnet detach.*vcnet gc/);
    }
  });

  it('checks the macvtap and the ifb of a rate limit too', () => {
    expect(() =>
      planAttach(
        taken('tap0_kata', { kind: 'dummy' }),
        { queues: 1 },
        { model: 'macvtap', source: eth0(), tapName: 'tap0_kata', spareHardwareAddress: SPARE },
      ),
    ).toThrow(/tap0_kata is already in the namespace \(index 7, dummy\)/);
    expect(() =>
      planAttach(
        taken('ifb0_kata', { kind: 'ifb' }),
        { queues: 1, rateLimit: { txBitsPerSecond: 8000 } },
        { model: 'none', source: eth0(), tapName: 'tap0_kata' },
      ),
    ).toThrow(/a link named ifb0_kata/);
    // A name nobody has is planned as before.
    expect(() => planTcfilter(taken('tap1_kata'))).not.toThrow();
  });
});

describe('planAttach for every endpoint type', () => {
  const cases: Array<{ kind: Partial<Link>; type: string; model?: string }> = [
    { kind: { kind: 'veth' }, type: 'virtual', model: 'tcfilter' },
    { kind: { kind: 'macvlan' }, type: 'macvlan', model: 'tcfilter' },
    { kind: { kind: 'ipvlan' }, type: 'ipvlan', model: 'tcfilter' },
    { kind: { kind: 'tun', tun: { type: 'tap' } }, type: 'tuntap', model: 'tcfilter' },
    { kind: { kind: 'macvtap' }, type: 'macvtap' },
  ];
  for (const { kind, type, model } of cases) {
    it(`${type}: ${model ? `plans a ${model} pair` : 'uses the device as it is (no plan)'}`, () => {
      const endpoint = createEndpoint(info({ link: link(kind) }), { index: 0, model: 'tcfilter' });
      expect(endpoint.type).toBe(type);
      const request = endpoint.attachRequest();
      if (!model) {
        expect(request).toBeUndefined();
        return;
      }
      const plan = planAttach(snapshot(), { queues: 1 }, request!);
      expect(plan.model).toBe(model);
      expect(plan.steps[0]?.change).toMatchObject({ op: 'create-tap', link: { name: 'tap0_kata' } });
    });
  }

  it('ipvlan always takes tcfilter (Kata: macvtap cannot sit on an ipvlan)', () => {
    const endpoint = createEndpoint(info({ link: link({ kind: 'ipvlan' }) }), { index: 0, model: 'macvtap' });
    expect(endpoint.attachRequest()?.model).toBe('tcfilter');
  });

  it('veth with macvtap and none models', () => {
    for (const model of ['macvtap', 'none'] as const) {
      const endpoint = createEndpoint(info(), { index: 1, model });
      const plan = planAttach(snapshot(), { queues: 1 }, endpoint.attachRequest()!);
      expect(plan.model).toBe(model);
      expect(plan.device.name).toBe('tap1_kata');
    }
  });

  it('tap (add-iface type "tap"): a tap named tap<N>_kata as Kata makes it, none model', () => {
    const endpoint = createEndpoint(info({ link: link({ name: 'mytap', kind: undefined, mtu: 1400 }) }), {
      index: 0,
      model: 'tcfilter',
      requestedType: 'tap',
    });
    const plan = planAttach(snapshot(), { queues: 1 }, endpoint.attachRequest()!);
    expect(commandsOf(plan)).toEqual([
      'ip tuntap add dev tap0_kata mode tap vnet_hdr',
      'ip link set dev tap0_kata group 30307',
      'ip link set dev tap0_kata mtu 1400 up',
    ]);
  });
});

describe('planDetach', () => {
  const records = () => planTcfilter(snapshot()).steps.flatMap((step) => (step.record ? [step.record] : []));
  const tap = link({ index: 7, name: 'tap0_kata', kind: 'tun', group: VCNET_LINK_GROUP });

  it('deletes the tap (its qdisc and filter go with it), then the pod qdisc (its filter goes with it)', () => {
    const plan = planDetach(records(), { links: [eth0(), tap] });
    expect(plan.steps.map((step) => commandOf(step.change))).toEqual([
      'ip link del dev tap0_kata',
      'tc qdisc del dev eth0 ingress',
    ]);
    expect(plan.steps[0]?.settles.map((record) => record.step)).toEqual(['create-link', 'add-filter', 'add-qdisc']);
    expect(plan.steps[1]?.settles.map((record) => record.step)).toEqual(['add-qdisc', 'add-filter']);
    expect(plan.alreadyGone).toEqual([]);
    expect(plan.notices).toEqual([]);
  });

  it('finds a renamed pod link by its ifindex and undoes on it under its new name', () => {
    const renamed = link({ name: 'eth0r' });
    const plan = planDetach(records(), { links: [renamed, tap] });
    expect(plan.steps.map((step) => commandOf(step.change))).toEqual([
      'ip link del dev tap0_kata',
      'tc qdisc del dev eth0r ingress',
    ]);
    expect(plan.steps[1]?.change).toMatchObject({ link: { name: 'eth0r', index: 2 } });
  });

  it('leaves a link made again under the old name alone, and says so', () => {
    const recreated = link({ index: 12 });
    const plan = planDetach(records(), { links: [recreated, tap] });
    expect(plan.steps.map((step) => commandOf(step.change))).toEqual(['ip link del dev tap0_kata']);
    expect(plan.alreadyGone.map((record) => record.step)).toEqual(['add-filter', 'add-qdisc']);
    expect(plan.notices).toEqual([
      {
        link: 'eth0',
        message: expect.stringMatching(/^eth0 is another link than the one attach changed \(ifindex 12 now, 2 then\)/),
      },
    ]);
  });

  it('resolves records written before vcnet kept the ifindex by name', () => {
    const old = records().map((record) => {
      if (record.step === 'create-link') return record;
      const { index: _index, ...rest } = record;
      return rest;
    });
    const plan = planDetach(old, { links: [link({ index: 12 }), tap] });
    expect(plan.steps.map((step) => commandOf(step.change))).toEqual([
      'ip link del dev tap0_kata',
      'tc qdisc del dev eth0 ingress',
    ]);
  });

  it("keeps a pod qdisc of ours that holds someone else's filter, and deletes only our filter", () => {
    const plan = planDetach(records(), {
      links: [eth0(), tap],
      keptQdiscs: new Map([['eth0/65535', "it holds another tool's filter (prio 7)"]]),
    });
    const commands = plan.steps.map((step) => commandOf(step.change));
    expect(commands).not.toContain('tc qdisc del dev eth0 ingress');
    expect(commands.filter((command) => command.includes('dev eth0'))).toEqual([
      expect.stringMatching(/^tc filter del dev eth0 /),
    ]);
    expect(commands).toContain('ip link del dev tap0_kata');
    // Kept, not "already gone": it is still there.
    expect(plan.alreadyGone).toEqual([]);
    expect(plan.kept).toEqual([
      {
        record: expect.objectContaining({ step: 'add-qdisc', kind: 'ingress' }),
        reason: "it holds another tool's filter (prio 7)",
      },
    ]);
  });

  it("an edited record naming the pod's veth as its tap: the veth is kept and the pod is put back", () => {
    // tapName and the create-link step changed from tap0_kata to eth0: the tap's records now name eth0.
    const edited = records().map((record) => {
      if (record.step === 'create-link') return { ...record, name: 'eth0' };
      return record.link === 'tap0_kata' ? { ...record, link: 'eth0' } : record;
    });
    const plan = planDetach(edited, { links: [eth0(), tap] });
    const commands = plan.steps.map((step) => commandOf(step.change));
    expect(commands).not.toContain('ip link del dev eth0');
    // The pod link's own records (they carry its ifindex) are still undone.
    expect(commands).toEqual(['tc qdisc del dev eth0 ingress']);
    expect(plan.notices).toEqual([
      {
        link: 'eth0',
        message: expect.stringMatching(
          /^left eth0 as it is: the record says vcnet created it \(a tun in vcnet's group 0x7663\), but it is a veth in group 0x0/,
        ),
      },
    ]);
  });

  it("keeps a link of the recorded kind outside vcnet's group, and a tap named as vcnet names them before it joins the group", () => {
    const foreignTap = link({ index: 7, name: 'tap0_kata', kind: 'tun', group: 5 });
    expect(planDetach(records(), { links: [eth0(), foreignTap] }).steps.map((step) => commandOf(step.change))).toEqual([
      'tc qdisc del dev eth0 ingress',
    ]);
    // An attach killed between making the tap and moving it into the group: still vcnet's.
    const newTap = link({ index: 7, name: 'tap0_kata', kind: 'tun', group: 0 });
    expect(planDetach(records(), { links: [eth0(), newTap] }).steps.map((step) => commandOf(step.change))).toEqual([
      'ip link del dev tap0_kata',
      'tc qdisc del dev eth0 ingress',
    ]);
    const macvtap = link({ index: 7, name: 'tap0_kata', kind: 'macvtap', group: VCNET_LINK_GROUP });
    expect(planDetach(records(), { links: [eth0(), macvtap] }).notices[0]?.message).toContain('but it is a macvtap');
  });

  it('deletes two taps by group when the group holds exactly them', () => {
    const both = [...records(), { step: 'create-link' as const, name: 'tap1_kata', kind: 'tun' }];
    const plan = planDetach(both, {
      links: [eth0(), tap, link({ index: 8, name: 'tap1_kata', kind: 'tun', group: VCNET_LINK_GROUP })],
    });
    expect(plan.steps.map((step) => commandOf(step.change))).toEqual([
      'ip link del group 30307',
      'tc qdisc del dev eth0 ingress',
    ]);
  });

  it('does not delete by group when another vcnet link is in the namespace', () => {
    const both = [...records(), { step: 'create-link' as const, name: 'tap1_kata', kind: 'tun' }];
    const other = link({ index: 9, name: 'tap5_kata', kind: 'tun', group: VCNET_LINK_GROUP });
    const plan = planDetach(both, {
      links: [eth0(), tap, link({ index: 8, name: 'tap1_kata', kind: 'tun', group: VCNET_LINK_GROUP }), other],
    });
    expect(plan.steps.map((step) => commandOf(step.change))).toContain('ip link del dev tap1_kata');
  });

  /** The records as apply writes them: the tap's ifindex (7) in its create-link and in the redirect to it. */
  const indexed = () =>
    records().map((record) =>
      record.step === 'create-link'
        ? { ...record, index: 7 }
        : record.step === 'add-filter' && record.redirectTo?.link === 'tap0_kata'
          ? { ...record, redirectTo: { link: 'tap0_kata', index: 7 } }
          : record,
    );

  it('finds its tap by the recorded ifindex: renamed and out of the group, it is still deleted, under its new name', () => {
    const stolen = link({ index: 7, name: 'stolen', kind: 'tun', group: 0 });
    const plan = planDetach(indexed(), { links: [eth0(), stolen] });
    expect(plan.steps.map((step) => commandOf(step.change))).toEqual([
      'ip link del dev stolen',
      'tc qdisc del dev eth0 ingress',
    ]);
    expect(plan.alreadyGone).toEqual([]);
    expect(plan.notices).toEqual([
      {
        link: 'tap0_kata',
        message: 'tap0_kata (ifindex 7) was renamed stolen after attach made it: deleted under its new name',
      },
    ]);
  });

  it('leaves a look-alike with the recorded name but another ifindex, and says so', () => {
    const lookAlike = link({ index: 9, name: 'tap0_kata', kind: 'tun', group: VCNET_LINK_GROUP });
    const plan = planDetach(indexed(), { links: [eth0(), lookAlike] });
    expect(plan.steps.map((step) => commandOf(step.change))).toEqual(['tc qdisc del dev eth0 ingress']);
    expect(plan.alreadyGone.map((record) => record.step)).toContain('create-link');
    expect(plan.notices.map((notice) => notice.message)).toEqual([
      'left tap0_kata (ifindex 9, tun) as it is: it is not the link attach made under that name (ifindex 7)',
    ]);
  });

  it('leaves a link of another kind at the recorded ifindex', () => {
    const veth = link({ index: 7, name: 'tap0_kata', kind: 'veth', group: VCNET_LINK_GROUP });
    const plan = planDetach(indexed(), { links: [eth0(), veth] });
    expect(plan.steps.map((step) => commandOf(step.change))).toEqual(['tc qdisc del dev eth0 ingress']);
    expect(plan.notices[0]?.message).toMatch(
      /^left tap0_kata \(ifindex 7\) as it is: attach made a tun tap0_kata at that index, but this is a veth/,
    );
  });

  it("keeps a filter at its recorded priority that is not vcnet's, and the qdisc holding it", () => {
    const plan = planDetach(indexed(), {
      links: [eth0(), tap],
      keptQdiscs: new Map([['eth0/65535', "it holds another tool's filter (prio 49152)"]]),
      keptFilters: new Map([
        ['eth0/65535/49152', "prio 49152 holds a filter that is not vcnet's (u32, redirect to x)"],
      ]),
    });
    expect(plan.steps.map((step) => commandOf(step.change))).toEqual(['ip link del dev tap0_kata']);
    expect(plan.kept.map((kept) => kept.record.step)).toEqual(['add-filter', 'add-qdisc']);
    expect(plan.kept[0]?.reason).toContain("not vcnet's");
  });

  it('deletes by group only when the group holds exactly its links, by ifindex', () => {
    const both = [...indexed(), { step: 'create-link' as const, name: 'tap1_kata', kind: 'tun', index: 8 }];
    const renamed = link({ index: 8, name: 'moved', kind: 'tun', group: VCNET_LINK_GROUP });
    expect(planDetach(both, { links: [eth0(), tap, renamed] }).steps.map((step) => commandOf(step.change))).toEqual([
      'ip link del group 30307',
      'tc qdisc del dev eth0 ingress',
    ]);
    // One moved out of the group goes by its index; the group is not deleted then.
    const outside = link({ index: 8, name: 'moved', kind: 'tun', group: 0 });
    expect(planDetach(both, { links: [eth0(), tap, outside] }).steps.map((step) => commandOf(step.change))).toEqual([
      'ip link del dev tap0_kata',
      'ip link del dev moved',
      'tc qdisc del dev eth0 ingress',
    ]);
  });

  it('counts what is already gone and plans nothing for it', () => {
    const plan = planDetach(records(), { links: [eth0()] });
    expect(plan.steps.map((step) => commandOf(step.change))).toEqual(['tc qdisc del dev eth0 ingress']);
    expect(plan.alreadyGone.map((record) => record.step)).toEqual(['create-link', 'add-filter', 'add-qdisc']);
  });

  const macvtapRecords = () =>
    planAttach(
      snapshot(),
      { queues: 1 },
      { model: 'macvtap', source: eth0WithIpv6(), tapName: 'tap0_kata', spareHardwareAddress: SPARE },
    ).steps.flatMap((step) => (step.record ? [step.record] : []));
  const macvtap = link({ index: 7, name: 'tap0_kata', kind: 'macvtap', group: VCNET_LINK_GROUP });
  /** eth0 as attach left it (the spare MAC, generation off), up with carrier. */
  const withCarrier = InterfaceFlag.UP | InterfaceFlag.BROADCAST | InterfaceFlag.MULTICAST | InterfaceFlag.LOWER_UP;

  it('puts back what macvtap changed, in reverse, once the macvtap holding the MAC is gone', () => {
    // eth0 as attach left it: the spare MAC.
    const plan = planDetach(macvtapRecords(), {
      links: [link({ address: SPARE, ipv6AddressGeneration: 'none', flags: withCarrier }), macvtap],
    });
    expect(plan.steps.map((step) => commandOf(step.change))).toEqual([
      'ip link del dev tap0_kata',
      // IPv6 without DAD, so a route with one as src can come back at once (see usableAtOnce)...
      'ip address add fe80::1/64 scope 253 nodad dev eth0',
      'ip address add fd00::2/64 scope 0 nodad dev eth0',
      'ip address add 10.88.0.2/16 scope 0 dev eth0',
      'ip link set dev eth0 address 02:42:ac:11:00:02',
      `ip route add default via 10.88.0.1 dev eth0 table ${RouteTable.MAIN} proto 3 scope 0`,
      'ip neigh replace 10.88.0.1 lladdr aa:bb:cc:dd:ee:ff nud permanent dev eth0',
      // ...then with the flags they had.
      'ip address change fe80::1/64 scope 253 dev eth0',
      'ip address change fd00::2/64 scope 0 dev eth0',
      // The mode last, by its sysctl, once the MAC is back: the kernel makes the link-local address
      // a link that became ready while attached never got (netlink only stores the mode).
      'echo 0 > /proc/sys/net/ipv6/conf/eth0/addr_gen_mode',
    ]);
    expect(plan.notices).toEqual([]);
  });

  it("deletes last the prefix route an IPv6 address brings back where the pod had none (ptp), and keeps a pod's nodad", () => {
    const ptp = snapshot({
      addresses: [
        address('10.88.0.2', 16),
        address('fd00::2', 64),
        address('fd00::3', 64, { flags: AddressFlag.NODAD }),
      ],
      routes: [route({ gateway: '10.88.0.1' })],
    });
    const records = planAttach(
      ptp,
      { queues: 1 },
      { model: 'macvtap', source: eth0WithIpv6(), tapName: 'tap0_kata', spareHardwareAddress: SPARE },
    ).steps.flatMap((step) => (step.record ? [step.record] : []));
    const commands = planDetach(records, {
      links: [link({ address: SPARE, ipv6AddressGeneration: 'none', flags: withCarrier }), macvtap],
    }).steps.map((step) => commandOf(step.change));
    expect(commands.slice(-3)).toEqual([
      'ip address change fd00::2/64 scope 0 dev eth0',
      `ip -6 route del fd00::/64 dev eth0 table ${RouteTable.MAIN} proto 2`,
      'echo 0 > /proc/sys/net/ipv6/conf/eth0/addr_gen_mode',
    ]);
    expect(commands).toContain('ip address add fd00::3/64 scope 0 nodad dev eth0');
    expect(commands).not.toContain('ip address change fd00::3/64 scope 0 nodad dev eth0');
  });

  it('puts the generation mode back by netlink on a link up without carrier that IPv6 never took as ready', () => {
    // Without carrier since it came up, the kernel makes its link-local address when carrier comes, as
    // for any link: the sysctl would make one now, which the pod did not have before attach.
    const noCarrier = InterfaceFlag.UP | InterfaceFlag.BROADCAST | InterfaceFlag.MULTICAST;
    const neverReady = planDetach(macvtapRecords(), {
      links: [link({ address: SPARE, ipv6AddressGeneration: 'none', flags: noCarrier }), macvtap],
    }).steps.map((step) => commandOf(step.change));
    expect(neverReady.some((command) => command.includes('addr_gen_mode'))).toBe(false);
    expect(neverReady.some((command) => command.includes('addrgenmode eui64'))).toBe(true);
    // Taken as ready while attached (carrier came and went under the VM): the kernel will make none.
    const wasReady = planDetach(macvtapRecords(), {
      links: [link({ address: SPARE, ipv6AddressGeneration: 'none', flags: noCarrier, ipv6Ready: true }), macvtap],
    }).steps.map((step) => commandOf(step.change));
    expect(wasReady.at(-1)).toBe('echo 0 > /proc/sys/net/ipv6/conf/eth0/addr_gen_mode');
  });

  it('leaves a MAC the user set after attach, and says so', () => {
    const plan = planDetach(macvtapRecords(), { links: [link({ address: '02:11:22:33:44:55' }), macvtap] });
    const commands = plan.steps.map((step) => commandOf(step.change));
    expect(commands).not.toContain('ip link set dev eth0 address 02:42:ac:11:00:02');
    expect(commands).toContain('ip address add 10.88.0.2/16 scope 0 dev eth0');
    expect(plan.alreadyGone.map((record) => record.step)).toEqual(['change-link']);
    expect(plan.notices).toEqual([
      {
        link: 'eth0',
        message: expect.stringMatching(/^left the MAC of eth0 as it is \(02:11:22:33:44:55\): it changed after attach/),
      },
    ]);
  });

  it('says nothing of a MAC someone already put back as it was before attach', () => {
    const plan = planDetach(macvtapRecords(), { links: [link({ address: '02:42:AC:11:00:02' }), macvtap] });
    expect(plan.steps.map((step) => commandOf(step.change))).not.toContain(
      'ip link set dev eth0 address 02:42:ac:11:00:02',
    );
    expect(plan.notices).toEqual([]);
  });

  const detachedLinks = () => [link({ address: SPARE, ipv6AddressGeneration: 'none' }), macvtap];

  it('leaves a route set since attach in the place of a recorded one, and names both', () => {
    // The tenant's default route, as the kernel lists it, where attach took the pod's away.
    const theirs = route({ gateway: '10.88.0.99' });
    const plan = planDetach(macvtapRecords(), { links: detachedLinks(), routes: [theirs] });
    const commands = plan.steps.map((step) => commandOf(step.change));
    expect(commands.filter((command) => command.startsWith('ip route'))).toEqual([]);
    expect(plan.notices).toEqual([
      {
        link: 'eth0',
        message: expect.stringMatching(
          /^left the route default via 10\.88\.0\.99 dev eth0 .* as it is: it was set after attach in the place .* of the route attach removed, default via 10\.88\.0\.1 dev eth0 /,
        ),
      },
    ]);
    expect(plan.alreadyGone.map((record) => record.step)).toContain('remove-routes');
  });

  it('puts a recorded route back beside one of another metric, and says nothing of one that is already back as it was', () => {
    const otherMetric = route({ gateway: '10.88.0.99', priority: 100 });
    const beside = planDetach(macvtapRecords(), { links: detachedLinks(), routes: [otherMetric] });
    expect(beside.steps.map((step) => commandOf(step.change))).toContain(
      `ip route add default via 10.88.0.1 dev eth0 table ${RouteTable.MAIN} proto 3 scope 0`,
    );
    expect(beside.notices).toEqual([]);
    const same = planDetach(macvtapRecords(), {
      links: detachedLinks(),
      routes: [route({ gateway: '10.88.0.1' })],
    });
    expect(same.steps.map((step) => commandOf(step.change)).filter((command) => command.includes(' route '))).toEqual(
      [],
    );
    expect(same.notices).toEqual([]);
  });

  it('puts back no address that is on its link already (a macvtap attach killed before it took them away)', () => {
    // eth0 with every address it had: the kernel would answer each add EEXIST.
    const plan = planDetach(macvtapRecords(), { links: detachedLinks(), addresses: snapshot().addresses });
    const commands = plan.steps.map((step) => commandOf(step.change));
    // Not added again; the IPv6 ones still take their recorded flags (`ip address change`, accepted).
    expect(commands.filter((command) => command.startsWith('ip address'))).toEqual([
      'ip address change fe80::1/64 scope 253 dev eth0',
      'ip address change fd00::2/64 scope 0 dev eth0',
    ]);
    expect(plan.alreadyGone.filter((record) => record.step === 'remove-addresses')).toHaveLength(1);
    // Only the one that is missing is added (nodad first, its flags after).
    const partly = planDetach(macvtapRecords(), {
      links: detachedLinks(),
      addresses: snapshot().addresses.filter((entry) => entry.address !== 'fd00::2'),
    });
    expect(
      partly.steps.map((step) => commandOf(step.change)).filter((command) => command.startsWith('ip address')),
    ).toEqual([
      'ip address add fd00::2/64 scope 0 nodad dev eth0',
      'ip address change fe80::1/64 scope 253 dev eth0',
      'ip address change fd00::2/64 scope 0 dev eth0',
    ]);
    // The same IPv4 address with another prefix length, or on another link, is another address.
    const elsewhere = planDetach(macvtapRecords(), {
      links: detachedLinks(),
      addresses: [address('10.88.0.2', 24), address('fd00::2', 64, { index: 5 })],
    });
    expect(elsewhere.steps.map((step) => commandOf(step.change))).toEqual(
      expect.arrayContaining([
        'ip address add 10.88.0.2/16 scope 0 dev eth0',
        'ip address add fd00::2/64 scope 0 nodad dev eth0',
      ]),
    );
  });

  it('replaces the prefix route an address put back makes, where the pod routed its subnet via the gateway (ptp)', () => {
    const ptp = snapshot({
      addresses: [address('10.88.0.2', 16)],
      routes: [route({ destination: '10.88.0.0', destinationLength: 16, gateway: '10.88.0.1' })],
    });
    const records = planAttach(
      ptp,
      { queues: 1 },
      { model: 'macvtap', source: eth0(), tapName: 'tap0_kata', spareHardwareAddress: SPARE },
    ).steps.flatMap((step) => (step.record ? [step.record] : []));
    const commands = planDetach(records, { links: detachedLinks(), routes: [] }).steps.map((step) =>
      commandOf(step.change),
    );
    expect(commands).toContain(
      `ip route replace 10.88.0.0/16 via 10.88.0.1 dev eth0 table ${RouteTable.MAIN} proto 3 scope 0`,
    );
  });
});

describe('undo converges: every way the kernel says "already gone"', () => {
  const pod = { role: 'pod' as const, name: 'eth0', index: 2 };
  it('treats ENOENT, ENODEV, ESRCH, EADDRNOTAVAIL as gone for every deletion, EINVAL only for qdiscs and filters', () => {
    const qdisc = {
      op: 'delete-qdisc' as const,
      link: pod,
      kind: 'ingress',
      handle: INGRESS_HANDLE,
      parent: TC_H_INGRESS,
    };
    const filter = {
      op: 'delete-filter' as const,
      link: pod,
      parent: INGRESS_HANDLE,
      priority: 1,
      protocol: ETH_P_ALL,
      kind: 'u32',
    };
    const linkDeletion = { op: 'delete-link' as const, link: pod, kind: 'tun' };
    for (const errno of ['ENOENT', 'ENODEV', 'ESRCH', 'EADDRNOTAVAIL']) {
      for (const change of [qdisc, filter, linkDeletion]) expect(alreadyDone(change, errno)).toBe(true);
    }
    expect(alreadyDone(qdisc, 'EINVAL')).toBe(true);
    expect(alreadyDone(filter, 'EINVAL')).toBe(true);
    expect(alreadyDone(linkDeletion, 'EINVAL')).toBe(false);
    expect(alreadyDone(linkDeletion, 'EPERM')).toBe(false);
  });

  it('treats EEXIST as done when putting something back, and nothing else', () => {
    const address = { op: 'add-address' as const, link: pod, address: { address: '10.0.0.2', prefixLength: 24 } };
    expect(alreadyDone(address, 'EEXIST')).toBe(true);
    expect(alreadyDone(address, 'EACCES')).toBe(false);
  });
});

describe('address commands', () => {
  it('spell the flags a request sets (nodad, noprefixroute...) as ip address add does', () => {
    const eth0Ref = { role: 'pod' as const, name: 'eth0', index: 3 };
    const command = commandOf({
      op: 'add-address',
      link: eth0Ref,
      address: {
        address: 'fd00::2',
        prefixLength: 64,
        scope: 0,
        flags: AddressFlag.NODAD | AddressFlag.NOPREFIXROUTE | AddressFlag.PERMANENT,
      },
    });
    expect(command).toBe('ip address add fd00::2/64 scope 0 nodad noprefixroute dev eth0');
    // A delete names the address only.
    expect(
      commandOf({
        op: 'delete-address',
        link: eth0Ref,
        address: { address: 'fd00::2', prefixLength: 64, flags: AddressFlag.NODAD },
      }),
    ).toBe('ip address del fd00::2/64 dev eth0');
  });
});
