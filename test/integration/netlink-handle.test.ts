/**
 * NetlinkHandle against the real kernel, each test in a fresh namespace; what the handle reads is
 * compared with what iproute2 (`ip -j`, `tc -j`) prints for the same objects.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { NamespacePathError } from '../../src/errors.js';
import { nativeShim } from '../../src/native/binding.js';
import { nativeNetlink } from '../../src/native/netlink-socket.js';
import { AddressFamily } from '../../src/netlink/codec/constants.js';
import { InterfaceFlag } from '../../src/netlink/codec/link/message.js';
import { NeighbourFlag, NeighbourState } from '../../src/netlink/codec/neighbour.js';
import { RouteFlag } from '../../src/netlink/codec/route.js';
import { RouteMetric } from '../../src/netlink/codec/route-attributes.js';
import { MATCH_ALL_U32_KEYS } from '../../src/netlink/codec/tc/filter/u32.js';
import { parseHandle, TC_H_INGRESS, TC_H_ROOT } from '../../src/netlink/codec/tc/message.js';
import { ingressQdisc } from '../../src/netlink/codec/tc/qdisc.js';
import { NetlinkError } from '../../src/netlink/errors.js';
import { NetlinkHandle } from '../../src/netlink/handle.js';
import { scanNamespace } from '../../src/network/scan.js';
import { cleanupNamespaces, kernelSupportsLinkKind, makeNamespace, type TestNamespace } from '../helpers/namespace.js';

interface IpLink {
  ifindex: number;
  ifname: string;
  mtu: number;
  address?: string;
  flags: string[];
  linkinfo?: { info_kind?: string; info_data?: { mode?: string } };
  group?: string;
}

let namespace: TestNamespace;
let handle: NetlinkHandle;

beforeEach(() => {
  namespace = makeNamespace('nl');
  handle = NetlinkHandle.open(namespace.path);
});

afterEach(() => {
  handle.close();
  cleanupNamespaces();
});

/** `ip ARGS` inside the namespace, as text (what a user reads). */
const ipText = (...args: string[]): string => namespace.exec('ip', args);

async function makeVeth(name = 'veth0', peer = 'veth0p') {
  await handle.addLink({ name, data: { kind: 'veth', peer: { name: peer } } });
  return handle.linkByName(name);
}

