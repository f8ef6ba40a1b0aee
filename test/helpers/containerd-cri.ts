/**
 * containerd 1.6 with its CRI plugin on, driven over its gRPC socket as kubelet drives it: the
 * runtime.v1 RuntimeService calls that start and end a pod sandbox (Version, RunPodSandbox with a
 * runtime handler, PodSandboxStatus, StopPodSandbox, RemovePodSandbox). The messages are the few of
 * k8s.io/cri-api's api.proto that these calls need (cri-runtime.proto, compiled by protoc into a
 * descriptor set when a suite starts, then encoded and decoded by @bufbuild/protobuf, vcnet's own
 * protobuf library); @grpc/grpc-js carries them. The daemon runs in the suite's node namespace, so
 * the CNI plugins it runs put bridges and host ends there; its root, state, socket, pod namespaces
 * and CNI directories are all in the suite's directory. The sandbox image is built in the test from
 * busybox-static (no registry is reachable) and imported into the CRI plugin's namespace, k8s.io.
 */
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  closeSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  createFileRegistry,
  type DescMessage,
  fromBinary,
  fromJson,
  type JsonValue,
  toBinary,
  toJson,
} from '@bufbuild/protobuf';
import { FileDescriptorSetSchema } from '@bufbuild/protobuf/wkt';
import { Client, credentials, type ServiceError } from '@grpc/grpc-js';
import { type CgroupMountNamespace, inNamespaces } from './cgroups.js';
import { collect, type ProcessOutcome, RUNTIME_ENVIRONMENT, runCtr, waitFor } from './container-runtimes.js';

const PROTO_DIRECTORY = fileURLToPath(new URL('.', import.meta.url));
const PROTO_FILE = 'cri-runtime.proto';
const SERVICE = 'runtime.v1.RuntimeService';

/** The image the CRI plugin's `sandbox_image` names: busybox sleeping, in place of pause. */
export const SANDBOX_IMAGE = 'vcnet.test/sandbox:1';

/** The message types of cri-runtime.proto, by their short name (protoc writes the set to a file: not to a pipe). */
function loadMessages(): (name: string) => DescMessage {
  const scratch = mkdtempSync(join(tmpdir(), 'vcnet-cri-proto-'));
  let set: Buffer;
  try {
    const output = join(scratch, 'cri-runtime.pb');
    execFileSync('protoc', [`--descriptor_set_out=${output}`, '-I', PROTO_DIRECTORY, PROTO_FILE]);
    set = readFileSync(output);
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
  const registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, set));
  return (name) => {
    const message = registry.getMessage(`runtime.v1.${name}`);
    if (!message) throw new Error(`${PROTO_FILE} has no message ${name}`);
    return message;
  };
}

export interface PodSandboxMetadata {
  name: string;
  uid: string;
  namespace: string;
  attempt?: number;
}

/** What kubelet adds to a pod sandbox's config from the pod's spec (cri-runtime.proto's names, camelCase). */
export interface PodSandboxExtras {
  hostname?: string;
  dnsConfig?: { servers?: string[]; searches?: string[]; options?: string[] };
  /** A container port published on the node (`hostPort`), as kubelet sends it. */
  portMappings?: Array<{ protocol?: 'TCP' | 'UDP' | 'SCTP'; containerPort: number; hostPort: number; hostIp?: string }>;
  annotations?: Record<string, string>;
}

export interface PodSandboxStatus {
  status: {
    id: string;
    state: 'SANDBOX_READY' | 'SANDBOX_NOTREADY';
    runtimeHandler: string;
    network?: { ip?: string; additionalIps?: Array<{ ip: string }> };
  };
  /** Verbose only: containerd's `info` key holds the sandbox as JSON (its pid among it). */
  info?: Record<string, string>;
}

/** The RuntimeService calls kubelet makes for a pod sandbox, over the CRI plugin's gRPC socket. */
export class CriRuntimeClient {
  private readonly client: Client;
  private readonly message = loadMessages();

  constructor(socket: string) {
    this.client = new Client(`unix:${socket}`, credentials.createInsecure());
  }

