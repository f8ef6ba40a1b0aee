/**
 * The kata-network commands on a Cloud Hypervisor sandbox whose agent is reached as Kata reaches it:
 * through the VMM's hybrid vsock socket (`--agent hvsock://PATH:1024`: CONNECT 1024, OK, then ttrpc).
 * The VMM is two stand-ins: its API (a server validating each request against Cloud Hypervisor's
 * published schema) and its vsock socket (answering the handshake, then forwarding to vcnet's own
 * agent serving a namespace that plays the guest, where each NIC is a veth with the pod link's MAC).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { stateDirectoryPerTest, vcnet, vcnetAsync } from '../../helpers/cli.js';
import { FakeCloudHypervisor } from '../../helpers/fake-cloud-hypervisor.js';
import { serveHybridVsock } from '../../helpers/hybrid-vsock-server.js';
import type { TestNamespace } from '../../helpers/namespace.js';
import { serveNamespaceAgent } from '../../helpers/namespace-agent.js';
import { fingerprint, makeConfiguredGuest, makePod } from '../../helpers/pod.js';

const stateDirectory = stateDirectoryPerTest('vcnet-hvsock-');
const stops: Array<() => unknown> = [];
afterEach(async () => {
  for (const stop of stops.splice(0).reverse()) await stop();
});

/** A Cloud Hypervisor VM: its API, and its vsock socket leading to an agent serving `guest`. */
async function cloudHypervisorVm(guest: TestNamespace) {
  const api = await FakeCloudHypervisor.start();
  stops.push(() => api.stop());
  const agentPath = join(stateDirectory(), 'agent.sock');
  const agent = await serveNamespaceAgent(guest.path, agentPath, { linkAppearTimeoutMs: 5_000 });
  stops.push(() => agent.stop());
  const vsockPath = join(stateDirectory(), 'clh.sock');
  const vsock = await serveHybridVsock(vsockPath, agentPath);
  stops.push(() => vsock.stop());
  return { api, vsock, agentAddress: `hvsock://${vsockPath}:1024` };
}

async function run(args: string[], input?: unknown) {
  if (input !== undefined) {
    const file = join(stateDirectory(), `input-${Math.random().toString(36).slice(2)}.json`);
    writeFileSync(file, JSON.stringify(input));
    args = [...args.slice(0, 2), file, ...args.slice(2)];
  }
  return vcnetAsync([...args, '--state-dir', stateDirectory()]).done;
}

