/**
 * guestPending entries written or read across time namespaces. The kernel shows a process's start
 * time (/proc/PID/stat field 22, the entry's `pidStart`) shifted by the boot-time offset of the
 * READER's time namespace (a CRIU-restored container, runc's or crun's `timeOffsets`, `unshare
 * --time`): an add-iface running in such a namespace had another start time from the host, so a
 * reader there called it stopped (not a guess), and sent the NIC it was still waiting for. Real time
 * and PID namespaces; the entries are made and read by vcnet's own module (dist/, as the CLI runs it).
 */
import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { guestPendingEntry, guestPendingVerdict } from '../../../src/sandbox/guest-pending.js';
import { cleanupAfterEach } from '../../helpers/cleanup.js';
import { guestPendingProcess } from '../../helpers/guest-pending-process.js';
import { until } from '../../helpers/until.js';

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
    "a reader whose boot time is set back past the writer's start sees the writer running, then stopped",
    async () => {
      // The writer in the host's time namespace; the reader's boot time set back by more than the
      // writer had run at its start (a CRIU-restored container on a host up longer than its clock),
      // so from the reader the writer started before its boot: the kernel wraps that start below 0
      // (an unsigned 64-bit count of nanoseconds, shown as about 1.8e12 ticks).
      const writer = guestPendingProcess(cleanup);
      const entry = await writer.entry();
      const writerStartSeconds = Math.floor(Number(entry.pidStart) / 100);
      const uptimeSeconds = () => Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]);
      // The kernel takes an offset only while the clock it shifts stays at 0 or more.
      await until(() => uptimeSeconds() >= writerStartSeconds + 3, 'the writer to have run 3 s');
      const reader = processInTimeNamespace(-(writerStartSeconds + 1));
      await reader.entry();
      expect(await reader.verdictOf(entry)).toEqual({ running: true, guessed: false, own: false });
      await writer.exit();
      expect(await reader.verdictOf(entry)).toEqual({ running: false, guessed: false, own: false });
    },
  );

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
