/**
 * attachSandbox and detachSandbox take an AbortSignal (so do add-iface, del-iface, list-ifaces,
 * list-routes and configure-guest, gc and scan): an abort while they wait for the sandbox lock
 * rejects at once with the signal's reason, and an already-aborted signal changes nothing.
 */
import { execFileSync } from 'node:child_process';
import { channel } from 'node:diagnostics_channel';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { InvalidInputError } from '../../../src/errors.js';
import { NetlinkHandle } from '../../../src/netlink/handle.js';
import { collectGarbage } from '../../../src/network/garbage-collector.js';
import { readSandbox } from '../../../src/network/recorded-network.js';
import { scanNamespace } from '../../../src/network/scan.js';
import { FileLock, tryLockFile } from '../../../src/network/state/lock.js';
import { attachSandbox } from '../../../src/sandbox/attach.js';
import { configureGuest } from '../../../src/sandbox/configure-guest.js';
import { detachSandbox } from '../../../src/sandbox/detach.js';
import { addInterface, listInterfaces, listRoutes, removeInterface } from '../../../src/sandbox/sandbox-interfaces.js';
import { stateDirectoryPerTest } from '../../helpers/cli.js';
import { makeNamespace } from '../../helpers/namespace.js';
import { failureOf, fingerprint, makePod, tcfilterConfig } from '../../helpers/pod.js';

const stateDirectoryOfTest = stateDirectoryPerTest('vcnet-abort-');

it('an abort while attach waits for the lock rejects at once with the reason, and nothing is made', async () => {
  const stateDirectory = stateDirectoryOfTest();
  const { pod } = makePod();
  const before = fingerprint(pod);
  mkdirSync(join(stateDirectory, '.locks'), { recursive: true, mode: 0o700 });
  const held = tryLockFile(join(stateDirectory, '.locks', 'waiting'));
  expect(held).toBeInstanceOf(FileLock);
  try {
    const controller = new AbortController();
    const reason = new Error('the daemon is shutting down');
    const attaching = failureOf(
      attachSandbox('waiting', tcfilterConfig(pod), {
        stateDirectory,
        lockTimeoutMs: 10_000,
        signal: controller.signal,
      }),
    );
    setTimeout(() => controller.abort(reason), 100);
    // The lock is held until `finally`: the wait ends by the abort, rejecting with its reason, or
    // after lockTimeoutMs with a lock timeout's own error, which this would not be.
    expect(await attaching).toBe(reason);
  } finally {
    (held as FileLock).release();
  }
  expect(readSandbox('waiting', stateDirectory)).toBeUndefined();
  expect(fingerprint(pod)).toEqual(before);
});

it('an already-aborted signal changes nothing: attach makes nothing, detach undoes nothing', async () => {
  const stateDirectory = stateDirectoryOfTest();
  const { pod } = makePod();
  const before = fingerprint(pod);
  const aborted = AbortSignal.abort();
  const error = await failureOf(attachSandbox('early', tcfilterConfig(pod), { stateDirectory, signal: aborted }));
  expect((error as Error).name).toBe('AbortError');
  expect(readSandbox('early', stateDirectory)).toBeUndefined();
  expect(fingerprint(pod)).toEqual(before);

  await attachSandbox('early', tcfilterConfig(pod), { stateDirectory });
  const attached = fingerprint(pod);
  const reason = new Error('stop');
  expect(await failureOf(detachSandbox('early', { stateDirectory, signal: AbortSignal.abort(reason) }))).toBe(reason);
  expect(readSandbox('early', stateDirectory)).toBeDefined();
  expect(fingerprint(pod)).toEqual(attached);
  await detachSandbox('early', { stateDirectory });
  expect(fingerprint(pod)).toEqual(before);
});

