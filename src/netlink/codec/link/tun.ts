/**
 * tun/tap as a dump describes it (IFLA_TUN_*). rtnetlink cannot create one: the native shim does,
 * with ioctls on /dev/net/tun.
 */
import type { Attributes } from '../reader.js';

/** IFLA_TUN_* attribute types of a tun or tap link's data. */
export const TunAttribute = {
  OWNER: 1,
  GROUP: 2,
  TYPE: 3,
  PI: 4,
  VNET_HDR: 5,
  PERSIST: 6,
  MULTI_QUEUE: 7,
  NUM_QUEUES: 8,
  NUM_DISABLED_QUEUES: 9,
} as const;

/**
 * A tun or tap device's settings as the kernel reports them: its type, owner and group (uid, gid), whether it
 * is persistent, multi-queue, has packet info or vnet headers, its attached and detached queue counts, and
 * its carrier (on while a process holds a queue).
 */
export interface TunInfo {
  type: 'tun' | 'tap';
  owner?: number;
  group?: number;
  persist?: boolean;
  multiQueue?: boolean;
  vnetHeader?: boolean;
  packetInfo?: boolean;
  /** Open fds attached as queues (IFLA_TUN_NUM_QUEUES, multi-queue taps only). */
  queues?: number;
  /** Open fds detached from their queue (IFLA_TUN_NUM_DISABLED_QUEUES, multi-queue taps only). */
  disabledQueues?: number;
  /**
   * The link's carrier (IFLA_CARRIER), kept here because for a tun it tells whether a process holds
   * it: the kernel turns it on when a queue (an open fd) attaches and off when the last one goes,
   * whether the link is up or down.
   */
  carrier?: boolean;
}

/** A tun or tap link's own data: its `TunInfo` (tun devices are made by ioctl, so this is only read). */
export interface TunLinkData {
  kind: 'tun';
  tun?: TunInfo;
}

/** Reads a tun or tap link's settings from its IFLA_INFO_DATA attributes. */
export function decodeTunInfo(data: Attributes): TunInfo {
  const info: TunInfo = { type: data.u8(TunAttribute.TYPE) === 1 ? 'tun' : 'tap' };
  const owner = data.u32(TunAttribute.OWNER);
  if (owner !== undefined) info.owner = owner;
  const group = data.u32(TunAttribute.GROUP);
  if (group !== undefined) info.group = group;
  const persist = data.u8(TunAttribute.PERSIST);
  if (persist !== undefined) info.persist = persist === 1;
  const multiQueue = data.u8(TunAttribute.MULTI_QUEUE);
  if (multiQueue !== undefined) info.multiQueue = multiQueue === 1;
  const vnetHeader = data.u8(TunAttribute.VNET_HDR);
  if (vnetHeader !== undefined) info.vnetHeader = vnetHeader === 1;
  const packetInfo = data.u8(TunAttribute.PI);
  if (packetInfo !== undefined) info.packetInfo = packetInfo === 1;
  const queues = data.u32(TunAttribute.NUM_QUEUES);
  if (queues !== undefined) info.queues = queues;
  const disabledQueues = data.u32(TunAttribute.NUM_DISABLED_QUEUES);
  if (disabledQueues !== undefined) info.disabledQueues = disabledQueues;
  return info;
}
