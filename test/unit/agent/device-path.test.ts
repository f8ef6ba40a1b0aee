/**
 * An Interface's devicePath (pciPath) as Kata's agent reads it (kata-containers 7c6ba40c54ea,
 * src/agent/src/pci.rs test_slotfn and test_path, linux_abi.rs test_pcipath_from_dev_tree_path: the
 * values below are those tests' own): taken and refused as the agent takes and refuses them, sent on
 * in the form Kata's runtime writes, and found in the guest's sysfs by slot and function.
 */

import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { create } from '@bufbuild/protobuf';
import { afterEach, describe, expect, it } from 'vitest';
import { InterfaceSchema } from '../../../src/agent/generated/types_pb.js';
import { linkNameAtPciPath } from '../../../src/agent/guest/pci-path.js';
import { interfaceFromJson } from '../../../src/agent/kata-network-json.js';
import { interfaceUpdateOf } from '../../../src/agent/network-request.js';
import { InvalidFieldsError, InvalidInputError } from '../../../src/errors.js';

/** An add-iface request as Kata's kata-network documents it, with the agent's slot.function path. */
const ADD_IFACE = {
  device: 'eth1',
  name: 'eth1',
  IPAddresses: [{ family: 0, address: '172.17.0.3', mask: '16' }],
  mtu: 1500,
  hwAddr: '02:42:ac:11:00:03',
  pciPath: '02.0/01.1',
};

describe("devicePath forms Kata's agent takes", () => {
  it.each([
    ['03.0', '03'],
    ['03', '03'],
    ['03.0/04.0', '03/04'],
    ['03/04', '03/04'],
    ['03.0/04.0/05.0', '03/04/05'],
    ['03/04/05', '03/04/05'],
    ['0a.5/0b.6/0c.7', '0a.5/0b.6/0c.7'],
    ['1f.7', '1f.7'],
    ['02/01', '02/01'],
    ['02/00/01', '02/00/01'],
    ['20/00/02', '20/00/02'],
    ['0A.5/3', '0a.5/03'],
    ['', ''],
    ['0.0.0001', '0.0.0001'],
  ])('takes %j and sends it as %j', (written, sent) => {
    expect(interfaceFromJson({ ...ADD_IFACE, pciPath: undefined, devicePath: written }).devicePath).toBe(sent);
  });

  it("takes add-iface's pciPath with a function and sends the function on", () => {
    expect(interfaceFromJson(ADD_IFACE).devicePath).toBe('02/01.1');
  });
});

describe("devicePath forms Kata's agent refuses", () => {
  it.each(['20', '20.0', '00.8', '//', 'xyz', 'xy.0', '00.x', '00.0.0', '00.0/', '00/', '20/00', '02/-1', ' 02'])(
    'refuses %j, naming the key, the value and the forms accepted',
    (written) => {
      let refusal: unknown;
      try {
        interfaceFromJson({ ...ADD_IFACE, pciPath: written });
      } catch (error) {
        refusal = error;
      }
      expect(refusal).toBeInstanceOf(InvalidFieldsError);
      const [issue] = (refusal as InvalidFieldsError).issues;
      expect(issue?.field).toBe('interface.pciPath');
      expect(issue?.value).toBe(written);
      expect(issue?.accepted).toMatch(
        /^"", a PCI path of slots in hex \(00-1f\).*optional \.function \(0-7\).*"02\.0\/01\.1"/,
      );
    },
  );
});

describe("vcnet's guest agent", () => {
  const roots: string[] = [];
  afterEach(() => {
    for (const root of roots.splice(0)) rmSync(root, { recursive: true, force: true });
  });

  it('takes a request with a function in devicePath and no MAC, and looks for that function', () => {
    const update = interfaceUpdateOf(create(InterfaceSchema, { devicePath: '02.0/01.1' }));
    expect(update.pciPath).toBe('02/01.1');
  });

  it('refuses a devicePath the agent refuses, naming it', () => {
    const refused = () =>
      interfaceUpdateOf(create(InterfaceSchema, { devicePath: '02/20', hwAddr: '02:42:ac:11:00:03' }));
    expect(refused).toThrow(InvalidInputError);
    expect(refused).toThrow(/^invalid interface\.devicePath: "02\/20" \(accepted: "", a PCI path/);
  });

  it('finds the interface of a function behind a bridge, and one under a NUMA root bus', () => {
    const sysfs = mkdtempSync(join(tmpdir(), 'vcnet-sysfs-'));
    roots.push(sysfs);
    for (const directory of [
      'devices/pci0000:00/0000:00:02.0/0000:01:01.0/virtio3/net/eth1',
      'devices/pci0000:00/0000:00:02.0/0000:01:01.1/virtio4/net/eth2',
      'devices/pci0000:20/0000:20:00.0/0000:21:02.0/virtio5/net/eth3',
    ]) {
      mkdirSync(join(sysfs, directory), { recursive: true });
    }
    expect(linkNameAtPciPath('02/01.1', sysfs)).toBe('eth2');
    expect(linkNameAtPciPath('02/01', sysfs)).toBe('eth1');
    expect(linkNameAtPciPath('02.0/01.0', sysfs)).toBe('eth1');
    expect(linkNameAtPciPath('02/01.2', sysfs)).toBeUndefined();
    expect(linkNameAtPciPath('20/00/02', sysfs)).toBe('eth3');
  });
});
