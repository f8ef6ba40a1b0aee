/**
 * add-iface through the binary on a q35 VM booted without vcnet root ports (a real QEMU, paused): the
 * CLI learns the machine type from QEMU, refuses with the -device line the VM lacks (exit 1: a VM
 * without room, not bad input), and
 * leaves the namespace, the record and QEMU as they were. The successful path needs a guest:
 * test/e2e/hotplug-port-vm.test.ts.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { stateDirectoryPerTest, vcnet } from '../../helpers/cli.js';
import { fingerprint, makePod } from '../../helpers/pod.js';
import { qemuIntegrationSkipReason, sandboxVmFixture } from '../hypervisor/paused-qemu.js';

const skipReason = qemuIntegrationSkipReason();
if (skipReason) console.log(`skipping q35 add-iface CLI test: ${skipReason}`);

const stateDirectory = stateDirectoryPerTest('vcnet-q35-cli-');
const vm = sandboxVmFixture();

describe.skipIf(skipReason !== undefined)('add-iface on a q35 VM without vcnet root ports', () => {
  it('exits 1 with the -device line to add, and changes nothing', async () => {
    const { pod, node } = makePod();
    const qmpPath = join(stateDirectory(), 'qmp.sock');
    const agentPath = join(stateDirectory(), 'agent.sock');
    const attached = vcnet([
      ...['attach', '--sandbox', 'q1', '--netns', pod.path, '--state-dir', stateDirectory()],
      ...['--qmp', qmpPath, '--agent', agentPath, '--json'],
    ]);
    expect(attached.status, attached.stderr).toBe(0);
    const qemu = await vm.start({
      machine: 'q35',
      networkNamespacePath: pod.path,
      qmpSocketPath: qmpPath,
      startPaused: true,
      memoryMiB: 64,
    });
    // The refusal comes before anything reaches the guest: an agent socket that only accepts will do.
    await vm.listenAgent(agentPath);

    node.exec('ip', ['link', 'add', 'veth9', 'type', 'veth', 'peer', 'name', 'eth9', 'netns', pod.name]);
    pod.exec('ip', ['link', 'set', 'eth9', 'up']);
    const before = fingerprint(pod);
    const record = readFileSync(join(stateDirectory(), 'q1', 'state.json'), 'utf8');
    const request = join(stateDirectory(), 'add.json');
    writeFileSync(request, JSON.stringify({ device: 'eth9', name: 'net9' }));

    const refused = vcnet(['add-iface', 'q1', request, '--state-dir', stateDirectory()]);
    expect(refused.status, refused.stderr).toBe(1);
    expect(refused.stderr).toContain(
      "(nothing was added to the VM): q35 machine: hot-plug ports found: none of vcnet's",
    );
    expect(refused.stderr).not.toContain('invalid hotplug port');
    expect(refused.stderr).toContain('-device pcie-root-port,id=vcnet-rp0,bus=pcie.0,chassis=32,slot=1');
    expect(refused.stdout).toBe('');
    expect(fingerprint(pod)).toEqual(before);
    expect(JSON.parse(readFileSync(join(stateDirectory(), 'q1', 'state.json'), 'utf8'))).toEqual(JSON.parse(record));
    const qmp = await qemu.connectQmp({ timeoutMs: 5_000 });
    try {
      expect(await qmp.execute<string>('human-monitor-command', { 'command-line': 'info network' })).not.toContain(
        'netdev-net1',
      );
    } finally {
      await qmp.close();
    }

    await vm.stopQemu();
    pod.exec('ip', ['link', 'del', 'eth9']);
    expect(vcnet(['detach', '--sandbox', 'q1', '--state-dir', stateDirectory()]).status).toBe(0);
  });
});
