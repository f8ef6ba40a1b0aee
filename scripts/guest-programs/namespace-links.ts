/**
 * Runs inside the test guest (scripts/guest-image bundles it as /agent/namespace-links.js, beside the guest
 * agent and its native shim): makes a fresh network namespace, as a pod's is made, and prints on the console
 * what the guest's kernel put there and what vcnet's scan makes of it. The kernel makes its fallback tunnels
 * (tunl0, sit0, gre0...) in every new namespace once their modules are loaded, so the caller loads them first.
 *
 * Usage: node /agent/namespace-links.js [--veth [--attach]]
 *   --veth     also make a veth pair in the namespace, eth0 (up, 10.0.2.15/24) and eth0-peer (no address)
 *   --attach   then attach its endpoints (Network.addEndpoints, tcfilter), print what became endpoints and the
 *              flags of every link before and after, and detach
 *
 * Lines printed (one message per line; the host checks the count and the SHA-256 of the messages):
 *   VCNET-LINKS-KERNEL <release>
 *   VCNET-LINKS-MODULES <name,name...>                  (/proc/modules)
 *   VCNET-LINKS-MESSAGE <part> <hex>                    part: links, addresses, routes or neighbours; the
 *                                                       reply message (nlmsghdr and payload) of that dump
 *   VCNET-LINKS-SCAN <json>                             {name, kind, skipped, endpointType, unsupported, notice}
 *   VCNET-LINKS-ATTACH <json>                           {endpoints, before, attached, detached}: endpoint link
 *                                                       names, and each link's flags before, attached, detached
 *   VCNET-LINKS-END <messages> <sha256 of the hex strings joined by "\n">
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { release } from 'node:os';
import { encodeGetAddress } from '../../src/netlink/codec/address.js';
import { AddressFamily, MessageFlag, MessageType } from '../../src/netlink/codec/constants.js';
import { encodeGetLink } from '../../src/netlink/codec/link.js';
import { encodeGetNeighbour } from '../../src/netlink/codec/neighbour.js';
import { encodeGetRoute } from '../../src/netlink/codec/route.js';
import type { MessageWriter } from '../../src/netlink/codec/writer.js';
import { NetlinkHandle } from '../../src/netlink/handle.js';
import { createNamespace, deleteNamespace } from '../../src/netns/namespace.js';
import { NETNS_RUN_DIRECTORY } from '../../src/netns/namespace-identity.js';
import { Network } from '../../src/network/network.js';
import { classifyScan, scanNamespace, selectEndpointInterfaces, skippedNotice } from '../../src/network/scan.js';
import { serialise } from '../serialise-netlink-message.js';

const withVeth = process.argv.includes('--veth');
const withAttach = process.argv.includes('--attach');
const unknown = process.argv.slice(2).filter((argument) => argument !== '--veth' && argument !== '--attach');
if (unknown.length > 0 || (withAttach && !withVeth)) {
  console.error(
    `namespace-links: arguments ${process.argv.slice(2).join(' ')} refused (accepted: [--veth [--attach]])`,
  );
  process.exit(2);
}

console.log(`VCNET-LINKS-KERNEL ${release()}`);
const modules = readFileSync('/proc/modules', 'utf8')
  .split('\n')
  .filter(Boolean)
  .map((line) => line.split(' ')[0])
  .sort();
console.log(`VCNET-LINKS-MODULES ${modules.join(',')}`);

mkdirSync(NETNS_RUN_DIRECTORY, { recursive: true });
const path = createNamespace('fallback-tunnels');
const handle = NetlinkHandle.open(path);
try {
  if (withVeth) {
    await handle.addLink({ name: 'eth0', data: { kind: 'veth', peer: { name: 'eth0-peer' } } });
    const eth0 = await handle.linkByName('eth0');
    await handle.setLink(eth0.index, { up: true });
    await handle.addAddress({ index: eth0.index, address: '10.0.2.15', prefixLength: 24 });
  }
  // The dumps a scan's snapshot makes (every family), each reply message as the kernel sent it.
  const dumps: Array<[string, number, (writer: MessageWriter) => void]> = [
    ['links', MessageType.GETLINK, (writer) => encodeGetLink(writer)],
    ['addresses', MessageType.GETADDR, (writer) => encodeGetAddress(writer, AddressFamily.UNSPEC)],
    ['routes', MessageType.GETROUTE, (writer) => encodeGetRoute(writer, AddressFamily.UNSPEC)],
    ['neighbours', MessageType.GETNEIGH, (writer) => encodeGetNeighbour(writer, AddressFamily.UNSPEC)],
  ];
  const printed: string[] = [];
  for (const [part, type, encode] of dumps) {
    const [outcome] = await handle.socket.batch().add(type, MessageFlag.DUMP, `dump ${part}`, encode).send();
    if (!outcome?.ok) throw new Error(`dump ${part} failed: ${outcome?.error.message}`);
    for (const message of outcome.messages) {
      const hex = serialise(message);
      printed.push(hex);
      console.log(`VCNET-LINKS-MESSAGE ${part} ${hex}`);
    }
  }

  const scan = await scanNamespace(handle);
  const { skipped } = selectEndpointInterfaces(scan.interfaces);
  for (const scanned of classifyScan(scan)) {
    const skip = skipped.find((entry) => entry.info.link.name === scanned.info.link.name);
    const line = {
      name: scanned.info.link.name,
      kind: scanned.info.link.kind ?? null,
      skipped: scanned.skipped ?? null,
      endpointType: scanned.endpointType ?? null,
      unsupported: scanned.unsupported?.code ?? null,
      notice: skip ? skippedNotice(skip) : null,
    };
    console.log(`VCNET-LINKS-SCAN ${JSON.stringify(line)}`);
  }
  if (withAttach) {
    const flags = async () => Object.fromEntries((await handle.links()).map((link) => [link.name, link.flags]));
    const before = await flags();
    const network = Network.open({
      namespacePath: path,
      model: 'tcfilter',
      namespaceCreatedByVcnet: false,
      disableNewNetns: false,
      queues: 1,
      vhostNet: 'auto',
    });
    try {
      const endpoints = await network.addEndpoints();
      const attached = await flags();
      await network.removeEndpoints();
      const detached = await flags();
      const line = {
        endpoints: endpoints.map((endpoint) => endpoint.properties.link.name),
        before,
        attached,
        detached,
      };
      console.log(`VCNET-LINKS-ATTACH ${JSON.stringify(line)}`);
    } finally {
      network.close();
    }
  }
  const digest = createHash('sha256').update(printed.join('\n')).digest('hex');
  console.log(`VCNET-LINKS-END ${printed.length} ${digest}`);
} finally {
  await handle.close();
  deleteNamespace(path);
}
