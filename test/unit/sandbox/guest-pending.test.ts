/**
 * The guestPending entries add-iface records while it waits for the guest without the sandbox lock:
 * whose they are (a process still running, told by pid and start time), which endpoints a push of
 * the whole set leaves out, and that an endpoint removed takes its entry with it.
 */
import { spawnSync } from 'node:child_process';
import { statSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { Endpoint } from '../../../src/network/endpoint/endpoint.js';
import type { GuestPending, SandboxState, UnplugUnfinished } from '../../../src/network/state/records.js';
import {
  awaitedByAnother,
  decideGuestPending,
  entriesOfEndpoints,
  GUEST_PENDING_WAIT_BOUND_MS,
  guessedWords,
  guestPendingEntry,
  guestPendingRunning,
  guestPendingVerdict,
  guestPendingVerdicts,
  guestPendingWaitBoundMs,
  isOwnEntry,
  notPermittedWhy,
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
    // Its own deadline: the longest its command keeps it, with the lock wait it was given.
    expect(Date.parse(mine.waitsUntil ?? '') - Date.parse(mine.since)).toBe(guestPendingWaitBoundMs(30_000));
    const patient = guestPendingEntry(endpoint('net9', 'eth9'), 'add-iface', { lockTimeoutMs: 600_000 });
    expect(Date.parse(patient.waitsUntil ?? '') - Date.parse(patient.since)).toBe(820_020);
    // A watch's push of three endpoints: 3 × (10 s of retries + 20 ms + 60 s) + 2 × 60 s, then 30 s + 30 s.
    const watched = guestPendingEntry(endpoint('net9', 'eth9'), 'watch', { interfaces: 3 });
    expect(Date.parse(watched.waitsUntil ?? '') - Date.parse(watched.since)).toBe(390_060);
    expect(guestPendingRunning(mine)).toBe(true);
    // The same pid, started at another time (a second later): a later process given the pid, not the add-iface.
    expect(guestPendingRunning({ ...mine, pidStart: `${Number(mine.pidStart) + 100}` })).toBe(false);
    // One tick apart is the same start: a time namespace's offset in parts of a tick rounds it so.
    expect(guestPendingRunning({ ...mine, pidStart: `${Number(mine.pidStart) + 1}` })).toBe(true);
    expect(guestPendingRunning({ ...mine, pidStart: `${Number(mine.pidStart) - 1}` })).toBe(true);
    expect(guestPendingRunning({ ...mine, pidStart: `${Number(mine.pidStart) + 2}` })).toBe(false);
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

  it('leaves out what the verdicts the caller read say, not a second read of them (configure-guest says what it left out of the same read)', () => {
    const stopped: GuestPending = { ...guestPendingEntry(endpoint('net8', 'eth8'), 'add-iface'), pid: exitedPid() };
    const running = guestPendingEntry(endpoint('net9', 'eth9'), 'add-iface');
    const state = { guestPending: [running, stopped] } as unknown as SandboxState;
    const read = guestPendingVerdicts(state);
    expect(read.get(running.token)).toEqual({ running: true, guessed: false });
    expect(read.get(stopped.token)).toEqual({ running: false, guessed: false });
    // As read at another moment: net8's command running then, net9's stopped since.
    const earlier = new Map([
      [stopped.token, { running: true, guessed: false }],
      [running.token, { running: false, guessed: false }],
    ]);
    expect([...awaitedByAnother(state, earlier)]).toEqual(['net8']);
    const all = [endpoint('eth0'), endpoint('net8', 'eth8'), endpoint('net9', 'eth9')];
    expect(withoutAwaited(all, state, earlier).map((kept) => kept.name)).toEqual(['eth0', 'net9']);
  });

  it('drops the entry (guestPending or unplugUnfinished) of an endpoint the record no longer holds, by name and pod link, and one by its token', () => {
    const entry = guestPendingEntry(endpoint('net9', 'eth9'), 'add-iface');
    expect(entriesOfEndpoints([entry], [endpoint('eth0'), endpoint('net9', 'eth9')])).toEqual([entry]);
    expect(entriesOfEndpoints([entry], [endpoint('eth0')])).toBeUndefined();
    // Another link under the name: not the endpoint the entry is about.
    expect(entriesOfEndpoints([entry], [endpoint('net9', 'eth7')])).toBeUndefined();
    expect(entriesOfEndpoints(undefined, [endpoint('eth0')])).toBeUndefined();
    // An unplugUnfinished entry goes with its endpoint the same way.
    const unplug: UnplugUnfinished = { name: 'net9', podLink: 'eth9', deviceId: 'net1', since: '' };
    expect(entriesOfEndpoints([unplug], [endpoint('eth0'), endpoint('net9', 'eth9')])).toEqual([unplug]);
    expect(entriesOfEndpoints([unplug], [endpoint('net9', 'eth7')])).toBeUndefined();
    const other = guestPendingEntry(endpoint('net8', 'eth8'), 'add-iface');
    expect(withoutEntries([entry, other], entry.token)).toEqual([other]);
    expect(withoutEntries([entry], entry.token)).toBeUndefined();
  });

  it("records this process's PID namespace, and reads an entry of another namespace it cannot see as running until the wait bound, by guess", () => {
    const mine = guestPendingEntry(endpoint('net9', 'eth9'), 'add-iface');
    expect(mine.pidNamespace).toEqual({ device: expect.any(Number), inode: expect.any(Number) });
    expect(guestPendingVerdict(mine)).toEqual({ running: true, guessed: false });
    expect(isOwnEntry(mine)).toBe(true);
    // Another namespace (no process of this /proc is in it): the same pid is not this process.
    const elsewhere: GuestPending = { ...mine, pidNamespace: { device: 0, inode: 1 } };
    expect(isOwnEntry(elsewhere)).toBe(false);
    const since = Date.parse(mine.since);
    // From the initial namespace every live one shows: one that does not is gone. Elsewhere, a guess.
    const initial = statSync('/proc/self/ns/pid').ino === 0xeffffffc;
    expect(guestPendingVerdict(elsewhere, since + 1000)).toEqual(
      initial ? { running: false, guessed: false } : { running: true, guessed: true },
    );
    expect(guestPendingVerdict(elsewhere, since + GUEST_PENDING_WAIT_BOUND_MS + 1)).toEqual({
      running: false,
      guessed: !initial,
    });
    // An old record (no namespace): the pid looked up here, as before.
    const { pidNamespace: _dropped, ...old } = mine;
    expect(guestPendingVerdict(old)).toEqual({ running: true, guessed: false });
  });
});

