/**
 * The macvtap model's routes and proxy neighbours, without root: which routes a pod link's plan
 * takes (metrics, realm and multipath next hops included), how their records name the links, what
 * `--dry-run` prints for them, what detach sends back to the kernel, and that the records validate.
 */
import { describe, expect, it } from 'vitest';
import { AddressFlag } from '../../../src/netlink/codec/address.js';
import { AddressFamily } from '../../../src/netlink/codec/constants.js';
import { InterfaceFlag } from '../../../src/netlink/codec/link/message.js';
import type { Neighbour } from '../../../src/netlink/codec/neighbour.js';
import { NeighbourFlag } from '../../../src/netlink/codec/neighbour.js';
import type { RouteSpec } from '../../../src/netlink/codec/route.js';
import { RouteFlag, RoutePreference, RouteProtocol, RouteScope } from '../../../src/netlink/codec/route.js';
import { RouteMetric } from '../../../src/netlink/codec/route-attributes.js';
import type { ChangeBatch } from '../../../src/netlink/handle.js';
import { queueChange } from '../../../src/network/plan/batch-send.js';
import { commandsOf } from '../../../src/network/plan/commands.js';
import { type PlanSnapshot, planAttach } from '../../../src/network/plan/plan-attach.js';
import { planDetach } from '../../../src/network/plan/plan-detach.js';
import { RouteNotRestorableError, reachableFirst } from '../../../src/network/plan/pod-link-routes.js';
import type { PlumbingStep } from '../../../src/network/plan/types.js';
import { plumbingStepSchema } from '../../../src/network/state/network-content-schema.js';
import { address, link, route } from './fixtures.js';

const SPARE = '0a:00:00:00:00:01';
const LINKDOWN = 0x10;
const DEAD = 0x1;

const eth0 = link();
const eth1 = link({ index: 3, name: 'eth1', address: '02:42:ac:11:00:03' });

function proxy(destination: string, index = 2): Neighbour {
  return {
    index,
    family: destination.includes(':') ? AddressFamily.INET6 : AddressFamily.INET,
    destination,
    state: 0,
    flags: NeighbourFlag.PROXY,
    type: 1,
  };
}

const snapshot: PlanSnapshot = {
  links: [
    link({ index: 1, name: 'lo', kind: undefined, flags: InterfaceFlag.LOOPBACK | InterfaceFlag.UP }),
    eth0,
    eth1,
  ],
  addresses: [address('10.88.0.2', 16), address('10.89.0.2', 16, { index: 3 })],
  routes: [
    route({
      destination: '10.50.0.0',
      destinationLength: 16,
      gateway: '10.88.0.1',
      mtu: 1400,
      metrics: {
        [RouteMetric.LOCK]: (1 << RouteMetric.MTU) | (1 << RouteMetric.RTO_MIN),
        [RouteMetric.MTU]: 1400,
        [RouteMetric.RTT]: 300,
        [RouteMetric.ADVMSS]: 1300,
        [RouteMetric.FEATURES]: 1,
        [RouteMetric.RTO_MIN]: 50,
        [RouteMetric.CC_ALGO]: 'cubic',
      },
      realm: (3 << 16) | 7,
    }),
    // All hops on eth0: it is eth0's.
    route({
      destination: '10.52.0.0',
      destinationLength: 16,
      outputIndex: undefined,
      nextHops: [
        { gateway: '10.88.0.1', outputIndex: 2, weight: 1, flags: LINKDOWN, realm: 4 },
        { gateway: '10.88.0.5', outputIndex: 2, weight: 2, flags: RouteFlag.ONLINK },
      ],
    }),
    // Hops on eth0 and eth1: the lower index (eth0) saves it, with eth1's hop by name and index.
    route({
      destination: '10.53.0.0',
      destinationLength: 16,
      outputIndex: undefined,
      nextHops: [
        { gateway: '10.89.0.1', outputIndex: 3, weight: 3, flags: DEAD | LINKDOWN },
        { gateway: '10.88.0.1', outputIndex: 2, weight: 1, flags: 0 },
      ],
    }),
    route({
      family: AddressFamily.INET6,
      outputIndex: undefined,
      priority: 1024,
      nextHops: [
        { gateway: 'fd00::1', outputIndex: 2, weight: 1, flags: 0 },
        { gateway: 'fd00::6', outputIndex: 2, weight: 1, flags: 0 },
      ],
    }),
    // The kernel's own, and another link's: not eth0's to take.
    route({
      destination: '10.88.0.0',
      destinationLength: 16,
      protocol: RouteProtocol.KERNEL,
    }),
    route({ destination: '10.54.0.0', destinationLength: 16, gateway: '10.89.0.1', outputIndex: 3 }),
  ],
  neighbours: [],
  proxyNeighbours: [proxy('10.88.0.77'), proxy('fd00::77'), proxy('10.89.0.77', 3)],
  qdiscs: [],
};

