/**
 * Real CNI clients for tests: containerd 1.6 driven by `ctr run --cni`, and podman 4 with its CNI
 * backend, each confined to a temp directory (own root, state, socket, storage, config) and running
 * the CNI plugins inside a "node" network namespace, so bridges and gateway addresses never land in
 * the host's namespace. vcnet-cni is the launcher `vcnet install-cni` writes, found through the
 * plugin directory the client is given; containers run a busybox-static rootfs (no image registry).
 * Where /sys/fs/cgroup has no cgroup filesystem, the daemons and clients run in a CgroupMountNamespace.
 */
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { isIP } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'vitest';
import { CgroupMountNamespace, type CgroupPlan, inNamespaces, planCgroups } from './cgroups.js';
import { collectOutput } from './child-output.js';
import { vcnet } from './cli.js';
import { missingCniPlugins, SYSTEM_CNI_DIRECTORY } from './cni.js';
import { cleanupNamespaces, makeNamespace, type TestNamespace } from './namespace.js';

const BUSYBOX = ['/bin/busybox', '/usr/bin/busybox'].find((path) => existsSync(path));

const COMMAND_DIRECTORIES = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

/**
 * The environment of the runtimes and their clients: PATH gets the usual command directories, where
 * missingCommands looked, since a test run's PATH may be as short as /usr/bin:/bin while containerd's
 * shim looks runc (/usr/sbin on Debian) up in PATH.
 */
export const RUNTIME_ENVIRONMENT: NodeJS.ProcessEnv = {
  ...process.env,
  PATH: [...new Set([...(process.env.PATH ?? '').split(':').filter(Boolean), ...COMMAND_DIRECTORIES])].join(':'),
};

/** `command` in the usual directories (tc is in /usr/sbin alone on Debian), else as named. */
function commandPath(command: string): string {
  return COMMAND_DIRECTORIES.map((directory) => join(directory, command)).find((path) => existsSync(path)) ?? command;
}

/** The first of `commands` missing from the usual directories, as a skip reason. */
export function missingCommands(commands: string[]): string | undefined {
  const missing = commands.filter((command) => commandPath(command) === command);
  return missing.length === 0 ? undefined : `${missing.join(', ')} not installed`;
}

export function missingBusybox(): string | undefined {
  return BUSYBOX ? undefined : 'busybox (Debian busybox-static) is not installed: no container rootfs';
}

export async function waitFor<T>(what: string, probe: () => T | undefined | false, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

export interface ProcessOutcome {
  status: number;
  stdout: string;
  stderr: string;
}

/** What `child` printed and its status, once it has closed. */
export function collect(child: ChildProcess): Promise<ProcessOutcome> {
  return collectOutput(child).done;
}

/** Processes naming `directory` on their command line, as `pid command line`. */
function processesNaming(directory: string): string[] {
  const found: string[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const commandLine = readFileSync(`/proc/${entry}/cmdline`, 'utf8').replaceAll('\0', ' ').trim();
      if (commandLine.includes(directory)) found.push(`${entry} ${commandLine}`);
    } catch {
      // exited meanwhile
    }
  }
  return found;
}

/**
 * Waits up to `graceMs` for the processes a fixture started (daemons, shims, conmon, clients: all
 * name its directory) to exit, e.g. podman's cleanup after `rm`; kills the rest so the directory can
 * go, and returns them: a test must leave none.
 */
export async function reapProcesses(directory: string, graceMs = 30_000): Promise<string[]> {
  const deadline = Date.now() + graceMs;
  let left = processesNaming(directory);
  while (left.length > 0 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 200));
    left = processesNaming(directory);
  }
  for (const line of left) {
    try {
      process.kill(Number(line.split(' ')[0]), 'SIGKILL');
    } catch {
      // already gone
    }
  }
  return left;
}

/**
 * Whether a suite of real CNI client cases can run here, and how it gets cgroups: `skip` names the
 * first of root, the CNI `plugins`, busybox and cgroups that is missing (the suite adds its runtime's
 * commands); `cgroupPlan` is what startRuntimeSuite takes.
 */
