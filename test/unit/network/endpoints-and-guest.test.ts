import { describe, expect, it } from 'vitest';
import type { VcnetError } from '../../../src/errors.js';
import { decodeAddress } from '../../../src/netlink/codec/address.js';
import { AddressFamily } from '../../../src/netlink/codec/constants.js';
import { InterfaceFlag } from '../../../src/netlink/codec/link/message.js';
import { decodeLink } from '../../../src/netlink/codec/link.js';
import { decodeNeighbour, NeighbourState } from '../../../src/netlink/codec/neighbour.js';
import type { RawMessage } from '../../../src/netlink/codec/reader.js';
import { decodeRoute, RouteFlag, RouteProtocol, RouteScope, RouteType } from '../../../src/netlink/codec/route.js';
import type { NamespaceSnapshot } from '../../../src/netlink/handle.js';
import { classifyInterface, createEndpoint } from '../../../src/network/endpoint/create-endpoint.js';
import {
  chooseGuestRoutes,
  generateGuestNetwork,
  guestRoute,
  routesNotForGuest,
  routesNotForGuestNotice,
} from '../../../src/network/guest.js';
import { endpointFromState } from '../../../src/network/network.js';
import type { NetworkInfo } from '../../../src/network/network-info.js';
import {
  classifyScan,
  interfacesOf,
  KERNEL_FALLBACK_TUNNEL_REASON,
  type SkippedInterface,
  selectEndpointInterfaces,
  skippedNotice,
} from '../../../src/network/scan.js';
import { recordedRoutesAfter } from '../../../src/sandbox/guest-push.js';
import fallbackTunnels from '../../fixtures/netlink/fallback-tunnels.json' with { type: 'json' };
import { address, info, link, permanent, route } from './fixtures.js';

describe('endpoint choice (Kata createEndpoint)', () => {
  it('chooses by link kind', () => {
    expect(classifyInterface(info())).toBe('virtual');
    expect(classifyInterface(info({ link: link({ kind: 'macvlan' }) }))).toBe('macvlan');
    expect(classifyInterface(info({ link: link({ kind: 'macvtap' }) }))).toBe('macvtap');
    expect(classifyInterface(info({ link: link({ kind: 'ipvlan' }) }))).toBe('ipvlan');
    expect(classifyInterface(info({ link: link({ kind: 'tun', tun: { type: 'tap' } }) }))).toBe('tuntap');
  });

  it('takes a NIC on a PCI device as physical, before its kind', () => {
    expect(
      classifyInterface(info({ link: link({ kind: undefined, parentBus: 'pci', parentDevice: '0000:00:03.0' }) })),
    ).toBe('physical');
    const endpoint = createEndpoint(
      info({ link: link({ kind: undefined, parentBus: 'pci', parentDevice: '0000:ff:1f.7' }) }),
      { index: 0, model: 'tcfilter' },
    );
    expect(endpoint.type).toBe('physical');
    expect(endpoint.save().details).toMatchObject({ pci: { address: '0000:ff:1f.7' } });
  });

  it('refuses tun mode and undetermined mode with their meaning', () => {
    expect(() => classifyInterface(info({ link: link({ name: 'tun0', kind: 'tun', tun: { type: 'tun' } }) }))).toThrow(
      /tun0.*tun networking device not yet supported/,
    );
    expect(() => classifyInterface(info({ link: link({ name: 'tapx', kind: 'tun' }) }))).toThrow(
      /mode of tapx not determined/,
    );
  });

  it('names the interface and its kind when unsupported (Kata printed an empty string)', () => {
    expect(() => classifyInterface(info({ link: link({ name: 'vx0', kind: 'vxlan' }) }))).toThrow(
      'unsupported network interface vx0: kind vxlan',
    );
  });

  it('tells how to get past an unsupported interface: without an address it is skipped', () => {
    let refusal: unknown;
    try {
      classifyInterface(info({ link: link({ name: 'vx0', kind: 'vxlan' }) }));
    } catch (error) {
      refusal = error;
    }
    expect(refusal).toMatchObject({ code: 'VCNET_UNSUPPORTED_INTERFACE' });
    expect((refusal as VcnetError).hint).toContain('veth, macvlan, macvtap, ipvlan');
    expect((refusal as VcnetError).hint).toContain(
      "a link without an address is skipped, so remove vx0's addresses or move it out of the pod namespace",
    );
  });

  it('connects a link without a kind as a veth (Kata: netlink "device" → veth endpoint), but never lo', () => {
    const plainDevice = info({
      link: link({ name: 'enp0', kind: undefined, parentBus: 'virtio', parentDevice: 'virtio3' }),
    });
    expect(classifyInterface(plainDevice)).toBe('virtual');
    const endpoint = createEndpoint(plainDevice, { index: 2, model: 'tcfilter' });
    expect(endpoint.type).toBe('virtual');
    expect(endpoint.pair?.tap.name).toBe('tap2_kata');
    expect(() => classifyInterface(info({ link: link({ name: 'lo', kind: undefined, type: 772 }) }))).toThrow(
      /loopback/,
    );
  });

  it('forces the tcfilter pair for ipvlan, whatever the model', () => {
    const endpoint = createEndpoint(info({ link: link({ kind: 'ipvlan' }) }), { index: 0, model: 'macvtap' });
    expect(endpoint.pair?.model).toBe('tcfilter');
  });

  it('saves and restores every endpoint type through its state', () => {
    const kinds = ['veth', 'macvlan', 'macvtap', 'ipvlan'] as const;
    for (const [index, kind] of kinds.entries()) {
      const endpoint = createEndpoint(info({ link: link({ kind }) }), { index, model: 'tcfilter' });
      const restored = endpointFromState(JSON.parse(JSON.stringify(endpoint.save())));
      expect(restored.type).toBe(endpoint.type);
      expect(restored.name).toBe(endpoint.name);
      expect(restored.pair).toEqual(endpoint.pair);
    }
    expect(() =>
      endpointFromState({ ...createEndpoint(info(), { index: 0, model: 'tcfilter' }).save(), version: 9 as 1 }),
    ).toThrow(/version 9/);
  });
});

