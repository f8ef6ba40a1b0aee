/** Interface addresses: ifaddrmsg + IFA_* attributes, IPv4 and IPv6, with their lifetimes (IFA_CACHEINFO). */
import { bytesToIp, familyOf, ipToBytes } from './address-format.js';
import { AddressFamily } from './constants.js';
import { Attributes, MalformedMessageError, type RawMessage } from './reader.js';
import { RouteScope } from './route.js';
import type { MessageWriter } from './writer.js';

/** IFA_* attribute types of address messages. */
export const AddressAttribute = {
  ADDRESS: 1,
  LOCAL: 2,
  LABEL: 3,
  BROADCAST: 4,
  ANYCAST: 5,
  CACHEINFO: 6,
  MULTICAST: 7,
  FLAGS: 8,
  RT_PRIORITY: 9,
  PROTO: 11,
} as const;

/** IFA_PROTO values: who made an address (the kernel sets them, kernel 6.3+). */
export const AddressProtocol = {
  UNSPEC: 0,
  KERNEL_LO: 1,
  KERNEL_RA: 2,
  KERNEL_LL: 3,
} as const;

/** IFA_F_* address flags (permanent, tentative, nodad...), as `Address.flags` carries them. */
export const AddressFlag = {
  /** IPv4: a secondary address. IPv6: the same bit is IFA_F_TEMPORARY, a privacy address the kernel made. */
  SECONDARY: 0x1,
  TEMPORARY: 0x1,
  NODAD: 0x2,
  OPTIMISTIC: 0x4,
  DADFAILED: 0x8,
  HOMEADDRESS: 0x10,
  DEPRECATED: 0x20,
  TENTATIVE: 0x40,
  PERMANENT: 0x80,
  MANAGETEMPADDR: 0x100,
  NOPREFIXROUTE: 0x200,
} as const;

/** Size in bytes of struct ifaddrmsg, the header of address messages. */
export const IFADDRMSG_LENGTH = 8;
/** struct ifa_cacheinfo: ifa_prefered, ifa_valid (seconds left), cstamp, tstamp. */
const IFA_CACHEINFO_LENGTH = 16;
/** A lifetime that does not end (INFINITY_LIFE_TIME, iproute2's `forever`). */
export const FOREVER = 0xffffffff;

/**
 * An address on a link as the kernel reports it (`ip address show`): link index, family, address, prefix
 * length, scope, flags and lifetimes.
 */
export interface Address {
  index: number;
  family: number;
  /** The interface's own address (IFA_LOCAL, or IFA_ADDRESS when there is no separate local). */
  address: string;
  prefixLength: number;
  scope: number;
  flags: number;
  /** The peer, for point-to-point addresses (IFA_ADDRESS differs from IFA_LOCAL). */
  peer?: string;
  broadcast?: string;
  label?: string;
  /** Seconds until the kernel removes the address (IFA_CACHEINFO); undefined when it does not expire. */
  validLifetime?: number;
  /** Seconds until it is deprecated; undefined when that does not happen. */
  preferredLifetime?: number;
  /** The metric of the address's prefix route (IFA_RT_PRIORITY, `ip addr add ... metric N`). */
  routePriority?: number;
  /** Who made the address (IFA_PROTO: AddressProtocol), when the kernel says. */
  protocol?: number;
}

/**
 * An address to add to or delete from a link (`NetlinkHandle.addAddress`): the link index, the address and
 * its prefix length, with scope, flags and lifetimes optional.
 */
export interface AddressSpec {
  index: number;
  address: string;
  prefixLength: number;
  scope?: number;
  flags?: number;
  peer?: string;
  broadcast?: string;
  label?: string;
  /** Seconds (`valid_lft`); the address never expires when this and preferredLifetime are undefined. */
  validLifetime?: number;
  /** Seconds (`preferred_lft`), at most validLifetime. */
  preferredLifetime?: number;
  /** The metric of the prefix route the kernel adds for the address. */
  routePriority?: number;
  /** IFA_PROTO (AddressProtocol); kernels before 6.3 ignore it. */
  protocol?: number;
}

/**
 * Writes the body of an RTM_NEWADDR or RTM_DELADDR request for `spec` (into a message begun on `writer`).
 * Throws `AddressFormatError` (`VCNET_INVALID_INPUT`) for an address that is not an IP address.
 */
