/**
 * What the agent inside the VM is told to set: interfaces, routes and neighbours, in the shape of
 * Kata's protocol (types.proto) and with the JSON field names `kata-runtime kata-network` uses.
 * Rules as Kata's generateVCNetworkStructures: loopback addresses skipped, routes the kernel made
 * (proto kernel) skipped, permanent neighbours and reachable default gateways, NOARP carried from the link flags, route MTU kept.
 * Unlike Kata, one route per destination (chooseGuestRoutes): the agent's Route has no metric, and
 * the agent replaces a route to the same destination, so the guest would keep the last one sent.
 */
import { isIPv4 } from 'node:net';
import { channels, type NoticeEvent, publish } from '../diagnostics.js';
import { appendTo } from '../multimap.js';
import { AddressFamily } from '../netlink/codec/constants.js';
import { InterfaceFlag } from '../netlink/codec/link/message.js';
import type { Neighbour } from '../netlink/codec/neighbour.js';
import { NeighbourState } from '../netlink/codec/neighbour.js';
import type { Route } from '../netlink/codec/route.js';
import { RouteFlag, RouteProtocol, RouteTable, RouteType } from '../netlink/codec/route.js';
import type { Endpoint } from './endpoint/endpoint.js';

/** Kata's IPFamily enum: v4 = 0, v6 = 1. */
export const GuestFamily = { v4: 0, v6: 1 } as const;
/** Kata's IP family number: 0 for IPv4, 1 for IPv6. */
export type GuestFamilyValue = (typeof GuestFamily)[keyof typeof GuestFamily];

/** An address of a guest interface, as the Kata agent takes it (the prefix length as a string). */
export interface GuestIpAddress {
  family: GuestFamilyValue;
  address: string;
  /** Prefix length as a decimal string, as Kata sends it. */
  mask: string;
}

/** A guest interface as the Kata agent takes it: the device, its name, addresses, MTU and MAC. */
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

/** A guest route as the Kata agent takes it (`dest` empty for the default route). */
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

/** A guest neighbour (ARP/NDP entry) as the Kata agent takes it. */
export interface GuestNeighbour {
  toIPAddress: GuestIpAddress;
  device: string;
  lladdr: string;
  state: number;
  flags: number;
}

/**
 * What the guest is told after attach: every interface, the full route set and the neighbours
 * (`attachSandbox`'s `guest`; `configureGuest` pushes it).
 */
export interface GuestNetwork {
  interfaces: GuestInterface[];
  routes: GuestRoute[];
  neighbours: GuestNeighbour[];
}

function familyOfText(address: string): GuestFamilyValue {
  return isIPv4(address) ? GuestFamily.v4 : GuestFamily.v6;
}

/** An address the guest's lo has: Kata's startup (and every push vcnet makes) skips it on a NIC. */
export function isLoopbackAddress(address: string): boolean {
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
  // The agent's Route has no TOS: sent, it would take all the destination's traffic.
  if (route.tos) return false;
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
    // Only ONLINK is a request: the kernel reports LINKDOWN (carrier off) and DEAD as state, and
    // refuses them in a route add ("Invalid rtm_flags"), as Kata's agent would send them on.
    flags: route.flags & RouteFlag.ONLINK,
    mtu: route.mtu ?? 0,
  };
}

/** A route the guest does not get because another to the same destination is preferred. */
export interface DroppedGuestRoute {
  route: GuestRoute;
  metric: number;
  kept: GuestRoute;
  keptMetric: number;
}

function routeKey(route: GuestRoute): string {
  return `${route.family} ${route.dest}`;
}

/**
 * The guest's routes: the pod's, one per destination, the one the pod's kernel prefers (the lowest
 * metric; of equal metrics the first, in the order the kernel lists a link's routes and then in
 * endpoint order). The others are returned as `dropped`, each with the route kept instead.
 */
export function chooseGuestRoutes(endpoints: readonly Endpoint[]): {
  routes: GuestRoute[];
  dropped: DroppedGuestRoute[];
} {
  const candidates: Array<{ route: GuestRoute; metric: number }> = [];
  for (const endpoint of endpoints) {
    for (const route of endpoint.properties.routes) {
      if (isValidGuestRoute(route)) {
        candidates.push({ route: guestRoute(route, endpoint.name), metric: route.priority ?? 0 });
      }
    }
  }
  const best = new Map<string, { route: GuestRoute; metric: number }>();
  for (const candidate of candidates) {
    const key = routeKey(candidate.route);
    const current = best.get(key);
    if (!current || candidate.metric < current.metric) best.set(key, candidate);
  }
  const routes: GuestRoute[] = [];
  const dropped: DroppedGuestRoute[] = [];
  for (const candidate of candidates) {
    const kept = best.get(routeKey(candidate.route))!;
    if (kept === candidate) routes.push(candidate.route);
    else dropped.push({ ...candidate, kept: kept.route, keptMetric: kept.metric });
  }
  return { routes, dropped };
}

function describeGuestRoute(route: GuestRoute): string {
  return `${route.dest}${route.gateway ? ` via ${route.gateway}` : ''} dev ${route.device}`;
}

