/**
 * The AgentService server with a fake applier, driven by AgentClient: requests reach the applier checked
 * and converted; errors come back with the status the Kata runtime expects.
 */
import { duplexPair } from 'node:stream';
import { create } from '@bufbuild/protobuf';
import { afterEach, describe, expect, it } from 'vitest';
import { AgentClient } from '../../../src/agent/client.js';
import { GuestLinkNotFoundError } from '../../../src/agent/errors.js';
import { InterfaceSchema, IPFamily, RouteSchema } from '../../../src/agent/generated/types_pb.js';
import type {
  InterfaceUpdate,
  NeighbourAddition,
  NetworkApplier,
  RouteUpdate,
} from '../../../src/agent/network-applier.js';
import { createAgentServer } from '../../../src/agent/server.js';
import { StatusCode } from '../../../src/agent/ttrpc/status-code.js';

class RecordingApplier implements NetworkApplier {
  readonly calls: { method: string; argument: unknown }[] = [];
  failWith: Error | undefined;

  private record(method: string, argument: unknown): void {
    this.calls.push({ method, argument });
    if (this.failWith) throw this.failWith;
  }
  async updateInterface(update: InterfaceUpdate) {
    this.record('updateInterface', update);
    return create(InterfaceSchema, {
      name: update.name ?? 'eth0',
      hwAddr: update.hardwareAddress,
      mtu: BigInt(update.mtu ?? 1500),
    });
  }
  async updateRoutes(routes: RouteUpdate[]) {
    this.record('updateRoutes', routes);
    return routes.map((route) => create(RouteSchema, { device: route.device, gateway: route.gateway ?? '' }));
  }
  async addArpNeighbors(neighbours: NeighbourAddition[]) {
    this.record('addArpNeighbors', neighbours);
  }
  async listInterfaces() {
    this.record('listInterfaces', undefined);
    return [create(InterfaceSchema, { name: 'lo' }), create(InterfaceSchema, { name: 'eth0' })];
  }
  async listRoutes() {
    this.record('listRoutes', undefined);
    return [create(RouteSchema, { dest: '10.0.0.0/24', device: 'eth0' })];
  }
}

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0)) cleanup();
});

function setup() {
  const applier = new RecordingApplier();
  const [clientSide, serverSide] = duplexPair();
  const connection = createAgentServer(applier).serve(serverSide);
  const client = new AgentClient(clientSide, { callTimeoutMs: 5000 });
  cleanups.push(() => {
    client.close();
    connection.close();
  });
  return { applier, client };
}

const eth0 = {
  name: 'eth0',
  hwAddr: '02:00:CA:FE:00:01',
  mtu: 1400n,
  rawFlags: 0x80 | 0x1,
  IPAddresses: [
    { family: IPFamily.v4, address: '10.0.0.2', mask: '24' },
    { family: IPFamily.v6, address: 'fd00::2', mask: '64' },
  ],
};

