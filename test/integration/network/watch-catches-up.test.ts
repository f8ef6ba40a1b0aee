/**
 * `vcnet watch` when the VM's agent does not answer for a while (restarting, say): the change is
 * attached on the host, reported as failed, and pushed again by itself once the agent is back, with
 * no further change in the namespace. It used to be dropped: the guest never got the NIC's address
 * until something else changed. And a watch whose sandbox is detached ends by itself.
 *
 * The VM is Cloud Hypervisor's API (a server validating each request against its published schema);
 * the guest is a namespace served by vcnet's own agent, where the NIC is a veth with the pod link's MAC.
 */
import { rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { SandboxNotFoundError } from '../../../src/sandbox/sandbox-interfaces.js';
import { type WatchSummary, watchSandbox } from '../../../src/sandbox/sandbox-watch.js';
import { stateDirectoryPerTest, vcnet } from '../../helpers/cli.js';
import { FakeCloudHypervisor } from '../../helpers/fake-cloud-hypervisor.js';
import { serveNamespaceAgent } from '../../helpers/namespace-agent.js';
import { fingerprint, makeConfiguredGuest, makePod } from '../../helpers/pod.js';
import { until } from '../../helpers/until.js';

const stateDirectory = stateDirectoryPerTest('vcnet-watch-agent-');
const stops: Array<() => unknown> = [];
afterEach(async () => {
  for (const stop of stops.splice(0).reverse()) await stop();
});

/** An agent socket that takes connections and drops them at once: an agent going down. */
async function droppingAgent(path: string): Promise<Server> {
  const server = createServer((socket) => socket.destroy());
  await new Promise<void>((resolve) => server.listen(path, resolve));
  return server;
}

describe('vcnet watch with an agent that does not answer for a while', () => {
  it('reports the change as failed and pushes it once the agent is back, with nothing else changing', async () => {
    const { pod } = makePod();
    const guest = makeConfiguredGuest();
    const before = fingerprint(pod);
    const api = await FakeCloudHypervisor.start();
    stops.push(() => api.stop());
    const agentPath = join(stateDirectory(), 'agent.sock');
    const attached = vcnet([
      ...['attach', '--sandbox', 'wa', '--netns', pod.path, '--state-dir', stateDirectory()],
      ...['--hypervisor', 'clh', '--api-socket', api.socketPath, '--agent', agentPath],
    ]);
    expect(attached.status, attached.stderr).toBe(0);

    const down = await droppingAgent(agentPath);
    const applied: WatchSummary[] = [];
    const errors: Error[] = [];
    const watching = await watchSandbox('wa', {
      stateDirectory: stateDirectory(),
      debounceMs: 50,
      onApplied: (summary) => applied.push(summary),
      onError: (error) => errors.push(error),
    });
    stops.push(() => watching.stop());

    // A new pod interface, and the guest NIC it will be (a veth with the pod link's MAC).
    const mac = '02:00:00:00:08:08';
    pod.exec('ip', ['link', 'add', 'eth8', 'address', mac, 'type', 'veth', 'peer', 'name', 'peer8']);
    guest.exec('ip', ['link', 'add', 'nic8', 'address', mac, 'type', 'veth', 'peer', 'name', 'nic8p']);
    pod.exec('ip', ['addr', 'add', '10.88.0.2/24', 'dev', 'eth8']);
    await until(() => errors.length > 0, 'the push to the dropping agent to fail', 60_000);
    expect(applied).toEqual([]);
    // The host side is done and recorded meanwhile.
    expect(pod.exec('ip', ['link', 'show'])).toContain('tap1_kata');

    // The agent comes back; nothing changes in the pod namespace.
    await new Promise<void>((resolve) => down.close(() => resolve()));
    rmSync(agentPath, { force: true });
    const agent = await serveNamespaceAgent(guest.path, agentPath, { linkAppearTimeoutMs: 5_000 });
    stops.push(() => agent.stop());
    await until(
      () => applied.some((summary) => [...summary.added, ...summary.updated].includes('eth8')),
      'the change to be applied',
      60_000,
    ).catch((error) => {
      throw new Error(`${error.message}; errors: ${errors.map((each) => each.message).join(' | ')}`);
    });
    const nic = guest.ipJson<Array<{ ifname: string; addr_info: Array<{ local: string }> }>>(
      'addr',
      'show',
      'dev',
      'eth8',
    );
    expect(nic[0]?.addr_info.map((address) => address.local)).toContain('10.88.0.2');
    // Plugged once: the retry pushed what was attached, it did not attach it again.
    expect(api.requests.filter((request) => request.path === '/api/v1/vm.add-net')).toHaveLength(1);
    expect(api.requests.every((request) => request.schemaErrors === undefined)).toBe(true);

    // Detached: the next change ends the watch by itself.
    expect(vcnet(['detach', '--sandbox', 'wa', '--state-dir', stateDirectory()]).status).toBe(0);
    pod.exec('ip', ['link', 'del', 'eth8']);
    expect(await watching.ended).toBeInstanceOf(SandboxNotFoundError);
    expect(fingerprint(pod)).toEqual(before);
  }, 120_000);
});
