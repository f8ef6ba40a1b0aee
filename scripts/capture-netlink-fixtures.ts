/**
 * Records real kernel replies for the codec's unit tests: builds a known set of objects in a
 * throwaway namespace, dumps them, and writes every reply message (header + payload, hex) with the
 * facts the test checks. Run as root: `npx tsx scripts/capture-netlink-fixtures.ts`.
 */
import { writeFileSync } from 'node:fs';
import { release } from 'node:os';
import { nativeShim } from '../src/native/binding.js';
import { encodeGetAddress } from '../src/netlink/codec/address.js';
import { MessageFlag, MessageType } from '../src/netlink/codec/constants.js';
import { encodeGetLink } from '../src/netlink/codec/link.js';
import { encodeGetNeighbour } from '../src/netlink/codec/neighbour.js';
import { encodeGetRoute } from '../src/netlink/codec/route.js';
import { MATCH_ALL_U32_KEYS } from '../src/netlink/codec/tc/filter/u32.js';
import { encodeGetTc, parseHandle, TC_H_INGRESS, TC_H_ROOT } from '../src/netlink/codec/tc/message.js';
import { ingressQdisc } from '../src/netlink/codec/tc/qdisc.js';
import type { MessageWriter } from '../src/netlink/codec/writer.js';
import { NetlinkHandle } from '../src/netlink/handle.js';
import { createNamespace, deleteNamespace } from '../src/netns/namespace.js';
import { serialise } from './serialise-netlink-message.js';

const path = createNamespace(`vcnet-capture-${process.pid}`);
const handle = NetlinkHandle.open(path);
try {
  await handle.addLink({
    name: 'veth0',
    mtu: 1400,
    address: '02:11:22:33:44:55',
    data: { kind: 'veth', peer: { name: 'veth0p' } },
  });
  const veth = await handle.linkByName('veth0');
  const peer = await handle.linkByName('veth0p');
  await handle.addLink({ name: 'mvt0', parentIndex: peer.index, data: { kind: 'macvtap', mode: 'bridge' } });
  nativeShim().createTun(path, 'tap0_kata', { tap: true, vnetHdr: true, persist: true, keepFds: false });
  const tap = await handle.linkByName('tap0_kata');
  await handle.setLink(veth.index, { up: true });
  await handle.addAddress({ index: veth.index, address: '10.99.0.2', prefixLength: 24 });
  await handle.addAddress({ index: veth.index, address: 'fd00:99::2', prefixLength: 64, flags: 0x2 });
  await handle.addRoute({ destination: '10.98.0.0', destinationLength: 16, gateway: '10.99.0.1', mtu: 1400 });
  await handle.addRoute({ destination: 'fd00:98::', destinationLength: 48, gateway: 'fd00:99::1', mtu: 1380 });
  await handle.addNeighbour({ index: veth.index, destination: '10.99.0.9', linkLayerAddress: '02:00:00:00:00:09' });
  await handle
    .changes()
    .addQdisc(ingressQdisc(veth.index))
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
    .addQdisc({
      index: tap.index,
      handle: parseHandle('1:'),
      parent: TC_H_ROOT,
      options: { kind: 'htb', defaultClass: 2 },
    })
    .addHtbClass({
      index: tap.index,
      handle: parseHandle('1:1'),
      parent: parseHandle('1:'),
      rateBitsPerSecond: 8_000_000,
    })
    .commit();

  const dumps: Array<[string, number, (w: MessageWriter) => void]> = [
    ['links', MessageType.GETLINK, (w) => encodeGetLink(w)],
    ['addresses', MessageType.GETADDR, (w) => encodeGetAddress(w)],
    ['routes', MessageType.GETROUTE, (w) => encodeGetRoute(w)],
    ['neighbours', MessageType.GETNEIGH, (w) => encodeGetNeighbour(w)],
    ['qdiscs', MessageType.GETQDISC, (w) => encodeGetTc(w)],
    ['classes', MessageType.GETTCLASS, (w) => encodeGetTc(w, tap.index)],
    ['filters', MessageType.GETTFILTER, (w) => encodeGetTc(w, veth.index, TC_H_INGRESS)],
  ];
  const fixture: Record<string, unknown> = {
    source: `captured from Linux ${release()} by scripts/capture-netlink-fixtures.ts`,
    indexes: { veth: veth.index, peer: peer.index, tap: tap.index },
  };
  for (const [name, type, encode] of dumps) {
    const [outcome] = await handle.socket.batch().add(type, MessageFlag.DUMP, `dump ${name}`, encode).send();
    if (!outcome?.ok) throw new Error(`dump ${name} failed`);
    fixture[name] = outcome.messages.map(serialise);
  }
  // An error reply with an extended ack, as the kernel sends for an unknown link kind.
  const [refused] = await handle.socket
    .batch()
    .add(MessageType.NEWLINK, MessageFlag.CREATE | MessageFlag.EXCL, 'add nosuchkind', (w) => {
      const header = w.header(16);
      header.fill(0);
      w.beginNested(18).string(1, 'nosuchkind').endNested();
      w.string(3, 'x0');
    })
    .send();
  if (refused?.ok) throw new Error('expected the kernel to refuse an unknown kind');
  fixture.refusal = { errno: refused?.error.errno, kernelMessage: refused?.error.kernelMessage };
  const output = new URL('../test/fixtures/netlink/kernel-dumps.json', import.meta.url);
  writeFileSync(output, `${JSON.stringify(fixture, null, 1)}\n`);
  console.log(`wrote ${output.pathname}`);
} finally {
  handle.close();
  deleteNamespace(path);
}
