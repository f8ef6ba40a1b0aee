/**
 * What every link message shares: the ifinfomsg header, the IFLA_* attributes, the interface flags
 * and operational states (linux/if_link.h, linux/if.h). Each kind's IFLA_INFO_DATA is in its own file.
 */
import { AddressFamily } from '../constants.js';
import type { MessageWriter } from '../writer.js';

/** Size in bytes of struct ifinfomsg, the header of link messages. */
export const IFINFOMSG_LENGTH = 16;

/** IFF_* interface flags, as `Link.flags` carries them (UP, LOWER_UP, PROMISC...). */
export const InterfaceFlag = {
  UP: 0x1,
  BROADCAST: 0x2,
  DEBUG: 0x4,
  LOOPBACK: 0x8,
  POINTOPOINT: 0x10,
  RUNNING: 0x40,
  NOARP: 0x80,
  PROMISC: 0x100,
  ALLMULTI: 0x200,
  MASTER: 0x400,
  SLAVE: 0x800,
  MULTICAST: 0x1000,
  LOWER_UP: 0x10000,
} as const;

/** ARPHRD_* hardware types of a link (Ethernet, none for a tun, loopback). */
export const HardwareType = { ETHER: 1, NONE: 0xfffe, LOOPBACK: 772 } as const;

/** IFLA_* attribute types of link messages. */
export const LinkAttribute = {
  ADDRESS: 1,
  BROADCAST: 2,
  IFNAME: 3,
  MTU: 4,
  LINK: 5,
  QDISC: 6,
  MASTER: 10,
  TXQLEN: 13,
  OPERSTATE: 16,
  LINKMODE: 17,
  LINKINFO: 18,
  NET_NS_PID: 19,
  IFALIAS: 20,
  VFINFO_LIST: 22,
  AF_SPEC: 26,
  GROUP: 27,
  NET_NS_FD: 28,
  EXT_MASK: 29,
  PROMISCUITY: 30,
  NUM_TX_QUEUES: 31,
  NUM_RX_QUEUES: 32,
  CARRIER: 33,
  LINK_NETNSID: 37,
  MIN_MTU: 50,
  MAX_MTU: 51,
  PERM_ADDRESS: 54,
  PARENT_DEV_NAME: 56,
  PARENT_DEV_BUS_NAME: 57,
} as const;

/** IFLA_EXT_MASK bits: skipping statistics keeps dumps small. */
export const RTEXT_FILTER_SKIP_STATS = 1 << 3;

/** IFLA_INFO_* attribute types nested in a link's IFLA_LINKINFO (kind and kind data). */
export const LinkInfoAttribute = { KIND: 1, DATA: 2, XSTATS: 3, SLAVE_KIND: 4, SLAVE_DATA: 5 } as const;
/**
 * RFC 2863 operational states by IF_OPER_* value, as `ip link` prints them (`up`, `down`,
 * `lowerlayerdown`...).
 */
export const OperationalState = [
  'unknown',
  'notpresent',
  'down',
  'lowerlayerdown',
  'testing',
  'dormant',
  'up',
] as const;

/**
 * Writes the struct ifinfomsg header of a link request (into a message begun on `writer`): the link index,
 * and the flags with the mask of those to change.
 */
export function writeInfoMessage(writer: MessageWriter, index: number, flags: number, change: number): void {
  const header = writer.header(IFINFOMSG_LENGTH);
  header.writeUInt8(AddressFamily.UNSPEC, 0);
  header.writeInt32LE(index, 4);
  header.writeUInt32LE(flags >>> 0, 8);
  header.writeUInt32LE(change >>> 0, 12);
}
