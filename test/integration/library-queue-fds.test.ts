/**
 * A long-lived process that opens a macvtap's queues (endpoint.openQueueFds()) and detaches the
 * sandbox without closing them itself: detachSandbox and removeInterface close them, as
 * docs/library.md says, also when the namespace went first. And a /dev/tapN this process opened
 * some other way is said by detach's held-device notice.
 */
import { closeSync, openSync, readdirSync, readlinkSync } from 'node:fs';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { channels, type NoticeEvent } from '../../src/diagnostics.js';
import { attachSandbox } from '../../src/sandbox/attach.js';
import { detachSandbox } from '../../src/sandbox/detach.js';
import { removeInterface } from '../../src/sandbox/sandbox-interfaces.js';
import { stateDirectoryPerTest } from '../helpers/cli.js';
import { fingerprint, makePod, tcfilterConfig } from '../helpers/pod.js';

const stateDirectoryOfTest = stateDirectoryPerTest('vcnet-queue-fds-');

/** This process's fds on a /dev/tapN node (open or of a deleted macvtap), as `fd->target`. */
function tapFds(): string[] {
  return readdirSync('/proc/self/fd').flatMap((fd) => {
    try {
      const target = readlinkSync(`/proc/self/fd/${fd}`);
      return /\/dev\/tap\d+/.test(target) ? [`${fd}->${target}`] : [];
    } catch {
      return []; // the fd readdir itself used, closed by now
    }
  });
}

const notices: NoticeEvent[] = [];
const onNotice = (event: unknown) => notices.push(event as NoticeEvent);
beforeEach(() => {
  notices.length = 0;
  channels.notice.subscribe(onNotice);
});
afterEach(() => {
  channels.notice.unsubscribe(onNotice);
});

it('20 attach, openQueueFds and detach cycles leave no fd open', async () => {
  const stateDirectory = stateDirectoryOfTest();
  const { pod } = makePod({ interfaces: 2 });
  const before = fingerprint(pod);
  const config = tcfilterConfig(pod, { model: 'macvtap', queues: 2 });
  // One cycle first: libuv's pool and the first netlink use make their own fds once.
  await detachSandbox('fdq', { stateDirectory });
  await attachSandbox('fdq', config, { stateDirectory });
  await detachSandbox('fdq', { stateDirectory });
  const fdsBefore = readdirSync('/proc/self/fd').length;
  for (let cycle = 0; cycle < 20; cycle++) {
    const attached = await attachSandbox('fdq', config, { stateDirectory });
    for (const endpoint of attached.endpoints) endpoint.openQueueFds();
    // Two endpoints, two queues each.
    expect(tapFds()).toHaveLength(4);
    await detachSandbox('fdq', { stateDirectory });
    expect(tapFds(), `after detach ${cycle}`).toEqual([]);
    // Closed by detach: closeFds() afterwards is a no-op, never a close of a number reused since.
    for (const endpoint of attached.endpoints)
      expect(endpoint.networkDevice({ openedByLauncher: true }).fds).toBeUndefined();
  }
  // 80 fds leaked before detach closed them; some slack for the worker's own (IPC, timers).
  expect(readdirSync('/proc/self/fd').length).toBeLessThanOrEqual(fdsBefore + 4);
  // The process's own queues, closed by detach first, are not "still open" by a VM.
  expect(notices.filter((notice) => notice.message.includes('is still open'))).toEqual([]);
  expect(fingerprint(pod)).toEqual(before);
});

it('removeInterface closes the removed endpoint’s queues, detach the others', async () => {
  const stateDirectory = stateDirectoryOfTest();
  const { pod } = makePod({ interfaces: 2 });
  const attached = await attachSandbox('fdr', tcfilterConfig(pod, { model: 'macvtap' }), { stateDirectory });
  for (const endpoint of attached.endpoints) endpoint.openQueueFds();
  const [first, second] = attached.endpoints;
  const deviceOf = (endpoint: typeof first) => endpoint?.plumbing?.tapDevicePath as string;
  expect(tapFds().filter((fd) => fd.endsWith(deviceOf(first)))).toHaveLength(1);
  await removeInterface('fdr', JSON.stringify({ name: first?.name }), { stateDirectory });
  expect(tapFds().filter((fd) => fd.includes(deviceOf(first)))).toEqual([]);
  expect(tapFds().filter((fd) => fd.endsWith(deviceOf(second)))).toHaveLength(1);
  await detachSandbox('fdr', { stateDirectory });
  expect(tapFds()).toEqual([]);
});

it('a detach whose namespace is gone closes the queues', async () => {
  const stateDirectory = stateDirectoryOfTest();
  const { pod } = makePod();
  const attached = await attachSandbox('fdg', tcfilterConfig(pod, { model: 'macvtap' }), { stateDirectory });
  for (const endpoint of attached.endpoints) endpoint.openQueueFds();
  const path = attached.endpoints[0]?.plumbing?.tapDevicePath as string;
  expect(tapFds().filter((fd) => fd.includes(path))).toHaveLength(1);
  pod.delete();
  const result = await detachSandbox('fdg', { stateDirectory });
  expect(result.namespaceGone).toBe(pod.path);
  expect(tapFds().filter((fd) => fd.includes(path))).toEqual([]);
});

it('a /dev/tapN this process opened itself is said as still open by this pid', async () => {
  const stateDirectory = stateDirectoryOfTest();
  const { pod } = makePod();
  const attached = await attachSandbox('fdh', tcfilterConfig(pod, { model: 'macvtap' }), { stateDirectory });
  const endpoint = attached.endpoints[0];
  const path = endpoint?.plumbing?.tapDevicePath as string;
  // Not through an endpoint: detach cannot close it, and must not pass over it as this process's own.
  const fd = openSync(path, 'r+');
  try {
    await detachSandbox('fdh', { stateDirectory });
  } finally {
    closeSync(fd);
  }
  const held = notices.filter((notice) => notice.message.includes('is still open'));
  expect(held.map((notice) => notice.details?.pids)).toEqual([[process.pid]]);
});
