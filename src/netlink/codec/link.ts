/**
 * Links: RTM_NEWLINK / SETLINK / DELLINK / GETLINK bodies and dumped links. The header and the
 * IFLA_* attributes are in link/message.ts; each kind vcnet reads or writes has its file in link/.
 */
import { bytesToMac, macToBytes } from './address-format.js';
import { AddressFamily } from './constants.js';
import { decodeIpvlanMode, encodeIpvlanData, type IpvlanLinkData, type IpvlanModeName } from './link/ipvlan.js';
import { decodeMacvlanMode, encodeMacvlanData, type MacvlanLinkData, type MacvlanModeName } from './link/macvlan.js';
import {
  IFINFOMSG_LENGTH,
  InterfaceFlag,
  LinkAttribute,
  LinkInfoAttribute,
  OperationalState,
  RTEXT_FILTER_SKIP_STATS,
  writeInfoMessage,
} from './link/message.js';
import { decodeTunInfo, type TunInfo, type TunLinkData } from './link/tun.js';
import { encodeVethData, type VethLinkData } from './link/veth.js';
import { Attributes, MalformedMessageError, type RawMessage } from './reader.js';
import type { MessageWriter } from './writer.js';

/** Kind-specific data (IFLA_INFO_DATA) vcnet reads and writes. */
export type LinkKindData =
  | VethLinkData
  | MacvlanLinkData
  | IpvlanLinkData
  | TunLinkData
  | { kind: 'bridge' | 'dummy' | 'ifb' };

/**
 * A network interface as the kernel reports it (`ip link show`): index, name, kind, type, flags, MTU, MAC,
 * master, parent, operational state, group, queues and its kind's own data (macvlan or ipvlan mode, tun
 * info).
 */
export interface Link {
  index: number;
  name: string;
  /** IFLA_INFO_KIND: "veth", "macvtap", "tun", "bridge"...; undefined for physical devices and lo. */
  kind?: string;
  /** Kind of the link's role under a master (e.g. "bridge" for a bridge port). */
  slaveKind?: string;
  /** ARPHRD_* hardware type. */
  type: number;
  flags: number;
  mtu: number;
  address?: string;
  broadcast?: string;
  permanentAddress?: string;
  master?: number;
  /** Parent link index (macvlan/macvtap/ipvlan lower device, veth peer). */
  parentIndex?: number;
  /** Namespace id the parent lives in, when it is another namespace. */
  parentNamespaceId?: number;
  operationalState: (typeof OperationalState)[number];
  group: number;
  txQueueLength?: number;
  txQueues?: number;
  rxQueues?: number;
  alias?: string;
  qdisc?: string;
  /** The bus of the device behind the link ("pci", "virtio"...), when the kernel reports it. */
  parentBus?: string;
  /** The device behind the link (a PCI address such as 0000:00:03.0 for a physical NIC). */
  parentDevice?: string;
  macvlanMode?: MacvlanModeName;
  ipvlanMode?: IpvlanModeName;
  tun?: TunInfo;
  /** How the kernel makes the link's IPv6 link-local address (IFLA_INET6_ADDR_GEN_MODE); undefined without IPv6. */
  ipv6AddressGeneration?: Ipv6AddressGeneration;
  /**
   * IPv6 has taken the link as ready (IF_READY in IFLA_INET6_FLAGS): it was up with carrier at some
   * point since it last came up. The kernel makes the link-local address at that moment only, so a
   * link marked ready without one (generation was off then) gets none when carrier comes back.
   */
  ipv6Ready?: boolean;
  /**
   * The link's IPv4 promote_secondaries (IPV4_DEVCONF_PROMOTE_SECONDARIES in IFLA_INET_CONF): on, a
   * deleted primary address leaves its subnet's secondaries, one promoted; off (the kernel's
   * default), they are deleted with it. Undefined when the kernel reports no IPv4 settings.
   */
  promoteSecondaries?: boolean;
}

/**
 * How the kernel makes a link's IPv6 link-local address (IFLA_INET6_ADDR_GEN_MODE): from the MAC (`eui64`),
 * not at all, stable-privacy or random.
 */
