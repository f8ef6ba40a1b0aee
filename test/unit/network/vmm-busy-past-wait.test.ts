/**
 * The reason gc and watch give for leaving an unfinished hot-plug when the VMM answered nothing by the
 * end of their wait (vmmBusyPastWait). It said "within <wait> ms in all, at most 1000 ms of it under
 * the sandbox's lock" whatever happened: a VMM hung throughout is waited for the whole wait without the
 * lock and then up to a second under it (a second more than said), and one that answers without the
 * lock but not under it is tried under it again after each answer (several seconds under the lock).
 * The reason now says the time measured and every try under the lock, for QEMU's QMP and Cloud
 * Hypervisor alike. The Cloud Hypervisor side runs for real in unfinished-hotplug-undo-clh.test.ts.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { QmpConnectionError } from '../../../src/hypervisor/errors.js';
import { type VmmWaitSoFar, vmmBusyPastWait } from '../../../src/network/sandbox-vmm-wait.js';

const now = 1_800_000_000_000;
beforeEach(() => {
  vi.useFakeTimers({ toFake: ['Date'] });
  vi.setSystemTime(now);
});
afterEach(() => {
  vi.useRealTimers();
});

const qemu = { kind: 'qemu', controlSocket: '/run/vm/qmp.sock' } as const;
const cloudHypervisor = { kind: 'clh', controlSocket: '/run/vm/api.sock' } as const;
const greeting = new QmpConnectionError(
  'QMP handshake on /run/vm/qmp.sock: no greeting from QEMU within 1000 ms',
  '/run/vm/qmp.sock',
);
/** A wait of 3000 ms that began `msAgo` ms before now, with `tries` under the lock that took `msUnderLock` in all. */
const waitOf = (msAgo: number, tries: number, msUnderLock: number): VmmWaitSoFar => ({
  startedAt: now - msAgo,
  deadline: now - msAgo + 3_000,
  triesUnderLock: tries,
  msUnderLock,
});

describe('vmmBusyPastWait', () => {
  it('a QMP held throughout: the whole wait without the lock, then one try under it, all of it counted', () => {
    const reason = vmmBusyPastWait(qemu, 'gc', waitOf(4_006, 1, 1_004), greeting);
    expect(reason).toContain(
      "its VM's QMP socket /run/vm/qmp.sock did not greet gc within 4006 ms in all, 1004 ms of it under the sandbox's lock (at most 1000 ms), the rest without it (QMP handshake on /run/vm/qmp.sock: no greeting from QEMU within 1000 ms)",
    );
    expect(reason).not.toContain('3000 ms in all');
  });

  it('a QMP that greets without the lock and is held under it: every try under the lock is counted', () => {
    const reason = vmmBusyPastWait(qemu, 'watch', waitOf(3_240, 3, 3_012), greeting);
    expect(reason).toContain(
      "did not greet watch under the sandbox's lock within 3240 ms in all, 3012 ms of it in 3 tries under the sandbox's lock (at most 1000 ms each, QMP having greeted in between without it)",
    );
    expect(reason).not.toContain("at most 1000 ms of it under the sandbox's lock");
  });

  it('Cloud Hypervisor: the same count, said of its vmm.ping', () => {
    const timeout = new Error('no answer within 1000 ms');
    expect(vmmBusyPastWait(cloudHypervisor, 'gc', waitOf(3_234, 3, 3_009), timeout)).toContain(
      "its VM's Cloud Hypervisor API socket /run/vm/api.sock did not answer gc's vmm.ping under the sandbox's lock within 3234 ms in all, 3009 ms of it in 3 tries under the sandbox's lock (at most 1000 ms each, vmm.ping answered in between without it) (no answer within 1000 ms)",
    );
    expect(vmmBusyPastWait(cloudHypervisor, 'gc', waitOf(4_003, 1, 1_001), timeout)).toContain(
      "did not answer gc's vmm.ping within 4003 ms in all, 1001 ms of it under the sandbox's lock (at most 1000 ms), the rest without it",
    );
  });
});
