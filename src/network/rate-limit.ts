/**
 * Rate limits as Kata sets them (rx_rate_limiter_max_rate / tx_rate_limiter_max_rate, bits per second).
 * The htb and ifb steps that enforce them are planned in plan/plan-attach.ts.
 */
import { InvalidInputError } from '../errors.js';

export { FILTER_PRIORITY, ifbName } from './plan/plan-attach.js';

export type { RateLimit } from './plan/types.js';

export function validateRate(field: string, value: unknown): number | undefined {
  if (value === undefined || value === 0) return undefined;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new InvalidInputError(field, value, 'a whole number of bits per second (0 = no limit)');
  }
  return value;
}
