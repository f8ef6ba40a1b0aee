/**
 * A jumbo-frame pod (MTU 9000 on the pod link and its node peer) attached with both of Kata's rate
 * limits (rx_rate_limiter_max_rate, towards the VM; tx_rate_limiter_max_rate, from the VM), with the
 * tcfilter model and with the macvtap model (whose rx limit is an htb on an ifb), in a booted guest: the
 * agent gives the guest's NIC MTU 9000, an IPv4 packet of 9000 bytes that may not be fragmented
 * crosses between the node namespace and the guest both ways, and iperf3 measures each direction
 * below its own limit. The same run then raises both htb classes far above the limits and measures
 * again: the guest must exceed the limits there, or the first numbers proved nothing. Detach leaves
 * the pod as it was.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { vcnet } from '../helpers/cli.js';
import { guestUnavailableReason, runOnConsole } from '../helpers/guest.js';
import { attachAndBootGuest } from '../helpers/hotplug-guest.js';
import { cleanupNamespaces, kernelSupportsLinkKind, makeNamespace, type TestNamespace } from '../helpers/namespace.js';
import { fingerprint } from '../helpers/pod.js';
import { htbClasses, htbRate, iperf, mbps, raiseHtbClasses } from '../helpers/rate-limit.js';

const unavailable = guestUnavailableReason();
if (unavailable) console.log(`skip jumbo-frame rate-limited guest VM test: ${unavailable}`);

const JUMBO_MTU = 9000;
/** The largest ICMP payload an IPv4 packet of 9000 bytes holds (9000 - 20 - 8). */
const LARGEST_PAYLOAD = JUMBO_MTU - 28;
/** Towards the VM, bits/s. Low enough that a TCG guest on a busy machine still goes faster unlimited. */
const RX_RATE = 16_000_000;
/** From the VM, bits/s: twice rx, so a limit put on the wrong direction shows. */
const TX_RATE = 32_000_000;
/** htb lets a burst through on top of the rate; a measured rate above this is a limit that does not hold. */
const MARGIN = 1.1;

type Model = 'tcfilter' | 'macvtap';

let work: string | undefined;

afterEach(() => {
  cleanupNamespaces();
  if (work) rmSync(work, { recursive: true, force: true });
  work = undefined;
});

function makeJumbo({ pod, node }: { pod: TestNamespace; node: TestNamespace }): void {
  node.exec('ip', ['link', 'set', 'veth0', 'mtu', String(JUMBO_MTU)]);
  pod.exec('ip', ['link', 'set', 'eth0', 'mtu', String(JUMBO_MTU)]);
}

/** ping -4 with the largest payload, fragmenting forbidden: up to five rounds until one loses nothing; its last output. */
function largePingFrom(namespace: string, address: string): string {
  let output = '';
  for (let attempt = 0; attempt < 5 && !output.includes(' 0% packet loss'); attempt++) {
    try {
      output = execFileSync(
        'ip',
        [
          ...['netns', 'exec', namespace, 'ping', '-4', '-c', '3', '-i', '0.3', '-W', '3'],
          ...['-s', String(LARGEST_PAYLOAD), '-M', 'do', address],
        ],
        { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] },
      );
    } catch (error) {
      output = String((error as { stdout?: string }).stdout ?? '');
      output += String((error as { stderr?: string }).stderr ?? '');
    }
  }
  return output;
}

