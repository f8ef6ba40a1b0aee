/**
 * Runs a CNI conflist the way libcni does: each plugin found by its "type" in CNI_PATH, its config
 * being the plugin's entry plus the list's name and cniVersion, ADD threading each result into the
 * next plugin's prevResult, CHECK and DEL getting the cached final result, DEL in reverse order.
 * Plugins run inside the "node" namespace (ip netns exec), so the bridge and its gateway address
 * never land in the host's namespace.
 */

import { type SpawnSyncReturns, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { bridgeNetwork } from '../../src/cni/bridge-network.js';
import { type GuestInterface, generateGuestNetwork } from '../../src/network/guest.js';
import { Network } from '../../src/network/network.js';
import { collectOutput } from './child-output.js';
import type { TestCleanup } from './cleanup.js';
import type { TestNamespace } from './namespace.js';
import { fingerprint, linkMac } from './pod.js';
import { relayMacvtapToGuest, relayTapToGuest } from './vm-stand-in.js';

export const SYSTEM_CNI_DIRECTORY = '/usr/lib/cni';
/** Holds the `vcnet-cni` wrapper, which runs dist/cni/main.js (built by the test run's global setup). */
export const VCNET_CNI_DIRECTORY = fileURLToPath(new URL('../../src/cni/', import.meta.url));
export const CNI_PATH = [SYSTEM_CNI_DIRECTORY, VCNET_CNI_DIRECTORY].join(':');
/** vcnet-cni's program, for tests that run it with node themselves (built by the test run's global setup). */
export const VCNET_CNI_PROGRAM = fileURLToPath(new URL('../../dist/cni/main.js', import.meta.url));
/** iproute2's ip, wherever the distribution puts it. */
export const IP_COMMAND =
  ['/usr/sbin/ip', '/sbin/ip', '/usr/bin/ip', '/bin/ip'].find((path) => existsSync(path)) ?? 'ip';

/**
 * The guest network vcnet-cni's record of a container's interface holds, as the runtime's agent
 * would be given it (`containerId` as vcnet-cni names its record directory). `namespacePath` opens
 * the pod namespace where the recorded path does not: a runtime that mounts it in a mount namespace
 * of its own (podman in CI's chroot, where the runtimes run in one that has cgroup filesystems)
 * leaves only an empty file at that path out here.
 */
export function recordedGuestNetwork(
  stateDirectory: string,
  containerId: string,
  interfaceName = 'eth0',
  namespacePath?: string,
): ReturnType<typeof generateGuestNetwork> {
  const file = join(stateDirectory, containerId, 'interfaces', interfaceName, 'state.json');
  const record = JSON.parse(readFileSync(file, 'utf8')) as { network: Parameters<typeof Network.load>[0] };
  const network = Network.load(record.network, 'guest-view', namespacePath ?? record.network.config.namespacePath);
  try {
    return generateGuestNetwork(network.endpoints());
  } finally {
    network.close();
  }
}

export interface Conflist {
  cniVersion: string;
  name: string;
  plugins: Array<Record<string, unknown> & { type: string }>;
}

export interface CniErrorOutput {
  cniVersion: string;
  code: number;
  msg: string;
  details?: string;
}

export interface PluginRun {
  plugin: string;
  command: string;
  status: number;
  stdout: string;
  stderr: string;
  /** The signal that ended the plugin (SIGKILL of a timeout, or of a kill test). */
  signal?: NodeJS.Signals;
  /** stdout parsed, when it is JSON. */
  output?: Record<string, unknown>;
}

export class CniChainError extends Error {
  constructor(readonly run: PluginRun) {
    super(`${run.plugin} ${run.command} exited ${run.status}: ${run.stdout || run.stderr}`);
  }

  get reply(): CniErrorOutput {
    return this.run.output as unknown as CniErrorOutput;
  }
}

export function missingCniPlugins(plugins: string[] = ['bridge', 'host-local']): string | undefined {
  const missing = plugins.filter((plugin) => !existsSync(join(SYSTEM_CNI_DIRECTORY, plugin)));
  return missing.length === 0
    ? undefined
    : `CNI plugins missing in ${SYSTEM_CNI_DIRECTORY}: ${missing.join(', ')} (Debian package containernetworking-plugins)`;
}

/** libcni's FindInPath: the first CNI_PATH directory holding an executable named `type`. */
export function findPlugin(type: string, path: string = CNI_PATH): string {
  for (const directory of path.split(':')) {
    const candidate = join(directory, type);
    if (existsSync(candidate)) return candidate;
  }
  throw new Error(`no plugin ${type} in CNI_PATH ${path}`);
}

export interface Attachment {
  containerId: string;
  /** CNI_NETNS: the pod namespace's path. */
  namespacePath: string;
  interfaceName: string;
}

/**
 * The network config of vcnet-cni alone, as libcni gives it when the interface plugin before it left
 * `interfaceName` (default eth0) in `namespacePath` with makePod()'s address and gateway (or
 * `address` and `gateway`): its prevResult lists that interface (with `mac` when given). `settings`
 * are vcnet-cni's own (stateDir, model...).
 */
export function vcnetCniAlone(options: {
  name: string;
  namespacePath: string;
  settings?: Record<string, unknown>;
  interfaceName?: string;
  mac?: string;
  address?: string;
  gateway?: string;
}): Record<string, unknown> & { type: 'vcnet-cni' } {
  return {
    cniVersion: '1.0.0',
    name: options.name,
    type: 'vcnet-cni',
    ...options.settings,
    prevResult: {
      cniVersion: '1.0.0',
      interfaces: [
        {
          name: options.interfaceName ?? 'eth0',
          ...(options.mac === undefined ? {} : { mac: options.mac }),
          sandbox: options.namespacePath,
        },
      ],
      ips: [{ address: options.address ?? '10.200.0.2/24', gateway: options.gateway ?? '10.200.0.1', interface: 0 }],
    },
  };
}

/**
 * The CNI_* variables a runtime gives a plugin running `command` for one attachment (CNI_PATH the
 * system's plugins), for tests that run vcnet-cni themselves.
 */
export function cniVariables(
  command: string,
  attachment: { containerId: string; namespacePath: string; interfaceName?: string },
): Record<string, string> {
  return {
    CNI_COMMAND: command,
    CNI_CONTAINERID: attachment.containerId,
    CNI_NETNS: attachment.namespacePath,
    CNI_IFNAME: attachment.interfaceName ?? 'eth0',
    CNI_PATH: SYSTEM_CNI_DIRECTORY,
  };
}

/**
 * vcnet-cni alone over makePod()'s eth0 (its MAC in prevResult), for tests that run its program with
 * node themselves: the config (records in `stateDir`) and the environment of each command (PATH, the
 * CNI_* variables, `registry` as VCNET_STATE_REGISTRY).
 */
export function vcnetCniOverPod(options: {
  name: string;
  pod: TestNamespace;
  containerId: string;
  stateDir: string;
  registry: string;
}): {
  config: string;
  environment: (command: string) => Record<string, string>;
  /** Runs vcnet-cni's built program (dist/cni/main.js) with `command` (ADD, CHECK, DEL) over this config. */
  run: (command: string) => SpawnSyncReturns<string>;
} {
  const { pod, containerId } = options;
  const config = JSON.stringify(
    vcnetCniAlone({
      name: options.name,
      namespacePath: pod.path,
      mac: linkMac(pod),
      settings: { stateDir: options.stateDir },
    }),
  );
  const environment = (command: string) => ({
    PATH: process.env.PATH ?? '',
    ...cniVariables(command, { containerId, namespacePath: pod.path }),
    VCNET_STATE_REGISTRY: options.registry,
  });
  return {
    config,
    environment,
    run: (command) =>
      spawnSync(process.execPath, [VCNET_CNI_PROGRAM], {
        input: config,
        encoding: 'utf8',
        timeout: 30_000,
        env: environment(command),
      }),
  };
}

/** A bridge network (host-local leases in dataDir) followed by vcnet-cni with `vcnet` settings. */
export function bridgeThenVcnet(options: {
  name: string;
  bridge: string;
  subnet: string;
  dataDir: string;
  cniVersion?: string;
  vcnet?: Record<string, unknown>;
}): Conflist {
  // The bridge entry is the demo's own (src/demo/cni-plugin-runner.ts), without the list-level fields.
  const { cniVersion: _version, name: _name, ...bridge } = bridgeNetwork({ ...options, defaultRoute: true });
  return {
    cniVersion: options.cniVersion ?? '1.0.0',
    name: options.name,
    plugins: [
      { ...bridge, type: 'bridge' },
      { type: 'vcnet-cni', ...options.vcnet },
    ],
  };
}

function pluginRun(plugin: string, command: string, status: number, stdout: string, stderr: string): PluginRun {
  const run: PluginRun = { plugin, command, status, stdout, stderr };
  try {
    if (stdout.trim()) run.output = JSON.parse(stdout) as Record<string, unknown>;
  } catch {
    // not JSON: the assertion on stdout shows it
  }
  return run;
}

/** Runs plugins in `node` for one container attachment. */
export class CniRuntime {
  constructor(
    readonly node: TestNamespace,
    readonly attachment: Attachment,
    readonly extraEnvironment: Record<string, string> = {},
  ) {}

  /** The environment a plugin runs `command` in, as libcni gives it, with `extra` on top (for tests that exec a plugin themselves). */
  environment(command: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
    return {
      PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
      // The wrapper runs the same node as the tests.
      VCNET_NODE: process.execPath,
      ...cniVariables(command, this.attachment),
      // vcnet-cni's wrapper beside the system's plugins.
      CNI_PATH,
      // The test run's own state directory registry (test/global-setup.ts), so a plugin run never
      // registers a test's state directory in the host's /run/vcnet registry.
      ...(process.env.VCNET_STATE_REGISTRY ? { VCNET_STATE_REGISTRY: process.env.VCNET_STATE_REGISTRY } : {}),
      ...this.extraEnvironment,
      ...extra,
    };
  }

  /** Where plugins are looked up: the runtime's CNI_PATH when the test set one. */
  private pluginFile(plugin: string): string {
    return findPlugin(plugin, this.extraEnvironment.CNI_PATH ?? CNI_PATH);
  }

  /**
   * One plugin, one command, the way libcni execs it; never throws. `input` replaces the config as
   * stdin (for undecodable input); `timeoutMs` kills a plugin that hangs (status -1, stderr says so).
   */
  invoke(
    command: string,
    config: Record<string, unknown>,
    environment: Record<string, string> = {},
    options: { input?: string; timeoutMs?: number } = {},
  ): PluginRun {
    const plugin = String(config.type);
    // `ip` by absolute path: a test may give the plugins a PATH without it (or without node).
    const result = spawnSync(IP_COMMAND, ['netns', 'exec', this.node.name, this.pluginFile(plugin)], {
      input: options.input ?? JSON.stringify(config),
      encoding: 'utf8',
      env: this.environment(command, environment),
      ...(options.timeoutMs === undefined ? {} : { timeout: options.timeoutMs, killSignal: 'SIGKILL' as const }),
    });
    const killed = result.signal
      ? `killed by ${result.signal}${options.timeoutMs === undefined ? '' : ` (timeout ${options.timeoutMs} ms)`}\n`
      : '';
    const run = pluginRun(plugin, command, result.status ?? -1, result.stdout, killed + result.stderr);
    if (result.signal) run.signal = result.signal;
    return run;
  }

  /** `invoke` without waiting, to run several plugins at once. */
  invokeConcurrently(command: string, config: Record<string, unknown>): Promise<PluginRun> {
    const plugin = String(config.type);
    const child = spawn(IP_COMMAND, ['netns', 'exec', this.node.name, this.pluginFile(plugin)], {
      env: this.environment(command, {}),
    });
    child.stdin.end(JSON.stringify(config));
    return collectOutput(child).done.then(({ status, stdout, stderr }) =>
      pluginRun(plugin, command, status, stdout, stderr),
    );
  }

  private configOf(list: Conflist, plugin: Conflist['plugins'][number], previous?: Record<string, unknown>) {
    return {
      ...plugin,
      cniVersion: list.cniVersion,
      name: list.name,
      ...(previous ? { prevResult: previous } : {}),
    };
  }

  /** ADD of the whole list; `afterPlugin` sees each result as it comes. Throws CniChainError on failure. */
  add(list: Conflist, afterPlugin?: (position: number, result: Record<string, unknown>) => void) {
    let result: Record<string, unknown> | undefined;
    list.plugins.forEach((plugin, position) => {
      const run = this.invoke('ADD', this.configOf(list, plugin, result));
      if (run.status !== 0 || !run.output) throw new CniChainError(run);
      result = run.output;
      afterPlugin?.(position, result);
    });
    return result!;
  }

  /** CHECK of the whole list in order, each plugin getting the cached result. */
  check(list: Conflist, cached: Record<string, unknown>): void {
    for (const plugin of list.plugins) {
      const run = this.invoke('CHECK', this.configOf(list, plugin, cached));
      if (run.status !== 0) throw new CniChainError(run);
    }
  }

  /** DEL in reverse order; `beforePlugin` runs before each plugin's DEL (position in the list). */
  del(list: Conflist, cached?: Record<string, unknown>, beforePlugin?: (position: number) => void): void {
    for (let position = list.plugins.length - 1; position >= 0; position--) {
      beforePlugin?.(position);
      const run = this.invoke('DEL', this.configOf(list, list.plugins[position]!, cached));
      if (run.status !== 0) throw new CniChainError(run);
    }
  }
}

/** A chain of one interface plugin and vcnet-cni, added for the pod's eth0 (addAfterPlugin). */
export interface ChainAdded {
  list: Conflist;
  runtime: CniRuntime;
  /** The chain's final result. */
  result: Record<string, unknown>;
  /** The pod as the first plugin left it, before vcnet-cni ran (fingerprint). */
  afterFirstPlugin: Record<string, unknown>;
  /** vcnet-cni's stateDir: `stateDir` below the test's directory. */
  recordDirectory: string;
}

/**
 * ADD of the list `name`: `firstPlugin` (bridge, macvlan...), then vcnet-cni in `model` with its
 * records in `directory`/state, for eth0 of `pod` as a new container, the plugins run in `node`.
 */
export function addAfterPlugin(
  firstPlugin: Conflist['plugins'][number],
  options: { name: string; model: string; directory: string; node: TestNamespace; pod: TestNamespace },
): ChainAdded {
  const recordDirectory = join(options.directory, 'state');
  const list: Conflist = {
    cniVersion: '1.0.0',
    name: options.name,
    plugins: [firstPlugin, { type: 'vcnet-cni', model: options.model, stateDir: recordDirectory }],
  };
  const attachment = {
    containerId: `ctr-${randomBytes(4).toString('hex')}`,
    namespacePath: options.pod.path,
    interfaceName: 'eth0',
  };
  const runtime = new CniRuntime(options.node, attachment);
  let afterFirstPlugin: Record<string, unknown> = {};
  const result = runtime.add(list, (position) => {
    if (position === 0) afterFirstPlugin = fingerprint(options.pod);
  });
  return { list, runtime, result, afterFirstPlugin, recordDirectory };
}

/** The VM of a vcnet-cni ADD, stood in for by a relay (vm-stand-in.ts) to a tap in a "guest" namespace. */
export interface VmStandIn {
  /** The guest's NIC as the record gives it; the guest tap has its MAC and MTU already. */
  guestInterface: GuestInterface;
  /** The record's tapDevicePath: the macvtap's device file the relay opened (undefined with a tap). */
  devicePath: string | undefined;
  /** The relay stopped (the VM gone) before DEL, as a runtime stops the sandbox before its network. */
  stop(): Promise<void>;
}

/**
 * The VM after `runtime`'s ADD put vcnet-cni in `model` on the pod's interface: a relay from the record's
 * device (the tap's queue, or the macvtap's device file) to a tap named eth0 in `guest`, given the
 * MAC and MTU the record gives the guest's NIC, as the agent sets them; its addresses and its `up`
 * are the caller's. The relay is stopped after the test (`cleanup`), if the test did not stop it.
 */
export async function startVmStandIn(
  runtime: CniRuntime,
  options: {
    model: string;
    /** vcnet-cni's stateDir. */
    stateDirectory: string;
    guest: TestNamespace;
    cleanup: TestCleanup;
  },
): Promise<VmStandIn> {
  const { model, stateDirectory, guest } = options;
  const { containerId, namespacePath: podPath, interfaceName } = runtime.attachment;
  const [guestInterface] = recordedGuestNetwork(stateDirectory, containerId, interfaceName).interfaces;
  if (guestInterface === undefined) throw new Error(`the record of ${containerId} gives the guest no interface`);
  const recordFile = join(stateDirectory, containerId, 'interfaces', interfaceName, 'state.json');
  const record = JSON.parse(readFileSync(recordFile, 'utf8')) as {
    network: { endpoints: Array<{ plumbing?: { tapDevicePath?: string } }> };
  };
  const devicePath = record.network.endpoints[0]?.plumbing?.tapDevicePath;
  if (model === 'macvtap' && devicePath === undefined) throw new Error(`${recordFile} names no macvtap device file`);
  const relay = await (model === 'macvtap'
    ? relayMacvtapToGuest(devicePath!, guest.path, 'eth0')
    : relayTapToGuest(podPath, 'tap0_kata', guest.path, 'eth0'));
  const stop = async () => {
    if (relay.exitCode !== null || relay.signalCode !== null) return;
    const exited = new Promise((resolve) => relay.once('exit', resolve));
    relay.kill('SIGKILL');
    await exited;
  };
  options.cleanup.defer(stop);
  guest.exec('ip', ['link', 'set', 'eth0', 'address', guestInterface.hwAddr, 'mtu', String(guestInterface.mtu)]);
  return { guestInterface, devicePath, stop };
}
