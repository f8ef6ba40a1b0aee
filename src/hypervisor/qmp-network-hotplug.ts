/**
 * NIC hot-plug and unplug on a running QEMU through QMP.
 *
 * Plug: `netdev_add` (type tap, by its queue fds or by interface name), then `device_add`
 * (virtio-net-pci). If device_add fails, the netdev just added is deleted again, so a failed plug
 * leaves nothing behind.
 *
 * Unplug: `device_del`, wait (bounded) for DEVICE_DELETED, then `netdev_del`. On the i440fx "pc"
 * machine a PCI unplug is an ACPI request: QEMU only removes the device once the guest OS ejects
 * it. A paused guest, a guest still in firmware, or one without ACPI PCI hot-plug never does; QEMU
 * 7.2 then accepts device_del, sends no event, keeps the device, and answers a second device_del
 * with "Device <id> is already in the process of unplug". So the wait ends in
 * DeviceUnplugTimeoutError and the netdev is left alone (deleting it would cut the NIC off while the
 * guest still has it).
 *
 * Placement: the functions here put NICs on the root bus `pci.0` unless told a bus (the i440fx
 * machine's only bus; its slots are hot-pluggable, q35's pcie.0 is not; QemuNetworkHotplugTarget
 * finds a root port on q35). QEMU picks the first free slot unless the device has a pciAddress. With
 * -nodefaults slots 0 (host bridge) and 1 (PIIX3) are taken and the first NIC lands in slot 2; with
 * the default VGA it lands in slot 3.
 *
 * fds: a device with queue fds (and vhost fds) hands each to QEMU first with `getfd`, the fd attached
 * as SCM_RIGHTS ancillary data (QmpClient sends such a command through the native shim), and
 * netdev_add then names them (`fd=`/`fds=`, `vhostfds=`); if netdev_add fails, the names passed are
 * closed again (`closefd`). A bare number as fd= would not do: QEMU reads it as one of its own fds.
 * A device without fds is opened by interface name (`ifname=`), which has a consequence for the
 * caller: a single-queue tap whose queue fd is still open anywhere is busy (netdev_add fails with
 * EBUSY), and a multi-queue one would get extra queues that nobody reads. So before such a hot-plug
 * the tap must be persistent and its fds closed.
 */
import { numberOption, optionsArgument, stringArgument, stringOption } from '../arguments.js';
import { InvalidInputError } from '../errors.js';
import { testSeam, waitThroughSeam } from '../test-seams.js';
import type { NetworkDevice } from './device.js';
import { normalizeMac, parsePciAddress, validateNetworkDevice } from './device.js';
import {
  DeviceNotHotpluggableError,
  DeviceUnplugTimeoutError,
  HotplugCapacityError,
  NetworkHotplugError,
  QmpCommandError,
  QmpTimeoutError,
  UnsupportedByHypervisorError,
} from './errors.js';
import { qemuNetdevId, type VfioPciDevice, validateVfioPciDevice } from './qemu.js';
import {
  deviceSlot,
  foreignBridges,
  hexSlot,
  hotplugPorts,
  nextPortIndex,
  PCI_BRIDGE_NICS,
  pciBridgeArguments,
  pciPathInTree,
  type QemuMachineType,
  type QueryPciBus,
  queryMachineType,
  queryPci,
  ROOT_PORT_ID_PREFIX,
  rootPortArguments,
  rootPortPlace,
} from './qemu-hotplug-ports.js';
import { QmpClient } from './qmp.js';

/**
 * Options of `hotplugNetworkDevice`: where to plug the NIC (bus and address) and how long each QMP command
 * may take.
 */
export interface HotplugOptions {
  /** Bus to plug into. Default pci.0 (i440fx root bus). */
  bus?: string;
  /** Address on that bus, QEMU syntax ("0x0": the one slot behind a PCIe root port). */
  addr?: string;
  /** Per-command timeout. */
  commandTimeoutMs?: number;
}

/** A QMP wait a caller may give: NaN or "soon" would never time out. */
const QMP_TIMEOUT_RANGE = { min: 1, max: 3_600_000, integer: false, unit: 'milliseconds' } as const;

