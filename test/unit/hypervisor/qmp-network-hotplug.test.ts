import { afterEach, describe, expect, it } from 'vitest';
import { classifyError } from '../../../src/errors.js';
import type { HotplugTarget, NetworkDevice } from '../../../src/hypervisor/device.js';
import {
  DeviceNotHotpluggableError,
  DeviceUnplugTimeoutError,
  NetworkHotplugError,
  QmpCommandError,
  qmpRemovalOf,
  UnsupportedByHypervisorError,
} from '../../../src/hypervisor/errors.js';
import { machineTypeOfQomType } from '../../../src/hypervisor/qemu-hotplug-ports.js';
import {
  hotplugNetworkDevice,
  networkHotplugCommands,
  QemuNetworkHotplugTarget,
  setUnplugWaitTestHook,
  unplugNetworkDevice,
} from '../../../src/hypervisor/qmp-network-hotplug.js';
import { type FakeQmpServer, useFakeQmp } from './fake-qmp-server.js';

const device: NetworkDevice = { id: 'net1', tapName: 'tap1_kata', queues: 1, guestMac: '02:42:AC:11:00:03' };
const queryPci = [
  {
    bus: 0,
    devices: [
      { slot: 0, function: 0, qdev_id: '' },
      { slot: 3, function: 0, qdev_id: 'net1' },
    ],
  },
];

const { connected } = useFakeQmp();

const sent = (server: FakeQmpServer) => server.commands.slice(1).map((command) => [command.execute, command.arguments]);

describe('NIC hot-plug commands', () => {
  it('netdev_add by ifname and device_add on pci.0, typed as QEMU 7.2 wants them', () => {
    expect(networkHotplugCommands({ ...device, queues: 2, mtu: 1400, pciAddress: '7' })).toEqual({
      netdevAdd: { type: 'tap', id: 'netdev-net1', ifname: 'tap1_kata', script: 'no', downscript: 'no', queues: 2 },
      deviceAdd: {
        driver: 'virtio-net-pci',
        id: 'net1',
        netdev: 'netdev-net1',
        mac: '02:42:ac:11:00:03',
        romfile: '',
        bus: 'pci.0',
        mq: true,
        vectors: 6,
        host_mtu: 1400,
        addr: '0x7.0',
      },
    });
  });

  it('refers to passed fds by their getfd names, and refuses a device with neither tap name nor fds', () => {
    const { netdevAdd } = networkHotplugCommands({
      id: 'net1',
      fds: [10, 11],
      vhostFds: [12, 13],
      queues: 2,
      guestMac: '02:00:00:00:00:01',
    });
    expect(netdevAdd).toEqual({
      type: 'tap',
      id: 'netdev-net1',
      fds: 'netdev-net1-fd0:netdev-net1-fd1',
      vhost: true,
      vhostfds: 'netdev-net1-vhostfd0:netdev-net1-vhostfd1',
    });
    expect(
      networkHotplugCommands({ id: 'net2', fds: [10], queues: 1, guestMac: '02:00:00:00:00:01' }).netdevAdd,
    ).toMatchObject({ fd: 'netdev-net2-fd0' });
    // QEMU 7.2 refuses vhostfds with fd ("... and vhostfds= are invalid with fd="): one queue takes vhostfd.
    expect(
      networkHotplugCommands({ id: 'net1', guestMac: '02:00:00:00:00:01', queues: 1, fds: [3], vhostFds: [4] })
        .netdevAdd,
    ).toEqual({ type: 'tap', id: 'netdev-net1', fd: 'netdev-net1-fd0', vhost: true, vhostfd: 'netdev-net1-vhostfd0' });
    expect(() => networkHotplugCommands({ id: 'net3', queues: 1, guestMac: '02:00:00:00:00:01' })).toThrow(
      /tapName|fds/,
    );
    expect(() =>
      networkHotplugCommands({ id: 'vu', vhostUserSocket: '/run/vu.sock', queues: 1, guestMac: '02:00:00:00:00:01' }),
    ).toThrow(UnsupportedByHypervisorError);
  });
});

