/**
 * The macvtap model and IPv6, against the real kernel: what reaches the VM's /dev/tapN (read here as
 * QEMU would), and pod links too small for IPv6.
 */
import { closeSync, constants, openSync, readSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { Network } from '../../../src/network/network.js';
import { cleanupNamespaces, type TestNamespace } from '../../helpers/namespace.js';
import { fingerprint, makePod } from '../../helpers/pod.js';

const networks: Network[] = [];

function openMacvtap(namespace: TestNamespace): Network {
  const network = Network.open({
    namespacePath: namespace.path,
    model: 'macvtap',
    namespaceCreatedByVcnet: false,
    disableNewNetns: false,
    queues: 1,
    vhostNet: 'auto',
  });
  networks.push(network);
  return network;
}

afterEach(() => {
  for (const network of networks.splice(0)) network.close();
  cleanupNamespaces();
});

/** The destination MACs of the frames queued on a macvtap fd (each after its 10-byte virtio-net header). */
function queuedDestinations(fd: number): string[] {
  const destinations: string[] = [];
  const buffer = Buffer.alloc(65_536);
  for (;;) {
    let length: number;
    try {
      length = readSync(fd, buffer);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EAGAIN') return destinations;
      throw error;
    }
    if (length < 16) return destinations;
    const mac = buffer.subarray(10, 16);
    destinations.push([...mac].map((byte) => byte.toString(16).padStart(2, '0')).join(':'));
  }
}

describe('macvtap and IPv6 neighbour discovery', () => {
  it("passes neighbour solicitations for the guest's addresses to the VM (allmulticast), and detach takes it away", async () => {
    const { pod, node } = makePod();
    const before = fingerprint(pod);
    const network = openMacvtap(pod);
    await network.addEndpoints();
    const macvtap = pod.ipJson<Array<{ ifindex: number; flags: string[] }>>('link', 'show', 'tap0_kata')[0]!;
    expect(macvtap.flags).toContain('ALLMULTI');
    // The VM's end, as QEMU opens it; nonblocking so an empty queue answers EAGAIN.
    const fd = openSync(`/dev/tap${macvtap.ifindex}`, constants.O_RDWR | constants.O_NONBLOCK);
    try {
      queuedDestinations(fd);
      // The node asks for the guest's fd00:200::2: a solicitation to its solicited-node group.
      node.exec('ip', ['addr', 'add', 'fd00:200::1/64', 'dev', 'veth0', 'nodad']);
      // No VM answers, so the ping fails; the solicitation is what counts.
      expect(() => node.exec('ping', ['-6', '-c', '1', '-W', '1', 'fd00:200::2'])).toThrow();
      expect(queuedDestinations(fd)).toContain('33:33:ff:00:00:02');
    } finally {
      closeSync(fd);
    }
    expect((await network.removeEndpoints()).failures).toEqual([]);
    expect(fingerprint(pod)).toEqual(before);
  });
});

describe('macvtap on a pod link below IPv6 minimum MTU', () => {
  it.each([576, 68])('attaches at MTU %i (no IPv6 generation mode to set) and detaches exactly', async (mtu) => {
    const { pod } = makePod();
    pod.exec('ip', ['link', 'set', 'eth0', 'mtu', String(mtu)]);
    const before = fingerprint(pod);
    const network = openMacvtap(pod);
    await network.addEndpoints();
    expect(pod.ipJson<Array<{ mtu: number }>>('link', 'show', 'tap0_kata')[0]!.mtu).toBe(mtu);
    expect((await network.removeEndpoints()).failures).toEqual([]);
    expect(fingerprint(pod)).toEqual(before);
  });
});
