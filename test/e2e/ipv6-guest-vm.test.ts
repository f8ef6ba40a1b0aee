/**
 * IPv6 in a booted guest, with DAD on as a real guest kernel has it: the pod has an IPv6 address and a
 * route whose `src` is that address (as the ptp CNI plugin writes them). The agent must add the guest's
 * IPv6 addresses usable at once (Kata's agent adds them with IFA_F_NODAD): a tentative address makes the
 * kernel refuse the route ("Invalid source address") and the whole push failed. Then the node reaches
 * the guest over IPv6 from an empty neighbour cache (neighbour discovery through the plumbing), and
 * detach leaves the pod as it was.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { vcnet } from '../helpers/cli.js';
import { guestUnavailableReason, pingFrom, runOnConsole } from '../helpers/guest.js';
import { attachAndBootGuest } from '../helpers/hotplug-guest.js';
import { cleanupNamespaces } from '../helpers/namespace.js';
import { fingerprint } from '../helpers/pod.js';

const unavailable = guestUnavailableReason();
if (unavailable) console.log(`skip IPv6 guest VM test: ${unavailable}`);

let work: string | undefined;

afterEach(() => {
  cleanupNamespaces();
  if (work) rmSync(work, { recursive: true, force: true });
  work = undefined;
});

describe.skipIf(unavailable !== undefined)('IPv6 in a booted guest', () => {
  it('the guest takes an IPv6 address and a route with it as src at once, and answers the node over IPv6', {
    timeout: 300_000,
  }, async () => {
    work = mkdtempSync(join(tmpdir(), 'vcnet-v6vm-'));
    const setup = await attachAndBootGuest(work, {
      sandbox: 'v6',
      pushBootNetwork: false,
      // The pod gets its ptp-style route before attach, so the attach records and pushes it.
      beforeAttach: ({ pod, node }) => {
        node.exec('ip', ['addr', 'add', 'fd00:200::1/64', 'dev', 'veth0', 'nodad']);
        pod.exec('ip', ['-6', 'route', 'add', 'fd00:300::/64', 'via', 'fd00:200::1', 'src', 'fd00:200::2']);
      },
    });
    const { guest, pod, node, stateDir } = setup;
    try {
      // configure-guest waits for the agent, then pushes interfaces, routes and neighbours.
      const configured = vcnet(['configure-guest', '--sandbox', 'v6', '--state-dir', stateDir, '--timeout', '90000']);
      expect(configured.status, configured.stderr).toBe(0);
      // The guest kernel did DAD (the shell is up once the agent answered): what made the push fail before.
      expect((await runOnConsole(guest, 'cat /proc/sys/net/ipv6/conf/eth0/accept_dad')).join('\n')).toMatch(/^[12]$/m);
      const routes = (await runOnConsole(guest, 'ip -6 route show')).join('\n');
      expect(routes).toMatch(/fd00:300::\/64 via fd00:200::1 dev eth0.*src fd00:200::2/);
      // From an empty neighbour cache: the node must resolve the guest's address through the plumbing.
      node.exec('ip', ['-6', 'neigh', 'flush', 'dev', 'veth0']);
      expect(pingFrom(node.name, 'fd00:200::2')).toContain(' 0% packet loss');
    } finally {
      await guest.kill();
    }
    expect(vcnet(['detach', '--sandbox', 'v6', '--state-dir', stateDir]).status).toBe(0);
    expect(fingerprint(pod)).toEqual(setup.before);
  });
});
