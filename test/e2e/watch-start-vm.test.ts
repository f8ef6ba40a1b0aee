/**
 * A watch that starts (again) starts from the sandbox's record, with a running TCG guest: what changed
 * in the pod while no watch ran is applied as if it had happened while watching. A pod link deleted
 * (CNI DEL) is unplugged and its plumbing removed, a new route and an MTU change reach the guest; a pod
 * link made again under a recorded name (new veth, MAC, address) replaces the dead endpoint: the guest
 * gets the new MAC, and traffic reaches it.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { EndpointState } from '../../src/network/endpoint/endpoint.js';
import { type SandboxWatch, type WatchSummary, watchSandbox } from '../../src/sandbox/sandbox-watch.js';
import { vcnet } from '../helpers/cli.js';
import { guestUnavailableReason, pingFrom } from '../helpers/guest.js';
import { attachAndBootGuest, type HotplugGuest } from '../helpers/hotplug-guest.js';
import { cleanupNamespaces } from '../helpers/namespace.js';
import { until } from '../helpers/until.js';

const unavailable = guestUnavailableReason();
if (unavailable) console.log(`skip watch-start VM test: ${unavailable}`);

let work: string | undefined;

afterEach(() => {
  cleanupNamespaces();
  if (work) rmSync(work, { recursive: true, force: true });
});

interface GuestNic {
  name: string;
  hwAddr: string;
  mtu: number;
  IPAddresses: Array<{ address: string }>;
}

function guestNics(setup: HotplugGuest): GuestNic[] {
  return JSON.parse(vcnet(['list-ifaces', setup.sandbox, '--state-dir', setup.stateDir, '--json']).stdout);
}

function guestRoutes(setup: HotplugGuest): Array<{ dest: string; gateway: string; device: string }> {
  return JSON.parse(vcnet(['list-routes', setup.sandbox, '--state-dir', setup.stateDir, '--json']).stdout);
}

function recordedEndpoints(setup: HotplugGuest): EndpointState[] {
  const state = JSON.parse(readFileSync(join(setup.stateDir, setup.sandbox, 'state.json'), 'utf8'));
  return state.network.endpoints;
}

/** CNI ADD: pod link eth9 (MAC `mac`, `<subnet>.<host>/24`), its peer veth9 in the node namespace at `<subnet>.1`. */
function addPodLink(setup: HotplugGuest, mac: string, address: string): void {
  setup.node.exec('ip', [
    ...['link', 'add', 'veth9', 'type', 'veth'],
    ...['peer', 'name', 'eth9', 'address', mac, 'netns', setup.pod.name],
  ]);
  setup.node.exec('ip', ['addr', 'add', '10.209.0.1/24', 'dev', 'veth9']);
  setup.node.exec('ip', ['link', 'set', 'veth9', 'up']);
  setup.pod.exec('ip', ['link', 'set', 'eth9', 'up']);
  setup.pod.exec('ip', ['addr', 'add', `${address}/24`, 'dev', 'eth9']);
}

/** Watches in this process; `applied` collects its change sets. */
async function startWatch(setup: HotplugGuest, applied: WatchSummary[]): Promise<SandboxWatch> {
  return watchSandbox(setup.sandbox, {
    stateDirectory: setup.stateDir,
    debounceMs: 100,
    onApplied: (summary) => applied.push(summary),
    onError: (error) => console.log(`watch: ${error.message}`),
  });
}

/**
 * Starts a watch, runs `change` (if any), waits until its change sets satisfy `done`, and stops it.
 */
async function watchUntil(
  setup: HotplugGuest,
  done: (applied: WatchSummary[]) => boolean,
  what: string,
  change: () => void = () => {},
): Promise<void> {
  const applied: WatchSummary[] = [];
  const watching = await startWatch(setup, applied);
  try {
    change();
    await until(() => done(applied), what, 60_000, 200);
  } finally {
    await watching.stop();
  }
}

/** Whether some change set of `applied` lists `name` in `field`. */
const some = (applied: WatchSummary[], field: 'added' | 'removed' | 'updated', name: string) =>
  applied.some((summary) => summary[field].includes(name));

/** A watch hot-plugs eth9 (MAC `mac` at `address`), and the guest answers there; the watch is stopped after. */
async function hotplugEth9(setup: HotplugGuest, mac: string, address: string): Promise<void> {
  await watchUntil(
    setup,
    (applied) => some(applied, 'added', 'eth9'),
    'watch hot-plugged eth9',
    () => addPodLink(setup, mac, address),
  );
  await until(
    () => guestNics(setup).some((nic) => nic.name === 'eth9' && nic.IPAddresses.some((a) => a.address === address)),
    `the guest to have eth9 with ${address}`,
    60_000,
    500,
  );
  expect(pingFrom(setup.node.name, address)).toContain(' 0% packet loss');
}

