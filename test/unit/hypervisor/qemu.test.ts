import { describe, expect, it } from 'vitest';
import { InvalidInputError } from '../../../src/errors.js';
import type { NetworkDevice } from '../../../src/hypervisor/device.js';
import { probeKvm } from '../../../src/hypervisor/kvm-probe.js';
import {
  escapeQemuOptionValue,
  qemuNetdevOption,
  qemuNetworkArguments,
  qemuNicDeviceOption,
} from '../../../src/hypervisor/qemu.js';
import { buildQemuCommand, mapDeviceFdsToChildSlots } from '../../../src/hypervisor/qemu-process.js';

const mac = '02:42:AC:11:00:02';

describe('QEMU NIC arguments', () => {
  it('one tap fd: fd=, no vhost unless vhost fds are given', () => {
    const device: NetworkDevice = { id: 'net0', tapName: 'tap0_kata', fds: [20], queues: 1, guestMac: mac };
    expect(qemuNetworkArguments(device)).toEqual([
      '-netdev',
      'tap,id=netdev-net0,fd=20',
      '-device',
      'virtio-net-pci,netdev=netdev-net0,id=net0,mac=02:42:ac:11:00:02,romfile=',
    ]);
    expect(qemuNetdevOption({ ...device, vhostFds: [21] })).toBe('tap,id=netdev-net0,fd=20,vhost=on,vhostfd=21');
  });

  it('multi-queue fds: fds=a:b:c (no queues=, QEMU 7.2 refuses it with fds=), mq=on and 2N+2 vectors', () => {
    const device: NetworkDevice = { id: 'net1', fds: [20, 21, 22], vhostFds: [30, 31, 32], queues: 3, guestMac: mac };
    expect(qemuNetdevOption(device)).toBe('tap,id=netdev-net1,fds=20:21:22,vhost=on,vhostfds=30:31:32');
    expect(qemuNicDeviceOption(device)).toBe(
      'virtio-net-pci,netdev=netdev-net1,id=net1,mac=02:42:ac:11:00:02,romfile=,mq=on,vectors=8',
    );
  });

  it('by name: ifname= with script=no,downscript=no, queues=N for multi-queue, never vhost=on', () => {
    expect(qemuNetdevOption({ id: 'net0', tapName: 'tap0_kata', queues: 1, guestMac: mac })).toBe(
      'tap,id=netdev-net0,ifname=tap0_kata,script=no,downscript=no',
    );
    expect(qemuNetdevOption({ id: 'net0', tapName: 'tap0_kata', queues: 4, guestMac: mac })).toBe(
      'tap,id=netdev-net0,ifname=tap0_kata,script=no,downscript=no,queues=4',
    );
  });

  it('fds win over the tap name when both are given', () => {
    expect(qemuNetdevOption({ id: 'net0', tapName: 'tap0_kata', fds: [9], queues: 1, guestMac: mac })).toBe(
      'tap,id=netdev-net0,fd=9',
    );
  });

  it('mtu becomes host_mtu; a pciAddress pins bus and slot', () => {
    const device: NetworkDevice = { id: 'net2', tapName: 't', queues: 1, guestMac: mac, mtu: 1450, pciAddress: '0x0a' };
    expect(qemuNicDeviceOption(device)).toBe(
      'virtio-net-pci,netdev=netdev-net2,id=net2,mac=02:42:ac:11:00:02,romfile=,host_mtu=1450,bus=pci.0,addr=0xa.0',
    );
    expect(qemuNicDeviceOption(device, { bus: 'pci.1' })).toContain('bus=pci.1,addr=0xa.0');
  });

  it('vhost-user: a socket chardev and a vhost-user netdev, commas in the path escaped', () => {
    const device: NetworkDevice = { id: 'vu0', vhostUserSocket: '/run/a,b.sock', queues: 2, guestMac: mac };
    expect(qemuNetworkArguments(device)).toEqual([
      '-chardev',
      'socket,id=chardev-vu0,path=/run/a,,b.sock',
      '-netdev',
      'vhost-user,id=netdev-vu0,chardev=chardev-vu0,queues=2',
      '-device',
      'virtio-net-pci,netdev=netdev-vu0,id=vu0,mac=02:42:ac:11:00:02,romfile=,mq=on,vectors=6',
    ]);
    expect(escapeQemuOptionValue('a,,b')).toBe('a,,,,b');
  });

  it('validates before building', () => {
    expect(() => qemuNetworkArguments({ id: 'net0', tapName: 't', queues: 1, guestMac: 'nope' })).toThrow(
      InvalidInputError,
    );
  });
});

