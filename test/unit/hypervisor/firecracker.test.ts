import { describe, expect, it } from 'vitest';
import type { NetworkDevice } from '../../../src/hypervisor/device.js';
import { UnsupportedByHypervisorError } from '../../../src/hypervisor/errors.js';
import {
  firecrackerInterfaceId,
  firecrackerNetworkInterface,
  firecrackerNetworkInterfaceRequest,
} from '../../../src/hypervisor/firecracker.js';
import { errorsOf, firecrackerSchemas, validatorFor } from './api-schemas.js';

const networkInterfaceSchema = validatorFor(firecrackerSchemas, 'NetworkInterface');
const rateLimiterSchema = validatorFor(firecrackerSchemas, 'RateLimiter');

const device: NetworkDevice = { id: 'eth0', tapName: 'tap0_kata', queues: 1, guestMac: '02:42:AC:11:00:02' };

function expectValid(body: unknown): void {
  expect(networkInterfaceSchema.published(body), errorsOf(networkInterfaceSchema.published)).toBe(true);
  // Firecracker rejects unknown fields (deny_unknown_fields).
  expect(networkInterfaceSchema.closed(body), errorsOf(networkInterfaceSchema.closed)).toBe(true);
}

describe('Firecracker PUT /network-interfaces/{iface_id}', () => {
  it('by tap name, no rate limiters unless asked', () => {
    const request = firecrackerNetworkInterfaceRequest(device);
    expect(request).toEqual({
      method: 'PUT',
      path: '/network-interfaces/eth0',
      body: { iface_id: 'eth0', host_dev_name: 'tap0_kata', guest_mac: '02:42:ac:11:00:02' },
    });
    expectValid(request.body);
  });

  it("takes Kata's iface_id (the endpoint name) as the path and body id, and refuses one Firecracker would", () => {
    const request = firecrackerNetworkInterfaceRequest({ ...device, id: 'net0' }, { ifaceId: 'eth0' });
    expect(request.path).toBe('/network-interfaces/eth0');
    expect(request.body.iface_id).toBe('eth0');
    expectValid(request.body);
    // Firecracker's API server (checked_id) takes letters, digits and '_' only.
    expect(firecrackerInterfaceId('eth0')).toBe('eth0');
    expect(firecrackerInterfaceId('eth0.100')).toBe('eth0_100');
    expect(firecrackerInterfaceId('net-a@b')).toBe('net_a_b');
    for (const [given, options] of [
      [{ ...device, id: 'net-0' }, {}],
      [device, { ifaceId: 'eth0.100' }],
      [device, { ifaceId: '' }],
    ] as Array<[NetworkDevice, { ifaceId?: string }]>) {
      expect(() => firecrackerNetworkInterface(given, options)).toThrow(/what Firecracker's API takes as an iface_id/);
    }
  });

  it('rx and tx limits become separate Kata-style bandwidth buckets', () => {
    const body = firecrackerNetworkInterface({
      ...device,
      rateLimit: { rxBitsPerSecond: 8_000_000, txBitsPerSecond: 1_000_000_000 },
    });
    expect(body.rx_rate_limiter).toEqual({ bandwidth: { size: 1_048_576, refill_time: 1000 } });
    expect(body.tx_rate_limiter).toEqual({ bandwidth: { size: 131_072_000, refill_time: 1000 } });
    expectValid(body);
    expect(rateLimiterSchema.closed(body.rx_rate_limiter), errorsOf(rateLimiterSchema.closed)).toBe(true);
  });

  it('uses the tap name when the device also carries fds (Firecracker opens the tap itself)', () => {
    expect(firecrackerNetworkInterface({ ...device, fds: [20] }).host_dev_name).toBe('tap0_kata');
  });

  it.each([
    [{ ...device, queues: 2, fds: [20, 21] }, 'queues', /single queue pair/],
    [{ id: 'eth0', fds: [20], queues: 1, guestMac: '02:00:00:00:00:01' }, 'fds', /by name/],
    [
      { id: 'eth0', vhostUserSocket: '/run/vu.sock', queues: 1, guestMac: '02:00:00:00:00:01' },
      'vhostUserSocket',
      /vhost-user/,
    ],
    [{ ...device, fds: [20], vhostFds: [21] }, 'vhostFds', /vhost-net/],
    [{ ...device, pciAddress: '5' }, 'pciAddress', /place/],
  ] as Array<[NetworkDevice, string, RegExp]>)('%#: refuses %s', (refused, field, reason) => {
    const error = (() => {
      try {
        firecrackerNetworkInterface(refused);
      } catch (caught) {
        return caught;
      }
    })();
    expect(error).toBeInstanceOf(UnsupportedByHypervisorError);
    expect(error).toMatchObject({ code: 'VCNET_HYPERVISOR_UNSUPPORTED', hypervisor: 'Firecracker', field });
    expect((error as Error).message).toMatch(reason);
  });

  it('the schema catches the mistakes vcnet must not make', () => {
    expect(networkInterfaceSchema.published({ iface_id: 'eth0' })).toBe(false); // host_dev_name is required
    expect(networkInterfaceSchema.published({ iface_id: 'eth0', host_dev_name: 5 })).toBe(false);
    expect(networkInterfaceSchema.closed({ iface_id: 'eth0', host_dev_name: 't', queues: 2 })).toBe(false);
    expect(
      networkInterfaceSchema.published({
        iface_id: 'eth0',
        host_dev_name: 't',
        rx_rate_limiter: { bandwidth: { size: 1024 } }, // refill_time is required
      }),
    ).toBe(false);
    expect(rateLimiterSchema.published({ bandwidth: { size: -1, refill_time: 1000 } })).toBe(false);
    expect(rateLimiterSchema.closed({ bandwidth: { size: 1, refill_time: 1, burst: 1 } })).toBe(false);
  });
});
