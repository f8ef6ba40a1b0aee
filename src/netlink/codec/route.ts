/**
 * Routes: rtmsg + RTA_* attributes, IPv4 and IPv6, with their metrics, realms, multipath next hops,
 * gateways of the other family (RTA_VIA), IPv6 preference and lifetime.
 */
import { bytesToIp, familyOf, ipToBytes } from './address-format.js';
import { AddressFamily } from './constants.js';
import { Attributes, MalformedMessageError, type RawMessage } from './reader.js';
import {
  decodeExpires,
  decodeGateway,
  decodeMetrics,
  decodeMultipath,
  encodeMetrics,
  encodeMultipath,
  gatewayAttribute,
  type NextHop,
  type NextHopSpec,
  RouteAttribute,
  RouteMetric,
  type RouteMetrics,
} from './route-attributes.js';
import type { MessageWriter } from './writer.js';

/** RT_TABLE_* routing table ids (main is 254). */
export const RouteTable = { UNSPEC: 0, DEFAULT: 253, MAIN: 254, LOCAL: 255 } as const;
/** RTPROT_* values: who made a route (kernel, boot, static, RA, DHCP...). */
export const RouteProtocol = { UNSPEC: 0, REDIRECT: 1, KERNEL: 2, BOOT: 3, STATIC: 4, RA: 9, DHCP: 16 } as const;
/** RT_SCOPE_* route and address scopes (universe, link, host...). */
export const RouteScope = { UNIVERSE: 0, SITE: 200, LINK: 253, HOST: 254, NOWHERE: 255 } as const;
/** RTN_* route types (unicast, local, broadcast, blackhole, unreachable...). */
export const RouteType = {
  UNSPEC: 0,
  UNICAST: 1,
  LOCAL: 2,
  BROADCAST: 3,
  ANYCAST: 4,
  MULTICAST: 5,
  BLACKHOLE: 6,
  UNREACHABLE: 7,
  PROHIBIT: 8,
} as const;
/** RTA_PREF: ICMPV6_ROUTER_PREF_* (iproute2's `pref low|medium|high`). */
export const RoutePreference = { MEDIUM: 0, HIGH: 1, LOW: 3 } as const;
/**
 * rtm_flags / rtnh_flags. ONLINK: a gateway reachable on the link without a covering route. CLONED
 * (RTM_F_CLONED): an entry of the route cache (isCachedRoute), not a route.
 */
export const RouteFlag = { ONLINK: 0x4, CLONED: 0x200 } as const;

/**
 * An entry of the kernel's route cache (RTM_F_CLONED): a path-MTU or redirect exception it learned
 * from traffic (an ICMP "fragmentation needed" / "packet too big" or redirect), for one destination,
 * expiring by itself (10 minutes for a path MTU). Since Linux 5.3 a route dump on a socket without
 * strict checking (vcnet's) lists them among the routes, IPv4 and IPv6; `ip route show` leaves them
 * out and `ip route show cache` lists them. Nobody made them and nobody can re-make them: never a route to
 * copy, restore or delete.
 */
export function isCachedRoute(route: { flags: number }): boolean {
  return (route.flags & RouteFlag.CLONED) !== 0;
}

/** Size in bytes of struct rtmsg, the header of route messages. */
export const RTMSG_LENGTH = 12;

/**
 * A route as the kernel reports it (`ip route show`): family, destination and prefix length, gateway, output
 * link, source, table, protocol, scope, type, metrics and next hops.
 */
export interface Route {
  family: number;
  /** Destination address; undefined with destinationLength 0 is the default route. */
  destination?: string;
  destinationLength: number;
  source?: string;
  sourceLength: number;
  /** The next hop: RTA_GATEWAY, or RTA_VIA when it is of the other family (`via inet6 fe80::1`). */
  gateway?: string;
  /** Preferred source address (RTA_PREFSRC, `ip route ... src X`). */
  preferredSource?: string;
  outputIndex?: number;
  table: number;
  /** IPv6 router preference (RTA_PREF: RoutePreference). */
  preference?: number;
  /** Seconds left before the kernel removes the route (RA-learned routes, `expires N`). */
  expires?: number;
  /** The nexthop object the route uses (RTA_NH_ID, `nhid N`). */
  nextHopId?: number;
  /** An lwtunnel encapsulation (RTA_ENCAP_TYPE: mpls, seg6, bpf...), which vcnet does not read. */
  encapType?: number;
  protocol: number;
  scope: number;
  type: number;
  flags: number;
  priority?: number;
  /** The MTU metric, also in `metrics`. */
  mtu?: number;
  /** Every RTA_METRICS value, by RTAX_* number. */
  metrics?: RouteMetrics;
  /** RTA_FLOW (IPv4 realms, from << 16 | to). */
  realm?: number;
  /** RTA_MULTIPATH: a route with several next hops has these instead of a gateway and output link. */
  nextHops?: NextHop[];
  tos: number;
}