export function encodeAddress(writer: MessageWriter, spec: AddressSpec): void {
  const family = familyOf(spec.address);
  const header = writer.header(IFADDRMSG_LENGTH);
  header.writeUInt8(family, 0);
  header.writeUInt8(spec.prefixLength, 1);
  header.writeUInt8((spec.flags ?? 0) & 0xff, 2);
  header.writeUInt8(spec.scope ?? RouteScope.UNIVERSE, 3);
  header.writeUInt32LE(spec.index, 4);
  const local = ipToBytes(spec.address);
  writer.bytes(AddressAttribute.LOCAL, local);
  writer.bytes(AddressAttribute.ADDRESS, spec.peer ? ipToBytes(spec.peer) : local);
  if (spec.broadcast) writer.bytes(AddressAttribute.BROADCAST, ipToBytes(spec.broadcast));
  if (spec.label) writer.string(AddressAttribute.LABEL, spec.label);
  // Flags above 8 bits only fit in IFA_FLAGS.
  if (spec.flags !== undefined && spec.flags > 0xff) writer.u32(AddressAttribute.FLAGS, spec.flags);
  if (spec.routePriority !== undefined) writer.u32(AddressAttribute.RT_PRIORITY, spec.routePriority);
  if (spec.protocol !== undefined) writer.u8(AddressAttribute.PROTO, spec.protocol);
  if (spec.validLifetime !== undefined || spec.preferredLifetime !== undefined) {
    const cacheinfo = writer.struct(AddressAttribute.CACHEINFO, IFA_CACHEINFO_LENGTH);
    cacheinfo.writeUInt32LE(spec.preferredLifetime ?? FOREVER, 0);
    cacheinfo.writeUInt32LE(spec.validLifetime ?? FOREVER, 4);
  }
}

/**
 * Writes the header of an RTM_GETADDR dump request (into a message begun on `writer`), for one family or all.
 */
export function encodeGetAddress(writer: MessageWriter, family: number = AddressFamily.UNSPEC): void {
  const header = writer.header(IFADDRMSG_LENGTH);
  header.writeUInt8(family, 0);
}

/**
 * Decodes an RTM_NEWADDR message of a dump or a notification. Throws `MalformedMessageError` on a truncated
 * message.
 */
export function decodeAddress(message: RawMessage): Address {
  const payload = message.payload;
  if (payload.length < IFADDRMSG_LENGTH) throw new MalformedMessageError(`ifaddrmsg of ${payload.length} bytes`, 0);
  const attributes = new Attributes(payload, IFADDRMSG_LENGTH);
  const localBytes = attributes.raw(AddressAttribute.LOCAL);
  const addressBytes = attributes.raw(AddressAttribute.ADDRESS);
  const own = localBytes ?? addressBytes;
  if (!own) throw new MalformedMessageError('address message without IFA_ADDRESS/IFA_LOCAL', 0);
  const address: Address = {
    family: payload.readUInt8(0),
    prefixLength: payload.readUInt8(1),
    flags: attributes.u32(AddressAttribute.FLAGS) ?? payload.readUInt8(2),
    scope: payload.readUInt8(3),
    index: payload.readUInt32LE(4),
    address: bytesToIp(own),
  };
  if (localBytes && addressBytes && !localBytes.equals(addressBytes)) address.peer = bytesToIp(addressBytes);
  const broadcast = attributes.raw(AddressAttribute.BROADCAST);
  if (broadcast) address.broadcast = bytesToIp(broadcast);
  const label = attributes.string(AddressAttribute.LABEL);
  if (label) address.label = label;
  const routePriority = attributes.u32(AddressAttribute.RT_PRIORITY);
  if (routePriority !== undefined) address.routePriority = routePriority;
  const protocol = attributes.u8(AddressAttribute.PROTO);
  if (protocol) address.protocol = protocol;
  const cacheinfo = attributes.raw(AddressAttribute.CACHEINFO);
  if (cacheinfo && cacheinfo.length >= 8) {
    const preferred = cacheinfo.readUInt32LE(0);
    const valid = cacheinfo.readUInt32LE(4);
    if (valid !== FOREVER) address.validLifetime = valid;
    if (preferred !== FOREVER) address.preferredLifetime = preferred;
  }
  return address;
}
