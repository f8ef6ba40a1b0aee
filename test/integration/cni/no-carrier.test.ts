/**
 * A pod link without carrier at ADD, as a secondary network gives one on a node whose NIC has no
 * link yet (Multus and the macvlan plugin over an uplink whose cable, or far end, is down): the real
 * macvlan plugin, then vcnet-cni, for each model. ADD attaches (the kernel keeps the addresses and
 * routes, marked linkdown), the record gives the guest its address; once the uplink's far end comes
 * up, traffic crosses between the LAN and the guest (vm-stand-in's relay in place of the VM) with
 * nothing re-attached; vcnet-cni's DEL after the VM stops leaves the pod as macvlan left it, but for
 * what carrier brings by itself (routes no longer linkdown, the link-local address, which must be
 * the one of the link's own MAC: with macvtap, the MAC put back). With macvtap the kernel puts the
 * macvtap on the macvlan's own lower link (the uplink, in the node namespace), not on the macvlan.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { GuestFamily } from '../../../src/network/guest.js';
import { cleanupAfterEach } from '../../helpers/cleanup.js';
import { addAfterPlugin, missingCniPlugins, startVmStandIn } from '../../helpers/cni.js';
import { makeNamespace } from '../../helpers/namespace.js';
import { fingerprint } from '../../helpers/pod.js';
import { until } from '../../helpers/until.js';

const skipReason =
  process.getuid?.() !== 0
    ? 'vcnet-cni integration tests need root (namespaces, taps, tc)'
    : missingCniPlugins(['macvlan', 'host-local']);
if (skipReason) console.log(`skipping the no-carrier vcnet-cni tests: ${skipReason}`);

const cleanup = cleanupAfterEach();
const LAN_ADDRESS = '10.231.61.1';

/**
 * A fingerprint without what the pod link's carrier decides by itself: routes' linkdown flag, and the
 * IPv6 link-local address the kernel gives the link once it has carrier, with its routes (checked
 * on their own: derived from the link's MAC).
 */
function withoutCarrierState(print: Record<string, unknown>): Record<string, unknown> {
  const carrierBound = (entry: string) => /fe80:|"ff00::\/8"/.test(entry);
  return {
    ...print,
    addresses: (print.addresses as Array<{ ifname: string; addresses: string[] }>).map((entry) => ({
      ...entry,
      addresses: entry.addresses.filter((address) => !carrierBound(address)),
    })),
    routes: (print.routes as string[])
      .filter((route) => !carrierBound(route))
      .map((route) => route.replace('"flags":["linkdown"]', '"flags":[]')),
  };
}

/** The EUI-64 link-local address the kernel derives from `mac`. */
function linkLocalOf(mac: string): string {
  const bytes = mac.split(':').map((octet) => Number.parseInt(octet, 16));
  bytes[0] = bytes[0]! ^ 0x02;
  const words = [bytes[0]! * 256 + bytes[1]!, bytes[2]! * 256 + 0xff, 0xfe00 + bytes[3]!, bytes[4]! * 256 + bytes[5]!];
  return `fe80::${words.map((word) => word.toString(16)).join(':')}`;
}

