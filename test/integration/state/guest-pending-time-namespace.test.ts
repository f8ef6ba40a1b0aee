/**
 * guestPending entries written or read across time namespaces. The kernel shows a process's start
 * time (/proc/PID/stat field 22, the entry's `pidStart`) shifted by the boot-time offset of the
 * READER's time namespace (a CRIU-restored container, runc's or crun's `timeOffsets`, `unshare
 * --time`): an add-iface running in such a namespace had another start time from the host, so a
 * reader there called it stopped (not a guess), and sent the NIC it was still waiting for. Real time
 * and PID namespaces; the entries are made and read by vcnet's own module (dist/, as the CLI runs it).
 */
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { guestPendingEntry, guestPendingVerdict } from '../../../src/sandbox/guest-pending.js';
import { cleanupAfterEach } from '../../helpers/cleanup.js';
import { guestPendingProcess } from '../../helpers/guest-pending-process.js';

const cleanup = cleanupAfterEach();

/**
 * guestPendingProcess in a new time namespace whose boot time is `offsetSeconds` ahead, and in a new PID namespace too with `newPidNamespace` (its /proc the parent's: the host's
 * pids still show).
 */
function processInTimeNamespace(offsetSeconds: number, newPidNamespace = false) {
  const namespaces = ['--time', '--boottime', String(offsetSeconds), ...(newPidNamespace ? ['--pid'] : [])];
  return guestPendingProcess(cleanup, ['unshare', ...namespaces, '--fork', '--kill-child']);
}

const skip =
  process.getuid?.() !== 0
    ? 'time namespaces need root'
    : // A kernel without time namespaces (before 5.6, or CONFIG_TIME_NS off) has no such link.
      existsSync('/proc/self/ns/time')
      ? undefined
      : 'this kernel has no time namespaces';
if (skip) console.log(`skipping the guestPending time-namespace tests: ${skip}`);

describe('guestPending across time namespaces', () => {
  // unshare sets whole seconds; the rounding of a part of a clock tick is decideGuestPending's (unit test).
  for (const offset of [100_000, -5]) {
    it.skipIf(skip)(
      `an entry written in a time namespace (boot time offset ${offset} s) is seen running from the host while its process runs, stopped once it is gone`,
      async () => {
        const writer = processInTimeNamespace(offset);
        const entry = await writer.entry();
        expect(guestPendingVerdict(entry)).toEqual({ running: true, guessed: false });
        // The writer takes the entry it wrote for its own (a watch clears its own stale entries by this).
        expect(await writer.verdictOf(entry)).toEqual({ running: true, guessed: false, own: true });
        await writer.exit();
        expect(guestPendingVerdict(entry)).toEqual({ running: false, guessed: false });
      },
    );
  }

  it.skipIf(skip)('a reader in a time namespace sees an entry written outside it running', async () => {
    const reader = processInTimeNamespace(100_000);
    await reader.entry();
    // This process's own entry, as an add-iface on the host writes it.
    const entry = guestPendingEntry(
      { name: 'eth2', properties: { link: { name: 'eth8' } } } as Parameters<typeof guestPendingEntry>[0],
      'add-iface',
    );
    expect(await reader.verdictOf(entry)).toEqual({ running: true, guessed: false, own: false });
  });

  it.skipIf(skip)(
    'an entry written in a PID and a time namespace is translated (NSpid) and seen running from the host',
    async () => {
      const writer = processInTimeNamespace(100_000, true);
      const entry = await writer.entry();
      expect(entry.pid).toBe(1);
      expect(guestPendingVerdict(entry)).toEqual({ running: true, guessed: false });
      await writer.exit();
      expect(guestPendingVerdict(entry)).toEqual({ running: false, guessed: false });
    },
  );
});
