/**
 * A hot-plug left half-done in a running Cloud Hypervisor VM: add-iface killed right after the VMM
 * took the NIC (vm.add-net answered) leaves the endpoint 'pending' in the record. `vcnet gc` and a
 * watch that starts undo it through the VM first (vm.remove-device of the NIC's id; 404 means the NIC
 * never got there), then the host side; a VMM that answers remove-device with another error may
 * still hold the NIC, so the endpoint, its tap and its record stay. The VMM is Cloud Hypervisor's API
 * stand-in, which validates every request against the published OpenAPI schema.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { watchSandbox } from '../../../src/sandbox/sandbox-watch.js';
import { killAfterHotplug, stateDirectoryPerTest, vcnetAsync } from '../../helpers/cli.js';
import { FakeCloudHypervisor } from '../../helpers/fake-cloud-hypervisor.js';
import { writeRequest } from '../../helpers/hotplug-guest.js';
import { serveNamespaceAgent } from '../../helpers/namespace-agent.js';
import { fingerprint, kataLinks, makeConfiguredGuest, makePod } from '../../helpers/pod.js';

const stateDirectory = stateDirectoryPerTest('vcnet-unfinished-clh-');
const stops: Array<() => unknown> = [];
afterEach(async () => {
  for (const stop of stops.splice(0).reverse()) await stop();
});

/** A sandbox on the API stand-in with eth9 half hot-plugged: add-iface killed once add-net was answered. */
async function halfPlugged(sandbox: string) {
  const { pod } = makePod();
  const before = fingerprint(pod);
  const api = await FakeCloudHypervisor.start();
  stops.push(() => api.stop());
  // add-iface reaches the agent before it plugs anything: one serves a namespace playing the guest.
  const agentPath = join(stateDirectory(), 'agent.sock');
  const agent = await serveNamespaceAgent(makeConfiguredGuest().path, agentPath, { linkAppearTimeoutMs: 2_000 });
  stops.push(() => agent.stop());
  const flag = ['--state-dir', stateDirectory()];
  const attached = await vcnetAsync([
    ...['attach', '--sandbox', sandbox, '--netns', pod.path, ...flag],
    ...['--hypervisor', 'clh', '--api-socket', api.socketPath, '--agent', agentPath],
  ]).done;
  expect(attached.status, attached.stderr).toBe(0);
  pod.exec('ip', ['link', 'add', 'eth9', 'type', 'veth', 'peer', 'name', 'peer9']);
  pod.exec('ip', ['link', 'set', 'eth9', 'up']);
  pod.exec('ip', ['addr', 'add', '10.209.0.2/24', 'dev', 'eth9']);
  const request = writeRequest(stateDirectory(), 'add.json', { device: 'eth9', name: 'net9' });
  const killed = await vcnetAsync(['add-iface', sandbox, request, ...flag], killAfterHotplug()).done;
  expect(killed.status, killed.stderr).toBe(-1); // SIGKILL
  const record = () =>
    JSON.parse(readFileSync(join(stateDirectory(), sandbox, 'state.json'), 'utf8')) as {
      network: { endpoints: Array<{ name: string; plumbing: { model: string } }> };
    };
  expect(record().network.endpoints.map((endpoint) => [endpoint.name, endpoint.plumbing.model])).toEqual([
    ['eth0', 'tcfilter'],
    ['net9', 'pending'],
  ]);
  const added = api.requests.filter((each) => each.path === '/api/v1/vm.add-net');
  expect(added).toHaveLength(1);
  const nicId = (added[0]!.body as { id: string }).id;
  expect(api.heldIds.has(nicId)).toBe(true);
  expect(kataLinks(pod)).toEqual(['tap0_kata', 'tap1_kata']);
  const removals = () =>
    api.requests.filter((each) => each.path === '/api/v1/vm.remove-device').map((each) => each.body);
  /** After `calls` remove-device requests of the NIC's id (each valid by the schema), the endpoint stayed whole, or went. */
  const expectRemovals = (calls: number, outcome: 'kept' | 'undone') => {
    expect(removals()).toEqual(Array.from({ length: calls }, () => ({ id: nicId })));
    expect(api.requests.every((each) => each.schemaErrors === undefined)).toBe(true);
    const endpoints = record().network.endpoints.map((endpoint) => `${endpoint.name} ${endpoint.plumbing.model}`);
    expect(endpoints).toEqual(outcome === 'kept' ? ['eth0 tcfilter', 'net9 pending'] : ['eth0 tcfilter']);
    expect(kataLinks(pod)).toEqual(outcome === 'kept' ? ['tap0_kata', 'tap1_kata'] : ['tap0_kata']);
  };
  const detach = async () => {
    const detached = await vcnetAsync(['detach', '--sandbox', sandbox, ...flag]).done;
    expect(detached.status, detached.stderr).toBe(0);
    pod.exec('ip', ['link', 'del', 'eth9']);
    expect(fingerprint(pod)).toEqual(before);
  };
  return { pod, api, flag, nicId, expectRemovals, detach };
}

