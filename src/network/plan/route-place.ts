/**
 * Where a route sits in the kernel: the place `ip route add` (NLM_F_EXCL) finds taken and answers
 * EEXIST. IPv4 and IPv6 alike: the table, the destination prefix, the TOS (IPv4) or source prefix
 * (IPv6), and the metric. The gateway, link and type are not part of it: two routes that differ only
 * there cannot both be in the table. Detach puts a recorded route back only where its place is free
 * (plan-detach.ts), so a route someone set there since attach is left as they set it.
 */
import { AddressFlag } from '../../netlink/codec/address.js';
import { familyOf, ipToBytes, networkOf } from '../../netlink/codec/address-format.js';
import { AddressFamily } from '../../netlink/codec/constants.js';
import type { Link } from '../../netlink/codec/link.js';
import type { Route } from '../../netlink/codec/route.js';
import { RouteTable } from '../../netlink/codec/route.js';
import { routeRequestOf } from './inverse.js';
import { routeArguments } from './route-command.js';
import type { AddressRecord, LinkRef, RouteRecord } from './types.js';

/** The metric the kernel gives an IPv6 route added without one (IP6_RT_PRIO_USER); IPv4's is 0. */
const IPV6_DEFAULT_METRIC = 1024;
/** The metric of the prefix route the kernel makes for an IPv6 address (IP6_RT_PRIO_ADDRCONF). */
const IPV6_PREFIX_ROUTE_METRIC = 256;

function canonical(address: string): string {
  return ipToBytes(address).toString('hex');
}

function familyOfRoute(route: Pick<RouteRecord, 'family' | 'destination' | 'gateway' | 'nextHops'>): number {
  if (route.family) return route.family;
  const address = route.destination ?? route.gateway ?? route.nextHops?.find((hop) => hop.gateway)?.gateway;
  return address ? familyOf(address) : AddressFamily.INET;
}

function placeText(
  family: number,
  table: number,
  destination: string | undefined,
  length: number,
  tos: number,
  metric: number,
): string {
  return [family, table, destination && length > 0 ? canonical(destination) : '', length, tos, metric].join('/');
}

/** The place of a route as recorded (a request: absent fields are the kernel's defaults). */
export function placeOfRecord(route: RouteRecord): string {
  const family = familyOfRoute(route);
  const v6 = family === AddressFamily.INET6;
  return placeText(
    family,
    route.table ?? RouteTable.MAIN,
    route.destination,
    route.destinationLength ?? 0,
    v6 ? 0 : (route.tos ?? 0),
    route.priority ?? (v6 ? IPV6_DEFAULT_METRIC : 0),
  );
}

/** The place of a route the kernel lists; undefined for an IPv6 route with a source prefix (no record has one). */
export function placeOfRoute(route: Route): string | undefined {
  if (route.sourceLength > 0) return undefined;
  const v6 = route.family === AddressFamily.INET6;
  return placeText(
    route.family,
    route.table,
    route.destination,
    route.destinationLength,
    v6 ? 0 : route.tos,
    route.priority ?? 0,
  );
}

/**
 * The places of the routes the kernel makes by itself when `address` is put back: its prefix route
 * (unless noprefixroute) and, in the local table, its own address, an IPv4 broadcast, an IPv6 subnet
 * anycast. A recorded route in one of these places (CNI ptp routes its subnet via the gateway, where
 * the prefix route would be) replaces the kernel's, as it did before attach.
 */
export function kernelPlacesOf(address: AddressRecord): string[] {
  const family = familyOf(address.address);
  const v6 = family === AddressFamily.INET6;
  const host = v6 ? 128 : 32;
  const places = [placeText(family, RouteTable.LOCAL, address.address, host, 0, 0)];
  if (address.broadcast) places.push(placeText(family, RouteTable.LOCAL, address.broadcast, host, 0, 0));
  const network = networkOf(address.peer ?? address.address, address.prefixLength);
  if (v6) places.push(placeText(family, RouteTable.LOCAL, network, host, 0, 0));
  if (((address.flags ?? 0) & AddressFlag.NOPREFIXROUTE) === 0) {
    const metric = address.routePriority ?? (v6 ? IPV6_PREFIX_ROUTE_METRIC : 0);
    places.push(placeText(family, RouteTable.MAIN, network, address.prefixLength, 0, metric));
  }
  return places;
}

/** A listed route as `ip route` arguments, its links by name (`#INDEX` for one not in `links`). */
export function listedRouteText(route: Route, links: readonly Link[]): string {
  const nameOf = (index: number | undefined) =>
    links.find((link) => link.index === index)?.name ?? (index === undefined ? '?' : `#${index}`);
  const { expires: _expires, ...kept } = route;
  const request = routeRequestOf({
    ...kept,
    ...(route.nextHops
      ? {
          nextHops: route.nextHops.map(({ outputIndex, ...hop }) => ({
            ...hop,
            link: { name: nameOf(outputIndex), index: outputIndex },
          })),
        }
      : {}),
  });
  return routeArguments(request, { role: 'pod', name: nameOf(route.outputIndex), index: route.outputIndex });
}

/** A recorded route as `ip route` arguments on `link`, without its lifetime (which only says when it ends). */
export function recordedRouteText(route: RouteRecord, link: LinkRef): string {
  const { expires: _expires, expiresAt: _expiresAt, ...kept } = route;
  return routeArguments(kept, link);
}

/** Whether a listed route is address for address the recorded one (as `ip route add` would make it again). */
export function sameRoute(listed: Route, links: readonly Link[], recorded: RouteRecord, link: LinkRef): boolean {
  return listedRouteText(listed, links) === recordedRouteText(recorded, link);
}
