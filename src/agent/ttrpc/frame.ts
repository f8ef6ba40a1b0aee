/**
 * ttrpc framing: every message is a 10-byte header (data length u32 BE, stream id u32 BE, type u8,
 * flags u8) followed by `length` bytes of protobuf. Byte streams arrive in arbitrary pieces, so the
 * decoder keeps what it has until a frame is whole.
 */
import type { Duplex } from 'node:stream';

export const FRAME_HEADER_LENGTH = 10;
/** ttrpc's messageLengthMax (4 MiB): both peers refuse larger frames. */
export const MAX_FRAME_LENGTH = 4 << 20;

export const FrameType = { REQUEST: 1, RESPONSE: 2, DATA: 3 } as const;

export interface FrameHeader {
  length: number;
  streamId: number;
  type: number;
  flags: number;
}

export type DecodedFrame =
  | { kind: 'frame'; header: FrameHeader; payload: Buffer }
  /** A header announced more than the limit: its data is skipped (never buffered), as ttrpc does. */
  | { kind: 'oversized'; header: FrameHeader };

export function encodeFrame(streamId: number, type: number, flags: number, payload: Uint8Array): Buffer {
  const frame = Buffer.allocUnsafe(FRAME_HEADER_LENGTH + payload.length);
  frame.writeUInt32BE(payload.length, 0);
  frame.writeUInt32BE(streamId >>> 0, 4);
  frame.writeUInt8(type, 8);
  frame.writeUInt8(flags, 9);
  frame.set(payload, FRAME_HEADER_LENGTH);
  return frame;
}

/**
 * Ends a byte stream so the peer sees the end (a socket's FIN), then destroys it: right away once the
 * end is flushed, or after a short grace period when a stuck peer keeps it from flushing.
 */
export function endThenDestroy(stream: Duplex, graceMs = 200): void {
  if (stream.destroyed) return;
  const timer = setTimeout(() => stream.destroy(), graceMs);
  timer.unref();
  stream.once('finish', () => {
    clearTimeout(timer);
    stream.destroy();
  });
  stream.end();
}

export class FrameDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private header: FrameHeader | undefined;
  /** Bytes of an oversized frame still to skip. */
  private skipping = 0;

  constructor(private readonly maxLength = MAX_FRAME_LENGTH) {}

  /** Bytes held while waiting for the rest of a frame. */
  get bufferedBytes(): number {
    return this.buffered;
  }

  /** Feeds bytes; returns every frame they complete, in order. */
  push(chunk: Uint8Array): DecodedFrame[] {
    if (chunk.length > 0) {
      this.chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length));
      this.buffered += chunk.length;
    }
    const frames: DecodedFrame[] = [];
    for (;;) {
      if (this.skipping > 0) {
        const skipped = Math.min(this.skipping, this.buffered);
        this.take(skipped);
        this.skipping -= skipped;
        if (this.skipping > 0) return frames;
      }
      if (!this.header) {
        if (this.buffered < FRAME_HEADER_LENGTH) return frames;
        const bytes = this.take(FRAME_HEADER_LENGTH);
        const header: FrameHeader = {
          length: bytes.readUInt32BE(0),
          streamId: bytes.readUInt32BE(4),
          type: bytes.readUInt8(8),
          flags: bytes.readUInt8(9),
        };
        if (header.length > this.maxLength) {
          this.skipping = header.length;
          frames.push({ kind: 'oversized', header });
          continue;
        }
        this.header = header;
      }
      if (this.buffered < this.header.length) return frames;
      frames.push({ kind: 'frame', header: this.header, payload: this.take(this.header.length) });
      this.header = undefined;
    }
  }

  private take(count: number): Buffer {
    if (count === 0) return Buffer.alloc(0);
    const first = this.chunks[0]!;
    let result: Buffer;
    if (first.length >= count) {
      result = first.subarray(0, count);
      if (first.length === count) this.chunks.shift();
      else this.chunks[0] = first.subarray(count);
    } else {
      result = Buffer.allocUnsafe(count);
      let filled = 0;
      while (filled < count) {
        const head = this.chunks[0]!;
        const part = Math.min(head.length, count - filled);
        head.copy(result, filled, 0, part);
        filled += part;
        if (part === head.length) this.chunks.shift();
        else this.chunks[0] = head.subarray(part);
      }
    }
    this.buffered -= count;
    return result;
  }
}
