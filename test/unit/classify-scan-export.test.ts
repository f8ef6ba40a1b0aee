/**
 * The exported ScannedInterface is what the exported classifyScan returns (it used to be exported alone,
 * not matching what scanNamespace answers, with no exported function producing it).
 */
import { describe, expect, it } from 'vitest';
import type { NamespaceScan, ScannedInterface } from '../../src/index.js';
import * as entry from '../../src/index.js';

describe('classifyScan', () => {
  it('is exported and classifies a recorded scan: a veth with an address, a bridge, a link without an address', () => {
    const link = (index: number, name: string, kind: string | undefined) => ({
      index,
      name,
      kind,
      mtu: 1500,
      flags: 0x1043,
      mac: `02:00:00:00:00:0${index}`,
    });
    const scan = {
      interfaces: [
        {
          link: link(2, 'eth0', 'veth'),
          addresses: [{ address: '10.0.0.2', prefixLength: 24, family: 4 }],
          routes: [],
          neighbours: [],
        },
        {
          link: link(3, 'br0', 'bridge'),
          addresses: [{ address: '10.1.0.1', prefixLength: 24, family: 4 }],
          routes: [],
          neighbours: [],
        },
        { link: link(4, 'eth1', 'veth'), addresses: [], routes: [], neighbours: [] },
      ],
    } as unknown as NamespaceScan;
    const classified: ScannedInterface[] = entry.classifyScan(scan);
    expect(
      classified.map((item) => [
        item.info.link.name,
        item.endpointType,
        item.unsupported?.code,
        item.skipped !== undefined,
      ]),
    ).toEqual([
      ['eth0', 'virtual', undefined, false],
      ['br0', undefined, 'VCNET_UNSUPPORTED_INTERFACE', false],
      ['eth1', 'virtual', undefined, true],
    ]);
  });

  it("shows vcnet's own devices as a VM's, not as pod links without an address", () => {
    const device = (index: number, name: string, group = 0) => ({
      link: { index, name, kind: 'tun', mtu: 1500, flags: 0x1043, group, mac: `02:00:00:00:01:0${index}` },
      addresses: [],
      routes: [],
      neighbours: [],
    });
    const scan = {
      interfaces: [
        device(5, 'tap0_kata', 0x7663),
        device(6, 'ifb1_kata'),
        device(7, 'vm-nic', 0x7663),
        device(8, 'tap9'),
      ],
    } as unknown as NamespaceScan;
    const vmDevice = expect.stringMatching(/^a VM's device, not a pod interface/);
    expect(entry.classifyScan(scan).map((item) => [item.info.link.name, item.skipped, item.endpointType])).toEqual([
      ['tap0_kata', vmDevice, undefined],
      ['ifb1_kata', vmDevice, undefined],
      ['vm-nic', vmDevice, undefined],
      ['tap9', 'no address', undefined],
    ]);
  });
});