describe('hotplugNetworkDevice', () => {
  it('adds the netdev, then the device, and reports the PCI path', async () => {
    const { server, client } = await connected();
    server.setHandler((command, connection) =>
      connection.reply(command, command.execute === 'query-pci' ? queryPci : {}),
    );
    await expect(hotplugNetworkDevice(client, device)).resolves.toEqual({
      deviceId: 'net1',
      netdevId: 'netdev-net1',
      pciPath: '03',
    });
    expect(sent(server).map(([name]) => name)).toEqual(['netdev_add', 'device_add', 'query-pci']);
  });

  it('removes the netdev again when device_add fails', async () => {
    const { server, client } = await connected();
    server.setHandler((command, connection) => {
      if (command.execute === 'device_add') connection.fail(command, 'GenericError', "Duplicate device ID 'net1'");
      else connection.reply(command, {});
    });
    const error = await hotplugNetworkDevice(client, device).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(NetworkHotplugError);
    expect(error).toMatchObject({ code: 'VCNET_HOTPLUG_FAILED', stage: 'device_add', rolledBack: true });
    expect((error as Error).cause).toBeInstanceOf(QmpCommandError);
    expect(sent(server)).toEqual([
      ['netdev_add', expect.objectContaining({ id: 'netdev-net1' })],
      ['device_add', expect.objectContaining({ id: 'net1' })],
      ['netdev_del', { id: 'netdev-net1' }],
    ]);
    // The id is taken: del-iface is no fix for a NIC no record names (VCNET_HOTPLUG_ID_TAKEN's case):
    // the hint gives the QMP commands that remove it, as that error's does.
    const hint = (error as { hint: string }).hint;
    expect(hint).toContain('the VM already has a device or netdev with this id');
    expect(hint).toContain(qmpRemovalOf('net1'));
    expect(hint).toContain(
      '{"execute":"device_del","arguments":{"id":"net1"}}, wait for its DEVICE_DELETED event, then {"execute":"netdev_del","arguments":{"id":"netdev-net1"}}',
    );
    expect(hint).toContain(
      "vcnet del-iface removes it only when it is the NIC of an endpoint a sandbox's record names",
    );
  });

  it('gives the same hint when netdev_add finds the netdev id taken', async () => {
    const { server, client } = await connected();
    server.setHandler((command, connection) =>
      connection.fail(command, 'GenericError', "Duplicate ID 'netdev-net1' for netdev"),
    );
    const error = await hotplugNetworkDevice(client, device).catch((caught: unknown) => caught);
    expect(error).toMatchObject({ stage: 'netdev_add', rolledBack: true });
    expect((error as { hint: string }).hint).toContain(qmpRemovalOf('net1'));
  });

  it('says so when the rollback fails too', async () => {
    const { server, client } = await connected();
    server.setHandler((command, connection) => {
      if (command.execute === 'netdev_add') connection.reply(command, {});
      else connection.fail(command, 'GenericError', 'nope');
    });
    const error = await hotplugNetworkDevice(client, device).catch((caught: unknown) => caught);
    expect(error).toMatchObject({ stage: 'device_add', rolledBack: false });
    expect((error as Error).message).toContain('NOT removed');
  });

  it('adds nothing else when netdev_add fails', async () => {
    const { server, client } = await connected();
    server.setHandler((command, connection) => connection.fail(command, 'GenericError', 'could not open tap'));
    const error = await hotplugNetworkDevice(client, device).catch((caught: unknown) => caught);
    expect(error).toMatchObject({ stage: 'netdev_add' });
    expect(sent(server).map(([name]) => name)).toEqual(['netdev_add']);
  });
});

