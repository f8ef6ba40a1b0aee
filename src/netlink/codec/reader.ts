/**
 * Splits what the kernel sent into messages and attributes, checking every length against the
 * bytes actually there: a malformed reply becomes a MalformedMessageError, never an out-of-bounds read.
 */
import { VcnetError } from '../../errors.js';
import {
  ExtendedAck,
  MessageFlag,
  MessageType,
  NLA_HEADER_LENGTH,
  NLA_TYPE_MASK,
  NLMSG_HEADER_LENGTH,
} from './constants.js';

/**
 * Bytes from the kernel that do not parse as netlink (`VCNET_NETLINK_MALFORMED`): a length running past the
 * buffer, a header too short. `offset` is where in the buffer.
 */
export class MalformedMessageError extends VcnetError {
  static override readonly errorName: string = 'MalformedMessageError';
  readonly offset: number;
  constructor(message: string, offset: number) {
    super('VCNET_NETLINK_MALFORMED', `malformed netlink data at byte ${offset}: ${message}`, {
      value: offset,
      hint: 'a vcnet bug or a very unusual kernel: report it with this message',
    });
    this.offset = offset;
  }
}

/** One netlink message cut out of a received buffer: its header fields and its payload (after the header). */
export interface RawMessage {
  type: number;
  flags: number;
  sequence: number;
  portId: number;
  /** The message's payload (after the 16-byte header). */
  payload: Buffer;
}

const align4 = (n: number): number => (n + 3) & ~3;

/**
 * Splits what one receive returned into its netlink messages. Throws `MalformedMessageError` when a length
 * does not fit the buffer.
 */
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

/**
 * Attributes of one level, indexed by type (the last one wins, as the kernel's own parser does).
 * Only offsets are kept; a value's bytes are sliced when asked for, which keeps decoding a dump of
 * hundreds of links cheap.
 */
export class Attributes {
  private readonly starts: number[] = [];
  private readonly ends: number[] = [];

  constructor(
    private readonly data: Buffer,
    private readonly start = 0,
  ) {
    let offset = start;
    while (offset + NLA_HEADER_LENGTH <= data.length) {
      const length = data.readUInt16LE(offset);
      const type = data.readUInt16LE(offset + 2) & NLA_TYPE_MASK;
      if (length < NLA_HEADER_LENGTH || offset + length > data.length) {
        throw new MalformedMessageError(`attribute ${type} length ${length} with ${data.length - offset} left`, offset);
      }
      this.starts[type] = offset + NLA_HEADER_LENGTH;
      this.ends[type] = offset + length;
      offset += align4(length);
    }
  }

  has(type: number): boolean {
    return this.starts[type] !== undefined;
  }

  raw(type: number): Buffer | undefined {
    const start = this.starts[type];
    return start === undefined ? undefined : this.data.subarray(start, this.ends[type]);
  }

  /** All attributes in order, including repeated types (action lists, multipath). */
  all(): Array<[number, Buffer]> {
    const ordered: Array<[number, Buffer]> = [];
    let offset = this.start;
    while (offset + NLA_HEADER_LENGTH <= this.data.length) {
      const length = this.data.readUInt16LE(offset);
      ordered.push([
        this.data.readUInt16LE(offset + 2) & NLA_TYPE_MASK,
        this.data.subarray(offset + NLA_HEADER_LENGTH, offset + length),
      ]);
      offset += align4(length);
    }
    return ordered;
  }

  private at(type: number, size: number): number | undefined {
    const start = this.starts[type];
    if (start === undefined) return undefined;
    if (this.ends[type]! - start < size) {
      throw new MalformedMessageError(`attribute ${type} is ${this.ends[type]! - start} bytes, needs ${size}`, start);
    }
    return start;
  }

  u8(type: number): number | undefined {
    const at = this.at(type, 1);
    return at === undefined ? undefined : this.data.readUInt8(at);
  }

  u16(type: number): number | undefined {
    const at = this.at(type, 2);
    return at === undefined ? undefined : this.data.readUInt16LE(at);
  }

  u32(type: number): number | undefined {
    const at = this.at(type, 4);
    return at === undefined ? undefined : this.data.readUInt32LE(at);
  }

  s32(type: number): number | undefined {
    const at = this.at(type, 4);
    return at === undefined ? undefined : this.data.readInt32LE(at);
  }

  u64(type: number): bigint | undefined {
    const at = this.at(type, 8);
    return at === undefined ? undefined : this.data.readBigUInt64LE(at);
  }

  string(type: number): string | undefined {
    const start = this.starts[type];
    if (start === undefined) return undefined;
    let end = this.ends[type]!;
    const nul = this.data.indexOf(0, start);
    if (nul >= 0 && nul < end) end = nul;
    return this.data.toString('utf8', start, end);
  }

  nested(type: number): Attributes | undefined {
    const start = this.starts[type];
    return start === undefined ? undefined : new Attributes(this.data.subarray(start, this.ends[type]));
  }
}

/**
 * What an NLMSG_ERROR message says: the errno (0 for an ack), the kernel's extended-ack text and the
 * offending attribute's offset, when given.
 */
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
  const echoed = message.flags & MessageFlag.CAPPED ? NLMSG_HEADER_LENGTH : align4(requestLength);
  readExtendedAck(message, 4 + echoed, decoded);
  return decoded;
}

/**
 * NLMSG_DONE, the end of a dump: an int error (0 when the dump completed; kernels before 4.x sent
 * no payload), then extended-ack attributes when it failed.
 */
export function decodeDone(message: RawMessage): DecodedError {
  const payload = message.payload;
  const errno = payload.length >= 4 ? -payload.readInt32LE(0) : 0;
  const decoded: DecodedError = { errno, requestType: 0, requestSequence: message.sequence };
  readExtendedAck(message, 4, decoded);
  return decoded;
}

function readExtendedAck(message: RawMessage, start: number, into: DecodedError): void {
  if (!(message.flags & MessageFlag.ACK_TLVS) || message.payload.length <= start) return;
  const extended = new Attributes(message.payload, start);
  const text = extended.string(ExtendedAck.MSG);
  if (text) into.kernelMessage = text;
  const offset = extended.u32(ExtendedAck.OFFS);
  if (offset !== undefined) into.badAttributeOffset = offset;
}

/** Whether `message` is the NLMSG_DONE that ends a dump. */
export function isDone(message: RawMessage): boolean {
  return message.type === MessageType.DONE;
}
