/**
 * Physical NICs end to end against a fake sysfs tree that records every write and plays the kernel
 * (unbind drops the driver link, drivers_probe binds the driver_override one): VF MAC through its PF,
 * vfio-pci bind, QEMU cold arguments, QMP hot plug, rebind on detach, refusal for Firecracker.
 */
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, relative } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { QemuNetworkHotplugTarget } from '../../../src/hypervisor/qmp-network-hotplug.js';
import type { NamespaceSnapshot } from '../../../src/netlink/handle.js';
import { createEndpoint } from '../../../src/network/endpoint/create-endpoint.js';
import {
  PhysicalEndpoint,
  readPciDevice,
  refusePhysicalEndpoints,
  type VirtualFunctionMacSetter,
} from '../../../src/network/endpoint/physical-endpoint.js';
import { hypervisorDeviceConfig } from '../../../src/network/hypervisor-devices.js';
import type { PlumbingContext } from '../../../src/network/model/plumbing-context.js';
import { endpointFromState } from '../../../src/network/network.js';
import { interfacesOf, physicalLinksOf, selectEndpointInterfaces } from '../../../src/network/scan.js';
import { bindToVfio, type HostRoots } from '../../../src/network/vfio.js';
import { type FakeQmpHandler, useFakeQmp } from '../hypervisor/fake-qmp-server.js';
import { address, info, link } from './fixtures.js';

const VF = '0000:3b:02.1';
const PF = '0000:3b:00.0';
let root: string;
let roots: HostRoots;
let writes: Array<[string, string]>;

function pciDevice(address: string): string {
  return join(roots.sysfs, 'bus', 'pci', 'devices', address);
}

function bindDriver(address: string, driver: string): void {
  symlinkSync(`../../../bus/pci/drivers/${driver}`, join(pciDevice(address), 'driver'));
}

/** The kernel's side of the sysfs files vcnet writes. */
function playKernel(path: string, value: string): void {
  writes.push([relative(root, path), value]);
  const name = basename(path);
  if (name === 'unbind') {
    const device = pciDevice(value);
    unlinkSync(join(device, 'driver'));
    return;
  }
  if (name === 'drivers_probe') {
    const device = pciDevice(value);
    const override = (existsSync(join(device, 'driver_override.value')) ? readOverride(device) : '').trim();
    if (override && !existsSync(join(device, 'driver'))) bindDriver(value, override);
    return;
  }
  if (name === 'driver_override') {
    writeFileSync(join(dirname(path), 'driver_override.value'), value);
    writeFileSync(path, value.trim() === '' ? '(null)\n' : `${value}\n`);
    return;
  }
  writeFileSync(path, value);
}

function readOverride(device: string): string {
  return readFileSync(join(device, 'driver_override.value'), 'utf8');
}

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'vcnet-sysfs-'));
  roots = { sysfs: join(root, 'sys'), devices: join(root, 'dev'), write: playKernel };
  writes = [];
  for (const driver of ['ixgbevf', 'ixgbe', 'vfio-pci'])
    mkdirSync(join(roots.sysfs, 'bus', 'pci', 'drivers', driver), { recursive: true });
  mkdirSync(join(roots.sysfs, 'kernel', 'iommu_groups', '42'), { recursive: true });
  for (const address of [VF, PF]) {
    mkdirSync(pciDevice(address), { recursive: true });
    writeFileSync(join(pciDevice(address), 'vendor'), '0x8086\n');
    writeFileSync(join(pciDevice(address), 'device'), '0x10ed\n');
    writeFileSync(join(pciDevice(address), 'driver_override'), '(null)\n');
  }
  bindDriver(VF, 'ixgbevf');
  bindDriver(PF, 'ixgbe');
  symlinkSync('../../../kernel/iommu_groups/42', join(pciDevice(VF), 'iommu_group'));
  symlinkSync(`../${PF}`, join(pciDevice(VF), 'physfn'));
  symlinkSync(`../${VF}`, join(pciDevice(PF), 'virtfn3'));
  mkdirSync(join(pciDevice(PF), 'net', 'enp59s0f0'), { recursive: true });
  writeFileSync(join(roots.sysfs, 'bus', 'pci', 'drivers_probe'), '');
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

const vfLink = info({
  link: link({
    index: 2,
    name: 'enp59s2f1',
    kind: undefined,
    parentBus: 'pci',
    parentDevice: VF,
    address: '02:aa:bb:cc:dd:01',
  }),
});
/** A physical endpoint makes no netlink change: its undo sees an empty namespace. */
const emptyNamespace = { links: async () => [], filters: async () => [], changes: () => ({ send: async () => [] }) };
const context = {
  handle: emptyNamespace,
  queues: 1,
  keepFds: false,
  vhostNet: 'off',
  qdiscs: [],
} as unknown as PlumbingContext;
const answerQueryPci: FakeQmpHandler = (command, connection) =>
  connection.reply(
    command,
    command.execute === 'query-pci' ? [{ bus: 0, devices: [{ slot: 4, function: 0, qdev_id: 'net1' }] }] : {},
  );

