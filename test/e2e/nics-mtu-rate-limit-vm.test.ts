/**
 * One booted guest per model (tcfilter, and macvtap, whose rx limit is an htb on an ifb fed from the
 * macvtap's ingress) holding everything about MTUs and Kata's rate limits (rx_rate_limiter_max_rate
 * towards the VM, tx_rate_limiter_max_rate from it), so that each model costs one TCG boot:
 *
 * - Four pod links with four MTUs (9000, IPv6's minimum 1280, 4000, 1500): each tap or macvtap takes
 *   its pod link's MTU, the agent gives each guest NIC (found by its MAC) its own MTU, and on each a
 *   packet of exactly that MTU crosses unfragmented both ways between the node namespace and the
 *   guest. A MTU given to the wrong NIC shows: a packet larger than the pod link's MTU would be
 *   dropped by its veth, a smaller guest MTU would fragment.
 * - Both limits on every NIC's plumbing, and over the 9000 NIC iperf3 measures each direction below
 *   its own limit; the same run raises that NIC's htb classes far above the limits and measures again:
 *   the guest must exceed the limits there, or the first numbers proved nothing.
 * - A fifth NIC hot-plugged with `vcnet add-iface` gets the sandbox's limits, recorded at attach, on
 *   its own plumbing, iperf3 over it stays under each where it exceeds them raised, and del-iface
 *   takes its trees and ifb with it.
 *
 * Detach leaves the pod as it was.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { vcnet } from '../helpers/cli.js';
import { type GuestHandle, guestUnavailableReason, runOnConsole } from '../helpers/guest.js';
import { addSecondInterface, attachAndBootGuest, writeRequest } from '../helpers/hotplug-guest.js';
import { cleanupNamespaces, kernelSupportsLinkKind, makeNamespace, type TestNamespace } from '../helpers/namespace.js';
import { fingerprint } from '../helpers/pod.js';
import { htbClasses, htbRate, iperf, mbps, raiseHtbClasses } from '../helpers/rate-limit.js';

const unavailable = guestUnavailableReason();
if (unavailable) console.log(`skip four-NIC MTU and rate-limit guest VM test: ${unavailable}`);

/** eth<i>'s MTU (makePod gives eth<i> 10.20<i>.0.2/24, its node peer veth<i> 10.20<i>.0.1/24). eth0 is the jumbo NIC iperf3 measures. */
const MTUS = [9000, 1280, 4000, 1500];
/** Towards the VM, bits/s. Low enough that a TCG guest on a busy machine still goes faster unlimited. */
const RX_RATE = 16_000_000;
/** From the VM, bits/s: twice rx, so a limit put on the wrong direction shows. */
const TX_RATE = 32_000_000;
/** htb lets a burst through on top of the rate; a measured rate above this is a limit that does not hold. */
const MARGIN = 1.1;
/** The hot-plugged NIC's subnet: its node end holds .1, the guest's net9 .2. */
const PLUGGED_SUBNET = '10.209.0';
/** add-iface takes the lowest free device index: the one after the four boot NICs. */
const PLUGGED_INDEX = MTUS.length;

type Model = 'tcfilter' | 'macvtap';

/**
 * Where concepts.md says the trees of device index `index` go: tcfilter rx on the tap, tx on the pod
 * link; macvtap tx on the macvtap (the VM's writes leave through its egress), rx on an ifb its ingress
 * is redirected to.
 */
function shapedDevices(model: Model, index: number, podLink: string): { rxDevice: string; txDevice: string } {
  return model === 'tcfilter'
    ? { rxDevice: `tap${index}_kata`, txDevice: podLink }
    : { rxDevice: `ifb${index}_kata`, txDevice: `tap${index}_kata` };
}

let work: string | undefined;

afterEach(() => {
  cleanupNamespaces();
  if (work) rmSync(work, { recursive: true, force: true });
  work = undefined;
});

function setMtus({ pod, node }: { pod: TestNamespace; node: TestNamespace }): void {
  MTUS.forEach((mtu, index) => {
    node.exec('ip', ['link', 'set', `veth${index}`, 'mtu', String(mtu)]);
    pod.exec('ip', ['link', 'set', `eth${index}`, 'mtu', String(mtu)]);
  });
}