export type Ipv6AddressGeneration = 'eui64' | 'none' | 'stable-privacy' | 'random';

/** What addLink()/setLink() may set. Undefined fields are left alone. */
export interface LinkChanges {
  name?: string;
  mtu?: number;
  address?: string;
  up?: boolean;
  noArp?: boolean;
  /** IFF_ALLMULTI: receive every multicast frame, not only those of the groups the link joined. */
  allMulticast?: boolean;
  master?: number | null;
  group?: number;
  txQueueLength?: number;
  namespaceFd?: number;
  namespacePid?: number;
  /** A VF's MAC, set through its PF (IFLA_VFINFO_LIST / IFLA_VF_INFO / IFLA_VF_MAC). */
  virtualFunctionAddress?: { vf: number; address: string };
  /** IPv6 link-local address generation; 'none' keeps the kernel from giving the link any IPv6 address. */
  ipv6AddressGeneration?: Ipv6AddressGeneration;
}

const IPV6_ADDRESS_GENERATION = { eui64: 0, none: 1, 'stable-privacy': 2, random: 3 } as const;

/**
 * A link to create (`NetlinkHandle.addLink`): its name, kind and kind data, and what `LinkChanges` may set
 * too.
 */
export interface LinkSpec extends LinkChanges {
  name: string;
  /** The ifindex to create the link at (the kernel picks one when omitted); EEXIST when it is taken. */
  index?: number;
  parentIndex?: number;
  data: LinkKindData;
}

function flagChanges(changes: LinkChanges): { flags: number; change: number } {
  let flags = 0;
  let change = 0;
  if (changes.up !== undefined) {
    change |= InterfaceFlag.UP;
    if (changes.up) flags |= InterfaceFlag.UP;
  }
  if (changes.noArp !== undefined) {
    change |= InterfaceFlag.NOARP;
    if (changes.noArp) flags |= InterfaceFlag.NOARP;
  }
  if (changes.allMulticast !== undefined) {
    change |= InterfaceFlag.ALLMULTI;
    if (changes.allMulticast) flags |= InterfaceFlag.ALLMULTI;
  }
  return { flags, change };
}

function writeChangeAttributes(writer: MessageWriter, changes: LinkChanges): void {
  if (changes.name !== undefined) writer.string(LinkAttribute.IFNAME, changes.name);
  if (changes.mtu !== undefined) writer.u32(LinkAttribute.MTU, changes.mtu);
  if (changes.address !== undefined) writer.bytes(LinkAttribute.ADDRESS, macToBytes(changes.address));
  if (changes.master !== undefined) writer.u32(LinkAttribute.MASTER, changes.master ?? 0);
  if (changes.group !== undefined) writer.u32(LinkAttribute.GROUP, changes.group);
  if (changes.txQueueLength !== undefined) writer.u32(LinkAttribute.TXQLEN, changes.txQueueLength);
  if (changes.namespaceFd !== undefined) writer.u32(LinkAttribute.NET_NS_FD, changes.namespaceFd);
  if (changes.namespacePid !== undefined) writer.u32(LinkAttribute.NET_NS_PID, changes.namespacePid);
  if (changes.virtualFunctionAddress !== undefined) {
    // struct ifla_vf_mac { __u32 vf; __u8 mac[32]; }
    const body = Buffer.alloc(36);
    body.writeUInt32LE(changes.virtualFunctionAddress.vf, 0);
    Buffer.from(macToBytes(changes.virtualFunctionAddress.address)).copy(body, 4);
    writer.beginNested(LinkAttribute.VFINFO_LIST);
    writer.beginNested(IFLA_VF_INFO);
    writer.bytes(IFLA_VF_MAC, body);
    writer.endNested();
    writer.endNested();
  }
  if (changes.ipv6AddressGeneration !== undefined) {
    writer.beginNested(LinkAttribute.AF_SPEC);
    writer.beginNested(AddressFamily.INET6);
    writer.u8(INET6_ADDR_GEN_MODE, IPV6_ADDRESS_GENERATION[changes.ipv6AddressGeneration]);
    writer.endNested();
    writer.endNested();
  }
}

