/** NetworkInfo fixtures for unit tests (the shapes the scan produces). */

import type { Address } from '../../../src/netlink/codec/address.js';
import { AddressFamily } from '../../../src/netlink/codec/constants.js';
import { HardwareType, InterfaceFlag } from '../../../src/netlink/codec/link/message.js';
import type { Link } from '../../../src/netlink/codec/link.js';
import { type Neighbour, NeighbourState } from '../../../src/netlink/codec/neighbour.js';
import type { Route } from '../../../src/netlink/codec/route.js';
import { RouteProtocol, RouteScope, RouteTable } from '../../../src/netlink/codec/route.js';
import type { NetworkInfo } from '../../../src/network/network-info.js';
import type { PlanSnapshot } from '../../../src/network/plan/plan-attach.js';

export function link(overrides: Partial<Link> = {}): Link {
  return {
    index: 2,
    name: 'eth0',
    kind: 'veth',
    type: HardwareType.ETHER,
    flags: InterfaceFlag.UP | InterfaceFlag.BROADCAST | InterfaceFlag.MULTICAST,
    mtu: 1500,
    address: '02:42:ac:11:00:02',
    operationalState: 'up',
    group: 0,
    ...overrides,
  };
}

export function address(text: string, prefixLength: number, overrides: Partial<Address> = {}): Address {
  return {
    index: 2,
    family: text.includes(':') ? AddressFamily.INET6 : AddressFamily.INET,
    address: text,
    prefixLength,
    scope: RouteScope.UNIVERSE,
    flags: 0,
    ...overrides,
  };
}

export function route(overrides: Partial<Route> = {}): Route {
  return {
    family: AddressFamily.INET,
    destinationLength: 0,
    sourceLength: 0,
    table: RouteTable.MAIN,
    protocol: RouteProtocol.BOOT,
    scope: RouteScope.UNIVERSE,
    type: 1,
    flags: 0,
    tos: 0,
    outputIndex: 2,
    ...overrides,
  };
}

export function info(overrides: Partial<NetworkInfo> = {}): NetworkInfo {
  return { link: link(), addresses: [], routes: [], neighbours: [], ...overrides };
}

export const permanent = NeighbourState.PERMANENT;

/** A neighbour of eth0 (index 2): by default the gateway's, `nud permanent`. */
export function neighbour(overrides: Partial<Neighbour> = {}): Neighbour {
  return {
    index: 2,
    family: 2,
    destination: '10.88.0.1',
    linkLayerAddress: 'aa:bb:cc:dd:ee:ff',
    state: permanent,
    flags: 0,
    type: 1,
    ...overrides,
  };
}

/** A pod with eth0 (index 2) as planAttach reads it: addresses, routes the kernel and a plugin made, two neighbours. */
export function planSnapshot(overrides: Partial<PlanSnapshot> = {}): PlanSnapshot {
  return {
    links: [link({ index: 1, name: 'lo', kind: undefined, flags: InterfaceFlag.LOOPBACK | InterfaceFlag.UP }), link()],
    addresses: [address('10.88.0.2', 16), address('fd00::2', 64), address('fe80::1', 64, { scope: RouteScope.LINK })],
    routes: [
      route({
        destination: '10.88.0.0',
        destinationLength: 16,
        protocol: RouteProtocol.KERNEL,
        scope: RouteScope.LINK,
      }),
      route({ gateway: '10.88.0.1' }),
      // fd00::2/64's prefix route, as the kernel makes it.
      route({
        family: 10,
        destination: 'fd00::',
        destinationLength: 64,
        protocol: RouteProtocol.KERNEL,
        priority: 256,
      }),
      route({
        destination: '10.88.0.2',
        destinationLength: 32,
        table: 255,
        type: 2,
        protocol: RouteProtocol.KERNEL,
        scope: RouteScope.HOST,
      }),
    ],
    neighbours: [neighbour(), neighbour({ destination: '10.88.0.9', linkLayerAddress: 'aa:bb:cc:dd:ee:09', state: 2 })],
    qdiscs: [],
    ...overrides,
  };
}
