/**
 * AgentClient: the host side of the Kata agent's network calls. Talks ttrpc to "grpc.AgentService" over
 * the agent's vsock port through the VMM's hybrid vsock socket (Cloud Hypervisor, Firecracker), or
 * over its virtio-serial port, which QEMU exposes on the host as a unix socket:
 *   -chardev socket,id=agent,path=SOCK,server=on,wait=off
 *   -device virtio-serial-pci -device virtserialport,chardev=agent,name=agent.channel.0
 * QEMU holds what the host writes until the guest opens the port, so a call made while the guest boots
 * is answered once the agent runs: give the first call a deadline long enough for the boot.
 */
import type { Duplex } from 'node:stream';
import type { MessageInitShape } from '@bufbuild/protobuf';
import { booleanOption, numberOption, optionsArgument, stringArgument } from '../arguments.js';
import { InvalidInputError } from '../errors.js';
import { AgentMethods } from './agent-service.js';
import type { ARPNeighborSchema, Interface, InterfaceSchema, Route, RouteSchema } from './generated/types_pb.js';
import { connectHybridVsock, type HybridVsockOptions, parseAgentAddress } from './hybrid-vsock.js';
import { type CallOptions, TtrpcClient } from './ttrpc/client.js';
import { connectUnixSocket } from './unix-socket-connect.js';

/** An AgentClient's own options: the deadline of its calls. */
export interface AgentClientOptions {
  /** Deadline of each call unless the call says otherwise; default 30 s. 0 = none. */
  callTimeoutMs?: number;
}

const CLIENT_OPTION_KEYS = ['callTimeoutMs'] as const;
const CONNECT_OPTION_KEYS = [
  'handshakeTimeoutMs',
  'connectTimeoutMs',
  'deadlineMs',
  'retryIntervalMs',
  'signal',
] as const satisfies readonly (keyof HybridVsockOptions)[];
/** Milliseconds, 0 to an hour: NaN or "soon" would otherwise mean no deadline at all. */
const TIMEOUT_RANGE = { min: 0, max: 3_600_000, integer: false, unit: 'milliseconds' } as const;

/**
 * What `AgentClient.updateInterface` takes: the agent's Interface message as a plain object (fields may be
 * left out; protobuf defaults fill them).
 */
export type InterfaceInit = MessageInitShape<typeof InterfaceSchema>;
/**
 * What `AgentClient.updateRoutes` takes per route: the agent's Route message as a plain object (fields may be
 * left out).
 */
export type RouteInit = MessageInitShape<typeof RouteSchema>;
/**
 * What `AgentClient.addArpNeighbors` takes per neighbour: the agent's ARPNeighbor message as a plain object.
 */
export type NeighbourInit = MessageInitShape<typeof ARPNeighborSchema>;

/** A call's options, and `v6`: the IPv6 tables (ip6tables-save / ip6tables-restore) instead of IPv4's. */
export interface IpTablesCallOptions extends CallOptions {
  v6?: boolean;
}

function ipTablesCallOptions(options: IpTablesCallOptions): { v6: boolean; call: CallOptions } {
  const { v6, ...call } = optionsArgument(options, 'options', ['v6', 'timeoutMs', 'signal', 'metadata']);
  booleanOption(v6, 'v6');
  return { v6: v6 === true, call };
}

/** A client of the Kata agent's network calls (ttrpc over a unix socket, vsock or hybrid vsock). */
export class AgentClient {
  /**
   * The ttrpc connection the calls go over.
   * @internal
   */
  readonly ttrpc: TtrpcClient;
  private readonly callTimeoutMs: number;

  /** A client over a byte stream that is already connected. */
  constructor(stream: Duplex, options: AgentClientOptions = {}) {
    if (typeof (stream as Partial<Duplex> | null)?.write !== 'function' || typeof stream.on !== 'function') {
      throw new InvalidInputError('stream', stream, 'a connected Duplex stream (a net.Socket)');
    }
    // connect() passes its own options on: their keys are the client's too.
    optionsArgument(options as AgentClientOptions & HybridVsockOptions, 'options', [
      ...CLIENT_OPTION_KEYS,
      ...CONNECT_OPTION_KEYS,
    ]);
    numberOption(options.callTimeoutMs, 'callTimeoutMs', TIMEOUT_RANGE);
    this.ttrpc = new TtrpcClient(stream);
    this.callTimeoutMs = options.callTimeoutMs ?? 30_000;
  }

