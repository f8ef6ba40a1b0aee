/**
 * add-iface when Cloud Hypervisor dies as its vm.add-net request arrives (the QEMU case:
 * add-iface-qemu-killed.test.ts). The request got no answer, so the NIC may have been added: the
 * removal add-iface then sends finds no API socket, which means the VM is gone, not that it kept the
 * NIC. add-iface fails saying so, with the host side undone: the pod namespace and the record are as
 * they were before it.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { watchSandbox } from '../../../src/sandbox/sandbox-watch.js';
import { stateDirectoryPerTest, vcnet, vcnetAsync } from '../../helpers/cli.js';
import { FakeCloudHypervisor } from '../../helpers/fake-cloud-hypervisor.js';
import { serveHybridVsock } from '../../helpers/hybrid-vsock-server.js';
import { serveNamespaceAgent } from '../../helpers/namespace-agent.js';
import { fingerprint, kataLinks, makeConfiguredGuest, makePod } from '../../helpers/pod.js';
import { until } from '../../helpers/until.js';

const stateDirectory = stateDirectoryPerTest('vcnet-clh-killed-');
const stops: Array<() => unknown> = [];
afterEach(async () => {
  for (const stop of stops.splice(0).reverse()) await stop();
});

/**
 * Sandbox `sandbox` (the pod's eth0) attached with `--hypervisor clh` on a new API stand-in, its agent
 * reached through a hybrid vsock socket as Cloud Hypervisor serves it (`vsock`: stopped with the VMM,
 * as a killed one's goes); vcnet's agent serves a namespace playing the guest. `before`: the pod as
 * it was before the attach.
 */
async function attachWithHybridVsock(sandbox: string) {
  const { pod, node } = makePod();
  const before = fingerprint(pod);
  const api = await FakeCloudHypervisor.start();
  stops.push(() => api.stop());
  const guest = makeConfiguredGuest();
  const agentPath = join(stateDirectory(), 'agent.sock');
  const agent = await serveNamespaceAgent(guest.path, agentPath, { linkAppearTimeoutMs: 2_000 });
  stops.push(() => agent.stop());
  const vsockPath = join(stateDirectory(), 'clh.sock');
  const vsock = await serveHybridVsock(vsockPath, agentPath);
  stops.push(() => vsock.stop());
  const flag = ['--state-dir', stateDirectory()];
  const attached = vcnet([
    ...['attach', '--sandbox', sandbox, '--netns', pod.path, ...flag],
    ...['--hypervisor', 'clh', '--api-socket', api.socketPath, '--agent', `hvsock://${vsockPath}:1024`],
  ]);
  expect(attached.status, attached.stderr).toBe(0);
  return { pod, node, before, api, vsock, flag };
}