function makeEndpoint(setMac: VirtualFunctionMacSetter = async () => {}) {
  return new PhysicalEndpoint(1, vfLink, readPciDevice(VF, join(roots.sysfs, 'bus', 'pci', 'devices')), roots, setMac);
}

describe('physical endpoint (VFIO)', () => {
  it("reads and binds under the hostRoots a caller gives (createEndpoint, endpointFromState), never the environment's", () => {
    // A tree somewhere else than /sys: the endpoint must take it from the option, not from VCNET_SYSFS_ROOT.
    const endpoint = createEndpoint(vfLink, { index: 1, model: 'tcfilter', hostRoots: roots }) as PhysicalEndpoint;
    expect(endpoint.type).toBe('physical');
    expect(endpoint.device).toMatchObject({ address: VF, vendorId: '0x8086', deviceId: '0x10ed', driver: 'ixgbevf' });
    const bound = new PhysicalEndpoint(1, vfLink, endpoint.device, roots, async () => {});
    bound.binding = bindToVfio(VF, roots);
    const restored = endpointFromState(JSON.parse(JSON.stringify(bound.save())), {
      hostRoots: roots,
    }) as PhysicalEndpoint;
    writes = [];
    restored.releaseHostDevice();
    expect(writes[0]).toEqual([`sys/bus/pci/devices/${VF}/driver_override`, 'ixgbevf']);
  });

  it('sets the VF MAC through its PF, binds vfio-pci in Kata order, and gives QEMU vfio-pci,host=BDF', async () => {
    const macs: unknown[] = [];
    const endpoint = makeEndpoint(async (owner, mac) => void macs.push({ ...owner, mac }));
    expect(endpoint.device).toMatchObject({ address: VF, vendorId: '0x8086', deviceId: '0x10ed', driver: 'ixgbevf' });
    const plumbing = await endpoint.attach(context);
    expect(macs).toEqual([
      { physicalFunction: PF, physicalFunctionNetdev: 'enp59s0f0', vf: 3, mac: '02:aa:bb:cc:dd:01' },
    ]);
    expect(writes).toEqual([
      [`sys/bus/pci/devices/${VF}/driver_override`, 'vfio-pci'],
      [`sys/bus/pci/devices/${VF}/driver/unbind`, VF],
      ['sys/bus/pci/drivers_probe', VF],
    ]);
    expect(basename(readlinkSync(join(pciDevice(VF), 'driver')))).toBe('vfio-pci');
    expect(plumbing.tapDevicePath).toBe(join(roots.devices, 'vfio', '42'));
    expect(hypervisorDeviceConfig('qemu', [endpoint])).toEqual([
      { endpoint: 'enp59s2f1', config: ['-device', `vfio-pci,host=${VF},id=net1`] },
    ]);
    expect(() => hypervisorDeviceConfig('firecracker', [endpoint])).toThrow(
      /Firecracker cannot take physical NIC enp59s2f1/,
    );

    // Detach, from saved state too: the binding travels with the endpoint.
    const saved = JSON.parse(JSON.stringify(endpoint.save()));
    expect(saved.details.vfio).toMatchObject({ address: VF, hostDriver: 'ixgbevf', iommuGroup: '42' });
    expect(endpointFromState(saved)).toMatchObject({ binding: { hostDriver: 'ixgbevf' } });
    writes = [];
    endpoint.releaseHostDevice();
    expect(writes).toEqual([
      [`sys/bus/pci/devices/${VF}/driver_override`, 'ixgbevf'],
      [`sys/bus/pci/devices/${VF}/driver/unbind`, VF],
      ['sys/bus/pci/drivers_probe', VF],
      [`sys/bus/pci/devices/${VF}/driver_override`, '\n'],
    ]);
    expect(basename(readlinkSync(join(pciDevice(VF), 'driver')))).toBe('ixgbevf');
    endpoint.releaseHostDevice(); // twice is a no-op
    expect(writes).toHaveLength(4);
  });

  it('a VF whose PF refuses the MAC is still passed through (best effort, as Kata)', async () => {
    const endpoint = makeEndpoint(async () => {
      throw new Error('EOPNOTSUPP');
    });
    await endpoint.attach(context);
    expect(basename(readlinkSync(join(pciDevice(VF), 'driver')))).toBe('vfio-pci');
  });

  it('refuses a function without an IOMMU group before writing anything', () => {
    unlinkSync(join(pciDevice(VF), 'iommu_group'));
    expect(() => bindToVfio(VF, roots)).toThrow(/has no IOMMU group.*/);
    expect(writes).toEqual([]);
  });

  it('says so when the probe did not bind vfio-pci', () => {
    const stuck: HostRoots = { ...roots, write: (path, value) => void writes.push([relative(root, path), value]) };
    expect(() => bindToVfio(VF, stuck)).toThrow(`PCI device ${VF} is bound to ixgbevf after the probe, not vfio-pci`);
  });

  const { connected } = useFakeQmp();
  it('hot-plugs with QMP device_add driver vfio-pci (no netdev, no fds)', async () => {
    const { server, client } = await connected();
    server.setHandler(answerQueryPci);
    const endpoint = makeEndpoint();
    await endpoint.hotAttach(context, new QemuNetworkHotplugTarget(client, { commandTimeoutMs: 1_000 }));
    const commands = server.commands.slice(1).map((command) => [command.execute, command.arguments]);
    expect(commands.find(([name]) => name === 'device_add')).toEqual([
      'device_add',
      { driver: 'vfio-pci', id: 'net1', host: VF, bus: 'pci.0' },
    ]);
    expect(commands.map(([name]) => name)).not.toContain('netdev_add');
    expect(endpoint.pciPath).toBe('04');
    expect(basename(readlinkSync(join(pciDevice(VF), 'driver')))).toBe('vfio-pci');
  });

  it('on a q35 VM the function goes into a vcnet root port (pcie.0 takes no hot-plug)', async () => {
    const { server, client } = await connected();
    server.setHandler((command, connection) => {
      if (command.execute === 'qom-get') connection.reply(command, 'pc-q35-7.2-machine');
      else if (command.execute === 'query-pci')
        connection.reply(command, [{ bus: 0, devices: [{ slot: 1, function: 0, qdev_id: 'vcnet-rp0' }] }]);
      else connection.reply(command, {});
    });
    const endpoint = makeEndpoint();
    await endpoint.hotAttach(context, new QemuNetworkHotplugTarget(client, { commandTimeoutMs: 1_000 }));
    const commands = server.commands.slice(1).map((command) => [command.execute, command.arguments]);
    expect(commands.find(([name]) => name === 'device_add')).toEqual([
      'device_add',
      { driver: 'vfio-pci', id: 'net1', host: VF, bus: 'vcnet-rp0', addr: '0x0' },
    ]);
    expect(endpoint.pciPath).toBe('01/00');
  });

  it('a failed hot plug gives the device back to its host driver', async () => {
    const { server, client } = await connected();
    server.setHandler((command, connection) =>
      command.execute === 'device_add'
        ? connection.fail(command, 'GenericError', 'vfio 0000:3b:02.1: group 42 is not viable')
        : answerQueryPci(command, connection),
    );
    const endpoint = makeEndpoint();
    await expect(
      endpoint.hotAttach(context, new QemuNetworkHotplugTarget(client, { commandTimeoutMs: 1_000 })),
    ).rejects.toThrow(/not viable/);
    expect(basename(readlinkSync(join(pciDevice(VF), 'driver')))).toBe('ixgbevf');
  });
});

