/**
 * A hot-plug the VM refuses undoes the attach's plumbing. When the kernel refuses part of that undo,
 * the error says so (RollbackIncompleteError, the VM's refusal its cause) and the endpoint stays in
 * the network and its journal with what is left, as a failed attach's does, for detach and gc to
 * finish: the undo's report was dropped, the plug's own error thrown, and the record lost the
 * endpoint, so nothing named the change left behind. The VM is a stand-in that refuses every NIC;
 * the kernel is real. Made to happen with the macvtap model: before refusing, the stand-in turns
 * IPv6 off on eth0, so the undo's "eth0 gets its IPv6 address back" is refused.
 */
import { expect, it } from 'vitest';
import { RollbackIncompleteError } from '../../../src/errors.js';
import type { HotplugTarget } from '../../../src/hypervisor/device.js';
import { defineNetworkConfig } from '../../../src/network/config.js';
import { Network, type NetworkState } from '../../../src/network/network.js';
import { cleanupAfterEach } from '../../helpers/cleanup.js';
import { fingerprint, makePod } from '../../helpers/pod.js';

const cleanups = cleanupAfterEach();

it('a refused hot-plug whose undo the kernel refuses in part throws RollbackIncompleteError and keeps what is left', async () => {
  const { pod } = makePod();
  const before = fingerprint(pod);
  const network = Network.open(defineNetworkConfig({ namespacePath: pod.path, model: 'macvtap' }), 'refused-plug');
  cleanups.defer(() => network.close());
  const refusal = new Error('the VM refused the NIC');
  let unplugged = 0;
  const target: HotplugTarget = {
    async hotplugNetworkDevice() {
      pod.exec('sysctl', ['-q', '-w', 'net.ipv6.conf.eth0.disable_ipv6=1']);
      throw refusal;
    },
    async unplugNetworkDevice() {
      unplugged++;
    },
  };
  let journaled: NetworkState | undefined;
  const failure = await network
    .addEndpoints({ hotplug: target, keepFds: true, journal: (current) => (journaled = current.save()) })
    .then(
      () => undefined,
      (error: unknown) => error,
    );
  expect(failure).toBeInstanceOf(RollbackIncompleteError);
  const incomplete = failure as RollbackIncompleteError;
  expect(incomplete.cause).toBe(refusal);
  expect(incomplete.message).toMatch(/^hot-plug of eth0 failed: the VM refused the NIC; undoing it failed too \(/);
  expect(incomplete.left.length).toBeGreaterThan(0);
  expect(unplugged).toBe(0); // never plugged: nothing to unplug
  // The network and the last record both keep the endpoint, as an unfinished attach, with what is left.
  expect(network.endpoints().map((endpoint) => endpoint.properties.link.name)).toEqual(['eth0']);
  expect(journaled?.endpoints).toHaveLength(1);
  expect(journaled?.endpoints[0]?.plumbing?.model).toBe('pending');
  expect(journaled?.endpoints[0]?.plumbing?.steps).toEqual(incomplete.left);

  // Once the cause is gone, an undo from that record (as gc and detach load it) puts eth0 back as it was.
  pod.exec('sysctl', ['-q', '-w', 'net.ipv6.conf.eth0.disable_ipv6=0']);
  const loaded = Network.load(journaled as NetworkState, 'refused-plug', pod.path);
  cleanups.defer(() => loaded.close());
  const report = await loaded.removeEndpoints();
  expect(report.left).toEqual([]);
  expect(fingerprint(pod)).toEqual(before);
}, 60_000);

/** Another tool's u32 filter, for the ingress qdisc vcnet made on `link`. */
const otherFilter = (link: string) =>
  `filter add dev ${link} ingress prio 100 protocol ip u32 match ip dst 10.9.9.9/32 flowid 1:7`.split(' ');

/** What addEndpoints threw with a VM stand-in that takes the first `taken` NICs and refuses the next, after `beforeRefusal`. */
async function refusedPlug(network: Network, taken: number, beforeRefusal: () => void): Promise<Error> {
  let plugs = 0;
  const target: HotplugTarget = {
    async hotplugNetworkDevice() {
      if (plugs++ < taken) return { pciPath: `02/0${plugs}` };
      beforeRefusal();
      throw new Error('the VM refused the NIC');
    },
    async unplugNetworkDevice() {},
  };
  return network.addEndpoints({ hotplug: target }).then(
    () => new Error('hot-plug succeeded'),
    (error: unknown) => error as Error,
  );
}

it("a refused hot-plug whose undo hands vcnet's ingress qdisc over to another tool says that it stays", async () => {
  const { pod } = makePod();
  const before = fingerprint(pod);
  const network = Network.open(defineNetworkConfig({ namespacePath: pod.path, model: 'tcfilter' }), 'refused-plug');
  cleanups.defer(() => network.close());
  const error = (await refusedPlug(network, 0, () => pod.exec('tc', otherFilter('eth0')))) as Error & {
    code?: string;
  };
  expect(error.code, error.message).toBe('VCNET_ATTACH_FAILED');
  expect(error.message).toBe(
    "attaching eth0 failed: the VM refused the NIC (everything it had made was removed but the ingress qdisc on eth0, which stays: it holds another tool's filter (prio 100); vcnet's own filters in it were deleted and no record keeps it, as it is that tool's now: neither detach nor gc will delete it)",
  );
  expect(network.endpoints()).toEqual([]);
  expect(pod.exec('tc', 'filter show dev eth0 ingress'.split(' '))).toContain('match 0a090909/ffffffff at 16');
  pod.exec('tc', 'qdisc del dev eth0 ingress'.split(' '));
  expect(fingerprint(pod)).toEqual(before);
}, 60_000);

it('a refused hot-plug after an endpoint whose undo hands its ingress qdisc over says that it stays', async () => {
  const { pod } = makePod({ interfaces: 2 });
  const before = fingerprint(pod);
  const network = Network.open(defineNetworkConfig({ namespacePath: pod.path, model: 'tcfilter' }), 'refused-plug');
  cleanups.defer(() => network.close());
  // eth0's NIC is taken, eth1's refused: another tool's filter is in eth0's ingress qdisc by then.
  const error = (await refusedPlug(network, 1, () => pod.exec('tc', otherFilter('eth0')))) as Error & {
    code?: string;
  };
  expect(error.code, error.message).toBe('VCNET_ATTACH_FAILED');
  expect(error.message).toBe(
    "attaching eth1 failed: the VM refused the NIC (everything it and the endpoint attached before it (eth0) had made was removed but the ingress qdisc on eth0, which stays: it holds another tool's filter (prio 100); vcnet's own filters in it were deleted and no record keeps it, as it is that tool's now: neither detach nor gc will delete it)",
  );
  expect(network.endpoints()).toEqual([]);
  expect(pod.exec('tc', 'filter show dev eth0 ingress'.split(' '))).toContain('match 0a090909/ffffffff at 16');
  pod.exec('tc', 'qdisc del dev eth0 ingress'.split(' '));
  expect(fingerprint(pod)).toEqual(before);
}, 60_000);
