/**
 * A watch whose netlink event socket overran (the kernel dropped events: ENOBUFS) keeps listening.
 * The overrun is made deterministic by keeping the watcher's event loop away while a flood of
 * address events fills the socket's receive queue (8 MiB): a synchronous `ip -batch` in the test's
 * own process, or SIGSTOP on a `vcnet watch`. When the loop comes back, epoll reports POLLERR (the
 * socket's pending error) with the data, and libuv stops the poll handle for good; a socket that
 * kept that dead handle never heard of another event, and `vcnet watch` exited 13 (Node's
 * "unsettled top-level await") once its last timer had run.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { type NamespaceChange, NamespaceWatcher } from '../../../src/network/namespace-watcher.js';
import { cleanupAfterEach } from '../../helpers/cleanup.js';
import { vcnet, vcnetAsync } from '../../helpers/cli.js';
import { makeNamespace, type TestNamespace } from '../../helpers/namespace.js';
import { makePod } from '../../helpers/pod.js';
import { until } from '../../helpers/until.js';

const cleanup = cleanupAfterEach();

/**
 * Address events on a fresh veth fl0, far more than the event socket's receive queue holds (each
 * event takes about a kilobyte of it), in one `ip -batch` run that blocks this process until done.
 */
function flood(namespace: TestNamespace): void {
  namespace.exec('ip', ['link', 'add', 'fl0', 'type', 'veth', 'peer', 'name', 'fl1']);
  namespace.exec('ip', ['link', 'set', 'fl0', 'up']);
  const lines: string[] = [];
  for (let round = 0; round < 12; round++) {
    for (const verb of ['add', 'del']) {
      for (let i = 0; i < 1000; i++) lines.push(`addr ${verb} 10.99.${i >> 8}.${i & 255}/32 dev fl0`);
    }
  }
  const file = join(cleanup.directory('vcnet-watch-overrun-'), 'flood');
  writeFileSync(file, `${lines.join('\n')}\n`);
  namespace.exec('ip', ['-force', '-batch', file]);
}

describe('a watch whose event socket overran (ENOBUFS)', () => {
  it('NamespaceWatcher reads the namespace again and still hears of the next change', async () => {
    const namespace = makeNamespace('watch-overrun');
    const changes: NamespaceChange[] = [];
    const errors: Error[] = [];
    const watcher = await NamespaceWatcher.start(namespace.path, {
      debounceMs: 50,
      onChange: (change) => void changes.push(change),
      onError: (error) => void errors.push(error),
    });
    cleanup.defer(() => watcher.stop());

    // Synchronous: the watcher's callbacks cannot run until the kernel has dropped events.
    flood(namespace);
    await until(
      () => changes.some((change) => change.addedInterfaces.some((info) => info.link.name === 'fl0')),
      'fl0 reported after the overrun (the resync)',
    );

    namespace.exec('ip', ['link', 'add', 'eth3', 'type', 'veth', 'peer', 'name', 'peer3']);
    await until(
      () => changes.some((change) => change.addedInterfaces.some((info) => info.link.name === 'eth3')),
      'eth3, made after the overrun, reported',
    );
    // ENOBUFS is a resync, not an error to report.
    expect(errors).toEqual([]);
  });

  it('vcnet watch stopped through a flood goes on attaching links, and exits 0 on TERM', async () => {
    const stateDir = cleanup.directory('vcnet-watch-overrun-state-');
    const { pod } = makePod();
    expect(vcnet(['attach', '--sandbox', 'ov1', '--netns', pod.path, '--state-dir', stateDir]).status).toBe(0);
    cleanup.defer(() => void vcnet(['detach', '--sandbox', 'ov1', '--state-dir', stateDir]));
    const run = vcnetAsync(['watch', '--sandbox', 'ov1', '--state-dir', stateDir, '--debounce', '50']);
    cleanup.defer(() => void run.child.kill('SIGKILL'));
    await until(() => run.output().stderr.includes('watching sandbox ov1'), 'the watch command');

    run.child.kill('SIGSTOP');
    try {
      flood(pod);
    } finally {
      run.child.kill('SIGCONT');
    }
    // Long enough for the resync after the overrun to have run and the watch to be idle again.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    pod.exec('ip', ['link', 'add', 'eth5', 'type', 'veth', 'peer', 'name', 'peer5']);
    pod.exec('ip', ['addr', 'add', '10.80.0.2/24', 'dev', 'eth5']);
    pod.exec('ip', ['link', 'set', 'eth5', 'up']);
    await until(
      () => run.output().stdout.includes('"eth5"') || run.child.exitCode !== null,
      'eth5 in the watch output',
    );
    expect(run.child.exitCode, `watch ended by itself: ${JSON.stringify(run.output())}`).toBeNull();
    expect(pod.exec('tc', ['filter', 'show', 'dev', 'eth5', 'ingress'])).toContain('mirred');

    run.child.kill('SIGTERM');
    expect((await run.done).status).toBe(0);
    pod.exec('ip', ['link', 'del', 'eth5']);
    pod.exec('ip', ['link', 'del', 'fl0']);
    expect(vcnet(['detach', '--sandbox', 'ov1', '--state-dir', stateDir]).status).toBe(0);
  });
  it('vcnet watch that nothing wakes any more fails saying so, with exit 1 (never exit 13 in silence)', async () => {
    // Whatever left the event loop empty (the dead poll above was one way): a preload makes the
    // addon's poll of every socket opened with multicast groups (the event socket) a handle that
    // never fires. The addon is one module object per process, shared with the bundled program.
    const addon = fileURLToPath(new URL('../../../build/Release/vcnet_native.node', import.meta.url));
    const preload = join(cleanup.directory('vcnet-watch-deaf-'), 'deaf.mjs');
    writeFileSync(
      preload,
      `import { createRequire } from 'node:module';
       const native = createRequire(import.meta.url)(${JSON.stringify(addon)});
       const open = native.openNetlink, watch = native.watchReadable, events = new Set();
       native.openNetlink = (path, protocol, groups) => { const fd = open(path, protocol, groups); if (groups) events.add(fd); return fd; };
       native.watchReadable = (fd, callback) => (events.has(fd) ? {} : watch(fd, callback));\n`,
    );
    const stateDir = cleanup.directory('vcnet-watch-deaf-state-');
    const { pod } = makePod();
    expect(vcnet(['attach', '--sandbox', 'ov2', '--netns', pod.path, '--state-dir', stateDir]).status).toBe(0);
    cleanup.defer(() => void vcnet(['detach', '--sandbox', 'ov2', '--state-dir', stateDir]));
    const run = vcnetAsync(['watch', '--sandbox', 'ov2', '--state-dir', stateDir, '--debounce', '50'], {
      NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import ${preload}`.trim(),
    });
    cleanup.defer(() => void run.child.kill('SIGKILL'));
    const result = await Promise.race([
      run.done,
      new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 20_000)),
    ]);
    expect(result, 'the watch ran on with nothing to wake it').toBeDefined();
    expect(result?.stderr).toContain(
      'vcnet: watch of sandbox ov2 stopped hearing of namespace changes: nothing was left to wake it (a bug in vcnet; please report it)',
    );
    expect(result?.stderr).toContain('hint: `vcnet watch --sandbox ov2` starts it again');
    expect(result?.status).toBe(1);
    expect(vcnet(['detach', '--sandbox', 'ov2', '--state-dir', stateDir]).status).toBe(0);
  });
});
