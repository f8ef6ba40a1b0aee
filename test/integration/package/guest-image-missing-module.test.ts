/**
 * scripts/guest-image with a kernel package that lacks a module of the guest's pod list (as a newer or
 * older Debian kernel may lack one of the tunnel or pod modules): the image still builds, the script
 * names the module and what needs it, its result lists it under missingModules (which the e2e tests
 * that load that list skip on, test/helpers/guest.ts guestModulesMissingReason), and the image's
 * `load-modules pod` has the list without it and a pod.missing naming it, so it refuses. The module
 * list is given through VCNET_GUEST_POD_MODULES, with a name no kernel has.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import type { GuestImage } from '../../../src/hypervisor/guest-image.js';
import { collectOutput } from '../../helpers/child-output.js';

const repository = fileURLToPath(new URL('../../../', import.meta.url));
const script = join(repository, 'scripts/guest-image');
const NO_SUCH_MODULE = 'vcnet_no_such_module';

function kernelPresent(): boolean {
  try {
    return readdirSync('/boot').some((name) => /^vmlinuz-.*-cloud-amd64$/.test(name));
  } catch {
    return false;
  }
}
const skipReason =
  process.env.VCNET_GUEST_KERNEL === undefined && !kernelPresent()
    ? 'no /boot/vmlinuz-*-cloud-amd64: install the Debian package linux-image-cloud-amd64'
    : undefined;
if (skipReason) console.log(`guest-image-missing-module: skipped: ${skipReason}`);

const scratch = mkdtempSync(join(tmpdir(), 'vcnet-guest-image-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** The file `name` (lib/...) of the gzip'd newc initramfs, or '' when it has none. */
function initrdFile(initrd: string, name: string): string {
  return execFileSync('sh', ['-c', 'gzip -dc "$1" | cpio -i --quiet --to-stdout "$2"', 'sh', initrd, name], {
    encoding: 'utf8',
  });
}

/**
 * The script, run without blocking this worker (a build takes a minute or more under load, and vitest's
 * worker must keep answering its runner meanwhile), with the pod list given.
 */
function guestImage(output: string, podModules: string[]) {
  const child = spawn(script, [], {
    env: { ...process.env, VCNET_GUEST_DIR: output, VCNET_GUEST_POD_MODULES: podModules.join(' ') },
  });
  return collectOutput(child).done;
}

describe.skipIf(skipReason)('guest-image and a module the kernel package lacks', () => {
  it('builds without it, names it and what needs it, lists it in missingModules, and the image refuses its list', async () => {
    const output = join(scratch, 'guest');
    const pod = ['veth', 'tun', 'sch_ingress', 'cls_u32', 'act_mirred'];
    const run = await guestImage(output, [...pod, NO_SUCH_MODULE]);
    expect(run.status, run.stderr).toBe(0);
    const result = JSON.parse(run.stdout.trim().split('\n').at(-1)!) as GuestImage;
    expect(result.missingModules).toEqual([
      { module: NO_SUCH_MODULE, list: 'pod', purpose: 'it is named in the pod list' },
    ]);
    expect(run.stderr).toContain(
      `guest-image: warning: kernel ${result.kernelVersion} has no module ${NO_SUCH_MODULE} (no ${NO_SUCH_MODULE}.ko under /lib/modules/${result.kernelVersion}/kernel, nor built in), and it is named in the pod list: the image is built without it, the guest's \`load-modules pod\` refuses, and the end-to-end tests that need a pod namespace and a tcfilter attach in the guest (fallback-tunnels-vm) skip`,
    );
    // The image: the pod list without it, and pod.missing, which load-modules refuses the list on.
    expect(initrdFile(result.initrd, 'lib/vcnet-modules/pod').trim().split('\n')).toEqual(pod);
    expect(initrdFile(result.initrd, 'lib/vcnet-modules/pod.missing')).toBe(
      `${NO_SUCH_MODULE} it is named in the pod list\n`,
    );
    expect(initrdFile(result.initrd, 'lib/vcnet-modules/tunnels')).toContain('ip6_vti');
    expect(initrdFile(result.initrd, 'lib/vcnet-modules/tunnels.missing')).toBe('');

    // Up to date: the same result, the missing module still listed.
    const again = await guestImage(output, [...pod, NO_SUCH_MODULE]);
    expect(again.status, again.stderr).toBe(0);
    const cached = JSON.parse(again.stdout.trim().split('\n').at(-1)!) as GuestImage;
    expect(cached).toEqual({ ...result, built: false });
  }, 600_000);
});