const plan = planAttach(
  snapshot,
  { queues: 1 },
  { model: 'macvtap', source: eth0, tapName: 'tap0_kata', spareHardwareAddress: SPARE },
);
const records = plan.steps.flatMap((step) => (step.record ? [step.record] : []));
const routeRecords = records.filter((record) => record.step === 'remove-routes');

describe('planAttach: macvtap routes and proxy neighbours', () => {
  it('removes the pod link proxy neighbours and its routes, metrics, realms and next hops included', () => {
    expect(
      commandsOf(plan).filter((command) => !command.startsWith('ip link') && !command.startsWith('ip address')),
    ).toEqual([
      'ip neigh del proxy 10.88.0.77 dev eth0',
      'ip neigh del proxy fd00::77 dev eth0',
      'ip route del 10.50.0.0/16 via 10.88.0.1 dev eth0 table 254 proto 3 scope 0 mtu lock 1400 rtt 300 advmss 1300 features ecn rto_min 50 congctl cubic realms 3/7',
      'ip route del 10.52.0.0/16 table 254 proto 3 scope 0 nexthop via 10.88.0.1 dev eth0 weight 1 realms 4 nexthop via 10.88.0.5 dev eth0 weight 2 onlink',
      'ip route del 10.53.0.0/16 table 254 proto 3 scope 0 nexthop via 10.89.0.1 dev eth1 weight 3 nexthop via 10.88.0.1 dev eth0 weight 1',
      'ip -6 route del default table 254 proto 3 scope 0 metric 1024 nexthop via fd00::1 dev eth0 weight 1 nexthop via fd00::6 dev eth0 weight 1',
    ]);
  });

  it('records hops on the pod link without a link, hops on other links by name and index, and only request flags', () => {
    expect(
      routeRecords.map((record) => (record.step === 'remove-routes' ? record.routes[0]?.nextHops : record.step)),
    ).toEqual([
      undefined,
      [
        { gateway: '10.88.0.1', weight: 1, flags: 0, realm: 4 },
        { gateway: '10.88.0.5', weight: 2, flags: RouteFlag.ONLINK },
      ],
      [
        { gateway: '10.89.0.1', weight: 3, flags: 0, link: { name: 'eth1', index: 3 } },
        { gateway: '10.88.0.1', weight: 1, flags: 0 },
      ],
      [
        { gateway: 'fd00::1', weight: 1, flags: 0 },
        { gateway: 'fd00::6', weight: 1, flags: 0 },
      ],
    ]);
    expect(routeRecords[0]).toEqual({
      step: 'remove-routes',
      link: 'eth0',
      index: 2,
      routes: [
        {
          family: AddressFamily.INET,
          destination: '10.50.0.0',
          destinationLength: 16,
          gateway: '10.88.0.1',
          table: 254,
          protocol: RouteProtocol.BOOT,
          scope: 0,
          type: 1,
          flags: 0,
          // The MTU stays where records always kept it; the others go by RTAX_* number.
          mtu: 1400,
          metrics: {
            [RouteMetric.LOCK]: (1 << RouteMetric.MTU) | (1 << RouteMetric.RTO_MIN),
            [RouteMetric.RTT]: 300,
            [RouteMetric.ADVMSS]: 1300,
            [RouteMetric.FEATURES]: 1,
            [RouteMetric.RTO_MIN]: 50,
            [RouteMetric.CC_ALGO]: 'cubic',
          },
          realm: (3 << 16) | 7,
        },
      ],
    });
  });

  it("leaves a multipath route to the link with its lowest hop index: eth1's plan does not take eth0's", () => {
    const eth1Plan = planAttach(
      snapshot,
      { queues: 1 },
      { model: 'macvtap', source: eth1, tapName: 'tap1_kata', spareHardwareAddress: SPARE },
    );
    expect(commandsOf(eth1Plan).filter((command) => command.includes('route') || command.includes('neigh'))).toEqual([
      'ip neigh del proxy 10.89.0.77 dev eth1',
      'ip route del 10.54.0.0/16 via 10.89.0.1 dev eth1 table 254 proto 3 scope 0',
    ]);
  });

  it('validates as state, through JSON', () => {
    for (const record of JSON.parse(JSON.stringify(records)) as unknown[]) {
      expect(plumbingStepSchema.safeParse(record).success).toBe(true);
    }
    const bad = { step: 'remove-routes', link: 'eth0', routes: [{ metrics: { lock: 1 } }] };
    expect(plumbingStepSchema.safeParse(bad).success).toBe(false);
    const badHop = { step: 'remove-routes', link: 'eth0', routes: [{ nextHops: [{ weight: 0 }] }] };
    expect(plumbingStepSchema.safeParse(badHop).success).toBe(false);
    // Records from before: an MTU only, and no next hops.
    const old = { step: 'remove-routes', link: 'eth0', routes: [{ gateway: '10.88.0.1', mtu: 1400 }] };
    expect(plumbingStepSchema.safeParse(old).success).toBe(true);
  });
});

