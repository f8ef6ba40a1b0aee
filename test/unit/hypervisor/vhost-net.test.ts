/**
 * vhost-net on QEMU NICs as Kata enables it: on unless disabled, only when /dev/vhost-net exists
 * (probed; this host has none, so the probe is injected), on the cold command line (`vhost=on` by
 * name, `vhost=on,vhostfds=` with fds) and on the hot path (netdev_add with vhostfds).
 */
import { describe, expect, it } from 'vitest';
import { qemuNetdevOption, qemuNetworkArguments } from '../../../src/hypervisor/qemu.js';
import { networkHotplugCommands } from '../../../src/hypervisor/qmp-network-hotplug.js';
import { probeVhostNet } from '../../../src/hypervisor/vhost-net-probe.js';

const byName = { id: 'net0', tapName: 'tap0_kata', queues: 2, guestMac: '02:00:00:00:00:01' };
const withFds = { id: 'net0', fds: [10, 11], vhostFds: [12, 13], queues: 2, guestMac: '02:00:00:00:00:01' };

describe('vhost-net probe', () => {
  it('is on when /dev/vhost-net exists and it is not disabled', () => {
    expect(probeVhostNet('auto', () => true)).toEqual({ available: true, reason: '/dev/vhost-net is present' });
  });
  it('says why it is off', () => {
    expect(probeVhostNet('auto', () => false).reason).toMatch(/\/dev\/vhost-net is missing/);
    expect(probeVhostNet('off', () => true)).toMatchObject({
      available: false,
      reason: expect.stringMatching(/disabled/),
    });
  });
});

describe('QEMU arguments', () => {
  it('cold, by name: vhost=on when the probe says so, nothing otherwise', () => {
    expect(qemuNetdevOption(byName, { vhostNet: probeVhostNet('auto', () => true).available })).toBe(
      'tap,id=netdev-net0,ifname=tap0_kata,script=no,downscript=no,queues=2,vhost=on',
    );
    expect(qemuNetdevOption(byName, { vhostNet: probeVhostNet('auto', () => false).available })).not.toContain('vhost');
    expect(qemuNetworkArguments(byName, { vhostNet: true })[1]).toContain('vhost=on');
  });

  it('cold, with fds: vhost=on with the vhost fds', () => {
    expect(qemuNetdevOption(withFds)).toBe('tap,id=netdev-net0,fds=10:11,vhost=on,vhostfds=12:13');
  });

  it('hot: netdev_add carries vhost and the vhost fd names', () => {
    const { netdevAdd } = networkHotplugCommands(withFds);
    expect(netdevAdd).toMatchObject({ type: 'tap', vhost: true, vhostfds: expect.stringMatching(/:/) });
  });
});
