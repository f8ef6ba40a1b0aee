/**
 * vcnet-cni under podman 4's CNI backend on networks a real node has and the basic bridge conflist
 * of container-runtimes.test.ts lacks: one container on two networks (`--network a,b`, as Multus
 * gives a pod net1, net2: eth0 and eth1, each chain ending in vcnet-cni), and an IPv6-only network
 * under the macvtap model (containerd-node-networks.test.ts has one under tcfilter).
 * Each case removes its container and checks that nothing is left: host-local reservations, vcnet
 * records, bridge ports.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { CgroupMountNamespace } from '../../helpers/cgroups.js';
import { recordedGuestNetwork } from '../../helpers/cni.js';
import {
  type ClientFixture,
  endRuntimeSuite,
  missingCommands,
  namespaceJson,
  Podman,
  planRuntimeSuite,
  redirectOf,
  startRuntimeSuite,
  waitFor,
} from '../../helpers/container-runtimes.js';

const suite = planRuntimeSuite();
const skipReason = suite.skip ?? missingCommands(['podman', 'conmon', 'runc', 'nsenter']);
if (skipReason) console.log(`skipping the podman node network tests: ${skipReason}`);

interface Link {
  ifname: string;
  address: string;
  mtu: number;
}

describe.skipIf(skipReason)('podman 4 (CNI backend) on the networks of a real node', () => {
  let directory: string;
  let fixture: ClientFixture;
  let cgroups: CgroupMountNamespace | undefined;
  let podman: Podman;

  beforeAll(async () => {
    ({ directory, fixture, cgroups } = await startRuntimeSuite(suite.cgroupPlan, {
      directoryPrefix: 'vcnet-podnet-',
      nodePrefix: 'podnet',
      bridge: 'vcpodn0',
      subnet: '10.231.51.0/24',
    }));
    podman = new Podman(directory, fixture, cgroups);
  });

  // A case that failed half-way leaves its container: removed here, so the next case starts clean.
  afterEach(() => podman?.removeAll());

  afterAll(async () => {
    podman?.removeAll();
    await endRuntimeSuite(directory, cgroups);
  });

  /** The container's namespace through its process (podman's own mount of it may be out of sight). */
  function namespaceOf(name: string): string {
    const inspected = podman.podman(['inspect', '--format', '{{.State.Pid}}', name]);
    expect(inspected.status, inspected.stderr).toBe(0);
    return `/proc/${inspected.stdout.trim()}/ns/net`;
  }

  function portsOf(bridge: string): string[] {
    if (!fixture.node.ipJson<unknown[]>('link', 'show', 'dev', bridge).length) return [];
    return fixture.node.ipJson<Array<{ ifname: string }>>('link', 'show', 'master', bridge).map((link) => link.ifname);
  }

  async function expectFreed(networks: Record<string, string>): Promise<void> {
    for (const network of Object.keys(networks)) expect(fixture.reservations(network), network).toEqual([]);
    expect(fixture.recordedContainers()).toEqual([]);
    for (const bridge of Object.values(networks)) {
      await waitFor(`${bridge} to lose its ports`, () => portsOf(bridge).length === 0, 30_000);
    }
  }

  it('one container on two networks: eth0 and eth1 each get a tap of their own and the VM a NIC each; rm frees both', async () => {
    const networks = { 'vcnet-podman-a': 'vcpodna', 'vcnet-podman-b': 'vcpodnb' };
    fixture.writeConflist('vcnet-podman-a', { bridge: 'vcpodna', subnets: ['10.231.52.0/24'] });
    fixture.writeConflist('vcnet-podman-b', { bridge: 'vcpodnb', subnets: ['10.231.53.0/24'], keepOthers: true });
    const run = podman.podman([
      'run',
      '--detach',
      '--name',
      'two',
      '--network',
      Object.keys(networks).join(','),
      '--rootfs',
      fixture.rootfs,
      '/bin/sleep',
      '600',
    ]);
    expect(run.status, run.stderr).toBe(0);
    expect(run.stderr).not.toContain('vcnet-cni');
    const namespacePath = namespaceOf('two');
    const links = namespaceJson<Link[]>(namespacePath, 'ip', 'link', 'show');
    const names = links.map((link) => link.ifname);
    expect(names).toEqual(expect.arrayContaining(['eth0', 'eth1', 'tap0_kata', 'tap1_kata']));
    // Each chain's tap is the one its own interface redirects to, whichever order podman ran them in.
    const tapOf = (device: string) => redirectOf(namespacePath, device);
    expect([tapOf('eth0'), tapOf('eth1')].sort()).toEqual(['tap0_kata', 'tap1_kata']);
    for (const device of ['eth0', 'eth1']) expect(tapOf(tapOf(device)!)).toBe(device);
    const containerIds = fixture.recordedContainers().filter((entry) => !entry.startsWith('.locks/'));
    expect(containerIds).toHaveLength(1);
    expect(fixture.attached(containerIds[0]!, 'eth0')).toBe(true);
    expect(fixture.attached(containerIds[0]!, 'eth1')).toBe(true);
    for (const [network, bridge] of Object.entries(networks)) {
      expect(fixture.reservations(network), network).toHaveLength(1);
      expect(portsOf(bridge), bridge).toHaveLength(1);
    }

    const removed = podman.podman(['rm', '--force', '--time', '0', 'two']);
    expect(removed.status, removed.stderr).toBe(0);
    expect(removed.stderr).not.toContain('vcnet-cni');
    await expectFreed(networks);
  });

  it('an IPv6-only network, model macvtap: the guest gets the IPv6 address and default route; rm frees it', async () => {
    const network = 'vcnet-podman-v6only';
    fixture.writeConflist(network, { subnets: ['fd00:231:51::/64'], vcnet: { model: 'macvtap' } });
    const conflistFile = `10-${network}.conflist`;
    const conflist = JSON.parse(readFileSync(join(fixture.confDirectory, conflistFile), 'utf8')) as {
      plugins: Array<{ ipam?: Record<string, unknown> }>;
    };
    conflist.plugins[0]!.ipam!.routes = [{ dst: '::/0' }];
    fixture.writeConfigFile(conflistFile, conflist);
    const run = podman.podman(podman.runArgs('v6', network));
    expect(run.status, run.stderr).toBe(0);
    expect(run.stderr).not.toContain('vcnet-cni');
    const namespacePath = namespaceOf('v6');
    const tap = namespaceJson<Array<{ linkinfo?: { info_kind?: string } }>>(
      namespacePath,
      'ip',
      '-d',
      'link',
      'show',
      'tap0_kata',
    )[0];
    expect(tap?.linkinfo?.info_kind).toBe('macvtap');
    // The macvtap model hands eth0's addresses to the guest: the pod link keeps none while attached.
    const globalOnEth0 = namespaceJson<Array<{ addr_info: Array<{ scope: string }> }>>(
      namespacePath,
      'ip',
      'addr',
      'show',
      'dev',
      'eth0',
    )[0]!.addr_info.filter((info) => info.scope === 'global');
    expect(globalOnEth0).toEqual([]);
    const [containerId] = fixture.recordedContainers().filter((entry) => !entry.startsWith('.locks/'));
    const guest = recordedGuestNetwork(fixture.stateDirectory, containerId!, 'eth0', namespacePath);
    const [reserved] = fixture.reservations(network);
    expect(guest.interfaces.flatMap((entry) => entry.IPAddresses).map((entry) => entry.address)).toContain(reserved);
    expect(guest.routes.filter((route) => route.dest === '::/0')).toHaveLength(1);
    expect(guest.routes.filter((route) => route.dest === '0.0.0.0/0')).toEqual([]);

    const removed = podman.podman(['rm', '--force', '--time', '0', 'v6']);
    expect(removed.status, removed.stderr).toBe(0);
    expect(removed.stderr).not.toContain('vcnet-cni');
    await expectFreed({ [network]: fixture.bridge });
  });
});
