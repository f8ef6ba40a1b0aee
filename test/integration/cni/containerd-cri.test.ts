/**
 * vcnet-cni under containerd 1.6's CRI plugin, driven over its gRPC socket the way kubelet drives it
 * (RunPodSandbox with a runtime handler, PodSandboxStatus, StopPodSandbox, RemovePodSandbox), with
 * the setup docs/cni.md gives: the `vm` runtime handler reads its own `cni_conf_dir`, holding the
 * bridge + host-local + vcnet-cni conflist `vcnet install-cni` wrote, and every other pod keeps the
 * default `conf_dir`, a plain bridge network. A pod of the `vm` handler gets the tap, both redirects
 * and vcnet's record, with the CNI_ARGS kubelet's pods carry; a default pod gets no vcnet; stopping
 * and removing a pod leaves nothing (reservation, record, bridge port, tap), also for several pods at
 * once, for a pod whose vcnet option is bad (RunPodSandbox fails), across a containerd restart, and
 * when the pod's namespace went while containerd was down (as in a node restart). A recorder plugin
 * chained after vcnet-cni in the `vm` network writes down each call the CRI plugin makes (command,
 * sandbox, CNI_NETNS empty or not, CNI_ARGS): libcni gives vcnet-cni the same. Four more networks, each
 * its own handler and conf dir, have result recorders before and after vcnet-cni (what it passed
 * on): portmap and bandwidth chained before vcnet-cni with their capabilities, for RunPodSandbox
 * with port mappings and bandwidth annotations; an IPv6-only and a dual-stack range; and one whose
 * conflist the reload cases change while containerd runs (a vcnet option, the stateDir, the file
 * removed or half-written). A pod with a DNS config and a hostname runs on the `vm` network.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readlinkSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CgroupMountNamespace, planCgroups } from '../../helpers/cgroups.js';
import { vcnet } from '../../helpers/cli.js';
import { missingCniPlugins } from '../../helpers/cni.js';
import {
  ClientFixture,
  endRuntimeSuite,
  missingBusybox,
  missingCommands,
  namespaceJson,
  redirectOf,
  waitFor,
} from '../../helpers/container-runtimes.js';
import {
  ContainerdWithCri,
  CriRuntimeClient,
  type PodSandboxExtras,
  type PodSandboxStatus,
  podNamespaceFiles,
  readLines,
  sandboxImageArchive,
} from '../../helpers/containerd-cri.js';
import { makeNamespace } from '../../helpers/namespace.js';

const BUSYBOX = ['/bin/busybox', '/usr/bin/busybox'].find((path) => existsSync(path));
const root = process.getuid?.() === 0;
const cgroupPlan = root ? planCgroups() : {};
const skipReason = !root
  ? 'the CRI tests need root (namespaces, containers)'
  : (missingCniPlugins(['bridge', 'host-local', 'loopback']) ??
    missingBusybox() ??
    cgroupPlan.skip ??
    missingCommands([
      'containerd',
      'ctr',
      'containerd-shim-runc-v2',
      'runc',
      'nsenter',
      'unshare',
      'protoc',
      'jq',
      'tar',
    ]));
if (skipReason) console.log(`skipping the containerd CRI plugin tests: ${skipReason}`);

const VM_HANDLER = 'vm';
/** A handler whose network's vcnet-cni entry has an option vcnet refuses. */
const BAD_VM_HANDLER = 'vm-bad-option';
const VM_NETWORK = 'vcnet-cri';
const VM_BRIDGE = 'vccri0';
const VM_SUBNET = '10.231.70.0/24';
const DEFAULT_NETWORK = 'node-default';
const DEFAULT_BRIDGE = 'vccrid0';
const DEFAULT_SUBNET = '10.231.71.0/24';
const MANY = 6;

/** A vcnet network of its own handler and conf dir: bridge + host-local over `subnets`, then vcnet-cni. */
interface ExtraNetwork {
  handler: string;
  name: string;
  bridge: string;
  subnets: string[];
  /** Plugins between bridge and vcnet-cni. */
  between?: Array<Record<string, unknown>>;
}
/** Port mappings and bandwidth: portmap and bandwidth before vcnet-cni, as docs/cni.md has them. */
const PORTS: ExtraNetwork = {
  handler: 'vm-ports',
  name: 'vcnet-cri-ports',
  bridge: 'vccrip0',
  subnets: ['10.231.72.0/24'],
  between: [
    { type: 'portmap', capabilities: { portMappings: true } },
    { type: 'bandwidth', capabilities: { bandwidth: true } },
  ],
};
const IPV6_ONLY: ExtraNetwork = {
  handler: 'vm-ipv6',
  name: 'vcnet-cri-ipv6',
  bridge: 'vccri6',
  subnets: ['fd00:231:73::/64'],
};
const DUAL_STACK: ExtraNetwork = {
  handler: 'vm-dual',
  name: 'vcnet-cri-dual',
  bridge: 'vccri46',
  subnets: ['10.231.74.0/24', 'fd00:231:74::/64'],
};
/** The network whose conflist the reload cases change under a running containerd. */
const RELOAD: ExtraNetwork = {
  handler: 'vm-reload',
  name: 'vcnet-cri-reload',
  bridge: 'vccrir0',
  subnets: ['10.231.75.0/24'],
};
const EXTRA_NETWORKS = [PORTS, IPV6_ONLY, DUAL_STACK, RELOAD];

