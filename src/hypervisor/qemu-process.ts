/**
 * Starting QEMU: the command line, the tap fds handed down, the network namespace, QMP and the
 * serial console.
 *
 * fds reach the child through child_process.spawn's stdio array: entry i becomes fd i in the child
 * (libuv dup2()s it there and clears close-on-exec, so the shim's O_CLOEXEC fds are fine). Slots
 * 0-2 are stdin/stdout/stderr, so tap and vhost fds get slots 3, 4, ... and the QEMU arguments must
 * name those slot numbers, not the parent's fd numbers: mapDeviceFdsToChildSlots() does the
 * renumbering. The parent keeps its own copies; it may close them once the child is running.
 *
 * The namespace: `nsenter --net=PATH -- qemu ...`. nsenter execs QEMU in place (no fork without
 * --pid), so the pid we hold is QEMU's, and inherited fds pass through untouched. The QMP socket is
 * a filesystem path, reachable from any network namespace.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { booleanOption, numberOption, optionsArgument, stringListOption, stringOption } from '../arguments.js';
import { InvalidInputError } from '../errors.js';
import type { NetworkDevice } from './device.js';
import { QemuProcessError } from './errors.js';
import { escapeQemuOptionValue, qemuNetworkArguments } from './qemu.js';
import { QmpClient } from './qmp.js';

/**
 * Options of `spawnQemu` and `buildQemuCommand`: the binary, accelerator, machine, memory (MiB), the
 * namespace to run in, the NICs, the QMP socket and extra arguments.
 */
export interface QemuLaunchOptions {
  /** Default qemu-system-x86_64. */
  binary?: string;
  /** Default tcg: KVM must be proven with probeKvm() first (nested guests hang on some hosts). */
  accelerator?: string;
  /** Default pc (i440fx), whose root bus takes PCI hot-plug. */
  machine?: string;
  memoryMiB?: number;
  /** Run QEMU inside this network namespace (e.g. /run/netns/pod), so it can open taps by name there. */
  networkNamespacePath?: string;
  networkDevices?: NetworkDevice[];
  /** QMP on this unix socket (server=on,wait=off). */
  qmpSocketPath?: string;
  /** Serial console to this file; without it the console is captured from QEMU's stdout. */
  serialLogPath?: string;
  /** -S: stop before the first instruction (QMP `cont` starts the guest). */
  startPaused?: boolean;
  /** Kernel, initrd, append, more devices: appended as they are. */
  extraArguments?: string[];
}

/**
 * A QEMU command line from `buildQemuCommand`: the program, its arguments, and the parent's fds to hand down
 * as 3, 4, ... (the NICs' queue fds).
 */
export interface QemuCommand {
  command: string;
  args: string[];
  /** Parent fds to hand down; inheritedFds[i] becomes fd 3 + i in the child. */
  inheritedFds: number[];
}

/** How a QEMU process ended: its exit code, or the signal that killed it. */
export interface QemuExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

const FIRST_INHERITED_FD_SLOT = 3;
const SERIAL_BUFFER_BYTES = 1 << 20;
const STDERR_BUFFER_BYTES = 64 << 10;

/** Renumbers every tap/vhost fd to the child slot it will occupy (3, 4, ...), in device order. */
export function mapDeviceFdsToChildSlots(
  devices: NetworkDevice[],
  firstSlot = FIRST_INHERITED_FD_SLOT,
): { devices: NetworkDevice[]; inheritedFds: number[] } {
  const inheritedFds: number[] = [];
  const slotOf = (fd: number) => {
    inheritedFds.push(fd);
    return firstSlot + inheritedFds.length - 1;
  };
  const mapped = devices.map((device) => {
    const copy: NetworkDevice = { ...device };
    if (device.fds) copy.fds = device.fds.map(slotOf);
    if (device.vhostFds) copy.vhostFds = device.vhostFds.map(slotOf);
    return copy;
  });
  return { devices: mapped, inheritedFds };
}

