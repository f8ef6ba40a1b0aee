/**
 * Endpoints that cannot take tc rate limits say so instead of dropping them: a physical NIC passed to
 * the VM and a vhost-user backend carry no host-side link vcnet could shape (Kata refuses them too:
 * "rx rate limiter is unsupported for physical endpoint").
 */
import { InvalidInputError } from '../../errors.js';
import type { PlumbingContext } from '../model/plumbing-context.js';

export function refuseRateLimit(context: PlumbingContext, endpointType: string, name: string): void {
  const rx = context.rateLimit?.rxBitsPerSecond;
  const tx = context.rateLimit?.txBitsPerSecond;
  if (!rx && !tx) return;
  throw new InvalidInputError(
    rx ? 'rx_rate_limiter_max_rate' : 'tx_rate_limiter_max_rate',
    rx ?? tx,
    `0 (no limit) for ${endpointType} endpoints such as ${name}: rate limiting is unsupported for them`,
    endpointType === 'vhost-user'
      ? 'limit the rate in the vhost-user backend, or drop the rate limiter settings for this sandbox'
      : 'limit the rate on the physical port or switch, or drop the rate limiter settings for this sandbox',
  );
}