function hotplugOptions(given: HotplugOptions): HotplugOptions {
  const options = optionsArgument(given, 'options', ['bus', 'addr', 'commandTimeoutMs']);
  stringOption(options.bus, 'bus', 'a QEMU bus id, such as pci.0');
  stringOption(options.addr, 'addr', 'a slot on that bus in QEMU syntax, such as 0x0');
  numberOption(options.commandTimeoutMs, 'commandTimeoutMs', QMP_TIMEOUT_RANGE);
  return options;
}

function checkTargetOptions(
  given: HotplugOptions & UnplugOptions & { machine?: string; connectTimeoutMs?: number },
  known: readonly string[],
): void {
  const options = optionsArgument(given, 'options', known as readonly (keyof typeof given & string)[]);
  stringOption(options.bus, 'bus', 'a QEMU bus id, such as pci.0');
  stringOption(options.addr, 'addr', 'a slot on that bus in QEMU syntax, such as 0x0');
  for (const key of ['commandTimeoutMs', 'timeoutMs', 'connectTimeoutMs'] as const) {
    numberOption(options[key], key, QMP_TIMEOUT_RANGE);
  }
  if (options.machine !== undefined && options.machine !== 'pc' && options.machine !== 'q35') {
    throw new InvalidInputError('machine', options.machine, 'pc or q35');
  }
}

/**
 * Options of `unplugNetworkDevice`: how long the guest gets to release the NIC, and each QMP command's bound
 * (milliseconds).
 */
export interface UnplugOptions {
  /** How long the guest gets to release the device. Default 10 s. */
  timeoutMs?: number;
  commandTimeoutMs?: number;
}

/**
 * A NIC `hotplugNetworkDevice` added: its QEMU device and netdev ids, and the PCI path the guest finds it at
 * (Kata's form).
 */
export interface HotpluggedNetworkDevice {
  deviceId: string;
  netdevId: string;
  /** Kata-style PCI path: two hex digits per bus level ("02" = slot 2 of the root bus). */
  pciPath?: string;
}

/** The two QMP commands that hot-plug a NIC, `netdev_add` then `device_add`, as their argument objects. */
export interface NetworkHotplugCommands {
  netdevAdd: Record<string, unknown>;
  deviceAdd: Record<string, unknown>;
}

const DEFAULT_UNPLUG_TIMEOUT_MS = 10_000;

/**
 * Test seam (never set in production; src/test-seams.ts): given the wait for the guest to release a
 * NIC that the caller asked for (DEFAULT_UNPLUG_TIMEOUT_MS, or add-iface's, del-iface's and the
 * undo's 20 s), returns the one to use, so a test whose paused VM never releases it need not sit out
 * the whole wait. DeviceUnplugTimeoutError quotes the wait used.
 */
const unplugWaitSeam = testSeam<(productMs: number) => number>('unplugWait');

export function setUnplugWaitTestHook(hook: ((productMs: number) => number) | undefined): void {
  unplugWaitSeam.set(hook);
}

/** Names under which the device's fds were handed to QEMU with `getfd`. */
interface PassedFdNames {
  fds: string[];
  vhostFds: string[];
}

function passedFdNames(device: NetworkDevice): PassedFdNames {
  const netdev = qemuNetdevId(device.id);
  return {
    fds: (device.fds ?? []).map((_, i) => `${netdev}-fd${i}`),
    vhostFds: (device.vhostFds ?? []).map((_, i) => `${netdev}-vhostfd${i}`),
  };
}