const LAUNCH_OPTION_KEYS = [
  'binary',
  'accelerator',
  'machine',
  'memoryMiB',
  'networkNamespacePath',
  'networkDevices',
  'qmpSocketPath',
  'serialLogPath',
  'startPaused',
  'extraArguments',
] as const;

/**
 * The launch options, checked before anything is spawned: a plain JavaScript caller's misspelt key
 * (`qmpSocket`) would otherwise start a VM nobody can reach, a string memory size pass into `-m`.
 */
function launchOptions(given: QemuLaunchOptions): QemuLaunchOptions {
  const options = optionsArgument(given, 'options', LAUNCH_OPTION_KEYS);
  for (const key of [
    'binary',
    'accelerator',
    'machine',
    'networkNamespacePath',
    'qmpSocketPath',
    'serialLogPath',
  ] as const) {
    stringOption(options[key], key, 'a non-empty string');
  }
  // QEMU takes -m in MiB; below 16 no kernel boots, above 16 TiB is a typo.
  numberOption(options.memoryMiB, 'memoryMiB', { min: 16, max: 16 * 1024 * 1024, unit: 'MiB' });
  booleanOption(options.startPaused, 'startPaused');
  stringListOption(options.extraArguments, 'extraArguments', 'QEMU arguments');
  if (options.networkDevices !== undefined && !Array.isArray(options.networkDevices)) {
    throw new InvalidInputError('networkDevices', options.networkDevices, 'an array of NetworkDevice');
  }
  return options;
}

/** The QEMU command line (binary and arguments) for these options; starts nothing. */
export function buildQemuCommand(given: QemuLaunchOptions): QemuCommand {
  const options = launchOptions(given);
  const binary = options.binary ?? 'qemu-system-x86_64';
  const { devices, inheritedFds } = mapDeviceFdsToChildSlots(options.networkDevices ?? []);
  const args = [
    '-accel',
    options.accelerator ?? 'tcg',
    '-machine',
    options.machine ?? 'pc',
    '-m',
    String(options.memoryMiB ?? 256),
    // No default NIC, VGA, floppy, CD-ROM or monitor: everything the VM has is on this line.
    '-nodefaults',
    '-no-user-config',
    '-display',
    'none',
    '-serial',
    options.serialLogPath === undefined ? 'stdio' : `file:${escapeQemuOptionValue(options.serialLogPath)}`,
  ];
  if (options.qmpSocketPath !== undefined) {
    args.push('-qmp', `unix:${escapeQemuOptionValue(options.qmpSocketPath)},server=on,wait=off`);
  }
  if (options.startPaused) args.push('-S');
  for (const device of devices) args.push(...qemuNetworkArguments(device));
  args.push(...(options.extraArguments ?? []));
  if (options.networkNamespacePath === undefined) return { command: binary, args, inheritedFds };
  return { command: 'nsenter', args: [`--net=${options.networkNamespacePath}`, '--', binary, ...args], inheritedFds };
}

/** Starts QEMU and resolves once the process exists (not once the guest or QMP is up: see connectQmp). */
export async function spawnQemu(options: QemuLaunchOptions): Promise<QemuProcess> {
  const command = buildQemuCommand(options);
  const child = spawn(command.command, command.args, {
    stdio: ['ignore', 'pipe', 'pipe', ...command.inheritedFds],
  });
  const qemu = new QemuProcess(child, command, options.qmpSocketPath);
  await new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', (error) =>
      reject(
        new QemuProcessError(
          `cannot start ${command.command}: ${error.message}`,
          [command.command, ...command.args],
          '',
        ),
      ),
    );
  });
  return qemu;
}

/** A QEMU this process started (spawnQemu): its pid, serial console, exit and stop. */
export class QemuProcess {
  readonly pid: number;
  readonly commandLine: string[];
  readonly qmpSocketPath: string | undefined;
  /** Resolves when the process has exited (never rejects). */
  readonly exited: Promise<QemuExit>;
  private readonly child: ChildProcess;
  private serial = '';
  private stderr = '';
  private exit: QemuExit | undefined;
  private readonly serialListeners = new Set<() => void>();

