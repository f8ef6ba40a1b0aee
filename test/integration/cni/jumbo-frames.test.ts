/**
 * A jumbo-frame network (MTU 9000, set by the bridge plugin) through vcnet-cni, end to end without a
 * VM, for each model: a process stands in for the VMM and the guest's NIC (vm-stand-in's relay: the
 * tap's queue, or the macvtap's device file, copied to a tap in a "guest" namespace given what the
 * record gives the guest: its MAC, addresses and MTU). DF pings of exactly 9000 bytes, IPv4 and IPv6,
 * cross the plumbing both ways between the node namespace (the bridge's gateway address) and that
 * guest; then the VM stops, the chain's DEL runs, and nothing of vcnet's is left.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { GuestFamily } from '../../../src/network/guest.js';
import { cleanupAfterEach } from '../../helpers/cleanup.js';
import { addAfterPlugin, missingCniPlugins, startVmStandIn } from '../../helpers/cni.js';
import { makeNamespace, type TestNamespace } from '../../helpers/namespace.js';
import { fingerprint } from '../../helpers/pod.js';

const skipReason =
  process.getuid?.() !== 0
    ? 'vcnet-cni integration tests need root (namespaces, taps, tc)'
    : missingCniPlugins(['bridge', 'host-local']);
if (skipReason) console.log(`skipping the jumbo-frame vcnet-cni tests: ${skipReason}`);

const cleanup = cleanupAfterEach();
const JUMBO_MTU = 9000;
/** ICMP payloads that make IP packets of exactly the MTU: 20 + 8 for IPv4, 40 + 8 for IPv6. */
const PAYLOAD = { 4: JUMBO_MTU - 28, 6: JUMBO_MTU - 48 } as const;
const SUBNETS = { 4: '10.231.60.0/24', 6: 'fd00:231:60::/64' } as const;
const GATEWAYS = { 4: '10.231.60.1', 6: 'fd00:231:60::1' } as const;

/** Namespaces without DAD, so addresses are usable at once (the bridge's gateway ones too). */
function namespaceWithoutDad(label: string): TestNamespace {
  const namespace = makeNamespace(label);
  namespace.exec('sysctl', ['-q', '-w', 'net.ipv6.conf.default.accept_dad=0', 'net.ipv6.conf.all.accept_dad=0']);
  return namespace;
}

/** One DF ping of exactly the MTU from `from` to `to` answered within 10 s (ping resends each second). */
function pingsAtMtu(from: TestNamespace, family: 4 | 6, to: string): void {
  from.exec('ping', [`-${family}`, '-c', '1', '-w', '10', '-M', 'do', '-s', String(PAYLOAD[family]), to]);
}

describe.skipIf(skipReason)(`MTU ${JUMBO_MTU} through bridge and vcnet-cni, end to end`, () => {
  it.each(['tcfilter', 'macvtap'])(
    'model %s: the VM device and the guest take 9000, DF pings of 9000 bytes cross both ways (IPv4, IPv6), DEL is exact',
    async (model) => {
      const stateDirectory = cleanup.directory('vcnet-cni-jumbo-');
      const node = namespaceWithoutDad('node');
      const pod = namespaceWithoutDad('pod');
      const bridge = {
        type: 'bridge',
        bridge: 'vcjumbo0',
        isGateway: true,
        mtu: JUMBO_MTU,
        ipam: {
          type: 'host-local',
          ranges: [[{ subnet: SUBNETS[4] }], [{ subnet: SUBNETS[6] }]],
          dataDir: join(stateDirectory, 'ipam'),
        },
      };
      const { list, runtime, result, afterFirstPlugin, recordDirectory } = addAfterPlugin(bridge, {
        name: 'vcnet-jumbo',
        model,
        directory: stateDirectory,
        node,
        pod,
      });

      // The VM's device takes the pod link's MTU, and the record gives the guest's NIC the same.
      const [tap] = pod.ipJson<Array<{ mtu: number; linkinfo?: { info_kind?: string } }>>(
        '-d',
        'link',
        'show',
        'tap0_kata',
      );
      expect({ kind: tap?.linkinfo?.info_kind, mtu: tap?.mtu }).toEqual({
        kind: model === 'macvtap' ? 'macvtap' : 'tun',
        mtu: JUMBO_MTU,
      });
      // The VM: the relay, and the guest's NIC as the agent sets it from the record.
      const guest = namespaceWithoutDad('guest');
      const vm = await startVmStandIn(runtime, { model, stateDirectory: recordDirectory, guest, cleanup });
      const guestInterface = vm.guestInterface;
      expect(guestInterface.mtu).toBe(JUMBO_MTU);
      if (model === 'macvtap') expect(vm.devicePath).toMatch(/^\/dev\/tap\d+$/);
      const guestAddresses = { 4: '', 6: '' };
      for (const address of guestInterface.IPAddresses) {
        if (address.address.startsWith('fe80:')) continue;
        const family = address.family === GuestFamily.v6 ? 6 : 4;
        guestAddresses[family] = address.address;
        guest.exec('ip', ['addr', 'add', `${address.address}/${address.mask}`, 'dev', 'eth0', 'nodad']);
      }
      guest.exec('ip', ['link', 'set', 'eth0', 'up']);
      const ips = (result.ips as Array<{ address: string }>).map((entry) => entry.address.split('/')[0]);
      expect([guestAddresses[4], guestAddresses[6]].sort()).toEqual(ips.sort());

      for (const family of [4, 6] as const) {
        pingsAtMtu(node, family, guestAddresses[family]);
        pingsAtMtu(guest, family, GATEWAYS[family]);
      }

      await vm.stop();
      runtime.del(list, result, (position) => {
        if (position === 0) expect(fingerprint(pod)).toEqual(afterFirstPlugin);
      });
      const records = recordDirectory;
      expect(
        existsSync(records)
          ? (readdirSync(records, { recursive: true }) as string[]).filter((name) => name.endsWith('state.json'))
          : [],
      ).toEqual([]);
      expect(pod.exec('ip', ['-br', 'link', 'show']).trim().split('\n')).toHaveLength(1);
    },
    120_000,
  );
});