describe('planDetach: routes and proxy neighbours back', () => {
  const persisted = JSON.parse(JSON.stringify(records)) as PlumbingStep[];
  const sent = (links = [eth0, eth1]) => {
    const routes: RouteSpec[] = [];
    const batch = { addRoute: (spec: RouteSpec) => routes.push(spec) } as unknown as ChangeBatch;
    const detach = planDetach(
      persisted.filter((record) => record.step === 'remove-routes'),
      { links },
    );
    for (const step of detach.steps) queueChange(batch, step.change, (ref) => ref.index!);
    return { routes, alreadyGone: detach.alreadyGone };
  };

  it('sends each route as it was: metrics with the MTU, realm, hops on their links and no route-level link', () => {
    const { routes } = sent();
    expect(routes.map((spec) => spec.destination)).toEqual([undefined, '10.53.0.0', '10.52.0.0', '10.50.0.0']);
    expect(routes[3]).toMatchObject({
      outputIndex: 2,
      mtu: 1400,
      realm: (3 << 16) | 7,
      metrics: { [RouteMetric.CC_ALGO]: 'cubic', [RouteMetric.ADVMSS]: 1300 },
    });
    expect(routes[1]?.outputIndex).toBeUndefined();
    expect(routes[1]?.nextHops).toEqual([
      { gateway: '10.89.0.1', weight: 3, flags: 0, outputIndex: 3 },
      { gateway: '10.88.0.1', weight: 1, flags: 0, outputIndex: 2 },
    ]);
    expect(routes[0]?.family).toBe(AddressFamily.INET6);
  });

  it('prints them as iproute2 takes them', () => {
    const detach = planDetach(persisted, { links: [eth0, eth1] });
    const commands = commandsOf(detach);
    expect(commands).toContain(
      'ip route add 10.53.0.0/16 table 254 proto 3 scope 0 nexthop via 10.89.0.1 dev eth1 weight 3 nexthop via 10.88.0.1 dev eth0 weight 1',
    );
    expect(commands).toContain('ip neigh replace proxy fd00::77 dev eth0');
    expect(commands).toContain('ip neigh replace proxy 10.88.0.77 dev eth0');
  });

  it('puts back no route whose other next-hop link is gone or is another link now', () => {
    for (const links of [[eth0], [eth0, { ...eth1, index: 9 }]]) {
      const { routes, alreadyGone } = sent(links);
      expect(routes.map((spec) => spec.destination)).toEqual([undefined, '10.52.0.0', '10.50.0.0']);
      expect(alreadyGone).toHaveLength(1);
    }
  });
});