  constructor(child: ChildProcess, command: QemuCommand, qmpSocketPath: string | undefined) {
    this.child = child;
    this.pid = child.pid ?? -1;
    this.commandLine = [command.command, ...command.args];
    this.qmpSocketPath = qmpSocketPath;
    child.stdout?.setEncoding('utf8');
    child.stderr?.setEncoding('utf8');
    child.stdout?.on('data', (chunk: string) => {
      this.serial = (this.serial + chunk).slice(-SERIAL_BUFFER_BYTES);
      for (const listener of this.serialListeners) listener();
    });
    child.stderr?.on('data', (chunk: string) => {
      this.stderr = (this.stderr + chunk).slice(-STDERR_BUFFER_BYTES);
    });
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.exit = { code, signal };
        for (const listener of this.serialListeners) listener();
        resolve(this.exit);
      });
      // A failed spawn emits 'error' and may never emit 'exit'.
      child.once('error', () => {
        this.exit ??= { code: null, signal: null };
        resolve(this.exit);
      });
    });
  }

  get running(): boolean {
    return this.exit === undefined;
  }

  /** What the guest wrote to the serial console so far (captured mode; last 1 MiB). */
  serialOutput(): string {
    return this.serial;
  }

  stderrOutput(): string {
    return this.stderr;
  }

  /** Resolves true once the serial output matches, false at the timeout or when QEMU exits first. */
  waitForSerialOutput(pattern: RegExp | string, timeoutMs: number): Promise<boolean> {
    const matches = () => (typeof pattern === 'string' ? this.serial.includes(pattern) : pattern.test(this.serial));
    return new Promise((resolve) => {
      const finish = (result: boolean) => {
        clearTimeout(timer);
        this.serialListeners.delete(check);
        resolve(result);
      };
      const check = () => {
        if (matches()) finish(true);
        else if (!this.running) finish(false);
      };
      const timer = setTimeout(() => finish(false), timeoutMs);
      this.serialListeners.add(check);
      check();
    });
  }

  /**
   * Connects to QMP, retrying while QEMU is still creating the socket. Fails with QemuProcessError
   * (carrying QEMU's stderr) if QEMU exits first.
   */
  async connectQmp(options: { timeoutMs?: number; commandTimeoutMs?: number } = {}): Promise<QmpClient> {
    const socketPath = this.qmpSocketPath;
    if (socketPath === undefined) {
      throw new QemuProcessError('this QEMU was started without a QMP socket', this.commandLine, '');
    }
    const deadline = Date.now() + (options.timeoutMs ?? 10_000);
    let lastError: unknown;
    while (Date.now() < deadline) {
      if (!this.running) {
        throw new QemuProcessError(
          `QEMU exited (${describeExit(this.exit)}) before QMP was up`,
          this.commandLine,
          this.stderr,
        );
      }
      try {
        return await QmpClient.connect(socketPath, {
          timeoutMs: Math.max(1, deadline - Date.now()),
          commandTimeoutMs: options.commandTimeoutMs,
        });
      } catch (error) {
        lastError = error;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
    throw new QemuProcessError(
      `QMP on ${socketPath} not reachable: ${(lastError as Error | undefined)?.message ?? 'timed out'}`,
      this.commandLine,
      this.stderr,
    );
  }

  /** SIGTERM, then SIGKILL after graceMs. Safe to call more than once or after exit. */
  async stop(graceMs = 2_000): Promise<QemuExit> {
    if (!this.running) return this.exited;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    const exit = await this.exited;
    clearTimeout(timer);
    return exit;
  }

  /** `await using qemu = ...` stops QEMU (as stop() with its default grace) at the end of the block. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}

function describeExit(exit: QemuExit | undefined): string {
  if (!exit) return 'still running';
  return exit.signal ? `signal ${exit.signal}` : `code ${exit.code}`;
}