describe('guest structures (Kata generateVCNetworkStructures)', () => {
  const endpointOf = (overrides: Parameters<typeof info>[0], index = 0) =>
    createEndpoint(info(overrides), { index, model: 'tcfilter' });

  it('maps v4 and v6 addresses with family by address and mask as prefix length, skipping loopback', () => {
    const network = generateGuestNetwork([
      endpointOf({
        addresses: [
          address('10.0.0.2', 24),
          address('fd00::2', 64),
          address('fe80::1', 64, { scope: RouteScope.LINK }),
          address('127.0.0.1', 8),
        ],
      }),
    ]);
    expect(network.interfaces[0]).toEqual({
      device: 'eth0',
      name: 'eth0',
      IPAddresses: [
        { family: 0, address: '10.0.0.2', mask: '24' },
        { family: 1, address: 'fd00::2', mask: '64' },
        { family: 1, address: 'fe80::1', mask: '64' },
      ],
      mtu: 1500,
      hwAddr: '02:42:ac:11:00:02',
      devicePath: '',
      type: 'virtual',
      raw_flags: 0,
    });
  });

  it('leaves out a route whose gateway is of the other family, which the agent cannot carry', () => {
    const network = generateGuestNetwork([
      endpointOf({
        routes: [
          route({ destination: '10.60.0.0', destinationLength: 16, gateway: 'fd00::1' }),
          route({ destination: '10.61.0.0', destinationLength: 16, gateway: '10.0.0.1' }),
          route({ family: AddressFamily.INET6, destination: 'fd61::', destinationLength: 48, gateway: 'fd00::1' }),
        ],
      }),
    ]);
    expect(network.routes.map((entry) => `${entry.dest} via ${entry.gateway}`)).toEqual([
      '10.61.0.0/16 via 10.0.0.1',
      'fd61::/48 via fd00::1',
    ]);
  });

  it('carries NOARP from the link flags and the PCI path once plugged', () => {
    const endpoint = endpointOf({ link: link({ flags: InterfaceFlag.UP | InterfaceFlag.NOARP }) });
    endpoint.pciPath = '02/00';
    const [guest] = generateGuestNetwork([endpoint]).interfaces;
    expect(guest?.raw_flags).toBe(InterfaceFlag.NOARP);
    expect(guest?.devicePath).toBe('02/00');
  });

  it('keeps default, on-link, v6 and MTU routes; drops the kernel-made ones', () => {
    const network = generateGuestNetwork([
      endpointOf({
        routes: [
          route({ gateway: '10.0.0.1' }),
          route({ destination: '10.1.0.0', destinationLength: 16, gateway: '10.0.0.1', mtu: 1400 }),
          route({
            destination: '10.2.0.0',
            destinationLength: 16,
            scope: RouteScope.LINK,
            preferredSource: '10.0.0.2',
          }),
          route({
            destination: '10.0.0.0',
            destinationLength: 24,
            protocol: RouteProtocol.KERNEL,
            scope: RouteScope.LINK,
          }),
          route({ family: AddressFamily.INET6, gateway: 'fd00::1' }),
        ],
      }),
    ]);
    expect(network.routes).toEqual([
      { dest: '0.0.0.0/0', gateway: '10.0.0.1', device: 'eth0', source: '', scope: 0, family: 0, flags: 0, mtu: 0 },
      {
        dest: '10.1.0.0/16',
        gateway: '10.0.0.1',
        device: 'eth0',
        source: '',
        scope: 0,
        family: 0,
        flags: 0,
        mtu: 1400,
      },
      { dest: '10.2.0.0/16', gateway: '', device: 'eth0', source: '10.0.0.2', scope: 253, family: 0, flags: 0, mtu: 0 },
      { dest: '::/0', gateway: 'fd00::1', device: 'eth0', source: '', scope: 0, family: 1, flags: 0, mtu: 0 },
    ]);
  });

  it('keeps permanent neighbours with a link-layer address, v4 and v6 (Kata skips those without one)', () => {
    const network = generateGuestNetwork([
      endpointOf({
        neighbours: [
          {
            index: 2,
            family: AddressFamily.INET,
            destination: '10.0.0.9',
            linkLayerAddress: '02:00:00:00:00:09',
            state: permanent,
            flags: 0,
            type: 1,
          },
          {
            index: 2,
            family: AddressFamily.INET6,
            destination: 'fd00::9',
            linkLayerAddress: '02:00:00:00:00:0a',
            state: permanent,
            flags: 0,
            type: 1,
          },
          { index: 2, family: AddressFamily.INET6, destination: 'fd00::7', state: permanent, flags: 0, type: 1 },
          {
            index: 2,
            family: AddressFamily.INET,
            destination: '10.0.0.8',
            linkLayerAddress: '02:00:00:00:00:08',
            state: NeighbourState.REACHABLE,
            flags: 0,
            type: 1,
          },
        ],
      }),
    ]);
    expect(network.neighbours).toEqual([
      {
        toIPAddress: { family: 0, address: '10.0.0.9', mask: '' },
        device: 'eth0',
        lladdr: '02:00:00:00:00:09',
        state: permanent,
        flags: 0,
      },
      {
        toIPAddress: { family: 1, address: 'fd00::9', mask: '' },
        device: 'eth0',
        lladdr: '02:00:00:00:00:0a',
        state: permanent,
        flags: 0,
      },
    ]);
  });

  it('names routes and neighbours after the guest-facing endpoint name', () => {
    const endpoint = createEndpoint(info({ routes: [route({ gateway: '10.0.0.1' })] }), {
      index: 0,
      model: 'tcfilter',
      guestName: 'net7',
    });
    expect(generateGuestNetwork([endpoint]).routes[0]?.device).toBe('net7');
  });
});

