/**
 * rtnetlink constants, as the kernel's uapi headers define them (linux/netlink.h, linux/rtnetlink.h,
 * linux/if_link.h, linux/if_addr.h, linux/neighbour.h, linux/pkt_sched.h, linux/pkt_cls.h,
 * linux/tc_act/*.h). Numbers only; names kept close to the kernel's so they can be looked up.
 */

export const NETLINK_ROUTE = 0;
export const NLMSG_HEADER_LENGTH = 16;
export const NLA_HEADER_LENGTH = 4;
export const NLA_F_NESTED = 0x8000;
export const NLA_F_NET_BYTEORDER = 0x4000;
export const NLA_TYPE_MASK = ~(NLA_F_NESTED | NLA_F_NET_BYTEORDER) & 0xffff;

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

export const AddressFamily = { UNSPEC: 0, INET: 2, BRIDGE: 7, INET6: 10 } as const;

export const AddressAttribute = {
  ADDRESS: 1,
  LOCAL: 2,
  LABEL: 3,
  BROADCAST: 4,
  ANYCAST: 5,
  CACHEINFO: 6,
  MULTICAST: 7,
  FLAGS: 8,
  RT_PRIORITY: 9,
} as const;

export const AddressFlag = {
  SECONDARY: 0x1,
  NODAD: 0x2,
  OPTIMISTIC: 0x4,
  DADFAILED: 0x8,
  HOMEADDRESS: 0x10,
  DEPRECATED: 0x20,
  TENTATIVE: 0x40,
  PERMANENT: 0x80,
  MANAGETEMPADDR: 0x100,
  NOPREFIXROUTE: 0x200,
} as const;

export const RouteAttribute = {
  DST: 1,
  SRC: 2,
  IIF: 3,
  OIF: 4,
  GATEWAY: 5,
  PRIORITY: 6,
  PREFSRC: 7,
  METRICS: 8,
  MULTIPATH: 9,
  FLOW: 11,
  CACHEINFO: 12,
  TABLE: 15,
  MARK: 16,
  VIA: 18,
  PREF: 20,
  EXPIRES: 23,
} as const;

/** RTAX_*: the attributes inside RTA_METRICS. All are u32 but CC_ALGO, a congestion control name. */
export const RouteMetric = {
  LOCK: 1,
  MTU: 2,
  WINDOW: 3,
  RTT: 4,
  RTTVAR: 5,
  SSTHRESH: 6,
  CWND: 7,
  ADVMSS: 8,
  REORDERING: 9,
  HOPLIMIT: 10,
  INITCWND: 11,
  FEATURES: 12,
  RTO_MIN: 13,
  INITRWND: 14,
  QUICKACK: 15,
  CC_ALGO: 16,
  FASTOPEN_NO_COOKIE: 17,
} as const;
/** RTAX_FEATURES bits (iproute2's `features ecn`). */
export const RouteFeature = { ECN: 0x1 } as const;
/** struct rtnexthop: u16 length, u8 flags, u8 hops (weight - 1), s32 ifindex; its attributes follow. */
export const RTNEXTHOP_LENGTH = 8;

export const RouteTable = { UNSPEC: 0, DEFAULT: 253, MAIN: 254, LOCAL: 255 } as const;
export const RouteProtocol = { UNSPEC: 0, REDIRECT: 1, KERNEL: 2, BOOT: 3, STATIC: 4, RA: 9, DHCP: 16 } as const;
export const RouteScope = { UNIVERSE: 0, SITE: 200, LINK: 253, HOST: 254, NOWHERE: 255 } as const;
export const RouteType = {
  UNSPEC: 0,
  UNICAST: 1,
  LOCAL: 2,
  BROADCAST: 3,
  ANYCAST: 4,
  MULTICAST: 5,
  BLACKHOLE: 6,
  UNREACHABLE: 7,
  PROHIBIT: 8,
} as const;
/** rtm_flags / rtnh_flags: a gateway reachable on the link without a covering route. */
export const RouteFlag = { ONLINK: 0x4, CLONED: 0x200 } as const;

export const NeighbourAttribute = { DST: 1, LLADDR: 2, CACHEINFO: 3, PROBES: 4 } as const;
export const NeighbourState = {
  INCOMPLETE: 0x1,
  REACHABLE: 0x2,
  STALE: 0x4,
  DELAY: 0x8,
  PROBE: 0x10,
  FAILED: 0x20,
  NOARP: 0x40,
  PERMANENT: 0x80,
} as const;
export const NeighbourFlag = { USE: 0x1, SELF: 0x2, MASTER: 0x4, PROXY: 0x8, EXT_LEARNED: 0x10, ROUTER: 0x80 } as const;