describe('macvtap routes with a gateway of the other family, a preference, a lifetime or a nexthop object', () => {
  const SCANNED_AT = 1_800_000_000_000;
  const routes = [
    route({ destination: '10.60.0.0', destinationLength: 16, gateway: 'fd00::1' }),
    route({
      family: AddressFamily.INET6,
      destination: 'fd60::',
      destinationLength: 48,
      gateway: 'fd00::1',
      preference: RoutePreference.HIGH,
    }),
    route({
      family: AddressFamily.INET6,
      destination: 'fd61::',
      destinationLength: 48,
      gateway: 'fd00::1',
      expires: 300,
    }),
    route({
      family: AddressFamily.INET6,
      destination: 'fd62::',
      destinationLength: 48,
      gateway: 'fd00::1',
      expires: 5,
    }),
    // Through a nexthop object: the kernel keeps it without the addresses, so it stays as it is.
    route({ destination: '10.61.0.0', destinationLength: 16, gateway: '10.88.0.1', nextHopId: 7 }),
  ];
  const lifetimePlan = planAttach(
    { ...snapshot, routes, proxyNeighbours: [] },
    { queues: 1 },
    { model: 'macvtap', source: eth0, tapName: 'tap0_kata', spareHardwareAddress: SPARE, now: SCANNED_AT },
  );
  const lifetimeRecords = lifetimePlan.steps.flatMap((step) => (step.record ? [step.record] : []));

  it('removes them as iproute2 would name them, and leaves the route through a nexthop object', () => {
    expect(commandsOf(lifetimePlan).filter((command) => command.includes(' route '))).toEqual([
      'ip route del 10.60.0.0/16 via inet6 fd00::1 dev eth0 table 254 proto 3 scope 0',
      'ip -6 route del fd60::/48 via fd00::1 dev eth0 table 254 proto 3 scope 0 pref high',
      'ip -6 route del fd61::/48 via fd00::1 dev eth0 table 254 proto 3 scope 0',
      'ip -6 route del fd62::/48 via fd00::1 dev eth0 table 254 proto 3 scope 0',
    ]);
  });

  it('records when each lifetime ends, and the records validate', () => {
    const recorded = lifetimeRecords.flatMap((record) => (record.step === 'remove-routes' ? record.routes : []));
    expect(recorded.map((entry) => [entry.destination, entry.preference, entry.expiresAt])).toEqual([
      ['10.60.0.0', undefined, undefined],
      ['fd60::', RoutePreference.HIGH, undefined],
      ['fd61::', undefined, SCANNED_AT + 300_000],
      ['fd62::', undefined, SCANNED_AT + 5_000],
    ]);
    for (const record of lifetimeRecords) expect(plumbingStepSchema.safeParse(record).success).toBe(true);
  });

  it('puts them back with what is left of each lifetime, and not a route whose lifetime has passed', () => {
    const detach = planDetach(lifetimeRecords, { links: snapshot.links, now: SCANNED_AT + 60_000 });
    const added = detach.steps.flatMap(({ change }) => (change.op === 'add-route' ? [change.route] : []));
    expect(added.map((entry) => [entry.destination, entry.gateway, entry.preference, entry.expires])).toEqual([
      ['fd61::', 'fd00::1', undefined, 240],
      ['fd60::', 'fd00::1', RoutePreference.HIGH, undefined],
      ['10.60.0.0', 'fd00::1', undefined, undefined],
    ]);
    expect(added.every((entry) => entry.expiresAt === undefined)).toBe(true);
    // fd62:: would be gone by now: its record is settled without a change.
    expect(detach.alreadyGone.filter((record) => record.step === 'remove-routes')).toHaveLength(1);
  });

  it('refuses a pod link with an encapsulated route, which it could not put back, before anything is changed', () => {
    const attempt = () =>
      planAttach(
        { ...snapshot, routes: [route({ destination: '10.62.0.0', destinationLength: 16, encapType: 1 })] },
        { queues: 1 },
        { model: 'macvtap', source: eth0, tapName: 'tap0_kata', spareHardwareAddress: SPARE },
      );
    expect(attempt).toThrow(RouteNotRestorableError);
    expect(attempt).toThrow(/route 10\.62\.0\.0\/16 on eth0 has an encapsulation/);
  });
});