describe('links', () => {
  it('lists the links of the namespace exactly as ip -j link shows them', async () => {
    await makeVeth();
    await handle.addLink({ name: 'br0', data: { kind: 'bridge' } });
    const ours = await handle.links();
    const theirs = namespace.ipJson<IpLink[]>('-d', 'link', 'show');
    expect(ours.map((link) => link.name).sort()).toEqual(theirs.map((link) => link.ifname).sort());
    for (const link of theirs) {
      const mine = ours.find((candidate) => candidate.index === link.ifindex)!;
      expect(mine.name).toBe(link.ifname);
      expect(mine.mtu).toBe(link.mtu);
      expect(mine.address).toBe(link.address);
      expect(mine.kind).toBe(link.linkinfo?.info_kind);
      expect((mine.flags & InterfaceFlag.UP) !== 0).toBe(link.flags.includes('UP'));
    }
    const veth = ours.find((link) => link.name === 'veth0')!;
    const peer = ours.find((link) => link.name === 'veth0p')!;
    expect(veth.parentIndex).toBe(peer.index);
  });

  it('sets name, MTU, MAC, NOARP and up, and reads them back', async () => {
    const veth = await makeVeth();
    await handle.setLink(veth.index, {
      mtu: 1400,
      address: '02:11:22:33:44:55',
      noArp: true,
      up: true,
      name: 'renamed',
    });
    const changed = await handle.linkByIndex(veth.index);
    expect(changed).toMatchObject({ name: 'renamed', mtu: 1400, address: '02:11:22:33:44:55' });
    expect(changed.flags & InterfaceFlag.NOARP).toBeTruthy();
    expect(changed.flags & InterfaceFlag.UP).toBeTruthy();
    const [ip] = namespace.ipJson<IpLink[]>('link', 'show', 'renamed');
    expect(ip?.flags).toContain('NOARP');
    expect(ip?.mtu).toBe(1400);
  });

  it('creates macvlan and macvtap links on a parent, with their mode', async () => {
    const veth = await makeVeth();
    await handle.addLink({ name: 'mvl0', parentIndex: veth.index, data: { kind: 'macvlan', mode: 'bridge' } });
    await handle.addLink({ name: 'mvt0', parentIndex: veth.index, data: { kind: 'macvtap', mode: 'bridge' } });
    const macvlan = await handle.linkByName('mvl0');
    const macvtap = await handle.linkByName('mvt0');
    expect(macvlan).toMatchObject({ kind: 'macvlan', macvlanMode: 'bridge', parentIndex: veth.index });
    expect(macvtap).toMatchObject({ kind: 'macvtap', macvlanMode: 'bridge', parentIndex: veth.index });
    const [ip] = namespace.ipJson<IpLink[]>('-d', 'link', 'show', 'mvt0');
    expect(ip?.linkinfo?.info_kind).toBe('macvtap');
    expect(ip?.linkinfo?.info_data?.mode).toBe('bridge');
  });

  it('creates single and multi-queue taps through the native shim and reads their tun data', async () => {
    const shim = nativeShim();
    const single = shim.createTun(namespace.path, 'tap0_kata', {
      tap: true,
      vnetHdr: true,
      persist: true,
      keepFds: false,
    });
    expect(single.fds).toEqual([]);
    const multi = shim.createTun(namespace.path, 'tap1_kata', {
      tap: true,
      vnetHdr: true,
      multiQueue: true,
      queues: 4,
    });
    expect(multi.fds).toHaveLength(4);
    try {
      const tap0 = await handle.linkByName('tap0_kata');
      expect(tap0.kind).toBe('tun');
      expect(tap0.tun).toMatchObject({ type: 'tap', persist: true, vnetHeader: true, multiQueue: false });
      const tap1 = await handle.linkByName('tap1_kata');
      expect(tap1.tun).toMatchObject({ type: 'tap', persist: false, multiQueue: true, queues: 4 });
      const [ip] = namespace.ipJson<Array<{ linkinfo: { info_data: { type: string; multi_queue?: boolean } } }>>(
        '-d',
        'link',
        'show',
        'tap1_kata',
      );
      expect(ip?.linkinfo.info_data.type).toBe('tap');
      expect(ip?.linkinfo.info_data.multi_queue).toBe(true);
    } finally {
      for (const fd of multi.fds) shim.closeFd(fd);
    }
    // Without persist, closing the queues removes the device.
    expect(await handle.findLink({ name: 'tap1_kata' })).toBeUndefined();
  });

  it('never attaches to an existing tap of the same name (IFF_TUN_EXCL): the second create fails', () => {
    const shim = nativeShim();
    shim.createTun(namespace.path, 'tap0_kata', { persist: true, keepFds: false });
    expect(() => shim.createTun(namespace.path, 'tap0_kata', { persist: true, keepFds: false })).toThrow(
      expect.objectContaining({ code: 'EBUSY' }),
    );
  });

  it('reports a missing link kind with the kernel reason (ipvlan is absent on some hosts)', async () => {
    const veth = await makeVeth();
    const support = kernelSupportsLinkKind(namespace, 'ipvlan', ['link', 'veth0']);
    if (!support.ok) {
      console.log(`skip ipvlan creation: ${support.reason}`);
      const error = await handle
        .addLink({ name: 'ipv0', parentIndex: veth.index, data: { kind: 'ipvlan', mode: 'l2' } })
        .catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(NetlinkError);
      expect((error as NetlinkError).errno).toBe('EOPNOTSUPP');
      expect((error as NetlinkError).message).toContain('ipvlan');
      return;
    }
    await handle.addLink({ name: 'ipv0', parentIndex: veth.index, data: { kind: 'ipvlan', mode: 'l2' } });
    expect((await handle.linkByName('ipv0')).ipvlanMode).toBe('l2');
  });

  it('refuses a duplicate with a typed EEXIST error that names the request', async () => {
    await makeVeth();
    const error = await makeVeth().catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(NetlinkError);
    expect(error).toMatchObject({ code: 'VCNET_NETLINK', errno: 'EEXIST' });
    expect((error as NetlinkError).message).toContain('veth0');
  });

  it('deletes a whole link group in one request', async () => {
    const shim = nativeShim();
    for (let i = 0; i < 4; i++) shim.createTun(namespace.path, `tap${i}_kata`, { persist: true, keepFds: false });
    const batch = handle.changes();
    for (const link of await handle.links())
      if (link.name.startsWith('tap')) batch.setLink(link.index, { group: 4242 });
    await batch.commit();
    await makeVeth();
    await handle.deleteLinkGroup(4242);
    const names = (await handle.links()).map((link) => link.name).sort();
    expect(names).toEqual(['lo', 'veth0', 'veth0p']);
  });
});