/** The QMP arguments for netdev_add and device_add (typed as QEMU 7.2's QAPI schema wants them). */
export function networkHotplugCommands(device: NetworkDevice, options: HotplugOptions = {}): NetworkHotplugCommands {
  options = hotplugOptions(options);
  validateNetworkDevice(device);
  if (device.vhostUserSocket !== undefined) {
    throw new UnsupportedByHypervisorError(
      'QEMU hot-plug',
      'vhostUserSocket',
      device.vhostUserSocket,
      'a vhost-user NIC needs a chardev-add and shared guest memory set up at boot',
      'give vhost-user NICs on the command line (qemuNetworkArguments) instead',
    );
  }
  const hasFds = device.fds !== undefined && device.fds.length > 0;
  if (device.tapName === undefined && !hasFds) {
    throw new UnsupportedByHypervisorError(
      'QEMU hot-plug',
      'tapName',
      device.tapName,
      'a NIC needs a tap by name or its queue fds',
      'give the device its tapName or the fds of its queues',
    );
  }
  const names = passedFdNames(device);
  const netdevAdd: Record<string, unknown> = { type: 'tap', id: qemuNetdevId(device.id) };
  if (hasFds) {
    // The fds reach QEMU first with getfd (SCM_RIGHTS); netdev_add refers to them by name.
    // QEMU pairs fd with vhostfd and fds with vhostfds: "vhostfds= ... are invalid with fd=".
    if (names.fds.length === 1) {
      netdevAdd.fd = names.fds[0];
      if (names.vhostFds.length > 0) Object.assign(netdevAdd, { vhost: true, vhostfd: names.vhostFds[0] });
    } else {
      netdevAdd.fds = names.fds.join(':');
      if (names.vhostFds.length > 0) Object.assign(netdevAdd, { vhost: true, vhostfds: names.vhostFds.join(':') });
    }
  } else {
    Object.assign(netdevAdd, { ifname: device.tapName, script: 'no', downscript: 'no' });
    if (device.queues > 1) netdevAdd.queues = device.queues;
  }
  const deviceAdd: Record<string, unknown> = {
    driver: 'virtio-net-pci',
    id: device.id,
    netdev: qemuNetdevId(device.id),
    mac: normalizeMac(device.guestMac),
    romfile: '',
    bus: options.bus ?? 'pci.0',
  };
  if (device.queues > 1) {
    deviceAdd.mq = true;
    deviceAdd.vectors = 2 * device.queues + 2;
  }
  if (device.mtu !== undefined) deviceAdd.host_mtu = device.mtu;
  if (device.pciAddress !== undefined) {
    const { slot, function: fn } = parsePciAddress(device.pciAddress);
    deviceAdd.addr = `0x${slot.toString(16)}.${fn}`;
  } else if (options.addr !== undefined) {
    deviceAdd.addr = options.addr;
  }
  return { netdevAdd, deviceAdd };
}

/** Adds the NIC to a running VM; on device_add failure removes the netdev again (NetworkHotplugError). */
export async function hotplugNetworkDevice(
  qmp: QmpClient,
  device: NetworkDevice,
  options: HotplugOptions = {},
): Promise<HotpluggedNetworkDevice> {
  options = hotplugOptions(options);
  const { netdevAdd, deviceAdd } = networkHotplugCommands(device, options);
  const commandOptions = { timeoutMs: options.commandTimeoutMs };
  const netdevId = String(netdevAdd.id);
  const names = passedFdNames(device);
  const passed: string[] = [];
  const releasePassed = async () => {
    for (const fdname of passed) await qmp.execute('closefd', { fdname }, commandOptions).catch(() => undefined);
  };
  try {
    const handOver: Array<[string, number]> = [
      ...(device.fds ?? []).map((fd, i): [string, number] => [names.fds[i]!, fd]),
      ...(device.vhostFds ?? []).map((fd, i): [string, number] => [names.vhostFds[i]!, fd]),
    ];
    for (const [fdname, fd] of handOver) {
      await qmp.execute('getfd', { fdname }, { ...commandOptions, fds: [fd] });
      passed.push(fdname);
    }
    await qmp.execute('netdev_add', netdevAdd, commandOptions);
  } catch (error) {
    await releasePassed();
    throw new NetworkHotplugError(device.id, 'netdev_add', true, error);
  }
  try {
    await qmp.execute('device_add', deviceAdd, commandOptions);
  } catch (error) {
    let rolledBack = true;
    try {
      await qmp.execute('netdev_del', { id: netdevId }, commandOptions);
    } catch {
      rolledBack = false;
    }
    throw new NetworkHotplugError(device.id, 'device_add', rolledBack, error);
  }
  const pciPath = await rootBusPciPath(qmp, device.id, options.commandTimeoutMs);
  return pciPath === undefined ? { deviceId: device.id, netdevId } : { deviceId: device.id, netdevId, pciPath };
}

