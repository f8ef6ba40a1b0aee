/** ttrpc framing: header layout, frames split and merged arbitrarily, oversized frames skipped. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { encodeFrame, FrameDecoder, FrameType, MAX_FRAME_LENGTH } from '../../../src/agent/ttrpc/frame.js';

describe('encodeFrame', () => {
  it('writes length and stream id big-endian, then type and flags', () => {
    const frame = encodeFrame(0x01020304, FrameType.RESPONSE, 0x05, new Uint8Array([0xaa, 0xbb]));
    expect([...frame]).toEqual([0, 0, 0, 2, 1, 2, 3, 4, 2, 5, 0xaa, 0xbb]);
  });
});

describe('FrameDecoder', () => {
  const frames = [
    encodeFrame(1, FrameType.REQUEST, 0, Buffer.from('first')),
    encodeFrame(3, FrameType.REQUEST, 0, Buffer.alloc(0)),
    encodeFrame(5, FrameType.REQUEST, 0, Buffer.alloc(3000, 7)),
  ];
  const all = Buffer.concat(frames);

  it('returns nothing until a frame is whole, also when fed one byte at a time', () => {
    const decoder = new FrameDecoder();
    const seen = [];
    for (const byte of all) seen.push(...decoder.push(Buffer.from([byte])));
    expect(seen.map((f) => (f.kind === 'frame' ? [f.header.streamId, f.payload.length] : f.kind))).toEqual([
      [1, 5],
      [3, 0],
      [5, 3000],
    ]);
    expect(decoder.bufferedBytes).toBe(0);
  });

  it('gives the same frames however the bytes are cut', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: all.length - 1 }), { maxLength: 8 }), (cuts) => {
        const points = [0, ...[...new Set(cuts)].sort((a, b) => a - b), all.length];
        const decoder = new FrameDecoder();
        const decoded = [];
        for (let i = 0; i + 1 < points.length; i++)
          decoded.push(...decoder.push(all.subarray(points[i], points[i + 1])));
        expect(decoded).toHaveLength(3);
        decoded.forEach((frame, i) => {
          expect(frame.kind).toBe('frame');
          if (frame.kind === 'frame') expect(Buffer.compare(frame.payload, frames[i]!.subarray(10))).toBe(0);
        });
      }),
      { numRuns: 200 },
    );
  });

  it('reports a frame over the limit once, skips its data without keeping it, and carries on', () => {
    const decoder = new FrameDecoder(1024);
    const header = Buffer.alloc(10);
    header.writeUInt32BE(5000, 0);
    header.writeUInt32BE(7, 4);
    header.writeUInt8(FrameType.REQUEST, 8);
    const first = decoder.push(header);
    expect(first).toEqual([{ kind: 'oversized', header: { length: 5000, streamId: 7, type: 1, flags: 0 } }]);
    for (let i = 0; i < 5; i++) {
      expect(decoder.push(Buffer.alloc(1000))).toEqual([]);
      expect(decoder.bufferedBytes).toBe(0);
    }
    const after = decoder.push(encodeFrame(9, FrameType.REQUEST, 0, Buffer.from('ok')));
    expect(after).toHaveLength(1);
    expect(after[0]!.header.streamId).toBe(9);
  });

  it("uses ttrpc's 4 MiB limit by default", () => {
    expect(MAX_FRAME_LENGTH).toBe(4 * 1024 * 1024);
    const header = Buffer.alloc(10);
    header.writeUInt32BE(MAX_FRAME_LENGTH + 1, 0);
    expect(new FrameDecoder().push(header)[0]!.kind).toBe('oversized');
  });
});