export function planRuntimeSuite(plugins?: string[]): { skip: string | undefined; cgroupPlan: CgroupPlan } {
  if (process.getuid?.() !== 0) {
    return { skip: 'real CNI client tests need root (namespaces, containers)', cgroupPlan: {} };
  }
  const cgroupPlan = planCgroups();
  return { skip: missingCniPlugins(plugins) ?? missingBusybox() ?? cgroupPlan.skip, cgroupPlan };
}

/** What a suite's beforeAll makes for its runtime: the directory, its client fixture, the cgroup mount namespace. */
export interface RuntimeSuite {
  directory: string;
  fixture: ClientFixture;
  cgroups: CgroupMountNamespace | undefined;
}

/**
 * The start of a suite of one runtime's containers: the cgroup mount namespace when the plan needs
 * one, a directory named from `directoryPrefix`, and a fixture whose node namespace (`nodePrefix`)
 * has `bridge` over `subnet`. endRuntimeSuite undoes it.
 */
export async function startRuntimeSuite(
  cgroupPlan: CgroupPlan,
  node: { directoryPrefix: string; nodePrefix: string; bridge: string; subnet: string },
): Promise<RuntimeSuite> {
  const cgroups = cgroupPlan.script ? await CgroupMountNamespace.start(cgroupPlan.script) : undefined;
  const directory = mkdtempSync(join(tmpdir(), node.directoryPrefix));
  const fixture = new ClientFixture(directory, makeNamespace(node.nodePrefix), node.bridge, node.subnet);
  return { directory, fixture, cgroups };
}

/**
 * The end of a suite of one runtime's containers, after the runtime itself was stopped: its processes
 * reaped, the cgroup mount namespace stopped, the suite's namespaces and directory removed; then
 * asserts that none of the runtime's processes was left running.
 */
export async function endRuntimeSuite(
  directory: string | undefined,
  cgroups: CgroupMountNamespace | undefined,
): Promise<void> {
  const reaped = directory ? await reapProcesses(directory) : [];
  const left = (await cgroups?.stop()) ?? [];
  cleanupNamespaces();
  if (directory) rmSync(directory, { recursive: true, force: true });
  expect(reaped, "the runtime's processes left running").toEqual([]);
  expect(left, 'processes left in the cgroup mount namespace').toEqual([]);
}

/** `ip -j` / `tc -j` in a namespace given by path (a container's, which has no name). */
export function namespaceJson<T>(namespacePath: string, command: 'ip' | 'tc', ...args: string[]): T {
  const output = execFileSync('nsenter', [`--net=${namespacePath}`, commandPath(command), '-j', ...args], {
    encoding: 'utf8',
  });
  return JSON.parse(output || '[]') as T;
}

/** Where the mirred action of `device`'s ingress filters sends packets. */
export function redirectOf(namespacePath: string, device: string): string | undefined {
  const filters = namespaceJson<Array<{ options?: { actions?: Array<{ kind: string; to_dev?: string }> } }>>(
    namespacePath,
    'tc',
    'filter',
    'show',
    'dev',
    device,
    'ingress',
  );
  return filters.flatMap((filter) => filter.options?.actions ?? []).find((action) => action.kind === 'mirred')?.to_dev;
}

/**
 * One directory with everything a client needs: a rootfs, a plugin directory (system plugins linked,
 * vcnet-cni installed by `vcnet install-cni`), a conflist directory, host-local's data and vcnet's state.
 */
export class ClientFixture {
  readonly rootfs: string;
  readonly pluginDirectory: string;
  readonly confDirectory: string;
  readonly ipamDirectory: string;
  readonly stateDirectory: string;

