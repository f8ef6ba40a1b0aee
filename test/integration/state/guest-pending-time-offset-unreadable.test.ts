/**
 * guestPending entries written or read in a time namespace whose boot-time offset this process
 * cannot read (/proc/self/timens_offsets masked, as a runtime masks /proc files with /dev/null, or
 * refused by a security module). The kernel shows start times shifted by the reader's offset, so
 * taking an unread offset as 0 made a reader call a running add-iface stopped, surely, and a writer
 * record a start time no reader matches. Real time, mount and PID namespaces: the file is masked by
 * a bind mount of an empty file in a mount namespace of the process's own, and the entries are made
 * and read by vcnet's own module (dist/, as the CLI runs it).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { guestPendingEntry, guestPendingVerdict } from '../../../src/sandbox/guest-pending.js';
import { cleanupAfterEach } from '../../helpers/cleanup.js';
import { CLI, stateDirectoryPerTest, vcnet } from '../../helpers/cli.js';
import { guestPendingProcess } from '../../helpers/guest-pending-process.js';
import { makePod } from '../../helpers/pod.js';

const cleanup = cleanupAfterEach();
const stateDirectory = stateDirectoryPerTest('vcnet-timens-offsets-');

const skip =
  process.getuid?.() !== 0
    ? 'time and mount namespaces need root'
    : // A kernel without time namespaces (before 5.6, or CONFIG_TIME_NS off) has no such link.
      existsSync('/proc/self/ns/time')
      ? undefined
      : 'this kernel has no time namespaces';
if (skip) console.log(`skipping the guestPending unreadable-offset tests: ${skip}`);

/**
 * The command that runs the rest of its arguments in a new time namespace whose boot time is 100000 s
 * ahead, its own /proc/PID/timens_offsets showing `shown` (a bind-mounted file; exec keeps the pid).
 */
function withOffsetsShown(shown: string): string[] {
  const file = join(cleanup.directory('vcnet-timens-offsets-'), 'timens_offsets');
  writeFileSync(file, shown);
  return [
    'unshare',
    '--time',
    '--boottime',
    '100000',
    '--mount',
    '--propagation',
    'private',
    '--fork',
    '--kill-child',
    'sh',
    '-c',
    'mount --bind "$0" "/proc/$$/timens_offsets" && exec "$@"',
    file,
  ];
}

/** guestPendingProcess under withOffsetsShown. */
function processWithOffsetsShown(shown: string) {
  return guestPendingProcess(cleanup, withOffsetsShown(shown));
}

/** What the kernel shows a process of that namespace. */
const OFFSETS_AS_SHOWN = 'monotonic           0         0\nboottime       100000         0\n';

describe('guestPending in a time namespace whose offset cannot be read', () => {
  it.skipIf(skip)(
    'a reader there guesses by the wait bound while the command runs, and says why; stopped surely once it is gone',
    async () => {
      // This process's own entry, as an add-iface on the host writes it.
      const entry = guestPendingEntry(
        { name: 'eth2', properties: { link: { name: 'eth8' } } } as Parameters<typeof guestPendingEntry>[0],
        'add-iface',
      );
      // The same bind mount with the kernel's own text: told by the process.
      const reading = processWithOffsetsShown(OFFSETS_AS_SHOWN);
      await reading.entry();
      expect(await reading.verdictOf(entry)).toEqual({ running: true, guessed: false, own: false });
      // Masked: before, the offset was taken as 0 and the start did not match: { running: false, guessed: false }.
      const masked = processWithOffsetsShown('');
      await masked.entry();
      expect(await masked.verdictOf(entry)).toEqual({
        running: true,
        guessed: true,
        timeOffsetUnreadable: true,
        own: false,
      });
      // No process has the entry's pid: stopped, whatever the offset.
      const gone = { ...entry, pid: 0x3fffff + 1 };
      expect(await masked.verdictOf(gone)).toEqual({ running: false, guessed: false, own: false });
    },
  );

  it.skipIf(skip)(
    'a writer there records no start time it cannot place, and is seen running from the host, then stopped',
    async () => {
      const writer = processWithOffsetsShown('');
      const entry = await writer.entry();
      // Before: the start as shifted by the unread offset, which the host matched to no process.
      expect(entry.pidStart).toBeUndefined();
      expect(guestPendingVerdict(entry)).toEqual({ running: true, guessed: false });
      expect(await writer.verdictOf(entry)).toEqual({ running: true, guessed: false, own: true });
      await writer.exit();
      expect(guestPendingVerdict(entry)).toEqual({ running: false, guessed: false });
    },
  );
});

describe('vcnet list in a time namespace whose offset cannot be read', () => {
  it.skipIf(skip)("says the verdict on a running command's entry is a guess, and why", async () => {
    const { pod } = makePod();
    const state = ['--state-dir', stateDirectory()];
    const attached = vcnet(['attach', '--sandbox', 'to', '--netns', pod.path, ...state]);
    expect(attached.status, attached.stderr).toBe(0);
    cleanup.defer(() => {
      vcnet(['detach', '--sandbox', 'to', ...state]);
    });
    // The sandbox's eth0 recorded as waiting for the guest by this (running) process, in an entry of
    // an earlier build (no deadline recorded) whose 4-minute bound has passed: only its process tells.
    const written = guestPendingEntry(
      { name: 'eth0', properties: { link: { name: 'eth0' } } } as Parameters<typeof guestPendingEntry>[0],
      'add-iface',
    );
    const { waitsUntil: _, ...earlier } = written;
    const file = join(stateDirectory(), 'to', 'state.json');
    const record = JSON.parse(readFileSync(file, 'utf8'));
    record.guestPending = [{ ...earlier, since: new Date(Date.now() - 5 * 60_000).toISOString() }];
    writeFileSync(file, JSON.stringify(record));

    const [command, ...args] = [...withOffsetsShown(''), process.execPath, CLI, 'list', ...state];
    const listed = spawnSync(command!, args, { encoding: 'utf8', timeout: 60_000 });
    expect(listed.status, listed.stderr).toBe(0);
    // Before: guest-pending(stopped), no guess (the start shifted by the unread offset matched nothing).
    expect(listed.stdout).toContain('guest-pending(stopped, guessed)');
    expect(listed.stdout).toContain(
      "a guess for eth0: this process's time namespace does not show its boot-time offset (/proc/self/timens_offsets unreadable), which shifts the start time it sees of the process with the command's pid, and its longest wait for the guest has passed",
    );
    // From the host, the same entry is told by the process: this one runs.
    const here = vcnet(['list', ...state]);
    expect(here.stdout).toContain('guest-pending(waiting)');
    expect(here.stdout).not.toContain('a guess for');
  });
});
