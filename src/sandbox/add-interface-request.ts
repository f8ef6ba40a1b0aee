/**
 * What an add-iface Interface asks for, read as Kata reads it (Sandbox.AddInterface): `name` names the
 * link in the pod namespace and the guest NIC, `type` is the endpoint kind, and with `type: "tap"`
 * vcnet makes the host tap itself as `tap<N>_kata` (the operator plugs that into a bridge). vcnet's
 * seed-era form keeps working: `device` names the pod link and `name` only the guest NIC, unless
 * `device` names no pod link and `name` does (Kata's users' form: `device` is unused there).
 *
 * Pure: it decides from the parsed message, the pod namespace's interfaces and the sandbox's
 * endpoints, so every refusal happens before anything is made.
 */
import type { Interface } from '../agent/generated/types_pb.js';
import { interfaceUpdateOf } from '../agent/network-request.js';
import { InvalidInputError, VcnetError } from '../errors.js';
import { HardwareType, InterfaceFlag } from '../netlink/codec/link/message.js';
import { checkLinkName } from '../netlink/link-name.js';
import { pastedCommandIn } from '../netns/held-device-fds.js';
import { classifyInterface, loopbackRefused, vhostUserSocketCandidates } from '../network/endpoint/create-endpoint.js';
import { isLoopbackAddress } from '../network/guest.js';
import { checkNotVcnetDevice, isVcnetDevice } from '../network/link-name.js';
import { isUnfinished } from '../network/model/plumbing-context.js';
import { ENDPOINT_TYPES, type EndpointType, type NetworkInfo } from '../network/network-info.js';
import { stateDirectoryFlag } from '../network/state/default-directories.js';
import { shellWord } from '../shell-word.js';

/** What an existing endpoint of the sandbox looks like to the checks here. */
export interface ExistingEndpoint {
  name: string;
  hardwareAddress: string;
  properties: { link: { name: string } };
  /** `pending` while the attach that made it has not finished (its add-iface was killed part-way). */
  plumbing?: { model?: string } | undefined;
}

/** The sandbox an add-iface request is for, named in the hint of an interface it already has. */
export interface AddInterfaceSandbox {
  id: string;
  stateDirectory: string;
  namespacePath: string;
  /**
   * Where the namespace was reached (Network.reachedAt), when not at namespacePath: the holder's path
   * once the recorded one is gone or names another namespace. What the hints' ip commands name.
   */
  reachedAt?: string;
  /**
   * The sandbox's endpoints plugged by an add-iface (or a `vcnet watch`, `by`) that waits (or waited)
   * for the guest without the lock, and whether that command still runs.
   */
  guestPending?: ReadonlyArray<{
    name: string;
    running: boolean;
    by: 'add-iface' | 'watch';
    /** Set when `running` is a guess (that command's PID namespace is out of sight): what a note says of it (guessedWords). */
    guessed?: string;
  }>;
}

/** How far an interface the sandbox already has got: attached, half-attached, or plugged and waiting for the guest. */
export type AlreadyAddedStage = 'added' | 'half-added' | 'guest-waiting' | 'guest-stopped';

/**
 * The interface add-iface is asked for is already the sandbox's, made from the same link: an
 * add-iface killed after its attach (while it configured the guest) left it added, and running it
 * again cannot add it twice. Not bad input: the request is right, the sandbox already has it.
 */
export class InterfaceAlreadyAddedError extends VcnetError {
  static override readonly errorName: string = 'InterfaceAlreadyAddedError';
  constructor(
    guestName: string,
    device: string,
    sandbox: AddInterfaceSandbox | undefined,
    stage: AlreadyAddedStage,
    /** For the guest-* stages: the command that plugged it and waits for the guest. */
    pluggedBy: 'add-iface' | 'watch' = 'add-iface',
    /** For the guest-* stages, when whether that command runs is a guess: what is said of it (guessedWords). */
    guessed?: string,
  ) {
    const guess = guessed === undefined ? '' : ` (${guessed})`;
    const plugger = pluggedBy === 'watch' ? '`vcnet watch`' : 'add-iface';
    const id = sandbox ? shellWord(sandbox.id) : 'SANDBOX';
    const flag = sandbox ? stateDirectoryFlag(sandbox.stateDirectory) : '';
    const from = device === guestName ? '' : ` (from ${device})`;
    const configureOrRemove = `\`vcnet configure-guest --sandbox ${id}${flag}\` tells the guest its configuration again; or \`vcnet del-iface ${id} FILE${flag}\` (FILE: {"name":"${guestName}"}), then add-iface again`;
    const messages: Record<AlreadyAddedStage, string> = {
      'half-added': `interface ${guestName}${from} is already in sandbox ${sandbox?.id ?? ''}, half-added: the add-iface that began it did not finish (killed part-way)`,
      added: `interface ${guestName}${from} is already added to sandbox ${sandbox?.id ?? ''}`,
      'guest-waiting': `interface ${guestName}${from} is already added to sandbox ${sandbox?.id ?? ''}: the ${plugger} that added it is still waiting for the guest to configure it${guess}`,
      'guest-stopped': `interface ${guestName}${from} is already added to sandbox ${sandbox?.id ?? ''}, its NIC plugged: the ${plugger} that added it was stopped while it waited for the guest to configure it${guess}`,
    };
    const hints: Record<AlreadyAddedStage, string> = {
      'half-added': `\`vcnet gc --netns ${sandbox ? shellWord(sandbox.namespacePath) : 'PATH'}${flag}\` undoes what that add-iface made (the rest of the sandbox stays), then run add-iface again`,
      added: `an add-iface killed after the NIC was attached (while it configured the guest) leaves it added: ${configureOrRemove}`,
      'guest-waiting': `wait for that ${plugger} to finish (\`vcnet list\` shows the interface as waiting for the guest until then); it undoes the interface itself if the guest fails`,
      'guest-stopped': configureOrRemove,
    };
    super('VCNET_INTERFACE_ALREADY_ADDED', messages[stage], { value: guestName, hint: hints[stage] });
  }
}