describe('addresses, routes and neighbours', () => {
  it('adds and lists v4 and v6 addresses like ip -j addr', async () => {
    const veth = await makeVeth();
    await handle.setLink(veth.index, { up: true });
    await handle.addAddress({ index: veth.index, address: '10.99.0.2', prefixLength: 24 });
    await handle.addAddress({ index: veth.index, address: 'fd00:99::2', prefixLength: 64, flags: 0x2 /* nodad */ });
    const ours = await handle.addresses({ index: veth.index });
    const theirs = namespace.ipJson<Array<{ addr_info: Array<{ local: string; prefixlen: number; family: string }> }>>(
      'addr',
      'show',
      'dev',
      'veth0',
    )[0]!.addr_info;
    for (const entry of theirs) {
      const mine = ours.find((address) => address.address === entry.local);
      expect(mine, `address ${entry.local}`).toBeDefined();
      expect(mine?.prefixLength).toBe(entry.prefixlen);
      expect(mine?.family).toBe(entry.family === 'inet' ? AddressFamily.INET : AddressFamily.INET6);
    }
    await handle.deleteAddress({ index: veth.index, address: '10.99.0.2', prefixLength: 24 });
    expect((await handle.addresses({ index: veth.index, family: AddressFamily.INET })).length).toBe(0);
  });

  it('adds routes with gateway, source and MTU metric (v4 and v6) and deletes them', async () => {
    const veth = await makeVeth();
    await handle.setLink(veth.index, { up: true });
    await handle.addAddress({ index: veth.index, address: '10.99.0.2', prefixLength: 24 });
    await handle.addAddress({ index: veth.index, address: 'fd00:99::2', prefixLength: 64, flags: 0x2 });
    await handle.addRoute({ destination: '10.98.0.0', destinationLength: 16, gateway: '10.99.0.1', mtu: 1400 });
    await handle.addRoute({ gateway: '10.99.0.1', outputIndex: veth.index, preferredSource: '10.99.0.2' });
    await handle.addRoute({ destination: 'fd00:98::', destinationLength: 48, gateway: 'fd00:99::1', mtu: 1380 });
    const v4 = await handle.routes({ family: AddressFamily.INET });
    const special = v4.find((route) => route.destination === '10.98.0.0')!;
    expect(special).toMatchObject({ destinationLength: 16, gateway: '10.99.0.1', mtu: 1400, outputIndex: veth.index });
    const defaultRoute = v4.find((route) => route.destinationLength === 0)!;
    expect(defaultRoute).toMatchObject({ gateway: '10.99.0.1', preferredSource: '10.99.0.2' });
    const [ip] = namespace.ipJson<Array<{ dst: string; gateway: string; metrics?: Array<{ mtu: number }> }>>(
      '-6',
      'route',
      'show',
      'fd00:98::/48',
    );
    expect(ip?.gateway).toBe('fd00:99::1');
    const v6 = (await handle.routes({ family: AddressFamily.INET6 })).find(
      (route) => route.destination === 'fd00:98::',
    );
    expect(v6).toMatchObject({ destinationLength: 48, gateway: 'fd00:99::1', mtu: 1380 });
    expect(JSON.stringify(ip?.metrics)).toContain('1380');
    await handle.deleteRoute({ destination: '10.98.0.0', destinationLength: 16, gateway: '10.99.0.1' });
    expect(
      (await handle.routes({ family: AddressFamily.INET })).some((route) => route.destination === '10.98.0.0'),
    ).toBe(false);
  });

  it('adds routes with metrics, a realm and next hops (v4 and v6) as iproute2 shows them, and deletes them', async () => {
    const veth = await makeVeth();
    const peer = await handle.linkByName('veth0p');
    for (const link of [veth, peer]) await handle.setLink(link.index, { up: true });
    await handle.addAddress({ index: veth.index, address: '10.99.0.2', prefixLength: 24 });
    await handle.addAddress({ index: peer.index, address: '10.98.0.2', prefixLength: 24 });
    await handle.addAddress({ index: veth.index, address: 'fd00:99::2', prefixLength: 64, flags: 0x2 });
    const metrics = { [RouteMetric.ADVMSS]: 1300, [RouteMetric.INITCWND]: 20, [RouteMetric.CC_ALGO]: 'cubic' };
    await handle.addRoute({ destination: '10.50.0.0', destinationLength: 16, gateway: '10.99.0.1', metrics, realm: 7 });
    const multipath = {
      destination: '10.52.0.0',
      destinationLength: 16,
      nextHops: [
        { gateway: '10.99.0.1', outputIndex: veth.index, weight: 1 },
        { gateway: '10.98.0.9', outputIndex: peer.index, weight: 3, flags: RouteFlag.ONLINK, realm: 4 },
      ],
    };
    await handle.addRoute(multipath);
    await handle.addRoute({
      destination: 'fd00:52::',
      destinationLength: 48,
      nextHops: [
        { gateway: 'fd00:99::1', outputIndex: veth.index, weight: 1 },
        { gateway: 'fd00:99::5', outputIndex: veth.index, weight: 2 },
      ],
    });
    expect(ipText('route', 'show', '10.50.0.0/16').trim()).toBe(
      '10.50.0.0/16 via 10.99.0.1 dev veth0 realm 7 advmss 1300 initcwnd 20 congctl cubic',
    );
    expect(ipText('route', 'show', '10.52.0.0/16').replace(/\s+/g, ' ').trim()).toBe(
      '10.52.0.0/16 nexthop via 10.99.0.1 dev veth0 weight 1 nexthop via 10.98.0.9 realm 4 dev veth0p weight 3 onlink',
    );
    // A route leaves by a link through any of its next hops too.
    const byPeer = await handle.routes({ table: 'all', outputIndex: peer.index });
    expect(byPeer.find((route) => route.destination === '10.52.0.0')?.nextHops).toHaveLength(2);
    const v6 = (await handle.routes({ family: AddressFamily.INET6 })).find(
      (route) => route.destination === 'fd00:52::',
    );
    expect(v6?.nextHops?.map((hop) => [hop.gateway, hop.weight])).toEqual([
      ['fd00:99::1', 1],
      ['fd00:99::5', 2],
    ]);
    await handle.deleteRoute(multipath);
    await handle.deleteRoute({ destination: 'fd00:52::', destinationLength: 48, nextHops: v6?.nextHops ?? [] });
    expect(ipText('route', 'show', '10.52.0.0/16').trim()).toBe('');
    expect(ipText('-6', 'route', 'show', 'fd00:52::/48').trim()).toBe('');
  });

  it('adds, lists and deletes proxy neighbours of both families apart from the others', async () => {
    const veth = await makeVeth();
    await handle.setLink(veth.index, { up: true });
    for (const destination of ['10.99.0.77', 'fd00:99::77']) {
      await handle.addNeighbour({ index: veth.index, destination, flags: NeighbourFlag.PROXY });
    }
    const proxies = await handle.proxyNeighbours({ index: veth.index });
    expect(proxies.map((proxy) => proxy.destination).sort()).toEqual(['10.99.0.77', 'fd00:99::77']);
    expect((await handle.snapshot()).proxyNeighbours).toEqual(proxies);
    expect((await handle.neighbours({ index: veth.index })).map((entry) => entry.destination)).not.toContain(
      '10.99.0.77',
    );
    expect(ipText('neigh', 'show', 'proxy').trim()).toContain('10.99.0.77 dev veth0 proxy');
    await handle.deleteNeighbour({ index: veth.index, destination: '10.99.0.77', flags: NeighbourFlag.PROXY });
    expect((await handle.proxyNeighbours()).map((proxy) => proxy.destination)).toEqual(['fd00:99::77']);
  });

  it('adds permanent neighbours with and without a link-layer address', async () => {
    const veth = await makeVeth();
    await handle.setLink(veth.index, { up: true });
    await handle.addNeighbour({ index: veth.index, destination: '10.99.0.9', linkLayerAddress: '02:00:00:00:00:09' });
    await handle.addNeighbour({ index: veth.index, destination: 'fd00:99::9', linkLayerAddress: '02:00:00:00:00:0a' });
    const ours = await handle.neighbours({ index: veth.index });
    const v4 = ours.find((neighbour) => neighbour.destination === '10.99.0.9');
    expect(v4).toMatchObject({ linkLayerAddress: '02:00:00:00:00:09', state: NeighbourState.PERMANENT });
    expect(ours.find((neighbour) => neighbour.destination === 'fd00:99::9')?.linkLayerAddress).toBe(
      '02:00:00:00:00:0a',
    );
    const theirs = namespace.ipJson<Array<{ dst: string; lladdr: string; state: string[] }>>(
      'neigh',
      'show',
      'dev',
      'veth0',
    );
    expect(theirs.find((entry) => entry.dst === '10.99.0.9')?.state).toContain('PERMANENT');
  });
});

