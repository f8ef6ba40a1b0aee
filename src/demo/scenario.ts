/**
 * The whole story, for real: a "node" namespace with a CNI bridge and a "pod" namespace filled by the
 * real CNI bridge plugin; vcnet attaches the pod's interface; a QEMU guest (TCG) boots on it; vcnet's
 * agent client configures the guest; ping and iperf3 cross the plumbing; a second NIC is hot-plugged,
 * used and unplugged; then everything is taken down and the pod namespace is back to what CNI left.
 *
 * `vcnet demo` prints it; test/e2e runs it and checks every figure.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { AgentClient } from '../agent/client.js';
import { interfaceFromJson, neighboursFromJson, routesFromJson } from '../agent/kata-network-json.js';
import { pushGuestNetwork } from '../agent/push-network.js';
import { bridgeNetwork } from '../cni/bridge-network.js';
import { VcnetError } from '../errors.js';
import { ensureGuestImage, guestKernelCommandLine } from '../hypervisor/guest-image.js';
import { probeKvm } from '../hypervisor/kvm-probe.js';
import { type QemuProcess, spawnQemu } from '../hypervisor/qemu-process.js';
import type { QmpClient } from '../hypervisor/qmp.js';
import { QemuNetworkHotplugTarget } from '../hypervisor/qmp-network-hotplug.js';
import { NetlinkHandle } from '../netlink/handle.js';
import { createNamespace, deleteNamespace } from '../netns/namespace.js';
import type { Endpoint } from '../network/endpoint/endpoint.js';
import { type GuestNetwork, generateGuestNetwork } from '../network/guest.js';
import type { InterworkingModel } from '../network/interworking-model.js';
import { Network } from '../network/network.js';
import { interfacesOf } from '../network/scan.js';
import { findProgram, programSearchPath } from '../program-search.js';
import { type CniResult, cniPluginsAvailable, runCniPlugin } from './cni-plugin-runner.js';

const run = promisify(execFile);

export interface DemoNamespace {
  name: string;
  path: string;
}

export interface DemoOptions {
  model?: InterworkingModel;
  /** Seconds of iperf3 each way. */
  iperfSeconds?: number;
  progress?: (line: string) => void;
  /** Test hooks: called with the pod namespace after CNI filled it, and after everything was undone. */
  afterCni?: (pod: DemoNamespace) => void;
  afterTeardown?: (pod: DemoNamespace) => void;
}

interface TrafficResult {
  pingLossPercent: number;
  pingAverageMs: number;
  iperfToGuestBitsPerSecond?: number;
  iperfFromGuestBitsPerSecond?: number;
}

export interface DemoResult {
  model: InterworkingModel;
  accelerator: string;
  endpoints: Array<{ name: string; type: string; tap: string; hwAddr: string }>;
  guest: GuestNetwork;
  guestAddress: string;
  bootMs: number;
  attachMs: number;
  traffic: TrafficResult;
  hotplug: {
    interface: string;
    address: string;
    pciPath?: string;
    hostMs: number;
    guestMs: number;
    traffic: TrafficResult;
    unplugged: boolean;
    unplugError?: string;
  };
  guestInterfacesSeen: string[];
}

export class DemoError extends VcnetError {
  static override readonly errorName: string = 'DemoError';
  constructor(step: string, cause: unknown, console?: string, hint?: string) {
    const message = cause instanceof Error ? cause.message : String(cause);
    super('VCNET_DEMO_FAILED', `demo failed while ${step}: ${message}`, {
      value: step,
      hint: console ? `last guest console lines:\n${lastConsoleLines(console)}` : (hint ?? 'see the cause above'),
      cause,
    });
  }
}

/**
 * The console's last 15 lines; a kernel panic is the first thing to read, and the stack dump after
 * it is longer than that, so its line is put first when the tail has cut it off.
 */
export function lastConsoleLines(console: string, count = 15): string {
  const lines = console.split('\n');
  const tail = lines.slice(-count);
  const panic = lines.find((line) => line.includes('Kernel panic'));
  if (panic === undefined || tail.includes(panic)) return tail.join('\n');
  return [panic, '...', ...tail].join('\n');
}

