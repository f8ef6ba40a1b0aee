/**
 * `vcnet configure-guest` for a pod whose default gateway neighbour was REACHABLE at attach (any
 * traffic to the gateway shortly before): attach records it, as Kata's runtime does, in the state the
 * pod had it, and vcnet's own guest agent sets it in that state, as Kata's agent does. The agent used
 * to refuse every state but permanent, and configure-guest always failed for such a pod.
 *
 * The guest is a namespace served by vcnet's agent, its eth0 a veth with the pod link's MAC.
 */
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { stateDirectoryPerTest, vcnet, vcnetAsync } from '../../helpers/cli.js';
import { FakeCloudHypervisor } from '../../helpers/fake-cloud-hypervisor.js';
import { serveNamespaceAgent } from '../../helpers/namespace-agent.js';
import { makeConfiguredGuest, makePod } from '../../helpers/pod.js';

const stateDirectory = stateDirectoryPerTest('vcnet-configure-neigh-');
const stops: Array<() => unknown> = [];
afterEach(async () => {
  for (const stop of stops.splice(0).reverse()) await stop();
});

describe('vcnet configure-guest with a REACHABLE gateway neighbour', () => {
  it('sets the gateway neighbour in the guest in the state attach recorded', async () => {
    const { pod, node } = makePod();
    const gatewayMac = node.ipJson<Array<{ address: string }>>('link', 'show', 'veth0')[0]!.address;
    pod.exec('ip', ['neigh', 'replace', '10.200.0.1', 'lladdr', gatewayMac, 'dev', 'eth0', 'nud', 'reachable']);
    const podMac = pod.ipJson<Array<{ address: string }>>('link', 'show', 'eth0')[0]!.address;
    const guest = makeConfiguredGuest();
    guest.exec('ip', ['link', 'set', 'eth0', 'address', podMac]);

    const api = await FakeCloudHypervisor.start();
    stops.push(() => api.stop());
    const agentPath = join(stateDirectory(), 'agent.sock');
    const attached = vcnet([
      ...['attach', '--sandbox', 'cg', '--netns', pod.path, '--state-dir', stateDirectory(), '--json'],
      ...['--hypervisor', 'clh', '--api-socket', api.socketPath, '--agent', agentPath],
    ]);
    expect(attached.status, attached.stderr).toBe(0);
    const agent = await serveNamespaceAgent(guest.path, agentPath, { linkAppearTimeoutMs: 5_000 });
    stops.push(() => agent.stop());
    stops.push(() => vcnet(['detach', '--sandbox', 'cg', '--state-dir', stateDirectory()]));

    // The agent runs in this process: the CLI must not block it (no spawnSync).
    const configured = await vcnetAsync([
      ...['configure-guest', '--sandbox', 'cg', '--state-dir', stateDirectory(), '--json', '--timeout', '20000'],
    ]).done;
    expect(configured.status, configured.stderr).toBe(0);
    expect(JSON.parse(configured.stdout)).toMatchObject({ neighbours: 2 });

    const neighbours = guest
      .ipJson<Array<{ dst: string; lladdr?: string; state: string[] }>>('neigh', 'show', 'dev', 'eth0')
      .map((entry) => [entry.dst, entry.lladdr, entry.state.join(',')])
      .sort();
    // The kernel may age REACHABLE to STALE meanwhile; it is never made permanent.
    expect(neighbours).toEqual([
      ['10.200.0.1', gatewayMac, expect.stringMatching(/^(REACHABLE|STALE|DELAY|PROBE)$/)],
      ['10.200.0.9', '02:00:00:00:00:09', 'PERMANENT'],
    ]);
  }, 90_000);
});
