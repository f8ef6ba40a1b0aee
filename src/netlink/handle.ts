/**
 * NetlinkHandle: the high-level rtnetlink API of vcnet, one per network namespace.
 *
 *   const handle = NetlinkHandle.open('/var/run/netns/pod');
 *   const eth0 = await handle.linkByName('eth0');
 *   await handle.addQdisc(ingressQdisc(eth0.index));
 *   await handle.close();
 *
 * Every method sends one request; `changes()` groups many into one batch (one syscall) and reports
 * each outcome, which is how the network layer makes an attach cost a single round trip.
 */

import { type Stats, statfsSync, statSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { optionsArgument, signalOption, stringOption } from '../arguments.js';
import { InvalidInputError, NamespacePathError, SystemCallError } from '../errors.js';
import { yieldToEventLoop } from '../event-loop.js';
import { missingFileKind, NSFS_MAGIC, nonNamespaceFileKind } from '../namespace-file.js';
import { nativeNetlink } from '../native/netlink-socket.js';
import { type Address, type AddressSpec, decodeAddress, encodeAddress, encodeGetAddress } from './codec/address.js';
import { AddressFamily, MessageFlag, MessageType } from './codec/constants.js';
import {
  decodeLink,
  encodeDeleteLink,
  encodeGetLink,
  encodeNewLink,
  encodeSetLink,
  type Link,
  type LinkChanges,
  type LinkSpec,
} from './codec/link.js';
import {
  decodeNeighbour,
  encodeGetNeighbour,
  encodeNeighbour,
  type Neighbour,
  NeighbourFlag,
  type NeighbourSpec,
} from './codec/neighbour.js';
import type { RawMessage } from './codec/reader.js';
import {
  decodeRoute,
  encodeGetRoute,
  encodeRoute,
  isCachedRoute,
  type Route,
  type RouteSpec,
  RouteTable,
} from './codec/route.js';
import { decodeFilter, encodeDeleteFilter, encodeFilter, type Filter, type FilterSpec } from './codec/tc/filter.js';
import { encodeGetTc, formatHandle } from './codec/tc/message.js';
import { decodeClass, encodeHtbClass, type HtbClassSpec, type TrafficClass } from './codec/tc/qdisc/htb.js';
import { decodeQdisc, encodeDeleteQdisc, encodeQdisc, type Qdisc, type QdiscSpec } from './codec/tc/qdisc.js';
import type { MessageWriter } from './codec/writer.js';
import { LinkNotFoundError, NetlinkError } from './errors.js';
import type { RequestOutcome } from './protocol.js';
import type { RouteSocket } from './socket.js';
import { NetlinkSocket, type RequestBatch } from './transport.js';

/**
 * The filter `NetlinkHandle.deleteFilter` removes: link index, parent and priority, and protocol, handle and
 * kind to narrow it.
 */
export interface DeleteFilterTarget {
  index: number;
  parent: number;
  priority: number;
  protocol?: number;
  handle?: number;
  kind?: string;
}

/** A sysctl of a link, written after the batch's netlink requests are answered (ChangeBatch.setSysctl). */
interface SysctlWrite {
  /** Its place among the batch's changes, for its outcome. */
  position: number;
  description: string;
  path: string;
  value: string;
}

/** A group of changes sent together. `send()` never throws for a refused change: check the results. */
export class ChangeBatch {
  private readonly batch: RequestBatch;
  private readonly sysctls: SysctlWrite[] = [];

  constructor(private readonly socket: NetlinkSocket) {
    this.batch = socket.batch();
  }

  get size(): number {
    return this.batch.size + this.sysctls.length;
  }

  /**
   * Whether setSysctl can write inside the socket's namespace (the native shim has the call: one
   * built before it did not; rebuild it with `npm run build:native`).
   */
  static canSetSysctl(): boolean {
    return nativeNetlink.canWriteInNamespace();
  }

  /**
   * Writes a link's sysctl (net.ipv6.conf.<link>.<name>) inside the namespace, after every netlink
   * request of the batch is answered: for what the kernel does only on a sysctl write (a changed
   * addr_gen_mode makes the link's IPv6 link-local address; the netlink attribute only stores it).
   */
  setSysctl(link: string, name: string, value: string): this {
    this.sysctls.push({
      position: this.size,
      description: `set net.ipv6.conf.${link}.${name} to ${value}`,
      path: `/proc/sys/net/ipv6/conf/${link}/${name}`,
      value,
    });
    return this;
  }

  addLink(spec: LinkSpec): this {
    this.batch.add(
      MessageType.NEWLINK,
      MessageFlag.CREATE | MessageFlag.EXCL,
      `add ${spec.data.kind} link ${spec.name}`,
      (w) => encodeNewLink(w, spec),
    );
    return this;
  }

  setLink(index: number, changes: LinkChanges, description = `change link #${index}`): this {
    this.batch.add(MessageType.NEWLINK, 0, description, (w) => encodeSetLink(w, index, changes));
    return this;
  }

  deleteLink(index: number, description = `delete link #${index}`): this {
    this.batch.add(MessageType.DELLINK, 0, description, (w) => encodeDeleteLink(w, { index }));
    return this;
  }

  /** Deletes every link of a group at once: the kernel waits for one RCU grace period, not one each. */
  deleteLinkGroup(group: number): this {
    this.batch.add(MessageType.DELLINK, 0, `delete links of group ${group}`, (w) => encodeDeleteLink(w, { group }));
    return this;
  }

  /** `description` names the request in errors (the caller may know the link's name; else its index). */
  addAddress(spec: AddressSpec, description?: string): this {
    this.batch.add(
      MessageType.NEWADDR,
      MessageFlag.CREATE | MessageFlag.EXCL,
      description ?? `add address ${spec.address}/${spec.prefixLength} on link #${spec.index}`,
      (w) => encodeAddress(w, spec),
    );
    return this;
  }

  /** `ip address change`: an existing address takes these flags and lifetimes (IPv6 starts no DAD for it). */
  changeAddress(spec: AddressSpec, description?: string): this {
    this.batch.add(
      MessageType.NEWADDR,
      MessageFlag.REPLACE,
      description ?? `change address ${spec.address}/${spec.prefixLength} on link #${spec.index}`,
      (w) => encodeAddress(w, spec),
    );
    return this;
  }

  deleteAddress(spec: AddressSpec, description = `delete address ${spec.address}/${spec.prefixLength}`): this {
    this.batch.add(MessageType.DELADDR, 0, description, (w) => encodeAddress(w, spec));
    return this;
  }

  /** `description` names the request in errors (the caller may know the link's name; else its index). */
  addRoute(spec: RouteSpec, replace = false, description?: string): this {
    const flags = MessageFlag.CREATE | (replace ? MessageFlag.REPLACE : MessageFlag.EXCL);
    this.batch.add(
      MessageType.NEWROUTE,
      flags,
      description ?? `${replace ? 'replace' : 'add'} route ${describeRoute(spec)}`,
      (w) => encodeRoute(w, spec),
    );
    return this;
  }

  deleteRoute(spec: RouteSpec, description = `delete route ${describeRoute(spec)}`): this {
    this.batch.add(MessageType.DELROUTE, 0, description, (w) => encodeRoute(w, spec, true));
    return this;
  }

  addNeighbour(spec: NeighbourSpec, replace = false, description?: string): this {
    const flags = MessageFlag.CREATE | (replace ? MessageFlag.REPLACE : MessageFlag.EXCL);
    this.batch.add(
      MessageType.NEWNEIGH,
      flags,
      description ?? `add neighbour ${spec.destination} on link #${spec.index}`,
      (w) => encodeNeighbour(w, spec),
    );
    return this;
  }

  deleteNeighbour(spec: NeighbourSpec): this {
    this.batch.add(MessageType.DELNEIGH, 0, `delete neighbour ${spec.destination}`, (w) => encodeNeighbour(w, spec));
    return this;
  }

  /** `description` names the request in errors (the caller may know the link's name; else its index). */
  addQdisc(spec: QdiscSpec, description?: string): this {
    this.batch.add(
      MessageType.NEWQDISC,
      MessageFlag.CREATE | MessageFlag.EXCL,
      description ?? `add ${spec.options.kind} qdisc ${formatHandle(spec.handle)} on link #${spec.index}`,
      (w) => encodeQdisc(w, spec),
    );
    return this;
  }

  deleteQdisc(
    index: number,
    handle: number,
    parent: number,
    description = `delete qdisc ${formatHandle(handle)} on link #${index}`,
  ): this {
    this.batch.add(MessageType.DELQDISC, 0, description, (w) => encodeDeleteQdisc(w, index, handle, parent));
    return this;
  }

  addHtbClass(spec: HtbClassSpec, description?: string): this {
    this.batch.add(
      MessageType.NEWTCLASS,
      MessageFlag.CREATE | MessageFlag.EXCL,
      description ?? `add htb class ${formatHandle(spec.handle)} on link #${spec.index}`,
      (w) => encodeHtbClass(w, spec),
    );
    return this;
  }

  /** An existing htb class takes `spec`'s rates (`tc class change`); ENOENT when it is not there. */
  changeHtbClass(spec: HtbClassSpec, description?: string): this {
    this.batch.add(
      MessageType.NEWTCLASS,
      0,
      description ?? `change htb class ${formatHandle(spec.handle)} on link #${spec.index}`,
      (w) => encodeHtbClass(w, spec),
    );
    return this;
  }

  addFilter(spec: FilterSpec, description?: string): this {
    this.batch.add(
      MessageType.NEWTFILTER,
      MessageFlag.CREATE | MessageFlag.EXCL,
      description ??
        `add ${spec.options.kind} filter prio ${spec.priority} on link #${spec.index} parent ${formatHandle(spec.parent)}`,
      (w) => encodeFilter(w, spec),
    );
    return this;
  }

  deleteFilter(target: DeleteFilterTarget, description?: string): this {
    this.batch.add(
      MessageType.DELTFILTER,
      0,
      description ??
        `delete filter prio ${target.priority} on link #${target.index} parent ${formatHandle(target.parent)}`,
      (w) => encodeDeleteFilter(w, target),
    );
    return this;
  }

  async send(): Promise<RequestOutcome[]> {
    const answers = this.batch.size > 0 || this.sysctls.length === 0 ? await this.batch.send() : [];
    if (this.sysctls.length === 0) return answers;
    const outcomes: RequestOutcome[] = [];
    let next = 0;
    for (let position = 0; position < this.size; position++) {
      const write = this.sysctls.find((entry) => entry.position === position);
      outcomes.push(write ? this.writeSysctl(write) : answers[next++]!);
    }
    return outcomes;
  }

  private writeSysctl(write: SysctlWrite): RequestOutcome {
    try {
      nativeNetlink.writeFileInNamespace(this.socket.namespace(), write.path, `${write.value}\n`);
      return { ok: true, messages: [] };
    } catch (error) {
      const errno = (error as NodeJS.ErrnoException).errno ?? osConstants.errno.EIO;
      const request = { type: 0, description: write.description };
      return {
        ok: false,
        error: new NetlinkError(
          request,
          { errno: Math.abs(errno), requestType: 0, requestSequence: 0 },
          this.socket.namespacePath,
        ),
      };
    }
  }

  /** Sends and throws the first refusal, if any. */
  async commit(): Promise<void> {
    const outcomes = await this.send();
    const failed = outcomes.find((outcome) => !outcome.ok);
    if (failed && !failed.ok) throw failed.error;
  }
}

function describeRoute(spec: RouteSpec): string {
  const destination = spec.destination ? `${spec.destination}/${spec.destinationLength ?? ''}` : 'default';
  const tos = spec.tos ? ` tos 0x${spec.tos.toString(16).padStart(2, '0')}` : '';
  return `${destination}${tos}${spec.gateway ? ` via ${spec.gateway}` : ''}${spec.outputIndex ? ` dev #${spec.outputIndex}` : ''}`;
}

/**
 * Which routes `NetlinkHandle.routes` lists: a family, a table (default main, or `'all'`) and routes leaving
 * by one link.
 */
export interface RouteFilter {
  family?: number;
  /** Table to list; default main. 'all' lists every table. */
  table?: number | 'all';
  /** Routes leaving by this link: as their output link, or as one of their next hops. */
  outputIndex?: number;
}

function leavesBy(route: Route, index: number): boolean {
  return route.outputIndex === index || route.nextHops?.some((hop) => hop.outputIndex === index) === true;
}

/** The dumped routes `filter` selects (its table, default main; its output link). */
function selectRoutes(routes: Route[], filter: RouteFilter): Route[] {
  const table = filter.table ?? RouteTable.MAIN;
  return routes.filter(
    (route) =>
      (table === 'all' || route.table === table) &&
      (filter.outputIndex === undefined || leavesBy(route, filter.outputIndex)),
  );
}

/**
 * The routes of a route dump, as `ip route show` lists them: the route cache's entries, which a dump
 * carries too (isCachedRoute), left out.
 */
function tableRoutes(routes: Route[], filter: RouteFilter = { table: 'all' }): Route[] {
  return selectRoutes(
    routes.filter((route) => !isCachedRoute(route)),
    filter,
  );
}

/**
 * Everything a namespace has, read in one go by `NetlinkHandle.snapshot`: links, addresses, routes,
 * neighbours proxy neighbours and qdiscs.
 */
export interface NamespaceSnapshot {
  links: Link[];
  addresses: Address[];
  routes: Route[];
  neighbours: Neighbour[];
  /** Proxy ARP/NDP entries (`ip neigh add proxy`), which the kernel lists in a dump of their own. */
  proxyNeighbours: Neighbour[];
  qdiscs: Qdisc[];
}

/** One part of a `NamespaceSnapshot` to read (`links`, `addresses`, `routes`...). */
export type SnapshotPart = keyof NamespaceSnapshot;

/** Options of `NetlinkHandle.snapshot`: a signal to stop it between its dumps. */
export interface SnapshotOptions {
  /** Stops the snapshot between its dumps, rejecting with the signal's reason (see snapshot()). */
  signal?: AbortSignal;
}

export const SNAPSHOT_PARTS: readonly SnapshotPart[] = [
  'links',
  'addresses',
  'routes',
  'neighbours',
  'proxyNeighbours',
  'qdiscs',
];

/** The dump behind each part of a snapshot: every family, every table. */
const snapshotDumps: {
  [Part in SnapshotPart]: {
    type: number;
    encode: (writer: MessageWriter) => void;
    decode: (message: RawMessage) => NamespaceSnapshot[Part][number];
    /** What of the decoded dump the part keeps; default all. */
    keep?: (items: NamespaceSnapshot[Part]) => NamespaceSnapshot[Part];
  };
} = {
  links: { type: MessageType.GETLINK, encode: (w) => encodeGetLink(w), decode: decodeLink },
  addresses: {
    type: MessageType.GETADDR,
    encode: (w) => encodeGetAddress(w, AddressFamily.UNSPEC),
    decode: decodeAddress,
  },
  routes: {
    type: MessageType.GETROUTE,
    encode: (w) => encodeGetRoute(w, AddressFamily.UNSPEC),
    decode: decodeRoute,
    keep: (routes) => tableRoutes(routes),
  },
  neighbours: {
    type: MessageType.GETNEIGH,
    encode: (w) => encodeGetNeighbour(w, AddressFamily.UNSPEC),
    decode: decodeNeighbour,
  },
  proxyNeighbours: {
    type: MessageType.GETNEIGH,
    encode: (w) => encodeGetNeighbour(w, AddressFamily.UNSPEC, NeighbourFlag.PROXY),
    decode: decodeNeighbour,
  },
  qdiscs: { type: MessageType.GETQDISC, encode: (w) => encodeGetTc(w, 0, 0), decode: decodeQdisc },
};

/**
 * A path that cannot be a namespace file at all (missing, a FIFO, a directory, a device): refused
 * before the native open, which would block on a FIFO. One stat; the open finds the rest.
 */
function refuseNonNamespaceFile(path: string): void {
  let stats: Stats;
  try {
    stats = statSync(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR')
      throw new NamespacePathError('namespacePath', path, missingFileKind(path, code));
    return; // the open says what is wrong
  }
  const kind = nonNamespaceFileKind(stats);
  if (kind === undefined) return;
  throw new NamespacePathError('namespacePath', path, kind);
}

/** Why an open that failed did: the file is no namespace, or a namespace of another type; else undefined. */
function notANetworkNamespace(path: string, error: SystemCallError): string | undefined {
  try {
    if (statfsSync(path).type !== NSFS_MAGIC) return 'a regular file';
  } catch {
    return undefined;
  }
  return error.errno === 'EINVAL' ? 'a namespace of another type' : undefined;
}

/** A dump part this long is decoded in its own event-loop turn. */
const LARGE_DUMP_MESSAGES = 256;

/**
 * rtnetlink in one network namespace: links, addresses, routes, neighbours, qdiscs, classes and
 * filters, listed (with `ip`'s view of them) and changed one by one or in a `changes()` batch.
 * `NetlinkHandle.open(path)` opens one inside a namespace; `close()` (or `using`) releases its socket.
 */
export class NetlinkHandle {
  private constructor(
    /**
     * The netlink socket under the handle, for vcnet's own raw requests.
     * @internal
     */
    readonly socket: NetlinkSocket,
    readonly namespacePath: string | undefined,
  ) {}

  /**
   * Opens a socket inside the namespace at `namespacePath` (/var/run/netns/X, /proc/PID/ns/net), or
   * this one. `label` is the path errors and events name when `namespacePath` is only a way in (an fd
   * checked by identity, /proc/self/fd/N).
   */
  static open(namespacePath?: string, label = namespacePath): NetlinkHandle {
    // A number would reach the native shim and come back as a SystemCallError about a string argument.
    stringOption(namespacePath, 'namespacePath', 'a network namespace path, or nothing for this namespace');
    stringOption(label, 'label', 'the path errors name');
    if (namespacePath !== undefined) refuseNonNamespaceFile(namespacePath);
    try {
      return new NetlinkHandle(NetlinkSocket.open(namespacePath, 0, label), label);
    } catch (error) {
      // Said as attach says it: a regular file or another namespace type is a NamespacePathError
      // (VCNET_NETNS_INVALID, with a hint), not a bare failed system call.
      if (namespacePath !== undefined && error instanceof SystemCallError) {
        const what = notANetworkNamespace(namespacePath, error);
        if (what) throw new NamespacePathError('namespacePath', namespacePath, what);
      }
      throw error;
    }
  }

  /**
   * A handle over a socket already open inside a namespace (the one openNetworkNamespace checked the
   * namespace's cookie on), owning it from now on: the operation works through the very socket its
   * namespace was identified by, and opens no other. `label` as open()'s.
   * @internal
   */
  static over(socket: RouteSocket, label: string | undefined): NetlinkHandle {
    return new NetlinkHandle(NetlinkSocket.over(socket, label), label);
  }

  /**
   * An fd of the namespace the socket talks to, for what only an ioctl inside it can make (a tap):
   * taken from the socket itself (SIOCGSKNS) the first time it is needed, so the tap lands exactly
   * where the handle's requests go, even if the path has been re-bound since, and with no path
   * lookup. Undefined for the caller's own namespace. Closed with the handle.
   */
  namespaceFd(): number | undefined {
    return this.namespacePath === undefined ? undefined : this.socket.namespace();
  }

  /**
   * A sysctl of the handle's namespace, `path` under /proc/sys/net/ (`ipv4/conf/all/promote_secondaries`),
   * without its newline. Read inside the namespace: /proc/sys/net shows the namespace of the thread
   * that opens it, and an `all` setting has no netlink attribute to ask for instead.
   * @internal
   */
  readNetSysctl(path: string): string {
    if (path.split('/').some((part) => part === '' || part === '.' || part === '..')) {
      throw new InvalidInputError('path', path, 'a path under /proc/sys/net/, as ipv4/conf/all/promote_secondaries');
    }
    try {
      return nativeNetlink.readFileInNamespace(this.socket.namespace(), `/proc/sys/net/${path}`).trimEnd();
    } catch (error) {
      throw new SystemCallError(
        `read /proc/sys/net/${path} in ${this.namespacePath ?? 'this namespace'}`,
        error as NodeJS.ErrnoException,
      );
    }
  }

  changes(): ChangeBatch {
    return new ChangeBatch(this.socket);
  }

  /**
   * Closes the handle. The promise settles once its socket's fds are closed: a link deletion sent on
   * a pool thread may keep them open a moment after its answer came (await it before checking that
   * nothing of the namespace is open, or deleting it).
   */
  close(): Promise<void> {
    return this.socket.close();
  }

  /** `using handle = NetlinkHandle.open(...)` closes it at the end of the block. */
  [Symbol.dispose](): void {
    void this.close();
  }

  private async one(build: (batch: ChangeBatch) => void): Promise<void> {
    const batch = this.changes();
    build(batch);
    await batch.commit();
  }

  private async dump<T>(
    type: number,
    description: string,
    encode: Parameters<RequestBatch['add']>[3],
    decode: (m: RawMessage) => T,
  ): Promise<T[]> {
    const [outcome] = await this.socket.batch().add(type, MessageFlag.DUMP, description, encode).send();
    if (!outcome) return [];
    if (!outcome.ok) throw outcome.error;
    const wanted = type - 2; // replies to GET are NEW messages
    return outcome.messages.filter((message) => message.type === wanted).map(decode);
  }

  /**
   * Links, addresses, routes (all tables; the route cache apart), neighbours (proxy entries apart)
   * and qdiscs of the namespace: what scanning it needs; `parts` narrows it to what the caller uses
   * (the others come back empty). The dumps go out as one batch: the protocol sends each as soon as the one before
   * it is done (the kernel runs one dump per socket at a time), without a round trip through the
   * event loop in between. With `signal`, they go out one at a time instead, the signal looked at
   * before the first and after each: an abort rejects with the signal's reason (a plain `abort()`:
   * an AbortError), once the dump under way is read (the handle stays usable).
   */
  async snapshot(
    parts: readonly SnapshotPart[] = SNAPSHOT_PARTS,
    options: SnapshotOptions = {},
  ): Promise<NamespaceSnapshot> {
    options = optionsArgument(options, 'options', ['signal']);
    const signal = signalOption(options.signal);
    signal?.throwIfAborted();
    const wanted = SNAPSHOT_PARTS.filter((part) => parts.includes(part));
    const snapshot: NamespaceSnapshot = {
      links: [],
      addresses: [],
      routes: [],
      neighbours: [],
      proxyNeighbours: [],
      qdiscs: [],
    };
    for (const group of signal ? wanted.map((part) => [part]) : [wanted]) {
      const batch = this.socket.batch();
      for (const part of group) {
        const dump = snapshotDumps[part];
        batch.add(dump.type, MessageFlag.DUMP, `list ${part}`, dump.encode);
      }
      const outcomes = await batch.send();
      signal?.throwIfAborted();
      for (const [position, part] of group.entries()) {
        const outcome = outcomes[position]!;
        if (!outcome.ok) throw outcome.error;
        const reply = snapshotDumps[part].type - 2; // replies to GET are NEW messages
        const messages = outcome.messages.filter((message) => message.type === reply);
        const { decode, keep } = snapshotDumps[part] as {
          decode: (message: RawMessage) => unknown;
          keep?: (items: unknown[]) => unknown[];
        };
        const decoded = messages.map((message) => decode(message));
        (snapshot[part] as unknown[]) = keep ? keep(decoded) : decoded;
        // Decoding a big namespace's dumps takes tens of ms: the event loop runs between them (a pod's
        // few messages never wait here).
        if (messages.length >= LARGE_DUMP_MESSAGES) await yieldToEventLoop();
      }
    }
    return snapshot;
  }

  // ---- links ----

  /** Every link of the namespace. Equivalent to `ip -d link show`. */
  links(): Promise<Link[]> {
    return this.dump(MessageType.GETLINK, 'list links', (w) => encodeGetLink(w), decodeLink);
  }

  /** One link; LinkNotFoundError when there is none. Equivalent to `ip -d link show dev NAME`. */
  async linkByName(name: string): Promise<Link> {
    const link = await this.findLink({ name });
    if (!link) throw new LinkNotFoundError(name, this.namespacePath);
    return link;
  }

  /** One link by ifindex; LinkNotFoundError when there is none. */
  async linkByIndex(index: number): Promise<Link> {
    const link = await this.findLink({ index });
    if (!link) throw new LinkNotFoundError(index, this.namespacePath);
    return link;
  }

  /** One link by name or index, or undefined when there is none. */
  async findLink(target: { name?: string; index?: number }): Promise<Link | undefined> {
    const [outcome] = await this.socket
      .batch()
      .add(MessageType.GETLINK, 0, `get link ${target.name ?? `#${target.index}`}`, (w) => encodeGetLink(w, target))
      .send();
    if (!outcome) return undefined;
    if (!outcome.ok) {
      if (outcome.error.errno === 'ENODEV') return undefined;
      throw outcome.error;
    }
    const message = outcome.messages.find((m) => m.type === MessageType.NEWLINK);
    return message ? decodeLink(message) : undefined;
  }

  /** Equivalent to `ip link add NAME type KIND …` (EEXIST when the name is taken). */
  addLink(spec: LinkSpec): Promise<void> {
    return this.one((b) => b.addLink(spec));
  }

  /** Equivalent to `ip link set dev NAME mtu … address … up|down group … netns …`. */
  setLink(index: number, changes: LinkChanges): Promise<void> {
    return this.one((b) => b.setLink(index, changes));
  }

  /** Equivalent to `ip link del dev NAME` (ENODEV when it is gone). */
  deleteLink(index: number): Promise<void> {
    return this.one((b) => b.deleteLink(index));
  }

  /** Equivalent to `ip link del group N`: every link of the group, after one RCU grace period. */
  deleteLinkGroup(group: number): Promise<void> {
    return this.one((b) => b.deleteLinkGroup(group));
  }

  // ---- addresses ----

  /** Equivalent to `ip addr show [dev NAME]` (`-4`/`-6` with `family`). */
  async addresses(filter: { index?: number; family?: number } = {}): Promise<Address[]> {
    const all = await this.dump(
      MessageType.GETADDR,
      'list addresses',
      (w) => encodeGetAddress(w, filter.family ?? AddressFamily.UNSPEC),
      decodeAddress,
    );
    return filter.index === undefined ? all : all.filter((address) => address.index === filter.index);
  }

  /** Equivalent to `ip addr add ADDRESS/LEN dev NAME …`. */
  addAddress(spec: AddressSpec): Promise<void> {
    return this.one((b) => b.addAddress(spec));
  }

  /** Equivalent to `ip addr del ADDRESS/LEN dev NAME`. */
  deleteAddress(spec: AddressSpec): Promise<void> {
    return this.one((b) => b.deleteAddress(spec));
  }

  // ---- routes ----

  /**
   * Equivalent to `ip route show [table main|all] [dev NAME]` (`-4`/`-6` with `family`): routes only,
   * never the route cache's path-MTU and redirect exceptions that the kernel's dump carries too
   * (cachedRoutes() lists those).
   */
  async routes(filter: RouteFilter = {}): Promise<Route[]> {
    return tableRoutes(await this.dumpRoutes(filter), filter);
  }

  /**
   * The route cache: the path-MTU and redirect exceptions the kernel learned from traffic
   * (isCachedRoute), which routes() and snapshot() leave out. Equivalent to `ip route show cache
   * [table main|all] [dev NAME]` (`-4`/`-6` with `family`).
   */
  async cachedRoutes(filter: RouteFilter = {}): Promise<Route[]> {
    return selectRoutes(
      (await this.dumpRoutes(filter)).filter((route) => isCachedRoute(route)),
      filter,
    );
  }

  private async dumpRoutes(filter: RouteFilter): Promise<Route[]> {
    return this.dump(
      MessageType.GETROUTE,
      'list routes',
      (w) => encodeGetRoute(w, filter.family ?? AddressFamily.UNSPEC),
      decodeRoute,
    );
  }

  /** Equivalent to `ip route add …` (EEXIST when that route is there). */
  addRoute(spec: RouteSpec): Promise<void> {
    return this.one((b) => b.addRoute(spec));
  }

  /** Equivalent to `ip route replace …`. */
  replaceRoute(spec: RouteSpec): Promise<void> {
    return this.one((b) => b.addRoute(spec, true));
  }

  /** Equivalent to `ip route del …`. */
  deleteRoute(spec: RouteSpec): Promise<void> {
    return this.one((b) => b.deleteRoute(spec));
  }

  // ---- neighbours ----

  /** Equivalent to `ip neigh show [dev NAME]` (proxy entries apart: proxyNeighbours()). */
  async neighbours(filter: { index?: number; family?: number } = {}): Promise<Neighbour[]> {
    const all = await this.dump(
      MessageType.GETNEIGH,
      'list neighbours',
      (w) => encodeGetNeighbour(w, filter.family ?? AddressFamily.UNSPEC),
      decodeNeighbour,
    );
    return filter.index === undefined ? all : all.filter((neighbour) => neighbour.index === filter.index);
  }

  /** Proxy ARP/NDP entries (flags include NTF_PROXY). */
  async proxyNeighbours(filter: { index?: number; family?: number } = {}): Promise<Neighbour[]> {
    const all = await this.dump(
      MessageType.GETNEIGH,
      'list proxy neighbours',
      (w) => encodeGetNeighbour(w, filter.family ?? AddressFamily.UNSPEC, NeighbourFlag.PROXY),
      decodeNeighbour,
    );
    return filter.index === undefined ? all : all.filter((neighbour) => neighbour.index === filter.index);
  }

  /** Equivalent to `ip neigh add ADDRESS lladdr MAC dev NAME nud STATE`. */
  addNeighbour(spec: NeighbourSpec): Promise<void> {
    return this.one((b) => b.addNeighbour(spec));
  }

  /** Equivalent to `ip neigh del ADDRESS dev NAME`. */
  deleteNeighbour(spec: NeighbourSpec): Promise<void> {
    return this.one((b) => b.deleteNeighbour(spec));
  }

  // ---- traffic control ----

  /** Equivalent to `tc qdisc show [dev NAME]`. */
  async qdiscs(index?: number): Promise<Qdisc[]> {
    const all = await this.dump(MessageType.GETQDISC, 'list qdiscs', (w) => encodeGetTc(w, 0, 0), decodeQdisc);
    return index === undefined ? all : all.filter((qdisc) => qdisc.index === index);
  }

  /** Equivalent to `tc qdisc add dev NAME (ingress | clsact | root handle 1: htb default N …)`. */
  addQdisc(spec: QdiscSpec, description?: string): Promise<void> {
    return this.one((b) => b.addQdisc(spec, description));
  }

  /** Equivalent to `tc qdisc del dev NAME (ingress | root …)`. */
  deleteQdisc(index: number, handle: number, parent: number): Promise<void> {
    return this.one((b) => b.deleteQdisc(index, handle, parent));
  }

  /** Equivalent to `tc class show dev NAME [parent P]`. */
  classes(index: number, parent = 0): Promise<TrafficClass[]> {
    return this.dump(
      MessageType.GETTCLASS,
      `list classes of link #${index}`,
      (w) => encodeGetTc(w, index, parent),
      decodeClass,
    );
  }

  /** Equivalent to `tc class add dev NAME parent P classid C htb rate R ceil C`. */
  addHtbClass(spec: HtbClassSpec): Promise<void> {
    return this.one((b) => b.addHtbClass(spec));
  }

  /** Filters of one link under one parent (e.g. ingress, 0xffff0000). Equivalent to `tc filter show dev NAME parent P`. */
  async filters(index: number, parent: number): Promise<Filter[]> {
    const filters = await this.dump(
      MessageType.GETTFILTER,
      `list filters of link #${index} parent ${formatHandle(parent)}`,
      (w) => encodeGetTc(w, index, parent),
      decodeFilter,
    );
    return filters;
  }

  /** Equivalent to `tc filter add dev NAME parent P prio N protocol … u32|matchall … action …`. */
  addFilter(spec: FilterSpec): Promise<void> {
    return this.one((b) => b.addFilter(spec));
  }

  /** Equivalent to `tc filter del dev NAME parent P prio N protocol …`. */
  deleteFilter(target: DeleteFilterTarget): Promise<void> {
    return this.one((b) => b.deleteFilter(target));
  }
}
