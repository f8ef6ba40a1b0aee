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
 * - A fifth pod link with no IPv4 at all (its IPv6 address only, as an IPv6-only cluster leaves it):
 *   the same limits hold over IPv6 both ways, where IPv6 exceeds them raised (the redirect filters
 *   match every protocol, ETH_P_ALL, as Kata's; the htb sends every frame to its default class).
 * - A sixth NIC hot-plugged with `vcnet add-iface` gets the sandbox's limits, recorded at attach, on
 *   its own plumbing, iperf3 over it stays under each where it exceeds them raised, and del-iface
 *   takes its trees and ifb with it.
 * - Two vCPUs (Kata's default_vcpus = 2): every NIC has two queue pairs (a multi-queue tap, or two
 *   macvtap queues; QEMU mq=on) and the guest uses both. Each measurement runs two flows at once to
 *   two iperf3 servers pinned to different guest vCPUs, so the guest sends through both of its
 *   transmit queues (its interrupt counts prove it): one htb limits them together.
 *
 * Detach leaves the pod as it was.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { vcnet } from '../helpers/cli.js';
import { type GuestHandle, guestUnavailableReason, pingFrom, runOnConsole } from '../helpers/guest.js';
import { addSecondInterface, attachAndBootGuest, writeRequest } from '../helpers/hotplug-guest.js';
import { cleanupNamespaces, kernelSupportsLinkKind, makeNamespace, type TestNamespace } from '../helpers/namespace.js';
import { fingerprint } from '../helpers/pod.js';
import { htbClasses, htbRate, iperfFlows, mbps, raiseHtbClasses } from '../helpers/rate-limit.js';

const unavailable = guestUnavailableReason();
if (unavailable) console.log(`skip MTU, IPv6-only and multi-queue rate-limit guest VM test: ${unavailable}`);

/** eth<i>'s MTU (makePod gives eth<i> 10.20<i>.0.2/24, its node peer veth<i> 10.20<i>.0.1/24). eth0 is the jumbo NIC iperf3 measures. */
const MTUS = [9000, 1280, 4000, 1500];
/** Towards the VM, bits/s. Low enough that a TCG guest on a busy machine still goes faster unlimited. */
const RX_RATE = 16_000_000;
/** From the VM, bits/s: twice rx, so a limit put on the wrong direction shows. */
const TX_RATE = 32_000_000;
/** htb lets a burst through on top of the rate; a measured rate above this is a limit that does not hold. */
const MARGIN = 1.1;
/** The pod link with no IPv4 (MTU 1500): eth4, makePod's fd00:204::2/64, its node peer veth4 fd00:204::1/64. */
const IPV6_ONLY_INDEX = MTUS.length;
/** The guest's address on it. */
const IPV6_ONLY_ADDRESS = `fd00:${200 + IPV6_ONLY_INDEX}::2`;
/** The hot-plugged NIC's subnet: its node end holds .1, the guest's net9 .2. */
const PLUGGED_SUBNET = '10.209.0';
/** add-iface takes the lowest free device index: the one after the five boot NICs. */
const PLUGGED_INDEX = IPV6_ONLY_INDEX + 1;
/** The guest's vCPUs, Kata's default_vcpus: vcnet gives every NIC one queue pair per vCPU. */
const VCPUS = 2;
/** One guest iperf3 server per vCPU, pinned to it (-A): server i on vCPU i, at port SERVER_PORTS[i]. */
const SERVER_PORTS = [5201, 5202];

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

/** makePod's eth4 without any IPv4 (address, routes, neighbour); its node peer gets fd00:204::1/64. */
function makeIpv6Only({ pod, node }: { pod: TestNamespace; node: TestNamespace }): void {
  const [podLink, nodeLink] = [`eth${IPV6_ONLY_INDEX}`, `veth${IPV6_ONLY_INDEX}`];
  node.exec('ip', ['-4', 'addr', 'flush', 'dev', nodeLink]);
  node.exec('ip', ['addr', 'add', `fd00:${200 + IPV6_ONLY_INDEX}::1/64`, 'dev', nodeLink, 'nodad']);
  pod.exec('ip', ['-4', 'neigh', 'flush', 'dev', podLink, 'nud', 'permanent']);
  pod.exec('ip', ['-4', 'addr', 'flush', 'dev', podLink]);
  pod.exec('ip', ['-4', 'route', 'flush', 'dev', podLink]);
  const left =
    pod.exec('ip', ['-4', '-o', 'addr', 'show', 'dev', podLink]) +
    pod.exec('ip', ['-4', 'route', 'show', 'dev', podLink]);
  if (left.trim() !== '') throw new Error(`${podLink} still has IPv4: ${left}`);
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

/** The guest's interrupt counts (all vCPUs summed) of each queue of the virtio device behind NIC `name`, by queue (`input.0`, `output.1`...). */
async function queueInterrupts(guest: GuestHandle, name: string): Promise<Map<string, number>> {
  const [device] = await runOnConsole(guest, `basename "$(readlink /sys/class/net/${name}/device)"`);
  const counts = new Map<string, number>();
  for (const line of await runOnConsole(guest, `grep -w '${device}-[a-z]*\\.[0-9]*' /proc/interrupts`)) {
    const queue = new RegExp(`${device}-((?:input|output)\\.\\d+)$`).exec(line.trim());
    if (!queue) continue;
    const perCpu = line
      .trim()
      .split(/\s+/)
      .slice(1, 1 + VCPUS)
      .map(Number);
    counts.set(
      queue[1]!,
      perCpu.reduce((sum, count) => sum + count, 0),
    );
  }
  if (counts.size === 0)
    throw new Error(`no per-queue interrupts of ${device} (guest NIC ${name}) in /proc/interrupts`);
  return counts;
}

/**
 * iperf3 both ways to `address` under the limits, then again with the htb classes on `devices`
 * raised: each direction under its own limit, where the guest goes faster without it. Each run is
 * two flows at once, one to each guest server (one per vCPU): from the guest they leave through both
 * transmit queues of `guestNic`, as its interrupt counts must show. The servers must be running.
 */
async function expectLimitsHold(
  what: string,
  { node, pod, guest }: { node: TestNamespace; pod: TestNamespace; guest: GuestHandle },
  address: string,
  guestNic: string,
  devices: string[],
) {
  const before = await queueInterrupts(guest, guestNic);
  const limited = {
    toGuest: await iperfFlows(node.name, address, SERVER_PORTS, false),
    fromGuest: await iperfFlows(node.name, address, SERVER_PORTS, true),
  };
  const after = await queueInterrupts(guest, guestNic);
  const rose = Object.fromEntries([...after].map(([queue, count]) => [queue, count - (before.get(queue) ?? 0)]));
  // Unlimited, in the same run: the classes of both trees raised far above the limits.
  raiseHtbClasses(pod, devices);
  const unlimited = {
    toGuest: await iperfFlows(node.name, address, SERVER_PORTS, false),
    fromGuest: await iperfFlows(node.name, address, SERVER_PORTS, true),
  };
  console.log(
    `${what}: towards the guest ${mbps(limited.toGuest)} (rx limit ${mbps(RX_RATE)}; unlimited ${mbps(unlimited.toGuest)}), ` +
      `from the guest ${mbps(limited.fromGuest)} (tx limit ${mbps(TX_RATE)}; unlimited ${mbps(unlimited.fromGuest)}); ` +
      `guest ${guestNic} interrupts per queue during the limited runs ${JSON.stringify(rose)}`,
  );
  // Both flows, each from its own vCPU, left through their own transmit queue.
  for (let queue = 0; queue < VCPUS; queue++) {
    expect(rose[`output.${queue}`], `${what}: ${guestNic} transmit queue ${queue} interrupts`).toBeGreaterThan(0);
  }
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

describe.skipIf(unavailable !== undefined)(
  'five NICs (four MTUs, one IPv6-only), two queues each, and rate limits in one booted guest',
  () => {
    it.for<{ model: Model }>([{ model: 'tcfilter' }, { model: 'macvtap' }])(
      '$model: each NIC has its pod link MTU and crosses full-size packets unfragmented, both limits hold over both queues on every NIC, over IPv6 on the one without IPv4 and on one hot-plugged with add-iface, del-iface takes its trees away',
      { timeout: 600_000 },
      async ({ model }, context) => {
        if (model === 'macvtap') {
          const probe = makeNamespace('mvtprobe');
          probe.exec('ip', ['link', 'add', 'probe0', 'type', 'veth', 'peer', 'name', 'probe1']);
          const supported = kernelSupportsLinkKind(probe, 'macvtap', ['link', 'probe0']);
          if (!supported.ok) {
            console.log(
              `skip MTU, IPv6-only and multi-queue rate-limit guest VM test with macvtap: ${supported.reason}`,
            );
            context.skip();
          }
        }
        work = mkdtempSync(join(tmpdir(), 'vcnet-nicsrate-'));
        const config = join(work, 'configuration.toml');
        writeFileSync(
          config,
          `[hypervisor.qemu]\ndefault_vcpus = ${VCPUS}\n` +
            `rx_rate_limiter_max_rate = ${RX_RATE}\ntx_rate_limiter_max_rate = ${TX_RATE}\n`,
        );
        const setup = await attachAndBootGuest(work, {
          sandbox: 'nicsrate',
          pushBootNetwork: false,
          interfaces: MTUS.length + 1,
          vcpus: VCPUS,
          attachArgs: ['--config', config, '--model', model],
          beforeAttach: (fixture) => {
            setMtus(fixture);
            makeIpv6Only(fixture);
          },
        });
        const { guest, pod, node, stateDir, sandbox, attached } = setup;
        try {
          const byDevice = new Map(attached.interfaces.map((entry) => [entry.device, entry]));
          const bootMtus = [...MTUS, 1500];
          expect([...byDevice.keys()].sort()).toEqual(bootMtus.map((_, index) => `eth${index}`));
          // The guest is given its IPv6 addresses alone there (the global one, and the pod link's link-local).
          expect(
            byDevice
              .get(`eth${IPV6_ONLY_INDEX}`)
              ?.IPAddresses.map((address) => address.address)
              .filter((address) => !address.startsWith('fe80:')),
          ).toEqual([IPV6_ONLY_ADDRESS]);
          bootMtus.forEach((mtu, index) => {
            expect(byDevice.get(`eth${index}`)?.mtu).toBe(mtu);
            const [tap] = pod.ipJson<Array<{ mtu: number }>>('link', 'show', `tap${index}_kata`);
            expect(tap?.mtu, `tap${index}_kata`).toBe(mtu);
            // The limits are the sandbox's: every NIC gets both.
            expectLimitTrees(pod, shapedDevices(model, index, `eth${index}`));
          });
          // One queue pair per vCPU on every NIC: QEMU's virtio-net multi-queue, and the tap's queues.
          const deviceArguments = attached.hypervisor.devices.map((device) => device.config.join(' '));
          expect(deviceArguments).toHaveLength(bootMtus.length);
          for (const argumentsOfNic of deviceArguments)
            expect(argumentsOfNic).toContain(`mq=on,vectors=${2 * VCPUS + 2}`);

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
          bootMtus.forEach((mtu, index) => {
            const wanted = byDevice.get(`eth${index}`)!;
            expect(guestLinks.get(wanted.hwAddr), `guest NIC ${wanted.hwAddr}`).toEqual({ name: wanted.name, mtu });
          });
          const jumboNic = byDevice.get('eth0')!.name;
          const ipv6Nic = byDevice.get(`eth${IPV6_ONLY_INDEX}`)!.name;
          // The guest turned on both queue pairs (one per vCPU): its sysfs lists the queues in use.
          expect(
            (await runOnConsole(guest, `ls /sys/class/net/${jumboNic}/queues`)).join(' ').split(/\s+/).sort(),
          ).toEqual(['rx-0', 'rx-1', 'tx-0', 'tx-1']);
          // And QEMU then attached both queues of each tap (until the guest turns a queue pair on, QEMU
          // keeps its tap queue detached, and the tap lists only the queues attached).
          if (model === 'tcfilter') {
            expect(pod.exec('ls', ['/sys/class/net/tap0_kata/queues']).split(/\s+/).filter(Boolean).sort()).toEqual([
              'rx-0',
              'rx-1',
              'tx-0',
              'tx-1',
            ]);
          }

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

          // iperf3 over the jumbo NIC, and over IPv6 on the NIC without IPv4: the other three carry the
          // same trees, checked above.
          await runOnConsole(guest, SERVER_PORTS.map((port, vcpu) => `iperf3 -s -D -p ${port} -A ${vcpu}`).join('; '));
          const jumbo = shapedDevices(model, 0, 'eth0');
          await expectLimitsHold(`jumbo NIC rate limit, ${model}`, setup, '10.200.0.2', jumboNic, [
            jumbo.rxDevice,
            jumbo.txDevice,
          ]);
          // The guest's IPv6 address is usable once its duplicate address detection is over.
          expect(pingFrom(node.name, IPV6_ONLY_ADDRESS), `to the guest over IPv6`).toContain(' 0% packet loss');
          const ipv6Only = shapedDevices(model, IPV6_ONLY_INDEX, `eth${IPV6_ONLY_INDEX}`);
          await expectLimitsHold(`IPv6-only NIC rate limit, ${model}`, setup, IPV6_ONLY_ADDRESS, ipv6Nic, [
            ipv6Only.rxDevice,
            ipv6Only.txDevice,
          ]);

          // CNI ran again: a fifth link, hot-plugged into the running guest.
          const request = addSecondInterface(work, setup, PLUGGED_SUBNET);
          const added = vcnet(['add-iface', sandbox, request, '--state-dir', stateDir]);
          expect(added.status, added.stderr).toBe(0);
          const plugged = shapedDevices(model, PLUGGED_INDEX, 'eth9');
          expectLimitTrees(pod, plugged);
          await expectLimitsHold(`hot-plugged NIC rate limit, ${model}`, setup, `${PLUGGED_SUBNET}.2`, 'net9', [
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
  },
);