describe('QEMU command line', () => {
  it('renumbers tap and vhost fds to child stdio slots 3, 4, ... in device order', () => {
    const devices: NetworkDevice[] = [
      { id: 'net0', fds: [40, 41], vhostFds: [50, 51], queues: 2, guestMac: mac },
      { id: 'net1', tapName: 'tap1', queues: 1, guestMac: '02:00:00:00:00:09' },
      { id: 'net2', fds: [60], queues: 1, guestMac: '02:00:00:00:00:0a' },
    ];
    const { devices: mapped, inheritedFds } = mapDeviceFdsToChildSlots(devices);
    expect(inheritedFds).toEqual([40, 41, 50, 51, 60]);
    expect(mapped[0]).toMatchObject({ fds: [3, 4], vhostFds: [5, 6] });
    expect(mapped[1]).toEqual(devices[1]);
    expect(mapped[2]).toMatchObject({ fds: [7] });
    expect(devices[0]?.fds).toEqual([40, 41]); // the caller's description is not changed
  });

  it('defaults to TCG on i440fx with QMP and a captured serial console; nsenter for a namespace', () => {
    const command = buildQemuCommand({
      qmpSocketPath: '/tmp/x/qmp.sock',
      networkNamespacePath: '/run/netns/pod',
      networkDevices: [{ id: 'net0', fds: [40], queues: 1, guestMac: mac }],
      startPaused: true,
      extraArguments: ['-kernel', '/boot/vmlinuz'],
    });
    expect(command.command).toBe('nsenter');
    expect(command.args.slice(0, 3)).toEqual(['--net=/run/netns/pod', '--', 'qemu-system-x86_64']);
    const qemuArgs = command.args.slice(3);
    expect(qemuArgs.join(' ')).toContain('-accel tcg -machine pc');
    expect(qemuArgs.join(' ')).toContain('-serial stdio');
    expect(qemuArgs.join(' ')).toContain('-qmp unix:/tmp/x/qmp.sock,server=on,wait=off -S');
    expect(qemuArgs).toContain('tap,id=netdev-net0,fd=3');
    expect(qemuArgs.slice(-2)).toEqual(['-kernel', '/boot/vmlinuz']);
    expect(command.inheritedFds).toEqual([40]);
  });

  it('keeps the accelerator a parameter and can log the serial console to a file', () => {
    const command = buildQemuCommand({ accelerator: 'kvm', serialLogPath: '/tmp/serial,1.log' });
    expect(command.command).toBe('qemu-system-x86_64');
    expect(command.args.join(' ')).toContain('-accel kvm');
    expect(command.args.join(' ')).toContain('-serial file:/tmp/serial,,1.log');
    expect(command.args).not.toContain('-qmp');
  });

  it('refuses launch options a plain JavaScript caller gets wrong, naming the key and what is accepted', () => {
    const refused = (options: unknown) => {
      try {
        buildQemuCommand(options as Parameters<typeof buildQemuCommand>[0]);
      } catch (error) {
        expect(error).toBeInstanceOf(InvalidInputError);
        return (error as Error).message;
      }
      throw new Error('accepted');
    };
    expect(refused({ qmpSocket: '/tmp/q.sock' })).toMatch(
      /invalid options key: "qmpSocket".*did you mean qmpSocketPath/,
    );
    expect(refused({ memoryMiB: '512' })).toMatch(/invalid memoryMiB: "512" \(accepted: an integer from 16/);
    expect(refused({ memoryMiB: 8 })).toMatch(/invalid memoryMiB: 8/);
    expect(refused({ extraArguments: '-S' })).toMatch(/invalid extraArguments: "-S" \(accepted: an array of/);
    expect(refused({ startPaused: 'yes' })).toMatch(/invalid startPaused: "yes" \(accepted: true or false\)/);
    expect(refused({ networkDevices: {} })).toMatch(/invalid networkDevices/);
    expect(refused('pc')).toMatch(/invalid options: "pc"/);
    expect(refused({ binary: '' })).toMatch(/invalid binary: ""/);
  });
});

describe('probeKvm arguments', () => {
  it('refuses a timeout or option it cannot use before starting anything', async () => {
    await expect(probeKvm('5s' as unknown as number)).rejects.toThrow(/invalid timeoutMs: "5s"/);
    await expect(probeKvm(0)).rejects.toThrow(/invalid timeoutMs: 0/);
    await expect(probeKvm(1000, { kernel: '/boot/x' } as never)).rejects.toThrow(/did you mean kernelPath/);
  });
});
