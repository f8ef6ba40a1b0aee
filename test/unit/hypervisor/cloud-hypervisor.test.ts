import { describe, expect, it } from 'vitest';
import { InvalidInputError } from '../../../src/errors.js';
import {
  cloudHypervisorAddNetRequest,
  cloudHypervisorNetArgument,
  cloudHypervisorNetConfig,
  cloudHypervisorRemoveDeviceRequest,
} from '../../../src/hypervisor/cloud-hypervisor.js';
import type { NetworkDevice } from '../../../src/hypervisor/device.js';
import { UnsupportedByHypervisorError } from '../../../src/hypervisor/errors.js';
import { cloudHypervisorSchemas, errorsOf, validatorFor } from './api-schemas.js';

const netConfigSchema = validatorFor(cloudHypervisorSchemas, 'NetConfig');
const removeDeviceSchema = validatorFor(cloudHypervisorSchemas, 'VmRemoveDevice');
const rateLimiterSchema = validatorFor(cloudHypervisorSchemas, 'RateLimiterConfig');

const byName: NetworkDevice = { id: 'net0', tapName: 'tap0_kata', queues: 1, guestMac: '02:42:AC:11:00:02' };
const byFds: NetworkDevice = {
  id: 'net1',
  tapName: 'tap1_kata',
  fds: [20, 21],
  queues: 2,
  guestMac: '02:42:ac:11:00:03',
  hostMac: '0A:00:00:00:00:01',
  mtu: 1500,
  rateLimit: { rxBitsPerSecond: 1_000_000_000 },
  pciAddress: '06',
};
const vhostUser: NetworkDevice = {
  id: 'vu0',
  vhostUserSocket: '/run/vu0.sock',
  queues: 1,
  guestMac: '02:00:00:00:00:09',
};

function expectValidBody(body: unknown): void {
  expect(netConfigSchema.published(body), errorsOf(netConfigSchema.published)).toBe(true);
  expect(netConfigSchema.closed(body), errorsOf(netConfigSchema.closed)).toBe(true);
}

describe('Cloud Hypervisor vm.add-net', () => {
  it('by tap name: tap, mac, num_queues = 2 per queue pair', () => {
    const request = cloudHypervisorAddNetRequest(byName);
    expect(request).toEqual({
      method: 'PUT',
      path: '/api/v1/vm.add-net',
      body: { id: 'net0', tap: 'tap0_kata', mac: '02:42:ac:11:00:02', num_queues: 2 },
      fds: [],
    });
    expectValidBody(request.body);
  });

  it('by fds: no tap and no fd numbers in the body (they go as SCM_RIGHTS), Kata-style rate limiter', () => {
    const request = cloudHypervisorAddNetRequest(byFds, { queueSize: 512 });
    expect(request.body).toEqual({
      id: 'net1',
      mac: '02:42:ac:11:00:03',
      host_mac: '0a:00:00:00:00:01',
      mtu: 1500,
      num_queues: 4,
      queue_size: 512,
      pci_device_id: 6,
      rate_limiter_config: { bandwidth: { size: 131_072_000, refill_time: 1000 } },
    });
    expect(request.fds).toEqual([20, 21]);
    expect(request.fds).not.toBe(byFds.fds);
    expectValidBody(request.body);
    expect(rateLimiterSchema.closed(request.body.rate_limiter_config)).toBe(true);
  });

  it("iommu ([hypervisor.clh] enable_iommu): NetConfig's iommu, and iommu=on on --net", () => {
    const request = cloudHypervisorAddNetRequest(byName, { iommu: true });
    expect(request.body).toMatchObject({ id: 'net0', iommu: true });
    expectValidBody(request.body);
    expect(cloudHypervisorNetArgument(byName, { iommu: true })).toBe(
      'tap=tap0_kata,mac=02:42:ac:11:00:02,num_queues=2,iommu=on,id=net0',
    );
    expect(cloudHypervisorAddNetRequest(byName, { iommu: false }).body).not.toHaveProperty('iommu');
    expect(() => cloudHypervisorAddNetRequest(byName, { iommu: 'on' as never })).toThrow(/options\.iommu/);
  });

  it('vhost-user: vhost_user, vhost_socket, vhost_mode', () => {
    const body = cloudHypervisorNetConfig(vhostUser, { vhostMode: 'Server' });
    expect(body).toMatchObject({
      vhost_user: true,
      vhost_socket: '/run/vu0.sock',
      vhost_mode: 'Server',
      num_queues: 2,
    });
    expect(body).not.toHaveProperty('tap');
    expectValidBody(body);
  });

  it('vm.remove-device', () => {
    const request = cloudHypervisorRemoveDeviceRequest('net1');
    expect(request).toEqual({ method: 'PUT', path: '/api/v1/vm.remove-device', body: { id: 'net1' }, fds: [] });
    expect(removeDeviceSchema.closed(request.body), errorsOf(removeDeviceSchema.closed)).toBe(true);
    expect(() => cloudHypervisorRemoveDeviceRequest('')).toThrow(InvalidInputError);
  });

  it('the schemas catch the mistakes vcnet must not make', () => {
    // fd numbers in the body: not part of the published API (Cloud Hypervisor ignores them).
    expect(netConfigSchema.closed({ ...cloudHypervisorNetConfig(byName), fds: [3] })).toBe(false);
    expect(netConfigSchema.published({ id: 'net0', mtu: '1500' })).toBe(false);
    expect(netConfigSchema.published({ id: 'net0', num_queues: 2.5 })).toBe(false);
    expect(netConfigSchema.published({ id: 'net0', pci_device_id: 300 })).toBe(false);
    expect(netConfigSchema.published({ rate_limiter_config: { bandwidth: { size: 10 } } })).toBe(false);
    expect(netConfigSchema.published({ rate_limiter_config: { bandwidth: { size: -1, refill_time: 1000 } } })).toBe(
      false,
    );
    expect(removeDeviceSchema.published({ id: 7 })).toBe(false);
    expect(removeDeviceSchema.closed({ id: 'net0', force: true })).toBe(false);
  });
});

