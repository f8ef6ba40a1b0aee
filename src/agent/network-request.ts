/**
 * Checks the agent's network requests field by field and turns them into the applier's terms. Every
 * refusal is an InvalidInputError naming the field as the protocol spells it ("interface.IPAddresses[1].mask"),
 * the value and what is accepted; the server answers it with INVALID_ARGUMENT.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { InvalidInputError } from '../errors.js';
import { isMacAddress, MAC_ADDRESS_ACCEPTED } from '../mac-address.js';
import { bytesToIp, ipToBytes } from '../netlink/codec/address-format.js';
import { checkLinkName } from '../netlink/link-name.js';
import { DEVICE_PATH_ACCEPTED, isDevicePath, parsePciPath, pciPathText } from './device-path.js';
import type { ARPNeighbor, Interface, IPAddress, Route } from './generated/types_pb.js';
import type {
  AddressAssignment,
  InterfaceUpdate,
  IpVersion,
  NeighbourAddition,
  RouteUpdate,
} from './network-applier.js';

const IFF_NOARP = 0x80;
const NUD_PERMANENT = 0x80;
/** Every NUD_* bit (INCOMPLETE 0x01 to PERMANENT 0x80); ndm_state carries no others. */
const NUD_ALL = 0xff;
const MINIMUM_MTU = 68;
const MAXIMUM_MTU = 65535;
/** What an interface MTU may be: said the same by the JSON schema (1.5) and by the range check (70000). */
export const INTERFACE_MTU_ACCEPTED = `an integer: 0 (unchanged) or ${MINIMUM_MTU}-${MAXIMUM_MTU}`;

const FAMILY_NAMES: Record<number, string> = { 0: 'v4', 1: 'v6' };

function versionOfFamily(field: string, family: number): IpVersion {
  if (family === 0) return 4;
  if (family === 1) return 6;
  throw new InvalidInputError(field, family, '0 (v4) or 1 (v6)');
}

/**
 * The version a message's family and addresses give. `v4` is protobuf's zero value, so an omitted
 * family (Kata 1.x JSON, protobuf-JSON that drops defaults) reads as v4: then the first address given
 * (destination, gateway, source) decides.
 * An explicit v6 stays a claim the addresses must keep.
 */
function versionOf(field: string, family: number, addresses: readonly string[]): IpVersion {
  const version = versionOfFamily(field, family);
  const first = addresses.find((address) => address !== '' && address !== 'default');
  if (version === 4 && first !== undefined && isIPv6(first.split('/')[0] ?? '')) return 6;
  return version;
}

function checkAddress(field: string, address: string, version: IpVersion): string {
  const valid = version === 4 ? isIPv4(address) : isIPv6(address);
  if (!valid) {
    const other = version === 4 ? isIPv6(address) : isIPv4(address);
    throw new InvalidInputError(
      field,
      address,
      other
        ? `an IPv${version} address, as the family (${FAMILY_NAMES[version === 4 ? 0 : 1]}) says`
        : `an IPv${version} address`,
    );
  }
  return address;
}

function checkPrefixLength(field: string, text: string, version: IpVersion): number {
  const maximum = version === 4 ? 32 : 128;
  if (!/^\d{1,3}$/.test(text) || Number(text) > maximum) {
    throw new InvalidInputError(field, text, `a prefix length 0-${maximum} as a decimal string`);
  }
  return Number(text);
}

function checkMtu(field: string, mtu: number | bigint): number | undefined {
  if (mtu === 0 || mtu === 0n) return undefined;
  if (mtu < MINIMUM_MTU || mtu > MAXIMUM_MTU) {
    throw new InvalidInputError(field, typeof mtu === 'bigint' ? Number(mtu) : mtu, INTERFACE_MTU_ACCEPTED);
  }
  return Number(mtu);
}

function checkMac(field: string, mac: string): string {
  if (!isMacAddress(mac)) throw new InvalidInputError(field, mac, MAC_ADDRESS_ACCEPTED);
  return mac.toLowerCase();
}