describe('traffic control', () => {
  it('adds ingress qdiscs and u32 match-all mirred redirects both ways, as tc -j shows', async () => {
    const veth = await makeVeth();
    nativeShim().createTun(namespace.path, 'tap0_kata', { persist: true, keepFds: false });
    const tap = await handle.linkByName('tap0_kata');
    const batch = handle
      .changes()
      .addQdisc(ingressQdisc(veth.index))
      .addQdisc(ingressQdisc(tap.index))
      .addFilter({
        index: veth.index,
        parent: TC_H_INGRESS,
        priority: 49152,
        options: {
          kind: 'u32',
          keys: MATCH_ALL_U32_KEYS,
          actions: [{ kind: 'mirred', direction: 'egress', mode: 'redirect', targetIndex: tap.index }],
        },
      })
      .addFilter({
        index: tap.index,
        parent: TC_H_INGRESS,
        priority: 49152,
        options: {
          kind: 'u32',
          keys: MATCH_ALL_U32_KEYS,
          actions: [{ kind: 'mirred', direction: 'egress', mode: 'redirect', targetIndex: veth.index }],
        },
      });
    await batch.commit();
    const filters = await handle.filters(veth.index, TC_H_INGRESS);
    const rule = filters.find(
      (filter) => filter.options.kind === 'u32' && 'keys' in filter.options && filter.options.keys.length > 0,
    );
    expect(rule?.options).toMatchObject({
      kind: 'u32',
      terminal: true,
      actions: [{ kind: 'mirred', direction: 'egress', mode: 'redirect', targetIndex: tap.index }],
    });
    const tc = namespace.tcJson<
      Array<{ kind: string; options?: { actions?: Array<{ kind: string; to_dev: string; mirred_action: string }> } }>
    >('filter', 'show', 'dev', 'veth0', 'ingress');
    const action = tc.flatMap((filter) => filter.options?.actions ?? [])[0];
    expect(action).toMatchObject({ kind: 'mirred', to_dev: 'tap0_kata', mirred_action: 'redirect' });
    const qdiscs = await handle.qdiscs(veth.index);
    expect(qdiscs.some((qdisc) => qdisc.kind === 'ingress' && qdisc.parent === TC_H_INGRESS)).toBe(true);
    // Deleting the ingress qdisc takes its filters with it.
    await handle.deleteQdisc(veth.index, parseHandle('ffff:'), TC_H_INGRESS);
    expect(namespace.tcJson<unknown[]>('filter', 'show', 'dev', 'veth0', 'ingress')).toEqual([]);
  });

  it('adds a matchall filter where the kernel has cls_matchall, and says why not otherwise', async () => {
    const veth = await makeVeth();
    await handle.addQdisc(ingressQdisc(veth.index));
    const peer = await handle.linkByName('veth0p');
    const result = await handle
      .addFilter({
        index: veth.index,
        parent: TC_H_INGRESS,
        priority: 1,
        options: {
          kind: 'matchall',
          actions: [{ kind: 'mirred', direction: 'egress', mode: 'redirect', targetIndex: peer.index }],
        },
      })
      .then(() => undefined)
      .catch((error: unknown) => error);
    if (result instanceof NetlinkError) {
      console.log(`skip matchall: this kernel has no matchall classifier (${result.kernelMessage ?? result.errno})`);
      expect(result.errno).toBe('ENOENT');
      return;
    }
    expect(result).toBeUndefined();
    const [filter] = (await handle.filters(veth.index, TC_H_INGRESS)).filter((entry) => entry.kind === 'matchall');
    expect(filter?.options).toMatchObject({ kind: 'matchall', actions: [{ kind: 'mirred', targetIndex: peer.index }] });
  });

  it('adds a prio qdisc with its bands and priority map, as tc shows it', async () => {
    const veth = await makeVeth();
    const priorityMap = [1, 2, 2, 2, 1, 2, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1];
    const refused = await handle
      .addQdisc({
        index: veth.index,
        handle: parseHandle('2:'),
        parent: TC_H_ROOT,
        options: { kind: 'prio', bands: 3, priorityMap },
      })
      .then(() => undefined)
      .catch((error: unknown) => error);
    if (refused instanceof NetlinkError) {
      console.log(`skip prio qdisc: this kernel has no sch_prio (${refused.kernelMessage ?? refused.errno})`);
      expect(refused.errno).toBe('ENOENT');
      return;
    }
    const qdisc = (await handle.qdiscs(veth.index)).find((entry) => entry.kind === 'prio');
    expect(qdisc?.options).toEqual({ kind: 'prio', bands: 3, priorityMap });
    const [tc] = namespace.tcJson<Array<{ kind: string; options: { bands: number; priomap: number[] } }>>(
      'qdisc',
      'show',
      'dev',
      'veth0',
    );
    expect(tc).toMatchObject({ kind: 'prio', options: { bands: 3, priomap: priorityMap } });
  });

  it('adds an htb qdisc with default class and classes with rate and ceil', async () => {
    const veth = await makeVeth();
    await handle
      .changes()
      .addQdisc({
        index: veth.index,
        handle: parseHandle('1:'),
        parent: TC_H_ROOT,
        options: { kind: 'htb', defaultClass: 2 },
      })
      .addHtbClass({
        index: veth.index,
        handle: parseHandle('1:1'),
        parent: parseHandle('1:'),
        rateBitsPerSecond: 10_000_000,
      })
      .addHtbClass({
        index: veth.index,
        handle: parseHandle('1:2'),
        parent: parseHandle('1:1'),
        rateBitsPerSecond: 10_000_000,
      })
      .commit();
    const qdisc = (await handle.qdiscs(veth.index)).find((entry) => entry.kind === 'htb');
    expect(qdisc?.options).toMatchObject({ kind: 'htb', defaultClass: 2 });
    const classes = await handle.classes(veth.index);
    expect(classes.map((entry) => entry.handle).sort()).toEqual([parseHandle('1:1'), parseHandle('1:2')].sort());
    expect(classes[0]?.rateBitsPerSecond).toBe(10_000_000);
    // iproute2 in Debian 12 has no JSON for classes: read its text.
    const tcText = namespace.exec('tc', ['class', 'show', 'dev', 'veth0']);
    expect(tcText).toMatch(/class htb 1:2 parent 1:1 .*rate 10Mbit ceil 10Mbit/);
    const tcQdisc = namespace.tcJson<Array<{ kind: string; options?: { default?: string | number } }>>(
      'qdisc',
      'show',
      'dev',
      'veth0',
    );
    expect(String(tcQdisc.find((entry) => entry.kind === 'htb')?.options?.default)).toMatch(/^(0x)?2$/);
  });
});

