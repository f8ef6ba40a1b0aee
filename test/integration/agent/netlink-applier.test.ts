/**
 * The guest agent's network side end to end, without a VM: a fresh namespace plays the guest (a veth pair
 * made inside it stands for the virtio NIC), the AgentService server runs with the netlink applier bound
 * to that namespace behind a unix socket, AgentClient drives it, and `ip -j -n NS` checks the result.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { AgentClient } from '../../../src/agent/client.js';
import { IPFamily } from '../../../src/agent/generated/types_pb.js';
import { StatusCode } from '../../../src/agent/ttrpc/status-code.js';
import { cleanupNamespaces, makeNamespace, type TestNamespace } from '../../helpers/namespace.js';
import { guestLikeNamespace, type NamespaceAgent, startNamespaceAgent } from '../../helpers/namespace-agent.js';
import { addSmallHop, FAR_PEER, learnPathMtu } from '../../helpers/path-mtu.js';

interface IpAddressInfo {
  family: string;
  local: string;
  prefixlen: number;
}
interface IpLink {
  ifindex: number;
  ifname: string;
  mtu: number;
  address: string;
  flags: string[];
  addr_info: IpAddressInfo[];
}
interface IpRoute {
  dst: string;
  gateway?: string;
  dev: string;
  protocol?: string;
  scope?: string;
  prefsrc?: string;
  metrics?: { mtu?: number }[];
}

const GUEST_MAC = '02:00:ca:fe:00:01';
const PEER_MAC = '02:00:ca:fe:00:02';

let namespace: TestNamespace;
let agent: NamespaceAgent | undefined;
let client: AgentClient;

beforeEach(async () => {
  // No duplicate address detection: IPv6 addresses and their routes are usable at once.
  namespace = guestLikeNamespace('test', { guestMac: GUEST_MAC, peerMac: PEER_MAC, dad: false });
  agent = await startNamespaceAgent(namespace.path, { linkAppearTimeoutMs: 200 });
  client = agent.client;
});

afterEach(async () => {
  try {
    await agent?.stop();
  } finally {
    cleanupNamespaces();
  }
});

const link = (name: string): IpLink => namespace.ipJson<IpLink[]>('addr', 'show', 'dev', name)[0]!;
const addressesOf = (name: string) =>
  link(name)
    .addr_info.filter((a) => !a.local.startsWith('fe80'))
    .map((a) => `${a.local}/${a.prefixlen}`)
    .sort();
// -d: iproute2 prints the protocol (boot, kernel) only with details.
const routes = (...args: string[]) => namespace.ipJson<IpRoute[]>('-d', ...args, 'route', 'show');

const eth0 = {
  name: 'eth0',
  hwAddr: GUEST_MAC,
  mtu: 1400n,
  IPAddresses: [
    { family: IPFamily.v4, address: '10.0.0.2', mask: '24' },
    { family: IPFamily.v6, address: 'fd00::2', mask: '64' },
  ],
};

describe('UpdateInterface', () => {
  it('finds the link by MAC, renames it, sets MTU and v4/v6 addresses, and brings it up', async () => {
    const answer = await client.updateInterface(eth0);
    const now = link('eth0');
    expect(now.address).toBe(GUEST_MAC);
    expect(now.mtu).toBe(1400);
    expect(now.flags).toContain('UP');
    expect(now.flags).not.toContain('NOARP');
    expect(addressesOf('eth0')).toEqual(['10.0.0.2/24', 'fd00::2/64']);
    expect(answer.name).toBe('eth0');
    expect(answer.mtu).toBe(1400n);
    expect(answer.hwAddr).toBe(GUEST_MAC);
    expect(answer.IPAddresses.map((a) => `${a.address}/${a.mask}`)).toEqual(
      expect.arrayContaining(['10.0.0.2/24', 'fd00::2/64']),
    );
  });

  it('replaces the addresses and sets or clears NOARP per raw_flags', async () => {
    await client.updateInterface(eth0);
    await client.updateInterface({
      ...eth0,
      rawFlags: 0x80,
      IPAddresses: [{ family: IPFamily.v4, address: '10.0.0.3', mask: '24' }],
    });
    expect(addressesOf('eth0')).toEqual(['10.0.0.3/24']);
    expect(link('eth0').flags).toContain('NOARP');
    await client.updateInterface({ ...eth0, rawFlags: 0 });
    expect(link('eth0').flags).not.toContain('NOARP');
    expect(addressesOf('eth0')).toEqual(['10.0.0.2/24', 'fd00::2/64']);
  });

  it('swaps names with a link that already has the wanted name, as Kata does', async () => {
    namespace.exec('ip', [
      'link',
      'add',
      'eth0',
      'address',
      '02:00:ca:fe:00:03',
      'type',
      'veth',
      'peer',
      'name',
      'veth-other',
    ]);
    namespace.exec('ip', ['link', 'set', 'eth0', 'up']);
    await client.updateInterface(eth0);
    expect(link('eth0').address).toBe(GUEST_MAC);
    const other = link('veth-guest');
    expect(other.address).toBe('02:00:ca:fe:00:03');
    expect(other.flags).toContain('UP');
  });

  it('answers NOT_FOUND for a MAC no link has, and INVALID_ARGUMENT naming the field, changing nothing', async () => {
    const before = namespace.ipJson('addr');
    await expect(client.updateInterface({ ...eth0, hwAddr: '02:00:00:00:00:99' })).rejects.toMatchObject({
      status: StatusCode.NOT_FOUND,
      statusMessage: expect.stringContaining('interface.hwAddr'),
    });
    await expect(
      client.updateInterface({
        ...eth0,
        IPAddresses: [...eth0.IPAddresses, { family: IPFamily.v4, address: '10.0.0.9', mask: '40' }],
      }),
    ).rejects.toMatchObject({
      status: StatusCode.INVALID_ARGUMENT,
      statusMessage: expect.stringContaining('interface.IPAddresses[2].mask'),
    });
    expect(namespace.ipJson('addr')).toEqual(before);
  });

  it('undoes everything when a late step fails: name, MTU, addresses and state come back', async () => {
    namespace.exec('ip', ['addr', 'add', '10.9.0.2/24', 'dev', 'veth-guest']);
    namespace.exec('ip', ['link', 'set', 'veth-guest', 'up']);
    // The IPv6 address is the last change; the kernel refuses it on this link.
    namespace.exec('sysctl', ['-qw', 'net.ipv6.conf.veth-guest.disable_ipv6=1']);
    const error = await client.updateInterface(eth0).catch((e: unknown) => e);
    // The kernel answers EACCES "IPv6 is disabled on this device" for an IPv6 address on such a link:
    // a refusal of the link's state, not a missing privilege, so the one classifier (errors.ts) does
    // not make it PERMISSION_DENIED.
    expect(error).toMatchObject({ status: StatusCode.INTERNAL });
    expect((error as { statusMessage: string }).statusMessage).toMatch(
      /add address fd00::2\/64.*everything done before was undone/,
    );
    const after = link('veth-guest');
    expect(after.mtu).toBe(1500);
    expect(after.flags).toContain('UP');
    expect(after.flags).not.toContain('NOARP');
    expect(addressesOf('veth-guest')).toEqual(['10.9.0.2/24']);
  });
});

describe('UpdateRoutes', () => {
  beforeEach(async () => {
    await client.updateInterface(eth0);
    // A route from before (proto boot) that the update must replace.
    namespace.exec('ip', ['route', 'add', '10.9.0.0/16', 'dev', 'eth0']);
  });

  it('replaces the non-kernel routes of the device, link routes before gateway routes, with v6, source, scope and MTU', async () => {
    const answer = await client.updateRoutes([
      // Listed first, but its gateway is only reachable through the link route below.
      { dest: '', gateway: '10.1.0.1', device: 'eth0' },
      { dest: '10.1.0.0/16', device: 'eth0', scope: 253, source: '10.0.0.2', mtu: 1300 },
      { dest: '::/0', gateway: 'fd00::1', device: 'eth0', family: IPFamily.v6 },
    ]);
    const v4 = routes();
    expect(v4.find((r) => r.dst === 'default')).toMatchObject({ gateway: '10.1.0.1', dev: 'eth0', protocol: 'boot' });
    expect(v4.find((r) => r.dst === '10.1.0.0/16')).toMatchObject({
      scope: 'link',
      prefsrc: '10.0.0.2',
      metrics: [{ mtu: 1300 }],
    });
    expect(v4.find((r) => r.dst === '10.9.0.0/16')).toBeUndefined();
    // The kernel's own route for the address stays.
    expect(v4.find((r) => r.dst === '10.0.0.0/24')).toMatchObject({ protocol: 'kernel' });
    expect(routes('-6').find((r) => r.dst === 'default')).toMatchObject({ gateway: 'fd00::1', dev: 'eth0' });
    expect(answer.find((r) => r.dest === '10.1.0.0/16')).toMatchObject({
      device: 'eth0',
      scope: 253,
      mtu: 1300,
      source: '10.0.0.2',
    });
    expect(answer.find((r) => r.gateway === 'fd00::1')).toMatchObject({ dest: '::/0', family: IPFamily.v6 });
    expect(answer.find((r) => r.gateway === '10.1.0.1')).toMatchObject({ dest: '0.0.0.0/0', family: IPFamily.v4 });
  });

  it('puts the old routes back when one cannot be added', async () => {
    const before = routes();
    const error = await client
      .updateRoutes([
        { dest: '10.1.0.0/16', device: 'eth0' },
        { dest: '', gateway: '192.168.77.1', device: 'eth0' },
      ])
      .catch((e: unknown) => e);
    expect(error).toMatchObject({ status: StatusCode.INTERNAL });
    expect((error as Error).message).toContain('add route default via 192.168.77.1 dev eth0');
    // Only the routes are put back: the addresses UpdateInterface gave stay.
    expect((error as Error).message).toContain(
      'the interfaces keep the addresses, MTU and names UpdateInterface gave them',
    );
    expect(addressesOf('eth0')).toEqual(['10.0.0.2/24', 'fd00::2/64']);
    expect(routes()).toEqual(before);
  });

  it('answers NOT_FOUND naming the route whose device does not exist', async () => {
    await expect(
      client.updateRoutes([
        { dest: '10.1.0.0/16', device: 'eth0' },
        { dest: '10.2.0.0/16', device: 'eth7' },
      ]),
    ).rejects.toMatchObject({
      status: StatusCode.NOT_FOUND,
      statusMessage: expect.stringContaining('routes.Routes[1].device'),
    });
    expect(routes().find((r) => r.dst === '10.9.0.0/16')).toBeDefined();
  });

  it('lists the routes as they are', async () => {
    const listed = await client.listRoutes();
    expect(listed.find((r) => r.dest === '10.9.0.0/16')).toMatchObject({
      device: 'eth0',
      family: IPFamily.v4,
      scope: 253,
    });
    expect(listed.find((r) => r.dest === 'fd00::/64')).toMatchObject({ device: 'eth0', family: IPFamily.v6 });
  });
});

describe('UpdateRoutes and ListRoutes next to the route cache', () => {
  it('neither deletes nor lists a path-MTU exception: the route set is replaced, the exception is no route', async () => {
    await client.updateInterface(eth0);
    // The guest's NIC leads to a router with a 1280-byte hop to a far peer.
    const router = makeNamespace('router');
    addSmallHop(router);
    namespace.exec('ip', ['link', 'set', 'veth-peer', 'netns', router.name]);
    router.exec('ip', ['link', 'set', 'veth-peer', 'up']);
    router.exec('ip', ['addr', 'add', '10.0.0.1/24', 'dev', 'veth-peer']);
    router.exec('ip', ['addr', 'add', 'fd00::1/64', 'dev', 'veth-peer', 'nodad']);
    const defaults = [
      { dest: '', gateway: '10.0.0.1', device: 'eth0' },
      { dest: '::/0', gateway: 'fd00::1', device: 'eth0', family: IPFamily.v6 },
    ];
    await client.updateRoutes(defaults);
    // A DF ping too big for the hop: the guest learns the path MTU (`ip route show cache`).
    await learnPathMtu(namespace);
    const destinations = (listed: Array<{ dest: string }>) => listed.map((route) => route.dest).sort();
    const cached = [`${FAR_PEER.v4}/32`, `${FAR_PEER.v6}/128`];
    for (const dest of cached) expect(destinations(await client.listRoutes())).not.toContain(dest);

    // The next full route set (as add-iface and configure-guest push it) deleted the exceptions as
    // routes it was not given: ESRCH, and the whole update rolled back.
    const answer = await client.updateRoutes([...defaults, { dest: '10.1.0.0/16', device: 'eth0' }]);
    expect(destinations(answer)).toEqual(['0.0.0.0/0', '10.0.0.0/24', '10.1.0.0/16', '::/0', 'fd00::/64', 'fe80::/64']);
    expect(destinations(await client.listRoutes())).toEqual(destinations(answer));
    expect(routes().map((r) => `${r.dst} ${r.gateway ?? ''}`.trim())).toEqual([
      'default 10.0.0.1',
      '10.0.0.0/24',
      '10.1.0.0/16',
    ]);
    expect(routes('-6').find((r) => r.dst === 'default')).toMatchObject({ gateway: 'fd00::1', dev: 'eth0' });
  });
});

describe('AddARPNeighbors and ListInterfaces', () => {
  it('adds permanent v4 and v6 neighbours', async () => {
    await client.updateInterface(eth0);
    await client.addArpNeighbors([
      { toIPAddress: { family: IPFamily.v4, address: '10.0.0.1' }, device: 'eth0', lladdr: PEER_MAC, state: 0x80 },
      { toIPAddress: { family: IPFamily.v6, address: 'fd00::1' }, device: 'eth0', lladdr: PEER_MAC },
    ]);
    const neighbours = namespace.ipJson<{ dst: string; lladdr: string; state: string[] }[]>(
      'neigh',
      'show',
      'dev',
      'eth0',
    );
    expect(neighbours.map((n) => [n.dst, n.lladdr, n.state]).sort()).toEqual([
      ['10.0.0.1', PEER_MAC, ['PERMANENT']],
      ['fd00::1', PEER_MAC, ['PERMANENT']],
    ]);
  });

  it('takes back the neighbours it added when a later one fails', async () => {
    namespace.exec('sysctl', ['-qw', 'net.ipv6.conf.veth-guest.disable_ipv6=1']);
    const error = await client
      .addArpNeighbors([
        { toIPAddress: { family: IPFamily.v4, address: '10.0.0.1' }, device: 'veth-guest', lladdr: PEER_MAC },
        { toIPAddress: { family: IPFamily.v6, address: 'fd00::1' }, device: 'veth-guest', lladdr: PEER_MAC },
      ])
      .catch((e: unknown) => e);
    expect(error).toMatchObject({ status: StatusCode.INTERNAL });
    const permanent = namespace
      .ipJson<{ dst: string; state: string[] }[]>('neigh', 'show', 'dev', 'veth-guest')
      .filter((n) => n.state.includes('PERMANENT'));
    expect(permanent).toEqual([]);
  });

  it('lists the links with their addresses, MTU, MAC and NOARP', async () => {
    await client.updateInterface({ ...eth0, rawFlags: 0x80 });
    const listed = await client.listInterfaces();
    expect(listed.map((i) => i.name).sort()).toEqual(['eth0', 'lo', 'veth-peer']);
    const listedEth0 = listed.find((i) => i.name === 'eth0')!;
    expect(listedEth0).toMatchObject({ hwAddr: GUEST_MAC, mtu: 1400n, rawFlags: 0x80, type: 'veth' });
    expect(listedEth0.IPAddresses.map((a) => `${a.address}/${a.mask}`)).toEqual(
      expect.arrayContaining(['10.0.0.2/24', 'fd00::2/64']),
    );
  });
});
