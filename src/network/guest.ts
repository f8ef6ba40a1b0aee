/**
 * What the agent inside the VM is told to set: interfaces, routes and neighbours, in the shape of
 * Kata's protocol (types.proto) and with the JSON field names `kata-runtime kata-network` uses.
 * Rules as Kata's generateVCNetworkStructures: loopback addresses skipped, routes the kernel made
 * (proto kernel) skipped, permanent neighbours and reachable default gateways, NOARP carried from the link flags, route MTU kept.
 */
import { isIPv4 } from 'node:net';
import { AddressFamily } from '../netlink/codec/constants.js';
import { InterfaceFlag } from '../netlink/codec/link/message.js';
import type { Neighbour } from '../netlink/codec/neighbour.js';
import { NeighbourState } from '../netlink/codec/neighbour.js';
import type { Route } from '../netlink/codec/route.js';
import { RouteProtocol } from '../netlink/codec/route.js';
import type { Endpoint } from './endpoint/endpoint.js';

/** Kata's IPFamily enum: v4 = 0, v6 = 1. */
export const GuestFamily = { v4: 0, v6: 1 } as const;
export type GuestFamilyValue = (typeof GuestFamily)[keyof typeof GuestFamily];

export interface GuestIpAddress {
  family: GuestFamilyValue;
  address: string;
  /** Prefix length as a decimal string, as Kata sends it. */
  mask: string;
}

export interface GuestInterface {
  device: string;
  name: string;
  IPAddresses: GuestIpAddress[];
  mtu: number;
  hwAddr: string;
  /** PCI path of the NIC in the guest (e.g. "02/00"), once plugged. */
  devicePath: string;
  type: string;
  raw_flags: number;
}

export interface GuestRoute {
  dest: string;
  gateway: string;
  device: string;
  source: string;
  scope: number;
  family: GuestFamilyValue;
  flags: number;
  mtu: number;
}

export interface GuestNeighbour {
  toIPAddress: GuestIpAddress;
  device: string;
  lladdr: string;
  state: number;
  flags: number;
}

export interface GuestNetwork {
  interfaces: GuestInterface[];
  routes: GuestRoute[];
  neighbours: GuestNeighbour[];
}

function familyOfText(address: string): GuestFamilyValue {
  return isIPv4(address) ? GuestFamily.v4 : GuestFamily.v6;
}

function isLoopbackAddress(address: string): boolean {
  return address === '::1' || address.startsWith('127.');
}

/**
 * Kata's validGuestRoute: the kernel recreates its own routes when the address is set. Also left out:
 * a route whose gateway is of the other family (`via inet6` for an IPv4 route), which the agent's
 * Route cannot carry. Kata reads no gateway for it and sends an on-link route to the destination
 * instead, which sends its traffic nowhere.
 */
export function isValidGuestRoute(route: Route): boolean {
  if (route.protocol === RouteProtocol.KERNEL) return false;
  const expected = route.family === AddressFamily.INET6 ? GuestFamily.v6 : GuestFamily.v4;
  return !route.gateway || familyOfText(route.gateway) === expected;
}

/** Gateways of an interface's default routes (Kata's gatewaySetFromRoutes). */
export function gatewaySetFromRoutes(routes: readonly Route[]): Set<string> {
  const gateways = new Set<string>();
  for (const route of routes) {
    if (route.gateway && (!route.destination || route.destinationLength === 0)) gateways.add(route.gateway);
  }
  return gateways;
}

/**
 * Kata's validGuestNeighbor (since 2025-08): an entry needs a link-layer address; permanent entries are
 * copied, and a reachable entry only for a default gateway (so the guest need not resolve it again).
 */
export function isValidGuestNeighbour(neighbour: Neighbour, gateways: ReadonlySet<string> = new Set()): boolean {
  if (!neighbour.linkLayerAddress) return false;
  if (neighbour.state === NeighbourState.PERMANENT) return true;
  return neighbour.state === NeighbourState.REACHABLE && gateways.has(neighbour.destination);
}

/**
 * A default route's `dest` as current Kata sends it: its netlink library (vishvananda/netlink 1.2.1+)
 * fills in 0.0.0.0/0 or ::/0 when the kernel sends no destination, and generateVCNetworkStructures
 * copies that (`route.Dst.String()`). Older Kata (and its 1.x CLI) sent "", which vcnet still reads.
 */
function defaultDestination(family: GuestFamilyValue): string {
  return family === GuestFamily.v6 ? '::/0' : '0.0.0.0/0';
}

export function guestRoute(route: Route, device: string): GuestRoute {
  const family =
    route.family === AddressFamily.INET6
      ? GuestFamily.v6
      : route.family === AddressFamily.INET
        ? GuestFamily.v4
        : familyOfText(route.gateway ?? '');
  return {
    dest: route.destination ? `${route.destination}/${route.destinationLength}` : defaultDestination(family),
    gateway: route.gateway ?? '',
    device,
    source: route.preferredSource ?? '',
    scope: route.scope,
    family,
    flags: route.flags & 0xff,
    mtu: route.mtu ?? 0,
  };
}

export function generateGuestNetwork(endpoints: readonly Endpoint[]): GuestNetwork {
  const network: GuestNetwork = { interfaces: [], routes: [], neighbours: [] };
  for (const endpoint of endpoints) {
    const { link, addresses, routes, neighbours } = endpoint.properties;
    const device = endpoint.name;
    network.interfaces.push({
      device,
      name: device,
      IPAddresses: addresses
        .filter((address) => !isLoopbackAddress(address.address))
        .map((address) => ({
          family: familyOfText(address.address),
          address: address.address,
          mask: String(address.prefixLength),
        })),
      mtu: link.mtu,
      hwAddr: endpoint.hardwareAddress,
      devicePath: endpoint.pciPath ?? '',
      type: endpoint.type,
      raw_flags: link.flags & InterfaceFlag.NOARP,
    });
    for (const route of routes) if (isValidGuestRoute(route)) network.routes.push(guestRoute(route, device));
    const gateways = gatewaySetFromRoutes(routes);
    for (const neighbour of neighbours) {
      if (!isValidGuestNeighbour(neighbour, gateways)) continue;
      network.neighbours.push({
        toIPAddress: {
          family: familyOfText(neighbour.destination),
          address: neighbour.destination,
          mask: '',
        },
        device,
        lladdr: neighbour.linkLayerAddress ?? '',
        state: neighbour.state,
        flags: neighbour.flags,
      });
    }
  }
  return network;
}