describe('add-iface when Cloud Hypervisor dies at vm.add-net', () => {
  it('fails saying the VM is gone, the host side undone: namespace and record as before', async () => {
    const { pod, node, before, api, flag } = await attachWithHybridVsock('ck');
    node.exec('ip', ['link', 'add', 'veth9', 'type', 'veth', 'peer', 'name', 'eth9', 'netns', pod.name]);
    pod.exec('ip', ['link', 'set', 'eth9', 'up']);
    pod.exec('ip', ['addr', 'add', '10.209.0.2/24', 'dev', 'eth9']);
    const withEth9 = fingerprint(pod);
    const recordPath = join(stateDirectory(), 'ck', 'state.json');
    const record = readFileSync(recordPath, 'utf8');

    api.replies.push({ status: 0, reason: '', answer: 'die' });
    const request = join(stateDirectory(), 'add.json');
    writeFileSync(request, JSON.stringify({ name: 'eth9' }));
    const failed = await vcnetAsync(['add-iface', 'ck', request, ...flag, '--json']).done;
    expect(failed.status, failed.stderr).toBe(1);
    // Said as for QEMU: nothing of the interface is left, detach removes the rest now the VM is gone
    // (not "start cloud-hypervisor", the hint for a VM never reached).
    const { error } = JSON.parse(failed.stdout);
    expect(error.code).toBe('VCNET_HYPERVISOR_UNREACHABLE');
    expect(error.hint).toContain('nothing of the interface is left');
    expect(error.hint).toContain(`\`vcnet detach --sandbox ck --state-dir ${stateDirectory()}\``);
    expect(error.hint).not.toContain('start cloud-hypervisor');
    // vmm.ping first: add-iface changes nothing before the VMM answers one.
    expect(api.requests.map((received) => received.path)).toEqual(['/api/v1/vmm.ping', '/api/v1/vm.add-net']);
    expect(failed.stderr).toContain("sandbox ck's VM is gone");
    expect(failed.stderr).toContain('the interface was undone on the host side');
    expect(failed.stderr).not.toContain('did not answer');
    expect(failed.stderr).not.toMatch(/ left \d+ object|: left /);
    expect(fingerprint(pod)).toEqual(withEth9);
    // The record as before, but for the counter of NIC ids given (by design: net1 may be held by
    // a Cloud Hypervisor that is alive after all, and is never given again; see nextDeviceIndex).
    const { nextDeviceIndex, ...after } = JSON.parse(readFileSync(recordPath, 'utf8'));
    expect(after).toEqual(JSON.parse(record));
    expect(nextDeviceIndex).toBe(2);

    pod.exec('ip', ['link', 'del', 'eth9']);
    const detached = vcnet(['detach', '--sandbox', 'ck', ...flag]);
    expect(detached.status, detached.stderr).toBe(0);
    expect(fingerprint(pod)).toEqual(before);
  }, 90_000);
});

describe('del-iface when Cloud Hypervisor is gone', () => {
  it('removes the interface on the host side alone, saying the VM is gone, as for QEMU: it does not wait for the agent of a VM that is not there', async () => {
    const { pod, before, api, vsock, flag } = await attachWithHybridVsock('cg');
    // The VMM killed: its API socket gone, and the hybrid vsock socket it served with it.
    await api.stop();
    await vsock.stop();

    // add-iface changes nothing: the VM's API socket gone is said at once, not after the agent's wait.
    pod.exec('ip', ['link', 'add', 'eth9', 'type', 'veth', 'peer', 'name', 'peer9']);
    pod.exec('ip', ['addr', 'add', '10.209.0.2/24', 'dev', 'eth9']);
    const addRequest = join(stateDirectory(), 'add.json');
    writeFileSync(addRequest, JSON.stringify({ name: 'eth9' }));
    const notAdded = await vcnetAsync(['add-iface', 'cg', addRequest, ...flag, '--json']).done;
    expect(notAdded.status, notAdded.stderr).toBe(1);
    const { error } = JSON.parse(notAdded.stdout) as { error: { code: string; message: string; hint: string } };
    expect(error.code).toBe('VCNET_HYPERVISOR_UNREACHABLE');
    expect(error.message).toContain(`GET /api/v1/vmm.ping: connect ENOENT ${api.socketPath} (sandbox cg's VM)`);
    expect(error.hint).toContain(
      `nothing was changed. If the VM has stopped, \`vcnet detach --sandbox cg --state-dir ${stateDirectory()}\``,
    );
    expect(notAdded.stderr).not.toContain('agent');
    pod.exec('ip', ['link', 'del', 'eth9']);

    const request = join(stateDirectory(), 'del.json');
    writeFileSync(request, JSON.stringify({ name: 'eth0' }));
    const removed = await vcnetAsync(['del-iface', 'cg', request, ...flag]).done;
    expect(removed.status, removed.stderr).toBe(0);
    expect(removed.stderr).toContain("sandbox cg's VM is gone");
    expect(removed.stderr).not.toContain('agent');
    const recorded = JSON.parse(readFileSync(join(stateDirectory(), 'cg', 'state.json'), 'utf8'));
    expect(recorded.network.endpoints).toEqual([]);
    expect(fingerprint(pod)).toEqual(before);
  }, 90_000);
});