  constructor(
    readonly directory: string,
    readonly node: TestNamespace,
    readonly bridge: string,
    readonly subnet: string,
    pluginDirectory = join(directory, 'cni-bin'),
  ) {
    this.rootfs = join(directory, 'rootfs');
    this.pluginDirectory = pluginDirectory;
    this.confDirectory = join(directory, 'net.d');
    this.ipamDirectory = join(directory, 'ipam');
    this.stateDirectory = join(directory, 'vcnet-state');
    for (const path of [join(this.rootfs, 'bin'), this.pluginDirectory, this.confDirectory]) {
      mkdirSync(path, { recursive: true });
    }
    copyFileSync(BUSYBOX!, join(this.rootfs, 'bin', 'busybox'));
    for (const applet of ['sh', 'sleep']) symlinkSync('busybox', join(this.rootfs, 'bin', applet));
    for (const plugin of ['bridge', 'host-local', 'loopback', 'bandwidth']) {
      symlinkSync(join(SYSTEM_CNI_DIRECTORY, plugin), join(this.pluginDirectory, plugin));
    }
    const installed = vcnet([
      'install-cni',
      '--bin-dir',
      this.pluginDirectory,
      '--conf-dir',
      this.confDirectory,
      '--no-conflist',
    ]);
    if (installed.status !== 0) throw new Error(`vcnet install-cni failed: ${installed.stderr}`);
  }

  /**
   * Writes the only conflist of the directory (beside the others with `keepOthers`): bridge +
   * host-local (over `subnets`, one range set each; the fixture's subnet and bridge by default), the
   * `between` plugins, then vcnet-cni with `vcnet` options; `mtu` the bridge's.
   */
  writeConflist(
    name: string,
    options: {
      cniVersion?: string;
      vcnet?: Record<string, unknown>;
      subnets?: string[];
      mtu?: number;
      bridge?: string;
      between?: Array<Record<string, unknown>>;
      keepOthers?: boolean;
    } = {},
  ): void {
    const conflist = {
      cniVersion: options.cniVersion ?? '1.0.0',
      name,
      plugins: [
        {
          type: 'bridge',
          bridge: options.bridge ?? this.bridge,
          isGateway: true,
          ipMasq: false,
          ...(options.mtu === undefined ? {} : { mtu: options.mtu }),
          ipam: {
            type: 'host-local',
            ranges: (options.subnets ?? [this.subnet]).map((subnet) => [{ subnet }]),
            dataDir: this.ipamDirectory,
          },
        },
        ...(options.between ?? []),
        { type: 'vcnet-cni', stateDir: this.stateDirectory, ...options.vcnet },
      ],
    };
    this.writeConfigFile(`10-${name}.conflist`, conflist, options.keepOthers);
  }

  /** Writes `config` as `fileName` in the conflist directory, alone there unless `keepOthers`. */
  writeConfigFile(fileName: string, config: Record<string, unknown>, keepOthers = false): void {
    if (!keepOthers) {
      for (const file of readdirSync(this.confDirectory)) rmSync(join(this.confDirectory, file), { force: true });
    }
    writeFileSync(join(this.confDirectory, fileName), JSON.stringify(config, null, 2));
  }

  /** Addresses host-local holds for `network`. */
  reservations(network: string): string[] {
    const directory = join(this.ipamDirectory, network);
    return existsSync(directory) ? readdirSync(directory).filter((name) => isIP(name) !== 0) : [];
  }

  /** Containers vcnet-cni has records for (and lock files left behind, which must be none). */
  recordedContainers(): string[] {
    if (!existsSync(this.stateDirectory)) return [];
    const locks = join(this.stateDirectory, '.locks');
    return [
      ...readdirSync(this.stateDirectory).filter((name) => name !== '.locks'),
      ...(existsSync(locks) ? readdirSync(locks).map((name) => `.locks/${name}`) : []),
    ];
  }

  /** Whether vcnet-cni finished ADD for `containerId`'s `interfaceName` (the record names the VM's device). */
  attached(containerId: string, interfaceName = 'eth0'): boolean {
    const record = join(this.stateDirectory, containerId, 'interfaces', interfaceName, 'state.json');
    try {
      return Boolean((JSON.parse(readFileSync(record, 'utf8')) as { device?: unknown }).device);
    } catch {
      return false;
    }
  }

  bridgePorts(): string[] {
    if (!this.node.ipJson<unknown[]>('link', 'show', 'dev', this.bridge).length) return [];
    return this.node
      .ipJson<Array<{ ifname: string }>>('link', 'show', 'master', this.bridge)
      .map((link) => link.ifname);
  }
}

/** containerd with its own root, state and socket; the CRI plugin is off (ctr needs none of it). */