/**
 * Where QEMU put the device on the root bus, as the guest agent expects a PCI path. Best effort:
 * the NIC is plugged by now, and failing the whole hot-plug over a lookup would leave it orphaned.
 */
async function rootBusPciPath(qmp: QmpClient, deviceId: string, timeoutMs?: number): Promise<string | undefined> {
  const buses = await queryPci(qmp, timeoutMs).catch((): QueryPciBus[] => []);
  // Below a root port or bridge too (q35): "<port slot>/<device slot>".
  return pciPathInTree(buses.find((bus) => bus.bus === 0)?.devices ?? [], deviceId);
}

/** The device_add arguments for a VFIO PCI function (QAPI: driver, id, host, bus, addr). */
function vfioDeviceAddArguments(device: VfioPciDevice, options: HotplugOptions = {}): Record<string, unknown> {
  options = hotplugOptions(options);
  validateVfioPciDevice(device);
  return {
    driver: 'vfio-pci',
    id: device.id,
    host: device.hostAddress,
    bus: options.bus ?? 'pci.0',
    ...(options.addr !== undefined ? { addr: options.addr } : {}),
  };
}

/** Plugs a physical NIC (bound to vfio-pci already) into a running VM; no netdev, no fds. */
export async function hotplugVfioDevice(
  qmp: QmpClient,
  device: VfioPciDevice,
  options: HotplugOptions = {},
): Promise<{ deviceId: string; pciPath?: string }> {
  options = hotplugOptions(options);
  try {
    await qmp.execute('device_add', vfioDeviceAddArguments(device, options), { timeoutMs: options.commandTimeoutMs });
  } catch (error) {
    throw new NetworkHotplugError(device.id, 'device_add', true, error);
  }
  const pciPath = await rootBusPciPath(qmp, device.id, options.commandTimeoutMs);
  return pciPath === undefined ? { deviceId: device.id } : { deviceId: device.id, pciPath };
}

/**
 * The hot-plug interface the network layer calls (HotplugTarget in src/network/endpoint/endpoint.ts),
 * bound to one QMP connection.
 *
 * Where a device goes, first match wins: `bus` when given; vcnet's ports of `machine` when given
 * (qemuHotplugPortArguments); otherwise QEMU is asked its machine type once (`qom-get /machine type`):
 * on q35 the device goes into a free vcnet root port; on pc onto the root bus pci.0 (i440fx takes
 * hot-plug there) and, once its slots are all taken, into vcnet's pci-bridges; on a machine QEMU does
 * not name, onto pci.0. Asking instead of recording: `vcnet attach --qmp` records only the socket of a
 * VM someone else starts, often before it boots, and the running VM knows its machine type and which
 * ports are free better than any record could.
 */
export class QemuNetworkHotplugTarget {
  private detectedMachine: Promise<QemuMachineType | undefined> | undefined;

  constructor(
    private readonly qmp: QmpClient,
    private readonly options: HotplugOptions &
      UnplugOptions & {
        /** Plug into vcnet's hot-plug ports (qemuHotplugPortArguments) of this machine type, not pci.0. */
        machine?: QemuMachineType;
      } = {},
  ) {
    checkTargetOptions(options, ['bus', 'addr', 'commandTimeoutMs', 'timeoutMs', 'machine']);
  }

  /** The target's options a plug takes (the plug functions refuse keys they do not use). */
  private plugOptions(): HotplugOptions {
    const { bus, addr, commandTimeoutMs } = this.options;
    return {
      ...(bus !== undefined ? { bus } : {}),
      ...(addr !== undefined ? { addr } : {}),
      ...(commandTimeoutMs !== undefined ? { commandTimeoutMs } : {}),
    };
  }