export interface AddInterfaceRequest {
  /** The pod namespace interface, as the endpoint will be made from it (requested addresses and MTU applied). */
  info: NetworkInfo;
  /** The NIC's name in the guest. */
  guestName: string;
  /** The type the caller gave (veth and device read as "virtual"), checked against the link's kind. */
  requestedType?: EndpointType;
  /**
   * The type the caller gave when the link has a vhost-user socket and is made vhost-user instead:
   * Kata looks for the socket before it reads type (network_linux.go addSingleEndpoint).
   */
  typeOverridden?: string;
  /**
   * The `device` given, when it names no pod link while `name` does: passed over, as Kata reads only
   * `name` (its users often write the host side's name there).
   */
  deviceIgnored?: string;
  /** The link the request names ('' for type "tap": there is none until vcnet makes tap<N>_kata). */
  podDevice: string;
}

/**
 * A requested endpoint type that the link's kind does not allow. Worded as Kata's getLinkByName
 * words it ("Incorrect link type %s, expecting %s"): the link's own type first, then the one asked for.
 */
export class IncorrectLinkTypeError extends InvalidInputError {
  static override readonly errorName: string = 'IncorrectLinkTypeError';
  /** `lookedFor`: what would have made the link the type requested (the vhost-user sockets looked for). */
  constructor(device: string, actual: string, kind: string, requested: string, lookedFor?: string) {
    super(
      'interface.type',
      requested,
      `"${actual}"${actual === 'virtual' ? ' (or "veth")' : ''}, the endpoint type of ${device} (a ${kind} link), or leave type out`,
      `${device} is a ${kind} link, which becomes a "${actual}" endpoint${lookedFor ? `; ${lookedFor}` : ''}`,
    );
    this.message = `Incorrect link type ${kind}, expecting ${requested}: ${this.message}`;
  }
}

function requestedTypeOf(type: string): EndpointType | undefined {
  if (!type) return undefined;
  // "veth" is what people write; Kata's endpoint type for it is "virtual". "device" is netlink's
  // type for a link with no kind (an mlx5 sub-function...), which Kata also makes a veth endpoint.
  const requested = type === 'veth' || type === 'device' ? 'virtual' : type;
  if (!(ENDPOINT_TYPES as readonly string[]).includes(requested)) {
    throw new InvalidInputError(
      'interface.type',
      type,
      `${ENDPOINT_TYPES.join(', ')} (and veth or device, read as virtual)`,
      'or leave type out to use the kind of the device in the namespace',
    );
  }
  return requested as EndpointType;
}