describe('a hypervisor that cannot take physical NICs is refused before anything is made', () => {
  it('finds the physical links an attach would pass through (read only), and refuses Firecracker and CLH', async () => {
    const snapshot = {
      links: [
        vfLink.link,
        link({ index: 3, name: 'eth0' }),
        link({ index: 4, name: 'bare', kind: undefined, parentBus: 'pci', parentDevice: PF }),
      ],
      addresses: [address('10.0.0.2', 24, { index: 2 }), address('10.0.0.3', 24, { index: 3 })],
      routes: [],
      neighbours: [],
      proxyNeighbours: [],
      qdiscs: [],
    } as unknown as NamespaceSnapshot;
    // "bare" has no address: skipped, so not passed through (Network.addEndpoints selects the same way).
    const physical = physicalLinksOf(selectEndpointInterfaces(interfacesOf(snapshot), new Set()).selected);
    expect(physical).toEqual(['enp59s2f1']);
    expect(() => refusePhysicalEndpoints('firecracker', physical)).toThrow(
      expect.objectContaining({
        code: 'VCNET_PHYSICAL_UNSUPPORTED',
        message: expect.stringMatching(/Firecracker cannot take physical NIC enp59s2f1/),
      }),
    );
    expect(() => refusePhysicalEndpoints('clh', physical)).toThrow(/Cloud Hypervisor/);
    expect(() => refusePhysicalEndpoints('qemu', physical)).not.toThrow();
    expect(() => refusePhysicalEndpoints('firecracker', [])).not.toThrow();
  });
});
