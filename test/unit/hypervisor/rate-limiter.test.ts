import { describe, expect, it } from 'vitest';
import {
  bandwidthTokenBucket,
  kataRevertBytes,
  RATE_LIMITER_REFILL_TIME_MS,
} from '../../../src/hypervisor/rate-limiter.js';

describe('Kata-compatible token buckets', () => {
  // Values worked out by hand from Kata's utils.RevertBytes (recursive, 1000 -> 1024 per digit group).
  it.each([
    [0, 0],
    [999, 999],
    [1000, 1024],
    [1500, 1524],
    [1_000_000, 1_048_576],
    [1_500_000, 1_560_576],
    [125_000_000, 131_072_000],
    [1_000_000_000, 1_073_741_824],
  ])('kataRevertBytes(%d) = %d', (bytes, expected) => {
    expect(kataRevertBytes(bytes)).toBe(expected);
  });

  it('turns bits per second into bytes refilled every 1000 ms, as fc.go and clh.go do', () => {
    expect(RATE_LIMITER_REFILL_TIME_MS).toBe(1000);
    // 1 Gbit/s = 125 000 000 bytes/s, reverted to 131 072 000.
    expect(bandwidthTokenBucket(1_000_000_000)).toEqual({ size: 131_072_000, refill_time: 1000 });
    // Integer division by 8 first, as Go's uint64 arithmetic does.
    expect(bandwidthTokenBucket(8_007)).toEqual({ size: 1024, refill_time: 1000 });
  });

  it('means no limit for 0, absent, or less than one byte', () => {
    expect(bandwidthTokenBucket(0)).toBeUndefined();
    expect(bandwidthTokenBucket(undefined)).toBeUndefined();
    expect(bandwidthTokenBucket(7)).toBeUndefined();
  });
});
