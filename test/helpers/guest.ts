/**
 * Boots the test guest (scripts/guest-image) under QEMU for end-to-end tests: TCG only (nested KVM guests hang
 * on the machines we run on), serial console captured line by line, QMP and the agent's virtio-serial port on
 * unix sockets in a private temporary directory. Every guest is killed by `kill()`, by the end of the test
 * that booted it, and by a process exit hook as a last resort, so a failing test never leaks a QEMU.
 */
import { type ChildProcessWithoutNullStreams, execFileSync, spawn } from 'node:child_process';
import { accessSync, closeSync, constants, existsSync, mkdtempSync, openSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { AgentClient } from '../../src/agent/client.js';
import { interfaceFromJson, neighboursFromJson, routesFromJson } from '../../src/agent/kata-network-json.js';
import { pushGuestNetwork } from '../../src/agent/push-network.js';
import { ensureGuestImage, type GuestImage, guestKernelCommandLine } from '../../src/hypervisor/guest-image.js';
import type { GuestInterface, GuestNeighbour, GuestRoute } from '../../src/network/guest.js';

export const QEMU_BINARY = process.env.VCNET_QEMU ?? 'qemu-system-x86_64';
export const AGENT_PORT_NAME = 'agent.channel.0';

export interface BootGuestOptions {
  /** Run QEMU inside this network namespace (nsenter --net=PATH), e.g. a pod namespace with a tap in it. */
  netnsPath?: string;
  /** More QEMU arguments, typically -netdev/-device pairs. */
  extraArgs?: string[];
  /** The whole kernel command line; default guestKernelCommandLine() (serial console, quiet, panic=-1). */
  append?: string;
  memoryMb?: number;
  /** vCPUs (-smp); default 1. The guest's virtio-net uses one queue pair per vCPU, up to the NIC's queues. */
  vcpus?: number;
  /** QEMU machine type; default pc (i440fx). q35 hot-plugs only into root ports given in extraArgs. */
  machine?: 'pc' | 'q35';
  /** An image from ensureGuestImage(); built (or found up to date) when absent. */
  image?: GuestImage;
  /**
   * Files QEMU inherits open read-write as these descriptors: a macvtap's `/dev/tapN` queues (and
   * `/dev/vhost-net`), which its -netdev names by number (`fds` in `vcnet attach --json`).
   */
  files?: ReadonlyArray<{ fd: number; path: string }>;
}

export interface ConsoleLine {
  /** The line, without ANSI escapes and carriage returns. */
  text: string;
  /** What the pattern matched. */
  match: RegExpMatchArray;
  /** Milliseconds from QEMU's start to the arrival of this line. */
  atMs: number;
  /** Index in `lines`; pass `index + 1` as `from` to wait for a later line. */
  index: number;
}

export interface GuestExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface GuestHandle {
  readonly pid: number;
  /** The console (ttyS0) so far, ANSI escapes and carriage returns removed. */
  readonly console: string;
  /** Complete console lines so far. */
  readonly lines: readonly string[];
  readonly qmpPath: string;
  /** Unix socket behind the virtserialport named agent.channel.0 (QEMU is the server). */
  readonly agentSocketPath: string;
  readonly commandLine: readonly string[];
  /** Settles when QEMU exits (never rejects). */
  readonly exited: Promise<GuestExit>;
  /** The first console line (from line index `from`, default 0) matching `pattern`; rejects on timeout or exit. */
  waitForLine(pattern: RegExp, timeoutMs: number, from?: number): Promise<ConsoleLine>;
  /** Types into the serial console (the guest's shell reads it). */
  writeConsole(text: string): void;
  /** Stops QEMU (SIGTERM, then SIGKILL after 3 s) and removes its socket directory. Safe to call twice. */
  kill(): Promise<void>;
}

const liveGuests = new Set<GuestHandle>();
const liveProcesses = new Set<ChildProcessWithoutNullStreams>();

process.on('exit', () => {
  for (const child of liveProcesses) child.kill('SIGKILL');
});

/** Kills every guest this process booted and has not killed yet (for afterEach/afterAll). */
export async function killAllGuests(): Promise<void> {
  await Promise.all([...liveGuests].map((guest) => guest.kill()));
}

function findOnPath(command: string): string | undefined {
  if (command.includes('/')) return existsSync(command) ? command : undefined;
  for (const directory of (process.env.PATH ?? '').split(delimiter)) {
    const candidate = join(directory, command);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

/** Why the guest cannot boot on this machine, or undefined when it can (for it.skipIf plus a printed reason). */
export function guestUnavailableReason(): string | undefined {
  if (process.platform !== 'linux' || process.arch !== 'x64') return `the test guest is x86-64 Linux only`;
  if (!findOnPath(QEMU_BINARY)) return `${QEMU_BINARY} not found: install the Debian package qemu-system-x86`;
  const kernel = process.env.VCNET_GUEST_KERNEL;
  if (kernel !== undefined) return existsSync(kernel) ? undefined : `VCNET_GUEST_KERNEL=${kernel} does not exist`;
  let bootFiles: string[] = [];
  try {
    bootFiles = readdirSync('/boot');
  } catch {
    // no /boot at all
  }
  if (!bootFiles.some((name) => /^vmlinuz-.*-cloud-amd64$/.test(name))) {
    return 'no /boot/vmlinuz-*-cloud-amd64: install the Debian package linux-image-cloud-amd64';
  }
  return undefined;
}

/**
 * Why a guest command that runs `load-modules` for `lists` cannot, or undefined: the image's kernel
 * package lacks a module of one (scripts/guest-image's missingModules, each with what it is for).
 * Builds the image when an input changed, as bootGuest would.
 */
export async function guestModulesMissingReason(lists: ReadonlyArray<'tunnels' | 'pod'>): Promise<string | undefined> {
  const image = await ensureGuestImage();
  const missing = image.missingModules.filter((entry) => lists.includes(entry.list));
  if (missing.length === 0) return undefined;
  const named = missing.map((entry) => `${entry.module} (load-modules ${entry.list}: ${entry.purpose})`);
  return `the guest image's kernel ${image.kernelVersion} has no module ${named.join(', ')}`;
}

// ANSI CSI/OSC sequences (SeaBIOS clears the screen, colours): tests match plain text.
const ANSI_ESCAPE = /\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07]*\x07|[()][0-9A-B]|[=>78c])/g;

function cleanLine(raw: string): string {
  return raw.replace(ANSI_ESCAPE, '').replace(/\r/g, '');
}

interface Waiter {
  pattern: RegExp;
  from: number;
  resolve: (line: ConsoleLine) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

export async function bootGuest(options: BootGuestOptions = {}): Promise<GuestHandle> {
  const image = options.image ?? (await ensureGuestImage());
  const memoryMb = options.memoryMb ?? 512;
  const socketDirectory = mkdtempSync(join(tmpdir(), 'vcnet-guest-'));
  const qmpPath = join(socketDirectory, 'qmp.sock');
  const agentSocketPath = join(socketDirectory, 'agent.sock');

  const qemuArgs = [
    ...[
      '-accel',
      'tcg',
      '-machine',
      options.machine ?? 'pc',
      '-m',
      String(memoryMb),
      '-smp',
      String(options.vcpus ?? 1),
    ],
    ...['-nographic', '-nodefaults', '-serial', 'stdio', '-no-reboot'],
    ...['-kernel', image.kernel, '-initrd', image.initrd, '-append', options.append ?? guestKernelCommandLine()],
    ...['-qmp', `unix:${qmpPath},server=on,wait=off`],
    ...['-device', 'virtio-serial-pci'],
    ...['-chardev', `socket,id=agent,path=${agentSocketPath},server=on,wait=off`],
    ...['-device', `virtserialport,chardev=agent,name=${AGENT_PORT_NAME}`],
    ...(options.extraArgs ?? []),
  ];
  const commandLine =
    options.netnsPath === undefined
      ? [QEMU_BINARY, ...qemuArgs]
      : ['nsenter', `--net=${options.netnsPath}`, QEMU_BINARY, ...qemuArgs];

  const startedAt = performance.now();
  // Each file at the descriptor number its -netdev names; nsenter keeps them open across its exec.
  const stdio: Array<'pipe' | 'ignore' | number> = ['pipe', 'pipe', 'pipe'];
  const opened: number[] = [];
  try {
    for (const file of options.files ?? []) {
      if (file.fd < 3) throw new Error(`bootGuest: fd ${file.fd} for ${file.path} would replace QEMU's stdio`);
      const descriptor = openSync(file.path, 'r+');
      opened.push(descriptor);
      while (stdio.length <= file.fd) stdio.push('ignore');
      stdio[file.fd] = descriptor;
    }
  } catch (error) {
    for (const descriptor of opened) closeSync(descriptor);
    rmSync(socketDirectory, { recursive: true, force: true });
    throw error;
  }
  // nsenter execs QEMU, so the pid we hold is QEMU's own. Its first three descriptors are pipes.
  const child = spawn(commandLine[0]!, commandLine.slice(1), { stdio }) as ChildProcessWithoutNullStreams;
  // QEMU holds its own copies now.
  for (const descriptor of opened) closeSync(descriptor);
  liveProcesses.add(child);

  const lines: string[] = [];
  const lineTimes: number[] = [];
  let partial = '';
  let stderr = '';
  let exit: GuestExit | undefined;
  const waiters = new Set<Waiter>();

  const tail = (count: number) => [...lines, ...(partial ? [cleanLine(partial)] : [])].slice(-count).join('\n');
  const describeFailure = (what: string) =>
    `${what}\n--- console (last 40 lines) ---\n${tail(40)}\n--- qemu stderr ---\n${stderr.trim() || '(empty)'}` +
    `\n--- command ---\n${commandLine.join(' ')}`;

  const settle = (waiter: Waiter, line: ConsoleLine) => {
    clearTimeout(waiter.timer);
    waiters.delete(waiter);
    waiter.resolve(line);
  };
  const findLine = (pattern: RegExp, from: number): ConsoleLine | undefined => {
    for (let index = from; index < lines.length; index++) {
      const match = lines[index]!.match(pattern);
      if (match) return { text: lines[index]!, match, atMs: lineTimes[index]!, index };
    }
    return undefined;
  };
  const addLine = (raw: string) => {
    lines.push(cleanLine(raw));
    lineTimes.push(Math.round(performance.now() - startedAt));
    const index = lines.length - 1;
    for (const waiter of [...waiters]) {
      if (index < waiter.from) continue;
      const found = findLine(waiter.pattern, index);
      if (found) settle(waiter, found);
    }
  };

  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    partial += chunk;
    const pieces = partial.split('\n');
    partial = pieces.pop() ?? '';
    for (const piece of pieces) addLine(piece);
  });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
  });
  child.stdin.on('error', () => {
    // QEMU gone: writes to the console are moot
  });

  const exited = new Promise<GuestExit>((resolve) => {
    const finish = (result: GuestExit) => {
      if (exit) return;
      exit = result;
      liveProcesses.delete(child);
      if (partial !== '') {
        addLine(partial);
        partial = '';
      }
      for (const waiter of [...waiters]) {
        clearTimeout(waiter.timer);
        waiters.delete(waiter);
        waiter.reject(
          new Error(
            describeFailure(
              `QEMU exited (code ${result.code}, signal ${result.signal}) before a line matched ${waiter.pattern}`,
            ),
          ),
        );
      }
      resolve(result);
    };
    child.on('close', (code, signal) => finish({ code, signal }));
    child.on('error', (error) => {
      stderr += `spawn failed: ${error.message}\n`;
      finish({ code: null, signal: null });
    });
  });

  let killing: Promise<void> | undefined;
  const handle: GuestHandle = {
    get pid() {
      return child.pid ?? -1;
    },
    get console() {
      return lines.join('\n') + (partial ? '\n' + cleanLine(partial) : '');
    },
    get lines() {
      return lines;
    },
    qmpPath,
    agentSocketPath,
    commandLine,
    exited,
    waitForLine(pattern, timeoutMs, from = 0) {
      const found = findLine(pattern, from);
      if (found) return Promise.resolve(found);
      if (exit) {
        return Promise.reject(
          new Error(describeFailure(`QEMU already exited (code ${exit.code}); no line matched ${pattern}`)),
        );
      }
      return new Promise<ConsoleLine>((resolve, reject) => {
        const waiter: Waiter = {
          pattern,
          from,
          resolve,
          reject,
          timer: setTimeout(() => {
            waiters.delete(waiter);
            reject(new Error(describeFailure(`no console line matched ${pattern} within ${timeoutMs} ms`)));
          }, timeoutMs),
        };
        waiters.add(waiter);
      });
    },
    writeConsole(text) {
      if (!exit) child.stdin.write(text);
    },
    kill() {
      killing ??= (async () => {
        if (!exit) {
          child.kill('SIGTERM');
          const forced = setTimeout(() => child.kill('SIGKILL'), 3_000);
          await exited;
          clearTimeout(forced);
        }
        liveGuests.delete(handle);
        rmSync(socketDirectory, { recursive: true, force: true });
      })();
      return killing;
    },
  };
  liveGuests.add(handle);
  // QEMU creates its listening sockets a moment after start: callers may connect as soon as this returns.
  const socketDeadline = performance.now() + 15_000;
  while (!(existsSync(qmpPath) && existsSync(agentSocketPath))) {
    if (exit || performance.now() > socketDeadline) {
      await handle.kill();
      throw new Error(
        describeFailure(exit ? `QEMU exited at start (code ${exit.code})` : 'QEMU created no sockets in 15 s'),
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  // Imported only under vitest: bench/ and scripts use this helper too, and importing vitest outside it throws.
  if (process.env.VITEST) {
    const { onTestFinished } = await import('vitest');
    try {
      onTestFinished(() => handle.kill());
    } catch {
      // booted outside a test (beforeAll): the caller, killAllGuests() or the exit hook stops it
    }
  }
  return handle;
}

/** The guest network `vcnet attach --json` prints (its interfaces, routes and neighbours). */
export interface AttachedGuestNetwork {
  interfaces: GuestInterface[];
  routes: GuestRoute[];
  neighbours: GuestNeighbour[];
}

/**
 * Configures the boot NICs through the guest agent, as the runtime does at sandbox start (Kata's
 * setupNetworks): a later add-iface pushes the full route set, whose boot routes need their NICs up.
 */
export async function pushBootNetwork(agentSocketPath: string, attached: AttachedGuestNetwork): Promise<void> {
  const agent = await AgentClient.connect(agentSocketPath, { deadlineMs: 90_000 });
  try {
    await pushGuestNetwork(
      agent,
      {
        interfaces: attached.interfaces.map((entry) => interfaceFromJson(entry)),
        routes: routesFromJson(attached.routes),
        neighbours: neighboursFromJson(attached.neighbours),
      },
      { timeoutMs: 90_000 },
    );
  } finally {
    agent.close();
  }
}

let consoleCommands = 0;

/**
 * Runs a shell command on the guest's serial console (the shell scripts/guest/init leaves there) and
 * answers the lines it printed. The markers around the output are computed by the guest's shell, so the
 * terminal's echo of the typed command never matches them (a prompt may precede them on their line).
 */
export async function runOnConsole(guest: GuestHandle, command: string, timeoutMs = 30_000): Promise<string[]> {
  const id = ++consoleCommands;
  const from = guest.lines.length;
  guest.writeConsole(`echo VCNET-CONSOLE-START-$((${id}+0)); ${command}; echo VCNET-CONSOLE-END-$((${id}+0))\n`);
  const start = await guest.waitForLine(new RegExp(`VCNET-CONSOLE-START-${id}$`), timeoutMs, from);
  const end = await guest.waitForLine(new RegExp(`VCNET-CONSOLE-END-${id}$`), timeoutMs, start.index + 1);
  return guest.lines.slice(start.index + 1, end.index);
}

/**
 * Pings `address` from a test namespace, up to five rounds of three until one loses nothing (a guest
 * under TCG may still be bringing the NIC up); returns ping's last output.
 */
export function pingFrom(namespace: string, address: string): string {
  let output = '';
  for (let attempt = 0; attempt < 5 && !output.includes(' 0% packet loss'); attempt++) {
    try {
      output = execFileSync('ip', ['netns', 'exec', namespace, 'ping', '-c', '3', '-i', '0.3', '-W', '3', address], {
        encoding: 'utf8',
      });
    } catch (error) {
      output = String((error as { stdout?: string }).stdout ?? '');
    }
  }
  return output;
}
