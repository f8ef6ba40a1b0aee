/**
 * Reads a pod namespace into NetworkInfo per interface (loopback skipped), with one batched request.
 */
import { HardwareType, InterfaceFlag, RouteTable } from '../netlink/codec/constants.js';
import type { NamespaceSnapshot, NetlinkHandle } from '../netlink/handle.js';
import { type CreateEndpointOptions, classifyInterface } from './endpoints/create-endpoint.js';
import type { EndpointType, NetworkInfo } from './network-info.js';

export interface NamespaceScan {
  interfaces: NetworkInfo[];
  snapshot: NamespaceSnapshot;
}

export function isLoopback(info: NetworkInfo): boolean {
  return info.link.type === HardwareType.LOOPBACK || (info.link.flags & InterfaceFlag.LOOPBACK) !== 0;
}

function groupByIndex<T>(items: T[], indexOf: (item: T) => number | undefined): Map<number, T[]> {
  const groups = new Map<number, T[]>();
  for (const item of items) {
    const index = indexOf(item);
    if (index === undefined) continue;
    const group = groups.get(index);
    if (group) group.push(item);
    else groups.set(index, [item]);
  }
  return groups;
}

export function interfacesOf(snapshot: NamespaceSnapshot): NetworkInfo[] {
  const addresses = groupByIndex(snapshot.addresses, (address) => address.index);
  // The guest gets the main table, as Kata reads it.
  const routes = groupByIndex(snapshot.routes, (route) =>
    route.table === RouteTable.MAIN ? route.outputIndex : undefined,
  );
  const neighbours = groupByIndex(snapshot.neighbours, (neighbour) => neighbour.index);
  return snapshot.links
    .map((link) => ({
      link,
      addresses: addresses.get(link.index) ?? [],
      routes: routes.get(link.index) ?? [],
      neighbours: neighbours.get(link.index) ?? [],
    }))
    .filter((info) => !isLoopback(info))
    .sort((a, b) => a.link.index - b.link.index);
}

export async function scanNamespace(handle: NetlinkHandle): Promise<NamespaceScan> {
  const snapshot = await handle.snapshot();
  return { interfaces: interfacesOf(snapshot), snapshot };
}

export interface ScannedInterface {
  info: NetworkInfo;
  /** The endpoint type it would become, or why it cannot become one. */
  endpointType?: EndpointType;
  unsupported?: { code: string; message: string };
}

export function classifyScan(
  scan: NamespaceScan,
  options: Pick<CreateEndpointOptions, 'vhostUserStorePath'> = {},
): ScannedInterface[] {
  return scan.interfaces.map((info) => {
    try {
      return { info, endpointType: classifyInterface(info, options) };
    } catch (error) {
      const failure = error as { code?: string; message: string };
      return { info, unsupported: { code: failure.code ?? 'VCNET_UNSUPPORTED_INTERFACE', message: failure.message } };
    }
  });
}
