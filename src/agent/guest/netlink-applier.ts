/**
 * The guest's NetworkApplier: carries out the agent's network calls with vcnet's own rtnetlink library
 * (NetlinkHandle), in the namespace the handle is bound to (the guest's own; a test namespace in tests).
 *
 * Each mutating call is all-or-nothing: links and devices are looked up before anything changes, every
 * change is recorded in an UndoLog, and a failure part-way restores what was there (addresses, routes
 * and neighbours from a snapshot, link attributes step by step). Calls run one at a time, so one call's
 * snapshot is never another call's half-way state.
 */
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { create } from '@bufbuild/protobuf';
import { errnoOf } from '../../errors.js';
import { type Address, AddressFlag, type AddressSpec } from '../../netlink/codec/address.js';
import { bytesToIp, ipToBytes, networkOf } from '../../netlink/codec/address-format.js';
import { AddressFamily } from '../../netlink/codec/constants.js';
import { InterfaceFlag } from '../../netlink/codec/link/message.js';
import type { Link } from '../../netlink/codec/link.js';
import type { Neighbour, NeighbourSpec } from '../../netlink/codec/neighbour.js';
import { NeighbourState } from '../../netlink/codec/neighbour.js';
import type { Route as KernelRoute, RouteSpec } from '../../netlink/codec/route.js';
import { RouteFlag, RouteProtocol, RouteTable, RouteType } from '../../netlink/codec/route.js';
import type { NetlinkHandle } from '../../netlink/handle.js';
import { GuestLinkNotFoundError, GuestRestoreError } from '../errors.js';
import { type Interface, InterfaceSchema, IPFamily, type Route, RouteSchema } from '../generated/types_pb.js';
import type { InterfaceUpdate, NeighbourAddition, NetworkApplier, RouteUpdate } from '../network-applier.js';
import { linkNameAtPciPath } from './pci-path.js';
import { allOrNothing, type UndoLog } from './undo-log.js';

export interface NetlinkApplierOptions {
  /** How long to wait for a hot-plugged NIC (a request with devicePath) to appear; default 5000 ms. */
  linkAppearTimeoutMs?: number;
  /** Where sysfs is, for PCI paths; default /sys. */
  sysfsRoot?: string;
}

const canonicalIp = (address: string): string => bytesToIp(ipToBytes(address));
const isIpv6LinkLocal = (address: string): boolean => /^fe[89ab][0-9a-f]:/i.test(canonicalIp(address));
const addressKey = (address: string, prefixLength: number): string => `${canonicalIp(address)}/${prefixLength}`;
const familyOfVersion = (version: 4 | 6): number => (version === 4 ? AddressFamily.INET : AddressFamily.INET6);

/** The IPv4 broadcast address of a subnet, as `ip addr add ... brd +` sets it; none for /31 and /32. */
function ipv4Broadcast(address: string, prefixLength: number): string | undefined {
  if (prefixLength > 30) return undefined;
  const value = ipToBytes(address).readUInt32BE(0);
  const host = prefixLength === 0 ? 0xffffffff : (1 << (32 - prefixLength)) - 1;
  const broadcast = Buffer.alloc(4);
  broadcast.writeUInt32BE((value | host) >>> 0, 0);
  return bytesToIp(broadcast);
}

function routeKey(route: KernelRoute): string {
  return [
    route.family,
    route.destination ?? '',
    route.destinationLength,
    route.tos,
    route.priority ?? 0,
    route.table,
    route.outputIndex ?? '',
    route.gateway ?? '',
  ].join('|');
}

/** The request that recreates (or deletes) a route exactly as the kernel reported it. */
function specOfKernelRoute(route: KernelRoute): RouteSpec {
  const spec: RouteSpec = {
    family: route.family,
    destinationLength: route.destinationLength,
    table: route.table,
    protocol: route.protocol,
    scope: route.scope,
    type: route.type,
    flags: route.flags & RouteFlag.ONLINK,
  };
  if (route.destination !== undefined) spec.destination = route.destination;
  if (route.gateway !== undefined) spec.gateway = route.gateway;
  if (route.preferredSource !== undefined) spec.preferredSource = route.preferredSource;
  if (route.outputIndex !== undefined) spec.outputIndex = route.outputIndex;
  if (route.priority !== undefined) spec.priority = route.priority;
  if (route.mtu !== undefined) spec.mtu = route.mtu;
  return spec;
}