  /**
   * Connects to the agent at `address`, retrying until `deadlineMs` while it is missing or refusing:
   * a unix socket that carries the agent's stream (QEMU's virtio-serial chardev), or
   * `hvsock://PATH:PORT`, the hybrid vsock socket of Cloud Hypervisor or Firecracker and the agent's
   * vsock port (see hybrid-vsock.ts).
   */
  static async connect(address: string, options: AgentClientOptions & HybridVsockOptions = {}): Promise<AgentClient> {
    stringArgument(address, 'address', 'a socket path or hvsock://PATH:PORT');
    options = optionsArgument(options, 'options', [...CLIENT_OPTION_KEYS, ...CONNECT_OPTION_KEYS]);
    numberOption(options.callTimeoutMs, 'callTimeoutMs', TIMEOUT_RANGE);
    for (const key of ['handshakeTimeoutMs', 'connectTimeoutMs', 'deadlineMs', 'retryIntervalMs'] as const) {
      numberOption(options[key], key, TIMEOUT_RANGE);
    }
    if (options.signal !== undefined && !(options.signal instanceof AbortSignal)) {
      throw new InvalidInputError('signal', options.signal, 'an AbortSignal');
    }
    const parsed = parseAgentAddress(address, 'agent address');
    if (parsed.kind === 'unix') return new AgentClient(await connectUnixSocket(parsed.path, options), options);
    const socket = await connectHybridVsock(parsed.path, parsed.port, options);
    const client = new AgentClient(socket, options);
    socket.resume();
    return client;
  }

  private options(options: CallOptions): CallOptions {
    return { timeoutMs: this.callTimeoutMs, ...options };
  }

  /** Sets up one guest link (found by hwAddr); answers the interface as the agent reports it. */
  updateInterface(iface: InterfaceInit, options: CallOptions = {}): Promise<Interface> {
    return this.ttrpc.call(AgentMethods.updateInterface, { interface: iface }, this.options(options));
  }

  /** Replaces the guest's routes with this full set (kernel and lo routes stay); answers the routes afterwards. */
  async updateRoutes(routes: RouteInit[], options: CallOptions = {}): Promise<Route[]> {
    const answer = await this.ttrpc.call(
      AgentMethods.updateRoutes,
      { routes: { Routes: routes } },
      this.options(options),
    );
    return answer.Routes;
  }

  async addArpNeighbors(neighbours: NeighbourInit[], options: CallOptions = {}): Promise<void> {
    await this.ttrpc.call(
      AgentMethods.addArpNeighbors,
      { neighbors: { ARPNeighbors: neighbours } },
      this.options(options),
    );
  }

  async listInterfaces(options: CallOptions = {}): Promise<Interface[]> {
    return (await this.ttrpc.call(AgentMethods.listInterfaces, {}, this.options(options))).Interfaces;
  }

  async listRoutes(options: CallOptions = {}): Promise<Route[]> {
    return (await this.ttrpc.call(AgentMethods.listRoutes, {}, this.options(options))).Routes;
  }

  /**
   * GetIPTables: the guest's rules as iptables-save (ip6tables-save with `v6`) prints them, raw bytes.
   * Kata's agent and vcnet's run the program in the guest; a guest without it answers an error status.
   */
  async getIpTables(options: IpTablesCallOptions = {}): Promise<Uint8Array> {
    const { v6, call } = ipTablesCallOptions(options);
    return (await this.ttrpc.call(AgentMethods.getIpTables, { isIpv6: v6 }, this.options(call))).data;
  }

  /**
   * SetIPTables: feeds `rules` (iptables-save text) to iptables-restore (ip6tables-restore with `v6`) in
   * the guest, which replaces the tables the text names; answers what it printed (usually nothing).
   */
  async setIpTables(rules: Uint8Array | string, options: IpTablesCallOptions = {}): Promise<Uint8Array> {
    if (typeof rules !== 'string' && !(rules instanceof Uint8Array)) {
      throw new InvalidInputError('rules', rules, 'the rules as iptables-save text: a string or a Uint8Array');
    }
    const { v6, call } = ipTablesCallOptions(options);
    const data = typeof rules === 'string' ? new TextEncoder().encode(rules) : rules;
    return (await this.ttrpc.call(AgentMethods.setIpTables, { isIpv6: v6, data }, this.options(call))).data;
  }

  close(): void {
    this.ttrpc.close();
  }

  /** `using agent = ...` closes the connection at the end of the block. */
  [Symbol.dispose](): void {
    this.close();
  }
}
