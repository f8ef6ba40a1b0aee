/**
 * The route attributes with structure inside: RTA_METRICS (RTAX_* attributes), RTA_MULTIPATH (struct
 * rtnexthop entries, each followed by its own RTA_GATEWAY or RTA_VIA and RTA_FLOW), RTA_VIA and
 * RTA_CACHEINFO (of which only the time a route has left is read).
 */
import { bytesToIp, familyOf, ipToBytes } from './address-format.js';
import { NLA_HEADER_LENGTH } from './constants.js';
import { Attributes, MalformedMessageError } from './reader.js';
import type { MessageWriter } from './writer.js';

/** RTA_* attribute types of route messages. */
export const RouteAttribute = {
  DST: 1,
  SRC: 2,
  IIF: 3,
  OIF: 4,
  GATEWAY: 5,
  PRIORITY: 6,
  PREFSRC: 7,
  METRICS: 8,
  MULTIPATH: 9,
  FLOW: 11,
  CACHEINFO: 12,
  TABLE: 15,
  MARK: 16,
  VIA: 18,
  PREF: 20,
  ENCAP_TYPE: 21,
  ENCAP: 22,
  EXPIRES: 23,
  NH_ID: 30,
} as const;

/** struct rta_cacheinfo: rta_expires (s32, in USER_HZ ticks) is its third field. */
const CACHEINFO_EXPIRES_OFFSET = 8;
/** USER_HZ: the unit of the kernel's clock_t values in netlink (sysconf(_SC_CLK_TCK) on Linux). */
const USER_HZ = 100;

/** RTAX_*: the attributes inside RTA_METRICS. All are u32 but CC_ALGO, a congestion control name. */
export const RouteMetric = {
  LOCK: 1,
  MTU: 2,
  WINDOW: 3,
  RTT: 4,
  RTTVAR: 5,
  SSTHRESH: 6,
  CWND: 7,
  ADVMSS: 8,
  REORDERING: 9,
  HOPLIMIT: 10,
  INITCWND: 11,
  FEATURES: 12,
  RTO_MIN: 13,
  INITRWND: 14,
  QUICKACK: 15,
  CC_ALGO: 16,
  FASTOPEN_NO_COOKIE: 17,
} as const;
/** RTAX_FEATURES bits (iproute2's `features ecn`). */
export const RouteFeature = { ECN: 0x1 } as const;
/** struct rtnexthop: u16 length, u8 flags, u8 hops (weight - 1), s32 ifindex; its attributes follow. */
export const RTNEXTHOP_LENGTH = 8;

/**
 * Route metrics by RTAX_* number, as the kernel reports them: every one a u32 (times in the kernel's
 * units, RTAX_LOCK a bit per locked metric), except RTAX_CC_ALGO, a congestion control name.
 */
export type RouteMetrics = Record<number, number | string>;

/** One next hop of a multipath route. */
export interface NextHop {
  gateway?: string;
  /** rtnh_ifindex: the link the hop leaves by. */
  outputIndex: number;
  /** iproute2's weight, 1 to 256 (the kernel's rtnh_hops is weight - 1). */
  weight: number;
  /** RTNH_F_*: ONLINK is a request; DEAD, LINKDOWN and the others are state the kernel reports. */
  flags: number;
  /** RTA_FLOW of the hop (IPv4 realms, from << 16 | to). */
  realm?: number;
}

/** A next hop of a multipath route to add: its gateway and output link; weight and flags optional. */
export type NextHopSpec = Omit<NextHop, 'weight' | 'flags'> & { weight?: number; flags?: number };

const align4 = (n: number): number => (n + 3) & ~3;

/** Writes `metrics` as a route's RTA_METRICS attribute (nothing when empty). */
export function encodeMetrics(writer: MessageWriter, metrics: RouteMetrics): void {
  const entries = Object.entries(metrics)
    .map(([type, value]) => [Number(type), value] as const)
    .sort(([a], [b]) => a - b);
  if (entries.length === 0) return;
  // Without NLA_F_NESTED, as iproute2 sends it.
  writer.beginNestedPlain(RouteAttribute.METRICS);
  for (const [type, value] of entries) {
    if (typeof value === 'string') writer.string(type, value);
    else writer.u32(type, value);
  }
  writer.endNested();
}

/** Reads a route's RTA_METRICS (MTU, advmss, congestion control...) into `RouteMetrics`. */
export function decodeMetrics(attributes: Attributes): RouteMetrics {
  const metrics: RouteMetrics = {};
  for (const [type, value] of attributes.all()) {
    if (type === RouteMetric.CC_ALGO) {
      const nul = value.indexOf(0);
      metrics[type] = value.toString('utf8', 0, nul >= 0 ? nul : value.length);
    } else if (value.length >= 4) {
      metrics[type] = value.readUInt32LE(0);
    }
  }
  return metrics;
}