describe('decideGuestPending', () => {
  const entry: GuestPending = {
    name: 'net9',
    podLink: 'eth9',
    token: 't',
    pid: 1,
    pidStart: '500',
    pidNamespace: { device: 4, inode: 4026532000 },
    since: '2026-01-01T00:00:00.000Z',
    by: 'add-iface',
  };
  const since = Date.parse(entry.since);

  it('judges a process it sees (in its own namespace or translated) by its start time, never guessing', () => {
    for (const kind of ['same', 'translated'] as const) {
      expect(decideGuestPending(entry, { kind, start: '500' }, since)).toEqual({ running: true, guessed: false });
      // Another process with that pid: the add-iface is gone.
      expect(decideGuestPending(entry, { kind, start: '900' }, since)).toEqual({ running: false, guessed: false });
      expect(decideGuestPending(entry, { kind, start: undefined }, since)).toEqual({ running: false, guessed: false });
    }
    const { pidStart: _none, ...noStart } = entry;
    expect(decideGuestPending(noStart, { kind: 'translated', start: '900' }, since).running).toBe(true);
  });

  it("takes a process seen alive as stopped past the deadline its entry records: the command waits no longer (a library caller's addInterface that could not take the lock again lives on)", () => {
    const recorded: GuestPending = { ...entry, waitsUntil: '2026-01-01T00:04:00.000Z' };
    for (const kind of ['same', 'translated'] as const) {
      expect(decideGuestPending(recorded, { kind, start: '500' }, since + 239_999)).toEqual({
        running: true,
        guessed: false,
      });
      expect(decideGuestPending(recorded, { kind, start: '500' }, since + 240_000)).toEqual({
        running: false,
        guessed: false,
      });
    }
    // This process's own entry: waiting until its deadline, not for as long as the process runs.
    const mine = guestPendingEntry(endpoint('net9', 'eth9'), 'add-iface');
    const deadline = Date.parse(mine.waitsUntil ?? '');
    expect(guestPendingVerdict(mine, deadline - 1)).toEqual({ running: true, guessed: false });
    expect(guestPendingVerdict(mine, deadline)).toEqual({ running: false, guessed: false });
    // An earlier build's entry records no deadline: its process alone tells.
    expect(decideGuestPending(entry, { kind: 'same', start: '500' }, since + 3_600_000).running).toBe(true);
  });

  it('guesses for a namespace out of sight: running within the wait bound past since, stopped after it', () => {
    const unseen = { kind: 'unseen', initial: false } as const;
    expect(decideGuestPending(entry, unseen, since)).toEqual({ running: true, guessed: true });
    expect(decideGuestPending(entry, unseen, since + GUEST_PENDING_WAIT_BOUND_MS - 1)).toEqual({
      running: true,
      guessed: true,
    });
    expect(decideGuestPending(entry, unseen, since + GUEST_PENDING_WAIT_BOUND_MS)).toEqual({
      running: false,
      guessed: true,
    });
    // No time to count from: taken as past the bound.
    expect(decideGuestPending({ ...entry, since: 'yesterday' }, unseen, since)).toEqual({
      running: false,
      guessed: true,
    });
  });

  it("counts to the writer's own deadline when the entry records one (a longer lock wait), to the 4-minute bound when it does not", () => {
    const unseen = { kind: 'unseen', initial: false } as const;
    // An add-iface given a 10-minute lock wait keeps its entry up to its push (a NIC not shown yet
    // retried for 10 s, then 3 calls of 60 s) + 600 s + 30 s.
    expect(guestPendingWaitBoundMs(600_000)).toBe(820_020);
    expect(guestPendingWaitBoundMs(30_000, 3)).toBe(390_060);
    // It covers the longest push: each NIC shown only as its retries end, each call taking its whole 60 s.
    for (const interfaces of [1, 4, 10]) {
      const longestPush = interfaces * (9_999 + 20 + 60_000) + 2 * 60_000;
      expect(guestPendingWaitBoundMs(30_000, interfaces) - 30_000 - 30_000).toBeGreaterThanOrEqual(longestPush);
    }
    // An entry of an earlier build is read as that build reckoned its push.
    expect(GUEST_PENDING_WAIT_BOUND_MS).toBe(240_000);
    const waitsUntil = new Date(since + 810_000).toISOString();
    const patient: GuestPending = { ...entry, waitsUntil };
    expect(decideGuestPending(patient, unseen, since + GUEST_PENDING_WAIT_BOUND_MS + 1)).toEqual({
      running: true,
      guessed: true,
    });
    expect(decideGuestPending(patient, unseen, since + 810_000)).toEqual({ running: false, guessed: true });
    // A deadline shorter than the default bound (a lock wait of 0) is the writer's too.
    const hasty: GuestPending = { ...entry, waitsUntil: new Date(since + 210_000).toISOString() };
    expect(decideGuestPending(hasty, unseen, since + 210_000)).toEqual({ running: false, guessed: true });
    expect(decideGuestPending({ ...entry, waitsUntil: 'soon' }, unseen, since)).toEqual({
      running: false,
      guessed: true,
    });
  });

  it('says a verdict told by time is a guess, with the time it turns on; a verdict told by the process, nothing', () => {
    const patient: GuestPending = { ...entry, waitsUntil: '2026-01-01T00:13:30.250Z' };
    expect(guessedWords(patient, { running: true, guessed: true })).toBe(
      'guessed: it runs in a PID namespace not seen from here, so it is taken as waiting until its longest wait ends, at 2026-01-01T00:13:30Z',
    );
    // An earlier build's entry: 4 minutes past since.
    expect(guessedWords(entry, { running: false, guessed: true })).toBe(
      'guessed: it ran in a PID namespace not seen from here, and its longest wait ended at 2026-01-01T00:04:00Z',
    );
    expect(guessedWords(entry, { running: true, guessed: false })).toBeUndefined();
  });

  it('guesses by the wait bound when this process may not look at the processes that would tell, and says why', () => {
    const hidden = { kind: 'not-permitted' } as const;
    const patient: GuestPending = { ...entry, waitsUntil: '2026-01-01T00:13:30.250Z' };
    const waiting = decideGuestPending(patient, hidden, since);
    expect(waiting).toEqual({ running: true, guessed: true, notPermitted: true });
    expect(decideGuestPending(patient, hidden, since + 810_250)).toEqual({
      running: false,
      guessed: true,
      notPermitted: true,
    });
    // The reason is this process's own (notPermittedWhy, below): root or not, CAP_SYS_PTRACE or not.
    const { reason } = notPermittedWhy();
    expect(guessedWords(patient, waiting)).toBe(
      `guessed: this process may not look at it (${reason}), so it is taken as waiting until its longest wait ends, at 2026-01-01T00:13:30Z`,
    );
    expect(guessedWords(patient, { running: false, guessed: true, notPermitted: true })).toBe(
      `guessed: this process may not look at it (${reason}), and its longest wait ended at 2026-01-01T00:13:30Z`,
    );
  });

  it('says why it may not look as what this process is: another user, root without CAP_SYS_PTRACE, or root fenced off', () => {
    // CapEff with every capability up to CAP_CHECKPOINT_RESTORE (40), and the same without CAP_SYS_PTRACE (19).
    const all = 'CapEff:\t000001ffffffffff\n';
    const noPtrace = 'CapEff:\t000001fffff7ffff\n';
    expect(notPermittedWhy(65534, all)).toEqual({
      reason: "another user's process: looking at it takes root or CAP_SYS_PTRACE",
      remedy: '`vcnet list` as root tells by the process',
    });
    expect(notPermittedWhy(0, noPtrace)).toEqual({
      reason:
        'a process with capabilities this one lacks: root without CAP_SYS_PTRACE may look only at processes whose capabilities it has itself',
      remedy: '`vcnet list` as root with CAP_SYS_PTRACE tells by the process',
    });
    expect(notPermittedWhy(0, all).reason).toBe(
      'refused by a security module or a user namespace boundary, which no capability of this process lifts',
    );
  });

  it("guesses by the wait bound when this /proc shows no process's pid in its own namespace (no NSpid), and says why", () => {
    const unmatched = { kind: 'without-nspid' } as const;
    const patient: GuestPending = { ...entry, waitsUntil: '2026-01-01T00:13:30.250Z' };
    const waiting = decideGuestPending(patient, unmatched, since);
    expect(waiting).toEqual({ running: true, guessed: true, withoutNSpid: true });
    expect(decideGuestPending(patient, unmatched, since + 810_250)).toEqual({
      running: false,
      guessed: true,
      withoutNSpid: true,
    });
    expect(guessedWords(patient, waiting)).toBe(
      'guessed: this /proc shows no pid of its PID namespace (no NSpid lines in /proc/PID/status: Linux before 4.1, or an older gVisor), so it is taken as waiting until its longest wait ends, at 2026-01-01T00:13:30Z',
    );
  });

  it("guesses by the wait bound when a process has the entry's pid but this time namespace hides its offset, and says why", () => {
    const unplaced = { kind: 'time-offset-unreadable' } as const;
    const patient: GuestPending = { ...entry, waitsUntil: '2026-01-01T00:13:30.250Z' };
    const waiting = decideGuestPending(patient, unplaced, since);
    expect(waiting).toEqual({ running: true, guessed: true, timeOffsetUnreadable: true });
    expect(guessedWords(patient, waiting)).toBe(
      "guessed: this process's time namespace does not show its boot-time offset (/proc/self/timens_offsets unreadable), which shifts the start time it sees of the process with the command's pid, so it is taken as waiting until its longest wait ends, at 2026-01-01T00:13:30Z",
    );
    // Past the deadline it records, the command waits no more, whichever process has its pid.
    expect(decideGuestPending(patient, unplaced, since + 810_250)).toEqual({ running: false, guessed: false });
    // An earlier build's entry records no deadline: past its bound, still a guess.
    const earlier = decideGuestPending(entry, unplaced, since + GUEST_PENDING_WAIT_BOUND_MS);
    expect(earlier).toEqual({ running: false, guessed: true, timeOffsetUnreadable: true });
    expect(guessedWords(entry, earlier)).toMatch(/timens_offsets unreadable\), .* and its longest wait ended at /);
  });

  it('from the initial namespace, which sees every live one, a namespace out of sight is gone: stopped, surely', () => {
    expect(decideGuestPending(entry, { kind: 'unseen', initial: true }, since)).toEqual({
      running: false,
      guessed: false,
    });
  });
});