export function resolveAddInterfaceRequest(
  message: Interface,
  podInterfaces: readonly NetworkInfo[],
  existing: readonly ExistingEndpoint[],
  options: { vhostUserStorePath?: string; loopbacks?: readonly string[]; sandbox?: AddInterfaceSandbox } = {},
): AddInterfaceRequest {
  let requestedType = requestedTypeOf(message.type);
  let typeOverridden: string | undefined;
  // A hint's ip command, pasted on the host, must act in the pod's namespace (a bare `ip` would change
  // a host link of that name); the device name, which the pod's owner picks, is one quoted word.
  // Reached through another process's socket or tap, no command enters it: the hint says so (unenterable).
  const podNamespace = options.sandbox?.reachedAt ?? options.sandbox?.namespacePath;
  const podIp = podNamespace === undefined ? undefined : pastedCommandIn(podNamespace, 'ip');
  const podIpCommand = (args: string): string =>
    podIp === undefined ? `\`ip ${args}\` in the pod namespace` : `\`${podIp.command} ${args}\``;
  const unenterable = podIp?.unenterable === undefined ? '' : `; ${podIp.unenterable}`;
  if (message.device) checkLinkName('interface.device', message.device);
  // Kata reads only `name` (generateNetInfo); its users often put the host side's name in `device`
  // ("tap1", "veth-test"). vcnet's seed-era form reads `device` as the pod link, so `device` is
  // passed over only when it names no pod link and `name` does, as Kata would take the request.
  const deviceIgnored =
    message.device &&
    message.name &&
    message.device !== message.name &&
    requestedType !== 'tap' &&
    !podInterfaces.some((entry) => entry.link.name === message.device) &&
    podInterfaces.some((entry) => entry.link.name === message.name)
      ? message.device
      : undefined;
  const podLinkNamedByDevice = Boolean(message.device) && deviceIgnored === undefined;
  const deviceField = podLinkNamedByDevice ? 'interface.device' : 'interface.name';
  const device = podLinkNamedByDevice ? message.device : message.name;
  if (!device) {
    throw new InvalidInputError(
      'interface.name',
      // Go's zero value: the key was left out (or given empty), not a name someone typed.
      message.name || undefined,
      'the name of the link in the pod namespace (and of the guest NIC); with type "tap", the guest NIC name',
    );
  }
  const guestName = checkLinkName('interface.name', message.name || message.device);
  const named = existing.find((endpoint) => endpoint.name === guestName);
  if (named) {
    // The same request again (same link, and MAC when one is given): the interface is already added.
    const link = requestedType === 'tap' ? guestName : device;
    if (
      named.properties.link.name === link &&
      (!message.hwAddr || message.hwAddr.toLowerCase() === named.hardwareAddress.toLowerCase())
    ) {
      const waiting = options.sandbox?.guestPending?.find((entry) => entry.name === guestName);
      const stage: AlreadyAddedStage = isUnfinished(named.plumbing)
        ? 'half-added'
        : waiting
          ? waiting.running
            ? 'guest-waiting'
            : 'guest-stopped'
          : 'added';
      throw new InterfaceAlreadyAddedError(guestName, link, options.sandbox, stage, waiting?.by, waiting?.guessed);
    }
    throw new InvalidInputError('interface.name', guestName, 'a name no other interface of the sandbox has');
  }

  let info: NetworkInfo;
  if (requestedType === 'tap') {
    info = {
      link: {
        index: 0,
        // The tap endpoint's link name is its guest name; the host tap is tap<N>_kata.
        name: guestName,
        type: HardwareType.ETHER,
        // Only IFF_NOARP travels in raw_flags (Kata's agent sets it on the guest NIC).
        flags: message.rawFlags & InterfaceFlag.NOARP,
        mtu: Number(message.mtu) || 1500,
        operationalState: 'down',
        group: 0,
        ...(message.hwAddr ? { address: message.hwAddr.toLowerCase() } : {}),
      },
      addresses: [],
      routes: [],
      neighbours: [],
    };
  } else {
    if (existing.some((endpoint) => endpoint.properties.link.name === device)) {
      throw new InvalidInputError(deviceField, device, 'a device the sandbox does not use yet');
    }
    const scanned = podInterfaces.find((entry) => entry.link.name === device);
    if (!scanned && options.loopbacks?.includes(device)) throw loopbackRefused(device);
    if (!scanned) {
      throw new InvalidInputError(
        deviceField,
        device,
        `a link in the pod namespace (${
          podInterfaces
            .filter(
              (entry) =>
                !isVcnetDevice(entry.link) && !existing.some((e) => e.properties.link.name === entry.link.name),
            )
            .map((entry) => entry.link.name)
            .join(', ') || 'none free'
        })`,
        'create the link first (CNI), or use type "tap" to have vcnet create a tap',
      );
    }
    checkNotVcnetDevice(deviceField, scanned.link);
    info = scanned;
  }

  const update = interfaceUpdateOf({ ...message, hwAddr: message.hwAddr || info.link.address || '' }, 'interface');
  if (
    update.hardwareAddress &&
    info.link.address &&
    requestedType !== 'tap' &&
    update.hardwareAddress !== info.link.address
  ) {
    throw new InvalidInputError(
      'interface.hwAddr',
      message.hwAddr,
      `the MAC of ${device} (${info.link.address}), which the guest NIC must use`,
    );
  }
  const sameMac = existing.find(
    (endpoint) => endpoint.hardwareAddress && endpoint.hardwareAddress === update.hardwareAddress,
  );
  if (sameMac) {
    // Kata's agent finds a NIC by its MAC: two with one MAC would get each other's settings.
    throw new InvalidInputError(
      'interface.hwAddr',
      update.hardwareAddress,
      `a MAC no other interface of the sandbox has (${device} and the attached ${sameMac.properties.link.name} have the same MAC ${update.hardwareAddress})`,
      requestedType === 'tap'
        ? // vcnet makes the tap (tap<N>_kata): there is no pod link to change, only the request's hwAddr.
          `give ${device} another hwAddr and add it again; nothing was changed`
        : `give ${device} a MAC of its own (${podIpCommand(`link set ${shellWord(device)} address MAC`)}) and add it again; nothing was changed${unenterable}`,
    );
  }
  // The guest NIC would silently not get it (generateGuestNetwork skips loopback addresses, as Kata's
  // startup does, at every push): refused, where Kata's add-iface would send it as given.
  const loopback = update.addresses.findIndex((address) => isLoopbackAddress(address.address));
  if (loopback >= 0) {
    throw new InvalidInputError(
      `interface.IPAddresses[${loopback}].address`,
      message.IPAddresses[loopback]?.address,
      'an address that is not a loopback one (127.0.0.0/8, ::1)',
      "the guest's lo has its loopback addresses, and vcnet gives no NIC one (it would be left out at every configuration of the guest); leave it out. Nothing was changed",
    );
  }
  // Requested addresses replace what the device has, for the guest.
  if (message.IPAddresses.length > 0) {
    info = {
      ...info,
      addresses: update.addresses.map((address) => ({
        index: info.link.index,
        family: address.version === 4 ? 2 : 10,
        address: address.address,
        prefixLength: address.prefixLength,
        scope: 0,
        flags: 0,
      })),
    };
  }
  // The host tap (or macvtap) and the pod link carry the pod link's MTU (plan-attach.ts podLinkMtu):
  // a larger guest MTU sends frames they drop. With type "tap" the tap vcnet makes takes `mtu` itself.
  if (update.mtu && requestedType !== 'tap' && update.mtu > info.link.mtu) {
    throw new InvalidInputError(
      'interface.mtu',
      update.mtu,
      `at most ${info.link.mtu}, the MTU of the pod link ${device}, or 0 to take it`,
      `give the guest NIC an mtu of at most ${info.link.mtu}, or raise ${device}'s MTU first (${podIpCommand(`link set ${shellWord(device)} mtu ${update.mtu}`)}) and add it again; nothing was changed${unenterable}`,
    );
  }
  if (update.mtu) info = { ...info, link: { ...info.link, mtu: update.mtu } };
  if (requestedType && requestedType !== 'tap') {
    // By the addresses the guest NIC gets (the requested ones replaced the link's above), as Kata's
    // add-iface looks for the vhost-user socket by the Interface's IPAddresses (generateNetInfo).
    const actual = classifyInterface(info, {
      ...(options.vhostUserStorePath ? { vhostUserStorePath: options.vhostUserStorePath } : {}),
    });
    // Kata looks for a vhost-user socket before it reads type: a link with one is vhost-user whatever type says.
    if (actual === 'vhost-user' && requestedType !== 'vhost-user') {
      typeOverridden = message.type;
      requestedType = 'vhost-user';
    } else if (actual !== requestedType) {
      throw new IncorrectLinkTypeError(
        device,
        actual,
        info.link.kind ?? 'device',
        message.type,
        requestedType === 'vhost-user' ? vhostUserSocketsLookedFor(info, options.vhostUserStorePath) : undefined,
      );
    }
  }
  // Kata sends the caller's Interface to the agent, so its IFF_NOARP reaches the guest NIC.
  if (update.noArp) info = { ...info, link: { ...info.link, flags: info.link.flags | InterfaceFlag.NOARP } };
  return {
    info,
    guestName,
    ...(requestedType ? { requestedType } : {}),
    ...(typeOverridden !== undefined ? { typeOverridden } : {}),
    ...(deviceIgnored !== undefined ? { deviceIgnored } : {}),
    podDevice: requestedType === 'tap' ? '' : device,
  };
}

/** What add-iface looked for when "vhost-user" was asked of a link without a socket (Kata's store layout). */
function vhostUserSocketsLookedFor(info: NetworkInfo, storePath: string | undefined): string {
  const candidates = vhostUserSocketCandidates(info, storePath);
  if (candidates.length === 0)
    return `a vhost-user socket is looked for by the guest NIC's addresses (IPAddresses, else the link's), and ${info.link.name} has none`;
  return `it is vhost-user only when one of these sockets exists: ${candidates.join(', ')} (the directory is the sandbox's: attach's --vhost-user-store, /tmp by default)`;
}