describe('namespaces', () => {
  it('opens the socket in the target namespace and leaves this thread where it was', async () => {
    const before = readlinkSync('/proc/thread-self/ns/net');
    const other = NetlinkHandle.open(namespace.path);
    try {
      expect(readlinkSync('/proc/thread-self/ns/net')).toBe(before);
      const names = (await other.links()).map((link) => link.name);
      expect(names).toEqual(['lo']);
    } finally {
      other.close();
    }
  });

  it('fails with a typed error naming a namespace that does not exist', () => {
    expect(() => NetlinkHandle.open('/var/run/netns/vcnet-does-not-exist')).toThrow(/vcnet-does-not-exist/);
  });

  it('a path that is no network namespace is refused as attach refuses it: NamespacePathError with a hint', async () => {
    const fifo = join(mkdtempSync(join(tmpdir(), 'vcnet-fifo-')), 'fifo');
    execFileSync('mkfifo', [fifo]);
    const cases: Array<[string, RegExp]> = [
      ['/var/run/netns/vcnet-does-not-exist', /no such file/],
      ['/etc/passwd', /a regular file, not a network namespace/],
      ['/tmp', /a directory, not a network namespace/],
      [fifo, /a FIFO, not a network namespace/],
      ['/proc/self/ns/mnt', /a namespace of another type, not a network namespace/],
      [`${namespace.path}/`, /is a file, not a directory, so the path with a "\/" after it names nothing/],
    ];
    for (const [path, what] of cases) {
      const opens: Array<() => unknown> = [() => NetlinkHandle.open(path), () => scanNamespace(path)];
      for (const open of opens) {
        const error = await Promise.resolve()
          .then(open)
          .then(
            () => new Error(`${path} was opened`),
            (caught: unknown) => caught,
          );
        expect(error, path).toBeInstanceOf(NamespacePathError);
        expect((error as NamespacePathError).code).toBe('VCNET_NETNS_INVALID');
        expect((error as NamespacePathError).message).toMatch(what);
        expect((error as NamespacePathError).message).toContain(JSON.stringify(path));
        expect((error as NamespacePathError).hint).toMatch(/network namespace path such as/);
      }
    }
    rmSync(dirname(fifo), { recursive: true, force: true });
  });
});

