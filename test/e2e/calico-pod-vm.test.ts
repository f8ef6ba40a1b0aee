/**
 * A pod as Calico makes it, in a booted guest: the pod's addresses alone in a /32 and a /128, IPv4's
 * gateway 169.254.1.1 reached only through a link-scope route to it (the node answers its ARP by
 * proxy), IPv6's default route through the node link's link-local address (fe80::ecee:eeff:feee:eeee,
 * from the node link's MAC ee:ee:ee:ee:ee:ee), and on the node no address on the link, only a route
 * to each pod address through it. The agent must add the link-scope route before the route through
 * it; then the guest reaches an address of the node over both families, the node reaches the guest,
 * and detach leaves the pod as it was.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { vcnet } from '../helpers/cli.js';
import { guestUnavailableReason, runOnConsole } from '../helpers/guest.js';
import { attachAndBootGuest } from '../helpers/hotplug-guest.js';
import { cleanupNamespaces, kernelSupportsLinkKind, makeNamespace, type TestNamespace } from '../helpers/namespace.js';
import { fingerprint } from '../helpers/pod.js';

const unavailable = guestUnavailableReason();
if (unavailable) console.log(`skip Calico-style pod VM test: ${unavailable}`);

const POD_IPV4 = '10.213.7.5';
const POD_IPV6 = 'fd00:213:7::5';
/** An address of the node (on its lo) the guest pings through its default routes. */
const NODE_IPV4 = '10.213.0.1';
const NODE_IPV6 = 'fd00:213::1';
/** Calico's MAC for every node end of a pod veth. */
const NODE_LINK_MAC = 'ee:ee:ee:ee:ee:ee';

let work: string | undefined;

afterEach(() => {
  cleanupNamespaces();
  if (work) rmSync(work, { recursive: true, force: true });
  work = undefined;
});

type Model = 'tcfilter' | 'macvtap';

/** makePod()'s pod and node remade as Calico leaves them; a static neighbour for the gateway when asked. */
function calicoShape({ pod, node }: { pod: TestNamespace; node: TestNamespace }, staticGateway: boolean): void {
  pod.exec('ip', ['-4', 'route', 'flush', 'table', 'main']);
  pod.exec('ip', ['-4', 'neigh', 'flush', 'dev', 'eth0', 'nud', 'all']);
  pod.exec('ip', ['addr', 'flush', 'dev', 'eth0', 'scope', 'global']);
  pod.exec('ip', ['addr', 'add', `${POD_IPV4}/32`, 'dev', 'eth0']);
  pod.exec('ip', ['addr', 'add', `${POD_IPV6}/128`, 'dev', 'eth0', 'nodad']);
  pod.exec('ip', ['route', 'add', '169.254.1.1', 'dev', 'eth0', 'scope', 'link']);
  pod.exec('ip', ['route', 'add', 'default', 'via', '169.254.1.1', 'dev', 'eth0']);
  pod.exec('ip', ['-6', 'route', 'add', 'default', 'via', 'fe80::ecee:eeff:feee:eeee', 'dev', 'eth0']);
  if (staticGateway) {
    pod.exec('ip', ['neigh', 'add', '169.254.1.1', 'lladdr', NODE_LINK_MAC, 'dev', 'eth0', 'nud', 'permanent']);
  }

  node.exec('ip', ['addr', 'flush', 'dev', 'veth0']);
  node.exec('ip', ['link', 'set', 'veth0', 'down']);
  node.exec('ip', ['link', 'set', 'veth0', 'address', NODE_LINK_MAC]);
  node.exec('ip', ['link', 'set', 'veth0', 'up']);
  // The node answers ARP for 169.254.1.1 by proxy: the kernel does so for a target it would forward
  // out of another link (forwarding on, a route to it elsewhere: Calico's node has its default route).
  // Not with the static neighbour: the guest reaches the gateway only if it got that neighbour.
  node.exec('sysctl', ['-q', '-w', 'net.ipv4.conf.all.forwarding=1']);
  if (!staticGateway) {
    node.exec('sysctl', ['-q', '-w', 'net.ipv4.conf.veth0.proxy_arp=1', 'net.ipv4.neigh.veth0.proxy_delay=0']);
  }
  node.exec('ip', ['route', 'add', `${POD_IPV4}/32`, 'dev', 'veth0']);
  node.exec('ip', ['-6', 'route', 'add', `${POD_IPV6}/128`, 'dev', 'veth0']);
  node.exec('ip', ['link', 'set', 'lo', 'up']);
  node.exec('ip', ['route', 'add', '169.254.1.1/32', 'dev', 'lo']);
  node.exec('ip', ['addr', 'add', `${NODE_IPV4}/32`, 'dev', 'lo']);
  node.exec('ip', ['addr', 'add', `${NODE_IPV6}/128`, 'dev', 'lo']);
}