/** IFLA_VF_INFO inside IFLA_VFINFO_LIST, and IFLA_VF_MAC inside it. */
const IFLA_VF_INFO = 1;
const IFLA_VF_MAC = 1;

/** IFLA_INET6_ADDR_GEN_MODE inside IFLA_AF_SPEC / AF_INET6. */
const INET6_ADDR_GEN_MODE = 8;
/** IFLA_INET6_FLAGS inside IFLA_AF_SPEC / AF_INET6 (the inet6 device's if_flags), and its IF_READY bit. */
const INET6_FLAGS = 1;
const INET6_IF_READY = 0x80000000;
/** IFLA_INET_CONF inside IFLA_AF_SPEC / AF_INET: one u32 per IPV4_DEVCONF_*, the first (1) at offset 0. */
const INET_CONF = 1;
const IPV4_DEVCONF_PROMOTE_SECONDARIES = 20;

/** RTM_NEWLINK body for a new link of a kind. */
export function encodeNewLink(writer: MessageWriter, spec: LinkSpec): void {
  const { flags, change } = flagChanges(spec);
  writeInfoMessage(writer, spec.index ?? 0, flags, change);
  writeChangeAttributes(writer, spec);
  if (spec.parentIndex !== undefined) writer.u32(LinkAttribute.LINK, spec.parentIndex);
  writer.beginNested(LinkAttribute.LINKINFO);
  writer.string(LinkInfoAttribute.KIND, spec.data.kind);
  const data = spec.data;
  if (data.kind === 'veth') encodeVethData(writer, data);
  else if (data.kind === 'macvlan' || data.kind === 'macvtap') encodeMacvlanData(writer, data);
  else if (data.kind === 'ipvlan') encodeIpvlanData(writer, data);
  writer.endNested();
}

/** RTM_SETLINK (or RTM_NEWLINK on an existing index) body. */
export function encodeSetLink(writer: MessageWriter, index: number, changes: LinkChanges): void {
  const { flags, change } = flagChanges(changes);
  writeInfoMessage(writer, index, flags, change);
  writeChangeAttributes(writer, changes);
}

/** RTM_DELLINK by index, or by name when index is 0. */
export function encodeDeleteLink(
  writer: MessageWriter,
  target: { index?: number; name?: string; group?: number },
): void {
  writeInfoMessage(writer, target.index ?? 0, 0, 0);
  if (target.name !== undefined) writer.string(LinkAttribute.IFNAME, target.name);
  if (target.group !== undefined) writer.u32(LinkAttribute.GROUP, target.group);
}

/** RTM_GETLINK: a dump (no target) or one link by index or name. Statistics are skipped. */
export function encodeGetLink(writer: MessageWriter, target?: { index?: number; name?: string }): void {
  writeInfoMessage(writer, target?.index ?? 0, 0, 0);
  if (target?.name !== undefined) writer.string(LinkAttribute.IFNAME, target.name);
  writer.u32(LinkAttribute.EXT_MASK, RTEXT_FILTER_SKIP_STATS);
}

/**
 * Decodes an RTM_NEWLINK message into a `Link`, with its kind's own data (veth peer, macvlan mode, tun
 * info...). Throws `MalformedMessageError` on a truncated message.
 */