describe('add-iface when Cloud Hypervisor dies during its vmm.ping', () => {
  // Killed while it read the ping: the connection closes without an answer, and its socket file,
  // which a killed process leaves, refuses connections since. Taken as an answer (a reply that is
  // not the API's), add-iface waited the agent's 10 s for a VM that is not there.
  it('says the VM is gone at once and changes nothing; del-iface then removes the host side alone', async () => {
    const { pod, before, api, vsock, flag } = await attachWithHybridVsock('cp');
    const record = readFileSync(join(stateDirectory(), 'cp', 'state.json'), 'utf8');
    // The hybrid vsock socket goes with the VMM, as a killed Cloud Hypervisor's does.
    await vsock.stop();

    pod.exec('ip', ['link', 'add', 'eth9', 'type', 'veth', 'peer', 'name', 'peer9']);
    pod.exec('ip', ['addr', 'add', '10.209.0.2/24', 'dev', 'eth9']);
    const withEth9 = fingerprint(pod);
    api.replies.push({ status: 0, reason: '', answer: 'die', path: '/api/v1/vmm.ping' });
    const addRequest = join(stateDirectory(), 'add.json');
    writeFileSync(addRequest, JSON.stringify({ name: 'eth9' }));
    const notAdded = await vcnetAsync(['add-iface', 'cp', addRequest, ...flag, '--json']).done;
    expect(notAdded.status, notAdded.stderr).toBe(1);
    const { error } = JSON.parse(notAdded.stdout) as { error: { code: string; message: string; hint: string } };
    expect(error.code).toBe('VCNET_HYPERVISOR_UNREACHABLE');
    expect(error.message).toContain('the VMM is gone');
    expect(error.hint).toContain(
      `If the VM has stopped, \`vcnet detach --sandbox cp --state-dir ${stateDirectory()}\``,
    );
    expect(notAdded.stderr).not.toContain('agent');
    expect(api.requests.map((received) => received.path)).toEqual(['/api/v1/vmm.ping']);
    expect(fingerprint(pod)).toEqual(withEth9);
    expect(readFileSync(join(stateDirectory(), 'cp', 'state.json'), 'utf8')).toBe(record);
    pod.exec('ip', ['link', 'del', 'eth9']);

    // The VM stays gone: del-iface removes the host side alone.
    const request = join(stateDirectory(), 'del.json');
    writeFileSync(request, JSON.stringify({ name: 'eth0' }));
    const removed = await vcnetAsync(['del-iface', 'cp', request, ...flag]).done;
    expect(removed.status, removed.stderr).toBe(0);
    expect(removed.stderr).toContain("sandbox cp's VM is gone");
    expect(removed.stderr).not.toContain('agent');
    expect(fingerprint(pod)).toEqual(before);
  }, 90_000);
});

describe('vcnet watch when Cloud Hypervisor is gone', () => {
  it('removes a deleted pod link on the host side alone, as for QEMU: it does not wait for the agent of a VM that is not there', async () => {
    const { pod, api, vsock } = await attachWithHybridVsock('cw');
    const errors: Error[] = [];
    const watching = await watchSandbox('cw', {
      stateDirectory: stateDirectory(),
      debounceMs: 0,
      onError: (error) => errors.push(error),
    });
    stops.push(() => watching.stop());
    // The VMM killed: its API socket gone, and the hybrid vsock socket it served with it.
    await api.stop();
    await vsock.stop();

    pod.exec('ip', ['link', 'del', 'eth0']);
    const recordPath = join(stateDirectory(), 'cw', 'state.json');
    const endpoints = () =>
      (JSON.parse(readFileSync(recordPath, 'utf8')) as { network: { endpoints: unknown[] } }).network.endpoints;
    await until(() => endpoints().length === 0 || errors.length > 0, 'the watch to remove eth0, or its error', 60_000);
    expect(errors.map((error) => error.message)).toEqual([]);
    expect(endpoints()).toEqual([]);
    expect(kataLinks(pod)).toEqual([]);
  }, 120_000);
});
