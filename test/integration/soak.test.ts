/**
 * The soak of bench/soak.ts, short enough for `npm test`: 100 attach/detach cycles (4 endpoints,
 * every model, rate limits) and 10 sandboxes attached and detached concurrently by separate `vcnet`
 * processes. Nothing may be left: no vcnet link, no qdisc or filter, no fd, no state file, and every
 * pod namespace identical to before. Speed is printed by `npx tsx bench/soak.ts`, not asserted here.
 */
import { execFileSync } from 'node:child_process';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runConcurrentSoak, runCycleSoak, SOAK_VARIANTS } from '../../bench/soak.js';
import { cleanupNamespaces } from '../helpers/namespace.js';

const soakNamespaces = () =>
  execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
    .split('\n')
    .map((line) => line.split(' ')[0] ?? '')
    .filter((name) => name.startsWith('vcnet-soak-'));

let namespacesBefore: string[] = [];

beforeEach(() => {
  namespacesBefore = soakNamespaces();
});

afterEach(() => {
  cleanupNamespaces();
  // The soak deletes its namespaces in `finally`; none of this test's may outlive it.
  expect(soakNamespaces().filter((name) => !namespacesBefore.includes(name))).toEqual([]);
});

describe('soak', () => {
  it('100 attach/detach cycles of 4 endpoints, rotating the models, leave no link, qdisc, filter or fd', async () => {
    const result = await runCycleSoak({ cycles: 100 });
    console.log(
      `soak: ${result.cycles} cycles, ${result.cycleMs.median} ms median per cycle; fds ${result.fdStart} -> ${result.fdEnd}; ` +
        `RSS +${(result.rssGrowthBytes / 1048576).toFixed(2)} MiB after ${result.warmupCycles} warm-up cycles (gc by ${result.garbageCollection})`,
    );
    expect(result.leaks).toEqual([]);
    expect(Object.keys(result.cyclesByVariant).sort()).toEqual(SOAK_VARIANTS.map((variant) => variant.label).sort());
    expect(Object.values(result.cyclesByVariant)).toEqual([25, 25, 25, 25]);
    // The kept tap/macvtap fds were really open while attached, so the fd comparison can fail.
    expect(result.fdWhileAttachedMax).toBeGreaterThanOrEqual(result.fdStart + result.endpoints);
    expect(result.fdEnd).toBe(result.fdStart);
    expect(result.rssGrowthBytes).toBeLessThanOrEqual(result.rssGrowthBoundBytes);
    expect(result.heapGrowthBytes).toBeLessThanOrEqual(result.heapGrowthBoundBytes);
  });

  it('10 sandboxes attached and detached concurrently by separate vcnet processes leave every pod as it was', async () => {
    const result = await runConcurrentSoak({ sandboxes: 10 });
    console.log(
      `soak: ${result.sandboxes} sandboxes, attach all ${result.attachAllMs} ms, detach all ${result.detachAllMs} ms`,
    );
    expect(result.failures).toEqual([]);
    expect(result.leaks).toEqual([]);
    expect(result.leftoverState).toEqual([]);
    expect(result.models).toEqual({ tcfilter: 4, macvtap: 3, none: 3 });
  });
});
