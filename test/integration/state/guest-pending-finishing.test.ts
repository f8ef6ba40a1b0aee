/**
 * `vcnet list` of an endpoint whose add-iface is past the wait its entry records but still at work:
 * a push that used nearly its whole bound, then the lock taken again, and the undo (an unplug's wait,
 * the host side) under it. list takes no lock, and said `guest-pending(stopped)` with a note to run
 * configure-guest or del-iface while that add-iface was undoing the endpoint. It now tells, from
 * /proc/locks and without waiting for the lock, that the entry's own process holds the sandbox's lock:
 * `guest-pending(finishing)`. Real kernel flocks and /proc: the entry is this test process's, and this
 * process holds the record's lock as add-iface's finish does.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { lockFile } from '../../../src/network/state/lock.js';
import { LOCK_DIRECTORY_NAME } from '../../../src/network/state/store.js';
import { guestPendingEntry } from '../../../src/sandbox/guest-pending.js';
import { cleanupAfterEach } from '../../helpers/cleanup.js';
import { stateDirectoryPerTest, vcnet } from '../../helpers/cli.js';
import { makePod } from '../../helpers/pod.js';

const cleanup = cleanupAfterEach();
const stateDirectory = stateDirectoryPerTest('vcnet-finishing-');

const skipReason = process.getuid?.() !== 0 ? 'attach needs root' : undefined;
if (skipReason) console.log(`skipping the guest-pending finishing test: ${skipReason}`);

describe('vcnet list of an add-iface past its wait, still at work under the lock', () => {
  it.skipIf(skipReason)(
    "says finishing while the entry's process holds the sandbox's lock, stopped once it does not",
    async () => {
      const { pod } = makePod();
      const state = ['--state-dir', stateDirectory()];
      const attached = vcnet(['attach', '--sandbox', 'fin', '--netns', pod.path, ...state]);
      expect(attached.status, attached.stderr).toBe(0);
      cleanup.defer(() => {
        vcnet(['detach', '--sandbox', 'fin', ...state]);
      });
      // The sandbox's eth0 recorded as waiting for the guest by this process, its recorded wait over.
      const written = guestPendingEntry(
        { name: 'eth0', properties: { link: { name: 'eth0' } } } as Parameters<typeof guestPendingEntry>[0],
        'add-iface',
      );
      const file = join(stateDirectory(), 'fin', 'state.json');
      const record = JSON.parse(readFileSync(file, 'utf8'));
      record.guestPending = [{ ...written, waitsUntil: new Date(Date.now() - 1_000).toISOString() }];
      writeFileSync(file, JSON.stringify(record));

      // Not holding the lock: a command whose wait is over (a library caller's that lives on) stopped.
      const free = vcnet(['list', ...state]);
      expect(free.stdout).toContain('guest-pending(stopped)');

      const lock = await lockFile(join(stateDirectory(), LOCK_DIRECTORY_NAME, 'fin'), 5_000, () => new Error('held'));
      try {
        const held = vcnet(['list', ...state]);
        expect(held.status, held.stderr).toBe(0);
        // Before: guest-pending(stopped), and a note to run configure-guest or del-iface.
        expect(held.stdout).toContain('guest-pending(finishing)');
        expect(held.stdout).toContain(
          `the add-iface that plugged eth0 is done waiting for the guest and holds the sandbox's lock (process ${process.pid})`,
        );
        expect(held.stdout).not.toContain('configure-guest');
        const json = JSON.parse(vcnet(['list', '--json', ...state]).stdout);
        expect(json[0].endpoints[0]).toMatchObject({ guestName: 'eth0', guestPending: 'finishing' });
        expect(json[0].endpoints[0].guestPendingGuessed).toBeUndefined();
      } finally {
        lock.release();
      }
      expect(vcnet(['list', ...state]).stdout).toContain('guest-pending(stopped)');
    },
  );
});
