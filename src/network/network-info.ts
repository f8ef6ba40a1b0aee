/** What vcnet knows about one interface of the pod namespace, and the guest-facing shapes. */
import type { Address } from '../netlink/codec/address.js';
import type { Link } from '../netlink/codec/link.js';
import type { Neighbour } from '../netlink/codec/neighbour.js';
import type { Route } from '../netlink/codec/route.js';

export interface NetworkInfo {
  link: Link;
  addresses: Address[];
  routes: Route[];
  neighbours: Neighbour[];
}

export interface DnsInfo {
  servers: string[];
  domain?: string;
  searches: string[];
  options: string[];
}

export const ENDPOINT_TYPES = [
  'physical',
  // Kata's name for a veth endpoint (VethEndpointType).
  'virtual',
  'vhost-user',
  'macvlan',
  'macvtap',
  'tap',
  'tuntap',
  'ipvlan',
] as const;
export type EndpointType = (typeof ENDPOINT_TYPES)[number];