  /**
   * Where the device may go: `ports` of a machine (vcnet's), after pci.0 when `rootBusFirst`; or
   * undefined for options.bus / pci.0 alone.
   */
  private async placement(): Promise<{ machine: QemuMachineType; rootBusFirst: boolean } | undefined> {
    if (this.options.bus) return undefined;
    if (this.options.machine) return { machine: this.options.machine, rootBusFirst: false };
    this.detectedMachine ??= queryMachineType(this.qmp, this.options.commandTimeoutMs);
    const machine = await this.detectedMachine;
    if (machine === undefined) return undefined;
    // pc: pci.0 as before (its PCI paths stay "05"), vcnet's bridges once it is full, as Kata's
    // runtime plugs into its bridges.
    return { machine, rootBusFirst: machine === 'pc' };
  }

  async hotplugNetworkDevice(device: NetworkDevice): Promise<HotpluggedNetworkDevice> {
    const placement = await this.placement();
    if (!placement) return hotplugNetworkDevice(this.qmp, device, this.plugOptions());
    return this.plugIntoPort(placement, device.id, (where) =>
      hotplugNetworkDevice(this.qmp, device, { ...this.plugOptions(), ...where }),
    );
  }

  /**
   * As HotplugTarget asks: resolves once the NIC is not in the VM, also when it was not there (a
   * NIC the guest released after an unplug timed out); its netdev, orphaned then, goes too.
   */
  async unplugNetworkDevice(deviceId: string): Promise<void> {
    try {
      const { timeoutMs, commandTimeoutMs } = this.options;
      // The exported function removes an orphaned netdev itself: DeviceNotFound means neither is there.
      await unplugNetworkDevice(this.qmp, deviceId, {
        ...(timeoutMs !== undefined ? { timeoutMs } : {}),
        ...(commandTimeoutMs !== undefined ? { commandTimeoutMs } : {}),
      });
    } catch (error) {
      if (!(error instanceof QmpCommandError && error.errorClass === 'DeviceNotFound')) throw error;
    }
  }

  async hotplugVfioDevice(device: VfioPciDevice): Promise<{ deviceId: string; pciPath?: string }> {
    const placement = await this.placement();
    if (!placement) return hotplugVfioDevice(this.qmp, device, this.plugOptions());
    return this.plugIntoPort(placement, device.id, (where) =>
      hotplugVfioDevice(this.qmp, device, { ...this.plugOptions(), ...where }),
    );
  }

  private async plugIntoPort<T extends { pciPath?: string }>(
    { machine, rootBusFirst }: { machine: QemuMachineType; rootBusFirst: boolean },
    deviceId: string,
    plug: (placement: { bus: string; addr?: string }) => Promise<T>,
  ): Promise<T> {
    let rootBusFull: unknown;
    if (rootBusFirst) {
      try {
        return await plug({ bus: 'pci.0' });
      } catch (error) {
        if (!refusedForNoSlot(error)) throw error;
        rootBusFull = error;
      }
    }
    const buses = await queryPci(this.qmp, this.options.commandTimeoutMs);
    const ports = hotplugPorts(machine, buses);
    // Bus numbers behind a port exist only once firmware enumerated them, so query-pci cannot say
    // which port is taken: try them in order, a taken one refuses device_add and is skipped.
    for (const port of ports) {
      try {
        const plugged = await plug({
          bus: port.id,
          // A root port has one slot: pinning it makes a taken port refuse instead of QEMU picking another.
          ...(machine === 'q35' ? { addr: '0x0' } : {}),
        });
        const slot = machine === 'q35' ? 0 : await deviceSlot(this.qmp, deviceId, this.options.commandTimeoutMs);
        return slot === undefined ? plugged : { ...plugged, pciPath: `${hexSlot(port.slot)}/${hexSlot(slot)}` };
      } catch (error) {
        if (!refusedForNoSlot(error)) throw error;
      }
    }
    throw noFreePortError(machine, deviceId, ports, foreignBridges(machine, buses), rootBusFull);
  }
}

