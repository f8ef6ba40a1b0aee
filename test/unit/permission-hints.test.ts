/** What a refusal for lack of privilege is classified as and what its hint names. */
import { describe, expect, it, vi } from 'vitest';
import {
  classifyError,
  type DetachFinishedBy,
  DetachIncompleteError,
  hintForErrno,
  hintFromCause,
  missingCapabilities,
  pathPermissionHint,
  SystemCallError,
} from '../../src/errors.js';

/** A /proc/PID/status with this CapEff (hex), as the kernel writes it. */
const status = (capEff: string) => `Name:\tnode\nCapInh:\t0000000000000000\nCapPrm:\t${capEff}\nCapEff:\t${capEff}\n`;

const systemError = (code: string, message: string) =>
  Object.assign(new Error(message), { code, errno: -1, syscall: 'ioctl' });

describe('missing capabilities', () => {
  it('reads CAP_NET_ADMIN (bit 12) and CAP_SYS_ADMIN (bit 21) from CapEff', () => {
    expect(missingCapabilities(status('000001ffffffffff'))).toEqual([]);
    expect(missingCapabilities(status('0000000000200000'))).toEqual(['CAP_NET_ADMIN']);
    expect(missingCapabilities(status('0000000000001000'))).toEqual(['CAP_SYS_ADMIN']);
    expect(missingCapabilities(status('0000000000000000'))).toEqual(['CAP_NET_ADMIN', 'CAP_SYS_ADMIN']);
    expect(missingCapabilities('Name:\tnode\n')).toBeUndefined();
  });

  it('a bare EPERM under a wrapper gets the permission hint, not "see the cause"', () => {
    const geteuid = vi.spyOn(process as { geteuid: () => number }, 'geteuid').mockReturnValue(1000);
    try {
      const cause = new Error('create tap tap0_kata failed', {
        cause: systemError('EPERM', 'ioctl(SIOCGSKNS) : Operation not permitted'),
      });
      expect(hintFromCause(cause)).toBe(hintForErrno('EPERM'));
      expect(hintFromCause(cause)).toContain('CAP_NET_ADMIN and CAP_SYS_ADMIN');
    } finally {
      geteuid.mockRestore();
    }
  });
});

describe('an incomplete detach', () => {
  it('refused with EPERM is "not permitted" (exit 3, CNI 108) and its hint is not "run the command again"', () => {
    const refusal = systemError('EPERM', 'delete tun tap0_kata failed: EPERM');
    const error = new DetachIncompleteError(
      'detach of s',
      ['delete tun tap0_kata failed: EPERM'],
      ['tun tap0_kata'],
      '/run/x/s/state.json',
      undefined,
      [systemError('EBUSY', 'delete qdisc failed: EBUSY'), refusal],
    );
    expect(classifyError(error)).toMatchObject({ exit: 'NOT_PERMITTED', cni: 'NOT_PERMITTED', errno: 'EPERM' });
    expect(error.cause).toBe(refusal);
    expect(error.hint).not.toContain('run the command again');
    expect(error.hint).toContain('/run/x/s/state.json');
  });

  it('refused otherwise stays VCNET_DETACH_INCOMPLETE (exit 1) with "run the command again"', () => {
    const error = new DetachIncompleteError('detach of s', ['busy'], ['tun tap0_kata'], '/r/state.json', undefined, [
      systemError('EBUSY', 'delete tun tap0_kata failed: EBUSY'),
    ]);
    expect(classifyError(error)).toMatchObject({ code: 'VCNET_DETACH_INCOMPLETE', exit: 'FAILED' });
    expect(error.hint).toContain('run the command again');
  });

  it("never points at `vcnet gc`, which leaves a live sandbox's record alone; a CNI DEL is finished by the next DEL", () => {
    const eperm = [systemError('EPERM', 'delete tun tap0_kata failed: EPERM')];
    const ebusy = [systemError('EBUSY', 'delete tun tap0_kata failed: EBUSY')];
    const make = (refusals: unknown[], finishedBy?: DetachFinishedBy) =>
      new DetachIncompleteError(
        'detach of s',
        ['x'],
        ['tun tap0_kata'],
        '/r/state.json',
        undefined,
        refusals,
        finishedBy,
      );
    expect(make(eperm).hint).toMatch(
      /\/r\/state\.json keeps what is left for the same command run again with that privilege$/,
    );
    expect(make(ebusy).hint).toBe('/r/state.json keeps them: run the command again (what is already gone is skipped)');
    const del = { again: "the runtime's next DEL finishes it", next: "the runtime's next DEL" };
    expect(make(eperm, del).hint).toContain("keeps what is left for the runtime's next DEL with that privilege");
    expect(make(ebusy, del).hint).toBe("/r/state.json keeps them: the runtime's next DEL finishes it");
    for (const error of [make(eperm), make(ebusy), make(eperm, del), make(ebusy, del)])
      expect(error.hint).not.toContain('gc');
  });
});

describe('EACCES on a path', () => {
  const root = status('000001ffffffffff');
  const noDac = status('000001fffffffff9'); // all but CAP_DAC_OVERRIDE (1) and CAP_DAC_READ_SEARCH (2)
  const noPtrace = status('000001fffff7ffff'); // all but CAP_SYS_PTRACE (19)

  it('names CAP_DAC_READ_SEARCH / CAP_DAC_OVERRIDE and the path when both are missing', () => {
    const hint = pathPermissionHint('/srv/pods/ns', noDac);
    expect(hint).toContain('/srv/pods/ns, or a directory on the way to it');
    expect(hint).toContain('lacks CAP_DAC_READ_SEARCH and CAP_DAC_OVERRIDE');
    expect(hint).not.toContain('user namespace');
    // One of them lets root past file permission: then it is not the cause.
    expect(pathPermissionHint('/srv/pods/ns', status('000001fffffffffd'))).toBeUndefined();
  });

  it("names CAP_SYS_PTRACE for another process's /proc/PID path, not for this process's own", () => {
    const hint = pathPermissionHint('/proc/4242/ns/net', noPtrace);
    expect(hint).toContain('/proc/4242/ns/net belongs to another process');
    expect(hint).toContain('lacks CAP_SYS_PTRACE');
    expect(pathPermissionHint(`/proc/${process.pid}/ns/net`, noPtrace)).toBeUndefined();
    expect(pathPermissionHint('/proc/self/ns/net', noPtrace)).toBeUndefined();
  });

  it('keeps the user namespace / security module wording for a full root refused anyway', () => {
    expect(pathPermissionHint('/proc/4242/ns/net', root)).toBeUndefined();
    expect(pathPermissionHint('/srv/pods/ns', root)).toBeUndefined();
    const geteuid = vi.spyOn(process as { geteuid: () => number }, 'geteuid').mockReturnValue(0);
    try {
      const error = new SystemCallError(
        'stat /srv/pods/ns',
        Object.assign(new Error("EACCES: permission denied, stat '/srv/pods/ns'"), {
          code: 'EACCES',
          errno: -13,
          syscall: 'stat',
          path: '/srv/pods/ns',
        }),
      );
      // This test runs with whatever capabilities it has: the hint is one of the two, never empty.
      expect(error.hint).toMatch(/CAP_DAC_READ_SEARCH|another user namespace|lacks CAP_/);
    } finally {
      geteuid.mockRestore();
    }
  });
});
