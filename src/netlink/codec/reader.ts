/**
 * Splits what the kernel sent into messages and attributes, checking every length against the
 * bytes actually there: a malformed reply becomes a MalformedMessageError, never an out-of-bounds read.
 */
import { ExtendedAck, MessageType, NLA_HEADER_LENGTH, NLA_TYPE_MASK, NLMSG_HEADER_LENGTH } from './constants.js';

export class MalformedMessageError extends Error {
  readonly code = 'VCNET_NETLINK_MALFORMED';
  constructor(
    message: string,
    readonly offset: number,
  ) {
    super(`malformed netlink data at byte ${offset}: ${message}`);
  }
}

export interface RawMessage {
  type: number;
  flags: number;
  sequence: number;
  portId: number;
  /** The message's payload (after the 16-byte header). */
  payload: Buffer;
}

const align4 = (n: number): number => (n + 3) & ~3;

export function splitMessages(data: Buffer): RawMessage[] {
  const messages: RawMessage[] = [];
  let offset = 0;
  while (offset + NLMSG_HEADER_LENGTH <= data.length) {
    const length = data.readUInt32LE(offset);
    if (length < NLMSG_HEADER_LENGTH || offset + length > data.length) {
      throw new MalformedMessageError(`message length ${length} with ${data.length - offset} bytes left`, offset);
    }
    messages.push({
      type: data.readUInt16LE(offset + 4),
      flags: data.readUInt16LE(offset + 6),
      sequence: data.readUInt32LE(offset + 8),
      portId: data.readUInt32LE(offset + 12),
      payload: data.subarray(offset + NLMSG_HEADER_LENGTH, offset + length),
    });
    offset += align4(length);
  }
  if (offset < data.length && data.length - offset >= NLMSG_HEADER_LENGTH) {
    throw new MalformedMessageError('trailing bytes after the last message', offset);
  }
  return messages;
}

/** Attributes of one level, indexed by type (the last one wins, as the kernel's own parser does). */
export class Attributes {
  private readonly entries = new Map<number, Buffer>();
  private readonly ordered: Array<[number, Buffer]> = [];

  constructor(data: Buffer, start = 0) {
    let offset = start;
    while (offset + NLA_HEADER_LENGTH <= data.length) {
      const length = data.readUInt16LE(offset);
      const type = data.readUInt16LE(offset + 2) & NLA_TYPE_MASK;
      if (length < NLA_HEADER_LENGTH || offset + length > data.length) {
        throw new MalformedMessageError(`attribute ${type} length ${length} with ${data.length - offset} left`, offset);
      }
      const value = data.subarray(offset + NLA_HEADER_LENGTH, offset + length);
      this.entries.set(type, value);
      this.ordered.push([type, value]);
      offset += align4(length);
    }
  }

  has(type: number): boolean {
    return this.entries.has(type);
  }

  raw(type: number): Buffer | undefined {
    return this.entries.get(type);
  }

  /** All attributes in order, including repeated types (action lists, multipath). */
  all(): ReadonlyArray<[number, Buffer]> {
    return this.ordered;
  }

  private sized(type: number, size: number): Buffer | undefined {
    const value = this.entries.get(type);
    if (value === undefined) return undefined;
    if (value.length < size)
      throw new MalformedMessageError(`attribute ${type} is ${value.length} bytes, needs ${size}`, 0);
    return value;
  }

  u8(type: number): number | undefined {
    return this.sized(type, 1)?.readUInt8(0);
  }

  u16(type: number): number | undefined {
    return this.sized(type, 2)?.readUInt16LE(0);
  }

  u32(type: number): number | undefined {
    return this.sized(type, 4)?.readUInt32LE(0);
  }

  s32(type: number): number | undefined {
    return this.sized(type, 4)?.readInt32LE(0);
  }

  u64(type: number): bigint | undefined {
    return this.sized(type, 8)?.readBigUInt64LE(0);
  }

  string(type: number): string | undefined {
    const value = this.entries.get(type);
    if (value === undefined) return undefined;
    const end = value.indexOf(0);
    return value.toString('utf8', 0, end < 0 ? value.length : end);
  }

  nested(type: number): Attributes | undefined {
    const value = this.entries.get(type);
    return value === undefined ? undefined : new Attributes(value);
  }
}

export interface DecodedError {
  /** 0 for an acknowledgement, otherwise a positive errno. */
  errno: number;
  /** The kernel's own explanation, when extended acks are on. */
  kernelMessage?: string;
  /** Offset of the offending attribute inside the request, when the kernel says. */
  badAttributeOffset?: number;
  /** The header of the request this answers. */
  requestType: number;
  requestSequence: number;
}

/** NLMSG_ERROR: int error, then the request's header (capped acks), then extended-ack attributes. */
export function decodeError(message: RawMessage): DecodedError {
  const payload = message.payload;
  if (payload.length < 4 + NLMSG_HEADER_LENGTH) {
    throw new MalformedMessageError(`error message of ${payload.length} bytes`, 0);
  }
  const errno = -payload.readInt32LE(0);
  const requestLength = payload.readUInt32LE(4);
  const requestType = payload.readUInt16LE(8);
  const requestSequence = payload.readUInt32LE(12);
  const decoded: DecodedError = { errno, requestType, requestSequence };
  // With NLM_F_CAPPED only the request header is echoed; otherwise the whole request.
  const echoed = message.flags & 0x100 ? NLMSG_HEADER_LENGTH : align4(requestLength);
  if (message.flags & 0x200 && payload.length > 4 + echoed) {
    const extended = new Attributes(payload, 4 + echoed);
    const text = extended.string(ExtendedAck.MSG);
    if (text) decoded.kernelMessage = text;
    const offset = extended.u32(ExtendedAck.OFFS);
    if (offset !== undefined) decoded.badAttributeOffset = offset;
  }
  return decoded;
}

export function isDone(message: RawMessage): boolean {
  return message.type === MessageType.DONE;
}