describe('snapshots and concurrent requests', () => {
  it('takes the whole snapshot in one batch, or only the parts asked for', async () => {
    const veth = await makeVeth();
    await handle.setLink(veth.index, { up: true });
    await handle.addAddress({ index: veth.index, address: '10.77.0.2', prefixLength: 24 });
    await handle.addQdisc(ingressQdisc(veth.index));
    const whole = await handle.snapshot();
    expect(whole.links.map((link) => link.name).sort()).toEqual(['lo', 'veth0', 'veth0p']);
    expect(whole.addresses.map((address) => address.address)).toContain('10.77.0.2');
    expect(whole.routes.some((route) => route.destination === '10.77.0.0')).toBe(true);
    expect(whole.qdiscs.some((qdisc) => qdisc.index === veth.index && qdisc.kind === 'ingress')).toBe(true);
    const narrow = await handle.snapshot(['links', 'qdiscs']);
    expect(narrow.links).toEqual(whole.links);
    expect(narrow.qdiscs).toEqual(whole.qdiscs);
    expect(narrow).toMatchObject({ addresses: [], routes: [], neighbours: [] });
  });

  it('answers dumps and changes started together on one socket, each with its own result', async () => {
    const veth = await makeVeth();
    const [links, , snapshot, addresses] = await Promise.all([
      handle.links(),
      handle.addAddress({ index: veth.index, address: '10.78.0.2', prefixLength: 24 }),
      handle.snapshot(),
      handle.addresses({ index: veth.index }),
      handle.setLink(veth.index, { up: true }),
    ]);
    expect(links.map((link) => link.name).sort()).toEqual(['lo', 'veth0', 'veth0p']);
    expect(snapshot.links).toHaveLength(3);
    // Sent after the change (one dump at a time, in order), so it sees the address.
    expect(addresses.map((address) => address.address)).toEqual(['10.78.0.2']);
    expect(namespace.ipJson<Array<{ ifname: string; flags: string[] }>>('link', 'show', 'veth0')[0]?.flags).toContain(
      'UP',
    );
  });
});

describe('the native send', () => {
  it("reports the kernel's errno as sendto's, on the main thread and from the pool alike", async () => {
    const notASocket = -1;
    let thrown: NodeJS.ErrnoException | undefined;
    try {
      nativeNetlink.netlinkSend(notASocket, new Uint8Array(16));
    } catch (error) {
      thrown = error as NodeJS.ErrnoException;
    }
    expect(thrown).toMatchObject({ code: 'EBADF', syscall: 'sendto' });
    expect(nativeNetlink.canSendInBackground()).toBe(true);
    const fromPool = await new Promise<{ error: NodeJS.ErrnoException | null; sent: number | null }>((resolve) =>
      nativeNetlink.netlinkSendInBackground(notASocket, new Uint8Array(16), (error, sent) => resolve({ error, sent })),
    );
    expect(fromPool.sent).toBeNull();
    expect(fromPool.error).toMatchObject({ code: 'EBADF', syscall: 'sendto' });
  });
});