function describeRoute(route: RouteUpdate): string {
  const destination = route.destination ? `${route.destination}/${route.destinationLength}` : 'default';
  return `${destination}${route.gateway ? ` via ${route.gateway}` : ''} dev ${route.device}`;
}

const neighbourKey = (index: number, destination: string): string => `${index}|${canonicalIp(destination)}`;
const isStaticNeighbour = (neighbour: Neighbour): boolean =>
  (neighbour.state & (NeighbourState.PERMANENT | NeighbourState.NOARP)) !== 0;

export class NetlinkApplier implements NetworkApplier {
  private queue: Promise<unknown> = Promise.resolve();
  private readonly linkAppearTimeoutMs: number;
  private readonly sysfsRoot: string;

  constructor(
    private readonly handle: NetlinkHandle,
    options: NetlinkApplierOptions = {},
  ) {
    this.linkAppearTimeoutMs = options.linkAppearTimeoutMs ?? 5000;
    this.sysfsRoot = options.sysfsRoot ?? '/sys';
  }

  /** One call at a time: a snapshot taken for undo must not be another call's half-way state. */
  private serialized<T>(work: () => Promise<T>): Promise<T> {
    const run = this.queue.then(work, work);
    this.queue = run.catch(() => undefined);
    return run;
  }

  // ---- interfaces ----