describe.skipIf(unavailable !== undefined)('a watch that starts again, with a running VM', () => {
  it('applies a pod link deleted, a route added and an MTU changed while no watch ran', {
    timeout: 300_000,
  }, async () => {
    work = mkdtempSync(join(tmpdir(), 'vcnet-ws-'));
    const setup = await attachAndBootGuest(work, { sandbox: 'ws1' });
    const { guest, pod } = setup;
    try {
      await hotplugEth9(setup, '02:00:ca:fe:09:02', '10.209.0.2');
      const eth9Tap = recordedEndpoints(setup).find((endpoint) => endpoint.properties.link.name === 'eth9')?.plumbing
        ?.tapName as string;
      expect(pod.exec('ip', ['link', 'show', eth9Tap])).toContain(eth9Tap);

      // While no watch runs: CNI DEL of eth9, a route added, eth0's MTU lowered.
      pod.exec('ip', ['link', 'del', 'eth9']);
      pod.exec('ip', ['route', 'add', '10.123.0.0/16', 'via', '10.200.0.1']);
      pod.exec('ip', ['link', 'set', 'eth0', 'mtu', '1400']);

      await watchUntil(
        setup,
        (applied) => some(applied, 'removed', 'eth9') && some(applied, 'updated', 'eth0'),
        'the watch to remove eth9 and update eth0',
      );
      expect(recordedEndpoints(setup).map((endpoint) => endpoint.properties.link.name)).toEqual(['eth0']);
      expect(pod.exec('ip', ['-o', 'link', 'show'])).not.toContain(eth9Tap);
      const nics = guestNics(setup);
      expect(nics.map((nic) => nic.name)).not.toContain('eth9');
      expect(nics.find((nic) => nic.name === 'eth0')?.mtu).toBe(1400);
      expect(guestRoutes(setup)).toContainEqual(
        expect.objectContaining({ dest: '10.123.0.0/16', gateway: '10.200.0.1', device: 'eth0' }),
      );

      // Started again with nothing changed: nothing to apply (the record and the pod agree).
      const idle: WatchSummary[] = [];
      const again = await startWatch(setup, idle);
      await new Promise((resolve) => setTimeout(resolve, 2000));
      await again.stop({ applyPending: true });
      expect(idle).toEqual([]);
    } finally {
      await guest.kill();
    }
  });

  it('replaces an endpoint whose pod link was made again under its name while no watch ran', {
    timeout: 300_000,
  }, async () => {
    work = mkdtempSync(join(tmpdir(), 'vcnet-ws-'));
    const setup = await attachAndBootGuest(work, { sandbox: 'ws2' });
    const { guest, pod, node } = setup;
    try {
      await hotplugEth9(setup, '02:00:ca:fe:09:02', '10.209.0.2');
      const old = recordedEndpoints(setup).find((endpoint) => endpoint.properties.link.name === 'eth9');
      const oldTap = old?.plumbing?.tapName as string;

      // While no watch runs: CNI DEL and ADD again, a new veth under the same name, new MAC and address.
      pod.exec('ip', ['link', 'del', 'eth9']);
      addPodLink(setup, '02:00:ca:fe:09:07', '10.209.0.7');
      const newIndex = pod.ipJson<Array<{ ifindex: number }>>('link', 'show', 'eth9')[0]?.ifindex;
      expect(newIndex).not.toBe(old?.properties.link.index);

      await watchUntil(
        setup,
        (applied) => some(applied, 'removed', 'eth9') && some(applied, 'added', 'eth9'),
        'the watch to replace eth9',
      );
      const now = recordedEndpoints(setup).find((endpoint) => endpoint.properties.link.name === 'eth9');
      expect(now?.properties.link.index).toBe(newIndex);
      const newTap = now?.plumbing?.tapName as string;
      // The old tap is gone (a new one may reuse its name: then it is another link).
      const taps = pod.ipJson<Array<{ ifname: string; ifindex: number }>>('link', 'show');
      expect(taps.filter((link) => link.ifindex === old?.plumbing?.tapIndex && link.ifname === oldTap)).toEqual([]);
      expect(taps.map((link) => link.ifname)).toContain(newTap);
      await until(
        () =>
          guestNics(setup).some(
            (nic) =>
              nic.name === 'eth9' &&
              nic.hwAddr.toLowerCase() === '02:00:ca:fe:09:07' &&
              nic.IPAddresses.some((address) => address.address === '10.209.0.7'),
          ),
        'the guest to have eth9 with the new MAC and 10.209.0.7',
        60_000,
        500,
      );
      expect(pingFrom(node.name, '10.209.0.7')).toContain(' 0% packet loss');
    } finally {
      await guest.kill();
    }
  });
});
