/**
 * An IPv6-only pod on a booted guest, hot-plug through the CLI as Kata's runtime drives it: the boot
 * NIC IPv6-only (its default route through the node's fd00:240::1), then CNI adds eth9, IPv6-only
 * too, and `vcnet add-iface` plugs net9 with Kata's JSON for an IPv6 address (family 1). The guest
 * gets the address, answers the node over it, and keeps its boot NIC's default route (the route set
 * the agent is given is the whole of it); `vcnet del-iface` takes net9 away; detach leaves the pod
 * as it was.
 */

import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { vcnet } from '../helpers/cli.js';
import { guestUnavailableReason, runOnConsole } from '../helpers/guest.js';
import { attachAndBootGuest, listedInterfaces, writeRequest } from '../helpers/hotplug-guest.js';
import { cleanupNamespaces, type TestNamespace } from '../helpers/namespace.js';
import { fingerprint } from '../helpers/pod.js';

const unavailable = guestUnavailableReason();
if (unavailable) console.log(`skip IPv6-only add-iface VM test: ${unavailable}`);

let work: string | undefined;

afterEach(() => {
  cleanupNamespaces();
  if (work) rmSync(work, { recursive: true, force: true });
  work = undefined;
});

/** makePod()'s pod without any IPv4: eth0 fd00:240::2/64, default route through the node's fd00:240::1. */
function ipv6Only({ pod, node }: { pod: TestNamespace; node: TestNamespace }): void {
  node.exec('ip', ['-4', 'addr', 'flush', 'dev', 'veth0']);
  node.exec('ip', ['addr', 'add', 'fd00:240::1/64', 'dev', 'veth0', 'nodad']);
  pod.exec('ip', ['-4', 'route', 'flush', 'table', 'main']);
  pod.exec('ip', ['-4', 'neigh', 'flush', 'dev', 'eth0', 'nud', 'all']);
  pod.exec('ip', ['addr', 'flush', 'dev', 'eth0', 'scope', 'global']);
  pod.exec('ip', ['addr', 'add', 'fd00:240::2/64', 'dev', 'eth0', 'nodad']);
  pod.exec('ip', ['-6', 'route', 'add', 'default', 'via', 'fd00:240::1', 'dev', 'eth0']);
}

/** ping -6 from `node` from an empty neighbour cache on `device`, up to five rounds until one loses nothing. */
function ping6(node: TestNamespace, device: string, address: string): string {
  node.exec('ip', ['-6', 'neigh', 'flush', 'dev', device]);
  let output = '';
  for (let attempt = 0; attempt < 5 && !output.includes(' 0% packet loss'); attempt++) {
    try {
      output = execFileSync(
        'ip',
        ['netns', 'exec', node.name, 'ping', '-6', '-c', '3', '-i', '0.3', '-W', '3', address],
        { encoding: 'utf8' },
      );
    } catch (error) {
      output = String((error as { stdout?: string }).stdout ?? '');
    }
  }
  return output;
}

describe.skipIf(unavailable !== undefined)('an IPv6-only pod, a NIC hot-plugged through vcnet add-iface', () => {
  it('the guest takes the IPv6 address of the request, answers over it, keeps its default route; del-iface and detach leave the pod as it was', {
    timeout: 300_000,
  }, async () => {
    work = mkdtempSync(join(tmpdir(), 'vcnet-v6add-'));
    const setup = await attachAndBootGuest(work, { sandbox: 'v6add', beforeAttach: ipv6Only });
    const { guest, pod, node, stateDir, sandbox } = setup;
    try {
      expect(ping6(node, 'veth0', 'fd00:240::2')).toContain(' 0% packet loss');

      node.exec('ip', ['link', 'add', 'veth9', 'type', 'veth', 'peer', 'name', 'eth9', 'netns', pod.name]);
      node.exec('ip', ['addr', 'add', 'fd00:249::1/64', 'dev', 'veth9', 'nodad']);
      node.exec('ip', ['link', 'set', 'veth9', 'up']);
      pod.exec('ip', ['link', 'set', 'eth9', 'up']);
      pod.exec('ip', ['addr', 'add', 'fd00:249::2/64', 'dev', 'eth9', 'nodad']);
      const request = writeRequest(work, 'add.json', {
        device: 'eth9',
        name: 'net9',
        IPAddresses: [{ family: 1, address: 'fd00:249::2', mask: '64' }],
      });
      const added = vcnet(['add-iface', sandbox, request, '--state-dir', stateDir]);
      expect(added.status, added.stderr).toBe(0);
      expect(
        listedInterfaces(setup)
          .find((entry) => entry.name === 'net9')
          ?.IPAddresses.map((address) => address.address),
      ).toContain('fd00:249::2');
      expect(ping6(node, 'veth9', 'fd00:249::2')).toContain(' 0% packet loss');
      expect((await runOnConsole(guest, 'ip -6 route show default')).join('\n')).toMatch(
        /default via fd00:240::1 dev eth0/,
      );
      expect(ping6(node, 'veth0', 'fd00:240::2')).toContain(' 0% packet loss');

      const removed = vcnet([
        'del-iface',
        sandbox,
        writeRequest(work, 'del.json', { name: 'net9' }),
        '--state-dir',
        stateDir,
      ]);
      expect(removed.status, removed.stderr).toBe(0);
      expect(listedInterfaces(setup).map((entry) => entry.name)).not.toContain('net9');
      expect(pod.exec('ip', ['link', 'show'])).not.toContain('tap1_kata');
    } finally {
      await guest.kill();
    }
    pod.exec('ip', ['link', 'del', 'eth9']);
    const detached = vcnet(['detach', '--sandbox', sandbox, '--state-dir', stateDir]);
    expect(detached.status, detached.stderr).toBe(0);
    expect(fingerprint(pod)).toEqual(setup.before);
  });
});