describe('unplugNetworkDevice', () => {
  it('device_del, waits for DEVICE_DELETED of that device, then netdev_del', async () => {
    const { server, client } = await connected();
    server.setHandler((command, connection) => {
      connection.reply(command, {});
      if (command.execute === 'device_del') {
        connection.event('DEVICE_DELETED', { device: 'someone-else' });
        connection.event('DEVICE_DELETED', { device: 'net1', path: '/machine/peripheral/net1' });
      }
    });
    await unplugNetworkDevice(client, 'net1', { timeoutMs: 2_000 });
    expect(sent(server)).toEqual([
      ['device_del', { id: 'net1' }],
      ['netdev_del', { id: 'netdev-net1' }],
    ]);
  });

  it('catches a DEVICE_DELETED that arrives before the reply to device_del', async () => {
    const { server, client } = await connected();
    server.setHandler((command, connection) => {
      if (command.execute === 'device_del') connection.event('DEVICE_DELETED', { device: 'net1' });
      connection.reply(command, {});
    });
    await expect(unplugNetworkDevice(client, 'net1', { timeoutMs: 2_000 })).resolves.toBeUndefined();
  });

  it('gives up after the timeout when the guest never releases the device, keeping the netdev', async () => {
    const { server, client } = await connected();
    const error = await unplugNetworkDevice(client, 'net1', { timeoutMs: 50 }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(DeviceUnplugTimeoutError);
    expect(error).toMatchObject({ code: 'VCNET_UNPLUG_TIMEOUT', deviceId: 'net1', timeoutMs: 50 });
    expect(sent(server).map(([name]) => name)).toEqual(['device_del']);
    expect(client.listenerCount('event')).toBe(0);
  });

  describe('with the unplug wait seam set (a test that only sits the wait out)', () => {
    afterEach(() => setUnplugWaitTestHook(undefined));

    it("waits what the hook gives instead of the caller's wait, and the error quotes the wait used", async () => {
      const { client } = await connected();
      const asked: number[] = [];
      setUnplugWaitTestHook((productMs) => {
        asked.push(productMs);
        return 50;
      });
      const error = await unplugNetworkDevice(client, 'net1', { timeoutMs: 600_000 }).catch(
        (caught: unknown) => caught,
      );
      expect(asked).toEqual([600_000]);
      expect(error).toBeInstanceOf(DeviceUnplugTimeoutError);
      expect(error).toMatchObject({ timeoutMs: 50, message: 'the guest did not release device net1 within 50 ms' });
    });

    it('is given the default wait (10 s) when the caller names none', async () => {
      const { client } = await connected();
      const asked: number[] = [];
      setUnplugWaitTestHook((productMs) => {
        asked.push(productMs);
        return 20;
      });
      await expect(unplugNetworkDevice(client, 'net1')).rejects.toBeInstanceOf(DeviceUnplugTimeoutError);
      expect(asked).toEqual([10_000]);
    });
  });

  it('passes DeviceNotFound through as a typed error and stops waiting', async () => {
    const { server, client } = await connected();
    server.setHandler((command, connection) => connection.fail(command, 'DeviceNotFound', "Device 'nope' not found"));
    const error = await unplugNetworkDevice(client, 'nope', { timeoutMs: 60_000 }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(QmpCommandError);
    expect(error).toMatchObject({ errorClass: 'DeviceNotFound' });
    expect(client.listenerCount('event')).toBe(0);
  });

  it("says a NIC on q35's pcie.0 cannot be unplugged while the VM runs (QEMU 7.2's refusal), keeping the netdev", async () => {
    const { server, client } = await connected();
    server.setHandler((command, connection) =>
      connection.fail(command, 'GenericError', "Bus 'pcie.0' does not support hotplugging"),
    );
    const error = await unplugNetworkDevice(client, 'net0', { timeoutMs: 60_000 }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(DeviceNotHotpluggableError);
    expect(error).toMatchObject({ code: 'VCNET_HYPERVISOR_UNSUPPORTED', deviceId: 'net0' });
    expect((error as Error).message).toContain('net0 cannot be unplugged while the VM runs');
    expect((error as { hint?: string }).hint).toContain('bus=boot-rp0,addr=0x0');
    expect((error as Error).cause).toBeInstanceOf(QmpCommandError);
    expect(sent(server).map(([name]) => name)).toEqual(['device_del']);
    expect(client.listenerCount('event')).toBe(0);
  });
});

describe('QemuNetworkHotplugTarget', () => {
  it("is the network layer's HotplugTarget", async () => {
    const { server, client } = await connected();
    server.setHandler((command, connection) =>
      connection.reply(command, command.execute === 'query-pci' ? queryPci : {}),
    );
    const target: HotplugTarget = new QemuNetworkHotplugTarget(client);
    await expect(target.hotplugNetworkDevice(device)).resolves.toMatchObject({ pciPath: '03' });
  });
  // query-pci of a q35 VM started with qemuHotplugPortArguments('q35', 2): the root ports at slots 1, 2.
  const q35Pci = [
    {
      bus: 0,
      devices: [
        { slot: 0, function: 0, qdev_id: '' },
        { slot: 1, function: 0, qdev_id: 'vcnet-rp0', pci_bridge: { devices: [] } },
        { slot: 2, function: 0, qdev_id: 'vcnet-rp1', pci_bridge: { devices: [] } },
        { slot: 31, function: 0, qdev_id: '' },
      ],
    },
  ];
  // A fake QEMU of that machine type (undefined: one that refuses qom-get) whose buses take one device each.
  const machine = (qomType: string | undefined, pci: unknown) => (server: FakeQmpServer) => {
    const taken = new Map<unknown, unknown>();
    server.setHandler((command, connection) => {
      const args = command.arguments ?? {};
      if (command.execute === 'qom-get' && args.path === '/machine') {
        if (qomType === undefined)
          connection.fail(command, 'CommandNotFound', 'The command qom-get has not been found');
        else connection.reply(command, qomType);
      } else if (command.execute === 'device_add' && args.bus !== 'pci.0' && taken.has(args.bus)) {
        const holder = `virtio-net-pci,id=${String(taken.get(args.bus))}`;
        connection.fail(
          command,
          'GenericError',
          `PCI: slot 0 function 0 not available for virtio-net-pci, in use by ${holder}`,
        );
      } else {
        if (command.execute === 'device_add') taken.set(args.bus, args.id);
        connection.reply(command, command.execute === 'query-pci' ? pci : {});
      }
    });
  };

  it('asks QEMU its machine type once; on q35 each NIC goes into a free vcnet root port', async () => {
    const { server, client } = await connected();
    machine('pc-q35-7.2-machine', q35Pci)(server);
    const target = new QemuNetworkHotplugTarget(client);
    await expect(target.hotplugNetworkDevice(device)).resolves.toMatchObject({ pciPath: '01/00' });
    await expect(target.hotplugNetworkDevice({ ...device, id: 'net2', tapName: 'tap2_kata' })).resolves.toMatchObject({
      pciPath: '02/00',
    });
    const commands = sent(server);
    expect(commands.filter(([name]) => name === 'qom-get')).toEqual([
      ['qom-get', { path: '/machine', property: 'type' }],
    ]);
    // The taken port refuses net2 (its netdev is removed again) and the next port takes it.
    expect(commands.filter(([name]) => name === 'device_add').map(([, args]) => args)).toEqual([
      expect.objectContaining({ id: 'net1', bus: 'vcnet-rp0', addr: '0x0' }),
      expect.objectContaining({ id: 'net2', bus: 'vcnet-rp0', addr: '0x0' }),
      expect.objectContaining({ id: 'net2', bus: 'vcnet-rp1', addr: '0x0' }),
    ]);
    expect(commands.filter(([name]) => name === 'netdev_del')).toEqual([['netdev_del', { id: 'netdev-net2' }]]);
  });

  it('on q35 without vcnet root ports: refused as a capacity error (not bad input), with the -device line that gives the VM one', async () => {
    const { server, client } = await connected();
    machine('pc-q35-7.2-machine', [{ bus: 0, devices: [{ slot: 0, function: 0, qdev_id: '' }] }])(server);
    const error = await new QemuNetworkHotplugTarget(client)
      .hotplugNetworkDevice(device)
      .catch((caught: unknown) => caught);
    expect(error).toMatchObject({ code: 'VCNET_HOTPLUG_NO_SLOT', deviceId: 'net1' });
    expect(classifyError(error)).toMatchObject({ exit: 'FAILED', agent: 'RESOURCE_EXHAUSTED' });
    expect(String((error as { hint?: string }).hint)).toContain(
      '-device pcie-root-port,id=vcnet-rp0,bus=pcie.0,chassis=32,slot=1',
    );
    expect(sent(server).map(([name]) => name)).not.toContain('netdev_add');
  });

  it('on q35 with every vcnet root port taken: the hint names the next ports, not ones the VM has', async () => {
    const { server, client } = await connected();
    machine('pc-q35-7.2-machine', q35Pci)(server);
    const target = new QemuNetworkHotplugTarget(client);
    await target.hotplugNetworkDevice(device);
    await target.hotplugNetworkDevice({ ...device, id: 'net2', tapName: 'tap2_kata' });
    const error = await target
      .hotplugNetworkDevice({ ...device, id: 'net3', tapName: 'tap3_kata' })
      .catch((caught: unknown) => caught);
    expect(error).toMatchObject({ code: 'VCNET_HOTPLUG_NO_SLOT', deviceId: 'net3' });
    const hint = String((error as { hint?: string }).hint);
    expect(hint).toContain('-device pcie-root-port,id=vcnet-rp2,bus=pcie.0,chassis=34,slot=3');
    expect(hint).toContain('then vcnet-rp3 with chassis=35,slot=4');
    expect(hint).not.toMatch(/id=vcnet-rp[01],/);
  });

  it('on i440fx with vcnet-bridge0 full: the hint names vcnet-bridge1', async () => {
    const { server, client } = await connected();
    const pcPci = [
      {
        bus: 0,
        devices: [
          { slot: 0, function: 0, qdev_id: '' },
          { slot: 5, function: 0, qdev_id: 'vcnet-bridge0', pci_bridge: { devices: [] } },
        ],
      },
    ];
    server.setHandler((command, connection) => {
      if (command.execute === 'qom-get') connection.reply(command, 'pc-i440fx-7.2-machine');
      else if (command.execute === 'device_add')
        connection.fail(command, 'GenericError', 'PCI: no slot/function available for virtio-net-pci, all in use');
      else connection.reply(command, command.execute === 'query-pci' ? pcPci : {});
    });
    const error = await new QemuNetworkHotplugTarget(client).hotplugNetworkDevice(device).catch((caught) => caught);
    expect(error).toMatchObject({ code: 'VCNET_HOTPLUG_NO_SLOT' });
    expect(String((error as { hint?: string }).hint)).toContain(
      '-device pci-bridge,id=vcnet-bridge1,bus=pci.0,chassis_nr=33',
    );
  });

  it('on i440fx, or when QEMU does not say, the NIC goes onto pci.0 as before', async () => {
    for (const qomType of ['pc-i440fx-7.2-machine', undefined]) {
      const { server, client } = await connected();
      machine(qomType, queryPci)(server);
      await expect(new QemuNetworkHotplugTarget(client).hotplugNetworkDevice(device)).resolves.toMatchObject({
        pciPath: '03',
      });
      expect(sent(server).find(([name]) => name === 'device_add')?.[1]).toMatchObject({ bus: 'pci.0' });
    }
  });

  it('a bus given by the caller is used without asking', async () => {
    const { server, client } = await connected();
    machine('pc-q35-7.2-machine', q35Pci)(server);
    await new QemuNetworkHotplugTarget(client, { bus: 'vcnet-rp1' }).hotplugNetworkDevice(device);
    expect(sent(server).map(([name]) => name)).toEqual(['netdev_add', 'device_add', 'query-pci']);
    expect(sent(server)[1]?.[1]).toMatchObject({ bus: 'vcnet-rp1' });
  });
});

describe('machineTypeOfQomType', () => {
  it('reads the family from the QOM type name of /machine', () => {
    expect(machineTypeOfQomType('pc-q35-7.2-machine')).toBe('q35');
    expect(machineTypeOfQomType('pc-q35-2.4-machine')).toBe('q35');
    expect(machineTypeOfQomType('pc-i440fx-7.2-machine')).toBe('pc');
    expect(machineTypeOfQomType('pc-1.0-machine')).toBe('pc');
    expect(machineTypeOfQomType('microvm-machine')).toBeUndefined();
    expect(machineTypeOfQomType('isapc-machine')).toBeUndefined();
  });
});