/** ping -4 of a packet of exactly `mtu` bytes that may not be fragmented: up to five rounds until one loses nothing; its last output. */
function fullSizePing(namespace: string, address: string, mtu: number): string {
  let output = '';
  for (let attempt = 0; attempt < 5 && !output.includes(' 0% packet loss'); attempt++) {
    try {
      output = execFileSync(
        'ip',
        [
          ...['netns', 'exec', namespace, 'ping', '-4', '-c', '3', '-i', '0.3', '-W', '3'],
          ...['-s', String(mtu - 28), '-M', 'do', address],
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

/** A counter of the `Ip:` lines of /proc/net/snmp. */
function ipCounter(snmp: string, name: string): number {
  const [header, values] = snmp.split('\n').filter((line) => line.startsWith('Ip: '));
  const at = header?.split(/\s+/).indexOf(name) ?? -1;
  return at < 1 ? Number.NaN : Number(values?.split(/\s+/)[at]);
}

/**
 * iperf3 both ways to `address` under the limits, then again with the htb classes on `devices`
 * raised: each direction under its own limit, where the guest goes faster without it. The guest's
 * iperf3 server must be running.
 */
function expectLimitsHold(what: string, node: TestNamespace, pod: TestNamespace, address: string, devices: string[]) {
  const limited = { toGuest: iperf(node.name, address, false), fromGuest: iperf(node.name, address, true) };
  // Unlimited, in the same run: the classes of both trees raised far above the limits.
  raiseHtbClasses(pod, devices);
  const unlimited = { toGuest: iperf(node.name, address, false), fromGuest: iperf(node.name, address, true) };
  console.log(
    `${what}: towards the guest ${mbps(limited.toGuest)} (rx limit ${mbps(RX_RATE)}; unlimited ${mbps(unlimited.toGuest)}), ` +
      `from the guest ${mbps(limited.fromGuest)} (tx limit ${mbps(TX_RATE)}; unlimited ${mbps(unlimited.fromGuest)})`,
  );
  // Each direction under its own limit...
  expect(limited.toGuest, `${what}: towards the guest`).toBeLessThan(RX_RATE * MARGIN);
  expect(limited.fromGuest, `${what}: from the guest`).toBeLessThan(TX_RATE * MARGIN);
  // ...where the guest goes faster without it: else the limits were never tested.
  expect(unlimited.toGuest, `${what}: TCG too slow to exceed the rx limit: lower RX_RATE`).toBeGreaterThan(
    RX_RATE * 1.5,
  );
  expect(unlimited.fromGuest, `${what}: TCG too slow to exceed the tx limit: lower TX_RATE`).toBeGreaterThan(
    TX_RATE * 1.5,
  );
  // rx does not limit the guest's sending: the tx limit, twice as high, does.
  expect(limited.fromGuest, `${what}: from the guest, above the rx limit`).toBeGreaterThan(RX_RATE * MARGIN);
}

/** Both htb classes on the rx device at the rx limit, on the tx device at the tx limit. */
function expectLimitTrees(pod: TestNamespace, { rxDevice, txDevice }: { rxDevice: string; txDevice: string }) {
  expect(htbClasses(pod, rxDevice), rxDevice).toEqual({ '1:1': htbRate(RX_RATE), '1:2': htbRate(RX_RATE) });
  expect(htbClasses(pod, txDevice), txDevice).toEqual({ '1:1': htbRate(TX_RATE), '1:2': htbRate(TX_RATE) });
}

async function guestSnmp(guest: GuestHandle): Promise<string> {
  return (await runOnConsole(guest, 'cat /proc/net/snmp')).join('\n');
}

describe.skipIf(unavailable !== undefined)('four NICs with four MTUs and rate limits in one booted guest', () => {
  it.for<{ model: Model }>([{ model: 'tcfilter' }, { model: 'macvtap' }])(
    '$model: each NIC has its pod link MTU and crosses full-size packets unfragmented, both limits hold on every NIC and on one hot-plugged with add-iface, del-iface takes its trees away',
    { timeout: 600_000 },
    async ({ model }, context) => {
      if (model === 'macvtap') {
        const probe = makeNamespace('mvtprobe');
        probe.exec('ip', ['link', 'add', 'probe0', 'type', 'veth', 'peer', 'name', 'probe1']);
        const supported = kernelSupportsLinkKind(probe, 'macvtap', ['link', 'probe0']);
        if (!supported.ok) {
          console.log(`skip four-NIC MTU and rate-limit guest VM test with macvtap: ${supported.reason}`);
          context.skip();
        }
      }
      work = mkdtempSync(join(tmpdir(), 'vcnet-nicsrate-'));
      const config = join(work, 'configuration.toml');
      writeFileSync(
        config,
        `[hypervisor.qemu]\nrx_rate_limiter_max_rate = ${RX_RATE}\ntx_rate_limiter_max_rate = ${TX_RATE}\n`,
      );
      const setup = await attachAndBootGuest(work, {
        sandbox: 'nicsrate',
        pushBootNetwork: false,
        interfaces: MTUS.length,
        attachArgs: ['--config', config, '--model', model],
        beforeAttach: setMtus,
      });
      const { guest, pod, node, stateDir, sandbox, attached } = setup;
      try {
        const byDevice = new Map(attached.interfaces.map((entry) => [entry.device, entry]));
        expect([...byDevice.keys()].sort()).toEqual(MTUS.map((_, index) => `eth${index}`));
        MTUS.forEach((mtu, index) => {
          expect(byDevice.get(`eth${index}`)?.mtu).toBe(mtu);
          const [tap] = pod.ipJson<Array<{ mtu: number }>>('link', 'show', `tap${index}_kata`);
          expect(tap?.mtu, `tap${index}_kata`).toBe(mtu);
          // The limits are the sandbox's: every NIC gets both.
          expectLimitTrees(pod, shapedDevices(model, index, `eth${index}`));
        });

        const configured = vcnet([
          ...['configure-guest', '--sandbox', sandbox, '--state-dir', stateDir, '--timeout', '90000'],
        ]);
        expect(configured.status, configured.stderr).toBe(0);
        // The guest's links by MAC: name and MTU (busybox ip -o prints one line per link).
        const guestLinks = new Map(
          (await runOnConsole(guest, 'ip -o link show')).flatMap((line) => {
            const found = /^\d+: ([^:@]+)[:@].* mtu (\d+) .*link\/ether ([0-9a-f:]{17})/.exec(line);
            return found ? [[found[3]!, { name: found[1]!, mtu: Number(found[2]) }] as const] : [];
          }),
        );
        console.log(`guest links: ${JSON.stringify([...guestLinks])}`);
        MTUS.forEach((mtu, index) => {
          const wanted = byDevice.get(`eth${index}`)!;
          expect(guestLinks.get(wanted.hwAddr), `guest NIC ${wanted.hwAddr}`).toEqual({ name: wanted.name, mtu });
        });

        // Node to guest on each link, from empty neighbour caches.
        for (const [index, mtu] of MTUS.entries()) {
          node.exec('ip', ['neigh', 'flush', 'dev', `veth${index}`]);
          expect(fullSizePing(node.name, `10.${200 + index}.0.2`, mtu), `to the guest over eth${index}`).toContain(
            ' 0% packet loss',
          );
        }
        // Guest to node on each link. Busybox ping cannot set DF: the proof that nothing was
        // fragmented is the two kernels' counters, none made, none put together.
        for (const [index, mtu] of MTUS.entries()) {
          const output = (
            await runOnConsole(guest, `ping -c 3 -W 3 -s ${mtu - 28} 10.${200 + index}.0.1 2>&1`, 60_000)
          ).join('\n');
          expect(output, `from the guest over eth${index}`).toMatch(/ 0% packet loss/);
        }
        for (const [where, snmp] of [
          ['guest', await guestSnmp(guest)],
          ['node', node.exec('cat', ['/proc/net/snmp'])],
        ] as const) {
          expect(ipCounter(snmp, 'FragCreates'), `${where} FragCreates`).toBe(0);
          expect(ipCounter(snmp, 'ReasmReqds'), `${where} ReasmReqds`).toBe(0);
        }

        // iperf3 over the jumbo NIC only: the other three carry the same trees, checked above.
        await runOnConsole(guest, 'iperf3 -s -D');
        const jumbo = shapedDevices(model, 0, 'eth0');
        expectLimitsHold(`jumbo NIC rate limit, ${model}`, node, pod, '10.200.0.2', [jumbo.rxDevice, jumbo.txDevice]);

        // CNI ran again: a fifth link, hot-plugged into the running guest.
        const request = addSecondInterface(work, setup, PLUGGED_SUBNET);
        const added = vcnet(['add-iface', sandbox, request, '--state-dir', stateDir]);
        expect(added.status, added.stderr).toBe(0);
        const plugged = shapedDevices(model, PLUGGED_INDEX, 'eth9');
        expectLimitTrees(pod, plugged);
        expectLimitsHold(`hot-plugged NIC rate limit, ${model}`, node, pod, `${PLUGGED_SUBNET}.2`, [
          plugged.rxDevice,
          plugged.txDevice,
        ]);

        const removed = vcnet([
          'del-iface',
          sandbox,
          writeRequest(work, 'del.json', { name: 'net9' }),
          '--state-dir',
          stateDir,
        ]);
        expect(removed.status, removed.stderr).toBe(0);
        const links = pod.exec('ip', ['-br', 'link', 'show']);
        expect(links).not.toMatch(new RegExp(`^(tap${PLUGGED_INDEX}_kata|ifb${PLUGGED_INDEX}_kata)[\\s@]`, 'm'));
        expect(pod.exec('tc', ['qdisc', 'show', 'dev', 'eth9'])).not.toMatch(/htb|ingress/);
      } finally {
        await guest.kill();
      }
      pod.exec('ip', ['link', 'del', 'eth9']);
      const detached = vcnet(['detach', '--sandbox', sandbox, '--state-dir', stateDir]);
      expect(detached.status, detached.stderr).toBe(0);
      expect(fingerprint(pod)).toEqual(setup.before);
    },
  );
});
