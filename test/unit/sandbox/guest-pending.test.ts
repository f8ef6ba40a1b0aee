/**
 * The guestPending entries add-iface records while it waits for the guest without the sandbox lock:
 * whose they are (a process still running, told by pid and start time), which endpoints a push of
 * the whole set leaves out, and that an endpoint removed takes its entry with it.
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import type { Endpoint } from '../../../src/network/endpoint/endpoint.js';
import type { GuestPending, SandboxState } from '../../../src/network/state/records.js';
import {
  awaitedByAnother,
  guestPendingEntry,
  guestPendingOf,
  guestPendingRunning,
  withoutAwaited,
  withoutEntries,
} from '../../../src/sandbox/guest-pending.js';

const endpoint = (name: string, link = name) => ({ name, properties: { link: { name: link } } }) as unknown as Endpoint;

/** The pid of a process that has exited. */
function exitedPid(): number {
  const child = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']);
  return Number(String(child.stdout));
}

describe('guestPending entries', () => {
  it("tells this process's entry as running, and one of an exited process or of another start time as stopped", () => {
    const mine = guestPendingEntry(endpoint('net9', 'eth9'), 'add-iface');
    expect(mine).toMatchObject({ name: 'net9', podLink: 'eth9', pid: process.pid, by: 'add-iface' });
    expect(mine.pidStart).toMatch(/^\d+$/);
    expect(guestPendingRunning(mine)).toBe(true);
    // The same pid, started at another time: a later process given the pid, not the add-iface.
    expect(guestPendingRunning({ ...mine, pidStart: `${Number(mine.pidStart) + 1}` })).toBe(false);
    expect(guestPendingRunning({ ...mine, pid: exitedPid() })).toBe(false);
    expect(guestPendingEntry(endpoint('net9'), 'add-iface').token).not.toBe(mine.token);
  });

  it('leaves out of a whole-set push the endpoints a running add-iface waits for, not those of a stopped one', () => {
    const running = guestPendingEntry(endpoint('net9', 'eth9'), 'add-iface');
    const stopped: GuestPending = { ...guestPendingEntry(endpoint('net8', 'eth8'), 'add-iface'), pid: exitedPid() };
    const state = { guestPending: [running, stopped] } as unknown as SandboxState;
    expect([...awaitedByAnother(state)]).toEqual(['net9']);
    const all = [endpoint('eth0'), endpoint('net8', 'eth8'), endpoint('net9', 'eth9')];
    expect(withoutAwaited(all, state).map((kept) => kept.name)).toEqual(['eth0', 'net8']);
    expect(withoutAwaited(all, {} as SandboxState)).toHaveLength(3);
  });

  it('drops the entry of an endpoint the record no longer holds, by name and pod link, and one by its token', () => {
    const entry = guestPendingEntry(endpoint('net9', 'eth9'), 'add-iface');
    expect(guestPendingOf([entry], [endpoint('eth0'), endpoint('net9', 'eth9')])).toEqual([entry]);
    expect(guestPendingOf([entry], [endpoint('eth0')])).toBeUndefined();
    // Another link under the name: not the endpoint the entry is about.
    expect(guestPendingOf([entry], [endpoint('net9', 'eth7')])).toBeUndefined();
    expect(guestPendingOf(undefined, [endpoint('eth0')])).toBeUndefined();
    const other = guestPendingEntry(endpoint('net8', 'eth8'), 'add-iface');
    expect(withoutEntries([entry, other], entry.token)).toEqual([other]);
    expect(withoutEntries([entry], entry.token)).toBeUndefined();
  });
});
