/**
 * `vcnet attach` for Cloud Hypervisor and Firecracker through the binary: a pod link MTU below Cloud
 * Hypervisor's minimum is left to the guest agent instead of refused (Kata sends no MTU to it).
 */
import { describe, expect, it } from 'vitest';
import { stateDirectoryPerTest, vcnet } from '../../helpers/cli.js';
import { makePod } from '../../helpers/pod.js';

const stateDirectory = stateDirectoryPerTest('vcnet-vmm-attach-');

const attach = (netns: string, ...args: string[]) =>
  vcnet(['attach', '--sandbox', 'v1', '--netns', netns, '--state-dir', stateDirectory(), ...args]);

describe('attach for Cloud Hypervisor and Firecracker', () => {
  it('takes a pod link MTU below 1280 with --hypervisor clh: no mtu on --net, the guest interface keeps it', () => {
    const { pod, node } = makePod();
    node.exec('ip', ['link', 'set', 'veth0', 'mtu', '1200']);
    pod.exec('ip', ['link', 'set', 'eth0', 'mtu', '1200']);
    const attached = attach(pod.path, '--hypervisor', 'clh', '--json');
    expect(attached.status, attached.stderr).toBe(0);
    const output = JSON.parse(attached.stdout);
    const [net] = output.hypervisor.devices[0].config as string[];
    expect(net).toBe('--net');
    expect(output.hypervisor.devices[0].config[1]).not.toContain('mtu=');
    expect(output.interfaces[0]).toMatchObject({ name: 'eth0', mtu: 1200 });
    expect(vcnet(['detach', '--sandbox', 'v1', '--state-dir', stateDirectory()]).status).toBe(0);
  });
});
