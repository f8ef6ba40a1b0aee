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
