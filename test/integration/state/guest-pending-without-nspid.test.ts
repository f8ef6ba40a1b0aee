/**
 * guestPending read through a /proc whose status files have no NSpid line (Linux before 4.1, an
 * older gVisor): the entry's process runs in a child PID namespace the reader sees processes of, but
 * no pid of theirs in that namespace. The reader used to find none with the entry's pid there and
 * call the running command stopped, surely; it cannot tell, so it guesses by the entry's wait bound.
 * Real kernel: the writer in a real PID namespace, the reader in a mount namespace of its own
 * (unshare -m) where the writer's /proc/PID/status is a bind-mounted copy without its NSpid line.
 */
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { GuestPending } from '../../../src/network/state/records.js';
import { spawnKilledAfterTest } from '../../helpers/child-output.js';
import { cleanupAfterEach } from '../../helpers/cleanup.js';
import { CLI, stateDirectoryPerTest, vcnet } from '../../helpers/cli.js';
import { GUEST_PENDING_MODULE, guestPendingProcess } from '../../helpers/guest-pending-process.js';
import { makePod } from '../../helpers/pod.js';

const cleanup = cleanupAfterEach();
const stateDirectory = stateDirectoryPerTest('vcnet-no-nspid-');

const skipReason = process.getuid?.() !== 0 ? 'PID and mount namespaces need root' : undefined;
if (skipReason) console.log(`skipping the guestPending without-NSpid tests: ${skipReason}`);

/** The host pid of the one process in PID namespace `inode` (the writer, its namespace's pid 1). */
function hostPidInNamespace(inode: number): string {
  const pids = readdirSync('/proc').filter((name) => {
    if (!/^\d+$/.test(name)) return false;
    try {
      return statSync(`/proc/${name}/ns/pid`).ino === inode;
    } catch {
      return false;
    }
  });
  expect(pids).toHaveLength(1);
  return pids[0]!;
}

/**
 * Runs node with `args` in a mount namespace of its own, where /proc/`pid`/status is `status`
 * (bind-mounted over it; the host's /proc is left as it is); resolves with what it printed.
 */
async function nodeWithStatus(pid: string, status: string, args: string[]): Promise<string> {
  const directory = cleanup.directory('vcnet-guest-no-nspid-');
  const fakeStatus = join(directory, 'status');
  writeFileSync(fakeStatus, status);
  const reader = spawnKilledAfterTest(
    cleanup,
    'unshare',
    [
      '--mount',
      '--propagation',
      'private',
      'sh',
      '-c',
      'mount --bind "$FAKE" "/proc/$WRITER/status" && shift && exec "$NODE" "$@"',
      'sh',
      '--',
      ...args,
    ],
    {
      env: { ...process.env, FAKE: fakeStatus, WRITER: pid, NODE: process.execPath },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  await reader.exited;
  return reader.output();
}

/** guestPendingVerdict of `entry` read through nodeWithStatus's /proc. */
async function verdictWithStatus(entry: GuestPending, pid: string, status: string): Promise<unknown> {
  const read = `const { guestPendingVerdict } = await import(${JSON.stringify(GUEST_PENDING_MODULE)});
  console.log(JSON.stringify(guestPendingVerdict(JSON.parse(process.argv[1]))));`;
  const output = await nodeWithStatus(pid, status, ['--input-type=module', '-e', read, JSON.stringify(entry)]);
  try {
    return JSON.parse(output.trim().split('\n').at(-1) ?? '');
  } catch {
    throw new Error(`the reader printed no verdict: ${output}`);
  }
}

describe('guestPending read through a /proc without NSpid lines', () => {
  it.skipIf(skipReason)(
    "an entry of a child namespace's running command is a guess (waiting until its bound), not stopped surely",
    async () => {
      const writer = guestPendingProcess(cleanup, ['unshare', '--pid', '--fork', '--kill-child']);
      const entry = await writer.entry();
      expect(entry.pid).toBe(1);
      expect(entry.pidNamespace).toBeDefined();
      const pid = hostPidInNamespace(entry.pidNamespace!.inode);
      const status = readFileSync(`/proc/${pid}/status`, 'utf8');
      expect(status).toMatch(/^NSpid:\s+\d+\s+1$/m);

      // The same bind-mounted reading with the NSpid line kept: told by the process, as on the host.
      expect(await verdictWithStatus(entry, pid, status)).toEqual({ running: true, guessed: false });
      // Without it: no process of the namespace can be matched to pid 1 there. Before, stopped surely:
      // { running: false, guessed: false }.
      const withoutNSpid = status.replace(/^NSpid:.*\n/m, '');
      expect(await verdictWithStatus(entry, pid, withoutNSpid)).toEqual({
        running: true,
        guessed: true,
        withoutNSpid: true,
      });
      // Past the entry's own bound the guess is that it stopped.
      const lapsed = { ...entry, waitsUntil: new Date(Date.now() - 1_000).toISOString() };
      expect(await verdictWithStatus(lapsed, pid, withoutNSpid)).toEqual({
        running: false,
        guessed: true,
        withoutNSpid: true,
      });
    },
  );
});

describe('vcnet list through a /proc without NSpid lines', () => {
  it.skipIf(skipReason)(
    "says the verdict on a child namespace's command is a guess, and why: no pid of that namespace shows",
    async () => {
      const { pod } = makePod();
      const state = ['--state-dir', stateDirectory()];
      const attached = vcnet(['attach', '--sandbox', 'nn', '--netns', pod.path, ...state]);
      expect(attached.status, attached.stderr).toBe(0);
      cleanup.defer(() => {
        vcnet(['detach', '--sandbox', 'nn', ...state]);
      });
      const writer = guestPendingProcess(cleanup, ['unshare', '--pid', '--fork', '--kill-child']);
      const written = await writer.entry();
      const pid = hostPidInNamespace(written.pidNamespace!.inode);
      const status = readFileSync(`/proc/${pid}/status`, 'utf8').replace(/^NSpid:.*\n/m, '');
      // The sandbox's eth0 recorded as waiting for the guest, by that command, its wait over.
      const file = join(stateDirectory(), 'nn', 'state.json');
      const record = JSON.parse(readFileSync(file, 'utf8'));
      const lapsed = new Date(Date.now() - 1_000).toISOString();
      record.guestPending = [{ ...written, name: 'eth0', podLink: 'eth0', waitsUntil: lapsed }];
      writeFileSync(file, JSON.stringify(record));

      const listed = await nodeWithStatus(pid, status, [CLI, 'list', ...state]);
      expect(listed).toContain('eth0<-eth0');
      expect(listed).toContain('guest-pending(stopped, guessed)');
      expect(listed).toContain(
        'a guess for eth0: this /proc shows no pid of its PID namespace (no NSpid lines in /proc/PID/status: Linux before 4.1, or an older gVisor), and its longest wait for the guest has passed',
      );
      expect(listed).not.toContain('is not seen from here');
      // From the host's own /proc, the same entry is told by the process: stopped past its deadline, no guess.
      const here = vcnet(['list', ...state]);
      expect(here.stdout).toContain('guest-pending(stopped)');
      expect(here.stdout).not.toContain('a guess for');
    },
  );
});