  async updateInterface(update: InterfaceUpdate): Promise<Interface> {
    // A hot-plugged NIC may take seconds to show: waited for before the queue, so the calls behind it
    // (another NIC's update, a route set) are not held for that long (they timed out meanwhile).
    await this.findTarget(update, await this.handle.links());
    return this.serialized(async () => {
      const links = await this.handle.links();
      const target = await this.findTarget(update, links);
      const index = target.index;
      const wantedName = update.name ?? target.name;
      const other = wantedName !== target.name ? links.find((link) => link.name === wantedName) : undefined;
      const originalAddresses = await this.handle.addresses({ index });
      const isUp = (link: Link) => (link.flags & InterfaceFlag.UP) !== 0;
      const setLink = (linkIndex: number, changes: Parameters<NetlinkHandle['setLink']>[1]) => () =>
        this.handle.setLink(linkIndex, changes);

      return allOrNothing(`UpdateInterface ${update.hardwareAddress || update.pciPath}`, async (log) => {
        // Renaming needs the link down; so does a MAC change on most drivers. Kata's agent does the same.
        if (isUp(target)) {
          await log.step(`bring ${target.name} down`, setLink(index, { up: false }), setLink(index, { up: true }));
        }
        // IPv6 addresses go with the link down (keep_addr_on_down=0): put the original set back before it comes up.
        log.onUndo(`restore the addresses of ${target.name}`, () => this.restoreAddresses(index, originalAddresses));

        if (update.hardwareAddress && target.address?.toLowerCase() !== update.hardwareAddress && target.address) {
          await log.step(
            `set the MAC address of ${target.name} to ${update.hardwareAddress}`,
            setLink(index, { address: update.hardwareAddress }),
            setLink(index, { address: target.address }),
          );
        }

        // Another link holds the wanted name: the two swap names, as Kata's agent does.
        const temporary = `vcnet${randomBytes(4).toString('hex')}`;
        if (other) {
          if (isUp(other)) {
            await log.step(
              `bring ${other.name} down to take its name`,
              setLink(other.index, { up: false }),
              setLink(other.index, { up: true }),
            );
          }
          await log.step(
            `rename ${other.name} to ${temporary}`,
            setLink(other.index, { name: temporary }),
            setLink(other.index, { name: other.name }),
          );
        }
        if (wantedName !== target.name) {
          await log.step(
            `rename ${target.name} to ${wantedName}`,
            setLink(index, { name: wantedName }),
            setLink(index, { name: target.name }),
          );
        }
        if (other) {
          await log.step(
            `rename ${temporary} to ${target.name}`,
            setLink(other.index, { name: target.name }),
            setLink(other.index, { name: temporary }),
          );
          if (isUp(other)) {
            await log.step(
              `bring ${target.name} (was ${other.name}) back up`,
              setLink(other.index, { up: true }),
              setLink(other.index, { up: false }),
            );
          }
        }

        // Before the addresses: IPv6 refuses addresses on a link whose MTU is below 1280.
        if (update.mtu !== undefined && update.mtu !== target.mtu) {
          await log.step(
            `set the MTU of ${wantedName} to ${update.mtu}`,
            setLink(index, { mtu: update.mtu }),
            setLink(index, { mtu: target.mtu }),
          );
        }
        const hadNoArp = (target.flags & InterfaceFlag.NOARP) !== 0;
        if (update.noArp !== hadNoArp) {
          await log.step(
            `${update.noArp ? 'set' : 'clear'} NOARP on ${wantedName}`,
            setLink(index, { noArp: update.noArp }),
            setLink(index, { noArp: hadNoArp }),
          );
        }

        // Addresses: the wanted set exactly. Read again: bringing the link down dropped its IPv6 addresses.
        const wanted = new Map(update.addresses.map((a) => [addressKey(a.address, a.prefixLength), a]));
        const present = await this.handle.addresses({ index });
        const presentKeys = new Set(present.map((a) => addressKey(a.address, a.prefixLength)));
        for (const address of present) {
          if (wanted.has(addressKey(address.address, address.prefixLength))) continue;
          await log.step(`remove address ${address.address}/${address.prefixLength} from ${wantedName}`, () =>
            this.handle.deleteAddress({ index, address: address.address, prefixLength: address.prefixLength }),
          );
        }
        for (const [key, address] of wanted) {
          if (presentKeys.has(key)) continue;
          const spec: AddressSpec = { index, address: address.address, prefixLength: address.prefixLength };
          // Without DAD, as Kata's agent adds them: a tentative address cannot be a route's src (EINVAL)
          // and carries no traffic for a second or more; the pod already owns the address.
          if (address.version === 6) spec.flags = AddressFlag.NODAD;
          const broadcast = address.version === 4 ? ipv4Broadcast(address.address, address.prefixLength) : undefined;
          if (broadcast) spec.broadcast = broadcast;
          await log.step(`add address ${key} to ${wantedName}`, () => this.handle.addAddress(spec));
        }

        await log.step(`bring ${wantedName} up`, setLink(index, { up: true }), setLink(index, { up: false }));
        return this.describeInterface(await this.handle.linkByIndex(index));
      });
    });
  }

  /** The link an update is for: by MAC address, else by PCI path, waiting a while for a hot-plugged NIC. */
  private async findTarget(update: InterfaceUpdate, links: Link[]): Promise<Link> {
    const deadline = Date.now() + (update.pciPath ? this.linkAppearTimeoutMs : 0);
    let current = links;
    for (;;) {
      const byMac = update.hardwareAddress
        ? current.find((link) => link.address?.toLowerCase() === update.hardwareAddress)
        : undefined;
      if (byMac) return byMac;
      if (update.pciPath) {
        const name = linkNameAtPciPath(update.pciPath, this.sysfsRoot);
        const byPath = name ? current.find((link) => link.name === name) : undefined;
        if (byPath) return byPath;
      }
      if (Date.now() >= deadline) break;
      await sleep(100);
      current = await this.handle.links();
    }
    if (update.hardwareAddress) {
      throw new GuestLinkNotFoundError('interface.hwAddr', update.hardwareAddress, 'with the MAC address');
    }
    throw new GuestLinkNotFoundError('interface.devicePath', update.pciPath, 'at the PCI path');
  }

