/**
 * Four pod links with four different MTUs (9000, IPv6's minimum 1280, 4000, 1500) in one booted
 * guest, with the tcfilter model and with the macvtap model (four macvtaps, whose queues and
 * vhost-net descriptors QEMU gets numbered on across the devices): each tap or macvtap takes its pod
 * link's MTU, the agent gives each guest NIC (found by its MAC) its own MTU, and on each a packet of
 * exactly that MTU crosses unfragmented both ways between the node namespace and the guest. A MTU
 * given to the wrong NIC shows: a packet larger than the pod link's MTU would be dropped by its veth,
 * a smaller guest MTU would fragment. Detach leaves the pod as it was.
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
if (unavailable) console.log(`skip four-NIC MTU guest VM test: ${unavailable}`);

/** eth<i>'s MTU (makePod gives eth<i> 10.20<i>.0.2/24, its node peer veth<i> 10.20<i>.0.1/24). */
const MTUS = [9000, 1280, 4000, 1500];

type Model = 'tcfilter' | 'macvtap';

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

/** ping -4 of a packet of exactly `mtu` bytes that may not be fragmented: up to five rounds until one loses nothing. */
function fullSizePing(namespace: string, address: string, mtu: number): string {
  let output = '';
  for (let attempt = 0; attempt < 5 && !output.includes(' 0% packet loss'); attempt++) {
    try {
      output = execFileSync(
        'ip',
        [
          ...['netns', 'exec', namespace, 'ping', '-4', '-c', '2', '-i', '0.3', '-W', '3'],
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

describe.skipIf(unavailable !== undefined)('four NICs with four MTUs in one booted guest', () => {
  it.for<{ model: Model }>([{ model: 'tcfilter' }, { model: 'macvtap' }])(
    '$model: each tap and guest NIC has its pod link MTU, and a full-size packet crosses each NIC unfragmented both ways',
    { timeout: 420_000 },
    async ({ model }, context) => {
      if (model === 'macvtap') {
        const probe = makeNamespace('mvtprobe');
        probe.exec('ip', ['link', 'add', 'probe0', 'type', 'veth', 'peer', 'name', 'probe1']);
        const supported = kernelSupportsLinkKind(probe, 'macvtap', ['link', 'probe0']);
        if (!supported.ok) {
          console.log(`skip four-NIC MTU guest VM test with macvtap: ${supported.reason}`);
          context.skip();
        }
      }
      work = mkdtempSync(join(tmpdir(), 'vcnet-fournics-'));
      const setup = await attachAndBootGuest(work, {
        sandbox: 'fournics',
        pushBootNetwork: false,
        interfaces: MTUS.length,
        attachArgs: ['--model', model],
        beforeAttach: setMtus,
      });
      const { guest, pod, node, stateDir, attached } = setup;
      try {
        const byDevice = new Map(attached.interfaces.map((entry) => [entry.device, entry]));
        expect([...byDevice.keys()].sort()).toEqual(MTUS.map((_, index) => `eth${index}`));
        MTUS.forEach((mtu, index) => {
          expect(byDevice.get(`eth${index}`)?.mtu).toBe(mtu);
          const [tap] = pod.ipJson<Array<{ mtu: number }>>('link', 'show', `tap${index}_kata`);
          expect(tap?.mtu, `tap${index}_kata`).toBe(mtu);
        });

        const configured = vcnet([
          ...['configure-guest', '--sandbox', 'fournics', '--state-dir', stateDir, '--timeout', '90000'],
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
        // Guest to node on each link. Busybox ping cannot set DF: the counters show nothing was fragmented.
        for (const [index, mtu] of MTUS.entries()) {
          const output = (
            await runOnConsole(guest, `ping -c 2 -W 3 -s ${mtu - 28} 10.${200 + index}.0.1 2>&1`, 60_000)
          ).join('\n');
          expect(output, `from the guest over eth${index}`).toMatch(/ 0% packet loss/);
        }
        const guestSnmp = (await runOnConsole(guest, 'cat /proc/net/snmp')).join('\n');
        expect(ipCounter(guestSnmp, 'FragCreates')).toBe(0);
        expect(ipCounter(node.exec('cat', ['/proc/net/snmp']), 'ReasmReqds')).toBe(0);
      } finally {
        await guest.kill();
      }
      const detached = vcnet(['detach', '--sandbox', 'fournics', '--state-dir', stateDir]);
      expect(detached.status, detached.stderr).toBe(0);
      expect(fingerprint(pod)).toEqual(setup.before);
    },
  );
});