  /** One unary call; `request` and the answer in protobuf's JSON mapping (camelCase names). */
  call<T>(method: string, request: JsonValue, timeoutMs = 120_000): Promise<T> {
    const requestType = this.message(`${method}Request`);
    const responseType = this.message(method === 'PodSandboxStatus' ? 'PodSandboxStatusResponse' : `${method}Response`);
    return new Promise<T>((resolve, reject) => {
      this.client.makeUnaryRequest(
        `/${SERVICE}/${method}`,
        (value: JsonValue) => Buffer.from(toBinary(requestType, fromJson(requestType, value))),
        (bytes: Buffer) => toJson(responseType, fromBinary(responseType, bytes), { alwaysEmitImplicit: true }) as T,
        request,
        { deadline: Date.now() + timeoutMs },
        (error: ServiceError | null, response?: T) => (error ? reject(error) : resolve(response as T)),
      );
    });
  }

  version(): Promise<{ runtimeName: string; runtimeVersion: string; runtimeApiVersion: string }> {
    return this.call('Version', { version: 'v1' });
  }

  /**
   * RunPodSandbox as kubelet sends it (its log directory and a hostname, the pod's name unless
   * `extra` gives one; its DNS config, port mappings and annotations), giving the sandbox id.
   */
  async runPodSandbox(
    metadata: PodSandboxMetadata,
    runtimeHandler: string,
    logDirectory: string,
    extra: PodSandboxExtras = {},
  ): Promise<string> {
    const response = await this.call<{ podSandboxId: string }>('RunPodSandbox', {
      config: {
        metadata: { attempt: 0, ...metadata },
        hostname: extra.hostname ?? metadata.name,
        logDirectory,
        ...(extra.dnsConfig ? { dnsConfig: { ...extra.dnsConfig } } : {}),
        ...(extra.portMappings ? { portMappings: extra.portMappings.map((mapping) => ({ ...mapping })) } : {}),
        labels: { 'io.kubernetes.pod.name': metadata.name, 'io.kubernetes.pod.namespace': metadata.namespace },
        ...(extra.annotations ? { annotations: { ...extra.annotations } } : {}),
      },
      runtimeHandler,
    });
    return response.podSandboxId;
  }

  podSandboxStatus(id: string, verbose = false): Promise<PodSandboxStatus> {
    return this.call('PodSandboxStatus', { podSandboxId: id, verbose });
  }

  /** The pid of the sandbox's process (its network namespace is the pod's), from the verbose status. */
  async sandboxPid(id: string): Promise<number> {
    const status = await this.podSandboxStatus(id, true);
    const pid = (JSON.parse(status.info?.info ?? '{}') as { pid?: number }).pid;
    if (!pid) throw new Error(`PodSandboxStatus of ${id} names no pid: ${JSON.stringify(status.info)}`);
    return pid;
  }

  /** Where the CRI plugin mounted the sandbox's network namespace (the CNI_NETNS of its plugins). */
  async sandboxNamespaceFile(id: string): Promise<string> {
    const status = await this.podSandboxStatus(id, true);
    const info = JSON.parse(status.info?.info ?? '{}') as {
      runtimeSpec?: { linux?: { namespaces?: Array<{ type: string; path?: string }> } };
    };
    const path = info.runtimeSpec?.linux?.namespaces?.find((namespace) => namespace.type === 'network')?.path;
    if (!path) throw new Error(`PodSandboxStatus of ${id} names no network namespace path`);
    return path;
  }

  async stopPodSandbox(id: string): Promise<void> {
    await this.call('StopPodSandbox', { podSandboxId: id });
  }

  async removePodSandbox(id: string): Promise<void> {
    await this.call('RemovePodSandbox', { podSandboxId: id });
  }

  close(): void {
    this.client.close();
  }
}

function sha256(bytes: Buffer): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

/**
 * An OCI image archive (image layout, tarred) of one layer, busybox with `sleep` and `sh`, whose
 * entrypoint sleeps for good: what the pause image does for a sandbox, without a registry.
 */
