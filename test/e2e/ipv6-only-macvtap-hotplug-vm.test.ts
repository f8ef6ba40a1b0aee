/**
 * Three node conditions at once in a booted guest: an IPv6-only pod (no IPv4 address, route or
 * neighbour), the macvtap model (the VM's NIC takes the pod link's MAC, so the node's neighbour
 * solicitations must reach the guest through the macvtap), and a second IPv6-only interface
 * hot-plugged while the VM runs. Each NIC gets its address from the agent and answers the node; after
 * the unplug and the detach the pod is exactly as it was.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { AgentClient } from '../../src/agent/client.js';
import { interfaceFromJson, neighboursFromJson, routesFromJson } from '../../src/agent/kata-network-json.js';
import { pushGuestNetwork } from '../../src/agent/push-network.js';
import { ensureGuestImage, guestKernelCommandLine } from '../../src/hypervisor/guest-image.js';
import { probeKvm } from '../../src/hypervisor/kvm-probe.js';
import { type QemuProcess, spawnQemu } from '../../src/hypervisor/qemu-process.js';
import type { QmpClient } from '../../src/hypervisor/qmp.js';
import { QemuNetworkHotplugTarget } from '../../src/hypervisor/qmp-network-hotplug.js';
import { NetlinkHandle } from '../../src/netlink/handle.js';
import { type GuestNetwork, generateGuestNetwork } from '../../src/network/guest.js';
import { Network } from '../../src/network/network.js';
import { interfacesOf } from '../../src/network/scan.js';
import { guestUnavailableReason } from '../helpers/guest.js';
import { cleanupNamespaces, kernelSupportsLinkKind, makeNamespace, type TestNamespace } from '../helpers/namespace.js';
import { fingerprint } from '../helpers/pod.js';

const unavailable = guestUnavailableReason();
if (unavailable) console.log(`skip IPv6-only macvtap hot-plug VM test: ${unavailable}`);

let work: string | undefined;

afterEach(() => {
  cleanupNamespaces();
  if (work) rmSync(work, { recursive: true, force: true });
  work = undefined;
});

/** A veth pair node/veth<n> - pod/eth<n>, IPv6 only: the node's end fd00:<subnet>::1/64, the pod's ::2/64. */
function ipv6OnlyLink(node: TestNamespace, pod: TestNamespace, index: number, subnet: number, mtu: number): void {
  node.exec('ip', [
    ...['link', 'add', `veth${index}`, 'mtu', String(mtu), 'type', 'veth'],
    ...['peer', 'name', `eth${index}`, 'mtu', String(mtu), 'netns', pod.name],
  ]);
  node.exec('ip', ['addr', 'add', `fd00:${subnet}::1/64`, 'dev', `veth${index}`, 'nodad']);
  node.exec('ip', ['link', 'set', `veth${index}`, 'up']);
  pod.exec('ip', ['link', 'set', `eth${index}`, 'up']);
  pod.exec('ip', ['addr', 'add', `fd00:${subnet}::2/64`, 'dev', `eth${index}`, 'nodad']);
}

/**
 * ping -6 from `node` to `address` from an empty neighbour cache, up to five rounds until one loses
 * nothing; `payload` bytes that may not be fragmented (-M do) when given.
 */
function ping6(node: TestNamespace, device: string, address: string, payload?: number): string {
  const size = payload === undefined ? [] : ['-s', String(payload), '-M', 'do'];
  node.exec('ip', ['-6', 'neigh', 'flush', 'dev', device]);
  let output = '';
  for (let attempt = 0; attempt < 5 && !output.includes(' 0% packet loss'); attempt++) {
    try {
      output = execFileSync(
        'ip',
        ['netns', 'exec', node.name, 'ping', '-6', '-c', '3', '-i', '0.3', '-W', '3', ...size, address],
        {
          encoding: 'utf8',
        },
      );
    } catch (error) {
      output = String((error as { stdout?: string }).stdout ?? '');
    }
  }
  return output;
}

/** Kata's push: the interfaces named (all when none), the full route set, their neighbours. */
async function configureGuest(agent: AgentClient, guest: GuestNetwork, devices?: string[]): Promise<void> {
  const wanted = (device: string) => !devices || devices.includes(device);
  await pushGuestNetwork(
    agent,
    {
      interfaces: guest.interfaces.filter((entry) => wanted(entry.device)).map((entry) => interfaceFromJson(entry)),
      routes: routesFromJson(guest.routes),
      neighbours: neighboursFromJson(guest.neighbours.filter((neighbour) => wanted(neighbour.device))),
    },
    { timeoutMs: 90_000 },
  );
}