it('a signal that is not an AbortSignal is refused, naming the field', async () => {
  const stateDirectory = stateDirectoryOfTest();
  const error = await failureOf(detachSandbox('x', { stateDirectory, signal: 'soon' as unknown as AbortSignal }));
  expect(error).toBeInstanceOf(InvalidInputError);
  expect((error as InvalidInputError).message).toMatch(/^invalid signal: "soon" \(accepted: an AbortSignal/);
});

it('add-iface and del-iface honour the signal while waiting for the lock; an aborted gc removes nothing', async () => {
  const stateDirectory = stateDirectoryOfTest();
  const { pod } = makePod({ interfaces: 2 });
  const before = fingerprint(pod);
  await attachSandbox('kn', tcfilterConfig(pod, { namedInterfaces: ['eth0'] }), { stateDirectory });
  const attached = fingerprint(pod);
  const reason = new Error('shutting down');
  // Held by "another command": the add waits, then the abort ends the wait at once.
  const held = tryLockFile(join(stateDirectory, '.locks', 'kn'));
  expect(held).toBeInstanceOf(FileLock);
  try {
    const controller = new AbortController();
    const adding = failureOf(
      addInterface('kn', JSON.stringify({ device: 'eth1', name: 'eth1' }), {
        stateDirectory,
        lockTimeoutMs: 10_000,
        signal: controller.signal,
      }),
    );
    setTimeout(() => controller.abort(reason), 100);
    expect(await adding).toBe(reason);
    expect(
      await failureOf(
        removeInterface('kn', JSON.stringify({ name: 'eth0' }), { stateDirectory, signal: AbortSignal.abort(reason) }),
      ),
    ).toBe(reason);
  } finally {
    (held as FileLock).release();
  }
  expect(fingerprint(pod)).toEqual(attached);
  // A gc aborted before it starts looks at nothing: the namespace keeps the live sandbox as it is.
  expect(
    await failureOf(
      collectGarbage({ stateDirectories: [stateDirectory], namespaces: [pod.path], signal: AbortSignal.abort(reason) }),
    ),
  ).toBe(reason);
  expect(fingerprint(pod)).toEqual(attached);
  await detachSandbox('kn', { stateDirectory });
  expect(fingerprint(pod)).toEqual(before);
});

it('list-ifaces, list-routes and configure-guest honour the signal while waiting for the lock', async () => {
  const stateDirectory = stateDirectoryOfTest();
  const { pod } = makePod();
  const before = fingerprint(pod);
  await attachSandbox('reads', tcfilterConfig(pod), { stateDirectory });
  const held = tryLockFile(join(stateDirectory, '.locks', 'reads'));
  expect(held).toBeInstanceOf(FileLock);
  try {
    const calls = {
      listInterfaces: (signal: AbortSignal) =>
        listInterfaces('reads', { stateDirectory, lockTimeoutMs: 10_000, signal }),
      listRoutes: (signal: AbortSignal) => listRoutes('reads', { stateDirectory, lockTimeoutMs: 10_000, signal }),
      configureGuest: (signal: AbortSignal) =>
        configureGuest('reads', { stateDirectory, lockTimeoutMs: 10_000, agentSocket: '/tmp/no-agent.sock', signal }),
    };
    for (const [name, call] of Object.entries(calls)) {
      const controller = new AbortController();
      const reason = new Error(`${name} is no longer wanted`);
      // The lock is held until `finally`: only the abort ends the wait before lockTimeoutMs.
      const waiting = failureOf(call(controller.signal));
      setTimeout(() => controller.abort(reason), 100);
      expect(await waiting, name).toBe(reason);
      expect(await failureOf(call(AbortSignal.abort(reason))), name).toBe(reason);
    }
  } finally {
    (held as FileLock).release();
  }
  // Free now: an already-aborted signal stops configure-guest before it connects to any agent.
  const reason = new Error('stop');
  expect(
    await failureOf(
      configureGuest('reads', { stateDirectory, agentSocket: '/tmp/no-agent.sock', signal: AbortSignal.abort(reason) }),
    ),
  ).toBe(reason);
  await detachSandbox('reads', { stateDirectory });
  expect(fingerprint(pod)).toEqual(before);
});

it('a gc aborted while it runs rejects with the reason and has removed nothing yet; the next gc goes on', async () => {
  const stateDirectory = stateDirectoryOfTest();
  const pods = [makePod().pod, makePod().pod, makePod().pod];
  // Orphans: attached, then their records lost (a state directory gone with a crash).
  for (const [index, pod] of pods.entries())
    await attachSandbox(`orphan${index}`, tcfilterConfig(pod), { stateDirectory });
  rmSync(stateDirectory, { recursive: true, force: true });
  const taps = () => pods.map((pod) => pod.exec('ip', ['-br', 'link', 'show', 'type', 'tun']).includes('tap0_kata'));
  expect(taps()).toEqual([true, true, true]);
  const controller = new AbortController();
  const reason = new Error('enough');
  const collecting = failureOf(collectGarbage({ namespaces: pods.map((pod) => pod.path), signal: controller.signal }));
  // Aborted before its first turn of the event loop ends: no namespace has been looked at.
  controller.abort(reason);
  expect(await collecting).toBe(reason);
  expect(taps()).toEqual([true, true, true]);
  const report = await collectGarbage({ namespaces: pods.map((pod) => pod.path) });
  expect(report.failures).toEqual([]);
  expect(taps()).toEqual([false, false, false]);
});

it('a scan aborted while it runs rejects with the reason: by path its socket closes at once, a given handle stays usable', async () => {
  // A thousand links: the scan reads and decodes them over several turns of the event loop.
  const big = makeNamespace('scan-abort');
  const batch = join(stateDirectoryOfTest(), 'links.batch');
  writeFileSync(batch, Array.from({ length: 500 }, (_, i) => `link add t${i} type veth peer name p${i}\n`).join(''));
  execFileSync('ip', ['-n', big.name, '-batch', batch]);
  // Aborted as the first dump (the links) is answered: a timer raced the whole scan on a busy machine
  // (a scan that finished before the timer ran did not fail). The netlink batch channel's asyncEnd
  // runs before the scan's own continuation, so the check between dumps sees the abort every time.
  const abortSoon = (reason: unknown) => {
    const controller = new AbortController();
    const answered = channel('tracing:vcnet:netlink:batch:asyncEnd');
    const onAnswer = () => {
      answered.unsubscribe(onAnswer);
      controller.abort(reason);
    };
    answered.subscribe(onAnswer);
    return controller.signal;
  };
  // Without an abort it goes through (with or without a signal).
  expect((await scanNamespace(big.path, { signal: new AbortController().signal })).interfaces).toHaveLength(1000);

  const reason = new Error('enough');
  expect(await failureOf(scanNamespace(big.path, { signal: abortSoon(reason) }))).toBe(reason);
  // A plain abort() gives Node's AbortError, as the other calls do.
  const plain = await failureOf(scanNamespace(big.path, { signal: abortSoon(undefined) }));
  expect(plain).toMatchObject({ name: 'AbortError' });

  const handle = NetlinkHandle.open(big.path);
  try {
    expect(await failureOf(scanNamespace(handle, { signal: abortSoon(reason) }))).toBe(reason);
    expect(await handle.links()).toHaveLength(1001);
    // The handle's own snapshot, which the scan calls, stops the same way.
    expect(await failureOf(handle.snapshot(undefined, { signal: abortSoon(reason) }))).toBe(reason);
    expect(await failureOf(handle.snapshot(undefined, { signal: AbortSignal.abort(reason) }))).toBe(reason);
    expect((await handle.snapshot(['links'], { signal: new AbortController().signal })).links).toHaveLength(1001);
  } finally {
    handle.close();
  }
});