export function sandboxImageArchive(directory: string, busybox: string): string {
  const rootfs = join(directory, 'sandbox-rootfs');
  mkdirSync(join(rootfs, 'bin'), { recursive: true });
  copyFileSync(busybox, join(rootfs, 'bin', 'busybox'));
  for (const applet of ['sh', 'sleep']) symlinkSync('busybox', join(rootfs, 'bin', applet));
  const layout = join(directory, 'sandbox-image');
  const blobs = join(layout, 'blobs', 'sha256');
  mkdirSync(blobs, { recursive: true });
  const blob = (bytes: Buffer) => {
    const digest = sha256(bytes);
    writeFileSync(join(blobs, digest.slice('sha256:'.length)), bytes);
    return { digest, size: bytes.length };
  };
  const layer = execFileSync('tar', ['-C', rootfs, '--owner=0', '--group=0', '--numeric-owner', '-cf', '-', '.'], {
    maxBuffer: 64 << 20,
  });
  const layerBlob = blob(layer);
  const configBlob = blob(
    Buffer.from(
      JSON.stringify({
        architecture: process.arch === 'x64' ? 'amd64' : process.arch,
        os: 'linux',
        config: { Entrypoint: ['/bin/sleep', '2147483647'] },
        rootfs: { type: 'layers', diff_ids: [layerBlob.digest] },
      }),
    ),
  );
  const manifestBlob = blob(
    Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...configBlob },
        layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', ...layerBlob }],
      }),
    ),
  );
  writeFileSync(join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  writeFileSync(
    join(layout, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [
        {
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          ...manifestBlob,
          annotations: { 'io.containerd.image.name': SANDBOX_IMAGE },
        },
      ],
    }),
  );
  const archive = join(directory, 'sandbox-image.tar');
  execFileSync('tar', ['-C', layout, '-cf', archive, '.']);
  return archive;
}

export interface CriNetworks {
  /** CNI plugin directory (the CRI plugin has one for every handler). */
  binDirectory: string;
  /** The CRI plugin's `conf_dir`: the network of pods of the default handler. */
  defaultConfDirectory: string;
  /** Runtime handlers with a `cni_conf_dir` of their own (runc's shim, as a VM runtime's stand-in). */
  handlerConfDirectories: Record<string, string>;
}

/** containerd with the CRI plugin on, in the node namespace `nodePath`. */
export class ContainerdWithCri {
  readonly socket: string;
  readonly configPath: string;
  private daemon?: ChildProcess;
  private exited?: Promise<ProcessOutcome>;

  constructor(
    readonly directory: string,
    readonly nodePath: string,
    readonly networks: CriNetworks,
    readonly cgroups?: CgroupMountNamespace,
  ) {
    this.socket = join(directory, 'containerd.sock');
    this.configPath = join(directory, 'config.toml');
    const cri = 'plugins."io.containerd.grpc.v1.cri"';
    const runtimes = `${cri}.containerd.runtimes`;
    writeFileSync(
      this.configPath,
      [
        'version = 2',
        `root = "${join(directory, 'root')}"`,
        `state = "${join(directory, 'state')}"`,
        '[grpc]',
        `  address = "${this.socket}"`,
        '[ttrpc]',
        `  address = "${this.socket}.ttrpc"`,
        '[plugins."io.containerd.internal.v1.opt"]',
        `  path = "${join(directory, 'opt')}"`,
        `[${cri}]`,
        `  sandbox_image = "${SANDBOX_IMAGE}"`,
        // The streaming server (exec, attach) listens in the node namespace, on a port of its choosing.
        '  stream_server_address = "127.0.0.1"',
        '  stream_server_port = "0"',
        // Pod namespaces under the state directory, not the host's /var/run/netns.
        '  netns_mounts_under_state_dir = true',
        '  enable_selinux = false',
        // The sandbox's oom_score_adj (-998) held to containerd's own: lowering it needs
        // CAP_SYS_RESOURCE, which some sandboxes lack (this project's CI; runc's init then fails).
        '  restrict_oom_score_adj = true',
        `[${cri}.containerd]`,
        // The image's layer unpacked by copying: works on any filesystem the directory is on.
        '  snapshotter = "native"',
        '  default_runtime_name = "runc"',
        `[${runtimes}.runc]`,
        '  runtime_type = "io.containerd.runc.v2"',
        ...Object.entries(networks.handlerConfDirectories).flatMap(([handler, confDirectory]) => [
          `[${runtimes}.${handler}]`,
          '  runtime_type = "io.containerd.runc.v2"',
          `  cni_conf_dir = "${confDirectory}"`,
          '  cni_max_conf_num = 1',
        ]),
        `[${cri}.cni]`,
        `  bin_dir = "${networks.binDirectory}"`,
        `  conf_dir = "${networks.defaultConfDirectory}"`,
        '  max_conf_num = 1',
        '',
      ].join('\n'),
    );
  }

