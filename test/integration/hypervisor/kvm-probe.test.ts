/**
 * probeKvm boots the host kernel for a moment. On the machines vcnet is developed on, /dev/kvm
 * opens but nested guests hang in firmware, so the probe must answer "no" within its timeout and
 * leave no QEMU behind. Set VCNET_KVM_WORKS=1 on a host where KVM guests really run.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { probeKvm, probeKvmWithReason } from '../../../src/hypervisor/kvm-probe.js';
import { qemuIntegrationSkipReason } from './paused-qemu.js';

const hasKernel = existsSync('/boot') && readdirSync('/boot').some((name) => name.startsWith('vmlinuz-'));
const skipReason = qemuIntegrationSkipReason() ?? (hasKernel ? undefined : 'no /boot/vmlinuz-* to boot');
if (skipReason) console.log(`skipping KVM probe tests: ${skipReason}`);

/** QEMUs started by the probe (its kernel command line is unique to it). */
function probeQemus(): string {
  try {
    return execFileSync('pgrep', ['-f', 'earlyprintk=serial,ttyS0,115200 panic=-1'], { encoding: 'utf8' }).trim();
  } catch {
    return ''; // pgrep exits 1 when nothing matches
  }
}

describe.skipIf(skipReason !== undefined)('probeKvm', () => {
  it('can say yes: the same boot under TCG prints the kernel banner', async () => {
    const result = await probeKvmWithReason(30_000, { accelerator: 'tcg' });
    expect(result).toEqual({ usable: true, reason: 'the kernel printed its banner under -accel tcg' });
    expect(probeQemus()).toBe('');
  });

  it('answers for KVM within its timeout and kills its QEMU', async () => {
    const expected = process.env.VCNET_KVM_WORKS === '1';
    const result = await probeKvmWithReason(3_000);
    console.log(`KVM probe on this host: ${JSON.stringify(result)}`);
    expect(result.usable).toBe(expected);
    if (!expected) expect(result.reason).toMatch(/no kernel output within 3000 ms|\/dev\/kvm|exited/);
    expect(probeQemus()).toBe('');
    expect(await probeKvm(1_000)).toBe(expected);
  });

  it("says no, with QEMU's complaint, when QEMU cannot even load the kernel", async () => {
    const result = await probeKvmWithReason(10_000, { accelerator: 'tcg', kernelPath: '/nonexistent/vmlinuz' });
    expect(result.usable).toBe(false);
    expect(result.reason).toMatch(/QEMU exited before the kernel ran: .*nonexistent/);
    expect(probeQemus()).toBe('');
  });
});
