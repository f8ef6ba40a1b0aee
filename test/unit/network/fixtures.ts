/** NetworkInfo fixtures for unit tests (the shapes the scan produces). */

import type { Address } from '../../../src/netlink/codec/address.js';
import { AddressFamily } from '../../../src/netlink/codec/constants.js';
import { HardwareType, InterfaceFlag } from '../../../src/netlink/codec/link/message.js';
import type { Link } from '../../../src/netlink/codec/link.js';
import { NeighbourState } from '../../../src/netlink/codec/neighbour.js';
import type { Route } from '../../../src/netlink/codec/route.js';
import { RouteProtocol, RouteScope, RouteTable } from '../../../src/netlink/codec/route.js';
import type { NetworkInfo } from '../../../src/network/network-info.js';

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