/**
 * A route to add, replace or delete (`NetlinkHandle.addRoute`): destination and prefix length (none: the
 * default route), gateway, output link, source, table, scope and metrics.
 */
export interface RouteSpec {
  /** Family; taken from destination/gateway when omitted. */
  family?: number;
  destination?: string;
  destinationLength?: number;
  /** Of the route's family (RTA_GATEWAY) or of the other (RTA_VIA). */
  gateway?: string;
  preferredSource?: string;
  outputIndex?: number;
  table?: number;
  /** IPv6 only: RoutePreference. */
  preference?: number;
  /** IPv6 only: seconds until the kernel removes the route (not sent in a delete). */
  expires?: number;
  protocol?: number;
  scope?: number;
  type?: number;
  flags?: number;
  priority?: number;
  /** The MTU metric; wins over an MTU in `metrics`. */
  mtu?: number;
  metrics?: RouteMetrics;
  realm?: number;
  nextHops?: NextHopSpec[];
  /** The TOS the route matches (`ip route add ... tos 0x10`): part of its identity, so a delete names it. */
  tos?: number;
}

function routeFamily(spec: RouteSpec): number {
  if (spec.family) return spec.family;
  if (spec.destination) return familyOf(spec.destination);
  if (spec.gateway) return familyOf(spec.gateway);
  const hopGateway = spec.nextHops?.find((hop) => hop.gateway)?.gateway;
  if (hopGateway) return familyOf(hopGateway);
  if (spec.preferredSource) return familyOf(spec.preferredSource);
  return AddressFamily.INET;
}

/**
 * Writes the body of an RTM_NEWROUTE or RTM_DELROUTE request for `spec` (into a message begun on `writer`);
 * `forDelete` leaves out what a delete must not match on. Throws `AddressFormatError` (`VCNET_INVALID_INPUT`)
 * for an address that is not an IP address.
 */
export function encodeRoute(writer: MessageWriter, spec: RouteSpec, forDelete = false): void {
  const family = routeFamily(spec);
  const maximum = family === AddressFamily.INET ? 32 : 128;
  const table = spec.table ?? RouteTable.MAIN;
  const header = writer.header(RTMSG_LENGTH);
  header.writeUInt8(family, 0);
  header.writeUInt8(spec.destination ? (spec.destinationLength ?? maximum) : 0, 1);
  header.writeUInt8(0, 2);
  header.writeUInt8(spec.tos ?? 0, 3);
  header.writeUInt8(table < 256 ? table : RouteTable.UNSPEC, 4);
  // For deletes, unspecified protocol/scope/type act as wildcards in the kernel's match.
  header.writeUInt8(spec.protocol ?? (forDelete ? RouteProtocol.UNSPEC : RouteProtocol.BOOT), 5);
  const viaGateway = spec.gateway !== undefined || spec.nextHops?.some((hop) => hop.gateway) === true;
  const defaultScope = viaGateway ? RouteScope.UNIVERSE : RouteScope.LINK;
  header.writeUInt8(spec.scope ?? (forDelete ? RouteScope.NOWHERE : defaultScope), 6);
  header.writeUInt8(spec.type ?? (forDelete ? RouteType.UNSPEC : RouteType.UNICAST), 7);
  header.writeUInt32LE(spec.flags ?? 0, 8);
  if (table >= 256) writer.u32(RouteAttribute.TABLE, table);
  if (spec.destination) writer.bytes(RouteAttribute.DST, ipToBytes(spec.destination));
  if (spec.gateway) {
    const { type, value } = gatewayAttribute(family, spec.gateway);
    writer.bytes(type, value);
  }
  if (spec.preferredSource) writer.bytes(RouteAttribute.PREFSRC, ipToBytes(spec.preferredSource));
  if (spec.outputIndex !== undefined) writer.u32(RouteAttribute.OIF, spec.outputIndex);
  if (spec.priority !== undefined) writer.u32(RouteAttribute.PRIORITY, spec.priority);
  if (spec.realm !== undefined) writer.u32(RouteAttribute.FLOW, spec.realm);
  // A delete names the hops too: the kernel then removes that multipath route and no other.
  if (spec.nextHops && spec.nextHops.length > 0) encodeMultipath(writer, spec.nextHops, family);
  if (family === AddressFamily.INET6 && spec.preference !== undefined) writer.u8(RouteAttribute.PREF, spec.preference);
  if (family === AddressFamily.INET6 && spec.expires !== undefined && !forDelete) {
    writer.u32(RouteAttribute.EXPIRES, spec.expires);
  }
  if (!forDelete) {
    const metrics: RouteMetrics = { ...spec.metrics };
    if (spec.mtu !== undefined) metrics[RouteMetric.MTU] = spec.mtu;
    encodeMetrics(writer, metrics);
  }
}