describe('kata-network commands on a Cloud Hypervisor VM through hybrid vsock', () => {
  it('hot-plugs, configures, lists and removes a NIC, talking to the agent through CONNECT 1024', async () => {
    const { pod } = makePod();
    const guest = makeConfiguredGuest();
    const before = fingerprint(pod);
    const { api, vsock, agentAddress } = await cloudHypervisorVm(guest);
    const attached = vcnet([
      ...['attach', '--sandbox', 'hv', '--netns', pod.path, '--state-dir', stateDirectory()],
      ...['--hypervisor', 'clh', '--api-socket', api.socketPath, '--agent', agentAddress],
    ]);
    expect(attached.status, attached.stderr).toBe(0);

    const mac = '02:00:00:00:08:08';
    pod.exec('ip', ['link', 'add', 'eth8', 'address', mac, 'type', 'veth', 'peer', 'name', 'peer8']);
    guest.exec('ip', ['link', 'add', 'nic8', 'address', mac, 'type', 'veth', 'peer', 'name', 'nic8p']);
    const added = await run(['add-iface', 'hv'], {
      device: 'eth8',
      name: 'eth8',
      IPAddresses: [{ family: 0, address: '10.88.0.2', mask: '24' }],
    });
    expect(added.status, added.stderr).toBe(0);
    expect(vsock.lines[0]).toBe('CONNECT 1024');
    // vmm.ping first: add-iface changes nothing before the VMM answers one.
    expect(api.requests.map((request) => request.path)).toEqual(['/api/v1/vmm.ping', '/api/v1/vm.add-net']);
    const nic = guest.ipJson<Array<{ addr_info: Array<{ local: string }> }>>('addr', 'show', 'dev', 'eth8');
    expect(nic[0]?.addr_info.map((address) => address.local)).toContain('10.88.0.2');

    // list-ifaces asks the guest: its veth peers are there too, which the record does not know.
    const listed = await run(['list-ifaces', 'hv', '--json']);
    expect(listed.status, listed.stderr).toBe(0);
    expect(JSON.parse(listed.stdout).map((entry: { name: string }) => entry.name)).toContain('eth0p');

    const removed = await run(['del-iface', 'hv'], { name: 'eth8' });
    expect(removed.status, removed.stderr).toBe(0);
    expect(api.requests.at(-1)).toMatchObject({ path: '/api/v1/vm.remove-device', body: { id: 'net1' } });
    expect(api.requests.every((request) => request.schemaErrors === undefined)).toBe(true);

    pod.exec('ip', ['link', 'del', 'eth8']);
    expect(vcnet(['detach', '--sandbox', 'hv', '--state-dir', stateDirectory()]).status).toBe(0);
    expect(fingerprint(pod)).toEqual(before);
  }, 120_000);

  it('never gives a new NIC the id of a removed one (Cloud Hypervisor holds it until the guest acks)', async () => {
    const { pod } = makePod();
    const guest = makeConfiguredGuest();
    const { api, agentAddress } = await cloudHypervisorVm(guest);
    const attached = vcnet([
      ...['attach', '--sandbox', 'hv', '--netns', pod.path, '--state-dir', stateDirectory()],
      ...['--hypervisor', 'clh', '--api-socket', api.socketPath, '--agent', agentAddress],
    ]);
    expect(attached.status, attached.stderr).toBe(0);
    for (const [link, mac] of [
      ['eth8', '02:00:00:00:08:08'],
      ['eth9', '02:00:00:00:09:09'],
    ] as const) {
      pod.exec('ip', ['link', 'add', link, 'address', mac, 'type', 'veth', 'peer', 'name', `peer${link}`]);
      guest.exec('ip', ['link', 'add', `nic${link}`, 'address', mac, 'type', 'veth', 'peer', 'name', `p${link}`]);
      const added = await run(['add-iface', 'hv'], { device: link, name: link });
      expect(added.status, added.stderr).toBe(0);
      const removed = await run(['del-iface', 'hv'], { name: link });
      expect(removed.status, removed.stderr).toBe(0);
    }
    const ids = api.requests.map((request) =>
      request.path === '/api/v1/vmm.ping'
        ? 'vmm.ping'
        : `${request.path.slice('/api/v1/'.length)} ${(request.body as { id: string }).id}`,
    );
    // Each add-iface and del-iface asks vmm.ping before it changes anything.
    expect(ids).toEqual([
      ...['vmm.ping', 'vm.add-net net1', 'vmm.ping', 'vm.remove-device net1'],
      ...['vmm.ping', 'vm.add-net net2', 'vmm.ping', 'vm.remove-device net2'],
    ]);
    expect(vcnet(['detach', '--sandbox', 'hv', '--state-dir', stateDirectory()]).status).toBe(0);
  }, 120_000);

  it('refuses a malformed hvsock address at attach, naming --agent, and makes nothing', () => {
    const { pod } = makePod();
    const before = fingerprint(pod);
    const attached = vcnet([
      ...['attach', '--sandbox', 'hv', '--netns', pod.path, '--state-dir', stateDirectory()],
      ...['--hypervisor', 'clh', '--api-socket', '/tmp/none.sock', '--agent', 'hvsock:///tmp/clh.sock:port'],
    ]);
    expect(attached.status).toBe(2);
    expect(attached.stderr).toContain('invalid --agent: "hvsock:///tmp/clh.sock:port"');
    expect(attached.stderr).toContain('hvsock://PATH:PORT');
    expect(fingerprint(pod)).toEqual(before);
  });
});