describe('AgentService server', () => {
  it('hands UpdateInterface to the applier checked and in its terms, and returns its answer', async () => {
    const { applier, client } = setup();
    const answer = await client.updateInterface(eth0);
    expect(answer.name).toBe('eth0');
    expect(applier.calls).toEqual([
      {
        method: 'updateInterface',
        argument: {
          hardwareAddress: '02:00:ca:fe:00:01',
          pciPath: '',
          name: 'eth0',
          mtu: 1400,
          addresses: [
            { version: 4, address: '10.0.0.2', prefixLength: 24 },
            { version: 6, address: 'fd00::2', prefixLength: 64 },
          ],
          noArp: true,
          hostDevice: '',
          hostType: '',
        },
      },
    ]);
  });

  it('hands UpdateRoutes, AddARPNeighbors and the lists through', async () => {
    const { applier, client } = setup();
    const routes = await client.updateRoutes([
      { dest: '', gateway: '10.0.0.1', device: 'eth0' },
      { dest: '10.1.0.0/16', device: 'eth0', scope: 253, mtu: 1300, source: '10.0.0.2' },
    ]);
    expect(routes.map((route) => route.gateway)).toEqual(['10.0.0.1', '']);
    expect(applier.calls[0]!.argument).toEqual([
      expect.objectContaining({ version: 4, destination: undefined, destinationLength: 0, gateway: '10.0.0.1' }),
      expect.objectContaining({
        destination: '10.1.0.0',
        destinationLength: 16,
        scope: 253,
        mtu: 1300,
        source: '10.0.0.2',
      }),
    ]);
    await client.addArpNeighbors([
      {
        toIPAddress: { family: IPFamily.v4, address: '10.0.0.1' },
        device: 'eth0',
        lladdr: '02:00:00:00:00:09',
        state: 0x80,
      },
    ]);
    expect(applier.calls[1]!.argument).toEqual([
      {
        version: 4,
        destination: '10.0.0.1',
        device: 'eth0',
        linkLayerAddress: '02:00:00:00:00:09',
        state: 0x80,
        flags: 0,
      },
    ]);
    expect((await client.listInterfaces()).map((i) => i.name)).toEqual(['lo', 'eth0']);
    expect((await client.listRoutes())[0]!.dest).toBe('10.0.0.0/24');
  });

  it.each([
    [{ ...eth0, hwAddr: 'not-a-mac' }, 'interface.hwAddr'],
    [{ ...eth0, mtu: 20n }, 'interface.mtu'],
    [{ ...eth0, name: 'a-name-longer-than-15' }, 'interface.name'],
    [
      { ...eth0, IPAddresses: [{ family: IPFamily.v4, address: '10.0.0.256', mask: '24' }] },
      'interface.IPAddresses[0].address',
    ],
    [
      { ...eth0, IPAddresses: [{ family: IPFamily.v4, address: '10.0.0.2', mask: '33' }] },
      'interface.IPAddresses[0].mask',
    ],
    [{ ...eth0, IPAddresses: [{ family: 7, address: '10.0.0.2', mask: '24' }] }, 'interface.IPAddresses[0].family'],
    [{ ...eth0, devicePath: '../../etc' }, 'interface.devicePath'],
  ])('answers INVALID_ARGUMENT naming the field, before the applier sees anything (%#)', async (request, field) => {
    const { applier, client } = setup();
    const error = await client.updateInterface(request).catch((e: unknown) => e);
    expect(error).toMatchObject({ status: StatusCode.INVALID_ARGUMENT, local: false });
    expect((error as { statusMessage: string }).statusMessage).toContain(`invalid ${field}:`);
    expect(applier.calls).toEqual([]);
  });

  it('refuses the whole route list when a later route is bad', async () => {
    const { applier, client } = setup();
    const error = await client
      .updateRoutes([
        { dest: '10.1.0.0/16', device: 'eth0' },
        { dest: '10.2.0.0/16', gateway: 'fd00::1', device: 'eth0' },
      ])
      .catch((e: unknown) => e);
    expect(error).toMatchObject({ status: StatusCode.INVALID_ARGUMENT });
    expect((error as Error).message).toContain('routes.Routes[1].gateway');
    expect(applier.calls).toEqual([]);
  });

  it('answers NOT_FOUND when the applier finds no link, INTERNAL for other failures', async () => {
    const { applier, client } = setup();
    applier.failWith = new GuestLinkNotFoundError('interface.hwAddr', '02:00:ca:fe:00:01', 'with the MAC address');
    await expect(client.updateInterface(eth0)).rejects.toMatchObject({
      status: StatusCode.NOT_FOUND,
      statusMessage: expect.stringContaining('interface.hwAddr: no link with the MAC address "02:00:ca:fe:00:01"'),
    });
    applier.failWith = new Error('EBUSY');
    await expect(client.listRoutes()).rejects.toMatchObject({ status: StatusCode.INTERNAL, statusMessage: 'EBUSY' });
  });
});
