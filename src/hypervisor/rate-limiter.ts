/**
 * Bits per second -> the token bucket Cloud Hypervisor and Firecracker rate limiters take, computed
 * exactly as Kata does (src/runtime/virtcontainers/fc.go fcAddNetDevice, clh.go
 * getNetRateLimiterConfig, utils.RevertBytes), so a VM gets the same limit under vcnet as under Kata.
 */

/** One token bucket: `size` tokens (bytes for bandwidth), refilled over `refill_time` milliseconds. */
export interface TokenBucket {
  size: number;
  one_time_burst?: number;
  refill_time: number;
}

/** Kata's utils.DefaultRateLimiterRefillTimeMilliSecs: the bucket refills once a second. */
export const RATE_LIMITER_REFILL_TIME_MS = 1000;

/**
 * Kata's utils.RevertBytes. Kata's limits are in bits with decimal scaling (1000); the hypervisors
 * count bytes, and Kata re-reads each group of three decimal digits as a power of 1024
 * (1 000 000 -> 1 048 576, 1 500 000 -> 1 560 576). Odd, but it is what Kata users get.
 */
export function kataRevertBytes(bytes: number): number {
  const thousands = Math.floor(bytes / 1000);
  const remainder = bytes % 1000;
  if (thousands === 0) return bytes;
  return 1024 * kataRevertBytes(thousands) + remainder;
}

/** The bandwidth bucket for a limit in bits/s, or undefined for "no limit" (0 or absent). */
export function bandwidthTokenBucket(bitsPerSecond: number | undefined): TokenBucket | undefined {
  if (!bitsPerSecond) return undefined;
  const size = kataRevertBytes(Math.floor(bitsPerSecond / 8));
  if (size === 0) return undefined;
  return { size, refill_time: RATE_LIMITER_REFILL_TIME_MS };
}