function parsePing(output: string): { loss: number; average: number } | undefined {
  const loss = /([\d.]+)% packet loss/.exec(output)?.[1];
  if (loss === undefined) return undefined;
  const average = Number(/= [\d.]+\/([\d.]+)\//.exec(output)?.[1] ?? Number.NaN);
  return { loss: Number(loss), average };
}

async function ping(node: DemoNamespace, address: string): Promise<{ loss: number; average: number }> {
  // The first packets may meet an empty ARP cache under TCG: a few tries, then the counted run.
  // ping exits 1 when packets were lost (its summary still on stdout); anything without a summary
  // (ping not started, bad address) is a failure of its own, quoted.
  const attempt = async () => {
    const output = await run('ip', [
      'netns',
      'exec',
      node.name,
      'ping',
      '-c',
      '3',
      '-i',
      '0.3',
      '-W',
      '3',
      address,
    ]).then(
      (result) => ({ stdout: result.stdout, stderr: result.stderr }),
      (error: { stdout?: string; stderr?: string; message: string }) => ({
        stdout: error.stdout ?? '',
        stderr: error.stderr || error.message,
      }),
    );
    const parsed = parsePing(output.stdout);
    if (!parsed) throw new Error(`ping ${address} in ${node.name} printed no summary: ${output.stderr.trim()}`);
    return parsed;
  };
  let result = await attempt();
  for (let retry = 0; retry < 5 && result.loss === 100; retry++) result = await attempt();
  if (result.loss === 100) throw new Error(`ping from ${node.name} to ${address} lost every packet in 6 tries`);
  return result;
}

async function iperf(node: DemoNamespace, address: string, seconds: number, reverse: boolean): Promise<number> {
  // The guest's single iperf3 server takes a moment (slow under TCG) before it accepts the next test.
  let lastFailure = '';
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const { stdout } = await run(
        'ip',
        ['netns', 'exec', node.name, 'iperf3', '-c', address, '-t', String(seconds), '-J', ...(reverse ? ['-R'] : [])],
        {
          timeout: (seconds + 20) * 1000,
        },
      );
      const result = JSON.parse(stdout) as {
        end?: { sum_received?: { bits_per_second?: number } };
        error?: string;
      };
      if (result.end?.sum_received?.bits_per_second !== undefined) return result.end.sum_received.bits_per_second;
      lastFailure = result.error ?? 'its JSON has no end.sum_received.bits_per_second';
    } catch (error) {
      // busy or not ready: try again. iperf3 -J reports its own errors in the JSON on stdout.
      const failure = error as { stdout?: string; stderr?: string; message: string };
      const reported = /"error":\s*"([^"]*)"/.exec(failure.stdout ?? '')?.[1];
      lastFailure = reported ?? (failure.stderr?.trim() || failure.message);
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  throw new Error(
    `iperf3 ${reverse ? 'from' : 'to'} the guest (${address}, from ${node.name}) gave no result in 3 tries: ${lastFailure}`,
  );
}

async function traffic(node: DemoNamespace, address: string, seconds: number): Promise<TrafficResult> {
  const pinged = await ping(node, address);
  const result: TrafficResult = { pingLossPercent: pinged.loss, pingAverageMs: pinged.average };
  if (seconds > 0) {
    result.iperfToGuestBitsPerSecond = await iperf(node, address, seconds, false);
    result.iperfFromGuestBitsPerSecond = await iperf(node, address, seconds, true);
  }
  return result;
}

const AGENT_PORT_ARGUMENTS = (socket: string) => [
  '-device',
  'virtio-serial-pci',
  '-chardev',
  `socket,id=agent,path=${socket},server=on,wait=off`,
  '-device',
  'virtserialport,chardev=agent,name=agent.channel.0',
];

async function configureGuest(agent: AgentClient, guest: GuestNetwork, devices?: Set<string>): Promise<void> {
  const wanted = (device: string) => !devices || devices.has(device);
  // Kata's push: the interfaces asked for, the FULL route set (the agent replaces all routes), their
  // neighbours. The first call waits for the guest to open its port: give it room under TCG.
  await pushGuestNetwork(
    agent,
    {
      interfaces: guest.interfaces.filter((entry) => wanted(entry.device)).map((entry) => interfaceFromJson(entry)),
      routes: routesFromJson(guest.routes),
      neighbours: neighboursFromJson(guest.neighbours.filter((neighbour) => wanted(neighbour.device))),
    },
    { timeoutMs: 90_000 },
  );
}

