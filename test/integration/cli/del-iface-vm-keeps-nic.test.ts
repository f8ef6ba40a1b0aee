/**
 * del-iface on a running VM that does not release the NIC (a real QEMU, paused, so its guest never
 * ejects anything): the command fails naming the NIC still in the VM, and keeps its tap, filters and
 * record, so the VM never loses its backend and a later del-iface or detach can finish. It used to
 * report success and remove the plumbing under the NIC.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { stateDirectoryPerTest, vcnet } from '../../helpers/cli.js';
import { fingerprint, makePod } from '../../helpers/pod.js';
import { qemuIntegrationSkipReason, sandboxVmFixture } from '../hypervisor/paused-qemu.js';

const skipReason = qemuIntegrationSkipReason();
if (skipReason) console.log(`skipping the del-iface test on a VM that keeps its NIC: ${skipReason}`);

const stateDirectory = stateDirectoryPerTest('vcnet-keeps-nic-');
const vm = sandboxVmFixture();

describe.skipIf(skipReason !== undefined)('del-iface when the VM keeps the NIC', () => {
  it('fails naming the NIC still in the VM, and keeps its tap, filters and record', async () => {
    const { pod } = makePod();
    const before = fingerprint(pod);
    // The VM has eth0's NIC (net0, on its command line) and never runs: device_del is never completed.
    const { agentPath } = await vm.attachAndStart('k1', pod.path, stateDirectory());
    await vm.listenAgent(agentPath);
    const attachedPod = fingerprint(pod);
    const record = readFileSync(join(stateDirectory(), 'k1', 'state.json'), 'utf8');

    const request = join(stateDirectory(), 'del.json');
    writeFileSync(request, JSON.stringify({ name: 'eth0' }));
    const removed = vcnet(['del-iface', 'k1', request, '--state-dir', stateDirectory()]);
    expect(removed.status, removed.stderr).toBe(1);
    expect(removed.stderr).toMatch(/net0 is still in the VM/);
    expect(removed.stderr).toContain("the VM's NIC net0 (eth0)");
    // del-iface's whole wait for the guest (20 s), which the tests that only sit it out shorten (shortWaits).
    expect(removed.stderr).toContain('the guest did not release device net0 within 20000 ms');
    // The hint says what works with a NIC still in the VM: not "run the command again, or gc".
    expect(removed.stderr).toContain(
      `\`vcnet del-iface k1 FILE --state-dir ${stateDirectory()}\` with {"name":"eth0"} finishes`,
    );
    expect(removed.stderr).toContain(
      `if the VM has stopped, \`vcnet detach --sandbox k1 --state-dir ${stateDirectory()}\``,
    );
    expect(removed.stderr).not.toContain('run the command again');
    expect(removed.stdout).toBe('');
    expect(fingerprint(pod)).toEqual(attachedPod);
    expect(JSON.parse(readFileSync(join(stateDirectory(), 'k1', 'state.json'), 'utf8')).network).toEqual(
      JSON.parse(record).network,
    );

    // With the VM gone, detach finishes the job.
    await vm.stopQemu();
    expect(vcnet(['detach', '--sandbox', 'k1', '--state-dir', stateDirectory()]).status).toBe(0);
    expect(fingerprint(pod)).toEqual(before);
  }, 60_000);

  it('q35: a NIC given at boot on pcie.0 cannot be unplugged: says so, and that detach removes it once the VM stops', async () => {
    const { pod } = makePod();
    const before = fingerprint(pod);
    // qemuNetworkArguments puts the boot NIC on the root complex pcie.0 (no bus=), as attach prints it.
    const { agentPath } = await vm.attachAndStart('k2', pod.path, stateDirectory(), { machine: 'q35' });
    await vm.listenAgent(agentPath);
    const attachedPod = fingerprint(pod);

    const request = join(stateDirectory(), 'del.json');
    writeFileSync(request, JSON.stringify({ name: 'eth0' }));
    const removed = vcnet(['del-iface', 'k2', request, '--state-dir', stateDirectory()]);
    expect(removed.status, removed.stderr).toBe(1);
    expect(removed.stderr).toContain(
      `net0 cannot be unplugged while the VM runs: QEMU says "Bus 'pcie.0' does not support hotplugging"`,
    );
    expect(removed.stderr).toContain("net0 was given at boot on q35's pcie.0, which takes no unplug");
    expect(removed.stderr).not.toContain('run the command again');
    expect(removed.stderr).not.toContain('with {"name":"eth0"} finishes');
    expect(fingerprint(pod)).toEqual(attachedPod);

    await vm.stopQemu();
    expect(vcnet(['detach', '--sandbox', 'k2', '--state-dir', stateDirectory()]).status).toBe(0);
    expect(fingerprint(pod)).toEqual(before);
  }, 60_000);
});
