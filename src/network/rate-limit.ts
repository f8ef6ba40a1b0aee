/**
 * Rate limits as Kata sets them (rx_rate_limiter_max_rate / tx_rate_limiter_max_rate, bits per second).
 * The htb and ifb steps that enforce them are planned in plan/plan-attach.ts.
 */
import { InvalidInputError } from '../errors.js';

/**
 * The smallest rate tc can enforce: htb takes bytes per second, and below 8 bits that is 0, which
 * the kernel refuses (EINVAL when the class is added, deep inside an attach).
 */
export const MIN_BITS_PER_SECOND = 8;

/** A tc rate limit in bits per second: 0 or absent (off), or at least MIN_BITS_PER_SECOND. */
export function validateBitRate(field: string, value: unknown): number | undefined {
  const rate = validateRate(field, value);
  if (rate !== undefined && rate < MIN_BITS_PER_SECOND)
    throw new InvalidInputError(field, value, `0 (off) or at least ${MIN_BITS_PER_SECOND} bits per second`);
  return rate;
}

export function validateRate(field: string, value: unknown): number | undefined {
  if (value === undefined || value === 0) return undefined;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new InvalidInputError(field, value, 'a whole number of bits per second (0 = no limit)');
  }
  return value;
}