/** ping from `namespace`, up to five rounds of three until one loses nothing; ping's last output. */
function pingFrom(namespace: TestNamespace, family: '-4' | '-6', address: string): string {
  let output = '';
  for (let attempt = 0; attempt < 5 && !output.includes(' 0% packet loss'); attempt++) {
    try {
      output = execFileSync(
        'ip',
        ['netns', 'exec', namespace.name, 'ping', family, '-c', '3', '-i', '0.3', '-W', '3', address],
        { encoding: 'utf8' },
      );
    } catch (error) {
      output = String((error as { stdout?: string }).stdout ?? '');
    }
  }
  return output;
}

describe.skipIf(unavailable !== undefined)('a Calico-style pod in a booted guest', () => {
  it.for<{ model: Model; staticGateway: boolean }>([
    { model: 'tcfilter', staticGateway: false },
    { model: 'macvtap', staticGateway: false },
    { model: 'macvtap', staticGateway: true },
  ])(
    '$model, static gateway neighbour $staticGateway: the guest gets the /32 and /128, the link-scope gateway route before the route through it, and traffic flows both ways',
    {
      timeout: 300_000,
    },
    async ({ model, staticGateway }, context) => {
      work = mkdtempSync(join(tmpdir(), 'vcnet-calicovm-'));
      if (model === 'macvtap') {
        const probe = makeNamespace('mvtprobe');
        probe.exec('ip', ['link', 'add', 'probe0', 'type', 'veth', 'peer', 'name', 'probe1']);
        const supported = kernelSupportsLinkKind(probe, 'macvtap', ['link', 'probe0']);
        if (!supported.ok) {
          console.log(`skip Calico-style pod VM test with macvtap: ${supported.reason}`);
          context.skip();
        }
      }
      const setup = await attachAndBootGuest(work, {
        sandbox: 'calico',
        pushBootNetwork: false,
        attachArgs: ['--model', model],
        beforeAttach: (fixture) => calicoShape(fixture, staticGateway),
      });
      const { guest, pod, node, stateDir } = setup;
      try {
        if (model === 'macvtap') {
          // The guest NIC holds the pod's MAC and addresses now; the pod link keeps neither.
          const [eth0] = pod.ipJson<Array<{ address: string; addr_info: unknown[] }>>('address', 'show', 'eth0');
          expect(eth0?.addr_info).toEqual([]);
          expect(setup.attached.interfaces[0]?.hwAddr).not.toBe(eth0?.address);
          expect(pod.exec('ip', ['-d', 'link', 'show', 'tap0_kata'])).toMatch(/macvtap mode bridge/);
        }
        const configured = vcnet([
          'configure-guest',
          '--sandbox',
          'calico',
          '--state-dir',
          stateDir,
          '--timeout',
          '90000',
        ]);
        expect(configured.status, configured.stderr).toBe(0);
        const addresses = (await runOnConsole(guest, 'ip addr show dev eth0')).join('\n');
        expect(addresses).toContain(`inet ${POD_IPV4}/32`);
        expect(addresses).toContain(`inet6 ${POD_IPV6}/128`);
        const routes = (await runOnConsole(guest, 'ip route show; ip -6 route show')).join('\n');
        expect(routes).toMatch(/default via 169\.254\.1\.1 dev eth0/);
        expect(routes).toMatch(/169\.254\.1\.1 dev eth0 .*scope link/);
        expect(routes).toMatch(/default via fe80::ecee:eeff:feee:eeee dev eth0/);
        if (staticGateway) {
          expect((await runOnConsole(guest, 'ip neigh show 169.254.1.1')).join('\n')).toMatch(
            new RegExp(`169\\.254\\.1\\.1 dev eth0 lladdr ${NODE_LINK_MAC} .*PERMANENT`),
          );
        }

        // From the guest through each default route to an address of the node, from empty neighbour caches.
        const fromGuest = async (family: '-4' | '-6', address: string) =>
          (await runOnConsole(guest, `ping ${family} -c 3 -W 3 ${address} 2>&1`, 60_000)).join('\n');
        expect(await fromGuest('-4', NODE_IPV4)).toMatch(/ 0% packet loss/);
        expect(await fromGuest('-6', NODE_IPV6)).toMatch(/ 0% packet loss/);
        // From the node to the guest through its routes to the pod addresses.
        node.exec('ip', ['neigh', 'flush', 'dev', 'veth0']);
        expect(pingFrom(node, '-4', POD_IPV4)).toContain(' 0% packet loss');
        expect(pingFrom(node, '-6', POD_IPV6)).toContain(' 0% packet loss');
        if (staticGateway) {
          // Nothing else resolves the gateway: without the neighbour the guest's ARP goes unanswered.
          await runOnConsole(guest, 'ip neigh flush dev eth0 nud permanent');
          const without = (
            await runOnConsole(guest, `ping -4 -c 1 -W 3 ${NODE_IPV4} 2>&1; ip neigh show 169.254.1.1`, 60_000)
          ).join('\n');
          expect(without).toMatch(/100% packet loss/);
          expect(without).not.toMatch(/PERMANENT/);
        }
      } finally {
        await guest.kill();
      }
      const detached = vcnet(['detach', '--sandbox', 'calico', '--state-dir', stateDir]);
      expect(detached.status, detached.stderr).toBe(0);
      expect(fingerprint(pod)).toEqual(setup.before);
    },
  );
});