function readFileOrEmpty(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

/** Writes `text` to `path` whole, by a rename (as `vcnet install-cni` does): a reader sees the old file or the new. */
function replaceFile(path: string, text: string): void {
  const temporary = `${path}.tmp-${process.pid}`;
  writeFileSync(temporary, text);
  renameSync(temporary, path);
}

/** One call of the recorder: what the CRI plugin gave the `vm` network's plugins. */
interface RecordedCall {
  command: string;
  containerId: string;
  /** CNI_NETNS: empty, naming what exists, or naming nothing. */
  namespace: 'empty' | 'there' | 'gone';
  args: Record<string, string>;
}

/** A chained plugin that records its call and passes ADD's prevResult on (jq), for the `vm` chain's tail. */
function recorderScript(log: string): string {
  return [
    '#!/bin/sh',
    'input=$(cat)',
    'netns=empty',
    '[ -n "$CNI_NETNS" ] && netns=gone',
    '[ -n "$CNI_NETNS" ] && [ -e "$CNI_NETNS" ] && netns=there',
    `printf '%s %s %s %s\\n' "$CNI_COMMAND" "$CNI_CONTAINERID" "$netns" "$CNI_ARGS" >> '${log}'`,
    'case $CNI_COMMAND in',
    `  ADD) printf '%s' "$input" | jq -c .prevResult ;;`,
    `  VERSION) echo '{"cniVersion":"1.0.0","supportedVersions":["0.3.1","0.4.0","1.0.0"]}' ;;`,
    'esac',
    '',
  ].join('\n');
}

/**
 * A chained plugin that writes down the prevResult it got on ADD (with its config's `tag`, the
 * container id) and passes it on: one before and one after vcnet-cni show what vcnet-cni changed.
 */
function resultRecorderScript(log: string): string {
  return [
    '#!/bin/sh',
    'input=$(cat)',
    'case $CNI_COMMAND in',
    `  ADD) printf '%s' "$input" | jq -c --arg id "$CNI_CONTAINERID" '{tag: .tag, container: $id, prevResult: .prevResult}' >> '${log}'`,
    `       printf '%s' "$input" | jq -c .prevResult ;;`,
    `  VERSION) echo '{"cniVersion":"1.0.0","supportedVersions":["0.3.1","0.4.0","1.0.0"]}' ;;`,
    'esac',
    '',
  ].join('\n');
}

/** Why the portmap case cannot run: portmap runs `iptables` (in the node namespace only). */
function missingIptables(nodeExec: (command: string, args: string[]) => string): string | undefined {
  const missing = missingCommands(['iptables', 'iptables-save']);
  if (missing) return `portmap needs iptables: ${missing}`;
  try {
    nodeExec('iptables', ['-t', 'nat', '-S']);
    return undefined;
  } catch (error) {
    return `portmap needs iptables, which fails in a fresh namespace: ${(error as Error).message.split('\n')[0]}`;
  }
}

interface CniResult {
  interfaces?: Array<{ name: string; mac?: string; sandbox?: string }>;
  ips?: Array<{ address: string; gateway?: string; interface?: number }>;
  routes?: unknown[];
  dns?: unknown;
}

describe.skipIf(skipReason)("containerd 1.6's CRI plugin (kubelet's calls) with a vcnet runtime handler", () => {
  let directory: string;
  let fixture: ClientFixture;
  let cgroups: CgroupMountNamespace | undefined;
  let containerd: ContainerdWithCri;
  let client: CriRuntimeClient;
  let defaultConfDirectory: string;
  let badConfDirectory: string;
  let callLog: string;
  let resultLog: string;
  /** The conflist of RELOAD as the suite wrote it (cases that change it put it back). */
  let reloadConflistText: string;
  let reloadConflistPath: string;
  /** Set when portmap cannot run in the node namespace. */
  let portmapSkip: string | undefined;
  let nodeExec: (command: string, args: string[]) => string;
  /** Sandboxes a case started and has not removed: afterEach removes them. */
  const sandboxes = new Set<string>();
  /** Processes holding a pod namespace open past its sandbox. */
  const holders = new Set<ChildProcess>();

  beforeAll(async () => {
    cgroups = cgroupPlan.script ? await CgroupMountNamespace.start(cgroupPlan.script) : undefined;
    directory = mkdtempSync(join(tmpdir(), 'vcnet-containerd-cri-'));
    const node = makeNamespace('cri');
    // The CRI plugin's streaming server listens on 127.0.0.1 of the node namespace.
    node.exec('ip', ['link', 'set', 'lo', 'up']);
    fixture = new ClientFixture(directory, node, VM_BRIDGE, VM_SUBNET);
    // As docs/cni.md says: the vcnet conflist in a directory only the VM handler reads.
    const installed = vcnet([
      'install-cni',
      '--bin-dir',
      fixture.pluginDirectory,
      '--conf-dir',
      fixture.confDirectory,
      '--network-name',
      VM_NETWORK,
      '--bridge',
      VM_BRIDGE,
      '--subnet',
      VM_SUBNET,
      '--state-dir',
      fixture.stateDirectory,
    ]);
    if (installed.status !== 0) throw new Error(`vcnet install-cni failed: ${installed.stderr}`);
    // host-local's reservations in the suite's directory, not the host's /var/lib/cni; the recorder last.
    const conflistPath = join(fixture.confDirectory, '99-vcnet.conflist');
    const conflist = JSON.parse(readFileSync(conflistPath, 'utf8')) as {
      plugins: Array<Record<string, unknown> & { ipam?: Record<string, unknown> }>;
    };
    conflist.plugins[0]!.ipam!.dataDir = fixture.ipamDirectory;
    conflist.plugins.push({ type: 'cni-call-recorder' });
    writeFileSync(conflistPath, JSON.stringify(conflist, null, 2));
    callLog = join(directory, 'cni-calls.log');
    const recorder = join(fixture.pluginDirectory, 'cni-call-recorder');
    writeFileSync(recorder, recorderScript(callLog));
    chmodSync(recorder, 0o755);

    badConfDirectory = join(directory, 'net.d-bad');
    mkdirSync(badConfDirectory);
    const bad = structuredClone(conflist);
    bad.plugins[1] = { ...bad.plugins[1], model: 'vhost' };
    writeFileSync(join(badConfDirectory, '99-vcnet.conflist'), JSON.stringify(bad, null, 2));

    resultLog = join(directory, 'cni-results.log');
    const resultRecorder = join(fixture.pluginDirectory, 'cni-result-recorder');
    writeFileSync(resultRecorder, resultRecorderScript(resultLog));
    chmodSync(resultRecorder, 0o755);
    symlinkSync('/usr/lib/cni/portmap', join(fixture.pluginDirectory, 'portmap'));
    nodeExec = (command, args) => node.exec(command, args);
    portmapSkip = missingIptables(nodeExec);
    if (portmapSkip) console.log(`skipping the port mapping case: ${portmapSkip}`);

    // The other vcnet networks: the installed conflist's plugins, with their own bridge and ranges.
    const extraConfDirectories: Record<string, string> = {};
    for (const network of EXTRA_NETWORKS) {
      const confDirectory = join(directory, `net.d-${network.handler}`);
      mkdirSync(confDirectory);
      const list = structuredClone(conflist);
      Object.assign(list, { name: network.name });
      const [bridge, vcnetEntry] = list.plugins as [Record<string, unknown>, Record<string, unknown>];
      bridge.bridge = network.bridge;
      (bridge.ipam as Record<string, unknown>).ranges = network.subnets.map((subnet) => [{ subnet }]);
      list.plugins = [
        bridge,
        ...(network.between ?? []),
        { type: 'cni-result-recorder', tag: 'before-vcnet' },
        vcnetEntry,
        { type: 'cni-result-recorder', tag: 'after-vcnet' },
      ];
      const path = join(confDirectory, '99-vcnet.conflist');
      writeFileSync(path, JSON.stringify(list, null, 2));
      extraConfDirectories[network.handler] = confDirectory;
      if (network === RELOAD) {
        reloadConflistPath = path;
        reloadConflistText = readFileSync(path, 'utf8');
      }
    }

    defaultConfDirectory = join(directory, 'net.d-default');
    mkdirSync(defaultConfDirectory);
    writeFileSync(
      join(defaultConfDirectory, '10-default.conflist'),
      JSON.stringify({
        cniVersion: '1.0.0',
        name: DEFAULT_NETWORK,
        plugins: [
          {
            type: 'bridge',
            bridge: DEFAULT_BRIDGE,
            isGateway: true,
            ipMasq: false,
            ipam: { type: 'host-local', ranges: [[{ subnet: DEFAULT_SUBNET }]], dataDir: fixture.ipamDirectory },
          },
        ],
      }),
    );

    containerd = new ContainerdWithCri(
      directory,
      node.path,
      {
        binDirectory: fixture.pluginDirectory,
        defaultConfDirectory,
        handlerConfDirectories: {
          [VM_HANDLER]: fixture.confDirectory,
          [BAD_VM_HANDLER]: badConfDirectory,
          ...extraConfDirectories,
        },
      },
      cgroups,
    );
    await containerd.start();
    containerd.importSandboxImage(sandboxImageArchive(directory, BUSYBOX!));
    client = new CriRuntimeClient(containerd.socket);
  }, 120_000);

  afterEach(async () => {
    for (const holder of holders) holder.kill('SIGKILL');
    holders.clear();
    // A reload case that failed part-way: its network back, so its pods' DEL can run.
    const reloadChanged = readFileOrEmpty(reloadConflistPath) !== reloadConflistText;
    if (reloadChanged) replaceFile(reloadConflistPath, reloadConflistText);
    for (const id of sandboxes) {
      // After a reload, the CRI plugin fails StopPodSandbox until it has read the file again.
      const deadline = Date.now() + (reloadChanged ? 30_000 : 0);
      while (
        !(await client.stopPodSandbox(id).then(
          () => true,
          () => false,
        ))
      ) {
        if (Date.now() > deadline) break;
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
      await client.removePodSandbox(id).catch(() => undefined);
    }
    sandboxes.clear();
    await removeUnknownSandboxes();
  });

  /**
   * Ends the sandboxes containerd has that no case knows of: a RunPodSandbox that failed for want
   * of a network config leaves its sandbox (and the pod namespace's mount) behind in containerd 1.6,
   * since its cleanup's DEL fails the same way; kubelet removes them as it lists sandboxes.
   */
  async function removeUnknownSandboxes(): Promise<string[]> {
    const left = containerd.containers();
    for (const id of left) {
      await client.stopPodSandbox(id).catch(() => undefined);
      await client.removePodSandbox(id).catch(() => undefined);
    }
    return left;
  }

  afterAll(async () => {
    client?.close();
    await containerd?.stop();
    await endRuntimeSuite(directory, cgroups);
  });

  interface Pod {
    id: string;
    name: string;
    namespace: string;
    uid: string;
    ip: string;
    /** The pod's other addresses (the IPv6 one of a dual-stack pod). */
    additionalIps: string[];
    /** The pod's network namespace, through its sandbox process. */
    namespacePath: string;
  }

  async function runPod(handler: string, extras: PodSandboxExtras = {}): Promise<Pod> {
    const name = `pod-${randomUUID().slice(0, 8)}`;
    const namespace = 'vcnet-test';
    const uid = randomUUID();
    const id = await client
      .runPodSandbox({ name, namespace, uid }, handler, join(directory, 'pods', `${namespace}_${name}_${uid}`), extras)
      .catch((error: Error) => {
        error.message += `\ncontainerd's log ends:\n${containerd.logTail()}`;
        throw error;
      });
    sandboxes.add(id);
    const status = await client.podSandboxStatus(id);
    expect(status.status.state).toBe('SANDBOX_READY');
    expect(status.status.runtimeHandler).toBe(handler);
    const pid = await client.sandboxPid(id);
    return {
      id,
      name,
      namespace,
      uid,
      ip: status.status.network?.ip ?? '',
      additionalIps: (status.status.network?.additionalIps ?? []).map((podIp) => podIp.ip),
      namespacePath: `/proc/${pid}/ns/net`,
    };
  }

  /** Keeps the pod's namespace alive past its sandbox, to see what DEL left in it. */
  async function holdNamespace(pod: Pod): Promise<string> {
    const holder = spawn('nsenter', [`--net=${pod.namespacePath}`, 'sleep', '600'], { stdio: 'ignore' });
    holders.add(holder);
    const held = `/proc/${holder.pid}/ns/net`;
    const identity = readlinkSync(pod.namespacePath);
    await waitFor('the holder to enter the pod namespace', () => readlinkSync(held) === identity, 30_000);
    return held;
  }

  /** PodSandboxStatus once a restarted CRI plugin serves again (it answers Unavailable until then). */
  async function statusOnceServing(id: string): Promise<PodSandboxStatus> {
    const deadline = Date.now() + 60_000;
    for (;;) {
      try {
        return await client.podSandboxStatus(id);
      } catch (error) {
        if (Date.now() > deadline) throw error;
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    }
  }

  /** Stop twice (kubelet may), then remove, as kubelet ends a pod. */
  async function endPod(pod: Pod): Promise<void> {
    await client.stopPodSandbox(pod.id);
    await client.stopPodSandbox(pod.id);
    await client.removePodSandbox(pod.id);
    sandboxes.delete(pod.id);
  }

  /** Whether `pid` still runs (a zombie, waiting for its parent to reap it, does not). */
  function running(pid: number): boolean {
    try {
      return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
    } catch {
      return false;
    }
  }

  function linkNames(namespacePath: string): string[] {
    return namespaceJson<Array<{ ifname: string }>>(namespacePath, 'ip', 'link', 'show').map((link) => link.ifname);
  }

  function calls(): RecordedCall[] {
    return readLines(callLog).map((line) => {
      const [command, containerId, namespace, args = ''] = line.split(' ');
      return {
        command: command!,
        containerId: containerId!,
        namespace: namespace as RecordedCall['namespace'],
        args: Object.fromEntries(
          args
            .split(';')
            .filter(Boolean)
            .map((pair) => pair.split('=', 2) as [string, string]),
        ),
      };
    });
  }

  /** The ports of `bridge` in the node namespace. */
  function bridgePorts(bridge: string): string[] {
    const links = fixture.node.ipJson<Array<{ ifname: string }>>('link', 'show');
    if (!links.some((link) => link.ifname === bridge)) return [];
    return fixture.node.ipJson<Array<{ ifname: string }>>('link', 'show', 'master', bridge).map((link) => link.ifname);
  }

  /** The links of the pod namespace, with their kind (`veth`, `tun`, `macvtap`; none for lo). */
  function linkKinds(namespacePath: string): Record<string, string> {
    return Object.fromEntries(
      namespaceJson<Array<{ ifname: string; linkinfo?: { info_kind?: string } }>>(
        namespacePath,
        'ip',
        '-d',
        'link',
        'show',
      ).map((link) => [link.ifname, link.linkinfo?.info_kind ?? '']),
    );
  }

  /** The prevResults the result recorders saw for `containerId`, by tag. */
  function recordedResults(containerId: string): Record<string, CniResult> {
    return Object.fromEntries(
      readLines(resultLog)
        .map((line) => JSON.parse(line) as { tag: string; container: string; prevResult: CniResult })
        .filter((entry) => entry.container === containerId)
        .map((entry) => [entry.tag, entry.prevResult]),
    );
  }

  async function expectNothingLeft(): Promise<void> {
    expect(fixture.reservations(VM_NETWORK)).toEqual([]);
    expect(fixture.reservations(DEFAULT_NETWORK)).toEqual([]);
    for (const network of EXTRA_NETWORKS) {
      expect(fixture.reservations(network.name), network.name).toEqual([]);
      expect(bridgePorts(network.bridge), network.bridge).toEqual([]);
    }
    expect(fixture.recordedContainers()).toEqual([]);
    expect(bridgePorts(VM_BRIDGE)).toEqual([]);
    expect(containerd.containers()).toEqual([]);
    expect(podNamespaceFiles(directory)).toEqual([]);
  }

  it('answers Version as runtime.v1', async () => {
    const version = await client.version();
    expect(version.runtimeName).toBe('containerd');
    expect(version.runtimeApiVersion).toBe('v1');
  });

  it('a pod of the vm handler: tap, both redirects and the record, kubelet’s CNI_ARGS accepted; stop and remove leave nothing', async () => {
    const pod = await runPod(VM_HANDLER);
    expect(linkNames(pod.namespacePath)).toEqual(expect.arrayContaining(['eth0', 'tap0_kata']));
    expect(redirectOf(pod.namespacePath, 'eth0')).toBe('tap0_kata');
    expect(redirectOf(pod.namespacePath, 'tap0_kata')).toBe('eth0');
    expect(fixture.attached(pod.id)).toBe(true);
    expect(fixture.reservations(VM_NETWORK)).toEqual([pod.ip]);
    const added = calls().filter((call) => call.containerId === pod.id && call.command === 'ADD');
    expect(added).toHaveLength(1);
    expect(added[0]!.args).toEqual({
      IgnoreUnknown: '1',
      K8S_POD_NAMESPACE: pod.namespace,
      K8S_POD_NAME: pod.name,
      K8S_POD_INFRA_CONTAINER_ID: pod.id,
      K8S_POD_UID: pod.uid,
    });

    const held = await holdNamespace(pod);
    await endPod(pod);
    // DEL took the tap and the filters out of the namespace, which still exists here.
    expect(linkNames(held)).toEqual(['lo']);
    await expectNothingLeft();
    const deleted = calls().filter((call) => call.containerId === pod.id && call.command === 'DEL');
    expect(deleted.length).toBeGreaterThanOrEqual(1);
    console.log(
      `the CRI plugin's DELs of one pod (stop, stop, remove), by CNI_NETNS: ${deleted.map((call) => call.namespace).join(', ')}`,
    );
  });

  it('a pod of the default handler gets the default network and no vcnet', async () => {
    const pod = await runPod('');
    expect(linkNames(pod.namespacePath)).not.toContain('tap0_kata');
    expect(redirectOf(pod.namespacePath, 'eth0')).toBeUndefined();
    expect(fixture.recordedContainers()).toEqual([]);
    expect(fixture.reservations(DEFAULT_NETWORK)).toEqual([pod.ip]);
    expect(fixture.reservations(VM_NETWORK)).toEqual([]);
    expect(calls().filter((call) => call.containerId === pod.id)).toEqual([]);
    await endPod(pod);
    await expectNothingLeft();
  });

  it(`${MANY} pods of the vm handler at once, then all ended at once`, async () => {
    const pods = await Promise.all(Array.from({ length: MANY }, () => runPod(VM_HANDLER)));
    expect(new Set(pods.map((pod) => pod.ip)).size).toBe(MANY);
    for (const pod of pods) {
      expect(redirectOf(pod.namespacePath, 'eth0')).toBe('tap0_kata');
      expect(redirectOf(pod.namespacePath, 'tap0_kata')).toBe('eth0');
      expect(fixture.attached(pod.id)).toBe(true);
    }
    expect(fixture.bridgePorts()).toHaveLength(MANY);
    await Promise.all(pods.map((pod) => endPod(pod)));
    await expectNothingLeft();
  });

  it('a bad vcnet option: RunPodSandbox fails with vcnet-cni’s reason, and nothing is left', async () => {
    const before = calls().length;
    const failed = await runPod(BAD_VM_HANDLER).then(
      () => undefined,
      (error: Error) => error,
    );
    // What kubelet shows in the pod's events: libcni's words around vcnet-cni's own.
    expect(failed?.message).toContain(
      'plugin type="vcnet-cni" failed (add): invalid network config: model: expected one of default, macvtap, tcfilter, none (got "vhost")',
    );
    // The CRI plugin's own DEL after the failed ADD ran (the recorder sees DEL only: ADD stopped at vcnet-cni).
    expect(
      calls()
        .slice(before)
        .map((call) => call.command),
    ).toContain('DEL');
    await expectNothingLeft();
  });

  it('containerd restarted between run and stop: stop and remove still leave nothing', async () => {
    const pod = await runPod(VM_HANDLER);
    expect(fixture.attached(pod.id)).toBe(true);
    await containerd.stop();
    await containerd.start();
    expect((await statusOnceServing(pod.id)).status.state).toBe('SANDBOX_READY');
    const held = await holdNamespace(pod);
    await endPod(pod);
    expect(linkNames(held)).toEqual(['lo']);
    await expectNothingLeft();
  });

  it('the pod namespace gone while containerd was down (a node restart): DEL without it drops the record; nothing left', async () => {
    const pod = await runPod(VM_HANDLER);
    const namespaceFile = await client.sandboxNamespaceFile(pod.id);
    const sandboxPid = Number(pod.namespacePath.split('/')[2]);
    expect(fixture.attached(pod.id)).toBe(true);
    await containerd.stop();
    // What a reboot takes: the sandbox, its shim and the namespace's mount (the file under it stays).
    const shimPid = containerd.shimPid(pod.id);
    expect(shimPid).toBeDefined();
    for (const pid of [sandboxPid, shimPid!]) process.kill(pid, 'SIGKILL');
    await waitFor(
      'the sandbox and its shim to exit',
      () => [sandboxPid, shimPid!].every((pid) => !running(pid)),
      30_000,
    );
    const unmounted = containerd.inMountNamespace('umount', [namespaceFile]);
    expect(unmounted).toMatchObject({ status: 0, stderr: '' });
    await containerd.start();
    expect((await statusOnceServing(pod.id)).status.state).toBe('SANDBOX_NOTREADY');
    await endPod(pod);
    const deleted = calls().filter((call) => call.containerId === pod.id && call.command === 'DEL');
    expect(deleted.length).toBeGreaterThanOrEqual(1);
    expect(deleted.map((call) => call.namespace)).not.toContain('there');
    console.log(
      `the CRI plugin's DELs of a pod whose namespace went while it was down, by CNI_NETNS: ${deleted.map((call) => call.namespace).join(', ')}`,
    );
    await expectNothingLeft();
  });

  /**
   * A pod of RELOAD's handler once the CRI plugin has read its conf dir again: `reloaded` tells a
   * pod of the new file from one of the old (the plugin reloads on its own, a little after the
   * write: a pod of the old file is ended and another tried).
   */
  async function runPodOnceReloaded(reloaded: (pod: Pod) => boolean): Promise<Pod> {
    const deadline = Date.now() + 30_000;
    for (;;) {
      const pod = await runPod(RELOAD.handler).catch(() => undefined);
      if (pod && reloaded(pod)) return pod;
      if (pod) await endPod(pod);
      if (Date.now() > deadline) throw new Error(`the CRI plugin did not take ${reloadConflistPath} up in 30 s`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }

  /** The error of RunPodSandbox of RELOAD's handler once the CRI plugin has no usable conflist for it. */
  async function runPodFailsOnceReloaded(): Promise<Error> {
    const deadline = Date.now() + 30_000;
    for (;;) {
      const outcome = await runPod(RELOAD.handler).then(
        (pod) => pod,
        (error: Error) => error,
      );
      if (outcome instanceof Error) return outcome;
      await endPod(outcome);
      if (Date.now() > deadline) throw new Error(`the CRI plugin kept starting pods of ${RELOAD.handler} for 30 s`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }

  /** The reload conflist with vcnet-cni's entry changed by `change`. */
  function reloadConflistWith(change: (entry: Record<string, unknown>) => void): string {
    const list = JSON.parse(reloadConflistText) as { plugins: Array<Record<string, unknown>> };
    change(list.plugins.find((plugin) => plugin.type === 'vcnet-cni')!);
    return JSON.stringify(list, null, 2);
  }

  /** A pod of RELOAD's handler under the suite's conflist (tcfilter: a tap beside the veth). */
  async function runTcfilterPod(): Promise<Pod> {
    return runPodOnceReloaded((pod) => linkKinds(pod.namespacePath).tap0_kata === 'tun');
  }

  it('a vcnet option changed while containerd runs: new pods take it, a pod started before is undone as its record says', async () => {
    const before = await runTcfilterPod();
    expect(redirectOf(before.namespacePath, 'eth0')).toBe('tap0_kata');
    const held = await holdNamespace(before);
    replaceFile(
      reloadConflistPath,
      reloadConflistWith((entry) => {
        entry.model = 'macvtap';
      }),
    );
    const after = await runPodOnceReloaded((pod) => linkKinds(pod.namespacePath).tap0_kata === 'macvtap');
    expect(fixture.attached(after.id)).toBe(true);
    // The pod of the old file: its DEL runs with model macvtap in the config, and undoes the tap
    // and the redirects of its record.
    await endPod(before);
    expect(linkNames(held)).toEqual(['lo']);
    expect(fixture.recordedContainers().filter((entry) => entry.includes(before.id))).toEqual([]);
    expect(fixture.recordedContainers()).toContain(after.id);
    const heldAfter = await holdNamespace(after);
    await endPod(after);
    expect(linkNames(heldAfter)).toEqual(['lo']);
    replaceFile(reloadConflistPath, reloadConflistText);
    await expectNothingLeft();
  });

  it.each([
    ['removed', () => rmSync(reloadConflistPath)],
    // A write caught half-way: an editor or `cat >` writing the file in place.
    [
      'half-written',
      () => writeFileSync(reloadConflistPath, reloadConflistText.slice(0, reloadConflistText.length / 2)),
    ],
  ])(
    'the conflist %s while a pod runs: new pods and the pod’s stop fail until it is back, then stop and remove leave nothing',
    async (_how, spoil) => {
      const pod = await runTcfilterPod();
      const held = await holdNamespace(pod);
      spoil();
      const refused = await runPodFailsOnceReloaded();
      console.log(`RunPodSandbox without a usable conflist: ${refused.message}`);
      // The CRI plugin runs no DEL without a network config: the stop fails (kubelet retries it),
      // and the pod keeps what vcnet-cni made.
      const stopFailed = await client.stopPodSandbox(pod.id).then(
        () => undefined,
        (error: Error) => error,
      );
      expect(stopFailed, 'StopPodSandbox without a usable conflist').toBeInstanceOf(Error);
      console.log(`StopPodSandbox without a usable conflist: ${stopFailed?.message}`);
      expect(fixture.attached(pod.id)).toBe(true);
      expect(redirectOf(held, 'eth0')).toBe('tap0_kata');
      replaceFile(reloadConflistPath, reloadConflistText);
      const deadline = Date.now() + 30_000;
      while (
        !(await client.stopPodSandbox(pod.id).then(
          () => true,
          () => false,
        ))
      ) {
        if (Date.now() > deadline) throw new Error('StopPodSandbox still fails 30 s after the conflist came back');
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
      await endPod(pod);
      expect(linkNames(held)).toEqual(['lo']);
      // The sandbox of the RunPodSandbox that failed, as kubelet's sandbox GC removes it.
      expect(await removeUnknownSandboxes()).toHaveLength(1);
      await expectNothingLeft();
    },
  );

  it('stateDir changed while a pod runs: its DEL looks in the new directory and finds nothing; vcnet gc drops the old record', async () => {
    const pod = await runTcfilterPod();
    const namespaceFile = await client.sandboxNamespaceFile(pod.id);
    const held = await holdNamespace(pod);
    const movedStateDirectory = join(directory, 'vcnet-state-moved');
    replaceFile(
      reloadConflistPath,
      reloadConflistWith((entry) => {
        entry.stateDir = movedStateDirectory;
      }),
    );
    const after = await runPodOnceReloaded((started) => existsSync(join(movedStateDirectory, started.id)));
    await endPod(pod);
    // DEL reads the record from the stateDir of the config it is given: the pod's record is in the
    // old one, so DEL undid nothing (the tap is still in the namespace, held open here).
    expect(linkNames(held)).toContain('tap0_kata');
    expect(fixture.recordedContainers()).toContain(pod.id);
    for (const holder of holders) holder.kill('SIGKILL');
    const holderPid = Number(held.split('/')[2]);
    await waitFor('the holder to exit', () => !running(holderPid), 30_000);
    holders.clear();
    // Once the namespace is gone, gc over the old directory drops the record.
    const collected = vcnet(['gc', '--state-dir', fixture.stateDirectory, '--netns', namespaceFile, '--json']);
    expect(collected.status, collected.stderr).toBe(0);
    expect(fixture.recordedContainers()).toEqual([]);
    await endPod(after);
    expect(existsSync(join(movedStateDirectory, after.id))).toBe(false);
    replaceFile(reloadConflistPath, reloadConflistText);
    await expectNothingLeft();
  });

  it('port mappings and bandwidth annotations as kubelet sends them: portmap and bandwidth before vcnet-cni, prevResult passed on whole, all gone after remove', async (context) => {
    if (portmapSkip) {
      console.log(`skipped: ${portmapSkip}`);
      context.skip();
    }
    const pod = await runPod(PORTS.handler, {
      portMappings: [
        { protocol: 'TCP', containerPort: 80, hostPort: 30080 },
        { protocol: 'UDP', containerPort: 53, hostPort: 30053 },
      ],
      annotations: { 'kubernetes.io/ingress-bandwidth': '10M', 'kubernetes.io/egress-bandwidth': '20M' },
    });
    expect(redirectOf(pod.namespacePath, 'eth0')).toBe('tap0_kata');
    expect(fixture.attached(pod.id)).toBe(true);
    // portmap's DNAT in the node namespace, to the pod's address.
    const nat = nodeExec('iptables-save', ['-t', 'nat']);
    expect(nat).toMatch(
      new RegExp(`-p tcp .*--dport 30080 .*-j DNAT --to-destination ${pod.ip.replaceAll('.', '\\.')}:80`),
    );
    expect(nat).toMatch(
      new RegExp(`-p udp .*--dport 30053 .*-j DNAT --to-destination ${pod.ip.replaceAll('.', '\\.')}:53`),
    );
    // bandwidth's shapers: tbf on the host end of the veth (into the pod), and on its ifb (out of it).
    const [hostEnd] = bridgePorts(PORTS.bridge);
    expect(hostEnd).toBeDefined();
    const shapers = () =>
      fixture.node
        .tcJson<Array<{ kind: string; dev: string; options?: { rate?: number } }>>('qdisc', 'show')
        .filter((qdisc) => qdisc.kind === 'tbf');
    expect(
      shapers().map((qdisc) => [qdisc.dev === hostEnd ? 'host end' : qdisc.dev.slice(0, 3), qdisc.options?.rate]),
    ).toEqual(
      expect.arrayContaining([
        ['host end', 10_000_000 / 8],
        ['bwp', 20_000_000 / 8],
      ]),
    );
    // vcnet-cni passes on what bridge, portmap and bandwidth gave it, with only its tap added.
    const results = recordedResults(pod.id);
    const before = results['before-vcnet']!;
    const after = results['after-vcnet']!;
    expect(before.ips?.map((ip) => ip.address)).toEqual([`${pod.ip}/24`]);
    expect(after).toEqual({
      ...before,
      interfaces: [...(before.interfaces ?? []), expect.objectContaining({ name: 'tap0_kata' })],
    });
    await endPod(pod);
    const natAfter = nodeExec('iptables-save', ['-t', 'nat']);
    expect(natAfter).not.toContain(pod.ip);
    expect(natAfter).not.toMatch(/--dport 300(80|53)/);
    expect(shapers()).toEqual([]);
    expect(fixture.node.ipJson<Array<{ ifname: string }>>('link', 'show').map((link) => link.ifname)).not.toEqual(
      expect.arrayContaining([expect.stringMatching(/^bwp/)]),
    );
    await expectNothingLeft();
  });

  it.each([
    ['an IPv6-only', IPV6_ONLY],
    ['a dual-stack', DUAL_STACK],
  ])('%s pod: vcnet attaches it with every address, and stop and remove leave nothing', async (_kind, network) => {
    const pod = await runPod(network.handler);
    const addresses = [pod.ip, ...pod.additionalIps];
    expect(addresses.map((address) => (address.includes(':') ? 6 : 4))).toEqual(
      network.subnets.map((subnet) => (subnet.includes(':') ? 6 : 4)),
    );
    expect(redirectOf(pod.namespacePath, 'eth0')).toBe('tap0_kata');
    expect(redirectOf(pod.namespacePath, 'tap0_kata')).toBe('eth0');
    expect(fixture.attached(pod.id)).toBe(true);
    // The guest gets what the pod interface has: every address the chain gave it.
    const record = readFileSync(join(fixture.stateDirectory, pod.id, 'interfaces', 'eth0', 'state.json'), 'utf8');
    for (const address of addresses) expect(record).toContain(address);
    expect(fixture.reservations(network.name).sort()).toEqual([...addresses].sort());
    const results = recordedResults(pod.id);
    expect(results['after-vcnet']).toEqual({
      ...results['before-vcnet'],
      interfaces: [...(results['before-vcnet']!.interfaces ?? []), expect.objectContaining({ name: 'tap0_kata' })],
    });
    const held = await holdNamespace(pod);
    await endPod(pod);
    expect(linkNames(held)).toEqual(['lo']);
    await expectNothingLeft();
  });

  it('a pod with a DNS config and a hostname: the CRI plugin writes them, vcnet attaches as ever, nothing left', async () => {
    const pod = await runPod(VM_HANDLER, {
      hostname: 'vcnet-dns-pod',
      dnsConfig: { servers: ['10.231.70.53'], searches: ['vcnet-test.svc.cluster.local'], options: ['ndots:5'] },
    });
    const resolvConf = containerd.sandboxFile(pod.id, 'resolv.conf');
    expect(resolvConf).toContain('nameserver 10.231.70.53');
    expect(resolvConf).toContain('search vcnet-test.svc.cluster.local');
    expect(resolvConf).toContain('options ndots:5');
    expect(containerd.sandboxFile(pod.id, 'hostname')).toBe('vcnet-dns-pod\n');
    expect(redirectOf(pod.namespacePath, 'eth0')).toBe('tap0_kata');
    expect(fixture.attached(pod.id)).toBe(true);
    const held = await holdNamespace(pod);
    await endPod(pod);
    expect(linkNames(held)).toEqual(['lo']);
    await expectNothingLeft();
  });
});
