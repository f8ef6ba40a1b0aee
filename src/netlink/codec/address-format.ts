/**
 * Text <-> bytes for MAC and IP addresses.
 *
 * Hand-written on purpose: Node has `net.isIP` but no text-to-bytes for IPv6, and these run for every
 * attribute of every message; a dependency (ipaddr.js) would allocate objects per address where
 * these write straight into the message buffer.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { VcnetError } from '../../errors.js';
import { isMacAddress, MAC_ADDRESS_ACCEPTED } from '../../mac-address.js';
import { AddressFamily } from './constants.js';

/** Text that is not a MAC or IP address (bad input: code VCNET_INVALID_INPUT). */
export class AddressFormatError extends VcnetError {
  static override readonly errorName: string = 'AddressFormatError';
  readonly kind: 'mac' | 'ip';
  readonly text: string;
  constructor(kind: 'mac' | 'ip', text: string) {
    super(
      'VCNET_INVALID_INPUT',
      kind === 'mac'
        ? `not a MAC address: "${text}" (expected six hex bytes like 02:42:ac:11:00:02)`
        : `not an IP address: "${text}"`,
      {
        value: text,
        hint: kind === 'mac' ? `write ${MAC_ADDRESS_ACCEPTED}` : 'write an IPv4 or IPv6 address',
      },
    );
    this.kind = kind;
    this.text = text;
  }
}

/**
 * A MAC address in text (`aa:bb:cc:dd:ee:ff`, colon-separated hex) as its 6 bytes. Throws
 * `AddressFormatError` (`VCNET_INVALID_INPUT`) for anything else.
 */
export function macToBytes(text: string): Buffer {
  if (!isMacAddress(text)) throw new AddressFormatError('mac', text);
  return Buffer.from(text.replaceAll(':', ''), 'hex');
}

/**
 * Bytes of a link-layer address as lower-case colon-separated hex (`aa:bb:cc:dd:ee:ff`), whatever their
 * length.
 */
export function bytesToMac(bytes: Uint8Array): string {
  let out = '';
  for (let i = 0; i < bytes.length; i++) {
    if (i > 0) out += ':';
    out += (bytes[i]! < 16 ? '0' : '') + bytes[i]!.toString(16);
  }
  return out;
}

/**
 * The address family of an IP address in text: `AddressFamily.INET` or `AddressFamily.INET6`. Throws
 * `AddressFormatError` (`VCNET_INVALID_INPUT`) for text that is neither.
 */
export function familyOf(address: string): number {
  if (isIPv4(address)) return AddressFamily.INET;
  if (isIPv6(address)) return AddressFamily.INET6;
  throw new AddressFormatError('ip', address);
}

/**
 * An IPv4 or IPv6 address in text as its 4 or 16 bytes, network order. Throws `AddressFormatError`
 * (`VCNET_INVALID_INPUT`) for text that is neither.
 */
export function ipToBytes(text: string): Buffer {
  if (isIPv4(text)) {
    const out = Buffer.allocUnsafe(4);
    const parts = text.split('.');
    for (let i = 0; i < 4; i++) out[i] = Number(parts[i]);
    return out;
  }
  if (!isIPv6(text)) throw new AddressFormatError('ip', text);
  const out = Buffer.alloc(16);
  let head = text;
  let tail = '';
  const zoneIndex = text.indexOf('%');
  if (zoneIndex >= 0) head = text.slice(0, zoneIndex);
  const doubleColon = head.indexOf('::');
  if (doubleColon >= 0) {
    tail = head.slice(doubleColon + 2);
    head = head.slice(0, doubleColon);
  }
  const headGroups = expandGroups(head);
  const tailGroups = expandGroups(tail);
  for (let i = 0; i < headGroups.length; i++) out.writeUInt16BE(headGroups[i]!, i * 2);
  const tailStart = 8 - tailGroups.length;
  for (let i = 0; i < tailGroups.length; i++) out.writeUInt16BE(tailGroups[i]!, (tailStart + i) * 2);
  return out;
}

function expandGroups(part: string): number[] {
  if (part === '') return [];
  const groups: number[] = [];
  for (const piece of part.split(':')) {
    if (piece.includes('.')) {
      // An embedded IPv4 tail, e.g. ::ffff:10.0.0.1.
      const v4 = ipToBytes(piece);
      groups.push(v4.readUInt16BE(0), v4.readUInt16BE(2));
    } else {
      groups.push(Number.parseInt(piece, 16));
    }
  }
  return groups;
}

/** 4 or 16 bytes as IPv4 dotted or IPv6 compressed text (as `ip` prints it); other lengths as plain hex. */
export function bytesToIp(bytes: Uint8Array): string {
  if (bytes.length === 4) return `${bytes[0]}.${bytes[1]}.${bytes[2]}.${bytes[3]}`;
  if (bytes.length !== 16) return Buffer.from(bytes).toString('hex');
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((bytes[i]! << 8) | bytes[i + 1]!);
  // RFC 5952: compress the longest run (length >= 2) of zero groups, the first one on a tie.
  let bestStart = -1;
  let bestLength = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength && j - i >= 2) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = groups.map((group) => group.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLength).join(':')}`;
}

/** `address` with its host bits cleared: the destination of the prefix route of `address/length`. */
export function networkOf(address: string, length: number): string {
  const bytes = ipToBytes(address);
  for (let bit = length; bit < bytes.length * 8; bit++) bytes[bit >> 3]! &= ~(0x80 >> (bit & 7));
  return bytesToIp(bytes);
}

/** Parses "10.0.0.2/24" into its address and prefix length; a bare address gets the full length. */
export function parseCidr(text: string): { address: string; prefixLength: number; family: number } {
  const slash = text.indexOf('/');
  const address = slash < 0 ? text : text.slice(0, slash);
  const family = familyOf(address);
  const maximum = family === AddressFamily.INET ? 32 : 128;
  const prefixLength = slash < 0 ? maximum : Number(text.slice(slash + 1));
  if (!Number.isInteger(prefixLength) || prefixLength < 0 || prefixLength > maximum) {
    throw new AddressFormatError('ip', text);
  }
  return { address, prefixLength, family };
}
