/**
 * The routes the macvtap model takes off a pod link with its addresses, as the records that put
 * them back: metrics, realm and multipath next hops included.
 *
 * Multipath routes name their links only in their next hops. A route whose hops are all on the pod
 * link is the pod link's: IPv4 would delete it with the link's last address. A route with hops on
 * other links too is saved by one link only, the one with the lowest index among its hops, because
 * the plans of all the links an attach takes share one scan and would otherwise each delete it (the
 * second deletion fails). That link is attached first (links are taken in index order) and so undone
 * last, when the other links have their addresses back and the hops' gateways are reachable again.
 * Its record keeps the other links' hops by name and index; detach puts the route back only when
 * those links are still there with the same index (inverse.ts). When the owning link is not the
 * one attached, the route stays: IPv4 marks the pod link's hops dead and revives them when detach
 * puts the addresses back.
 */
import { VcnetError } from '../../errors.js';
import type { Address } from '../../netlink/codec/address.js';
import { AddressFlag } from '../../netlink/codec/address.js';
import { networkOf } from '../../netlink/codec/address-format.js';
import { AddressFamily } from '../../netlink/codec/constants.js';
import type { Link } from '../../netlink/codec/link.js';
import type { Route } from '../../netlink/codec/route.js';
import { RouteFlag, RouteProtocol, RouteTable } from '../../netlink/codec/route.js';
import { routeRequestOf } from './inverse.js';
import type { RouteRecord } from './types.js';

function ownedBy(route: Route, index: number): boolean {
  if (route.nextHops && route.nextHops.length > 0) {
    return Math.min(...route.nextHops.map((hop) => hop.outputIndex)) === index;
  }
  return route.outputIndex === index;
}

/**
 * A route the macvtap model would take off the pod link but could not put back as it was: vcnet does
 * not read lwtunnel encapsulations (RTA_ENCAP). Refused before anything is changed.
 */
export class RouteNotRestorableError extends VcnetError {
  static override readonly errorName: string = 'RouteNotRestorableError';
  constructor(link: string, route: Route) {
    const destination = route.destination ? `${route.destination}/${route.destinationLength}` : 'default';
    super(
      'VCNET_ROUTE_NOT_RESTORABLE',
      `the route ${destination} on ${link} has an encapsulation (lwtunnel type ${route.encapType}), which the macvtap model would remove with ${link}'s addresses and could not put back`,
      {
        value: destination,
        hint: 'use the tcfilter model, which leaves the pod link and its routes as they are',
      },
    );
  }
}

/**
 * A route the kernel makes by itself, and so makes again when the addresses come back: one in the
 * local table (an address's local, broadcast and anycast routes, IPv6's multicast route), the
 * prefix route of one of the link's addresses (of its peer, for a point-to-point one), and IPv6's
 * fe80::/64. Only `proto kernel` routes are; a user's `proto kernel` route to another prefix is not.
 */
function isKernelMade(route: Route, addresses: readonly Address[]): boolean {
  if (route.protocol !== RouteProtocol.KERNEL) return false;
  if (route.table === RouteTable.LOCAL) return true;
  if (!route.destination) return false;
  return addresses.some(
    (address) =>
      address.family === route.family &&
      (address.flags & AddressFlag.NOPREFIXROUTE) === 0 &&
      address.prefixLength === route.destinationLength &&
      networkOf(address.peer ?? address.address, address.prefixLength) === route.destination,
  );
}

/**
 * Routes that go with the pod link's addresses, in any table (a local-table AnyIP route, a user's
 * `proto kernel` route), but for the kernel's own, which come back with them (isKernelMade). IPv6's
 * fe80::/64 comes back with the link-local address. A route through a nexthop object (`nhid`) stays:
 * it depends on the object, not on the addresses, and the kernel keeps it when they go. `now` (ms
 * since the epoch, the time of the scan) turns a route's lifetime into the time it ends.
 */
/**
 * Whether the kernel checks that a route's gateway is reached when the route is added: it has a
 * gateway (or a next hop with one) and is not `onlink`.
 */
export function needsReachableGateway(route: Pick<RouteRecord, 'gateway' | 'nextHops' | 'flags'>): boolean {
  if (((route.flags ?? 0) & RouteFlag.ONLINK) !== 0) return false;
  if (route.gateway) return true;
  return (route.nextHops ?? []).some((hop) => hop.gateway && ((hop.flags ?? 0) & RouteFlag.ONLINK) === 0);
}

/**
 * The routes in the order they can be added in: the kernel refuses a route whose gateway no
 * gateway-less route reaches yet (IPv4 ENETUNREACH "Nexthop has invalid gateway", IPv6 EHOSTUNREACH),
 * and a pod like Calico's reaches its gateway only through a link-scope /32 to it, which the kernel
 * may list after the routes through it. It refuses a gateway reached only through another gateway in
 * both families, so routes without a checked gateway first, then the others, is a topological order.
 * Stable: otherwise the order given.
 */
export function reachableFirst<Item>(
  items: readonly Item[],
  routeOf: (item: Item) => Pick<RouteRecord, 'gateway' | 'nextHops' | 'flags'>,
): Item[] {
  return [
    ...items.filter((item) => !needsReachableGateway(routeOf(item))),
    ...items.filter((item) => needsReachableGateway(routeOf(item))),
  ];
}

export function podLinkRoutes(
  routes: readonly Route[],
  links: readonly Link[],
  source: Link,
  now?: number,
  addresses: readonly Address[] = [],
): RouteRecord[] {
  // A link missing from the scan gets a name no link has: detach then leaves its route out.
  const nameOf = new Map(links.map((link) => [link.index, link.name]));
  const linkAddresses = addresses.filter((address) => address.index === source.index);
  const owned = routes.filter(
    (route) =>
      ownedBy(route, source.index) &&
      route.nextHopId === undefined &&
      !isKernelMade(route, linkAddresses) &&
      !(route.family === AddressFamily.INET6 && route.destination?.startsWith('fe80')),
  );
  const encapsulated = owned.find((route) => route.encapType !== undefined);
  if (encapsulated) throw new RouteNotRestorableError(source.name, encapsulated);
  // Undone in reverse, so removed in the reverse of the order they can be put back in: the routes
  // through a gateway first (reachableFirst). Within each, the kernel's order, as before.
  return reachableFirst([...owned].reverse(), (route) => route)
    .reverse()
    .map(({ expires, ...route }) =>
      routeRequestOf({
        ...route,
        ...(expires !== undefined && now !== undefined ? { expiresAt: now + expires * 1000 } : {}),
        ...(route.nextHops
          ? {
              nextHops: route.nextHops.map(({ outputIndex, ...hop }) =>
                outputIndex === source.index
                  ? hop
                  : { ...hop, link: { name: nameOf.get(outputIndex) ?? `#${outputIndex}`, index: outputIndex } },
              ),
            }
          : {}),
      }),
    );
}