  /** containerd's log (its stderr), appended to by each start. */
  get logPath(): string {
    return join(this.directory, 'containerd.log');
  }

  /** The end of containerd's log, for the message of a call that failed. */
  logTail(lines = 40): string {
    return readLines(this.logPath).slice(-lines).join('\n');
  }

  async start(): Promise<void> {
    const log = openSync(this.logPath, 'a');
    try {
      this.daemon = spawn(
        ...inNamespaces(this.cgroups, 'containerd', ['--config', this.configPath], [`--net=${this.nodePath}`]),
        { stdio: ['ignore', 'ignore', log], env: RUNTIME_ENVIRONMENT },
      );
    } finally {
      closeSync(log);
    }
    this.exited = collect(this.daemon);
    let exited: ProcessOutcome | undefined;
    void this.exited.then((outcome) => {
      exited = outcome;
    });
    await waitFor(
      'containerd to answer',
      () => {
        if (exited) throw new Error(`containerd exited ${exited.status}: ${this.logTail()}`);
        return this.ctr(['version']).status === 0;
      },
      30_000,
    );
  }

  async stop(): Promise<void> {
    if (!this.daemon) return;
    this.daemon.kill('SIGTERM');
    await this.exited;
    this.daemon = undefined;
  }

  ctr(args: string[]): ProcessOutcome {
    return runCtr(this.cgroups, this.socket, args);
  }

  /** Imports the sandbox image into the CRI plugin's namespace, unpacked for its snapshotter. */
  importSandboxImage(archive: string): void {
    const imported = this.ctr(['-n', 'k8s.io', 'images', 'import', '--snapshotter', 'native', archive]);
    if (imported.status !== 0) throw new Error(`ctr images import failed: ${imported.stderr}`);
  }

  /** The pid of the shim serving `sandboxId` (a shim outlives a containerd that stops). */
  shimPid(sandboxId: string): number | undefined {
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        const args = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
        if (
          args.some((arg) => arg.endsWith('containerd-shim-runc-v2')) &&
          args.includes(sandboxId) &&
          args.includes(this.socket)
        )
          return Number(entry);
      } catch {
        // exited meanwhile
      }
    }
    return undefined;
  }

  /** Runs `command` where containerd's mounts are (the cgroup mount namespace, when there is one). */
  inMountNamespace(command: string, args: string[]): ProcessOutcome {
    const result = spawnSync(...inNamespaces(this.cgroups, command, args), { encoding: 'utf8' });
    return { status: result.status ?? -1, stdout: result.stdout, stderr: result.stderr };
  }

  /** A file the CRI plugin wrote for sandbox `id` (its `resolv.conf`, `hostname`), or undefined. */
  sandboxFile(id: string, name: string): string | undefined {
    const path = join(this.directory, 'root', 'io.containerd.grpc.v1.cri', 'sandboxes', id, name);
    return existsSync(path) ? readFileSync(path, 'utf8') : undefined;
  }

  /** Sandbox containers the CRI plugin still has in containerd (none once every pod is removed). */
  containers(): string[] {
    return this.ctr(['-n', 'k8s.io', 'containers', 'list', '--quiet']).stdout.split('\n').filter(Boolean);
  }
}

/** The pod network namespace files the CRI plugin has under its state directory. */
export function podNamespaceFiles(directory: string): string[] {
  const netns = join(directory, 'state', 'io.containerd.grpc.v1.cri', 'netns');
  return existsSync(netns) ? readdirSync(netns) : [];
}

export function readLines(path: string): string[] {
  try {
    return readFileSync(path, 'utf8').split('\n').filter(Boolean);
  } catch {
    return [];
  }
}
