/**
 * What the agent's network calls ask of the guest, checked and in vcnet's terms, and the interface of
 * whatever carries them out (the netlink applier in the guest; fakes in tests). The server validates
 * every request completely before an applier sees it, so an applier never starts on a request that is
 * wrong further down.
 */
import type { Interface, Route } from './generated/types_pb.js';

/** The IP version of an address or route: 4 or 6. */
export type IpVersion = 4 | 6;

/** One address to give a guest interface, with its prefix length in bits. */
export interface AddressAssignment {
  address: string;
  prefixLength: number;
  version: IpVersion;
}

/**
 * What a guest agent's UpdateInterface asks for, decoded: the link to find (by MAC, else PCI path) and what
 * it should have afterwards.
 */
export interface InterfaceUpdate {
  /** The link to change, by MAC address (lower case). Empty when only `pciPath` identifies it. */
  hardwareAddress: string;
  /** PCI path in the guest ("02/00"): finds the link when the MAC does not, and says a hot-plug is expected. */
  pciPath: string;
  /** New name; undefined keeps the current one. */
  name: string | undefined;
  /** undefined keeps the current MTU. */
  mtu: number | undefined;
  /** The link's addresses after the update: others are removed. */
  addresses: AddressAssignment[];
  noArp: boolean;
  /** The host-side device name and link type, for messages. */
  hostDevice: string;
  hostType: string;
}

/** One route of an UpdateRoutes request, decoded; prefix lengths in bits. */
export interface RouteUpdate {
  version: IpVersion;
  /** undefined: the default route. */
  destination: string | undefined;
  destinationLength: number;
  gateway: string | undefined;
  device: string;
  /** Preferred source (RTA_PREFSRC). */
  source: string | undefined;
  scope: number;
  flags: number;
  mtu: number | undefined;
}

/** One neighbour of an AddARPNeighbors request, decoded; `state` is the kernel's NUD_* number. */
export interface NeighbourAddition {
  version: IpVersion;
  destination: string;
  device: string;
  linkLayerAddress: string | undefined;
  state: number;
  flags: number;
}

/**
 * What a guest agent built with `createAgentServer` does with the network calls it receives: implement it to
 * apply them in a guest (vcnet's guest agent applies them over rtnetlink). A method that throws answers the
 * call with an error status (an `AgentStatusError`'s own, else INTERNAL).
 */
export interface NetworkApplier {
  /** Applies one interface update; answers the interface as it is afterwards. */
  updateInterface(update: InterfaceUpdate): Promise<Interface>;
  /** Replaces the routes of the devices named in `routes`; answers the routes afterwards. */
  updateRoutes(routes: RouteUpdate[]): Promise<Route[]>;
  addArpNeighbors(neighbours: NeighbourAddition[]): Promise<void>;
  listInterfaces(): Promise<Interface[]>;
  listRoutes(): Promise<Route[]>;
}

/**
 * GetIPTables and SetIPTables: the guest's packet filter rules as iptables-save text (raw bytes, as the
 * agent protocol carries them). vcnet's guest agent runs iptables-save / iptables-restore (GuestIpTables).
 */
export interface IpTablesApplier {
  /** What iptables-save (ip6tables-save for 6) prints. */
  getIpTables(version: IpVersion): Promise<Uint8Array>;
  /** Feeds `rules` to iptables-restore (ip6tables-restore for 6); answers what it printed. */
  setIpTables(version: IpVersion, rules: Uint8Array): Promise<Uint8Array>;
}
