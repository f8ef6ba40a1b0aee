/**
 * Builds netlink messages straight into one growing buffer, so that a whole batch of requests (an
 * attach is about ten of them) is a single buffer and a single sendto().
 */
import { NLA_F_NESTED, NLA_HEADER_LENGTH, NLMSG_HEADER_LENGTH } from './constants.js';

const align4 = (n: number): number => (n + 3) & ~3;

/**
 * Builds netlink requests in one growing buffer: begin a message, write its header and attributes (nested
 * ones too), end it, and `finish()` gives the bytes of every message written.
 */
export class MessageWriter {
  private buffer: Buffer;
  private offset = 0;
  private messageStart = -1;
  private readonly nestStack: number[] = [];

  // Not zero-filled: every byte up to `length` is written (padding included), and only those are sent.
  // Below 4 KiB the buffer is a slice of Node's shared pool, so a batch costs no allocation of its own.
  constructor(initialSize = 1024) {
    this.buffer = Buffer.allocUnsafe(initialSize);
  }

  get length(): number {
    return this.offset;
  }

  private reserve(bytes: number): void {
    if (this.offset + bytes <= this.buffer.length) return;
    let size = this.buffer.length * 2;
    while (size < this.offset + bytes) size *= 2;
    const grown = Buffer.allocUnsafe(size);
    this.buffer.copy(grown, 0, 0, this.offset);
    this.buffer = grown;
  }

  /** Starts a message; returns its offset in the batch. The length is patched by endMessage(). */
  beginMessage(type: number, flags: number, sequence: number): number {
    if (this.messageStart >= 0) throw new Error('netlink writer: previous message not ended');
    this.reserve(NLMSG_HEADER_LENGTH);
    const start = this.offset;
    this.buffer.writeUInt32LE(0, start);
    this.buffer.writeUInt16LE(type, start + 4);
    this.buffer.writeUInt16LE(flags, start + 6);
    this.buffer.writeUInt32LE(sequence >>> 0, start + 8);
    this.buffer.writeUInt32LE(0, start + 12);
    this.offset += NLMSG_HEADER_LENGTH;
    this.messageStart = start;
    return start;
  }

  endMessage(): void {
    if (this.messageStart < 0) throw new Error('netlink writer: no message to end');
    if (this.nestStack.length > 0) throw new Error('netlink writer: unclosed nested attribute');
    this.buffer.writeUInt32LE(this.offset - this.messageStart, this.messageStart);
    this.messageStart = -1;
  }

  /**
   * Drops the message begun by beginMessage() and everything written into it since (open nested
   * attributes included), so that an encoder that threw leaves the batch as it was before.
   */
  abortMessage(): void {
    if (this.messageStart < 0) return;
    this.offset = this.messageStart;
    this.messageStart = -1;
    this.nestStack.length = 0;
  }

  /**
   * Raw fixed-size family header (ifinfomsg, rtmsg...): returns a view to fill, zeroed. Fill it before
   * the next write: a write that grows the buffer leaves the view on the old one.
   */
  header(size: number): Buffer {
    this.reserve(align4(size));
    const view = this.buffer.subarray(this.offset, this.offset + size);
    view.fill(0);
    this.buffer.fill(0, this.offset + size, this.offset + align4(size));
    this.offset += align4(size);
    return view;
  }

  bytes(type: number, value: Uint8Array): this {
    const length = NLA_HEADER_LENGTH + value.length;
    this.reserve(align4(length));
    this.buffer.writeUInt16LE(length, this.offset);
    this.buffer.writeUInt16LE(type, this.offset + 2);
    this.buffer.set(value, this.offset + NLA_HEADER_LENGTH);
    this.buffer.fill(0, this.offset + length, this.offset + align4(length));
    this.offset += align4(length);
    return this;
  }

  /** A view into a new attribute's payload, zeroed, for structs written in place (fill it before the next write). */
  struct(type: number, size: number): Buffer {
    const length = NLA_HEADER_LENGTH + size;
    this.reserve(align4(length));
    this.buffer.writeUInt16LE(length, this.offset);
    this.buffer.writeUInt16LE(type, this.offset + 2);
    const view = this.buffer.subarray(this.offset + NLA_HEADER_LENGTH, this.offset + length);
    view.fill(0);
    this.buffer.fill(0, this.offset + length, this.offset + align4(length));
    this.offset += align4(length);
    return view;
  }

  // The fixed-size attributes are written in place, without a view per attribute. The value is
  // written after this returns: it may have grown (replaced) the buffer, so `this.buffer` must be read
  // afresh, never captured before the call (`this.buffer.writeX(v, this.fixed(...))` wrote into the
  // old buffer whenever an attribute crossed its end).
  private fixed(type: number, size: number): number {
    const length = NLA_HEADER_LENGTH + size;
    const padded = align4(length);
    this.reserve(padded);
    const at = this.offset;
    this.buffer.writeUInt16LE(length, at);
    this.buffer.writeUInt16LE(type, at + 2);
    if (padded > length) this.buffer.fill(0, at + length, at + padded);
    this.offset += padded;
    return at + NLA_HEADER_LENGTH;
  }

  u8(type: number, value: number): this {
    const at = this.fixed(type, 1);
    this.buffer.writeUInt8(value, at);
    return this;
  }

  u16(type: number, value: number): this {
    const at = this.fixed(type, 2);
    this.buffer.writeUInt16LE(value, at);
    return this;
  }

  u32(type: number, value: number): this {
    const at = this.fixed(type, 4);
    this.buffer.writeUInt32LE(value >>> 0, at);
    return this;
  }

  s32(type: number, value: number): this {
    const at = this.fixed(type, 4);
    this.buffer.writeInt32LE(value, at);
    return this;
  }

  u64(type: number, value: bigint): this {
    const at = this.fixed(type, 8);
    this.buffer.writeBigUInt64LE(value, at);
    return this;
  }

  /** A NUL-terminated string, as the kernel expects for names and kinds. */
  string(type: number, value: string): this {
    const at = this.fixed(type, Buffer.byteLength(value, 'utf8') + 1);
    const written = this.buffer.write(value, at, 'utf8');
    this.buffer[at + written] = 0;
    return this;
  }

  beginNested(type: number): this {
    this.reserve(NLA_HEADER_LENGTH);
    this.nestStack.push(this.offset);
    this.buffer.writeUInt16LE(0, this.offset);
    this.buffer.writeUInt16LE(type | NLA_F_NESTED, this.offset + 2);
    this.offset += NLA_HEADER_LENGTH;
    return this;
  }

  /** A nested attribute without NLA_F_NESTED, for the few places the kernel parses by position. */
  beginNestedPlain(type: number): this {
    this.beginNested(type);
    const start = this.nestStack[this.nestStack.length - 1]!;
    this.buffer.writeUInt16LE(type, start + 2);
    return this;
  }

  endNested(): this {
    const start = this.nestStack.pop();
    if (start === undefined) throw new Error('netlink writer: endNested without beginNested');
    this.buffer.writeUInt16LE(this.offset - start, start);
    return this;
  }

  /** The finished batch. The returned buffer is a copy-free view; do not write more after sending. */
  finish(): Buffer {
    if (this.messageStart >= 0) throw new Error('netlink writer: message not ended');
    return this.buffer.subarray(0, this.offset);
  }
}
