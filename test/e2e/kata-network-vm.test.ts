/**
 * The kata-network commands against a running VM: `vcnet attach` prints the QEMU arguments the VM is
 * booted with; add-iface hot-plugs a second NIC through QMP and configures it through the agent;
 * traffic flows; list-ifaces / list-routes ask the agent; update-routes changes the guest;
 * del-iface unplugs; detach leaves the pod namespace as it was.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { guestKernelCommandLine } from '../../src/hypervisor/guest-image.js';
import { QmpClient } from '../../src/hypervisor/qmp.js';
import { type WatchSummary, watchSandbox } from '../../src/sandbox/sandbox-watch.js';
import { vcnet } from '../helpers/cli.js';
import { type AttachedGuestNetwork, bootGuest, guestUnavailableReason, pushBootNetwork } from '../helpers/guest.js';
import { cleanupNamespaces } from '../helpers/namespace.js';
import { fingerprint, makePod } from '../helpers/pod.js';

const unavailable = guestUnavailableReason();
if (unavailable) console.log(`skip kata-network VM test: ${unavailable}`);

let work: string | undefined;

async function until(condition: () => boolean, what: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

function ping(namespace: string, address: string): string {
  let output = '';
  for (let attempt = 0; attempt < 5 && !output.includes(' 0% packet loss'); attempt++) {
    try {
      output = execFileSync('ip', ['netns', 'exec', namespace, 'ping', '-c', '3', '-i', '0.3', '-W', '3', address], {
        encoding: 'utf8',
      });
    } catch (error) {
      output = String((error as { stdout?: string }).stdout ?? '');
    }
  }
  return output;
}
afterEach(() => {
  cleanupNamespaces();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe.skipIf(unavailable !== undefined)('kata-network commands with a running VM', () => {
  it('hot-plugs, configures, lists, routes and unplugs through QMP and the agent', { timeout: 240_000 }, async () => {
    work = mkdtempSync(join(tmpdir(), 'vcnet-kn-'));
    const stateDir = join(work, 'state');
    const qmpLink = join(work, 'qmp.sock');
    const agentLink = join(work, 'agent.sock');
    const { pod, node } = makePod();
    const before = fingerprint(pod);

    const attached = vcnet([
      'attach',
      '--sandbox',
      'vm1',
      '--netns',
      pod.path,
      '--state-dir',
      stateDir,
      '--qmp',
      qmpLink,
      '--agent',
      agentLink,
      '--json',
    ]);
    expect(attached.status, attached.stderr).toBe(0);
    const output = JSON.parse(attached.stdout) as { hypervisor: { devices: Array<{ config: string[] }> } };
    const qemuArguments = output.hypervisor.devices.flatMap((device) => device.config);
    expect(qemuArguments.join(' ')).toMatch(/-netdev tap,id=netdev-net0,ifname=tap0_kata/);

    const guest = await bootGuest({
      netnsPath: pod.path,
      extraArgs: qemuArguments,
      append: guestKernelCommandLine({ agent: true }),
    });
    symlinkSync(guest.qmpPath, qmpLink);
    symlinkSync(guest.agentSocketPath, agentLink);
    try {
      // The runtime configures the boot NICs at sandbox start (Kata's setupNetworks); the full route
      // set pushed later by add-iface includes eth0's routes, so eth0 must have its address first.
      await pushBootNetwork(guest.agentSocketPath, output as unknown as AttachedGuestNetwork);
      // A second interface appears in the pod (CNI ran again): its peer is in the node namespace.
      node.exec('ip', ['link', 'add', 'veth9', 'type', 'veth', 'peer', 'name', 'eth9', 'netns', pod.name]);
      node.exec('ip', ['addr', 'add', '10.209.0.1/24', 'dev', 'veth9']);
      node.exec('ip', ['link', 'set', 'veth9', 'up']);
      pod.exec('ip', ['link', 'set', 'eth9', 'up']);
      const request = join(work, 'add.json');
      writeFileSync(
        request,
        JSON.stringify({
          device: 'eth9',
          name: 'net9',
          IPAddresses: [{ family: 0, address: '10.209.0.2', mask: '24' }],
        }),
      );

      // A hot-plug that QEMU refuses half way (a device already holds the id vcnet picks) is rolled
      // back whole: netdev removed, plumbing undone, the record unchanged.
      // QEMU's QMP socket serves one client at a time: connect, act, close, as vcnet itself does.
      const blocker = await QmpClient.connect(guest.qmpPath);
      await blocker.execute('device_add', { driver: 'virtio-net-pci', id: 'net1', romfile: '' });
      await blocker.close();
      const stateBefore = readFileSync(join(stateDir, 'vm1', 'state.json'), 'utf8');
      const podBefore = fingerprint(pod);
      const refused = vcnet(['add-iface', 'vm1', request, '--state-dir', stateDir]);
      expect(refused.status).toBe(1);
      expect(refused.stderr).toMatch(/net1/);
      // The record may be written back, but says the same (key order aside).
      expect(JSON.parse(readFileSync(join(stateDir, 'vm1', 'state.json'), 'utf8'))).toEqual(JSON.parse(stateBefore));
      expect(fingerprint(pod)).toEqual(podBefore);
      const qmp = await QmpClient.connect(guest.qmpPath);
      expect(await qmp.execute<string>('human-monitor-command', { 'command-line': 'info network' })).not.toContain(
        'netdev-net1',
      );
      // The guest ignores an eject while it is still probing the blocker (TCG is slow): give it time.
      await new Promise((resolve) => setTimeout(resolve, 5000));
      // The blocker has no netdev: only the device goes.
      const released = qmp.waitForEvent('DEVICE_DELETED', {
        timeoutMs: 40_000,
        predicate: (event) => event.data?.device === 'net1',
      });
      await qmp.execute('device_del', { id: 'net1' });
      await released;
      await qmp.close();
      const added = vcnet(['add-iface', 'vm1', request, '--state-dir', stateDir]);
      expect(added.status, added.stderr).toBe(0);
      expect(JSON.parse(added.stdout)).toMatchObject({
        name: 'net9',
        IPAddresses: [{ address: '10.209.0.2', mask: '24' }],
      });

      // The guest answers on the hot-plugged NIC.
      let pinged = '';
      for (let attempt = 0; attempt < 5 && !pinged.includes(' 0% packet loss'); attempt++) {
        try {
          pinged = execFileSync(
            'ip',
            ['netns', 'exec', node.name, 'ping', '-c', '3', '-i', '0.3', '-W', '3', '10.209.0.2'],
            { encoding: 'utf8' },
          );
        } catch (error) {
          pinged = String((error as { stdout?: string }).stdout ?? '');
        }
      }
      expect(pinged).toContain(' 0% packet loss');

      const listed = JSON.parse(vcnet(['list-ifaces', 'vm1', '--state-dir', stateDir, '--json']).stdout) as Array<{
        name: string;
        IPAddresses: Array<{ address: string }>;
      }>;
      expect(listed.find((entry) => entry.name === 'net9')?.IPAddresses.map((address) => address.address)).toContain(
        '10.209.0.2',
      );

      const routes = join(work, 'routes.json');
      writeFileSync(
        routes,
        JSON.stringify([{ dest: '10.219.0.0/16', gateway: '10.209.0.1', device: 'net9', mtu: 1300 }]),
      );
      expect(vcnet(['update-routes', 'vm1', routes, '--state-dir', stateDir]).status).toBe(0);
      const guestRoutes = JSON.parse(vcnet(['list-routes', 'vm1', '--state-dir', stateDir, '--json']).stdout) as Array<{
        dest: string;
        mtu: number;
      }>;
      expect(guestRoutes).toEqual(
        expect.arrayContaining([expect.objectContaining({ dest: '10.219.0.0/16', mtu: 1300 })]),
      );

      const removal = join(work, 'del.json');
      writeFileSync(removal, JSON.stringify({ name: 'net9' }));
      const removed = vcnet(['del-iface', 'vm1', removal, '--state-dir', stateDir]);
      expect(removed.status, removed.stderr).toBe(0);
      const after = JSON.parse(vcnet(['list-ifaces', 'vm1', '--state-dir', stateDir, '--json']).stdout) as Array<{
        name: string;
      }>;
      expect(after.map((entry) => entry.name)).not.toContain('net9');
      expect(pod.exec('ip', ['link', 'show'])).not.toContain('tap1_kata');

      // vcnet watch keeps the VM in step: a new pod interface is hot-plugged and configured, and
      // unplugged again when it goes.
      const applied: WatchSummary[] = [];
      const watching = await watchSandbox('vm1', {
        stateDirectory: stateDir,
        debounceMs: 100,
        onApplied: (summary) => applied.push(summary),
        onError: (error) => console.log(`watch: ${error.message}`),
      });
      try {
        node.exec('ip', ['link', 'add', 'veth10', 'type', 'veth', 'peer', 'name', 'eth10', 'netns', pod.name]);
        node.exec('ip', ['addr', 'add', '10.210.0.1/24', 'dev', 'veth10']);
        node.exec('ip', ['link', 'set', 'veth10', 'up']);
        pod.exec('ip', ['link', 'set', 'eth10', 'up']);
        pod.exec('ip', ['addr', 'add', '10.210.0.2/24', 'dev', 'eth10']);
        await until(
          () => applied.some((summary) => summary.added.includes('eth10') || summary.updated.includes('eth10')),
          'watch hot-plugged eth10',
          60_000,
        );
        await until(
          () =>
            (
              JSON.parse(vcnet(['list-ifaces', 'vm1', '--state-dir', stateDir, '--json']).stdout) as Array<{
                name: string;
                IPAddresses: Array<{ address: string }>;
              }>
            ).some(
              (entry) =>
                entry.name === 'eth10' && entry.IPAddresses.some((address) => address.address === '10.210.0.2'),
            ),
          'the guest to have eth10 with 10.210.0.2',
          60_000,
        );
        expect(ping(node.name, '10.210.0.2')).toContain(' 0% packet loss');
        pod.exec('ip', ['link', 'del', 'eth10']);
        await until(
          () => applied.some((summary) => summary.removed.includes('eth10')),
          'watch unplugged eth10',
          60_000,
        );
        const left = JSON.parse(vcnet(['list-ifaces', 'vm1', '--state-dir', stateDir, '--json']).stdout) as Array<{
          name: string;
        }>;
        expect(left.map((entry) => entry.name)).not.toContain('eth10');
      } finally {
        await watching.stop();
      }
    } finally {
      await guest.kill();
    }
    pod.exec('ip', ['link', 'del', 'eth9']);
    expect(vcnet(['detach', '--sandbox', 'vm1', '--state-dir', stateDir]).status).toBe(0);
    expect(fingerprint(pod)).toEqual(before);
  });
});
