/**
 * attachSandbox and detachSandbox take an AbortSignal: an abort while they wait for the sandbox
 * lock rejects at once with the signal's reason, and an already-aborted signal changes nothing.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { InvalidInputError } from '../../../src/errors.js';
import { FileLock, tryLockFile } from '../../../src/network/state/lock.js';
import { attachSandbox, detachSandbox, readSandbox } from '../../../src/sandbox/service.js';
import { stateDirectoryPerTest } from '../../helpers/cli.js';
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
    const started = Date.now();
    const attaching = failureOf(
      attachSandbox('waiting', tcfilterConfig(pod), {
        stateDirectory,
        lockTimeoutMs: 10_000,
        signal: controller.signal,
      }),
    );
    setTimeout(() => controller.abort(reason), 100);
    expect(await attaching).toBe(reason);
    expect(Date.now() - started).toBeLessThan(2_000);
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
