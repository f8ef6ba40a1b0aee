/**
 * Kata's request sequence (UpdateInterface, retried until the NIC shows; UpdateRoutes with the full
 * route set; AddARPNeighbors) against vcnet's own guest agent, in a namespace that plays the guest.
 * UpdateRoutes is a full-set replace, as in Kata's agent: routes missing from the set go, on every
 * link but lo, and the kernel's own routes stay.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { AgentClient } from '../../../src/agent/client.js';
import { IPFamily } from '../../../src/agent/generated/types_pb.js';
import { pushGuestNetwork } from '../../../src/agent/push-network.js';
import { cleanupNamespaces, makeNamespace, type TestNamespace } from '../../helpers/namespace.js';
import { type NamespaceAgent, startNamespaceAgent } from '../../helpers/namespace-agent.js';

interface IpRoute {
  dst: string;
  gateway?: string;
  dev: string;
  protocol?: string;
}

const MAC0 = '02:00:ca:fe:01:00';
const MAC1 = '02:00:ca:fe:01:01';

let namespace: TestNamespace;
let agent: NamespaceAgent | undefined;
let client: AgentClient;

function addNic(name: string, mac: string): void {
  namespace.exec('ip', ['link', 'add', name, 'address', mac, 'type', 'veth', 'peer', 'name', `${name}-peer`]);
  namespace.exec('ip', ['link', 'set', `${name}-peer`, 'up']);
}

beforeEach(async () => {
  namespace = makeNamespace('push');
  addNic('nic0', MAC0);
  namespace.exec('ip', ['link', 'set', 'lo', 'up']);
  agent = await startNamespaceAgent(namespace.path, { linkAppearTimeoutMs: 0 });
  client = agent.client;
});

afterEach(async () => {
  try {
    await agent?.stop();
  } finally {
    cleanupNamespaces();
  }
});

const routes = () =>
  namespace
    .ipJson<IpRoute[]>('-d', 'route', 'show')
    .map((route) => `${route.dst} ${route.gateway ? `via ${route.gateway} ` : ''}dev ${route.dev} ${route.protocol}`)
    .sort();

const eth0 = {
  name: 'eth0',
  hwAddr: MAC0,
  IPAddresses: [{ family: IPFamily.v4, address: '10.0.0.2', mask: '24' }],
};
const eth1 = {
  name: 'eth1',
  hwAddr: MAC1,
  IPAddresses: [{ family: IPFamily.v4, address: '10.1.0.2', mask: '24' }],
};
const defaultRoute = { dest: '', gateway: '10.0.0.1', device: 'eth0' };
const eth1Route = { dest: '10.99.0.0/16', gateway: '10.1.0.1', device: 'eth1' };

describe("Kata's push against vcnet's guest agent", () => {
  it('keeps every route of the full set, replaces the rest, and leaves lo and kernel routes alone', async () => {
    namespace.exec('ip', ['route', 'add', '192.0.2.0/24', 'dev', 'lo']);
    const first = await pushGuestNetwork(client, {
      interfaces: [eth0],
      routes: [defaultRoute],
      neighbours: [
        {
          toIPAddress: { family: IPFamily.v4, address: '10.0.0.1' },
          device: 'eth0',
          lladdr: '02:00:ca:fe:01:fe',
          state: 0x80,
        },
      ],
    });
    expect(first).toMatchObject({ attempts: [1], neighboursSent: true });
    const neighbours = namespace.ipJson<Array<{ dst: string; state: string[] }>>('neigh', 'show', 'dev', 'eth0');
    expect(neighbours).toEqual([expect.objectContaining({ dst: '10.0.0.1', state: ['PERMANENT'] })]);

    // The NIC is hot-plugged while the push is under way: UpdateInterface is retried until it shows.
    // It is plugged in the wait after the first attempt (which the agent answered: no such link), so
    // a retry is certain however late the first attempt comes.
    const waits: number[] = [];
    const second = await pushGuestNetwork(
      client,
      { interfaces: [eth1], routes: [defaultRoute, eth1Route], neighbours: [] },
      {
        sleep: async (milliseconds) => {
          if (waits.push(milliseconds) === 1) addNic('nic1', MAC1);
          await new Promise((resolve) => setTimeout(resolve, milliseconds));
        },
      },
    );
    expect(waits).toEqual([20]);
    expect(second.attempts).toEqual([2]);
    expect(routes()).toEqual([
      '10.0.0.0/24 dev eth0 kernel',
      '10.1.0.0/24 dev eth1 kernel',
      '10.99.0.0/16 via 10.1.0.1 dev eth1 boot',
      '192.0.2.0/24 dev lo boot',
      'default via 10.0.0.1 dev eth0 boot',
    ]);

    // What vcnet's watch used to send (one endpoint's routes) costs the others theirs, default included.
    await pushGuestNetwork(client, { interfaces: [], routes: [eth1Route], neighbours: [] });
    expect(routes()).toEqual([
      '10.0.0.0/24 dev eth0 kernel',
      '10.1.0.0/24 dev eth1 kernel',
      '10.99.0.0/16 via 10.1.0.1 dev eth1 boot',
      '192.0.2.0/24 dev lo boot',
    ]);
  });

  it('gives up after 20 attempts when the NIC never shows, with the agent’s error', async () => {
    const sleeps: number[] = [];
    const error = await pushGuestNetwork(
      client,
      { interfaces: [{ ...eth1, hwAddr: '02:00:ca:fe:01:99' }], routes: [], neighbours: [] },
      { sleep: async (milliseconds) => void sleeps.push(milliseconds) },
    ).catch((caught: unknown) => caught);
    expect((error as Error).message).toMatch(/NOT_FOUND.*no link/);
    expect(sleeps).toEqual(Array(19).fill(20));
  });
});