/** A device_add refused for want of a free slot, with its netdev removed again: the next place may take it. */
function refusedForNoSlot(error: unknown): boolean {
  return (
    error instanceof NetworkHotplugError &&
    error.stage === 'device_add' &&
    error.rolledBack &&
    /slot|not available|occupied|no more|full/i.test(String((error.cause as Error | undefined)?.message))
  );
}

/** What a VM without a free vcnet port has, and what to give it at boot. */
function noFreePortError(
  machine: QemuMachineType,
  deviceId: string,
  ports: ReadonlyArray<{ id: string }>,
  foreign: readonly string[],
  rootBusFull: unknown,
): HotplugCapacityError {
  const own = ports.length > 0 ? `vcnet's ${ports.map((port) => port.id).join(', ')} all taken` : "none of vcnet's";
  const others =
    foreign.length > 0
      ? `; not vcnet's, so left to whoever put them there (Kata's runtime plugs into its own): ${foreign.join(', ')}`
      : '; no other bridge or root port on the root bus';
  const rootBus = rootBusFull === undefined ? '' : 'root bus pci.0 full; ';
  const found = `${machine} machine: ${rootBus}hot-plug ports found: ${own}${others}`;
  // The ports to add are the ones after those the VM has: repeating an id it has makes QEMU refuse to start.
  const next = nextPortIndex(ports);
  const hint =
    machine === 'q35'
      ? `start QEMU with one vcnet root port per device to hot-plug${ports.length > 0 ? ', beside the ones it has' : ''}: ${rootPortArguments(next).join(' ')} (then ${ROOT_PORT_ID_PREFIX}${next + 1} with ${rootPortPlace(next + 1)}, and so on); for a VM Kata starts, see "QEMU q35" in docs/compatibility.md`
      : `start QEMU with a vcnet pci-bridge, which takes ${PCI_BRIDGE_NICS} more NICs: ${pciBridgeArguments(next).join(' ')}${
          ports.length === 0 ? ' (vcnet-bridge1 with chassis_nr=33 for more, and so on)' : ''
        }`;
  return new HotplugCapacityError(deviceId, found, hint, rootBusFull);
}

/**
 * A QemuNetworkHotplugTarget that holds QMP only while it plugs or unplugs a NIC: each operation
 * connects, runs and closes. QEMU serves one QMP client at a time, and add-iface and watch wait up
 * to a minute for the guest agent after a plug: a connection held through that wait made every
 * other QMP user (Kata's runtime, a monitoring tool, a second vcnet command) time out. A rollback
 * that must unplug again connects anew.
 *
 * A caller that has just checked that QEMU greets can hand that connection over (`useConnection`):
 * the operations run on it until `release()`. Between a check that closes and a plug that connects
 * again, another client may take QMP, and the plug then waits for it (holding whatever lock the
 * caller holds); a connection kept from the check has no such gap.
 */
export class QemuHotplugSessions {
  /** The connection useConnection gave, until release(). */
  private held: QmpClient | undefined;

  constructor(
    private readonly socketPath: string,
    private readonly options: ConstructorParameters<typeof QemuNetworkHotplugTarget>[1] & {
      /** Bound on each connect + handshake. Default QmpClient.connect's ($VCNET_QMP_CONNECT_TIMEOUT seconds, else 30 s). */
      connectTimeoutMs?: number;
    } = {},
  ) {
    stringArgument(socketPath, 'socketPath', "the path of QEMU's QMP socket");
    checkTargetOptions(options, ['bus', 'addr', 'commandTimeoutMs', 'timeoutMs', 'machine', 'connectTimeoutMs']);
  }

  /** Runs the plugs and unplugs on `qmp` (greeted, on this socket) until release(), which closes it. */
  useConnection(qmp: QmpClient): this {
    this.held = qmp;
    return this;
  }

  /** Closes the connection useConnection gave, for other clients; later operations connect anew. */
  async release(): Promise<void> {
    const held = this.held;
    this.held = undefined;
    await held?.close();
  }