/** The programs the demo starts, with the Debian package that has each. */
const DEMO_PROGRAMS = [
  { program: 'ip', debianPackage: 'iproute2' },
  { program: 'ping', debianPackage: 'iputils-ping' },
  { program: 'qemu-system-x86_64', debianPackage: 'qemu-system-x86' },
] as const;
const IPERF = { program: 'iperf3', debianPackage: 'iperf3' } as const;

/**
 * Why the demo cannot run here, or undefined: CNI plugins or programs it starts that are missing.
 * Checked before any namespace is made; each program is looked for on PATH (or, unset, the default
 * path), as `ip netns exec` and Node's execFile look for it. iperf3 is needed only when `iperfSeconds` is above 0 (the guest image
 * copies it too, and says so itself).
 */
export function demoUnavailableReason(options: { iperfSeconds?: number } = {}): string | undefined {
  const reasons: string[] = [];
  const plugins = cniPluginsAvailable(['bridge', 'host-local']);
  if (plugins) reasons.push(plugins);
  const wanted = [...DEMO_PROGRAMS, ...((options.iperfSeconds ?? 3) > 0 ? [IPERF] : [])];
  const directories = programSearchPath();
  const missing = wanted.filter((entry) => findProgram(entry.program, directories) === undefined);
  // With PATH unset the programs are started from the default path: name it, not an empty PATH.
  const where = process.env.PATH === undefined ? `in ${directories.join(':')} (PATH is not set)` : 'on PATH';
  if (missing.length > 0)
    reasons.push(
      `programs not found ${where}: ${missing.map((entry) => `${entry.program} (Debian package ${entry.debianPackage})`).join(', ')}`,
    );
  return reasons.length === 0 ? undefined : reasons.join('; ');
}

