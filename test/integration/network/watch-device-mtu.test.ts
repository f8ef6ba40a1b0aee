/**
 * `vcnet watch` over the device the VM uses, macvtap and tcfilter, with real namespaces.
 * The macvtap model moves the pod link's addresses, routes and static neighbours into the guest:
 * watch used to push the pod link as it is now, so any change on it (an MTU) sent the guest NIC
 * with no IPv4 and wrote empty lists into the record. A macvtap also stayed at a lowered MTU (the
 * kernel lowers a macvlan with its lower link but never raises it), and a tcfilter tap was capped
 * at the guest NIC's host_mtu although attach gives it the pod link's MTU.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { type WatchSummary, watchSandbox } from '../../../src/sandbox/sandbox-watch.js';
import { cleanupAfterEach } from '../../helpers/cleanup.js';
import { vcnet } from '../../helpers/cli.js';
import { makePod } from '../../helpers/pod.js';
import { until } from '../../helpers/until.js';

interface RecordedEndpoint {
  properties: {
    link: { name: string; mtu: number };
    addresses: Array<{ address: string }>;
    routes: Array<{ destination?: string; gateway?: string }>;
    neighbours: Array<{ destination: string }>;
  };
}

const cleanup = cleanupAfterEach();
/** The state directory of the running test. */
let stateDir = '';

function recorded(sandbox: string): RecordedEndpoint {
  const state = JSON.parse(readFileSync(join(stateDir, sandbox, 'state.json'), 'utf8')) as {
    network: { endpoints: RecordedEndpoint[] };
  };
  const endpoint = state.network.endpoints.find((entry) => entry.properties.link.name === 'eth0');
  if (!endpoint) throw new Error('eth0 is not in the record');
  return endpoint;
}

async function watching(sandbox: string): Promise<WatchSummary[]> {
  const applied: WatchSummary[] = [];
  const watch = await watchSandbox(sandbox, {
    stateDirectory: stateDir,
    debounceMs: 50,
    onApplied: (summary) => applied.push(summary),
  });
  cleanup.defer(() => watch.stop());
  return applied;
}

describe('vcnet watch: a macvtap endpoint', () => {
  it('keeps the addresses, routes and neighbours the model moved into the guest when the pod link changes, and follows its MTU both ways', async () => {
    stateDir = cleanup.directory('vcnet-watch-macvtap-');
    const { pod } = makePod();
    const attach = vcnet([
      'attach',
      '--sandbox',
      'mv1',
      '--netns',
      pod.path,
      '--model',
      'macvtap',
      '--state-dir',
      stateDir,
    ]);
    expect(attach.status, attach.stderr).toBe(0);
    const atAttach = recorded('mv1').properties;
    expect(atAttach.addresses.map((address) => address.address)).toContain('10.200.0.2');
    // Moved: the pod link has none of them now.
    expect(pod.exec('ip', ['-4', 'addr', 'show', 'dev', 'eth0'])).not.toContain('10.200.0.2');
    const mtuOf = (name: string) => pod.ipJson<Array<{ mtu: number }>>('link', 'show', name)[0]?.mtu;
    expect(mtuOf('tap0_kata')).toBe(1500);
    const applied = await watching('mv1');

    for (const mtu of [1400, 1500]) {
      const seen = applied.length;
      pod.exec('ip', ['link', 'set', 'eth0', 'mtu', String(mtu)]);
      await until(() => applied.slice(seen).some((summary) => summary.updated.includes('eth0')), `MTU ${mtu} applied`);
      const now = recorded('mv1').properties;
      expect(now.link.mtu, `record after pod MTU ${mtu}`).toBe(mtu);
      expect(now.addresses).toEqual(atAttach.addresses);
      expect(now.routes).toEqual(atAttach.routes);
      expect(now.neighbours).toEqual(atAttach.neighbours);
      // Up as well as down: the kernel only ever lowers a macvtap with its lower link.
      expect(mtuOf('tap0_kata'), `macvtap after pod MTU ${mtu}`).toBe(mtu);
    }
    const listed = JSON.parse(vcnet(['list-ifaces', 'mv1', '--state-dir', stateDir, '--json']).stdout) as Array<{
      name: string;
      mtu: number;
      IPAddresses: Array<{ address: string }>;
    }>;
    expect(listed.find((entry) => entry.name === 'eth0')?.IPAddresses.map((address) => address.address)).toContain(
      '10.200.0.2',
    );
    const routes = JSON.parse(vcnet(['list-routes', 'mv1', '--state-dir', stateDir, '--json']).stdout) as Array<{
      dest: string;
      gateway: string;
    }>;
    expect(routes.some((route) => route.gateway === '10.200.0.1')).toBe(true);
  }, 60_000);
});

describe('vcnet watch: a tcfilter tap', () => {
  it("follows the pod link's MTU above the guest NIC's host_mtu, while the guest stays at it", async () => {
    stateDir = cleanup.directory('vcnet-watch-tapmtu-');
    const { pod } = makePod();
    expect(vcnet(['attach', '--sandbox', 'tm1', '--netns', pod.path, '--state-dir', stateDir]).status).toBe(0);
    const mtuOf = (name: string) => pod.ipJson<Array<{ mtu: number }>>('link', 'show', name)[0]?.mtu;
    const applied = await watching('tm1');
    pod.exec('ip', ['link', 'set', 'eth0', 'mtu', '1600']);
    await until(() => applied.some((summary) => summary.updated.includes('eth0')), 'MTU 1600 applied');
    expect(mtuOf('tap0_kata')).toBe(1600);
    // The NIC was plugged with host_mtu=1500: the guest cannot go above it.
    expect(recorded('tm1').properties.link.mtu).toBe(1500);
  }, 60_000);
});
