/**
 * Errors of the hypervisor layer. Bad device descriptions are `InvalidInputError`s (src/errors.ts);
 * the classes here cover what a particular hypervisor cannot do, and what goes wrong while talking
 * to a running one.
 */
import { VcnetError } from '../errors.js';
import { qemuNetdevId } from './qemu.js';

/** The device is valid, but this hypervisor has no way to express part of it. */
export class UnsupportedByHypervisorError extends VcnetError {
  static override readonly errorName: string = 'UnsupportedByHypervisorError';
  readonly hypervisor: string;
  readonly field: string;
  constructor(hypervisor: string, field: string, value: unknown, reason: string, hint: string) {
    super('VCNET_HYPERVISOR_UNSUPPORTED', `${hypervisor} cannot use ${field}=${JSON.stringify(value)}: ${reason}`, {
      value,
      hint,
    });
    this.hypervisor = hypervisor;
    this.field = field;
  }
}

/** QMP answered a command with `{"error": {"class", "desc"}}`. */
export class QmpCommandError extends VcnetError {
  static override readonly errorName: string = 'QmpCommandError';
  readonly command: string;
  /** QEMU's error class: GenericError, DeviceNotFound, CommandNotFound, ... */
  readonly errorClass: string;
  readonly description: string;
  constructor(command: string, errorClass: string, description: string, argumentsSent: unknown) {
    super('VCNET_QMP_COMMAND', `QMP ${command} failed: ${errorClass}: ${description}`, {
      value: argumentsSent,
      hint: hintForQmpError(errorClass),
    });
    this.command = command;
    this.errorClass = errorClass;
    this.description = description;
  }
}

function hintForQmpError(errorClass: string): string {
  switch (errorClass) {
    case 'DeviceNotFound':
      return 'QEMU has nothing of that id for this command (devices: query-pci; netdevs: `info network`)';
    case 'CommandNotFound':
      return 'this QEMU does not know the command: check its version (query-version)';
    default:
      return 'QEMU refused the command: its description says why';
  }
}

/** No reply (or event) arrived in time. The connection stays usable; a late reply is dropped. */
export class QmpTimeoutError extends VcnetError {
  static override readonly errorName: string = 'QmpTimeoutError';
  readonly command: string;
  readonly timeoutMs: number;
  constructor(command: string, timeoutMs: number, hint?: string) {
    super('VCNET_QMP_TIMEOUT', `QMP ${command}: no answer within ${timeoutMs} ms`, {
      value: command,
      hint: hint ?? 'QEMU may be stuck or busy: check that the process is alive and not paused in a debugger',
    });
    this.command = command;
    this.timeoutMs = timeoutMs;
  }
}

/** The QMP socket could not be reached, broke, or spoke something that is not QMP. */
export class QmpConnectionError extends VcnetError {
  static override readonly errorName: string = 'QmpConnectionError';
  constructor(message: string, socketPath: string, cause?: unknown, hint?: string) {
    super('VCNET_QMP_CONNECTION', message, {
      value: socketPath,
      hint:
        hint ?? 'check that QEMU runs with -qmp unix:PATH,server=on,wait=off and that no other client holds the socket',
      cause,
    });
  }
}

/** A hot-plug failed; `rolledBack` says whether what vcnet had already added was removed again. */
/** QEMU's refusal of an id it has already: "Duplicate ID 'netdev-net1' for netdev", "Duplicate device ID 'net1'". */
export const DUPLICATE_ID = /Duplicate (?:device )?ID '([^']+)'/i;

/**
 * The QMP commands that remove QEMU NIC `deviceId` and its netdev from a VM when no record names it,
 * so that del-iface cannot: the same words wherever a taken id is reported.
 */
export function qmpRemovalOf(deviceId: string): string {
  return `{"execute":"device_del","arguments":{"id":"${deviceId}"}}, wait for its DEVICE_DELETED event, then {"execute":"netdev_del","arguments":{"id":"${qemuNetdevId(deviceId)}"}} (either may answer "not found": the other one was all there was)`;
}

/**
 * A QMP hot-plug of a NIC failed (`VCNET_HOTPLUG_FAILED`) at `netdev_add` or `device_add`; `rolledBack` says
 * whether what was added before was removed again. The QMP error is its `cause`.
 */
