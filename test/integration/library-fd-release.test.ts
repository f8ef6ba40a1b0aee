/**
 * A library call that settled has let go of the pod namespace: no fd of this process names it (its
 * own netns fd, the netlink socket's SIOCGSKNS fd). A link deletion goes out on a pool thread, whose
 * end libuv reports after the kernel's answer was read, and the socket was closed only then: detach
 * settled while the namespace was still open here. Also: watchSandbox takes `signal`.
 */
import { getEventListeners } from 'node:events';
import { mkdirSync, readdirSync, readlinkSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import type { WatchSummary } from '../../src/index.js';
import { readSandbox } from '../../src/network/recorded-network.js';
import { FileLock, tryLockFile } from '../../src/network/state/lock.js';
import { attachSandbox } from '../../src/sandbox/attach.js';
import { detachSandbox } from '../../src/sandbox/detach.js';
import { addInterface, removeInterface } from '../../src/sandbox/sandbox-interfaces.js';
import { watchSandbox } from '../../src/sandbox/sandbox-watch.js';
import { stateDirectoryPerTest } from '../helpers/cli.js';
import type { TestNamespace } from '../helpers/namespace.js';
import { failureOf, fingerprint, makePod, tcfilterConfig } from '../helpers/pod.js';

const stateDirectoryOfTest = stateDirectoryPerTest('vcnet-fd-release-');

/** This process's fds whose target is the namespace (net:[inode]), by number. */
function namespaceFds(namespace: TestNamespace): string[] {
  const target = `net:[${statSync(namespace.path).ino}]`;
  return readdirSync('/proc/self/fd').filter((fd) => {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`) === target;
    } catch {
      return false; // the fd readdir itself used, closed by now
    }
  });
}

it('attach, removeInterface, addInterface and detach settle with no fd of the pod namespace open', async () => {
  const stateDirectory = stateDirectoryOfTest();
  const { pod } = makePod({ interfaces: 2 });
  const before = fingerprint(pod);
  expect(namespaceFds(pod)).toEqual([]);
  for (let round = 0; round < 3; round++) {
    await attachSandbox('fds', tcfilterConfig(pod), { stateDirectory });
    expect(namespaceFds(pod), 'after attachSandbox').toEqual([]);
    if (round > 0) {
      // Deletes eth1's tap: a link deletion, sent from a pool thread.
      await removeInterface('fds', JSON.stringify({ name: 'eth1' }), { stateDirectory });
      expect(namespaceFds(pod), 'after removeInterface').toEqual([]);
      await addInterface('fds', JSON.stringify({ device: 'eth1', name: 'eth1' }), { stateDirectory });
      expect(namespaceFds(pod), 'after addInterface').toEqual([]);
    }
    // Deletes the taps (and the pod links' ingress qdiscs) with one request from a pool thread.
    await detachSandbox('fds', { stateDirectory });
    expect(namespaceFds(pod), 'after detachSandbox').toEqual([]);
  }
  expect(fingerprint(pod)).toEqual(before);
});

it('a watch applies a removal with nothing of the change set left open, and a stopped watch holds no fd', async () => {
  const stateDirectory = stateDirectoryOfTest();
  const { pod } = makePod({ interfaces: 2 });
  await attachSandbox('fdw', tcfilterConfig(pod), { stateDirectory });
  const applied: Array<{ summary: WatchSummary; fds: number }> = [];
  const watch = await watchSandbox('fdw', {
    stateDirectory,
    debounceMs: 20,
    onApplied: (summary) => applied.push({ summary, fds: namespaceFds(pod).length }),
  });
  try {
    // The watch's own: the namespace fd it watches through.
    const watching = namespaceFds(pod).length;
    pod.exec('ip', ['link', 'del', 'eth1']);
    const deadline = Date.now() + 10_000;
    while (applied.length === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
    expect(applied.map((entry) => entry.summary.removed)).toEqual([['eth1']]);
    // Taken in onApplied, right after the change set settled: its handle's fds are closed already.
    expect(applied[0]?.fds).toBe(watching);
  } finally {
    await watch.stop();
  }
  expect(namespaceFds(pod)).toEqual([]);
  await detachSandbox('fdw', { stateDirectory });
  expect(namespaceFds(pod)).toEqual([]);
});

it('watchSandbox takes signal: an abort stops the watch as stop() does', async () => {
  const stateDirectory = stateDirectoryOfTest();
  const { pod } = makePod();
  await attachSandbox('fda', tcfilterConfig(pod), { stateDirectory });
  const recorded = fingerprint(pod);
  const controller = new AbortController();
  const watch = await watchSandbox('fda', { stateDirectory, debounceMs: 20, signal: controller.signal });
  controller.abort();
  // Stopped, not ended by a detach: ended settles with no error, and the watch's fds are closed.
  await expect(watch.ended).resolves.toBeUndefined();
  expect(namespaceFds(pod)).toEqual([]);
  // stop() after the abort is the same stop, settled.
  await expect(watch.stop()).resolves.toEqual([]);
  expect(fingerprint(pod)).toEqual(recorded);

  // Already aborted: refused before anything is read, with the reason.
  const reason = new Error('the daemon is shutting down');
  expect(await failureOf(watchSandbox('fda', { stateDirectory, signal: AbortSignal.abort(reason) }))).toBe(reason);
  expect(namespaceFds(pod)).toEqual([]);

  // Aborted while the watch starts (waiting for the sandbox lock): rejects with the reason, nothing left running.
  mkdirSync(join(stateDirectory, '.locks'), { recursive: true, mode: 0o700 });
  const held = tryLockFile(join(stateDirectory, '.locks', 'fda'));
  expect(held).toBeInstanceOf(FileLock);
  try {
    const starting = new AbortController();
    const watching = failureOf(watchSandbox('fda', { stateDirectory, signal: starting.signal }));
    setTimeout(() => starting.abort(reason), 100);
    // The lock is held until `finally`: only the abort can end this wait, with its reason (a lock
    // timeout would reject with its own error), and the test's timeout bounds it.
    expect(await watching).toBe(reason);
  } finally {
    (held as FileLock).release();
  }
  expect(namespaceFds(pod)).toEqual([]);
  await detachSandbox('fda', { stateDirectory });
  expect(readSandbox('fda', stateDirectory)).toBeUndefined();
});

it("12 watches on one signal (a daemon's shutdown signal) add one abort listener to it: no MaxListenersExceededWarning", async () => {
  const warnings: Error[] = [];
  const onWarning = (warning: Error) => warnings.push(warning);
  process.on('warning', onWarning);
  const stateDirectory = stateDirectoryOfTest();
  const { pod } = makePod();
  await attachSandbox('fdm', tcfilterConfig(pod), { stateDirectory });
  const controller = new AbortController();
  try {
    const watches = [];
    for (let count = 0; count < 12; count++) {
      watches.push(await watchSandbox('fdm', { stateDirectory, debounceMs: 20, signal: controller.signal }));
    }
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(1);
    controller.abort();
    for (const watch of watches) await expect(watch.ended).resolves.toBeUndefined();
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
    // Node emits the warning on a later tick.
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(warnings.map((warning) => warning.name)).toEqual([]);
  } finally {
    controller.abort();
    process.off('warning', onWarning);
    await detachSandbox('fdm', { stateDirectory });
  }
  expect(namespaceFds(pod)).toEqual([]);
});