describe('macvtap: pod link addresses with lifetimes (DHCP, SLAAC)', () => {
  const SCANNED_AT = 1_800_000_000_000;
  const lifetimePlan = planAttach(
    {
      ...snapshot,
      addresses: [
        address('10.88.0.2', 16),
        address('10.88.0.3', 16, { validLifetime: 500, preferredLifetime: 400 }),
        address('fd00::2', 64, { validLifetime: 600, preferredLifetime: 30 }),
        address('fd00::3', 64, { validLifetime: 10, preferredLifetime: 10 }),
      ],
      routes: [],
      proxyNeighbours: [],
    },
    { queues: 1 },
    { model: 'macvtap', source: eth0, tapName: 'tap0_kata', spareHardwareAddress: SPARE, now: SCANNED_AT },
  );
  const lifetimeRecords = lifetimePlan.steps.flatMap((step) => (step.record ? [step.record] : []));

  it('records when each lifetime ends, and the records validate', () => {
    const recorded = lifetimeRecords.flatMap((record) => (record.step === 'remove-addresses' ? record.addresses : []));
    expect(recorded.map((entry) => [entry.address, entry.validUntil, entry.preferredUntil])).toEqual([
      ['10.88.0.3', SCANNED_AT + 500_000, SCANNED_AT + 400_000],
      ['10.88.0.2', undefined, undefined],
      ['fd00::2', SCANNED_AT + 600_000, SCANNED_AT + 30_000],
      ['fd00::3', SCANNED_AT + 10_000, SCANNED_AT + 10_000],
    ]);
    for (const record of lifetimeRecords) expect(plumbingStepSchema.safeParse(record).success).toBe(true);
  });

  it('puts them back with what is left, deprecated once the preferred lifetime passed, not once the valid one did', () => {
    const detach = planDetach(lifetimeRecords, { links: snapshot.links, now: SCANNED_AT + 60_000 });
    const added = detach.steps.flatMap(({ change }) => (change.op === 'add-address' ? [change.address] : []));
    expect(added.map((entry) => [entry.address, entry.validLifetime, entry.preferredLifetime])).toEqual([
      ['fd00::2', 540, 0],
      ['10.88.0.2', undefined, undefined],
      ['10.88.0.3', 440, 340],
    ]);
    expect(added.every((entry) => entry.validUntil === undefined && entry.preferredUntil === undefined)).toBe(true);
    expect(commandsOf({ ...lifetimePlan, steps: detach.steps }).filter((line) => line.includes('10.88.0.3'))).toEqual([
      'ip address add 10.88.0.3/16 scope 0 valid_lft 440 preferred_lft 340 dev eth0',
    ]);
  });
});