  /** Puts a link's addresses back as `original` had them (IPv6 link-local ones come back by themselves). */
  private async restoreAddresses(index: number, original: Address[]): Promise<void> {
    const refusals: unknown[] = [];
    const originalKeys = new Set(original.map((a) => addressKey(a.address, a.prefixLength)));
    const present = await this.handle.addresses({ index });
    const presentKeys = new Set(present.map((a) => addressKey(a.address, a.prefixLength)));
    for (const address of present) {
      if (originalKeys.has(addressKey(address.address, address.prefixLength))) continue;
      await this.handle
        .deleteAddress({ index, address: address.address, prefixLength: address.prefixLength })
        .catch((error: unknown) => refusals.push(error));
    }
    for (const address of original) {
      if (presentKeys.has(addressKey(address.address, address.prefixLength)) || isIpv6LinkLocal(address.address))
        continue;
      const spec: AddressSpec = {
        index,
        address: address.address,
        prefixLength: address.prefixLength,
        scope: address.scope,
        // The flags the address was made with; the others (tentative, dadfailed...) are its state.
        flags: address.flags & (AddressFlag.NODAD | AddressFlag.NOPREFIXROUTE),
      };
      if (address.peer) spec.peer = address.peer;
      if (address.broadcast) spec.broadcast = address.broadcast;
      await this.handle.addAddress(spec).catch((error: unknown) => refusals.push(error));
    }
    if (refusals.length > 0) throw new GuestRestoreError(`the addresses of link ${index}`, refusals);
  }

  private async describeInterface(link: Link, addresses?: Address[]): Promise<Interface> {
    const own = addresses ?? (await this.handle.addresses({ index: link.index }));
    return create(InterfaceSchema, {
      device: link.name,
      name: link.name,
      IPAddresses: own.map((address) => ({
        family: address.family === AddressFamily.INET6 ? IPFamily.v6 : IPFamily.v4,
        address: address.address,
        mask: String(address.prefixLength),
      })),
      mtu: BigInt(link.mtu),
      hwAddr: link.address ?? '',
      type: link.kind ?? '',
      // As Kata sends it: only IFF_NOARP travels in raw_flags.
      rawFlags: link.flags & InterfaceFlag.NOARP,
    });
  }

  async listInterfaces(): Promise<Interface[]> {
    const [links, addresses] = await Promise.all([this.handle.links(), this.handle.addresses()]);
    return Promise.all(
      links.map((link) =>
        this.describeInterface(
          link,
          addresses.filter((address) => address.index === link.index),
        ),
      ),
    );
  }

  // ---- routes ----

  updateRoutes(routes: RouteUpdate[]): Promise<Route[]> {
    return this.serialized(async () => {
      const indexes = await this.deviceIndexes(
        routes.map((route) => route.device),
        'routes.Routes',
      );
      const snapshot = await this.handle.routes();
      const loopbacks = new Set(
        (await this.handle.links())
          .filter((link) => (link.flags & InterfaceFlag.LOOPBACK) !== 0)
          .map((link) => link.index),
      );
      await allOrNothing('UpdateRoutes', async (log) => {
        log.onUndo('restore the routes', () => this.restoreRoutes(snapshot));
        // The request is the full route set, as Kata's agent takes it: every main-table route on every
        // link but lo goes, except the kernel's own (proto kernel, made with the addresses).
        for (const route of snapshot) {
          if (route.outputIndex === undefined || loopbacks.has(route.outputIndex)) continue;
          if (route.protocol === RouteProtocol.KERNEL) continue;
          const spec = specOfKernelRoute(route);
          await log.step(`delete route ${route.destination ?? 'default'}/${route.destinationLength}`, () =>
            this.handle.deleteRoute(spec),
          );
        }
        // Link-scope routes first: a gateway must be reachable by a route before one can use it.
        const ordered = routes
          .map((route, position) => ({ route, index: indexes[position]! }))
          .sort((a, b) => Number(a.route.gateway !== undefined) - Number(b.route.gateway !== undefined));
        for (const { route, index } of ordered) {
          await log.step(`add route ${describeRoute(route)}`, () =>
            this.handle.replaceRoute(this.specOfUpdate(route, index)),
          );
        }
        await this.deleteReplacedPrefixRoutes(ordered, log);
      });
      return this.listRoutes();
    });
  }