describe.skipIf(skipReason)('vcnet-cni after macvlan on an uplink without carrier', () => {
  it.each(['tcfilter', 'macvtap'])(
    'model %s: ADD attaches the link without carrier; once the uplink comes up the guest is reached with nothing re-attached; DEL is exact',
    async (model) => {
      const stateDirectory = cleanup.directory('vcnet-cni-no-carrier-');
      const node = makeNamespace('node');
      const lan = makeNamespace('lan');
      const pod = makeNamespace('pod');
      // No DAD: the link-local address the link gets with carrier is there at once, not tentative.
      pod.exec('sysctl', ['-q', '-w', 'net.ipv6.conf.default.accept_dad=0', 'net.ipv6.conf.all.accept_dad=0']);
      // The node's uplink, up, whose far end (the LAN's side) is down: no carrier.
      node.exec('ip', ['link', 'add', 'uplink0', 'type', 'veth', 'peer', 'name', 'lan0', 'netns', lan.name]);
      node.exec('ip', ['link', 'set', 'uplink0', 'up']);
      lan.exec('ip', ['addr', 'add', `${LAN_ADDRESS}/24`, 'dev', 'lan0']);
      const macvlan = {
        type: 'macvlan',
        master: 'uplink0',
        mode: 'bridge',
        ipam: {
          type: 'host-local',
          ranges: [[{ subnet: '10.231.61.0/24', gateway: LAN_ADDRESS }]],
          dataDir: join(stateDirectory, 'ipam'),
        },
      };
      const { list, runtime, result, afterFirstPlugin, recordDirectory } = addAfterPlugin(macvlan, {
        name: 'vcnet-no-carrier',
        model,
        directory: stateDirectory,
        node,
        pod,
      });
      const flags = (link: string) => pod.ipJson<Array<{ flags: string[] }>>('link', 'show', link)[0]?.flags ?? [];
      expect(flags('eth0')).toContain('NO-CARRIER');
      expect(
        pod.ipJson<Array<{ linkinfo?: { info_kind?: string } }>>('-d', 'link', 'show', 'tap0_kata')[0]?.linkinfo
          ?.info_kind,
      ).toBe(model === 'macvtap' ? 'macvtap' : 'tun');
      // The VM: the relay, and the guest's NIC as the agent sets it from the record.
      const guest = makeNamespace('guest');
      const vm = await startVmStandIn(runtime, { model, stateDirectory: recordDirectory, guest, cleanup });
      const guestAddress = vm.guestInterface.IPAddresses.find((address) => address.family === GuestFamily.v4);
      const podAddress = (result.ips as Array<{ address: string }>)[0]?.address;
      expect(`${guestAddress?.address}/${guestAddress?.mask}`).toBe(podAddress);
      guest.exec('ip', ['addr', 'add', podAddress!, 'dev', 'eth0']);
      guest.exec('ip', ['link', 'set', 'eth0', 'up']);

      // The far end comes up: the pod link gets carrier, and the guest is reached both ways.
      lan.exec('ip', ['link', 'set', 'lan0', 'up']);
      await until(() => !flags('eth0').includes('NO-CARRIER'), 'carrier on the pod link');
      lan.exec('ping', ['-c', '1', '-w', '10', guestAddress!.address]);
      guest.exec('ping', ['-c', '1', '-w', '10', LAN_ADDRESS]);

      await vm.stop();
      // The chain's DEL as libcni runs it, vcnet-cni first, looked at before macvlan's removes eth0.
      const del = (position: number) =>
        runtime.invoke('DEL', {
          ...list.plugins[position],
          cniVersion: list.cniVersion,
          name: list.name,
          prevResult: result,
        });
      expect(del(1).status).toBe(0);
      expect(withoutCarrierState(fingerprint(pod))).toEqual(withoutCarrierState(afterFirstPlugin));
      // With carrier, the pod link has the link-local address of its own MAC (macvtap: the one put back).
      const mac = pod.ipJson<Array<{ address: string }>>('link', 'show', 'eth0')[0]!.address;
      const linkLocals = () =>
        pod
          .ipJson<Array<{ addr_info: Array<{ local: string; scope: string }> }>>(
            '-6',
            'addr',
            'show',
            'dev',
            'eth0',
          )[0]!
          .addr_info.filter((address) => address.scope === 'link')
          .map((address) => address.local);
      await until(() => linkLocals().length > 0, "the pod link's link-local address");
      expect(linkLocals()).toEqual([linkLocalOf(mac)]);
      expect(del(0).status).toBe(0);
      expect(pod.exec('ip', ['-br', 'link', 'show']).trim().split('\n')).toHaveLength(1);
      expect(node.ipJson<Array<{ ifname: string }>>('link', 'show').map((link) => link.ifname)).toEqual([
        'lo',
        'uplink0',
      ]);
    },
    120_000,
  );
});