describe('guest route flags', () => {
  it('sends only ONLINK, not the LINKDOWN or DEAD the kernel reports while carrier is off (a route add refuses them)', () => {
    const RTNH_F_DEAD = 0x1;
    const RTNH_F_LINKDOWN = 0x10;
    const down = route({ gateway: '10.88.0.1', flags: RTNH_F_LINKDOWN | RTNH_F_DEAD });
    expect(guestRoute(down, 'eth0').flags).toBe(0);
    const onlink = route({ gateway: '10.88.0.1', flags: RTNH_F_LINKDOWN | RouteFlag.ONLINK });
    expect(guestRoute(onlink, 'eth0').flags).toBe(RouteFlag.ONLINK);
  });
});

describe('guest routes: the one the pod prefers per destination (better than Kata)', () => {
  const eth0 = (routes: Parameters<typeof route>[0][]) =>
    createEndpoint(info({ routes: routes.map((entry) => route(entry)) }), { index: 0, model: 'tcfilter' });
  const eth1 = (routes: Parameters<typeof route>[0][]) =>
    createEndpoint(
      info({
        link: link({ index: 3, name: 'eth1' }),
        routes: routes.map((entry) => route({ outputIndex: 3, ...entry })),
      }),
      { index: 1, model: 'tcfilter' },
    );
  const text = (routes: Array<{ dest: string; gateway: string; device: string }>) =>
    routes.map((entry) => `${entry.dest} via ${entry.gateway} dev ${entry.device}`);

  it('keeps the lowest metric per destination, across links, and says which were dropped for which', () => {
    const endpoints = [
      eth0([
        { destination: '10.21.0.0', destinationLength: 16, gateway: '10.0.0.3', priority: 5 },
        { destination: '10.21.0.0', destinationLength: 16, gateway: '10.0.0.1', priority: 6 },
        { gateway: '10.0.0.1', priority: 200 },
      ]),
      eth1([{ gateway: '10.1.0.1', priority: 100 }]),
    ];
    const { routes, dropped } = chooseGuestRoutes(endpoints);
    expect(text(routes)).toEqual(['10.21.0.0/16 via 10.0.0.3 dev eth0', '0.0.0.0/0 via 10.1.0.1 dev eth1']);
    expect(dropped.map((entry) => [entry.route.gateway, entry.metric, entry.kept.gateway, entry.keptMetric])).toEqual([
      ['10.0.0.1', 6, '10.0.0.3', 5],
      ['10.0.0.1', 200, '10.1.0.1', 100],
    ]);
    expect(generateGuestNetwork(endpoints).routes).toEqual(routes);
  });

  it('keeps the first of equal metrics, and tells the families apart', () => {
    const { routes } = chooseGuestRoutes([
      eth0([
        { gateway: '10.0.0.1' },
        { gateway: '10.0.0.2' },
        { family: AddressFamily.INET6, gateway: 'fd00::1', priority: 1024 },
      ]),
    ]);
    expect(text(routes)).toEqual(['0.0.0.0/0 via 10.0.0.1 dev eth0', '::/0 via fd00::1 dev eth0']);
  });

  it('a route set update-routes gave keeps its route to a destination an added NIC also routes', () => {
    const recorded = [
      {
        dest: '0.0.0.0/0',
        gateway: '10.0.0.1',
        device: 'eth0',
        source: '',
        scope: 0,
        family: 0 as const,
        flags: 0,
        mtu: 0,
      },
    ];
    const after = recordedRoutesAfter(recorded, {
      added: [eth1([{ gateway: '10.1.0.1' }, { destination: '10.9.0.0', destinationLength: 16, gateway: '10.1.0.1' }])],
    });
    expect(text(after ?? [])).toEqual(['0.0.0.0/0 via 10.0.0.1 dev eth0', '10.9.0.0/16 via 10.1.0.1 dev eth1']);
  });

  it('names the pod routes the guest cannot get, grouped by why, in one notice', () => {
    const skipped = routesNotForGuest(
      [
        route({ destination: '10.14.9.0', destinationLength: 24, table: 100 }),
        route({
          outputIndex: undefined,
          nextHops: [
            { gateway: '10.0.0.1', outputIndex: 2, weight: 1, flags: 0 },
            { gateway: '10.1.0.1', outputIndex: 3, weight: 1, flags: 0 },
          ],
        }),
        route({ destination: '10.16.0.0', destinationLength: 16, outputIndex: undefined, type: RouteType.BLACKHOLE }),
        route({ destination: '10.98.0.0', destinationLength: 16, gateway: '10.0.0.1', tos: 0x10 }),
        route({ destination: '10.17.0.0', destinationLength: 16, table: 100, outputIndex: 9 }),
        route({ destination: '10.0.0.0', destinationLength: 24, protocol: RouteProtocol.KERNEL, table: 100 }),
      ],
      new Set([2]),
    );
    expect(routesNotForGuestNotice(skipped)).toBe(
      'the guest does not get 4 routes of the pod (as in Kata: the agent sets main-table routes with one next hop, no type, no TOS): routes in table 100 (policy routing): 10.14.9.0/24; multipath routes: default (2 next hops); blackhole routes: 10.16.0.0/16; routes with a TOS: 10.98.0.0/16 tos 0x10 via 10.0.0.1',
    );
    expect(
      generateGuestNetwork([
        eth0([{ destination: '10.98.0.0', destinationLength: 16, gateway: '10.0.0.1', tos: 0x10 }]),
      ]).routes,
    ).toEqual([]);
  });
});