describe.skipIf(unavailable !== undefined)('an IPv6-only pod, model macvtap, a NIC hot-plugged', () => {
  // MTU 9000 too: the macvtap takes its lower link's MTU, the guest the pod link's, and an 8000-byte
  // packet that may not be fragmented crosses.
  it.for<{ mtu: number; payload?: number }>([{ mtu: 1500 }, { mtu: 9000, payload: 8000 }])(
    'MTU $mtu: both NICs take their IPv6 address from the agent and answer the node; unplug and detach leave the pod as it was',
    { timeout: 300_000 },
    async ({ mtu, payload }, context) => {
      const node = makeNamespace('node');
      const pod = makeNamespace('pod6mvt');
      pod.exec('sysctl', ['-q', '-w', 'net.ipv6.conf.default.accept_dad=0', 'net.ipv6.conf.all.accept_dad=0']);
      ipv6OnlyLink(node, pod, 0, 232, mtu);
      const probe = kernelSupportsLinkKind(pod, 'macvtap', ['link', 'eth0']);
      if (!probe.ok) {
        console.log(`skip IPv6-only macvtap hot-plug VM test: ${probe.reason}`);
        context.skip();
      }
      pod.exec('ip', ['-6', 'route', 'add', 'default', 'via', 'fd00:232::1', 'dev', 'eth0']);
      const before = fingerprint(pod);
      expect(pod.exec('ip', ['-4', 'addr', 'show'])).not.toMatch(/inet /);

      work = mkdtempSync(join(tmpdir(), 'vcnet-v6mvt-'));
      const network = Network.open(
        {
          namespacePath: pod.path,
          model: 'macvtap',
          namespaceCreatedByVcnet: false,
          disableNewNetns: false,
          queues: 1,
          vhostNet: 'auto',
        },
        'v6mvt',
      );
      let qemu: QemuProcess | undefined;
      let qmp: QmpClient | undefined;
      let agent: AgentClient | undefined;
      try {
        const endpoints = await network.addEndpoints({ keepFds: true });
        expect(endpoints.map((endpoint) => endpoint.properties.link.name)).toEqual(['eth0']);
        const image = await ensureGuestImage();
        const agentPath = join(work, 'agent.sock');
        qemu = await spawnQemu({
          accelerator: (await probeKvm(3000).catch(() => false)) ? 'kvm' : 'tcg',
          memoryMiB: 512,
          networkNamespacePath: pod.path,
          networkDevices: endpoints.map((endpoint) => endpoint.networkDevice()),
          qmpSocketPath: join(work, 'qmp.sock'),
          extraArguments: [
            ...['-smp', '1', '-no-reboot', '-kernel', image.kernel, '-initrd', image.initrd],
            ...['-append', guestKernelCommandLine({ agent: true })],
            ...['-device', 'virtio-serial-pci', '-chardev', `socket,id=agent,path=${agentPath},server=on,wait=off`],
            ...['-device', 'virtserialport,chardev=agent,name=agent.channel.0'],
          ],
        });
        for (const endpoint of endpoints) endpoint.closeFds();
        qmp = await qemu.connectQmp();
        agent = await AgentClient.connect(agentPath, { deadlineMs: 90_000 });

        const bootNetwork = generateGuestNetwork(network.endpoints());
        expect(bootNetwork.interfaces[0]?.mtu).toBe(mtu);
        expect(bootNetwork.interfaces[0]?.IPAddresses.map((entry) => entry.address)).toContain('fd00:232::2');
        expect(bootNetwork.routes).toContainEqual(expect.objectContaining({ dest: '::/0', gateway: 'fd00:232::1' }));
        await configureGuest(agent, bootNetwork);
        expect(ping6(node, 'veth0', 'fd00:232::2', payload)).toContain(' 0% packet loss');

        // CNI ran again while the VM runs: eth1, IPv6 only too, hot-plugged as a macvtap.
        ipv6OnlyLink(node, pod, 1, 233, mtu);
        const handle = NetlinkHandle.open(pod.path);
        const eth1 = interfacesOf(await handle.snapshot()).find((info) => info.link.name === 'eth1');
        handle.close();
        expect(eth1).toBeDefined();
        const target = new QemuNetworkHotplugTarget(qmp, { timeoutMs: 60_000 });
        const [plugged] = await network.addEndpoints({ interfaces: [eth1!], keepFds: true, hotplug: target });
        expect(plugged?.plumbing?.tapName).toBeDefined();
        plugged!.closeFds();
        await configureGuest(agent, generateGuestNetwork(network.endpoints()), [plugged!.name]);
        expect(ping6(node, 'veth1', 'fd00:233::2', payload)).toContain(' 0% packet loss');
        // The boot NIC still answers after the full route set was pushed again.
        expect(ping6(node, 'veth0', 'fd00:232::2', payload)).toContain(' 0% packet loss');
        const guestInterfaces = (await agent.listInterfaces({ timeoutMs: 30_000 })).map((entry) => ({
          name: entry.name,
          mtu: Number(entry.mtu),
          addresses: entry.IPAddresses.map((address) => address.address).filter(
            (address) => !address.startsWith('fe80:'),
          ),
        }));
        expect(guestInterfaces).toEqual(
          expect.arrayContaining([
            { name: bootNetwork.interfaces[0]!.name, mtu, addresses: ['fd00:232::2'] },
            { name: plugged!.name, mtu, addresses: ['fd00:233::2'] },
          ]),
        );

        await target.unplugNetworkDevice(plugged!.deviceId);
        const unplugReport = await network.removeEndpoints([plugged!]);
        expect(unplugReport.failures).toEqual([]);
        node.exec('ip', ['link', 'del', 'veth1']);
      } finally {
        agent?.close();
        await qmp?.close().catch(() => undefined);
        await qemu?.stop(3000).catch(() => undefined);
        const report = await network.removeEndpoints();
        network.close();
        expect(report.failures).toEqual([]);
      }
      expect(fingerprint(pod)).toEqual(before);
    },
  );
});