export class NetworkHotplugError extends VcnetError {
  static override readonly errorName: string = 'NetworkHotplugError';
  readonly deviceId: string;
  readonly stage: 'netdev_add' | 'device_add';
  readonly rolledBack: boolean;
  constructor(deviceId: string, stage: 'netdev_add' | 'device_add', rolledBack: boolean, cause: unknown) {
    const detail = cause instanceof Error ? cause.message : String(cause);
    super(
      'VCNET_HOTPLUG_FAILED',
      `hot-plug of ${deviceId} failed at ${stage}: ${detail}` +
        (stage === 'device_add' ? (rolledBack ? ' (netdev removed again)' : ' (netdev NOT removed)') : ''),
      {
        value: deviceId,
        hint: !rolledBack
          ? `the netdev is still in the VM: remove it with netdev_del before retrying`
          : DUPLICATE_ID.test(detail)
            ? // The id is taken: by a NIC still plugged, the netdev an unplug that timed out left, or a
              // NIC no record names (what add-iface and watch report as VCNET_HOTPLUG_ID_TAKEN).
              `this hot-plug added nothing, but the VM already has a device or netdev with this id. If it is a NIC you plugged, unplug it first (unplugNetworkDevice("${deviceId}")); vcnet del-iface removes it only when it is the NIC of an endpoint a sandbox's record names. A NIC no record names (a hot-plug killed part-way whose attach was undone on the host only, or one plugged by hand) is removed through QMP: ${qmpRemovalOf(deviceId)}. Or hot-plug under another id`
            : 'this hot-plug added nothing to the VM: fix the cause and hot-plug again',
        cause,
      },
    );
    this.deviceId = deviceId;
    this.stage = stage;
    this.rolledBack = rolledBack;
  }
}

/**
 * The running VM has nowhere left to hot-plug a NIC: every vcnet port (q35 root port, pc bridge slot)
 * and the root bus where it takes devices are taken, or the VM was started without vcnet's ports. Not
 * bad input: nobody named a port, and only the VM's command line can give it more room.
 */
export class HotplugCapacityError extends VcnetError {
  static override readonly errorName: string = 'HotplugCapacityError';
  readonly deviceId: string;
  /** What was found, for the message: "q35 machine: hot-plug ports found: ...". */
  readonly found: string;
  constructor(deviceId: string, found: string, hint: string, cause?: unknown) {
    super('VCNET_HOTPLUG_NO_SLOT', `no free hot-plug slot for ${deviceId} (nothing was added to the VM): ${found}`, {
      value: found,
      hint,
      cause,
    });
    this.deviceId = deviceId;
    this.found = found;
  }
}

/**
 * device_del was accepted but the guest did not release the device in time. PCI unplug on i440fx
 * is an ACPI request the guest OS must acknowledge; a paused guest, firmware, or an OS without
 * ACPI PCI hot-plug never does. The device and its netdev are left in place.
 */
export class DeviceUnplugTimeoutError extends VcnetError {
  static override readonly errorName: string = 'DeviceUnplugTimeoutError';
  readonly deviceId: string;
  readonly timeoutMs: number;
  constructor(deviceId: string, timeoutMs: number) {
    super('VCNET_UNPLUG_TIMEOUT', `the guest did not release device ${deviceId} within ${timeoutMs} ms`, {
      value: deviceId,
      hint:
        'the unplug request stays pending in QEMU: the guest must be running an OS with ACPI PCI hot-plug ' +
        '(acpiphp); retry later with a longer timeout, or stop the VM',
    });
    this.deviceId = deviceId;
    this.timeoutMs = timeoutMs;
  }
}

/**
 * QEMU refused device_del because the device's bus takes no hot-plug: a NIC given on the command line
 * of a q35 VM without bus= sits on the root complex pcie.0, and only leaves with the VM.
 */
export class DeviceNotHotpluggableError extends VcnetError {
  static override readonly errorName: string = 'DeviceNotHotpluggableError';
  readonly deviceId: string;
  constructor(deviceId: string, cause: QmpCommandError) {
    super(
      'VCNET_HYPERVISOR_UNSUPPORTED',
      `${deviceId} cannot be unplugged while the VM runs: QEMU says "${cause.description}" (a NIC given at boot on q35's root complex pcie.0, without bus=, stays until the VM stops)`,
      {
        value: deviceId,
        hint:
          'its host side goes with `vcnet detach` once the VM has stopped. To make a boot NIC removable, give it a ' +
          'root port of its own at boot: -device pcie-root-port,id=boot-rp0,bus=pcie.0,chassis=64,slot=16 and ' +
          'bus=boot-rp0,addr=0x0 on its -device virtio-net-pci line (see "QEMU q35" in docs/compatibility.md)',
        cause,
      },
    );
    this.deviceId = deviceId;
  }
}

/** QEMU did not start, or exited before it could be used. */
export class QemuProcessError extends VcnetError {
  static override readonly errorName: string = 'QemuProcessError';
  readonly stderr: string;
  constructor(message: string, commandLine: string[], stderr: string) {
    super('VCNET_QEMU_PROCESS', stderr.trim() ? `${message}: ${lastLine(stderr)}` : message, {
      value: commandLine,
      hint: 'run the command line by hand to see QEMU complain; its stderr is in the error',
    });
    this.stderr = stderr;
  }
}

function lastLine(text: string): string {
  const lines = text.trim().split('\n');
  return lines[lines.length - 1] ?? '';
}
