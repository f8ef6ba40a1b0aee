/**
 * gc looping in the process where sandboxes attach (a daemon using the library) must never take what
 * a live sandbox owns. gc lists the links first, reads the records, and only then looks at filters:
 * an attach that wrote its record after gc read them and made its taps and redirects before gc
 * listed the filters left redirects whose targets were missing from gc's old list of links, so gc
 * removed them (and the rate limit's htb) from the live sandbox as "dangling". Each round attaches
 * three pods while gc runs, lets gc finish two more whole passes, and compares every pod with how an
 * attach leaves it when no gc runs. Nothing here is timed: it fails by what gc removed.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { collectGarbage } from '../../../src/network/garbage-collector.js';
import type { GarbageItem } from '../../../src/network/gc/report.js';
import { attachSandbox } from '../../../src/sandbox/attach.js';
import { detachSandbox } from '../../../src/sandbox/detach.js';
import { cleanupNamespaces, type TestNamespace } from '../../helpers/namespace.js';
import { kataLinks, makePod, tcfilterConfig } from '../../helpers/pod.js';

let stateDir: string;

beforeEach(() => {
  stateDir = mkdtempSync(join(tmpdir(), 'vcnet-gc-attach-race-'));
});

afterEach(() => {
  cleanupNamespaces();
  rmSync(stateDir, { recursive: true, force: true });
});

/** What an attach leaves that gc could take: vcnet's links, the qdiscs, and the redirects on each pod link. */
function plumbing(pod: TestNamespace) {
  const links = kataLinks(pod);
  const qdiscs = pod
    .tcJson<Array<{ dev: string; kind: string; handle: string; parent?: string }>>('qdisc', 'show')
    .filter((qdisc) => qdisc.kind !== 'noqueue')
    .map((qdisc) => `${qdisc.dev} ${qdisc.kind} ${qdisc.handle} ${qdisc.parent ?? 'root'}`)
    .sort();
  const redirects = ['eth0', 'eth1'].map(
    (link) =>
      `${link}: ${(pod.exec('tc', ['filter', 'show', 'dev', link, 'ingress']).match(/Redirect to device/g) ?? []).length}`,
  );
  return { links, qdiscs, redirects };
}

it("never removes a live sandbox's redirects or rate limit while attaches run beside it", async () => {
  const pods = [0, 1, 2].map(() => makePod({ interfaces: 2 }).pod);
  const config = (pod: TestNamespace) =>
    tcfilterConfig(pod, { rateLimit: { rxBitsPerSecond: 10_000_000, txBitsPerSecond: 20_000_000 } });
  const options = { stateDirectory: stateDir };
  // How an attach leaves each pod when no gc runs.
  const expected = [];
  for (const [position, pod] of pods.entries()) {
    await attachSandbox(`race-${position}`, config(pod), options);
    expected.push(plumbing(pod));
    await detachSandbox(`race-${position}`, options);
  }
  expect(expected[0]!.redirects).toEqual(['eth0: 1', 'eth1: 1']);

  const namespaces = pods.map((pod) => pod.path);
  const live = new Set<string>();
  const takenFromLive: GarbageItem[] = [];
  const gcErrors: unknown[] = [];
  let passes = 0;
  /** Passes that looked into every pod (none left as being changed): gc did not just stand aside. */
  let examinedAll = 0;
  let stop = false;
  const gcLoop = (async () => {
    while (!stop) {
      const liveAtStart = new Set(live);
      try {
        const report = await collectGarbage({ stateDirectories: [stateDir], namespaces });
        for (const item of report.removed)
          if (liveAtStart.has(item.namespacePath) && live.has(item.namespacePath)) takenFromLive.push(item);
        if (!report.withheld.some((entry) => entry.beingChanged)) examinedAll++;
      } catch (error) {
        gcErrors.push(error);
      }
      passes++;
    }
  })();
  const afterTwoMorePasses = async () => {
    const target = passes + 2;
    while (passes < target && !gcErrors.length) await new Promise((resolve) => setTimeout(resolve, 5));
  };

  const changed: string[] = [];
  try {
    for (let round = 0; round < 8; round++) {
      await Promise.all(
        pods.map(async (pod, position) => {
          await attachSandbox(`race-${position}`, config(pod), options);
          live.add(pod.path);
        }),
      );
      await afterTwoMorePasses();
      for (const [position, pod] of pods.entries()) {
        const now = plumbing(pod);
        if (JSON.stringify(now) !== JSON.stringify(expected[position]))
          changed.push(`round ${round} pod ${position}: ${JSON.stringify(now)}`);
      }
      await Promise.all(
        pods.map(async (pod, position) => {
          live.delete(pod.path);
          await detachSandbox(`race-${position}`, options);
        }),
      );
    }
  } finally {
    stop = true;
    await gcLoop;
  }
  expect(gcErrors).toEqual([]);
  expect(takenFromLive.map((item) => `${item.kind} ${item.name}: ${item.detail}`)).toEqual([]);
  expect(changed).toEqual([]);
  expect(examinedAll).toBeGreaterThan(0);
  for (const pod of pods) expect(kataLinks(pod)).toEqual([]);
}, 600_000);