describe('macvtap: IPv6 privacy addresses', () => {
  const privacyPlan = planAttach(
    {
      ...snapshot,
      addresses: [
        address('fd00::2', 64, { flags: 0x100 /* mngtmpaddr */ }),
        address('fd00::1234:5678', 64, { flags: AddressFlag.TEMPORARY }),
      ],
      routes: [],
      proxyNeighbours: [],
    },
    { queues: 1 },
    { model: 'macvtap', source: eth0, tapName: 'tap0_kata', spareHardwareAddress: SPARE },
  );

  it('removes them before their public address, with no record to put them back (the kernel makes new ones)', () => {
    expect(commandsOf(privacyPlan).filter((command) => command.startsWith('ip address'))).toEqual([
      'ip address del fd00::1234:5678/64 dev eth0',
      'ip address del fd00::2/64 dev eth0',
    ]);
    const recorded = privacyPlan.steps.flatMap((step) =>
      step.record?.step === 'remove-addresses' ? step.record.addresses.map((entry) => entry.address) : [],
    );
    expect(recorded).toEqual(['fd00::2']);
  });
});

describe('macvtap: what the address flush takes that the kernel does not make again', () => {
  const SCANNED_AT = 1_800_000_000_000;
  const flushPlan = planAttach(
    {
      ...snapshot,
      addresses: [
        address('10.88.0.2', 16),
        address('10.12.3.5', 32, { peer: '10.12.3.1' }),
        address('10.12.2.5', 24, { flags: AddressFlag.DEPRECATED }),
        address('fd00:12::5', 64, { flags: AddressFlag.DEPRECATED | AddressFlag.NODAD, preferredLifetime: 0 }),
      ],
      routes: [
        // The kernel's: prefix routes of the addresses (of the peer for the point-to-point one), local ones.
        route({ destination: '10.88.0.0', destinationLength: 16, protocol: RouteProtocol.KERNEL, scope: 253 }),
        route({ destination: '10.12.3.1', destinationLength: 32, protocol: RouteProtocol.KERNEL, scope: 253 }),
        route({ destination: '10.88.0.2', destinationLength: 32, table: 255, type: 2, protocol: RouteProtocol.KERNEL }),
        // Not the kernel's: an AnyIP local route, a proto kernel route to no address's prefix, a TOS route.
        route({ destination: '10.99.0.0', destinationLength: 16, table: 255, type: 2, scope: 254 }),
        route({
          destination: '10.13.9.0',
          destinationLength: 24,
          protocol: RouteProtocol.KERNEL,
          scope: 253,
          preferredSource: '10.88.0.2',
        }),
        route({ destination: '10.98.0.0', destinationLength: 16, gateway: '10.88.0.1', tos: 0x10 }),
      ],
      neighbours: [
        {
          index: 2,
          family: 2,
          destination: '10.88.0.30',
          linkLayerAddress: '02:00:00:00:00:30',
          state: 0x40,
          flags: 0,
          type: 1,
        },
        // The kernel's own NOARP entries (a group MAC): made again when needed.
        {
          index: 2,
          family: 10,
          destination: 'ff02::1',
          linkLayerAddress: '33:33:00:00:00:01',
          state: 0x40,
          flags: 0,
          type: 1,
        },
      ],
      proxyNeighbours: [],
    },
    { queues: 1 },
    { model: 'macvtap', source: eth0, tapName: 'tap0_kata', spareHardwareAddress: SPARE, now: SCANNED_AT },
  );
  const commands = commandsOf(flushPlan);

  it('removes (and records) the AnyIP route, a proto kernel route of no address, a TOS route; not the kernel own', () => {
    // The route through a gateway first: undone in reverse, it comes back after the others.
    expect(commands.filter((line) => line.startsWith('ip route del'))).toEqual([
      'ip route del 10.98.0.0/16 tos 0x10 via 10.88.0.1 dev eth0 table 254 proto 3 scope 0',
      'ip route del 10.99.0.0/16 dev eth0 table 255 proto 3 scope 254',
      'ip route del 10.13.9.0/24 dev eth0 src 10.88.0.2 table 254 proto 2 scope 253',
    ]);
  });

  it('removes a point-to-point address by its peer, and static noarp neighbours but not the kernel ones', () => {
    expect(commands).toContain('ip address del 10.12.3.5/32 peer 10.12.3.1 dev eth0');
    expect(commands.filter((line) => line.startsWith('ip neigh del'))).toEqual(['ip neigh del 10.88.0.30 dev eth0']);
    const deletes: Array<{ peer?: string; tos?: number }> = [];
    const batch = {
      deleteAddress: (spec: { peer?: string }) => deletes.push(spec),
      deleteRoute: (spec: { tos?: number }) => deletes.push(spec),
      deleteNeighbour: () => undefined,
    } as unknown as ChangeBatch;
    for (const { change } of flushPlan.steps) {
      if (change.op === 'delete-address' || change.op === 'delete-route') queueChange(batch, change, () => 2);
    }
    expect(deletes.find((spec) => spec.peer)?.peer).toBe('10.12.3.1');
    expect(deletes.find((spec) => spec.tos)?.tos).toBe(0x10);
  });

  it('puts back the noarp neighbour as noarp, the TOS route with its TOS, deprecated addresses deprecated', () => {
    const records = flushPlan.steps.flatMap((step) => (step.record ? [step.record] : []));
    for (const record of records) expect(plumbingStepSchema.safeParse(record).success).toBe(true);
    const detach = planDetach(JSON.parse(JSON.stringify(records)) as PlumbingStep[], {
      links: snapshot.links,
      now: SCANNED_AT + 60_000,
    });
    const back = commandsOf(detach);
    console.log(back.join('\n'));
    expect(back).toContain('ip neigh replace 10.88.0.30 lladdr 02:00:00:00:00:30 nud noarp dev eth0');
    expect(back).toContain('ip route add 10.98.0.0/16 tos 0x10 via 10.88.0.1 dev eth0 table 254 proto 3 scope 0');
    expect(back).toContain('ip address add 10.12.2.5/24 scope 0 preferred_lft 0 dev eth0');
    expect(back).toContain('ip address add fd00:12::5/64 scope 0 preferred_lft 0 nodad dev eth0');
    expect(back).toContain('ip address add 10.12.3.5/32 peer 10.12.3.1 scope 0 dev eth0');
  });
});

