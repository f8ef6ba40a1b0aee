/** Neighbours (ARP / NDP entries): ndmsg + NDA_* attributes. */
import { bytesToIp, bytesToMac, familyOf, ipToBytes, macToBytes } from './address-format.js';
import { AddressFamily } from './constants.js';
import { Attributes, MalformedMessageError, type RawMessage } from './reader.js';
import type { MessageWriter } from './writer.js';

/** NDA_* attribute types of neighbour messages. */
export const NeighbourAttribute = { DST: 1, LLADDR: 2, CACHEINFO: 3, PROBES: 4, PROTOCOL: 12 } as const;
/** NUD_* neighbour states (incomplete, reachable, stale, permanent...), as `Neighbour.state` carries them. */
export const NeighbourState = {
  INCOMPLETE: 0x1,
  REACHABLE: 0x2,
  STALE: 0x4,
  DELAY: 0x8,
  PROBE: 0x10,
  FAILED: 0x20,
  NOARP: 0x40,
  PERMANENT: 0x80,
} as const;
/** NTF_* neighbour flags (router, proxy, externally learned...). */
export const NeighbourFlag = { USE: 0x1, SELF: 0x2, MASTER: 0x4, PROXY: 0x8, EXT_LEARNED: 0x10, ROUTER: 0x80 } as const;

/** Size in bytes of struct ndmsg, the header of neighbour messages. */
export const NDMSG_LENGTH = 12;

/**
 * A neighbour (ARP or NDP) entry as the kernel reports it (`ip neigh show`): link index, family, IP,
 * link-layer address, NUD state and flags.
 */
export interface Neighbour {
  index: number;
  family: number;
  destination: string;
  linkLayerAddress?: string;
  state: number;
  flags: number;
  type: number;
  /** Who made the entry (NDA_PROTOCOL, `ip neigh ... protocol static`), when it says. */
  protocol?: number;
}

/**
 * A neighbour entry to add or delete (`NetlinkHandle.addNeighbour`): link index, IP and link-layer address;
 * state defaults to permanent.
 */
export interface NeighbourSpec {
  index: number;
  destination: string;
  linkLayerAddress?: string;
  state?: number;
  flags?: number;
  protocol?: number;
}

/**
 * Writes the body of an RTM_NEWNEIGH or RTM_DELNEIGH request for `spec` (into a message begun on `writer`).
 * Throws `AddressFormatError` (`VCNET_INVALID_INPUT`) for a bad IP or MAC.
 */
export function encodeNeighbour(writer: MessageWriter, spec: NeighbourSpec): void {
  const header = writer.header(NDMSG_LENGTH);
  header.writeUInt8(familyOf(spec.destination), 0);
  header.writeInt32LE(spec.index, 4);
  header.writeUInt16LE(spec.state ?? NeighbourState.PERMANENT, 8);
  header.writeUInt8(spec.flags ?? 0, 10);
  writer.bytes(NeighbourAttribute.DST, ipToBytes(spec.destination));
  if (spec.linkLayerAddress) writer.bytes(NeighbourAttribute.LLADDR, macToBytes(spec.linkLayerAddress));
  if (spec.protocol !== undefined) writer.u8(NeighbourAttribute.PROTOCOL, spec.protocol);
}

/** A neighbour dump; with NTF_PROXY in `flags` the kernel dumps the proxy entries instead. */
export function encodeGetNeighbour(writer: MessageWriter, family: number = AddressFamily.UNSPEC, flags = 0): void {
  const header = writer.header(NDMSG_LENGTH);
  header.writeUInt8(family, 0);
  header.writeUInt8(flags, 10);
}

/**
 * Decodes an RTM_NEWNEIGH message of a dump or a notification. Throws `MalformedMessageError` on a truncated
 * message.
 */
export function decodeNeighbour(message: RawMessage): Neighbour {
  const payload = message.payload;
  if (payload.length < NDMSG_LENGTH) throw new MalformedMessageError(`ndmsg of ${payload.length} bytes`, 0);
  const attributes = new Attributes(payload, NDMSG_LENGTH);
  const destination = attributes.raw(NeighbourAttribute.DST);
  const neighbour: Neighbour = {
    family: payload.readUInt8(0),
    index: payload.readInt32LE(4),
    state: payload.readUInt16LE(8),
    flags: payload.readUInt8(10),
    type: payload.readUInt8(11),
    destination: destination ? bytesToIp(destination) : '',
  };
  const linkLayer = attributes.raw(NeighbourAttribute.LLADDR);
  if (linkLayer && linkLayer.length === 6) neighbour.linkLayerAddress = bytesToMac(linkLayer);
  const protocol = attributes.u8(NeighbourAttribute.PROTOCOL);
  if (protocol !== undefined) neighbour.protocol = protocol;
  return neighbour;
}