  /**
   * A pushed IPv6 route to exactly the prefix of one of the link's addresses, via a gateway, is how
   * the pod routes its own subnet (the ptp plugin deletes the address's prefix route for it). The
   * address's prefix route (proto kernel, metric 256) would win over it (pushed routes get 1024: the
   * agent protocol carries no metric) and reach the subnet on the link instead: it goes. IPv4 needs
   * nothing: a route to the same prefix replaces the kernel's there.
   */
  private async deleteReplacedPrefixRoutes(
    pushed: Array<{ route: RouteUpdate; index: number }>,
    log: UndoLog,
  ): Promise<void> {
    const viaGateway = pushed.filter(
      ({ route }) => route.version === 6 && route.gateway !== undefined && route.destination !== undefined,
    );
    if (viaGateway.length === 0) return;
    const [addresses, routes] = await Promise.all([this.handle.addresses(), this.handle.routes()]);
    for (const { route, index } of viaGateway) {
      const destination = canonicalIp(route.destination!);
      const ofAddress = addresses.some(
        (address) =>
          address.index === index &&
          address.family === AddressFamily.INET6 &&
          address.prefixLength === route.destinationLength &&
          networkOf(address.address, address.prefixLength) === destination,
      );
      if (!ofAddress) continue;
      for (const kernel of routes) {
        if (
          kernel.protocol !== RouteProtocol.KERNEL ||
          kernel.table !== RouteTable.MAIN ||
          kernel.outputIndex !== index ||
          kernel.family !== AddressFamily.INET6 ||
          kernel.gateway !== undefined ||
          kernel.destination !== destination ||
          kernel.destinationLength !== route.destinationLength
        )
          continue;
        await log.step(
          `delete the prefix route ${destination}/${route.destinationLength} dev ${route.device} (routed via ${route.gateway})`,
          () => this.handle.deleteRoute(specOfKernelRoute(kernel)),
        );
      }
    }
  }

  private specOfUpdate(route: RouteUpdate, outputIndex: number): RouteSpec {
    const spec: RouteSpec = {
      family: familyOfVersion(route.version),
      destinationLength: route.destinationLength,
      outputIndex,
      table: RouteTable.MAIN,
      // As Kata's agent adds them; also what tells them apart from the kernel's own.
      protocol: RouteProtocol.BOOT,
      scope: route.scope,
      type: RouteType.UNICAST,
      // Only ONLINK is a request; DEAD/LINKDOWN describe the host link's state and the kernel refuses them.
      flags: route.flags & RouteFlag.ONLINK,
    };
    if (route.destination !== undefined) spec.destination = route.destination;
    if (route.gateway !== undefined) spec.gateway = route.gateway;
    if (route.source !== undefined) spec.preferredSource = route.source;
    if (route.mtu !== undefined) spec.mtu = route.mtu;
    return spec;
  }

  /** Makes the main table hold exactly `snapshot` again. */
  private async restoreRoutes(snapshot: KernelRoute[]): Promise<void> {
    const refusals: unknown[] = [];
    const wanted = new Map(snapshot.map((route) => [routeKey(route), route]));
    const present = await this.handle.routes();
    const presentKeys = new Set(present.map(routeKey));
    for (const route of present) {
      if (wanted.has(routeKey(route))) continue;
      await this.handle.deleteRoute(specOfKernelRoute(route)).catch((error: unknown) => refusals.push(error));
    }
    const missing = snapshot
      .filter((route) => !presentKeys.has(routeKey(route)))
      .sort((a, b) => Number(a.gateway !== undefined) - Number(b.gateway !== undefined));
    for (const route of missing) {
      await this.handle.addRoute(specOfKernelRoute(route)).catch((error: unknown) => refusals.push(error));
    }
    if (refusals.length > 0) throw new GuestRestoreError('the routes', refusals);
  }