export function decodeLink(message: RawMessage): Link {
  const payload = message.payload;
  if (payload.length < IFINFOMSG_LENGTH) throw new MalformedMessageError(`ifinfomsg of ${payload.length} bytes`, 0);
  const attributes = new Attributes(payload, IFINFOMSG_LENGTH);
  const operstate = attributes.u8(LinkAttribute.OPERSTATE) ?? 0;
  const link: Link = {
    index: payload.readInt32LE(4),
    type: payload.readUInt16LE(2),
    flags: payload.readUInt32LE(8),
    name: attributes.string(LinkAttribute.IFNAME) ?? '',
    mtu: attributes.u32(LinkAttribute.MTU) ?? 0,
    operationalState: OperationalState[operstate] ?? 'unknown',
    group: attributes.u32(LinkAttribute.GROUP) ?? 0,
  };
  const address = attributes.raw(LinkAttribute.ADDRESS);
  if (address && address.length > 0) link.address = bytesToMac(address);
  const broadcast = attributes.raw(LinkAttribute.BROADCAST);
  if (broadcast && broadcast.length > 0) link.broadcast = bytesToMac(broadcast);
  const permanent = attributes.raw(LinkAttribute.PERM_ADDRESS);
  if (permanent && permanent.length > 0) link.permanentAddress = bytesToMac(permanent);
  const master = attributes.u32(LinkAttribute.MASTER);
  if (master) link.master = master;
  const parent = attributes.u32(LinkAttribute.LINK);
  if (parent !== undefined && parent !== link.index) link.parentIndex = parent;
  const parentNamespace = attributes.s32(LinkAttribute.LINK_NETNSID);
  if (parentNamespace !== undefined) link.parentNamespaceId = parentNamespace;
  const txQueueLength = attributes.u32(LinkAttribute.TXQLEN);
  if (txQueueLength !== undefined) link.txQueueLength = txQueueLength;
  const txQueues = attributes.u32(LinkAttribute.NUM_TX_QUEUES);
  if (txQueues !== undefined) link.txQueues = txQueues;
  const rxQueues = attributes.u32(LinkAttribute.NUM_RX_QUEUES);
  if (rxQueues !== undefined) link.rxQueues = rxQueues;
  const alias = attributes.string(LinkAttribute.IFALIAS);
  if (alias) link.alias = alias;
  const qdisc = attributes.string(LinkAttribute.QDISC);
  if (qdisc) link.qdisc = qdisc;
  const parentBus = attributes.string(LinkAttribute.PARENT_DEV_BUS_NAME);
  if (parentBus) link.parentBus = parentBus;
  const parentDevice = attributes.string(LinkAttribute.PARENT_DEV_NAME);
  if (parentDevice) link.parentDevice = parentDevice;

  const inet6 = attributes.nested(LinkAttribute.AF_SPEC)?.nested(AddressFamily.INET6);
  const mode = inet6?.u8(INET6_ADDR_GEN_MODE);
  const inet6Flags = inet6?.u32(INET6_FLAGS);
  if (inet6Flags !== undefined && (inet6Flags & INET6_IF_READY) !== 0) link.ipv6Ready = true;
  const generation = (Object.keys(IPV6_ADDRESS_GENERATION) as Ipv6AddressGeneration[]).find(
    (name) => IPV6_ADDRESS_GENERATION[name] === mode,
  );
  if (generation) link.ipv6AddressGeneration = generation;
  const inetConf = attributes.nested(LinkAttribute.AF_SPEC)?.nested(AddressFamily.INET)?.raw(INET_CONF);
  const promoteOffset = (IPV4_DEVCONF_PROMOTE_SECONDARIES - 1) * 4;
  if (inetConf !== undefined && inetConf.length >= promoteOffset + 4)
    link.promoteSecondaries = inetConf.readUInt32LE(promoteOffset) !== 0;

  const info = attributes.nested(LinkAttribute.LINKINFO);
  if (info) {
    const kind = info.string(LinkInfoAttribute.KIND);
    if (kind) link.kind = kind;
    const slaveKind = info.string(LinkInfoAttribute.SLAVE_KIND);
    if (slaveKind) link.slaveKind = slaveKind;
    const data = info.nested(LinkInfoAttribute.DATA);
    if (data && (kind === 'macvlan' || kind === 'macvtap')) {
      const mode = decodeMacvlanMode(data);
      if (mode) link.macvlanMode = mode;
    } else if (data && kind === 'ipvlan') {
      const mode = decodeIpvlanMode(data);
      if (mode) link.ipvlanMode = mode;
    } else if (data && kind === 'tun') {
      link.tun = decodeTunInfo(data);
      const carrier = attributes.u8(LinkAttribute.CARRIER);
      if (carrier !== undefined) link.tun.carrier = carrier === 1;
    }
  }
  return link;
}
