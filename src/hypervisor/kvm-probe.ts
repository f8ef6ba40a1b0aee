/**
 * Whether KVM really runs guests here. /dev/kvm opening and KVM_CREATE_VM succeeding prove nothing:
 * on hosts without working nested virtualisation a KVM guest never gets past the firmware and QEMU
 * simply sits there. So the probe boots the host's own kernel under `-accel kvm` with an early
 * serial console and says yes only if the kernel prints its banner before the timeout. QEMU is
 * killed in every case.
 */
import { constants } from 'node:fs';
import { access, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { numberOption, optionsArgument, stringOption } from '../arguments.js';
import { spawnQemu } from './qemu-process.js';

/** Options of `probeKvm`: the kernel to boot, the QEMU binary and the accelerator to try. */
export interface KvmProbeOptions {
  /** Kernel to boot. Default: the newest /boot/vmlinuz-*. */
  kernelPath?: string;
  binary?: string;
  /** Accelerator under test; only tests change it ('tcg' shows the probe can say yes). */
  accelerator?: string;
}

/** What `probeKvm` found: whether a KVM guest got to its first console line, and why not. */
export interface KvmProbeResult {
  usable: boolean;
  reason: string;
}

/** The kernel's first console line. earlyprintk makes it appear before any driver is up. */
const KERNEL_BANNER = /Linux version \d/;

/** Whether KVM really runs guests here (a kernel boots under `-accel kvm` within `timeoutMs`). */
export async function probeKvm(timeoutMs = 5_000, options: KvmProbeOptions = {}): Promise<boolean> {
  return (await probeKvmWithReason(timeoutMs, options)).usable;
}

/** probeKvm's answer with the reason it was no (or yes). */
export async function probeKvmWithReason(timeoutMs = 5_000, given: KvmProbeOptions = {}): Promise<KvmProbeResult> {
  numberOption(timeoutMs, 'timeoutMs', { min: 1, max: 3_600_000, integer: false, unit: 'milliseconds' });
  const options = optionsArgument(given, 'options', ['kernelPath', 'binary', 'accelerator']);
  for (const key of ['kernelPath', 'binary', 'accelerator'] as const)
    stringOption(options[key], key, 'a non-empty string');
  const accelerator = options.accelerator ?? 'kvm';
  if (accelerator === 'kvm') {
    try {
      await access('/dev/kvm', constants.R_OK | constants.W_OK);
    } catch {
      return { usable: false, reason: '/dev/kvm is missing or not accessible' };
    }
  }
  const kernelPath = options.kernelPath ?? (await newestHostKernel());
  if (kernelPath === undefined) return { usable: false, reason: 'no kernel to boot (no /boot/vmlinuz-*)' };
  let qemu: Awaited<ReturnType<typeof spawnQemu>> | undefined;
  try {
    qemu = await spawnQemu({
      binary: options.binary,
      accelerator,
      memoryMiB: 128,
      extraArguments: [
        '-kernel',
        kernelPath,
        '-append',
        'console=ttyS0 earlyprintk=serial,ttyS0,115200 panic=-1',
        '-no-reboot',
      ],
    });
    const booted = await qemu.waitForSerialOutput(KERNEL_BANNER, timeoutMs);
    if (booted) return { usable: true, reason: `the kernel printed its banner under -accel ${accelerator}` };
    if (!qemu.running) {
      return {
        usable: false,
        reason: `QEMU exited before the kernel ran: ${qemu.stderrOutput().trim() || 'no message'}`,
      };
    }
    return { usable: false, reason: `no kernel output within ${timeoutMs} ms under -accel ${accelerator}` };
  } catch (error) {
    return { usable: false, reason: (error as Error).message };
  } finally {
    await qemu?.stop(500);
  }
}

async function newestHostKernel(): Promise<string | undefined> {
  try {
    const kernels = (await readdir('/boot')).filter((name) => name.startsWith('vmlinuz-'));
    kernels.sort((a, b) => a.localeCompare(b, undefined, { numeric: true }));
    const newest = kernels[kernels.length - 1];
    return newest === undefined ? undefined : join('/boot', newest);
  } catch {
    return undefined;
  }
}
