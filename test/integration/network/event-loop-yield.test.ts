/**
 * Library calls inside a long-running daemon let its event loop run: a gc over many namespaces and
 * a scan of a namespace with a thousand links yield between namespaces and dump parts (a timer set
 * before the call fires before the call settles), and a daemon's `while (!stop) await
 * collectGarbage()` loop no longer starves concurrent attaches waiting for their locks on timers.
 * Deleting links (the kernel waits for RCU grace periods inside that sendto, ~20 ms a link) runs on
 * a pool thread, so a detach's or gc's deletions do not stop the loop either.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { NetlinkHandle } from '../../../src/netlink/handle.js';
import { collectGarbage } from '../../../src/network/garbage-collector.js';
import { scanNamespace } from '../../../src/network/scan.js';
import { attachSandbox } from '../../../src/sandbox/attach.js';
import { detachSandbox } from '../../../src/sandbox/detach.js';
import { cleanupNamespaces, makeNamespace } from '../../helpers/namespace.js';
import { makePod, tcfilterConfig } from '../../helpers/pod.js';
import { until } from '../../helpers/until.js';

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

it('a timer fires while the kernel deletes links (one link, a group, a detach)', async () => {
  const pod = makeNamespace('del');
  execFileSync('ip', ['-n', pod.name, 'link', 'add', 'a0', 'type', 'veth', 'peer', 'name', 'b0']);
  for (let i = 1; i <= 4; i++) {
    execFileSync('ip', ['-n', pod.name, 'link', 'add', `a${i}`, 'group', '77', 'type', 'veth', 'peer', `b${i}`]);
  }
  const handle = NetlinkHandle.open(pod.path);
  try {
    const a0 = await handle.linkByName('a0');
    expect(await timerFiresDuring(() => handle.deleteLink(a0.index))).toBe(true);
    expect(await timerFiresDuring(() => handle.deleteLinkGroup(77))).toBe(true);
    // Deleted, and the socket still answers in order after its sends on a pool thread.
    expect((await handle.links()).map((link) => link.name).filter((name) => /^[ab]\d$/.test(name))).toEqual([]);
    await expect(handle.deleteLink(a0.index)).rejects.toThrow(/ENODEV|No such device/);
  } finally {
    handle.close();
  }
  const { pod: podOfSandbox } = makePod();
  await attachSandbox('deleting', tcfilterConfig(podOfSandbox), { stateDirectory: work });
  expect(await timerFiresDuring(() => detachSandbox('deleting', { stateDirectory: work }))).toBe(true);
});

it('closing a handle while a deletion is out keeps the fd until it is back', async () => {
  const pod = makeNamespace('close');
  execFileSync('ip', ['-n', pod.name, 'link', 'add', 'c0', 'type', 'veth', 'peer', 'name', 'd0']);
  const handle = NetlinkHandle.open(pod.path);
  const c0 = await handle.linkByName('c0');
  const deleting = handle.deleteLink(c0.index);
  handle.close();
  const error = await deleting.then(
    () => undefined,
    (failure: Error) => failure,
  );
  expect((error?.cause as { code?: string } | undefined)?.code).toBe('VCNET_HANDLE_CLOSED');
  // The send itself still went out on the socket's own fd (from a pool thread, which a busy machine
  // may run late): the link goes, and nothing else was hit.
  const links = () => execFileSync('ip', ['-n', pod.name, '-o', 'link', 'show']).toString();
  await until(() => !/c0@|d0@/.test(links()), 'c0 deleted by the send made before the close');
});
