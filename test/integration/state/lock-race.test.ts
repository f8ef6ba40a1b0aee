/**
 * 100 rounds of `vcnet attach` and `vcnet detach` started at the same moment on one sandbox: each
 * round ends with either a complete record (and its plumbing) or nothing at all, never with raw
 * errno text, and nothing is leaked in the namespace.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FileLock, tryLockFile } from '../../../src/network/state/lock.js';
import { configureGuest } from '../../../src/sandbox/configure-guest.js';
import {
  addInterface,
  listInterfaces,
  removeInterface,
  updateRoutes,
} from '../../../src/sandbox/sandbox-interfaces.js';
import { stateDirectoryPerTest, vcnet, vcnetAsync } from '../../helpers/cli.js';
import { fingerprint, makePod } from '../../helpers/pod.js';

const ROUNDS = 100;
const stateDirectory = stateDirectoryPerTest('vcnet-race-');

/** errno names (ENOENT, ENOTEMPTY, EBUSY...) in what a person reads: an error vcnet did not explain. */
const RAW_ERRNO = /\bE(NOENT|NOTEMPTY|BUSY|EXIST|AGAIN|WOULDBLOCK|BADF|INVAL|ACCES|PERM|NODEV|NOTDIR|ISDIR)\b/;

describe('racing attach and detach on one sandbox', () => {
  it(`ends each of ${ROUNDS} rounds with a complete record or nothing`, async () => {
    const { pod } = makePod();
    const clean = fingerprint(pod);
    const statePath = join(stateDirectory(), 'race', 'state.json');
    const outcomes = { attachedFirst: 0, detachedAfter: 0 };
    for (let round = 0; round < ROUNDS; round++) {
      const attach = vcnetAsync(['attach', '--sandbox', 'race', '--netns', pod.path, '--state-dir', stateDirectory()]);
      const detach = vcnetAsync(['detach', '--sandbox', 'race', '--state-dir', stateDirectory()]);
      const [attached, detached] = await Promise.all([attach.done, detach.done]);
      const context = `round ${round}: attach ${attached.status} ${attached.stderr} / detach ${detached.status} ${detached.stderr}`;
      expect(attached.status, context).toBe(0);
      expect(detached.status, context).toBe(0);
      expect(`${attached.stderr}${detached.stderr}`, context).not.toMatch(RAW_ERRNO);
      if (existsSync(statePath)) {
        // Detach ran first (nothing to do), attach completed: the record and its plumbing are whole.
        outcomes.attachedFirst++;
        expect(detached.stdout, context).toContain('not attached: nothing to do');
        const record = JSON.parse(readFileSync(statePath, 'utf8'));
        expect(record.id, context).toBe('race');
        expect(record.network.endpoints.map((e: { plumbing: { model: string } }) => e.plumbing.model)).toEqual([
          'tcfilter',
        ]);
        expect(pod.exec('ip', ['link', 'show', 'tap0_kata']), context).toContain('tap0_kata');
        const reset = vcnet(['detach', '--sandbox', 'race', '--state-dir', stateDirectory()]);
        expect(reset.status, `${context}; reset: ${reset.stderr}`).toBe(0);
      } else {
        // Attach ran first and detach undid it all.
        outcomes.detachedAfter++;
        expect(detached.stdout, context).toMatch(/detached sandbox race/);
      }
      expect(existsSync(join(stateDirectory(), 'race')), context).toBe(false);
      expect(fingerprint(pod), context).toEqual(clean);
    }
    console.log(
      `lock race: ${outcomes.attachedFirst} rounds detach-then-attach, ${outcomes.detachedAfter} attach-then-detach`,
    );
    expect(outcomes.attachedFirst + outcomes.detachedAfter).toBe(ROUNDS);
  }, 1_200_000);
});

describe('a held sandbox lock', () => {
  it('makes the CLI wait --lock-timeout, then exit 4 with a hint naming options that exist', () => {
    const held = tryLockFile(join(stateDirectory(), '.locks', 'busy'));
    if (!(held instanceof FileLock)) throw new Error('the lock is already held');
    try {
      const detached = vcnet(['detach', '--sandbox', 'busy', '--state-dir', stateDirectory(), '--lock-timeout', '0.2']);
      expect(detached.status).toBe(4);
      expect(detached.stderr).toContain(`sandbox busy is being changed by process ${process.pid} (waited 200 ms)`);
      expect(detached.stderr).toMatch(/hint: .*--lock-timeout <seconds> \(attach, detach\) or VCNET_LOCK_TIMEOUT/);
      const environment = vcnet(['detach', '--sandbox', 'busy', '--state-dir', stateDirectory()], {
        VCNET_LOCK_TIMEOUT: '0.1',
      });
      expect(environment.status).toBe(4);
      expect(environment.stderr).toContain('(waited 100 ms)');
      const bad = vcnet(['detach', '--sandbox', 'busy', '--state-dir', stateDirectory(), '--lock-timeout', 'soon']);
      expect(bad.status).toBe(2);
      expect(bad.stderr).toContain('invalid --lock-timeout: "soon"');
    } finally {
      held.release();
    }
    expect(vcnet(['detach', '--sandbox', 'busy', '--state-dir', stateDirectory()]).status).toBe(0);
  });
});

describe('a held sandbox lock, from the library', () => {
  it('makes add-iface, del-iface, update-routes, list-ifaces and configure-guest wait lockTimeoutMs, not 30 s', async () => {
    const { pod } = makePod();
    expect(vcnet(['attach', '--sandbox', 'held', '--netns', pod.path, '--state-dir', stateDirectory()]).status).toBe(0);
    const held = tryLockFile(join(stateDirectory(), '.locks', 'held'));
    if (!(held instanceof FileLock)) throw new Error('the lock is already held');
    const options = { stateDirectory: stateDirectory(), lockTimeoutMs: 150 };
    try {
      for (const [name, call] of [
        ['addInterface', () => addInterface('held', JSON.stringify({ name: 'eth9' }), options)],
        ['removeInterface', () => removeInterface('held', JSON.stringify({ name: 'eth0' }), options)],
        ['updateRoutes', () => updateRoutes('held', '[]', options)],
        ['listInterfaces', () => listInterfaces('held', options)],
        ['configureGuest', () => configureGuest('held', options)],
      ] as const) {
        await expect(call(), name).rejects.toMatchObject({
          code: 'VCNET_SANDBOX_LOCKED',
          message: expect.stringContaining('(waited 150 ms)'),
        });
      }
      await expect(
        listInterfaces('held', { ...options, lockTimeoutMs: 'soon' as unknown as number }),
      ).rejects.toMatchObject({
        code: 'VCNET_INVALID_INPUT',
        message: expect.stringContaining('lockTimeoutMs'),
      });
    } finally {
      held.release();
    }
    expect(vcnet(['detach', '--sandbox', 'held', '--state-dir', stateDirectory()]).status).toBe(0);
  });
});