/**
 * A gateway as its attribute: RTA_GATEWAY when it is of the route's family, RTA_VIA (struct rtvia: a
 * u16 family, then the address) when it is not (`ip route add 10.0.0.0/8 via inet6 fe80::1`).
 */
export function gatewayAttribute(routeFamily: number, gateway: string): { type: number; value: Buffer } {
  const address = ipToBytes(gateway);
  const family = familyOf(gateway);
  if (family === routeFamily) return { type: RouteAttribute.GATEWAY, value: Buffer.from(address) };
  const via = Buffer.alloc(2 + address.length);
  via.writeUInt16LE(family, 0);
  via.set(address, 2);
  return { type: RouteAttribute.VIA, value: via };
}

/** The gateway of a route or of a next hop: RTA_GATEWAY, or RTA_VIA for one of the other family. */
export function decodeGateway(attributes: Attributes): string | undefined {
  const gateway = attributes.raw(RouteAttribute.GATEWAY);
  if (gateway) return bytesToIp(gateway);
  const via = attributes.raw(RouteAttribute.VIA);
  return via && via.length > 2 ? bytesToIp(via.subarray(2)) : undefined;
}

/** The seconds a route has left (RTA_CACHEINFO's rta_expires), or undefined when it does not expire. */
export function decodeExpires(attributes: Attributes): number | undefined {
  const cacheinfo = attributes.raw(RouteAttribute.CACHEINFO);
  if (!cacheinfo || cacheinfo.length < CACHEINFO_EXPIRES_OFFSET + 4) return undefined;
  const ticks = cacheinfo.readInt32LE(CACHEINFO_EXPIRES_OFFSET);
  // Whole seconds as iproute2 prints them, and at least one while any time is left.
  return ticks > 0 ? Math.max(1, Math.floor(ticks / USER_HZ)) : undefined;
}

/** One attribute as bytes (header, value, padding), for the hop attributes inside RTA_MULTIPATH. */
function attributeBytes(type: number, value: Uint8Array): Buffer {
  const bytes = Buffer.alloc(align4(NLA_HEADER_LENGTH + value.length));
  bytes.writeUInt16LE(NLA_HEADER_LENGTH + value.length, 0);
  bytes.writeUInt16LE(type, 2);
  bytes.set(value, NLA_HEADER_LENGTH);
  return bytes;
}

function nextHopBytes(hop: NextHopSpec, routeFamily: number): Buffer {
  const attributes: Buffer[] = [];
  if (hop.gateway) {
    const { type, value } = gatewayAttribute(routeFamily, hop.gateway);
    attributes.push(attributeBytes(type, value));
  }
  if (hop.realm !== undefined) {
    const realm = Buffer.alloc(4);
    realm.writeUInt32LE(hop.realm >>> 0);
    attributes.push(attributeBytes(RouteAttribute.FLOW, realm));
  }
  const header = Buffer.alloc(RTNEXTHOP_LENGTH);
  const length = RTNEXTHOP_LENGTH + attributes.reduce((sum, attribute) => sum + attribute.length, 0);
  header.writeUInt16LE(length, 0);
  header.writeUInt8(hop.flags ?? 0, 2);
  header.writeUInt8((hop.weight ?? 1) - 1, 3);
  header.writeInt32LE(hop.outputIndex, 4);
  return Buffer.concat([header, ...attributes]);
}

/**
 * Writes a route's next hops as its RTA_MULTIPATH attribute (an array of struct rtnexthop), for an ECMP
 * route.
 */
export function encodeMultipath(writer: MessageWriter, hops: readonly NextHopSpec[], routeFamily: number): void {
  // Without NLA_F_NESTED: the kernel reads an array of rtnexthop, not attributes.
  writer.bytes(RouteAttribute.MULTIPATH, Buffer.concat(hops.map((hop) => nextHopBytes(hop, routeFamily))));
}

/** Reads an RTA_MULTIPATH attribute's next hops (gateway, output link, weight, flags). */
export function decodeMultipath(data: Buffer): NextHop[] {
  const hops: NextHop[] = [];
  let offset = 0;
  while (offset + RTNEXTHOP_LENGTH <= data.length) {
    const length = data.readUInt16LE(offset);
    if (length < RTNEXTHOP_LENGTH || offset + length > data.length) {
      throw new MalformedMessageError(`next hop length ${length} with ${data.length - offset} left`, offset);
    }
    const hop: NextHop = {
      flags: data.readUInt8(offset + 2),
      weight: data.readUInt8(offset + 3) + 1,
      outputIndex: data.readInt32LE(offset + 4),
    };
    const attributes = new Attributes(data.subarray(offset + RTNEXTHOP_LENGTH, offset + length));
    const gateway = decodeGateway(attributes);
    if (gateway) hop.gateway = gateway;
    const realm = attributes.u32(RouteAttribute.FLOW);
    if (realm !== undefined) hop.realm = realm;
    hops.push(hop);
    offset += align4(length);
  }
  return hops;
}
