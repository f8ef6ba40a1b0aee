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
 * sandbox, CNI_NETNS empty or not, CNI_ARGS): libcni gives vcnet-cni the same.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
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

describe.skipIf(skipReason)("containerd 1.6's CRI plugin (kubelet's calls) with a vcnet runtime handler", () => {
  let directory: string;
  let fixture: ClientFixture;
  let cgroups: CgroupMountNamespace | undefined;
  let containerd: ContainerdWithCri;
  let client: CriRuntimeClient;
  let defaultConfDirectory: string;
  let badConfDirectory: string;
  let callLog: string;
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
        handlerConfDirectories: { [VM_HANDLER]: fixture.confDirectory, [BAD_VM_HANDLER]: badConfDirectory },
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
    for (const id of sandboxes) {
      await client.stopPodSandbox(id).catch(() => undefined);
      await client.removePodSandbox(id).catch(() => undefined);
    }
    sandboxes.clear();
  });

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
    /** The pod's network namespace, through its sandbox process. */
    namespacePath: string;
  }

  async function runPod(handler: string): Promise<Pod> {
    const name = `pod-${randomUUID().slice(0, 8)}`;
    const namespace = 'vcnet-test';
    const uid = randomUUID();
    const id = await client
      .runPodSandbox({ name, namespace, uid }, handler, join(directory, 'pods', `${namespace}_${name}_${uid}`))
      .catch((error: Error) => {
        error.message += `\ncontainerd's log ends:\n${containerd.logTail()}`;
        throw error;
      });
    sandboxes.add(id);
    const status = await client.podSandboxStatus(id);
    expect(status.status.state).toBe('SANDBOX_READY');
    expect(status.status.runtimeHandler).toBe(handler);
    const pid = await client.sandboxPid(id);
    return { id, name, namespace, uid, ip: status.status.network?.ip ?? '', namespacePath: `/proc/${pid}/ns/net` };
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

  async function expectNothingLeft(): Promise<void> {
    expect(fixture.reservations(VM_NETWORK)).toEqual([]);
    expect(fixture.reservations(DEFAULT_NETWORK)).toEqual([]);
    expect(fixture.recordedContainers()).toEqual([]);
    expect(fixture.bridgePorts()).toEqual([]);
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
});
