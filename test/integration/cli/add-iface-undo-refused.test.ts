/**
 * add-iface whose guest configuration fails and whose undo is refused too (the VMM will not remove
 * the NIC): the error names both, the first failure as the cause to fix and the refusal as what is
 * left. It used to say only what the undo left, so the reason add-iface failed appeared nowhere.
 * The VM is Cloud Hypervisor's API stand-in plus vcnet's agent serving a namespace that plays the
 * guest, where the NIC is a macvlan on a 1500-byte link: the agent cannot give it the pod link's MTU.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { stateDirectoryPerTest, vcnet, vcnetAsync } from '../../helpers/cli.js';
import { FakeCloudHypervisor } from '../../helpers/fake-cloud-hypervisor.js';
import { serveHybridVsock } from '../../helpers/hybrid-vsock-server.js';
import { serveNamespaceAgent } from '../../helpers/namespace-agent.js';
import { fingerprint, makeConfiguredGuest, makePod } from '../../helpers/pod.js';

const stateDirectory = stateDirectoryPerTest('vcnet-undo-refused-');
const stops: Array<() => unknown> = [];
afterEach(async () => {
  for (const stop of stops.splice(0).reverse()) await stop();
});

describe('add-iface when both the guest and the undo fail', () => {
  it('names the first failure as the cause, then what the undo left', async () => {
    const { pod } = makePod();
    const before = fingerprint(pod);
    const guest = makeConfiguredGuest();
    const api = await FakeCloudHypervisor.start();
    stops.push(() => api.stop());
    const agentPath = join(stateDirectory(), 'agent.sock');
    const agent = await serveNamespaceAgent(guest.path, agentPath, { linkAppearTimeoutMs: 2_000 });
    stops.push(() => agent.stop());
    const vsockPath = join(stateDirectory(), 'clh.sock');
    const vsock = await serveHybridVsock(vsockPath, agentPath);
    stops.push(() => vsock.stop());
    const attached = vcnet([
      ...['attach', '--sandbox', 'u1', '--netns', pod.path, '--state-dir', stateDirectory()],
      ...['--hypervisor', 'clh', '--api-socket', api.socketPath, '--agent', `hvsock://${vsockPath}:1024`],
    ]);
    expect(attached.status, attached.stderr).toBe(0);

    const mac = '02:00:00:00:08:08';
    pod.exec('ip', ['link', 'add', 'eth8', 'address', mac, 'mtu', '9000', 'type', 'veth', 'peer', 'name', 'peer8']);
    pod.exec('ip', ['link', 'set', 'peer8', 'mtu', '9000']);
    guest.exec('ip', ['link', 'add', 'lower8', 'type', 'veth', 'peer', 'name', 'lower8p']);
    guest.exec('ip', ['link', 'add', 'link', 'lower8', 'name', 'nic8', 'address', mac, 'type', 'macvlan']);
    // The NIC is plugged, then the VMM refuses to remove it again.
    api.replies.push(
      { status: 200, reason: 'OK', body: JSON.stringify({ id: 'net1', bdf: '0000:00:04.0' }) },
      { status: 500, reason: 'Internal Server Error', body: '"Error removing device"' },
    );
    const request = join(stateDirectory(), 'add.json');
    writeFileSync(request, JSON.stringify({ device: 'eth8', name: 'eth8' }));
    const added = await vcnetAsync(['add-iface', 'u1', request, '--state-dir', stateDirectory(), '--json']).done;
    expect(added.status, added.stderr).toBe(1);
    expect(JSON.parse(added.stdout).error).toMatchObject({
      code: 'VCNET_ROLLBACK_INCOMPLETE',
      value: expect.arrayContaining(["the VM's NIC net1 (eth8)"]),
    });
    const [message = ''] = added.stderr.split('\n').filter((line) => line.startsWith('vcnet: add-iface'));
    // The first failure, the agent refusing the MTU, leads; then the refusal and what is left.
    expect(message).toMatch(/^vcnet: add-iface eth8 failed: .*9000.*; undoing it failed too \(.*net1.*\): left /);
    expect(message).toContain('Error removing device');
    expect(message).toContain("the VM's NIC net1 (eth8)");
    // The hint is the undo's: how to finish once the VM lets the NIC go.
    expect(added.stderr).toMatch(/^hint: .*vcnet del-iface u1 FILE/m);

    // The record kept the NIC; with the VMM answering again detach removes everything.
    const detached = vcnet(['detach', '--sandbox', 'u1', '--state-dir', stateDirectory()]);
    expect(detached.status, detached.stderr).toBe(0);
    pod.exec('ip', ['link', 'del', 'eth8']);
    expect(fingerprint(pod)).toEqual(before);
  }, 120_000);
});
