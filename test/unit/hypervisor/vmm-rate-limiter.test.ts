/**
 * Cloud Hypervisor's limiter from configuration.toml (net_rate_limiter_*), computed as Kata's
 * getNetRateLimiterConfig does (its TestCloudHypervisorNetRateLimiter cases), and checked against
 * Cloud Hypervisor's published NetConfig schema.
 */
import { describe, expect, it } from 'vitest';
import {
  cloudHypervisorNetConfig,
  cloudHypervisorRateLimiterConfig,
} from '../../../src/hypervisor/cloud-hypervisor.js';
import { parseKataConfiguration } from '../../../src/network/config.js';
import { cloudHypervisorSchemas, errorsOf, validatorFor } from './api-schemas.js';

const netConfig = validatorFor(cloudHypervisorSchemas, 'NetConfig').closed;

describe('Cloud Hypervisor limiter from configuration.toml', () => {
  it('reads net_rate_limiter_* from [hypervisor.clh]', () => {
    const settings = parseKataConfiguration(
      '[hypervisor.clh]\nnet_rate_limiter_bw_max_rate = 10000000\nnet_rate_limiter_bw_one_time_burst = 8000000\n' +
        'net_rate_limiter_ops_one_time_burst = 100\n',
    );
    expect(settings.cloudHypervisorRateLimiter).toEqual({
      bandwidth: { maxRate: 10_000_000, oneTimeBurst: 8_000_000 },
    });
    // A burst without its rate is ignored, as Kata ignores it, and said so.
    expect(settings.warnings).toEqual([
      'hypervisor.clh.net_rate_limiter_ops_one_time_burst is ignored without net_rate_limiter_ops_max_rate',
    ]);
  });

  it('refuses a bad value, naming the key', () => {
    expect(() => parseKataConfiguration('[hypervisor.clh]\nnet_rate_limiter_ops_max_rate = -5\n')).toThrow(
      /hypervisor\.clh\.net_rate_limiter_ops_max_rate/,
    );
  });

  it.each([
    [{}, undefined],
    [{ bandwidth: { maxRate: 0, oneTimeBurst: 10_000 } }, undefined],
    [{ bandwidth: { maxRate: 1000 } }, { bandwidth: { size: 125, refill_time: 1000 } }],
    [
      { bandwidth: { maxRate: 10_000_000, oneTimeBurst: 8_000_000 } },
      { bandwidth: { size: 1_304_576, one_time_burst: 1_048_576, refill_time: 1000 } },
    ],
    [{ operations: { maxRate: 500 } }, { ops: { size: 500, refill_time: 1000 } }],
    [
      { operations: { maxRate: 500, oneTimeBurst: 100 }, bandwidth: { maxRate: 8000 } },
      { bandwidth: { size: 1024, refill_time: 1000 }, ops: { size: 500, one_time_burst: 100, refill_time: 1000 } },
    ],
  ])('%j -> %j', (settings, expected) => {
    const limiter = cloudHypervisorRateLimiterConfig(settings);
    expect(limiter).toEqual(expected);
    if (limiter) {
      const body = cloudHypervisorNetConfig(
        { id: 'net0', tapName: 'tap0_kata', queues: 1, guestMac: '02:00:00:00:00:01' },
        { rateLimiter: limiter },
      );
      expect(netConfig(body), errorsOf(netConfig)).toBe(true);
      expect(body.rate_limiter_config).toEqual(limiter);
    }
  });
});