describe('which links become endpoints (Kata scanEndpointsInNs, then better)', () => {
  const tunl0 = info({ link: link({ index: 2, name: 'tunl0', kind: 'ipip' }) });
  const bridge = info({
    link: link({ index: 3, name: 'br0', kind: 'bridge' }),
    addresses: [address('fe80::1', 64, { index: 3, scope: RouteScope.LINK })],
  });
  const eth0 = info({ link: link({ index: 4, name: 'eth0' }), addresses: [address('10.0.0.2', 24, { index: 4 })] });
  const v6only = info({
    link: link({ index: 5, name: 'eth1' }),
    addresses: [address('fd00::2', 64, { index: 5 })],
  });

  it('skips links whose only address is none or the kernel link-local one, each with its reason', () => {
    const { selected, skipped } = selectEndpointInterfaces([tunl0, bridge, eth0, v6only]);
    expect(selected.map((entry) => entry.link.name)).toEqual(['eth0', 'eth1']);
    expect(skipped.map((entry) => [entry.info.link.name, entry.reason])).toEqual([
      ['tunl0', 'no address'],
      ['br0', 'no address'],
    ]);
    // Neither an ipip tunnel nor a bridge is a kind vcnet connects: no hint to name them.
    expect(skippedNotice(skipped[0] as SkippedInterface)).toBe(
      'skipped tunl0 (kind ipip): no address; naming it would not attach it either: unsupported network interface tunl0: kind ipip',
    );
    expect(skippedNotice(skipped[1] as SkippedInterface)).toBe(
      'skipped br0 (kind bridge): no address; naming it would not attach it either: unsupported network interface br0: kind bridge',
    );
  });

  it('offers --interface for a skipped link of a kind vcnet connects', () => {
    const veth = info({ link: link({ index: 6, name: 'eth5', kind: 'veth' }) });
    const { skipped } = selectEndpointInterfaces([veth]);
    expect(skippedNotice(skipped[0] as SkippedInterface)).toBe(
      'skipped eth5 (kind veth): no address; name it with --interface eth5 (or add-iface) to attach it anyway',
    );
  });

  it('attaches a link without an address when it is named', () => {
    const { selected, skipped } = selectEndpointInterfaces([tunl0, bridge, eth0], new Set(['br0']));
    expect(selected.map((entry) => entry.link.name)).toEqual(['br0', 'eth0']);
    expect(skipped.map((entry) => entry.info.link.name)).toEqual(['tunl0']);
  });
});

