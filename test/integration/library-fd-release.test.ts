/**
 * A library call that settled has let go of the pod namespace: no fd of this process names it (its
 * own netns fd, the netlink socket's SIOCGSKNS fd). A link deletion goes out on a pool thread, whose
 * end libuv reports after the kernel's answer was read, and the socket was closed only then: detach
 * settled while the namespace was still open here.
 */
import { readdirSync, readlinkSync, statSync } from 'node:fs';
import { expect, it } from 'vitest';
import type { WatchSummary } from '../../src/index.js';
import { addInterface, removeInterface } from '../../src/sandbox/sandbox-interfaces.js';
import { watchSandbox } from '../../src/sandbox/sandbox-watch.js';
import { attachSandbox, detachSandbox } from '../../src/sandbox/service.js';
import { stateDirectoryPerTest } from '../helpers/cli.js';
import type { TestNamespace } from '../helpers/namespace.js';
import { fingerprint, makePod, tcfilterConfig } from '../helpers/pod.js';

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
