/**
 * The netlink core's constants (linux/netlink.h, linux/rtnetlink.h): message types and flags,
 * attribute headers, extended acks, and the address families every family header carries. The
 * constants of one message family or kind live beside the code that uses them: link/, tc/,
 * address.ts, route.ts, route-attributes.ts, neighbour.ts. Names stay close to the kernel's so they
 * can be looked up.
 */

export const NETLINK_ROUTE = 0;
/** Size in bytes of struct nlmsghdr, the header of every netlink message. */
export const NLMSG_HEADER_LENGTH = 16;
/** Size in bytes of struct nlattr, the header of every attribute. */
export const NLA_HEADER_LENGTH = 4;
/** The attribute type bit that marks an attribute holding nested attributes. */
export const NLA_F_NESTED = 0x8000;
/** The attribute type bit that marks a value in network byte order. */
export const NLA_F_NET_BYTEORDER = 0x4000;
/** Mask of an attribute's type without the NESTED and NET_BYTEORDER bits. */
export const NLA_TYPE_MASK = ~(NLA_F_NESTED | NLA_F_NET_BYTEORDER) & 0xffff;

/**
 * Netlink message types: the core ones (NOOP, ERROR, DONE, OVERRUN) and rtnetlink's RTM_* requests and
 * notifications.
 */
export const MessageType = {
  NOOP: 1,
  ERROR: 2,
  DONE: 3,
  OVERRUN: 4,
  NEWLINK: 16,
  DELLINK: 17,
  GETLINK: 18,
  SETLINK: 19,
  NEWADDR: 20,
  DELADDR: 21,
  GETADDR: 22,
  NEWROUTE: 24,
  DELROUTE: 25,
  GETROUTE: 26,
  NEWNEIGH: 28,
  DELNEIGH: 29,
  GETNEIGH: 30,
  NEWQDISC: 36,
  DELQDISC: 37,
  GETQDISC: 38,
  NEWTCLASS: 40,
  DELTCLASS: 41,
  GETTCLASS: 42,
  NEWTFILTER: 44,
  DELTFILTER: 45,
  GETTFILTER: 46,
} as const;

/** NLM_F_* message flags: request, multi-part, ack, and the dump and create/replace modifiers. */
export const MessageFlag = {
  REQUEST: 0x1,
  MULTI: 0x2,
  ACK: 0x4,
  ECHO: 0x8,
  DUMP_INTR: 0x10,
  // GET requests
  ROOT: 0x100,
  MATCH: 0x200,
  DUMP: 0x300,
  // NEW requests
  REPLACE: 0x100,
  EXCL: 0x200,
  CREATE: 0x400,
  APPEND: 0x800,
  // ERROR replies
  CAPPED: 0x100,
  ACK_TLVS: 0x200,
} as const;

/** Extended-ack attributes in an NLMSG_ERROR reply. */
export const ExtendedAck = { MSG: 1, OFFS: 2, COOKIE: 3 } as const;

/** Address families as rtnetlink uses them (AF_UNSPEC, AF_INET, AF_BRIDGE, AF_INET6). */
export const AddressFamily = { UNSPEC: 0, INET: 2, BRIDGE: 7, INET6: 10 } as const;

/** The names of a table of constants by value, to name what the kernel sent (a later name wins for a shared value). */
export function namesByValue<Name extends string>(table: Readonly<Record<Name, number>>): Map<number, Name> {
  return new Map(Object.entries<number>(table).map(([name, value]) => [value, name as Name]));
}