describe('detach of a two-link pod: routes through gateways first among the route steps of the same link only', () => {
  // Detach puts eth1 back before eth0. eth1: a default through a gateway; eth0: a route with a
  // source address, no gateway. Sorted all together (before a036314), eth0's route took eth1's
  // earlier slot, ahead of eth0's own address: "Invalid prefsrc address", then ENETUNREACH.
  const snapshotOf = (addresses: PlanSnapshot['addresses'], routes: PlanSnapshot['routes']): PlanSnapshot => ({
    links: [eth0, eth1],
    addresses,
    routes,
    neighbours: [],
    qdiscs: [],
  });
  const plans = [
    planAttach(
      snapshotOf(
        [address('10.1.0.2', 24)],
        [
          route({
            destination: '10.9.0.0',
            destinationLength: 16,
            scope: RouteScope.LINK,
            preferredSource: '10.1.0.2',
          }),
        ],
      ),
      { queues: 1 },
      { model: 'macvtap', source: eth0, tapName: 'tap0_kata', spareHardwareAddress: SPARE },
    ),
    planAttach(
      snapshotOf([address('10.2.0.2', 24, { index: 3 })], [route({ gateway: '10.2.0.1', outputIndex: 3 })]),
      { queues: 1 },
      { model: 'macvtap', source: eth1, tapName: 'tap1_kata', spareHardwareAddress: '0a:00:00:00:00:02' },
    ),
  ];
  const records = plans.flatMap((plan) => plan.steps.flatMap((step) => (step.record ? [step.record] : [])));

  it("puts no route back ahead of its own link's addresses", () => {
    const detach = planDetach(JSON.parse(JSON.stringify(records)) as PlumbingStep[], { links: [eth0, eth1] });
    const back = commandsOf(detach);
    const at = (pattern: RegExp) => back.findIndex((line) => pattern.test(line));
    const sourceRoute = at(/^ip route add 10\.9\.0\.0\/16 dev eth0 src 10\.1\.0\.2 /);
    const defaultRoute = at(/^ip route add default via 10\.2\.0\.1 .*dev eth1/);
    expect(sourceRoute, back.join('\n')).toBeGreaterThan(-1);
    expect(defaultRoute, back.join('\n')).toBeGreaterThan(-1);
    expect(sourceRoute, back.join('\n')).toBeGreaterThan(at(/^ip address add 10\.1\.0\.2\/24 .*dev eth0/));
    expect(defaultRoute, back.join('\n')).toBeGreaterThan(at(/^ip address add 10\.2\.0\.2\/24 .*dev eth1/));
  });
});

