/**
 * Which endpoint an interface becomes, in Kata's order (createEndpoint): a physical NIC, then a
 * vhost-user socket for the interface, then by link kind. A link without a kind (a NIC shown as a
 * plain device: virtio-net in a nested VM, mlx5 sub-functions, platform VFs) is connected as a veth,
 * as Kata does. Unlike Kata, an unsupported interface is named together with its kind.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { refuseUnknownKeys } from '../../arguments.js';
import { type ErrorCode, InvalidInputError, VcnetError } from '../../errors.js';
import { bytesToIp, ipToBytes } from '../../netlink/codec/address-format.js';
import { HardwareType } from '../../netlink/codec/link/message.js';
import { createInterfacePair } from '../interface-pair.js';
import type { InterworkingModel } from '../interworking-model.js';
import type { EndpointType, NetworkInfo } from '../network-info.js';
import type { HostRoots } from '../vfio.js';
import { BridgedMacvlanEndpoint } from './bridged-macvlan-endpoint.js';
import type { Endpoint } from './endpoint.js';
import { IpvlanEndpoint } from './ipvlan-endpoint.js';
import { MacvtapEndpoint } from './macvtap-endpoint.js';
import { PhysicalEndpoint, pciDevicesDirectory, readPciDevice } from './physical-endpoint.js';
import { TapEndpoint } from './tap-endpoint.js';
import { TuntapEndpoint } from './tuntap-endpoint.js';
import { VethEndpoint } from './veth-endpoint.js';
import { VhostUserEndpoint } from './vhost-user-endpoint.js';

/**
 * A pod interface vcnet cannot make an endpoint of; its code says why (a link kind vcnet does not support,
 * say) and its hint what to do.
 */
export class UnsupportedInterfaceError extends VcnetError {
  static override readonly errorName: string = 'UnsupportedInterfaceError';
  constructor(code: ErrorCode, message: string, value: unknown, hint: string) {
    super(code, message, { value, hint });
  }
}

/**
 * The refusal of the loopback device wherever a pod link is named (attach --interface, add-iface,
 * vcnet-cni's CNI_IFNAME): it is a link of the namespace, but never one a VM gets.
 */
export function loopbackRefused(name: string): UnsupportedInterfaceError {
  return new UnsupportedInterfaceError(
    'VCNET_UNSUPPORTED_INTERFACE',
    `${name} is the loopback device: the guest has its own`,
    name,
    'name a pod interface other than lo',
  );
}

/** createEndpoint's options: the endpoint's index and model, its guest name, and where its devices are looked for. */
export interface CreateEndpointOptions {
  index: number;
  model: InterworkingModel;
  /** Name in the guest; the pod interface's own name when omitted (eth<index> only if that is empty). */
  guestName?: string;
  /** Directory holding vhost-user sockets: <store>/vhostuser_<ip>/vhu.sock, as Kata looks for them. */
  vhostUserStorePath?: string;
  /** Endpoint type a caller asked for (kata-network add-iface); the link's kind decides otherwise. */
  requestedType?: EndpointType;
  /** A stable id for the pair (the sandbox id and index). */
  pairId?: string;
  /**
   * Where a physical NIC's PCI device is read and bound to vfio-pci: sysfs and /dev, the host's
   * (/sys, /dev) unless given (a fake tree in tests).
   */
  hostRoots?: HostRoots;
}

/** Where Kata looks for vhost-user sockets of network interfaces: /tmp/vhostuser_<ip>/vhu.sock. */
const DEFAULT_VHOST_USER_STORE = '/tmp';

/**
 * An address as Kata names its socket's directory: Go's net.IP text of the parsed address (lower
 * case, the longest run of zero groups compressed, an IPv4-mapped IPv6 address as IPv4), whatever
 * form an add-iface request wrote it in ("FD00:0::2" is fd00::2).
 */
function addressAsKataWritesIt(address: string): string {
  let bytes: Uint8Array;
  try {
    bytes = ipToBytes(address);
  } catch {
    return address;
  }
  const mappedIpv4 =
    bytes.length === 16 &&
    bytes.subarray(0, 10).every((byte) => byte === 0) &&
    bytes[10] === 0xff &&
    bytes[11] === 0xff;
  return bytesToIp(mappedIpv4 ? bytes.subarray(12) : bytes);
}

/** Where an interface's vhost-user socket may be: one path per address, in the order they are tried. */
export function vhostUserSocketCandidates(info: NetworkInfo, storePath: string = DEFAULT_VHOST_USER_STORE): string[] {
  return info.addresses.map((address) =>
    join(storePath, `vhostuser_${addressAsKataWritesIt(address.address)}`, 'vhu.sock'),
  );
}

/** The vhost-user socket for an interface, looked for by each of its addresses. */
export function findVhostUserSocket(
  info: NetworkInfo,
  storePath: string = DEFAULT_VHOST_USER_STORE,
): string | undefined {
  return vhostUserSocketCandidates(info, storePath).find((candidate) => existsSync(candidate));
}

