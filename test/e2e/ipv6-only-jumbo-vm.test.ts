/**
 * A pod as an IPv6-only cluster on a jumbo-frame network leaves it (no IPv4 address, route or
 * neighbour at all; MTU 9000 on the pod link and its node peer), in a booted guest: the agent gives the
 * guest its IPv6 address, its default route and the pod link's MTU, and a large packet that may not be
 * fragmented (ping -s 8000 -M do) crosses the plumbing both ways between the node namespace and the
 * guest. Detach leaves the pod as it was.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { vcnet } from '../helpers/cli.js';
import { guestUnavailableReason, runOnConsole } from '../helpers/guest.js';
import { attachAndBootGuest } from '../helpers/hotplug-guest.js';
import { cleanupNamespaces, type TestNamespace } from '../helpers/namespace.js';
import { fingerprint } from '../helpers/pod.js';

const unavailable = guestUnavailableReason();
if (unavailable) console.log(`skip IPv6-only jumbo-frame guest VM test: ${unavailable}`);

const JUMBO_MTU = 9000;
/** An ICMPv6 payload that needs the jumbo MTU (8000 + 8 + 40 > 1500) and fits in it. */
const LARGE_PAYLOAD = 8000;

let work: string | undefined;

afterEach(() => {
  cleanupNamespaces();
  if (work) rmSync(work, { recursive: true, force: true });
  work = undefined;
});

/** makePod()'s pod without any IPv4: only fd00:200::2/64 and a default route through the node's fd00:200::1. */
function makeIpv6OnlyJumbo({ pod, node }: { pod: TestNamespace; node: TestNamespace }): void {
  node.exec('ip', ['link', 'set', 'veth0', 'mtu', String(JUMBO_MTU)]);
  node.exec('ip', ['-4', 'addr', 'flush', 'dev', 'veth0']);
  node.exec('ip', ['addr', 'add', 'fd00:200::1/64', 'dev', 'veth0', 'nodad']);
  pod.exec('ip', ['link', 'set', 'eth0', 'mtu', String(JUMBO_MTU)]);
  pod.exec('ip', ['-4', 'route', 'flush', 'table', 'main']);
  pod.exec('ip', ['-4', 'neigh', 'flush', 'dev', 'eth0', 'nud', 'all']);
  pod.exec('ip', ['-4', 'addr', 'flush', 'dev', 'eth0']);
  pod.exec('ip', ['-6', 'route', 'add', 'default', 'via', 'fd00:200::1', 'dev', 'eth0']);
}

/** ping -6 with a payload that may not be fragmented: up to five rounds until one loses nothing; ping's last output. */
function largePingFrom(namespace: string, address: string): string {
  let output = '';
  for (let attempt = 0; attempt < 5 && !output.includes(' 0% packet loss'); attempt++) {
    try {
      output = execFileSync(
        'ip',
        [
          ...['netns', 'exec', namespace, 'ping', '-6', '-c', '3', '-i', '0.3', '-W', '3'],
          ...['-s', String(LARGE_PAYLOAD), '-M', 'do', address],
        ],
        { encoding: 'utf8' },
      );
    } catch (error) {
      output = String((error as { stdout?: string; stderr?: string }).stdout ?? '');
      output += String((error as { stderr?: string }).stderr ?? '');
    }
  }
  return output;
}

describe.skipIf(unavailable !== undefined)('an IPv6-only pod at MTU 9000 in a booted guest', () => {
  it('the guest gets its IPv6 address, default route and MTU 9000, and 8000-byte unfragmented pings cross both ways', {
    timeout: 300_000,
  }, async () => {
    work = mkdtempSync(join(tmpdir(), 'vcnet-v6jumbo-'));
    const setup = await attachAndBootGuest(work, {
      sandbox: 'v6jumbo',
      pushBootNetwork: false,
      beforeAttach: makeIpv6OnlyJumbo,
    });
    const { guest, pod, node, stateDir, attached } = setup;
    try {
      expect(pod.exec('ip', ['-4', 'addr', 'show'])).not.toMatch(/inet /);
      expect(attached.interfaces[0]).toMatchObject({ mtu: JUMBO_MTU });
      // The pod side of the plumbing carries the jumbo frames too.
      const [tap] = pod.ipJson<Array<{ mtu: number }>>('link', 'show', 'tap0_kata');
      expect(tap?.mtu).toBe(JUMBO_MTU);

      const configured = vcnet([
        ...['configure-guest', '--sandbox', 'v6jumbo', '--state-dir', stateDir, '--timeout', '90000'],
      ]);
      expect(configured.status, configured.stderr).toBe(0);
      const link = (await runOnConsole(guest, 'ip -6 addr show dev eth0; ip link show dev eth0')).join('\n');
      expect(link).toMatch(/inet6 fd00:200::2\/64/);
      expect(link).toMatch(new RegExp(`mtu ${JUMBO_MTU} `));
      expect((await runOnConsole(guest, 'ip -4 addr show dev eth0')).join('\n')).not.toMatch(/inet /);
      expect((await runOnConsole(guest, 'ip -6 route show default')).join('\n')).toMatch(
        /default via fd00:200::1 dev eth0/,
      );

      // From an empty neighbour cache: neighbour discovery through the plumbing first, then the large packets.
      node.exec('ip', ['-6', 'neigh', 'flush', 'dev', 'veth0']);
      expect(largePingFrom(node.name, 'fd00:200::2')).toContain(' 0% packet loss');
      // And from the guest to the node. Busybox ping has no -M do, and IPv6 lets a sender fragment:
      // the proof that nothing was fragmented is the two kernels' counters, none made, none put together.
      const fromGuest = (
        await runOnConsole(guest, `ping -6 -c 3 -W 3 -s ${LARGE_PAYLOAD} fd00:200::1 2>&1`, 60_000)
      ).join('\n');
      expect(fromGuest).toMatch(/ 0% packet loss/);
      const counter = (text: string, name: string) => Number(new RegExp(`^${name}\\s+(\\d+)`, 'm').exec(text)?.[1]);
      const guestCounters = (await runOnConsole(guest, 'cat /proc/net/snmp6')).join('\n');
      expect(counter(guestCounters, 'Ip6FragCreates')).toBe(0);
      expect(counter(guestCounters, 'Ip6ReasmReqds')).toBe(0);
      const nodeCounters = node.exec('cat', ['/proc/net/snmp6']);
      expect(counter(nodeCounters, 'Ip6FragCreates')).toBe(0);
      expect(counter(nodeCounters, 'Ip6ReasmReqds')).toBe(0);
    } finally {
      await guest.kill();
    }
    const detached = vcnet(['detach', '--sandbox', 'v6jumbo', '--state-dir', stateDir]);
    expect(detached.status, detached.stderr).toBe(0);
    expect(fingerprint(pod)).toEqual(setup.before);
  });
});