/** `ctr` against the containerd listening on `socket`, in the runtimes' namespaces and environment. */
export function runCtr(cgroups: CgroupMountNamespace | undefined, socket: string, args: string[]): ProcessOutcome {
  const result = spawnSync(...inNamespaces(cgroups, 'ctr', ['--address', socket, ...args]), {
    encoding: 'utf8',
    env: RUNTIME_ENVIRONMENT,
  });
  return { status: result.status ?? -1, stdout: result.stdout, stderr: result.stderr };
}
export class Containerd {
  readonly socket: string;
  private daemon?: ChildProcess;
  private exited?: Promise<ProcessOutcome>;
  /** `ctr run` clients still running. */
  private readonly clients = new Set<ChildProcess>();

  constructor(
    readonly directory: string,
    readonly fixture: ClientFixture,
    readonly cgroups?: CgroupMountNamespace,
  ) {
    this.socket = join(directory, 'containerd.sock');
  }

  async start(): Promise<void> {
    const config = join(this.directory, 'config.toml');
    writeFileSync(
      config,
      [
        'version = 2',
        `root = "${join(this.directory, 'root')}"`,
        `state = "${join(this.directory, 'state')}"`,
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
        '[grpc]',
        `  address = "${this.socket}"`,
        '[ttrpc]',
        `  address = "${this.socket}.ttrpc"`,
        '[plugins."io.containerd.internal.v1.opt"]',
        `  path = "${join(this.directory, 'opt')}"`,
        '',
      ].join('\n'),
    );
    this.daemon = spawn(...inNamespaces(this.cgroups, 'containerd', ['--config', config]), {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: RUNTIME_ENVIRONMENT,
    });
    this.exited = collect(this.daemon);
    await waitFor('containerd to answer', () => this.ctr(['version']).status === 0, 30_000);
  }

  async stop(): Promise<void> {
    if (!this.daemon) return;
    const containers = () => this.ctr(['containers', 'list', '--quiet']).stdout.split('\n').filter(Boolean);
    // Tasks a test left running end the way tests end them: `ctr run --rm` then deletes its container
    // and runs CNI DEL (into the fixture's directories), so it must finish before the fixture goes.
    // Deleting their tasks under them instead raced with the clients and could leave a shim running.
    for (const container of containers()) this.ctr(['tasks', 'kill', '--signal', 'SIGKILL', container]);
    await waitFor('the ctr run clients to exit', () => this.clients.size === 0, 30_000).catch(() => {
      for (const client of this.clients) client.kill('SIGKILL');
    });
    // What no client removes: containers whose `ctr run` failed.
    for (const container of containers()) {
      this.ctr(['tasks', 'delete', '--force', container]);
      this.ctr(['containers', 'delete', container]);
    }
    this.daemon.kill('SIGTERM');
    await this.exited;
    this.daemon = undefined;
  }

  ctr(args: string[]): ProcessOutcome {
    return runCtr(this.cgroups, this.socket, args);
  }

  /**
   * `ctr run --rm --cni` in the node namespace. ctr reads /etc/cni/net.d and /opt/cni/bin and has no
   * flag to change them: in a private mount namespace the fixture's directories are bound there.
   * `environment` is added to ctr's, which libcni passes on to every plugin it runs.
   */
  run(id: string, environment: Record<string, string> = {}): { child: ChildProcess; done: Promise<ProcessOutcome> } {
    const optDirectory = join(this.directory, 'opt-root');
    mkdirSync(join(optDirectory, 'cni'), { recursive: true });
    if (!existsSync(join(optDirectory, 'cni', 'bin')))
      symlinkSync(this.fixture.pluginDirectory, join(optDirectory, 'cni', 'bin'));
    mkdirSync('/etc/cni/net.d', { recursive: true });
    const script = 'mount --bind "$1" /etc/cni/net.d && mount --bind "$2" /opt && shift 2 && exec "$@"';
    const child = spawn(
      ...inNamespaces(
        this.cgroups,
        'unshare',
        [
          '--mount',
          '--propagation',
          'private',
          'sh',
          '-c',
          script,
          'sh',
          this.fixture.confDirectory,
          optDirectory,
          'ctr',
          '--address',
          this.socket,
          'run',
          '--rm',
          '--cni',
          '--rootfs',
          this.fixture.rootfs,
          id,
          '/bin/sleep',
          '600',
        ],
        [`--net=${this.fixture.node.path}`],
      ),
      { env: { ...RUNTIME_ENVIRONMENT, ...environment } },
    );
    this.clients.add(child);
    child.on('close', () => this.clients.delete(child));
    return { child, done: collect(child) };
  }

