/**
 * A pod link without carrier when the VM starts (its node end still down, as a CNI whose host side
 * comes up late leaves it): the attach records its addresses and routes (the kernel keeps them,
 * marked linkdown), the guest is configured with them, and once the node end comes up traffic flows
 * to the guest with nothing re-attached. Detach leaves the pod as it was.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { vcnet } from '../helpers/cli.js';
import { guestUnavailableReason, pingFrom, runOnConsole } from '../helpers/guest.js';
import { attachAndBootGuest } from '../helpers/hotplug-guest.js';
import { cleanupNamespaces, type TestNamespace } from '../helpers/namespace.js';
import { fingerprint } from '../helpers/pod.js';

const unavailable = guestUnavailableReason();
if (unavailable) console.log(`skip no-carrier pod VM test: ${unavailable}`);

let work: string | undefined;

afterEach(() => {
  cleanupNamespaces();
  if (work) rmSync(work, { recursive: true, force: true });
  work = undefined;
});

/** Waits until the kernel marks `name` without carrier and its routes linkdown (it does so asynchronously). */
function waitForNoCarrier(pod: TestNamespace, name: string): void {
  for (let attempt = 0; attempt < 50; attempt++) {
    const [link] = pod.ipJson<Array<{ flags: string[] }>>('link', 'show', name);
    const routes = pod.ipJson<Array<{ flags: string[] }>>('route', 'show', 'dev', name);
    if (link?.flags.includes('NO-CARRIER') && routes.every((route) => route.flags.includes('linkdown'))) return;
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 100);
  }
  throw new Error(`${name} still has carrier after 5 s`);
}

describe.skipIf(unavailable !== undefined)('a pod link without carrier at attach, in a booted guest', () => {
  it('the guest gets the addresses and routes, and answers the node once the node end comes up', {
    timeout: 300_000,
  }, async () => {
    work = mkdtempSync(join(tmpdir(), 'vcnet-nocarrier-'));
    const setup = await attachAndBootGuest(work, {
      sandbox: 'nocarrier',
      pushBootNetwork: false,
      beforeAttach: ({ pod, node }) => {
        node.exec('ip', ['link', 'set', 'veth0', 'down']);
        waitForNoCarrier(pod, 'eth0');
      },
    });
    const { guest, pod, node, stateDir, attached } = setup;
    try {
      expect(attached.interfaces.map((entry) => entry.IPAddresses.map((address) => address.address))).toEqual([
        expect.arrayContaining(['10.200.0.2', 'fd00:200::2']),
      ]);
      expect(attached.routes).toContainEqual(expect.objectContaining({ dest: '0.0.0.0/0', gateway: '10.200.0.1' }));
      const configured = vcnet([
        ...['configure-guest', '--sandbox', 'nocarrier', '--state-dir', stateDir, '--timeout', '90000'],
      ]);
      expect(configured.status, configured.stderr).toBe(0);
      expect((await runOnConsole(guest, 'ip route show default')).join('\n')).toMatch(/default via 10\.200\.0\.1/);

      node.exec('ip', ['link', 'set', 'veth0', 'up']);
      expect(pingFrom(node.name, '10.200.0.2')).toContain(' 0% packet loss');
    } finally {
      await guest.kill();
    }
    const detached = vcnet(['detach', '--sandbox', 'nocarrier', '--state-dir', stateDir]);
    expect(detached.status, detached.stderr).toBe(0);
    // As it was before attach, node end down too (the routes' linkdown flag follows the carrier).
    node.exec('ip', ['link', 'set', 'veth0', 'down']);
    waitForNoCarrier(pod, 'eth0');
    expect(fingerprint(pod)).toEqual(setup.before);
  });
});
