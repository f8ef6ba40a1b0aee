/** What vcnet knows about one interface of the pod namespace, and the guest-facing shapes. */
import type { Address } from '../netlink/codec/address.js';
import type { Link } from '../netlink/codec/link.js';
import type { Neighbour } from '../netlink/codec/neighbour.js';
import type { Route } from '../netlink/codec/route.js';

/** A pod link with its addresses, routes and neighbours, as `scanNamespace` answers each. */
export interface NetworkInfo {
  link: Link;
  addresses: Address[];
  routes: Route[];
  neighbours: Neighbour[];
}

/** DNS settings of a pod (servers, domain, search list, options), as CNI results give them. */
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
/**
 * The kind of endpoint vcnet makes of a pod link: `virtual` (a veth, Kata's name), `macvlan`, `ipvlan`,
 * `tap`, `tuntap`, `macvtap`, `physical` or `vhost-user`.
 */
export type EndpointType = (typeof ENDPOINT_TYPES)[number];