  /** The pid of a running task. */
  taskPid(id: string): number | undefined {
    const line = this.ctr(['tasks', 'list'])
      .stdout.split('\n')
      .find((entry) => entry.split(/\s+/)[0] === id);
    const fields = line?.split(/\s+/);
    return fields?.[2] === 'RUNNING' ? Number(fields[1]) : undefined;
  }
}

/** podman with the CNI backend, its storage, run root and configuration in the fixture's directory. */
export class Podman {
  readonly containersConf: string;

  constructor(
    readonly directory: string,
    readonly fixture: ClientFixture,
    readonly cgroups?: CgroupMountNamespace,
  ) {
    this.containersConf = join(directory, 'containers.conf');
    writeFileSync(
      this.containersConf,
      [
        '[containers]',
        // podman raises nofile/nproc to their maximum by default, which needs CAP_SYS_RESOURCE
        // (missing in some sandboxes, such as this project's CI): ask for values any root can set.
        'default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]',
        '[network]',
        'network_backend = "cni"',
        `cni_plugin_dirs = ["${fixture.pluginDirectory}"]`,
        `network_config_dir = "${fixture.confDirectory}"`,
        '[engine]',
        'cgroup_manager = "cgroupfs"',
        'events_logger = "file"',
        `events_logfile_path = "${join(directory, 'events.log')}"`,
        // crun refuses hybrid cgroup hierarchies (v1 controllers + a v2 mount); runc does not.
        'runtime = "runc"',
        `tmp_dir = "${join(directory, 'tmp')}"`,
        // The cleanup podman that conmon runs when a container exits must read this file too.
        // And the test run's state registry, so vcnet-cni's DEL from there stays out of the host's.
        `conmon_env_vars = [${[
          `PATH=${COMMAND_DIRECTORIES.join(':')}`,
          `CONTAINERS_CONF=${this.containersConf}`,
          ...(process.env.VCNET_STATE_REGISTRY ? [`VCNET_STATE_REGISTRY=${process.env.VCNET_STATE_REGISTRY}`] : []),
        ]
          .map((entry) => JSON.stringify(entry))
          .join(', ')}]`,
        '',
      ].join('\n'),
    );
  }

  private command(args: string[]): [string, string[]] {
    return inNamespaces(
      this.cgroups,
      'podman',
      [
        '--root',
        join(this.directory, 'storage'),
        '--runroot',
        join(this.directory, 'run'),
        '--storage-driver',
        'vfs',
        '--network-backend',
        'cni',
        ...args,
      ],
      [`--net=${this.fixture.node.path}`],
    );
  }

  private get environment(): NodeJS.ProcessEnv {
    return { ...RUNTIME_ENVIRONMENT, CONTAINERS_CONF: this.containersConf };
  }

  /**
   * podman in the node namespace (its CNI plugins run where podman runs); `environment` is added to
   * podman's, which libcni passes on to every plugin it runs.
   */
  podman(args: string[], environment: Record<string, string> = {}): ProcessOutcome {
    const result = spawnSync(...this.command(args), {
      encoding: 'utf8',
      env: { ...this.environment, ...environment },
    });
    return { status: result.status ?? -1, stdout: result.stdout, stderr: result.stderr };
  }

  podmanAsync(args: string[]): Promise<ProcessOutcome> {
    return collect(spawn(...this.command(args), { env: this.environment }));
  }

  runArgs(name: string, network: string): string[] {
    return [
      'run',
      '--detach',
      '--name',
      name,
      '--network',
      network,
      '--rootfs',
      this.fixture.rootfs,
      '/bin/sleep',
      '600',
    ];
  }

  removeAll(): void {
    this.podman(['rm', '--all', '--force', '--time', '0']);
  }
}