/** The endpoint type a link would become, without creating anything. */
export function classifyInterface(
  info: NetworkInfo,
  options: Pick<CreateEndpointOptions, 'vhostUserStorePath' | 'requestedType'> = {},
): EndpointType {
  const link = info.link;
  if (options.requestedType) return options.requestedType;
  if (link.parentBus === 'pci' && link.parentDevice) return 'physical';
  if (findVhostUserSocket(info, options.vhostUserStorePath)) return 'vhost-user';
  switch (link.kind) {
    case 'macvlan':
      return 'macvlan';
    case 'macvtap':
      return 'macvtap';
    case 'veth':
      return 'virtual';
    // No IFLA_INFO_KIND: Kata's netlink library calls these "device" and makes a veth endpoint.
    case undefined:
      if (link.type === HardwareType.LOOPBACK) throw loopbackRefused(link.name);
      return 'virtual';
    case 'ipvlan':
      return 'ipvlan';
    case 'tun': {
      const mode = link.tun?.type;
      if (mode === undefined) {
        throw new UnsupportedInterfaceError(
          'VCNET_TUNTAP_MODE_UNKNOWN',
          `network device mode of ${link.name} not determined correctly (the kernel did not report tun/tap data)`,
          link.name,
          'Kata reads the mode from sysfs: mount sysfs for the namespace, or use a kernel that reports IFLA_TUN_TYPE',
        );
      }
      if (mode === 'tun') {
        throw new UnsupportedInterfaceError(
          'VCNET_TUN_UNSUPPORTED',
          `${link.name} is a tun (layer 3) device: tun networking device not yet supported`,
          link.name,
          'give the sandbox a tap (layer 2) device instead',
        );
      }
      return 'tuntap';
    }
    default: {
      const kind = link.kind;
      throw new UnsupportedInterfaceError(
        'VCNET_UNSUPPORTED_INTERFACE',
        `unsupported network interface ${link.name}: kind ${kind}`,
        { name: link.name, kind: link.kind },
        `vcnet connects veth, macvlan, macvtap, ipvlan, tap (tuntap), kind-less devices, physical PCI and vhost-user interfaces; a link without an address is skipped, so remove ${link.name}'s addresses or move it out of the pod namespace (add-iface: name only links of those kinds)`,
      );
    }
  }
}

/**
 * The endpoint for one scanned pod link (classifyInterface's type, or `requestedType`); throws an
 * UnsupportedInterfaceError for a link vcnet cannot connect. Nothing on the host is changed.
 */
export function createEndpoint(info: NetworkInfo, options: CreateEndpointOptions): Endpoint {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new InvalidInputError('options', options, 'an object with at least index and model');
  }
  refuseUnknownKeys(options, 'options', [
    'index',
    'model',
    'guestName',
    'vhostUserStorePath',
    'requestedType',
    'pairId',
    'hostRoots',
  ] satisfies (keyof CreateEndpointOptions)[]);
  if (!Number.isInteger(options.index) || options.index < 0) {
    throw new InvalidInputError(
      'endpoint index',
      options.index,
      'a whole number from 0',
      'invalid network endpoint index',
    );
  }
  const endpoint = createEndpointOfType(info, options);
  if (!endpoint.pair && options.guestName) endpoint.guestName = options.guestName;
  return endpoint;
}

function createEndpointOfType(info: NetworkInfo, options: CreateEndpointOptions): Endpoint {
  const type = classifyInterface(info, options);
  const link = info.link;
  const pairFor = (model: InterworkingModel) =>
    createInterfacePair(
      options.index,
      options.guestName ?? link.name,
      { name: link.name, hardwareAddress: link.address ?? '' },
      model,
      options.pairId ?? `${link.name}-${options.index}`,
    );
  switch (type) {
    case 'physical':
      return new PhysicalEndpoint(
        options.index,
        info,
        readPciDevice(link.parentDevice ?? '', pciDevicesDirectory(options.hostRoots)),
        options.hostRoots,
      );
    case 'vhost-user': {
      const socket = findVhostUserSocket(info, options.vhostUserStorePath);
      if (!socket) {
        throw new UnsupportedInterfaceError(
          'VCNET_VHOST_USER_SOCKET_MISSING',
          `no vhost-user socket for ${link.name} in ${options.vhostUserStorePath ?? '(no store configured)'}`,
          options.vhostUserStorePath,
          'create the socket as <store>/vhostuser_<ip>/vhu.sock, or configure the vhost-user store path',
        );
      }
      return new VhostUserEndpoint(options.index, info, socket);
    }
    case 'macvlan':
      return new BridgedMacvlanEndpoint(options.index, info, pairFor(options.model));
    case 'macvtap':
      return new MacvtapEndpoint(options.index, info, undefined);
    case 'tap':
      return new TapEndpoint(options.index, info, undefined);
    case 'tuntap':
      return new TuntapEndpoint(options.index, info, pairFor(options.model));
    case 'ipvlan':
      return new IpvlanEndpoint(options.index, info, pairFor('tcfilter'));
    case 'virtual':
      return new VethEndpoint(options.index, info, pairFor(options.model));
  }
}