  private async session<T>(work: (target: QemuNetworkHotplugTarget) => Promise<T>): Promise<T> {
    if (this.held) return work(new QemuNetworkHotplugTarget(this.held, this.options));
    const { connectTimeoutMs } = this.options;
    const qmp = await QmpClient.connect(
      this.socketPath,
      connectTimeoutMs === undefined ? {} : { timeoutMs: connectTimeoutMs },
    );
    try {
      return await work(new QemuNetworkHotplugTarget(qmp, this.options));
    } finally {
      await qmp.close();
    }
  }

  hotplugNetworkDevice(device: NetworkDevice): Promise<HotpluggedNetworkDevice> {
    return this.session((target) => target.hotplugNetworkDevice(device));
  }

  unplugNetworkDevice(deviceId: string): Promise<void> {
    return this.session((target) => target.unplugNetworkDevice(deviceId));
  }

  hotplugVfioDevice(device: VfioPciDevice): Promise<{ deviceId: string; pciPath?: string }> {
    return this.session((target) => target.hotplugVfioDevice(device));
  }
}

/** QEMU's answer to device_del while an earlier one waits for the guest. */
const UNPLUG_PENDING = /already in the process of unplug/i;

/**
 * Removes a NIC plugged by hotplugNetworkDevice (or given on the command line by qemuNetworkArguments).
 * Safe to call again after DeviceUnplugTimeoutError: while the guest has not released the NIC it
 * waits for DEVICE_DELETED again; once it has, it deletes the netdev the timed-out call left.
 * Rejects with QmpCommandError (errorClass DeviceNotFound) for an id with neither device nor netdev, with
 * DeviceNotHotpluggableError for a NIC on a bus without hot-plug (q35's pcie.0), and with
 * DeviceUnplugTimeoutError when the guest does not release the device in time.
 */
export async function unplugNetworkDevice(
  qmp: QmpClient,
  deviceId: string,
  options: UnplugOptions = {},
): Promise<void> {
  stringArgument(deviceId, 'deviceId', 'the id the NIC was plugged with');
  options = optionsArgument(options, 'options', ['timeoutMs', 'commandTimeoutMs']);
  numberOption(options.timeoutMs, 'timeoutMs', QMP_TIMEOUT_RANGE);
  numberOption(options.commandTimeoutMs, 'commandTimeoutMs', QMP_TIMEOUT_RANGE);
  const timeoutMs = waitThroughSeam(unplugWaitSeam, options.timeoutMs ?? DEFAULT_UNPLUG_TIMEOUT_MS);
  const commandOptions = { timeoutMs: options.commandTimeoutMs };
  const stopWaiting = new AbortController();
  // Listen before asking: the event can arrive before device_del's own reply.
  const deleted = qmp.waitForEvent('DEVICE_DELETED', {
    timeoutMs,
    predicate: (event) => event.data?.device === deviceId,
    signal: stopWaiting.signal,
  });
  deleted.catch(() => {}); // handled below; this only keeps an abort from being "unhandled"
  try {
    await qmp.execute('device_del', { id: deviceId }, commandOptions);
  } catch (error) {
    // A retry after an unplug timed out: QEMU still waits for the guest, and so does this call.
    if (!(error instanceof QmpCommandError && UNPLUG_PENDING.test(error.description))) {
      stopWaiting.abort();
      // Said apart: a retry cannot help, only the VM stopping (or a root port at its next boot).
      if (error instanceof QmpCommandError && /does not support hotplugging/i.test(error.description)) {
        throw new DeviceNotHotpluggableError(deviceId, error);
      }
      // The guest released the NIC after an earlier unplug timed out: the netdev that unplug left
      // is all that remains of it. Only an id with neither is unknown.
      if (error instanceof QmpCommandError && error.errorClass === 'DeviceNotFound') {
        const orphan = await qmp.execute('netdev_del', { id: qemuNetdevId(deviceId) }, commandOptions).then(
          () => true,
          () => false,
        );
        if (orphan) return;
      }
      throw error;
    }
  }
  try {
    await deleted;
  } catch (error) {
    if (error instanceof QmpTimeoutError) throw new DeviceUnplugTimeoutError(deviceId, timeoutMs);
    throw error;
  }
  await qmp.execute('netdev_del', { id: qemuNetdevId(deviceId) }, commandOptions);
}
