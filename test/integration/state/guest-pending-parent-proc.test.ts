/**
 * guestPending entries written or read by a process in a PID namespace whose /proc is its parent
 * namespace's (`unshare --pid --fork` without --mount-proc, a container that shares the host's
 * /proc). Its pid (getpid) is the one of its own namespace, but /proc/<that pid> there is another
 * process of the parent's: the entry's start time used to be that process's (the host's pid 1 for
 * the namespace's first process), so a reader on the host called the running command stopped, and a
 * reader in the same namespace took a command long gone for running while that other process lived.
 * Real PID namespaces; the entries are made by vcnet's own module (dist/, as the CLI runs it).
 */
import { readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Endpoint } from '../../../src/network/endpoint/endpoint.js';
import { guestPendingEntry, guestPendingVerdict } from '../../../src/sandbox/guest-pending.js';
import { spawnKilledAfterTest } from '../../helpers/child-output.js';
import { cleanupAfterEach } from '../../helpers/cleanup.js';
import { GUEST_PENDING_MODULE, guestPendingProcess } from '../../helpers/guest-pending-process.js';
import { until } from '../../helpers/until.js';

const cleanup = cleanupAfterEach();

/** guestPendingProcess, in a new PID namespace that keeps this /proc when `unshared`. */
function entryWriter(unshared: boolean) {
  return guestPendingProcess(cleanup, unshared ? ['unshare', '--pid', '--fork', '--kill-child'] : []);
}

const unshareSkip = process.getuid?.() !== 0 ? 'PID namespaces need root' : undefined;
if (unshareSkip) console.log(`skipping the guestPending parent-/proc tests: ${unshareSkip}`);

describe("guestPending in a PID namespace that sees its parent namespace's /proc", () => {
  it.skipIf(unshareSkip)(
    'an entry written there is seen running from the host while its process runs, stopped once it is gone',
    async () => {
      const writer = entryWriter(true);
      const entry = await writer.entry();
      // The namespace's first process: pid 1 there, never this test's pid 1.
      expect(entry.pid).toBe(1);
      expect(guestPendingVerdict(entry)).toEqual({ running: true, guessed: false });
      await writer.exit();
      expect(guestPendingVerdict(entry)).toEqual({ running: false, guessed: false });
    },
  );

  it.skipIf(unshareSkip)(
    "a reader there sees an entry of its namespace whose process is gone as stopped, not as the parent's process with that pid",
    async () => {
      // sh is the namespace's pid 1; the writer, its first child, pid 2 there (the parent's pid 2 is
      // kthreadd, which lives on); the reader runs once the writer is gone.
      const directory = cleanup.directory('vcnet-guest-parent-proc-');
      const write = `const { guestPendingEntry } = await import(${JSON.stringify(GUEST_PENDING_MODULE)});
      console.log(JSON.stringify(guestPendingEntry({ name: 'eth1', properties: { link: { name: 'eth9' } } }, 'add-iface')));`;
      const read = `const { guestPendingVerdict } = await import(${JSON.stringify(GUEST_PENDING_MODULE)});
      const { readFileSync } = await import('node:fs');
      const entry = JSON.parse(readFileSync(process.argv[1], 'utf8'));
      console.log(JSON.stringify({ pid: entry.pid, verdict: guestPendingVerdict(entry) }));`;
      const child = spawnKilledAfterTest(
        cleanup,
        'unshare',
        [
          '--pid',
          '--fork',
          '--kill-child',
          'sh',
          '-c',
          'node --input-type=module -e "$WRITE" > "$ENTRY" && node --input-type=module -e "$READ" "$ENTRY"',
        ],
        {
          env: {
            ...process.env,
            WRITE: write,
            READ: read,
            ENTRY: `${directory}/entry.json`,
            PATH: `${dirname(process.execPath)}:${process.env.PATH ?? ''}`,
          },
        },
      );
      await child.exited;
      const output = child.output();
      const { pid, verdict } = JSON.parse(output.trim().split('\n').at(-1) ?? '{}') as {
        pid: number;
        verdict: unknown;
      };
      expect(pid, output).toBe(2);
      expect(verdict, output).toEqual({ running: false, guessed: false });
    },
  );

  it.skipIf(unshareSkip)(
    'the writer itself, there, takes its own entry for running (the entry it wrote is its own)',
    async () => {
      const writer = entryWriter(true);
      const entry = await writer.entry();
      expect(await writer.verdictOf(entry)).toEqual({ running: true, guessed: false, own: true });
    },
  );
});

describe("guestPending read through another PID namespace's /proc", () => {
  it.skipIf(unshareSkip)(
    "a reader whose /proc is a child namespace's (a container's mount namespace entered alone) guesses by time: none of its pids is looked up there",
    async () => {
      // A container: its own PID namespace, with its own /proc in its own mount namespace.
      const { child: container } = spawnKilledAfterTest(
        cleanup,
        'unshare',
        ['--pid', '--fork', '--mount-proc', '--kill-child', 'sleep', '600'],
        { stdio: 'ignore' },
      );
      const childrenOf = (pid: number) =>
        readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);
      await until(() => childrenOf(container.pid!).length > 0, "the container's process");
      const inside = childrenOf(container.pid!)[0]!;
      // This process's entry, as an add-iface on the host writes it: running, and its pid means
      // nothing in the container's /proc.
      const entry = guestPendingEntry(
        { name: 'eth1', properties: { link: { name: 'eth9' } } } as Endpoint,
        'add-iface',
      );
      const read = `const { guestPendingVerdict } = await import(${JSON.stringify(GUEST_PENDING_MODULE)});
      console.log(JSON.stringify(guestPendingVerdict(JSON.parse(process.argv[1]))));`;
      const reader = spawnKilledAfterTest(
        cleanup,
        'nsenter',
        // -r and -w: the container's root and working directory, not its mount namespace's own root
        // (which setns makes the root: a chroot's / otherwise, where this node is not).
        ['-t', inside, '-m', '-r', '-w', process.execPath, '--input-type=module', '-e', read, JSON.stringify(entry)],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      await reader.exited;
      const output = reader.output();
      // Before: the host pid looked up in the container's /proc, no such process there: stopped, surely.
      expect(JSON.parse(output.trim().split('\n').at(-1) ?? '{}'), output).toEqual({ running: true, guessed: true });
    },
  );
});