describe('Cloud Hypervisor --net', () => {
  it('by fds', () => {
    expect(cloudHypervisorNetArgument(byFds)).toBe(
      'fd=[20,21],mac=02:42:ac:11:00:03,host_mac=0a:00:00:00:00:01,mtu=1500,num_queues=4,id=net1,pci_device_id=6,' +
        'bw_size=131072000,bw_refill_time=1000',
    );
  });

  it('by tap name, with a queue size', () => {
    expect(cloudHypervisorNetArgument(byName, { queueSize: 1024 })).toBe(
      'tap=tap0_kata,mac=02:42:ac:11:00:02,num_queues=2,queue_size=1024,id=net0',
    );
  });

  it('vhost-user', () => {
    expect(cloudHypervisorNetArgument(vhostUser)).toBe(
      'mac=02:00:00:00:00:09,num_queues=2,vhost_user=on,socket=/run/vu0.sock,vhost_mode=client,id=vu0',
    );
    expect(() => cloudHypervisorNetArgument({ ...vhostUser, vhostUserSocket: '/run/a,b.sock' })).toThrow(
      UnsupportedByHypervisorError,
    );
  });
});

describe('an MTU below 1280 (a pod link with a small MTU)', () => {
  it('is left out of vm.add-net and --net: its virtio-net refuses it, and the agent sets the guest MTU', () => {
    expect(cloudHypervisorNetConfig({ ...byName, mtu: 1279 })).not.toHaveProperty('mtu');
    expect(cloudHypervisorNetArgument({ ...byName, mtu: 1200 })).toBe(
      'tap=tap0_kata,mac=02:42:ac:11:00:02,num_queues=2,id=net0',
    );
    expect(cloudHypervisorNetConfig({ ...byName, mtu: 1280 })).toMatchObject({ mtu: 1280 });
  });
});

describe('what Cloud Hypervisor cannot do', () => {
  it.each([
    [{ ...byFds, vhostFds: [30, 31] }, 'vhostFds'],
    [{ ...byName, pciAddress: '06.1' }, 'pciAddress'],
    [{ ...byName, rateLimit: { rxBitsPerSecond: 8_000, txBitsPerSecond: 16_000 } }, 'rateLimit'],
    [{ ...vhostUser, rateLimit: { txBitsPerSecond: 8_000 } }, 'rateLimit'],
  ] as Array<[NetworkDevice, string]>)('%#: refuses %s', (device, field) => {
    const error = (() => {
      try {
        cloudHypervisorNetConfig(device);
      } catch (caught) {
        return caught;
      }
    })();
    expect(error).toBeInstanceOf(UnsupportedByHypervisorError);
    expect(error).toMatchObject({ code: 'VCNET_HYPERVISOR_UNSUPPORTED', hypervisor: 'Cloud Hypervisor', field });
    expect((error as UnsupportedByHypervisorError).hint).toBeTruthy();
  });

  it('accepts the same rate in both directions (one limiter serves both)', () => {
    const body = cloudHypervisorNetConfig({ ...byName, rateLimit: { rxBitsPerSecond: 8_000, txBitsPerSecond: 8_000 } });
    expect(body.rate_limiter_config).toEqual({ bandwidth: { size: 1024, refill_time: 1000 } });
    expectValidBody(body);
  });

  it.each([0, 3, 100, 65536])('refuses queue size %d', (queueSize) => {
    expect(() => cloudHypervisorNetConfig(byName, { queueSize })).toThrow(InvalidInputError);
  });
});