/**
 * Writes the header of an RTM_GETROUTE dump request (into a message begun on `writer`), for one family or
 * all.
 */
export function encodeGetRoute(writer: MessageWriter, family: number = AddressFamily.UNSPEC): void {
  const header = writer.header(RTMSG_LENGTH);
  header.writeUInt8(family, 0);
}

/**
 * Decodes an RTM_NEWROUTE message of a dump or a notification. Throws `MalformedMessageError` on a truncated
 * message.
 */
export function decodeRoute(message: RawMessage): Route {
  const payload = message.payload;
  if (payload.length < RTMSG_LENGTH) throw new MalformedMessageError(`rtmsg of ${payload.length} bytes`, 0);
  const attributes = new Attributes(payload, RTMSG_LENGTH);
  const route: Route = {
    family: payload.readUInt8(0),
    destinationLength: payload.readUInt8(1),
    sourceLength: payload.readUInt8(2),
    tos: payload.readUInt8(3),
    table: attributes.u32(RouteAttribute.TABLE) ?? payload.readUInt8(4),
    protocol: payload.readUInt8(5),
    scope: payload.readUInt8(6),
    type: payload.readUInt8(7),
    flags: payload.readUInt32LE(8),
  };
  const destination = attributes.raw(RouteAttribute.DST);
  if (destination) route.destination = bytesToIp(destination);
  const source = attributes.raw(RouteAttribute.SRC);
  if (source) route.source = bytesToIp(source);
  const gateway = decodeGateway(attributes);
  if (gateway) route.gateway = gateway;
  const preferredSource = attributes.raw(RouteAttribute.PREFSRC);
  if (preferredSource) route.preferredSource = bytesToIp(preferredSource);
  const outputIndex = attributes.u32(RouteAttribute.OIF);
  if (outputIndex !== undefined) route.outputIndex = outputIndex;
  const priority = attributes.u32(RouteAttribute.PRIORITY);
  if (priority !== undefined) route.priority = priority;
  const metricAttributes = attributes.nested(RouteAttribute.METRICS);
  if (metricAttributes) {
    const metrics = decodeMetrics(metricAttributes);
    const mtu = metrics[RouteMetric.MTU];
    if (typeof mtu === 'number') route.mtu = mtu;
    if (Object.keys(metrics).length > 0) route.metrics = metrics;
  }
  const realm = attributes.u32(RouteAttribute.FLOW);
  if (realm !== undefined) route.realm = realm;
  const multipath = attributes.raw(RouteAttribute.MULTIPATH);
  if (multipath) route.nextHops = decodeMultipath(multipath);
  const preference = attributes.u8(RouteAttribute.PREF);
  if (preference !== undefined) route.preference = preference;
  const expires = decodeExpires(attributes);
  if (expires !== undefined) route.expires = expires;
  const nextHopId = attributes.u32(RouteAttribute.NH_ID);
  if (nextHopId !== undefined) route.nextHopId = nextHopId;
  const encapType = attributes.u16(RouteAttribute.ENCAP_TYPE);
  if (encapType !== undefined) route.encapType = encapType;
  return route;
}
