/** veth: a pair; the peer is a whole ifinfomsg with its attributes inside VETH_INFO_PEER. */
import { macToBytes } from '../address-format.js';
import type { MessageWriter } from '../writer.js';
import { LinkAttribute, LinkInfoAttribute, writeInfoMessage } from './message.js';

/** VETH_INFO_* attribute types of a veth link's data. */
export const VethAttribute = { PEER: 1 } as const;

/** A veth's own data: the peer to create with it (name, MAC, MTU, and the namespace fd to put it in). */
export interface VethLinkData {
  kind: 'veth';
  peer?: { name: string; address?: string; mtu?: number; namespaceFd?: number };
}

/** IFLA_INFO_DATA of a new veth: its peer (none when no peer is named: the kernel names it). */
export function encodeVethData(writer: MessageWriter, data: VethLinkData): void {
  if (!data.peer) return;
  writer.beginNested(LinkInfoAttribute.DATA);
  writer.beginNested(VethAttribute.PEER);
  writeInfoMessage(writer, 0, 0, 0);
  writer.string(LinkAttribute.IFNAME, data.peer.name);
  if (data.peer.address) writer.bytes(LinkAttribute.ADDRESS, macToBytes(data.peer.address));
  if (data.peer.mtu) writer.u32(LinkAttribute.MTU, data.peer.mtu);
  if (data.peer.namespaceFd !== undefined) writer.u32(LinkAttribute.NET_NS_FD, data.peer.namespaceFd);
  writer.endNested();
  writer.endNested();
}