/** A NIC's own MAC: virtio-net replaces an all-zero or multicast one with a random MAC, which the agent then cannot find. */
function checkNicMac(field: string, mac: string): string {
  const checked = checkMac(field, mac);
  if (checked === '00:00:00:00:00:00' || (Number.parseInt(checked.slice(0, 2), 16) & 0x01) !== 0) {
    throw new InvalidInputError(
      field,
      mac,
      'a unicast MAC address (not all zeros, first byte even), such as "02:00:ca:fe:00:01"',
    );
  }
  return checked;
}

function addressAssignment(field: string, address: IPAddress): AddressAssignment {
  // Kata's agent parses the address and never compares it with the family; vcnet does the same (the
  // family must still be v4 or v6).
  versionOfFamily(`${field}.family`, address.family);
  const version = isIPv6(address.address) ? 6 : 4;
  if (version === 4 && !isIPv4(address.address)) {
    throw new InvalidInputError(`${field}.address`, address.address, 'an IPv4 or IPv6 address');
  }
  return {
    version,
    address: address.address,
    prefixLength: checkPrefixLength(`${field}.mask`, address.mask, version),
  };
}

export function interfaceUpdateOf(message: Interface | undefined, field = 'interface'): InterfaceUpdate {
  if (!message) throw new InvalidInputError(field, undefined, 'an Interface message');
  const pciPath = message.devicePath;
  if (!isDevicePath(pciPath)) {
    throw new InvalidInputError(`${field}.devicePath`, pciPath, DEVICE_PATH_ACCEPTED);
  }
  const parsedPciPath = parsePciPath(pciPath);
  if (!message.hwAddr && !parsedPciPath) {
    throw new InvalidInputError(
      `${field}.hwAddr`,
      message.hwAddr,
      'the MAC address of the guest link (or a PCI path in devicePath)',
    );
  }
  const addresses = message.IPAddresses.map((address, index) =>
    addressAssignment(`${field}.IPAddresses[${index}]`, address),
  );
  const seen = new Map<string, number>();
  addresses.forEach((address, index) => {
    const key = address.address.toLowerCase();
    const earlier = seen.get(key);
    if (earlier !== undefined) {
      throw new InvalidInputError(
        `${field}.IPAddresses[${index}].address`,
        address.address,
        `an address not already given in IPAddresses[${earlier}]`,
      );
    }
    seen.set(key, index);
  });
  return {
    hardwareAddress: message.hwAddr ? checkNicMac(`${field}.hwAddr`, message.hwAddr) : '',
    pciPath: parsedPciPath ? pciPathText(parsedPciPath) : '',
    name: message.name ? checkLinkName(`${field}.name`, message.name) : undefined,
    mtu: checkMtu(`${field}.mtu`, message.mtu),
    addresses,
    // Kata carries only IFF_NOARP in raw_flags; other bits are the host link's state and are ignored, as Kata's agent does.
    noArp: (message.rawFlags & IFF_NOARP) !== 0,
    hostDevice: message.device,
    hostType: message.type,
  };
}

/** The address with every bit after the prefix cleared, as hex. */
function networkAddress(address: string, prefixLength: number): string {
  const bytes = ipToBytes(address);
  for (let bit = prefixLength; bit < bytes.length * 8; bit++) {
    bytes[bit >> 3] = (bytes[bit >> 3] ?? 0) & ~(0x80 >> (bit & 7));
  }
  return bytes.toString('hex');
}

function splitDestination(field: string, text: string, version: IpVersion): { destination?: string; length: number } {
  if (text === '' || text === 'default') return { length: 0 };
  const [address = '', length, extra] = text.split('/');
  const maximum = version === 4 ? 32 : 128;
  // Refused as a whole: "33" alone, or "an IPv4 address" for a CIDR, would not say what was wrong.
  const accepted = `"" (default route) or an IPv${version} ADDRESS/PREFIX with a prefix length 0-${maximum}`;
  if (extra !== undefined) throw new InvalidInputError(field, text, accepted);
  let prefixLength: number;
  try {
    checkAddress(field, address, version);
    prefixLength = length === undefined ? maximum : checkPrefixLength(field, length, version);
  } catch {
    throw new InvalidInputError(field, text, accepted);
  }
  if (prefixLength === 0) return { length: 0 };
  // The kernel refuses a destination with host bits set (EINVAL): say which network was meant.
  const network = networkAddress(address, prefixLength);
  if (network !== ipToBytes(address).toString('hex')) {
    const meant = `${bytesToIp(Buffer.from(network, 'hex'))}/${prefixLength}`;
    throw new InvalidInputError(field, text, `a network address with no host bits set, such as "${meant}"`);
  }
  return { destination: address, length: prefixLength };
}

