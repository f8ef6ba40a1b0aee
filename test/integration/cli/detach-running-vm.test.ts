/**
 * detach while the sandbox's VM still runs (a real QEMU, paused, whose QMP socket answers): detach
 * goes ahead (a VM a crashed runtime left behind must still be cleaned up) but warns that the taps
 * go from under a running VM. It used to say nothing. A VM that is gone gets no such warning.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { stateDirectoryPerTest, vcnet } from '../../helpers/cli.js';
import { fingerprint, makePod } from '../../helpers/pod.js';
import { qemuIntegrationSkipReason, sandboxVmFixture } from '../hypervisor/paused-qemu.js';

const skipReason = qemuIntegrationSkipReason();
if (skipReason) console.log(`skipping the detach-with-a-running-VM test: ${skipReason}`);

const stateDirectory = stateDirectoryPerTest('vcnet-detach-running-');
const vm = sandboxVmFixture();
const WARNING = "sandbox d1's VM is still running";

describe.skipIf(skipReason !== undefined)('detach while the VM runs', () => {
  it('detaches, warning that the VM still runs; no warning once the VM is gone', async () => {
    const { pod } = makePod();
    const before = fingerprint(pod);
    const qmpPath = join(stateDirectory(), 'qmp.sock');
    const attach = () =>
      vcnet([
        ...['attach', '--sandbox', 'd1', '--netns', pod.path, '--state-dir', stateDirectory()],
        ...['--qmp', qmpPath, '--agent', join(stateDirectory(), 'agent.sock'), '--vhost-net', 'off', '--json'],
      ]);
    const attached = attach();
    expect(attached.status, attached.stderr).toBe(0);
    const endpoint = JSON.parse(attached.stdout).endpoints[0] as { hwAddr: string; tap: string };
    await vm.start({
      networkNamespacePath: pod.path,
      qmpSocketPath: qmpPath,
      startPaused: true,
      memoryMiB: 64,
      networkDevices: [{ id: 'net0', tapName: endpoint.tap, queues: 1, guestMac: endpoint.hwAddr }],
    });
    const detached = vcnet(['detach', '--sandbox', 'd1', '--state-dir', stateDirectory()]);
    expect(detached.status, detached.stderr).toBe(0);
    expect(detached.stderr).toContain(WARNING);
    expect(detached.stderr).toContain(qmpPath);
    expect(fingerprint(pod)).toEqual(before);

    // The VM gone (its socket file left behind): detach says nothing of it.
    await vm.stopQemu();
    expect(attach().status).toBe(0);
    const quiet = vcnet(['detach', '--sandbox', 'd1', '--state-dir', stateDirectory()]);
    expect(quiet.status, quiet.stderr).toBe(0);
    expect(quiet.stderr).not.toContain('still running');
    expect(fingerprint(pod)).toEqual(before);
  }, 60_000);
});