/** A reply message as test/fixtures/netlink/fallback-tunnels.json holds it (nlmsghdr and payload, hex). */
function rawMessage(hex: string): RawMessage {
  const bytes = Buffer.from(hex, 'hex');
  return {
    type: bytes.readUInt16LE(4),
    flags: bytes.readUInt16LE(6),
    sequence: bytes.readUInt32LE(8),
    portId: bytes.readUInt32LE(12),
    payload: bytes.subarray(16),
  };
}

/**
 * A fresh namespace of the test guest's kernel (Debian's cloud kernel) after ipip, sit, ip_gre, ip6_tunnel,
 * ip6_gre, ip_vti and ip6_vti were loaded, as its dumps answered (scripts/capture-fallback-tunnels.ts).
 */
const fallbackNamespace: NamespaceSnapshot = {
  links: fallbackTunnels.links.map((hex) => decodeLink(rawMessage(hex))),
  addresses: fallbackTunnels.addresses.map((hex) => decodeAddress(rawMessage(hex))),
  routes: fallbackTunnels.routes.map((hex) => decodeRoute(rawMessage(hex))),
  neighbours: fallbackTunnels.neighbours.map((hex) => decodeNeighbour(rawMessage(hex))),
  proxyNeighbours: [],
  qdiscs: [],
};
const fallbackInterfaces = interfacesOf(fallbackNamespace);
function recorded(name: string): NetworkInfo {
  const found = fallbackInterfaces.find((entry) => entry.link.name === name);
  if (!found) throw new Error(`${name} is not in test/fixtures/netlink/fallback-tunnels.json`);
  return found;
}