/** Kata's list_routes prints the source as "ADDRESS/PREFIX"; a full-length prefix is the same preferred source. */
function preferredSource(field: string, text: string, version: IpVersion): string | undefined {
  if (text === '') return undefined;
  const [address = '', length] = text.split('/');
  const maximum = String(version === 4 ? 32 : 128);
  if (length !== undefined && length !== maximum) {
    throw new InvalidInputError(
      field,
      text,
      `"" or an IPv${version} address (a preferred source; source prefixes are not supported)`,
    );
  }
  return checkAddress(field, address, version);
}

function routeUpdateOf(message: Route, field: string): RouteUpdate {
  const version = versionOf(`${field}.family`, message.family, [message.dest, message.gateway, message.source]);
  const { destination, length } = splitDestination(`${field}.dest`, message.dest, version);
  if (message.scope > 255)
    throw new InvalidInputError(
      `${field}.scope`,
      message.scope,
      'a route scope 0-255 (0 universe, 253 link, 254 host)',
    );
  return {
    version,
    destination,
    destinationLength: length,
    gateway: message.gateway ? checkAddress(`${field}.gateway`, message.gateway, version) : undefined,
    device: checkLinkName(`${field}.device`, message.device),
    source: preferredSource(`${field}.source`, message.source, version),
    scope: message.scope,
    flags: message.flags,
    mtu: checkMtu(`${field}.mtu`, message.mtu),
  };
}

export function routeUpdatesOf(routes: readonly Route[], field = 'routes.Routes'): RouteUpdate[] {
  const updates = routes.map((route, index) => routeUpdateOf(route, `${field}[${index}]`));
  const seen = new Map<string, number>();
  updates.forEach((route, index) => {
    const key = [route.version, route.destination, route.destinationLength, route.device, route.gateway].join('|');
    const earlier = seen.get(key);
    if (earlier !== undefined) {
      throw new InvalidInputError(
        `${field}[${index}]`,
        routes[index]?.dest || 'default',
        `a route not already given in ${field}[${earlier}]`,
      );
    }
    seen.set(key, index);
  });
  return updates;
}

function neighbourAdditionOf(message: ARPNeighbor, field: string): NeighbourAddition {
  const target = message.toIPAddress;
  if (!target) throw new InvalidInputError(`${field}.toIPAddress`, undefined, 'an IPAddress');
  const version = versionOf(`${field}.toIPAddress.family`, target.family, [target.address]);
  // Kata's agent sets the state given (a gateway neighbour comes REACHABLE, 0x02) and makes 0 permanent.
  if (!Number.isInteger(message.state) || message.state < 0 || message.state > NUD_ALL) {
    throw new InvalidInputError(
      `${field}.state`,
      message.state,
      `0 (permanent) or NUD_* state bits 1-${NUD_ALL} (0x02 NUD_REACHABLE, 0x80 NUD_PERMANENT...)`,
    );
  }
  if (message.flags < 0 || message.flags > 0xff)
    throw new InvalidInputError(`${field}.flags`, message.flags, 'neighbour flags 0-255 (NTF_*)');
  return {
    version,
    destination: checkAddress(`${field}.toIPAddress.address`, target.address, version),
    device: checkLinkName(`${field}.device`, message.device),
    linkLayerAddress: message.lladdr ? checkMac(`${field}.lladdr`, message.lladdr) : undefined,
    state: message.state === 0 ? NUD_PERMANENT : message.state,
    flags: message.flags,
  };
}

export function neighbourAdditionsOf(
  neighbours: readonly ARPNeighbor[],
  field = 'neighbors.ARPNeighbors',
): NeighbourAddition[] {
  return neighbours.map((neighbour, index) => neighbourAdditionOf(neighbour, `${field}[${index}]`));
}