/** The notice that names the routes the guest does not get for a preferred one, or undefined for none. */
export function droppedRoutesNotice(dropped: readonly DroppedGuestRoute[]): string | undefined {
  if (dropped.length === 0) return undefined;
  const listed = dropped
    .map(
      (entry) =>
        `${describeGuestRoute(entry.route)} metric ${entry.metric} (kept ${describeGuestRoute(entry.kept)} metric ${entry.keptMetric})`,
    )
    .join('; ');
  return `the guest gets one route per destination, the one the pod prefers (lowest metric): the agent's routes have no metric and it keeps only the last one sent to a destination; not sent: ${listed}`;
}

/**
 * Tells vcnet:notice which routes of `endpoints` the guest does not get for a preferred one. The
 * routes are chosen for it only when someone listens; `about` gives the notice's other fields.
 */
export function noticeDroppedGuestRoutes(
  endpoints: readonly Endpoint[],
  about: () => Omit<NoticeEvent, 'message'>,
): void {
  publish(channels.notice, () => {
    const message = droppedRoutesNotice(chooseGuestRoutes(endpoints).dropped);
    return message === undefined ? undefined : { ...about(), message };
  });
}

/**
 * What the guest agent is told for these endpoints: one interface each (name, MAC, MTU, addresses),
 * the routes (one per destination, the pod's preferred) and the permanent neighbours.
 */
export function generateGuestNetwork(endpoints: readonly Endpoint[]): GuestNetwork {
  const network: GuestNetwork = { interfaces: [], routes: chooseGuestRoutes(endpoints).routes, neighbours: [] };
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

/** A route of the pod that the guest does not get, and why. */
export interface RouteNotForGuest {
  route: Route;
  reason: string;
}

const UNROUTABLE_TYPES: ReadonlyMap<number, string> = new Map([
  [RouteType.BLACKHOLE, 'blackhole'],
  [RouteType.UNREACHABLE, 'unreachable'],
  [RouteType.PROHIBIT, 'prohibit'],
]);

/**
 * The pod's routes through the given links (or of no link: blackhole, unreachable, prohibit) that the
 * guest does not get, as Kata does not either: it reads the main table's single-path routes of each
 * link, and the agent's Route has no table, next hops, type or TOS. The kernel's own routes (local
 * table, proto kernel) are left out: they come with the addresses.
 */
export function routesNotForGuest(routes: readonly Route[], linkIndexes: ReadonlySet<number>): RouteNotForGuest[] {
  const found: RouteNotForGuest[] = [];
  for (const route of routes) {
    if (route.table === RouteTable.LOCAL || route.protocol === RouteProtocol.KERNEL) continue;
    const unroutable = UNROUTABLE_TYPES.get(route.type);
    if (unroutable) {
      if (route.table === RouteTable.MAIN) found.push({ route, reason: `${unroutable} routes` });
      continue;
    }
    const through =
      (route.outputIndex !== undefined && linkIndexes.has(route.outputIndex)) ||
      (route.nextHops ?? []).some((hop) => linkIndexes.has(hop.outputIndex));
    if (!through) continue;
    if (route.table !== RouteTable.MAIN)
      found.push({ route, reason: `routes in table ${route.table} (policy routing)` });
    else if (route.nextHops && route.nextHops.length > 0) {
      found.push({
        route,
        reason: route.nextHopId !== undefined ? 'routes through a nexthop group' : 'multipath routes',
      });
    } else if (route.tos) found.push({ route, reason: 'routes with a TOS' });
    else if (!isValidGuestRoute(route)) found.push({ route, reason: 'routes with a gateway of the other family' });
  }
  return found;
}

function describeRoute(route: Route): string {
  const destination = route.destination ? `${route.destination}/${route.destinationLength}` : 'default';
  const family = route.family === AddressFamily.INET6 && !route.destination ? ' (IPv6)' : '';
  const hops = route.nextHops?.length ? ` (${route.nextHops.length} next hops)` : '';
  const via = route.gateway ? ` via ${route.gateway}` : '';
  const tos = route.tos ? ` tos 0x${route.tos.toString(16).padStart(2, '0')}` : '';
  return `${destination}${family}${tos}${via}${hops}`;
}

/** At most this many routes are named per reason; the rest are counted. */
const NAMED_PER_REASON = 5;

/** One notice for all the routes the guest does not get, grouped by why; undefined for none. */
export function routesNotForGuestNotice(skipped: readonly RouteNotForGuest[]): string | undefined {
  if (skipped.length === 0) return undefined;
  const byReason = new Map<string, Route[]>();
  for (const { route, reason } of skipped) appendTo(byReason, reason, route);
  const parts = [...byReason].map(([reason, routes]) => {
    const named = routes.slice(0, NAMED_PER_REASON).map(describeRoute).join(', ');
    const more = routes.length > NAMED_PER_REASON ? ` and ${routes.length - NAMED_PER_REASON} more` : '';
    return `${reason}: ${named}${more}`;
  });
  return `the guest does not get ${skipped.length} route${skipped.length === 1 ? '' : 's'} of the pod (as in Kata: the agent sets main-table routes with one next hop, no type, no TOS): ${parts.join('; ')}`;
}