describe("the kernel's fallback tunnels, as a real kernel makes them", () => {
  it('the recording holds every fallback device of those modules, gretap0 and erspan0 Ethernet-type with a zero MAC', () => {
    expect(fallbackTunnels.modules).toEqual(
      expect.arrayContaining(['ipip', 'sit', 'ip_gre', 'ip6_tunnel', 'ip6_gre', 'ip_vti', 'ip6_vti']),
    );
    expect(fallbackInterfaces.map((entry) => [entry.link.name, entry.link.kind, entry.link.type])).toEqual([
      ['tunl0', 'ipip', 768],
      ['sit0', 'sit', 776],
      ['gre0', 'gre', 778],
      ['gretap0', 'gretap', 1],
      ['erspan0', 'erspan', 1],
      ['ip6tnl0', 'ip6tnl', 769],
      ['ip6gre0', 'ip6gre', 823],
      ['ip_vti0', 'vti', 768],
      ['ip6_vti0', 'vti6', 769],
    ]);
    // What could pass for a veth: Ethernet hardware type, broadcast, a six-byte (all-zero) MAC.
    for (const name of ['gretap0', 'erspan0']) {
      expect(recorded(name).link.address).toBe('00:00:00:00:00:00');
      expect(recorded(name).link.flags & InterfaceFlag.BROADCAST).not.toBe(0);
    }
  });

  it("are each skipped as the kernel's, with that reason in the line said, and none becomes an endpoint", () => {
    const { selected, skipped } = selectEndpointInterfaces(fallbackInterfaces);
    expect(selected).toEqual([]);
    expect(skipped.map((entry) => [entry.info.link.name, entry.reason])).toEqual(
      fallbackInterfaces.map((entry) => [entry.link.name, KERNEL_FALLBACK_TUNNEL_REASON]),
    );
    for (const entry of skipped) {
      expect(skippedNotice(entry)).toBe(
        `skipped ${entry.info.link.name} (kind ${entry.info.link.kind}): ${KERNEL_FALLBACK_TUNNEL_REASON}; ` +
          `naming it would not attach it either: unsupported network interface ${entry.info.link.name}: kind ${entry.info.link.kind}`,
      );
    }
    // vcnet scan's view: skipped, for that reason, and no endpoint type even if named.
    expect(
      classifyScan({ interfaces: fallbackInterfaces, snapshot: fallbackNamespace }).map((entry) => [
        entry.info.link.name,
        entry.skipped,
        entry.endpointType,
        entry.unsupported?.code,
      ]),
    ).toEqual(
      fallbackInterfaces.map((entry) => [
        entry.link.name,
        KERNEL_FALLBACK_TUNNEL_REASON,
        undefined,
        'VCNET_UNSUPPORTED_INTERFACE',
      ]),
    );
  });

  it('are told from links that only share a name, kind or hardware type with one', () => {
    const tunl0 = recorded('tunl0');
    const gretap0 = recorded('gretap0');
    // Someone's own ipip tunnel; a veth someone named tunl0; an Ethernet-type veth named gretap0;
    // tunl0 given an address (someone's tunnel now): warned of as any skipped link, or taken.
    const theirs = { ...tunl0, link: { ...tunl0.link, name: 'tun1' } };
    const impostor = { ...gretap0, link: { ...gretap0.link, name: 'tunl0', kind: 'veth' } };
    const vethNamedGretap = { ...gretap0, link: { ...gretap0.link, kind: 'veth' } };
    const addressed = { ...tunl0, addresses: [address('10.1.0.1', 24, { index: tunl0.link.index })] };
    const { selected, skipped } = selectEndpointInterfaces([
      tunl0,
      gretap0,
      theirs,
      impostor,
      vethNamedGretap,
      addressed,
    ]);
    expect(skipped.map((entry) => [entry.info.link.name, entry.reason === KERNEL_FALLBACK_TUNNEL_REASON])).toEqual([
      ['tunl0', true],
      ['gretap0', true],
      ['tun1', false],
      ['tunl0', false],
      ['gretap0', false],
    ]);
    expect(selected).toEqual([addressed]);
  });
});