describe.skipIf(unavailable !== undefined)('a jumbo-frame pod with rx and tx rate limits in a booted guest', () => {
  it.for<{ model: Model; rxDevice: string; txDevice: string }>([
    // Where concepts.md says the trees go: tcfilter rx on the tap, tx on the pod link; macvtap tx on
    // the macvtap (the VM's writes leave through its egress), rx on an ifb its ingress is redirected to.
    { model: 'tcfilter', rxDevice: 'tap0_kata', txDevice: 'eth0' },
    { model: 'macvtap', rxDevice: 'ifb0_kata', txDevice: 'tap0_kata' },
  ])(
    '$model: the guest NIC gets MTU 9000, 9000-byte packets cross unfragmented both ways, and each direction stays under its limit',
    {
      timeout: 420_000,
    },
    async ({ model, rxDevice, txDevice }, context) => {
      if (model === 'macvtap') {
        const probe = makeNamespace('mvtprobe');
        probe.exec('ip', ['link', 'add', 'probe0', 'type', 'veth', 'peer', 'name', 'probe1']);
        const supported = kernelSupportsLinkKind(probe, 'macvtap', ['link', 'probe0']);
        if (!supported.ok) {
          console.log(`skip jumbo-frame rate-limited guest VM test with macvtap: ${supported.reason}`);
          context.skip();
        }
      }
      work = mkdtempSync(join(tmpdir(), 'vcnet-jumborate-'));
      const config = join(work, 'configuration.toml');
      writeFileSync(
        config,
        `[hypervisor.qemu]\nrx_rate_limiter_max_rate = ${RX_RATE}\ntx_rate_limiter_max_rate = ${TX_RATE}\n`,
      );
      const setup = await attachAndBootGuest(work, {
        sandbox: 'jumborate',
        pushBootNetwork: false,
        attachArgs: ['--config', config, '--model', model],
        beforeAttach: makeJumbo,
      });
      const { guest, pod, node, stateDir, attached } = setup;
      try {
        expect(attached.interfaces[0]).toMatchObject({ mtu: JUMBO_MTU });
        const [tap] = pod.ipJson<Array<{ mtu: number }>>('link', 'show', 'tap0_kata');
        expect(tap?.mtu).toBe(JUMBO_MTU);
        const rx = htbRate(RX_RATE);
        const tx = htbRate(TX_RATE);
        expect(htbClasses(pod, rxDevice)).toEqual({ '1:1': rx, '1:2': rx });
        expect(htbClasses(pod, txDevice)).toEqual({ '1:1': tx, '1:2': tx });

        const configured = vcnet([
          ...['configure-guest', '--sandbox', 'jumborate', '--state-dir', stateDir, '--timeout', '90000'],
        ]);
        expect(configured.status, configured.stderr).toBe(0);
        expect((await runOnConsole(guest, 'ip link show dev eth0')).join('\n')).toMatch(
          new RegExp(`mtu ${JUMBO_MTU} `),
        );

        // Node to guest: 9000 bytes with DF, from an empty neighbour cache.
        node.exec('ip', ['neigh', 'flush', 'dev', 'veth0']);
        expect(largePingFrom(node.name, '10.200.0.2')).toContain(' 0% packet loss');
        // Guest to node. Busybox ping cannot set DF: the proof that nothing was fragmented is the two
        // kernels' counters, none made, none put together.
        const fromGuest = (
          await runOnConsole(guest, `ping -c 3 -W 3 -s ${LARGEST_PAYLOAD} 10.200.0.1 2>&1`, 60_000)
        ).join('\n');
        expect(fromGuest).toMatch(/ 0% packet loss/);
        const ipCounter = (snmp: string, name: string) => {
          const [header, values] = snmp.split('\n').filter((line) => line.startsWith('Ip: '));
          const at = header?.split(/\s+/).indexOf(name) ?? -1;
          return at < 1 ? Number.NaN : Number(values?.split(/\s+/)[at]);
        };
        const guestSnmp = (await runOnConsole(guest, 'cat /proc/net/snmp')).join('\n');
        const nodeSnmp = node.exec('cat', ['/proc/net/snmp']);
        for (const snmp of [guestSnmp, nodeSnmp]) {
          expect(ipCounter(snmp, 'FragCreates')).toBe(0);
          expect(ipCounter(snmp, 'ReasmReqds')).toBe(0);
        }

        await runOnConsole(guest, 'iperf3 -s -D');
        const limited = {
          toGuest: iperf(node.name, '10.200.0.2', false),
          fromGuest: iperf(node.name, '10.200.0.2', true),
        };
        // Unlimited, in the same run: the classes of both trees raised far above the limits.
        raiseHtbClasses(pod, [rxDevice, txDevice]);
        const unlimited = {
          toGuest: iperf(node.name, '10.200.0.2', false),
          fromGuest: iperf(node.name, '10.200.0.2', true),
        };
        console.log(
          `jumbo rate limit, ${model}: towards the guest ${mbps(limited.toGuest)} (rx limit ${mbps(RX_RATE)}; unlimited ${mbps(unlimited.toGuest)}), ` +
            `from the guest ${mbps(limited.fromGuest)} (tx limit ${mbps(TX_RATE)}; unlimited ${mbps(unlimited.fromGuest)})`,
        );
        // Each direction under its own limit...
        expect(limited.toGuest).toBeLessThan(RX_RATE * MARGIN);
        expect(limited.fromGuest).toBeLessThan(TX_RATE * MARGIN);
        // ...where the guest goes faster without it: else the limits were never tested.
        expect(unlimited.toGuest, 'TCG too slow to exceed the rx limit: lower RX_RATE').toBeGreaterThan(RX_RATE * 1.5);
        expect(unlimited.fromGuest, 'TCG too slow to exceed the tx limit: lower TX_RATE').toBeGreaterThan(
          TX_RATE * 1.5,
        );
        // rx does not limit the guest's sending: the tx limit, twice as high, does.
        expect(limited.fromGuest).toBeGreaterThan(RX_RATE * MARGIN);
      } finally {
        await guest.kill();
      }
      const detached = vcnet(['detach', '--sandbox', 'jumborate', '--state-dir', stateDir]);
      expect(detached.status, detached.stderr).toBe(0);
      expect(fingerprint(pod)).toEqual(setup.before);
    },
  );
});