describe('an unfinished hot-plug in a running Cloud Hypervisor VM', () => {
  it('gc removes the NIC with vm.remove-device, then the host side; another error than 404 keeps it all', async () => {
    const { pod, api, flag, nicId, expectRemovals, detach } = await halfPlugged('ch');

    // The VMM refuses the removal (not 404: the NIC may be in the VM): nothing of the endpoint goes.
    api.replies.push({ status: 500, reason: 'Internal Server Error', body: '"Error removing device"' });
    const kept = await vcnetAsync(['gc', '--netns', pod.path, ...flag, '--json']).done;
    expect(kept.status, kept.stderr).toBe(1);
    const keptReport = JSON.parse(kept.stdout) as { removed: unknown[]; failures: Array<{ reason: string }> };
    expect(keptReport.removed).toEqual([]);
    expect(keptReport.failures.map((failure) => failure.reason).join('\n')).toMatch(
      new RegExp(
        `unfinished attach of eth9 \\(sandbox ch\\): ${nicId} may still be in the VM, so its record and plumbing stay`,
      ),
    );
    expectRemovals(1, 'kept');

    // The VMM removes it (204): the host side goes, and the record keeps only eth0.
    const collected = await vcnetAsync(['gc', '--netns', pod.path, ...flag, '--json']).done;
    expect(collected.status, collected.stderr).toBe(0);
    expect(JSON.parse(collected.stdout).removed).toEqual([
      expect.objectContaining({ detail: expect.stringMatching(/^unfinished attach of eth9: tun tap1_kata/) }),
    ]);
    expectRemovals(2, 'undone');
    await detach();
  }, 120_000);

  it('gc takes 404 from vm.remove-device as done: the NIC never reached the VM', async () => {
    const { pod, api, flag, nicId, expectRemovals, detach } = await halfPlugged('cn');
    api.heldIds.delete(nicId); // as if the kill had come before the VMM took it
    const collected = await vcnetAsync(['gc', '--netns', pod.path, ...flag, '--json']).done;
    expect(collected.status, collected.stderr).toBe(0);
    expectRemovals(1, 'undone');
    await detach();
  }, 120_000);

  it('a watch that starts removes the NIC with vm.remove-device before the host side; another error than 404 keeps it', async () => {
    const { api, flag, nicId, expectRemovals, detach } = await halfPlugged('cw');
    // A long debounce: what the watch does at start is seen before it attaches eth9 again.
    const options = { stateDirectory: flag[1]!, debounceMs: 60_000, onError: () => {} };

    api.replies.push({ status: 500, reason: 'Internal Server Error', body: '"Error removing device"' });
    const refused = await watchSandbox('cw', options);
    await refused.stop();
    expect(refused.undoneAttaches).toEqual([]);
    expect(refused.notUndone).toEqual([
      {
        name: 'eth9',
        message: expect.stringContaining(`${nicId} may still be in the VM, so its record and plumbing stay`),
      },
    ]);
    expectRemovals(1, 'kept');

    const watching = await watchSandbox('cw', options);
    await watching.stop();
    expect(watching.undoneAttaches).toEqual(['eth9']);
    expect(watching.notUndone).toEqual([]);
    expectRemovals(2, 'undone');
    await detach();
  }, 120_000);
});