describe('macvtap: a gateway reached only through a link-scope route (Calico)', () => {
  // In the kernel's order: the default before 169.254.1.1, and 172.16.9.1 before 172.20.0.0/16.
  const calico: PlanSnapshot = {
    links: [eth0],
    addresses: [address('10.77.1.2', 32)],
    routes: [
      route({ gateway: '169.254.1.1' }),
      route({ destination: '169.254.1.1', destinationLength: 32, scope: RouteScope.LINK }),
      route({ destination: '172.16.9.1', destinationLength: 32, scope: RouteScope.LINK }),
      route({ destination: '172.20.0.0', destinationLength: 16, gateway: '172.16.9.1' }),
      // onlink: the kernel does not look for its gateway, so it needs no route first.
      route({ destination: '172.21.0.0', destinationLength: 16, gateway: '172.99.0.1', flags: RouteFlag.ONLINK }),
    ],
    neighbours: [],
    qdiscs: [],
  };
  const calicoPlan = planAttach(
    calico,
    { queues: 1 },
    { model: 'macvtap', source: eth0, tapName: 'tap0_kata', spareHardwareAddress: SPARE },
  );
  const destinations = (routes: ReadonlyArray<{ destination?: string }>) =>
    routes.map((entry) => entry.destination ?? 'default');

  it('removes the routes through a gateway first, so the undo puts the routes to the gateways back first', () => {
    const removed = calicoPlan.steps.flatMap((step) => (step.change.op === 'delete-route' ? [step.change.route] : []));
    expect(destinations(removed)).toEqual(['default', '172.20.0.0', '169.254.1.1', '172.16.9.1', '172.21.0.0']);
  });

  it('detach puts the routes to the gateways back first, also from a record in the kernel order', () => {
    const recorded = calicoPlan.steps.flatMap((step) => (step.record?.step === 'remove-routes' ? [step.record] : []));
    // As an attach before the fix recorded them: in the order the kernel listed them.
    const kernelIndex = (destination: string | undefined) =>
      calico.routes.findIndex((listed) => listed.destination === destination);
    const kernelOrder = [...recorded].sort(
      (a, b) => kernelIndex(a.routes[0]?.destination) - kernelIndex(b.routes[0]?.destination),
    );
    expect(kernelOrder).not.toEqual(recorded);
    for (const records of [recorded, kernelOrder]) {
      const detach = planDetach(records, { links: [eth0] });
      const added = detach.steps.flatMap((step) => (step.change.op === 'add-route' ? [step.change.route] : []));
      expect(added).toHaveLength(5);
      const at = (destination: string) => destinations(added).indexOf(destination);
      expect(at('169.254.1.1')).toBeLessThan(at('default'));
      expect(at('172.16.9.1')).toBeLessThan(at('172.20.0.0'));
    }
  });

  it('orders routes without a checked gateway (none, or onlink) first, stable otherwise', () => {
    const ordered = reachableFirst(
      [{ gateway: '169.254.1.1' }, {}, { gateway: '10.0.0.1', flags: RouteFlag.ONLINK }, { gateway: 'fe80::1' }],
      (entry) => entry,
    );
    expect(ordered).toEqual([
      {},
      { gateway: '10.0.0.1', flags: RouteFlag.ONLINK },
      { gateway: '169.254.1.1' },
      { gateway: 'fe80::1' },
    ]);
  });
});