export async function runDemo(options: DemoOptions = {}): Promise<DemoResult> {
  const model = options.model ?? 'tcfilter';
  const say = options.progress ?? (() => undefined);
  const unavailable = demoUnavailableReason({ iperfSeconds: options.iperfSeconds ?? 3 });
  if (unavailable)
    throw new DemoError(
      'checking prerequisites',
      new Error(unavailable),
      undefined,
      'install the Debian packages named (apt-get install ...), or run scripts/setup from a vcnet checkout, which installs all the demo needs',
    );
  const suffix = randomBytes(3).toString('hex');
  const node: DemoNamespace = { name: `vcnet-demo-node-${suffix}`, path: '' };
  const pod: DemoNamespace = { name: `vcnet-demo-pod-${suffix}`, path: '' };
  const work = mkdtempSync(join(tmpdir(), 'vcnet-demo-'));
  const ipamDirectory = join(work, 'ipam');
  const networks = [
    {
      name: 'vcnet-demo',
      bridge: `vcbr0${suffix}`.slice(0, 15),
      subnet: '10.250.0.0/24',
      interfaceName: 'eth0',
      defaultRoute: true,
    },
    {
      name: 'vcnet-demo-2',
      bridge: `vcbr1${suffix}`.slice(0, 15),
      subnet: '10.251.0.0/24',
      interfaceName: 'eth1',
      defaultRoute: false,
    },
  ];
  const added: Array<(typeof networks)[number]> = [];
  let qemu: QemuProcess | undefined;
  let qmp: QmpClient | undefined;
  let agent: AgentClient | undefined;
  let network: Network | undefined;
  let step = 'creating namespaces';
  const cni = (command: 'ADD' | 'DEL', entry: (typeof networks)[number]): CniResult | undefined =>
    runCniPlugin({
      nodeNamespace: node.name,
      plugin: 'bridge',
      command,
      containerId: `demo-${suffix}`,
      podNamespacePath: pod.path,
      interfaceName: entry.interfaceName,
      config: bridgeNetwork({ ...entry, dataDir: ipamDirectory }),
    });
  try {
    node.path = createNamespace(node.name);
    pod.path = createNamespace(pod.name);
    say(`namespaces: node ${node.name} (CNI bridge), pod ${pod.name}`);

    step = 'running the CNI bridge plugin';
    const first = networks[0]!;
    const result = cni('ADD', first);
    added.push(first);
    const guestAddress = result?.ips?.[0]?.address.split('/')[0] ?? '';
    say(`CNI bridge ADD: pod eth0 = ${result?.ips?.[0]?.address}, gateway ${result?.ips?.[0]?.gateway}`);
    options.afterCni?.(pod);

    step = 'attaching the pod interface';
    network = Network.open(
      {
        namespacePath: pod.path,
        model,
        namespaceCreatedByVcnet: false,
        disableNewNetns: false,
        queues: 1,
        vhostNet: 'auto',
      },
      `demo-${suffix}`,
    );
    let started = performance.now();
    const endpoints = await network.addEndpoints({ keepFds: true });
    const attachMs = performance.now() - started;
    const guest = generateGuestNetwork(network.endpoints());
    const endpointSummary = endpoints.map((endpoint: Endpoint) => ({
      name: endpoint.name,
      type: endpoint.type,
      tap: endpoint.plumbing?.tapName ?? '',
      hwAddr: endpoint.hardwareAddress,
    }));
    say(
      `vcnet attach (${model}): ${endpoints.map((e) => `${e.properties.link.name} -> ${e.plumbing?.tapName}`).join(', ')} in ${attachMs.toFixed(1)} ms`,
    );

    step = 'building the guest image';
    const image = await ensureGuestImage({ onProgress: (line) => say(`  ${line}`) });
    const accelerator = (await probeKvm(3000).catch(() => false)) ? 'kvm' : 'tcg';
    say(`guest image ready (${image.built ? 'built' : 'cached'}); accelerator ${accelerator}`);

    step = 'booting the guest';
    const qmpPath = join(work, 'qmp.sock');
    const agentPath = join(work, 'agent.sock');
    started = performance.now();
    qemu = await spawnQemu({
      accelerator,
      memoryMiB: 512,
      networkNamespacePath: pod.path,
      networkDevices: endpoints.map((endpoint) => endpoint.networkDevice()),
      qmpSocketPath: qmpPath,
      extraArguments: [
        '-smp',
        '1',
        '-no-reboot',
        '-kernel',
        image.kernel,
        '-initrd',
        image.initrd,
        '-append',
        guestKernelCommandLine({ agent: true, command: 'iperf3 -s -D' }),
        ...AGENT_PORT_ARGUMENTS(agentPath),
      ],
    });
    // QEMU holds its own copies of the queue fds now.
    for (const endpoint of endpoints) endpoint.closeFds();
    qmp = await qemu.connectQmp();
    say('QEMU started in the pod namespace; waiting for the guest agent');

    step = 'configuring the guest through the agent';
    agent = await AgentClient.connect(agentPath, { deadlineMs: 30_000 });
    await configureGuest(agent, guest);
    const bootMs = performance.now() - started;
    say(
      `guest configured by the agent ${(bootMs / 1000).toFixed(1)} s after QEMU started: ${guest.interfaces.map((i) => `${i.name} ${i.IPAddresses.map((a) => `${a.address}/${a.mask}`).join(',')}`).join('; ')}`,
    );

    step = 'passing traffic';
    const seconds = options.iperfSeconds ?? 3;
    const firstTraffic = await traffic(node, guestAddress, seconds);
    say(
      `node -> guest ${guestAddress}: ping loss ${firstTraffic.pingLossPercent}%, avg ${firstTraffic.pingAverageMs} ms; iperf3 to guest ${mbps(firstTraffic.iperfToGuestBitsPerSecond)}, from guest ${mbps(firstTraffic.iperfFromGuestBitsPerSecond)}`,
    );

    if (process.env.VCNET_DEMO_DEBUG) {
      for (const [where, args] of [
        [pod.name, ['ip', '-s', '-d', 'link']],
        [node.name, ['ip', 'neigh']],
        [node.name, ['bridge', 'fdb', 'show']],
      ] as const) {
        const { stdout } = await run('ip', ['netns', 'exec', where, ...args]).catch((error: { stdout?: string }) => ({
          stdout: error.stdout ?? '',
        }));
        say(`debug ${where} ${args.join(' ')}:\n${stdout}`);
      }
    }

    step = 'hot-plugging a second NIC';
    const second = networks[1]!;
    const secondResult = cni('ADD', second);
    added.push(second);
    const secondAddress = secondResult?.ips?.[0]?.address.split('/')[0] ?? '';
    const handle = NetlinkHandle.open(pod.path);
    const secondInfo = interfacesOf(await handle.snapshot()).find((info) => info.link.name === second.interfaceName);
    handle.close();
    if (!secondInfo) throw new Error(`CNI did not create ${second.interfaceName}`);
    const target = new QemuNetworkHotplugTarget(qmp, { timeoutMs: 20_000 });
    started = performance.now();
    const [plugged] = await network.addEndpoints({ interfaces: [secondInfo], keepFds: true, hotplug: target });
    if (!plugged) throw new Error('no endpoint was added');
    plugged.closeFds();
    const hostMs = performance.now() - started;
    started = performance.now();
    await configureGuest(agent, generateGuestNetwork(network.endpoints()), new Set([plugged.name]));
    const guestMs = performance.now() - started;
    say(
      `hot-plugged ${plugged.name} (${plugged.plumbing?.tapName}, PCI ${plugged.pciPath ?? '?'}): host ${hostMs.toFixed(1)} ms, guest configure ${guestMs.toFixed(1)} ms`,
    );
    const secondTraffic = await traffic(node, secondAddress, 0);
    say(
      `node -> guest ${secondAddress} on the hot-plugged NIC: ping loss ${secondTraffic.pingLossPercent}%, avg ${secondTraffic.pingAverageMs} ms`,
    );
    const guestInterfacesSeen = (await agent.listInterfaces({ timeoutMs: 30_000 })).map((entry) => entry.name).sort();

    step = 'unplugging the second NIC';
    let unplugged = true;
    let unplugError: string | undefined;
    try {
      await target.unplugNetworkDevice(plugged.deviceId);
    } catch (error) {
      unplugged = false;
      unplugError = (error as Error).message;
    }
    const unplugReport = await network.removeEndpoints([plugged]);
    if (unplugReport.failures.length > 0) throw unplugReport.failures[0];
    cni('DEL', second);
    added.splice(added.indexOf(second), 1);
    say(
      unplugged
        ? `unplugged ${plugged.name}: the guest released it and its plumbing is gone`
        : `unplug: ${unplugError}`,
    );

    step = 'tearing down';
    agent.close();
    agent = undefined;
    await qmp.close();
    qmp = undefined;
    await qemu.stop(3000);
    qemu = undefined;
    const report = await network.removeEndpoints();
    if (report.failures.length > 0) throw report.failures[0];
    network.close();
    network = undefined;
    options.afterTeardown?.(pod);
    say('VM stopped, vcnet detached: the pod namespace is as CNI left it');

    return {
      model,
      accelerator,
      endpoints: endpointSummary,
      guest,
      guestAddress,
      bootMs,
      attachMs,
      traffic: firstTraffic,
      hotplug: {
        interface: plugged.name,
        address: secondAddress,
        ...(plugged.pciPath ? { pciPath: plugged.pciPath } : {}),
        hostMs,
        guestMs,
        traffic: secondTraffic,
        unplugged,
        ...(unplugError ? { unplugError } : {}),
      },
      guestInterfacesSeen,
    };
  } catch (error) {
    throw error instanceof DemoError ? error : new DemoError(step, error, qemu?.serialOutput());
  } finally {
    agent?.close();
    await qmp?.close().catch(() => undefined);
    await qemu?.stop(2000).catch(() => undefined);
    if (network) {
      await network.removeEndpoints().catch(() => undefined);
      network.close();
    }
    for (const entry of added.reverse()) {
      try {
        cni('DEL', entry);
      } catch {
        // the namespaces go next anyway
      }
    }
    if (pod.path) deleteNamespace(pod.path);
    if (node.path) deleteNamespace(node.path);
    rmSync(work, { recursive: true, force: true });
  }
}

export function mbps(bitsPerSecond: number | undefined): string {
  return bitsPerSecond === undefined ? 'n/a' : `${(bitsPerSecond / 1e6).toFixed(1)} Mbit/s`;
}
