/**
 * An attach writes its record (the whole record, each time) a number of times that does not grow with
 * its endpoints: every endpoint's intent (its links at chosen indexes, `unconfirmed`) goes into one
 * write before the first change. A write per endpoint and step made an attach of 500 endpoints take
 * 17 s, and one of 1,000 longer than the lock timeout. Through attachRecorded, as `vcnet attach`
 * keeps its record, counting the RecordKeeper's writes; and at every step of the executor (its test
 * seam) every link vcnet made is in the last record written, so a kill -9 there leaves it recorded.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Network, type NetworkState } from '../../../src/network/network.js';
import { setApplyTestHook } from '../../../src/network/plan/apply.js';
import type { PlumbingStep } from '../../../src/network/plan/types.js';
import { attachRecorded } from '../../../src/sandbox/recorded.js';
import { cleanupNamespaces, makeNamespace, type TestNamespace } from '../../helpers/namespace.js';
import { tcfilterConfig } from '../../helpers/pod.js';

afterEach(() => {
  setApplyTestHook(undefined);
  cleanupNamespaces();
});

/** A namespace with `count` addressed veths va<i> (their peers vb<i> have no address: not endpoints). */
function podWith(count: number): TestNamespace {
  const pod = makeNamespace('pod');
  pod.exec('sysctl', ['-q', '-w', 'net.ipv6.conf.default.accept_dad=0', 'net.ipv6.conf.all.accept_dad=0']);
  for (let i = 0; i < count; i++) {
    pod.exec('ip', ['link', 'add', `va${i}`, 'type', 'veth', 'peer', 'name', `vb${i}`]);
    pod.exec('ip', ['link', 'set', `va${i}`, 'up']);
    pod.exec('ip', ['link', 'set', `vb${i}`, 'up']);
    pod.exec('ip', ['addr', 'add', `10.77.${i}.1/24`, 'dev', `va${i}`]);
  }
  return pod;
}

function recordedLinks(state: NetworkState | undefined): Set<string> {
  const steps: PlumbingStep[] = (state?.endpoints ?? []).flatMap((endpoint) => endpoint.plumbing?.steps ?? []);
  return new Set(steps.flatMap((step) => (step.step === 'create-link' ? [step.name] : [])));
}

function vcnetLinks(pod: TestNamespace): string[] {
  return pod
    .ipJson<Array<{ ifname: string }>>('link', 'show')
    .map((link) => link.ifname)
    .filter((name) => /_kata$/.test(name));
}

/** Attaches every veth of a pod with `count` of them: the record writes, and links found unrecorded at a step. */
async function attachCounting(
  model: 'tcfilter' | 'macvtap',
  count: number,
): Promise<{ writes: number; unrecorded: string[] }> {
  const pod = podWith(count);
  const network = Network.open(tcfilterConfig(pod, { model, rateLimit: { rxBitsPerSecond: 10_000_000 } }));
  let writes = 0;
  let written: NetworkState | undefined;
  const unrecorded: string[] = [];
  setApplyTestHook(() => {
    const recorded = recordedLinks(written);
    for (const name of vcnetLinks(pod)) if (!recorded.has(name)) unrecorded.push(name);
  });
  try {
    const added = await attachRecorded(
      network,
      {},
      {
        persist: () => {
          written = structuredClone(network.save());
          writes++;
        },
        discard: () => {
          written = undefined;
        },
        path: 'counted',
      },
    );
    expect(added).toHaveLength(count);
    const recorded = recordedLinks(written);
    for (const name of vcnetLinks(pod)) if (!recorded.has(name)) unrecorded.push(name);
    setApplyTestHook(undefined);
    const report = await network.removeEndpoints();
    expect(report.left).toEqual([]);
  } finally {
    network.close();
  }
  expect(vcnetLinks(pod)).toEqual([]);
  return { writes, unrecorded };
}

describe('record writes of an attach', () => {
  for (const model of ['tcfilter', 'macvtap'] as const) {
    it(`${model}: as many for 20 endpoints as for 1, and every link made is on record before it exists`, async () => {
      const one = await attachCounting(model, 1);
      const twenty = await attachCounting(model, 20);
      expect(one.unrecorded).toEqual([]);
      expect(twenty.unrecorded).toEqual([]);
      expect(one.writes).toBeLessThanOrEqual(4);
      expect(twenty.writes).toBe(one.writes);
    }, 120_000);
  }
});
