/**
 * Library calls inside a long-running daemon let its event loop run: a gc over many namespaces and
 * a scan of a namespace with a thousand links yield between namespaces and dump parts (a timer set
 * before the call fires before the call settles), and a daemon's `while (!stop) await
 * collectGarbage()` loop no longer starves concurrent attaches waiting for their locks on timers.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { collectGarbage } from '../../../src/network/garbage-collector.js';
import { scanNamespace } from '../../../src/network/scan.js';
import { attachSandbox, detachSandbox } from '../../../src/sandbox/service.js';
import { cleanupNamespaces, makeNamespace } from '../../helpers/namespace.js';
import { makePod, tcfilterConfig } from '../../helpers/pod.js';

let work: string;

beforeEach(() => {
  work = mkdtempSync(join(tmpdir(), 'vcnet-yield-'));
});

afterEach(() => {
  cleanupNamespaces();
  rmSync(work, { recursive: true, force: true });
});

/** Whether a timer set just before `run` fired before its promise settled. */
async function timerFiresDuring(run: () => Promise<unknown>): Promise<boolean> {
  let fired = false;
  const timer = setTimeout(() => {
    fired = true;
  }, 0);
  try {
    await run();
    return fired;
  } finally {
    clearTimeout(timer);
  }
}

it('a timer fires during a gc over many namespaces', async () => {
  const namespaces = Array.from({ length: 12 }, () => makeNamespace('gc').path);
  const report = { value: undefined as Awaited<ReturnType<typeof collectGarbage>> | undefined };
  const fired = await timerFiresDuring(async () => {
    report.value = await collectGarbage({ stateDirectories: [work], namespaces });
  });
  expect(report.value?.failures).toEqual([]);
  expect(fired).toBe(true);
});

it('a timer fires during a scan of a namespace with a thousand links', async () => {
  const big = makeNamespace('big');
  const batch = join(work, 'links.batch');
  writeFileSync(batch, Array.from({ length: 500 }, (_, i) => `link add t${i} type veth peer name p${i}\n`).join(''));
  execFileSync('ip', ['-n', big.name, '-batch', batch]);
  let links = 0;
  const fired = await timerFiresDuring(async () => {
    links = (await scanNamespace(big.path)).interfaces.length;
  });
  expect(links).toBe(1000);
  expect(fired).toBe(true);
});

it('a gc loop next to attaches waiting for their locks lets them finish (the gcrace pattern)', async () => {
  const pods = Array.from({ length: 4 }, () => makePod().pod);
  const namespaces = pods.map((pod) => pod.path);
  let stop = false;
  let runs = 0;
  const loop = (async () => {
    while (!stop) {
      await collectGarbage({ stateDirectories: [work], namespaces });
      runs++;
    }
  })();
  try {
    const attached = await Promise.all(
      pods.map((pod, i) =>
        attachSandbox(`race${i}`, tcfilterConfig(pod), { stateDirectory: work, lockTimeoutMs: 5000 }),
      ),
    );
    expect(attached).toHaveLength(4);
  } finally {
    stop = true;
    await loop;
  }
  expect(runs).toBeGreaterThan(0);
  for (let i = 0; i < 4; i++) await detachSandbox(`race${i}`, { stateDirectory: work });
}, 30_000);