  async listRoutes(): Promise<Route[]> {
    const [links, routes] = await Promise.all([this.handle.links(), this.handle.routes()]);
    const names = new Map(links.map((link) => [link.index, link.name]));
    return routes.map((route) =>
      create(RouteSchema, {
        // A default route as vcnet's runtime side sends it (and current Kata): 0.0.0.0/0 or ::/0.
        dest:
          route.destination !== undefined
            ? `${route.destination}/${route.destinationLength}`
            : route.family === AddressFamily.INET6
              ? '::/0'
              : '0.0.0.0/0',
        gateway: route.gateway ?? '',
        device: route.outputIndex !== undefined ? (names.get(route.outputIndex) ?? '') : '',
        source: route.preferredSource ?? '',
        scope: route.scope,
        family: route.family === AddressFamily.INET6 ? IPFamily.v6 : IPFamily.v4,
        flags: route.flags & 0xff,
        mtu: route.mtu ?? 0,
      }),
    );
  }

  // ---- neighbours ----

  addArpNeighbors(neighbours: NeighbourAddition[]): Promise<void> {
    return this.serialized(async () => {
      const indexes = await this.deviceIndexes(
        neighbours.map((neighbour) => neighbour.device),
        'neighbors.ARPNeighbors',
      );
      const snapshot = await this.handle.neighbours();
      const touched: { index: number; destination: string }[] = [];
      await allOrNothing('AddARPNeighbors', async (log) => {
        log.onUndo('restore the neighbours', () => this.restoreNeighbours(snapshot, touched));
        for (const [position, neighbour] of neighbours.entries()) {
          const index = indexes[position]!;
          const spec: NeighbourSpec = {
            index,
            destination: neighbour.destination,
            state: neighbour.state,
            flags: neighbour.flags,
          };
          if (neighbour.linkLayerAddress) spec.linkLayerAddress = neighbour.linkLayerAddress;
          touched.push({ index, destination: neighbour.destination });
          // Replace: sending the same neighbours twice is not an error, and a learned entry becomes permanent.
          await log.step(
            `add neighbour ${neighbour.destination} lladdr ${neighbour.linkLayerAddress ?? '(none)'} dev ${neighbour.device}`,
            () => this.handle.changes().addNeighbour(spec, true).commit(),
          );
        }
      });
    });
  }

  /** Puts back the static entries `touched` replaced, and deletes the ones that were not there. */
  private async restoreNeighbours(
    snapshot: Neighbour[],
    touched: { index: number; destination: string }[],
  ): Promise<void> {
    const refusals: unknown[] = [];
    const before = new Map(
      snapshot
        .filter(isStaticNeighbour)
        .map((neighbour) => [neighbourKey(neighbour.index, neighbour.destination), neighbour]),
    );
    for (const { index, destination } of touched) {
      const previous = before.get(neighbourKey(index, destination));
      if (previous) {
        const spec: NeighbourSpec = { index, destination, state: previous.state, flags: previous.flags };
        if (previous.linkLayerAddress) spec.linkLayerAddress = previous.linkLayerAddress;
        await this.handle
          .changes()
          .addNeighbour(spec, true)
          .commit()
          .catch((error: unknown) => refusals.push(error));
      } else {
        await this.handle.deleteNeighbour({ index, destination }).catch((error: unknown) => {
          if (errnoOf(error) !== 'ENOENT') refusals.push(error);
        });
      }
    }
    if (refusals.length > 0) throw new GuestRestoreError('the neighbours', refusals);
  }

  /** The link index of each device name, or NOT_FOUND naming the first that does not exist. */
  private async deviceIndexes(names: string[], field: string): Promise<number[]> {
    const links = await this.handle.links();
    const byName = new Map(links.map((link) => [link.name, link.index]));
    return names.map((name, position) => {
      const index = byName.get(name);
      if (index === undefined) throw new GuestLinkNotFoundError(`${field}[${position}].device`, name, 'named');
      return index;
    });
  }
}
