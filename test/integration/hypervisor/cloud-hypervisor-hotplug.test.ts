/**
 * Cloud Hypervisor NIC hot-plug and removal over its API socket, against a server that validates each
 * request against Cloud Hypervisor's published OpenAPI schema and reads back, through every fd it was
 * sent, which tap the fd is a queue of. The taps are real multi-queue taps in a throwaway namespace.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  CloudHypervisorApiError,
  CloudHypervisorClient,
  type CloudHypervisorConnectionError,
  CloudHypervisorHotplugTarget,
  pciPathOfBdf,
} from '../../../src/hypervisor/cloud-hypervisor-client.js';
import { nativeShim } from '../../../src/native/binding.js';
import { FakeCloudHypervisor } from '../../helpers/fake-cloud-hypervisor.js';
import { cleanupNamespaces, makeNamespace, type TestNamespace } from '../../helpers/namespace.js';
import { until } from '../../helpers/until.js';

let api: FakeCloudHypervisor;
let pod: TestNamespace;
const opened: number[] = [];

beforeEach(async () => {
  api = await FakeCloudHypervisor.start();
  pod = makeNamespace('clh');
});
afterEach(async () => {
  try {
    for (const fd of opened.splice(0)) nativeShim().closeFd(fd);
    await api.stop();
  } finally {
    cleanupNamespaces();
  }
});

function tap(name: string, queues: number): number[] {
  const made = nativeShim().createTun(pod.path, name, {
    tap: true,
    vnetHdr: true,
    multiQueue: queues > 1,
    queues,
    keepFds: true,
  });
  opened.push(...made.fds);
  return made.fds;
}

describe('Cloud Hypervisor hot-plug through its API socket', () => {
  it('sends vm.add-net with the tap queues as SCM_RIGHTS, mtu and num_queues, and removes it with vm.remove-device', async () => {
    const fds = tap('tap3_kata', 2);
    const target = new CloudHypervisorHotplugTarget(new CloudHypervisorClient(api.socketPath, { timeoutMs: 5_000 }));
    const plugged = await target.hotplugNetworkDevice({
      id: 'net3',
      tapName: 'tap3_kata',
      fds,
      queues: 2,
      guestMac: '02:42:AC:11:00:03',
      mtu: 1400,
    });
    expect(plugged).toEqual({ pciPath: '04' });
    await target.unplugNetworkDevice('net3');

    const [add, remove] = api.requests;
    expect(add?.schemaErrors).toBeUndefined();
    expect(add).toMatchObject({ method: 'PUT', path: '/api/v1/vm.add-net' });
    expect(add?.body).toEqual({ id: 'net3', mac: '02:42:ac:11:00:03', mtu: 1400, num_queues: 4 });
    expect(add?.headers['content-type']).toBe('application/json');
    // Each fd the server received is a queue of the tap (read back through the fd itself).
    expect(add?.fdTaps).toEqual(['tap3_kata', 'tap3_kata']);
    expect(remove).toMatchObject({ path: '/api/v1/vm.remove-device', body: { id: 'net3' }, fdTaps: [] });
    expect(remove?.schemaErrors).toBeUndefined();
  });

  it('drops vhost-net fds (Cloud Hypervisor runs virtio-net itself) and sends the rate limiter bucket', async () => {
    const fds = tap('tap4_kata', 1);
    const [vhostStandIn] = tap('tap9_kata', 1);
    const target = new CloudHypervisorHotplugTarget(new CloudHypervisorClient(api.socketPath));
    await target.hotplugNetworkDevice({
      id: 'net4',
      fds,
      vhostFds: [vhostStandIn as number],
      queues: 1,
      guestMac: '02:42:ac:11:00:04',
      rateLimit: { rxBitsPerSecond: 10_000_000, txBitsPerSecond: 10_000_000 },
    });
    const [add] = api.requests;
    expect(add?.schemaErrors).toBeUndefined();
    expect(add?.fdTaps).toEqual(['tap4_kata']);
    expect(add?.body).toMatchObject({
      num_queues: 2,
      rate_limiter_config: { bandwidth: { size: 1_304_576, refill_time: 1000 } },
    });
  });

  it('puts the NIC behind the IOMMU when asked (NetworkConfig.nicIommu; the Go runtime reads no clh enable_iommu), as the schema has it', async () => {
    const target = new CloudHypervisorHotplugTarget(new CloudHypervisorClient(api.socketPath), { iommu: true });
    await target.hotplugNetworkDevice({
      id: 'net11',
      fds: tap('tap11_kata', 1),
      queues: 1,
      guestMac: '02:42:ac:11:00:0b',
    });
    const [add] = api.requests;
    expect(add?.schemaErrors).toBeUndefined();
    expect(add?.body).toMatchObject({ id: 'net11', iommu: true });
  });

  it("shows the VMM's own error text", async () => {
    const fds = tap('tap5_kata', 1);
    api.replies.push({
      status: 500,
      reason: 'Internal Server Error',
      body: '"Error adding device to the VM: Failed to open tap"',
    });
    const client = new CloudHypervisorClient(api.socketPath);
    const device = { id: 'net5', fds, queues: 1, guestMac: '02:42:ac:11:00:05' };
    const error = await client.addNet(device).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(CloudHypervisorApiError);
    expect((error as Error).message).toBe(
      'Cloud Hypervisor refused PUT /api/v1/vm.add-net: 500 Internal Server Error: "Error adding device to the VM: Failed to open tap"',
    );
    api.replies.push({ status: 404, reason: 'Not Found', body: 'No such device: net9' });
    await expect(client.removeDevice('net9')).rejects.toThrow(/vm\.remove-device: 404 Not Found: No such device: net9/);
  });

  it('unplug resolves when Cloud Hypervisor has no such device (404), and rejects on other refusals', async () => {
    const target = new CloudHypervisorHotplugTarget(new CloudHypervisorClient(api.socketPath, { timeoutMs: 5_000 }));
    api.replies.push({ status: 404, reason: 'Not Found', body: '["Error from API","No such device"]' });
    await target.unplugNetworkDevice('net7');
    api.replies.push({ status: 500, reason: 'Internal Server Error', body: '"Error removing device"' });
    await expect(target.unplugNetworkDevice('net7')).rejects.toThrow(
      /500 Internal Server Error: "Error removing device"/,
    );
    expect(api.requests.map((request) => request.body)).toEqual([{ id: 'net7' }, { id: 'net7' }]);
  });

  it('a second NIC with a held id is refused 409 (IdentifierNotUnique) and the NIC holding it is left alone', async () => {
    const target = new CloudHypervisorHotplugTarget(new CloudHypervisorClient(api.socketPath, { timeoutMs: 5_000 }));
    const nic = { id: 'net8', fds: tap('tap8_kata', 1), queues: 1, guestMac: '02:42:ac:11:00:08' };
    await target.hotplugNetworkDevice(nic);
    const error = await target
      .hotplugNetworkDevice({ ...nic, fds: tap('tap18_kata', 1) })
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(CloudHypervisorApiError);
    expect(error).toMatchObject({ status: 409 });
    expect((error as Error).message).toContain('409 Conflict');
    expect((error as Error).message).toContain('Identifier net8 is not unique');
    expect((error as CloudHypervisorApiError).hint).toContain('already has a device with that id');
    // A refusal is an answer: the id is another NIC's, and no remove-device goes after it.
    expect(api.requests.map((request) => request.path)).toEqual(['/api/v1/vm.add-net', '/api/v1/vm.add-net']);
  });

  it('unplug of an id Cloud Hypervisor does not have is its 404, taken as already removed', async () => {
    const client = new CloudHypervisorClient(api.socketPath, { timeoutMs: 5_000 });
    const missing = await client.removeDevice('net9').catch((caught: unknown) => caught);
    expect(missing).toMatchObject({ status: 404 });
    expect((missing as Error).message).toContain('Failed to find device corresponding to the given identifier: net9');
    const target = new CloudHypervisorHotplugTarget(client);
    await expect(target.unplugNetworkDevice('net9')).resolves.toBeUndefined();
    // A NIC removed but not yet ejected by the guest is still found: removing it again is accepted.
    await target.hotplugNetworkDevice({
      id: 'net10',
      fds: tap('tap10_kata', 1),
      queues: 1,
      guestMac: '02:42:ac:11:00:0a',
    });
    await target.unplugNetworkDevice('net10');
    await expect(client.removeDevice('net10')).resolves.toBeUndefined();
  });

  it('names the socket when nothing listens there', async () => {
    const client = new CloudHypervisorClient(`${api.socketPath}.missing`, { timeoutMs: 2_000 });
    await expect(client.removeDevice('net1')).rejects.toThrow(
      /Cloud Hypervisor API .*missing: PUT \/api\/v1\/vm.remove-device: .*ENOENT/,
    );
  });

  it('hints at starting Cloud Hypervisor only when nothing listens, and fittingly otherwise', async () => {
    const missing = await new CloudHypervisorClient(`${api.socketPath}.missing`, { timeoutMs: 2_000 })
      .removeDevice('net1')
      .catch((caught: unknown) => caught);
    expect(missing).toMatchObject({ failure: 'unreachable' });
    expect((missing as CloudHypervisorConnectionError).hint).toContain('start cloud-hypervisor with --api-socket');

    api.replies.push({ status: 0, reason: '', answer: 'close' });
    const ended = await new CloudHypervisorClient(api.socketPath, { timeoutMs: 2_000 })
      .removeDevice('net1')
      .catch((caught: unknown) => caught);
    expect((ended as Error).message).toContain('the reply ended early');
    expect((ended as CloudHypervisorConnectionError).hint).not.toContain('start cloud-hypervisor');
    expect((ended as CloudHypervisorConnectionError).hint).toContain("did not answer as Cloud Hypervisor's API");

    api.replies.push({ status: 0, reason: '', answer: 'hang' });
    const silent = await new CloudHypervisorClient(api.socketPath, { timeoutMs: 200 })
      .removeDevice('net1')
      .catch((caught: unknown) => caught);
    expect((silent as Error).message).toContain('no reply within 200 ms');
    expect((silent as CloudHypervisorConnectionError).hint).toContain('did not answer in time');
  });

  it('takes out a NIC Cloud Hypervisor may have added when vm.add-net got no answer', async () => {
    const fds = tap('tap6_kata', 1);
    // The bound also covers the stand-in taking both requests and answering the removal, in this
    // worker's event loop: 300 ms left a loaded machine little room for that.
    const target = new CloudHypervisorHotplugTarget(new CloudHypervisorClient(api.socketPath, { timeoutMs: 1_000 }));
    api.replies.push({ status: 0, reason: '', answer: 'hang' });
    await expect(
      target.hotplugNetworkDevice({ id: 'net6', fds, queues: 1, guestMac: '02:42:ac:11:00:06' }),
    ).rejects.toThrow(/vm\.add-net: no reply within 1000 ms/);
    expect(api.requests.map((request) => `${request.path} ${(request.body as { id: string }).id}`)).toEqual([
      '/api/v1/vm.add-net net6',
      '/api/v1/vm.remove-device net6',
    ]);
    // Nothing listening is not a request that may have arrived: no removal is sent.
    const gone = new CloudHypervisorHotplugTarget(new CloudHypervisorClient(`${api.socketPath}.missing`));
    await expect(
      gone.hotplugNetworkDevice({ id: 'net7', fds, queues: 1, guestMac: '02:42:ac:11:00:07' }),
    ).rejects.toThrow(/ENOENT/);
    expect(api.requests).toHaveLength(2);
  });

  it('pings the VMM with GET vmm.ping (no body, as the description has it), answered with its version', async () => {
    const client = new CloudHypervisorClient(api.socketPath, { timeoutMs: 5_000 });
    await expect(client.ping()).resolves.toMatchObject({ version: '53.0.0' });
    expect(api.requests).toEqual([
      expect.objectContaining({ method: 'GET', path: '/api/v1/vmm.ping', body: undefined, fdTaps: [] }),
    ]);
    expect(api.requests[0]?.schemaErrors).toBeUndefined();
  });

  it("a VMM stuck on a request answers no ping until it is released (one request at a time); the ping's own deadline and signal end the wait", async () => {
    const release = api.hang();
    const client = new CloudHypervisorClient(api.socketPath);
    const late = await client.ping({ timeoutMs: 200 }).catch((caught: unknown) => caught);
    expect(late).toMatchObject({
      failure: 'timeout',
      message: expect.stringContaining('vmm.ping: no reply within 200 ms'),
    });

    const stopping = new AbortController();
    const stopped = client.ping({ signal: stopping.signal }).catch((caught: unknown) => caught);
    // Aborted once the stand-in has read the request: the wait for the answer is what ends.
    await until(() => api.requests.length === 2, 'the second ping to arrive', 10_000);
    stopping.abort(new Error('watch stopping'));
    expect(await stopped).toEqual(new Error('watch stopping'));

    const waiting = client.ping({ timeoutMs: 10_000 });
    await until(() => api.requests.length === 3, 'the third ping to arrive', 10_000);
    release();
    await expect(waiting).resolves.toMatchObject({ version: '53.0.0' });
    expect(api.requests.every((request) => request.path === '/api/v1/vmm.ping' && !request.schemaErrors)).toBe(true);
  });

  it('the stand-in refuses what the description does not publish: 404 for a path, 400 for a method', async () => {
    const client = new CloudHypervisorClient(api.socketPath, { timeoutMs: 5_000 });
    const unknownPath = { method: 'PUT' as const, path: '/api/v1/vm.nonsense', body: {}, fds: [] };
    await expect(client.send(unknownPath)).rejects.toMatchObject({ status: 404 });
    const wrongMethod = { method: 'PUT' as const, path: '/api/v1/vmm.ping', body: {}, fds: [] };
    await expect(client.send(wrongMethod)).rejects.toMatchObject({ status: 400 });
    expect(api.requests.map((request) => request.schemaErrors)).toEqual([
      'no such API operation PUT /api/v1/vm.nonsense',
      'no such API operation PUT /api/v1/vmm.ping',
    ]);
  });

  it('reads the PCI path from the BDF on bus 0 only', () => {
    expect(pciPathOfBdf('0000:00:05.0')).toBe('05');
    expect(pciPathOfBdf('0000:01:05.0')).toBeUndefined();
    expect(pciPathOfBdf('nonsense')).toBeUndefined();
  });
});
