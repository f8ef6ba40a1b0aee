/**
 * What vcnet-cni says on stderr that `vcnet attach` and `vcnet detach` say too, from the same code in
 * the sandbox service: an ADD that leaves the VM with no network address (a chain whose interface
 * plugin ran without IPAM), and a DEL while the VM still holds the tap (the runtime DELs before it
 * stops the VM), or after the pod namespace's path was deleted while the VM still runs in it. Both
 * commands still succeed: a DEL must clean up and exit 0 whatever holds the tap. Real plugins from
 * /usr/lib/cni; the VM is a stand-in process holding the tap's queue (or the macvtap's /dev/tapN).
 */
import { type ChildProcess, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  type Attachment,
  bridgeThenVcnet,
  CniRuntime,
  type Conflist,
  missingCniPlugins,
  type PluginRun,
} from '../../helpers/cni.js';
import { cleanupNamespaces, makeNamespace, type TestNamespace } from '../../helpers/namespace.js';
import { fingerprint } from '../../helpers/pod.js';
import { holdDeviceFile, holdTapQueue } from '../../helpers/vm-stand-in.js';

const skipReason =
  process.getuid?.() !== 0
    ? 'vcnet-cni notice tests need root (namespaces, taps, tc)'
    : missingCniPlugins(['bridge', 'host-local', 'macvlan']);
if (skipReason) console.log(`skipping vcnet-cni notice tests: ${skipReason}`);

let workDirectory: string;
let stateDirectory: string;
const standIns: ChildProcess[] = [];

beforeEach(() => {
  workDirectory = mkdtempSync(join(tmpdir(), 'vcnet-cni-notices-'));
  stateDirectory = join(workDirectory, 'state');
});

afterEach(() => {
  for (const standIn of standIns.splice(0)) standIn.kill('SIGKILL');
  cleanupNamespaces();
  rmSync(workDirectory, { recursive: true, force: true });
});

function nodeAndPod(): { node: TestNamespace; pod: TestNamespace; attachment: Attachment } {
  const node = makeNamespace('node');
  const pod = makeNamespace('pod');
  // No duplicate address detection: IPv6 link-local addresses appear at once, so fingerprints do not race.
  pod.exec('sysctl', ['-q', '-w', 'net.ipv6.conf.default.accept_dad=0', 'net.ipv6.conf.all.accept_dad=0']);
  const attachment = {
    containerId: `ctr-${randomBytes(4).toString('hex')}`,
    namespacePath: pod.path,
    interfaceName: 'eth0',
  };
  return { node, pod, attachment };
}

/** bridge with host-local, then vcnet-cni. */
function addressedChain(vcnet: Record<string, unknown> = {}): Conflist {
  return bridgeThenVcnet({
    name: 'vcnet-notices',
    bridge: 'vcbr7',
    subnet: '10.231.7.0/24',
    dataDir: join(workDirectory, 'ipam'),
    vcnet: { stateDir: stateDirectory, ...vcnet },
  });
}

/** An interface plugin without "ipam" (layer 2 only), then vcnet-cni. */
function layer2Chain(interfacePlugin: Record<string, unknown> & { type: string }): Conflist {
  return {
    cniVersion: '1.0.0',
    name: 'vcnet-layer2',
    plugins: [interfacePlugin, { type: 'vcnet-cni', stateDir: stateDirectory }],
  };
}

/** The config libcni gives the plugin at `position`, with `previous` as its prevResult. */
function configAt(list: Conflist, position: number, previous?: Record<string, unknown>): Record<string, unknown> {
  return {
    ...list.plugins[position],
    cniVersion: list.cniVersion,
    name: list.name,
    ...(previous ? { prevResult: previous } : {}),
  };
}

/** ADD of the whole list; returns the result and vcnet-cni's run (the last plugin). */
function addChain(runtime: CniRuntime, list: Conflist): { result: Record<string, unknown>; run: PluginRun } {
  let previous: Record<string, unknown> | undefined;
  let run: PluginRun | undefined;
  list.plugins.forEach((plugin, position) => {
    run = runtime.invoke('ADD', configAt(list, position, previous));
    expect(run.status, `${plugin.type} ADD: ${run.stdout}${run.stderr}`).toBe(0);
    previous = run.output;
  });
  return { result: previous!, run: run! };
}

/** DEL of the whole list in reverse order; returns vcnet-cni's run. */
function delChain(runtime: CniRuntime, list: Conflist, result: Record<string, unknown>): PluginRun {
  let vcnetRun: PluginRun | undefined;
  for (let position = list.plugins.length - 1; position >= 0; position--) {
    const run = runtime.invoke('DEL', configAt(list, position, result));
    expect(run.status, `${list.plugins[position]!.type} DEL: ${run.stdout}${run.stderr}`).toBe(0);
    if (list.plugins[position]!.type === 'vcnet-cni') vcnetRun = run;
  }
  return vcnetRun!;
}

function lines(run: PluginRun): string[] {
  return run.stderr.split('\n').filter((line) => line !== '');
}

describe.skipIf(skipReason)('vcnet-cni ADD that leaves the VM with no network address', () => {
  it('bridge without IPAM: ADD succeeds, prints the tap in its result, and says on stderr that the guest gets no address', () => {
    const { node, pod, attachment } = nodeAndPod();
    const runtime = new CniRuntime(node, attachment);
    const list = layer2Chain({ type: 'bridge', bridge: 'vcbr8' });
    const before = fingerprint(pod);
    const { result, run } = addChain(runtime, list);
    const interfaces = (JSON.parse(run.stdout) as { interfaces: Array<{ name: string }> }).interfaces;
    expect(interfaces.map((entry) => entry.name)).toContain('tap0_kata');
    expect(lines(run), run.stderr).toEqual([
      `vcnet-cni ADD of ${attachment.containerId}/eth0: the VM gets no network address: eth0 has none in ${pod.path} (an IPv6 link-local one does not count), so the guest agent configures the guest's NIC with none, and the VM reaches the pod's network only by configuring it itself (DHCP, a static address); prevResult lists no IP for eth0: its interface plugin ran without IPAM (layer 2 only) or its IPAM gave none; give that plugin an "ipam" section (host-local, static, dhcp) for the guest to get an address`,
    ]);
    delChain(runtime, list, result);
    expect(fingerprint(pod)).toEqual(before);
  });

  it('macvlan without IPAM says the same; with host-local IPAM ADD says nothing', () => {
    const { node, pod, attachment } = nodeAndPod();
    node.exec('ip', ['link', 'add', 'uplink0', 'type', 'veth', 'peer', 'name', 'uplink1']);
    node.exec('ip', ['link', 'set', 'uplink0', 'up']);
    const runtime = new CniRuntime(node, attachment);
    const list = layer2Chain({ type: 'macvlan', master: 'uplink0', mode: 'bridge' });
    const { result, run } = addChain(runtime, list);
    expect(lines(run), run.stderr).toHaveLength(1);
    expect(lines(run)[0]).toMatch(
      new RegExp(
        `^vcnet-cni ADD of ${attachment.containerId}/eth0: the VM gets no network address: eth0 has none in ${pod.path} .*prevResult lists no IP for eth0`,
      ),
    );
    delChain(runtime, list, result);

    const addressed = addressedChain();
    const withAddress = addChain(runtime, addressed);
    expect(withAddress.run.stderr).toBe('');
    delChain(runtime, addressed, withAddress.result);
  });
});

describe.skipIf(skipReason)('vcnet-cni ADD whose prevResult gives an address the interface lost', () => {
  it('names the address prevResult lists and says something between removed it', () => {
    const { node, pod, attachment } = nodeAndPod();
    const runtime = new CniRuntime(node, attachment);
    const list = addressedChain();
    const bridge = runtime.invoke('ADD', configAt(list, 0));
    expect(bridge.status, bridge.stdout + bridge.stderr).toBe(0);
    const listed = (bridge.output as { ips: Array<{ address: string }> }).ips.map((ip) => ip.address);
    // What a plugin between the interface plugin and vcnet-cni could do.
    pod.exec('ip', ['-4', 'addr', 'flush', 'dev', 'eth0']);
    const run = runtime.invoke('ADD', configAt(list, 1, bridge.output));
    expect(run.status, run.stdout + run.stderr).toBe(0);
    expect(lines(run), run.stderr).toHaveLength(1);
    expect(lines(run)[0]).toContain(
      `the VM gets no network address: eth0 has none in ${pod.path} (an IPv6 link-local one does not count)`,
    );
    expect(lines(run)[0]).toContain(
      `prevResult gives eth0 ${listed.join(', ')}, which it does not have: a plugin between its interface plugin and vcnet-cni removed it`,
    );
    delChain(runtime, list, run.output!);
  });
});

describe.skipIf(skipReason)('vcnet-cni DEL while the VM still holds its device', () => {
  it('tcfilter: DEL warns naming the tap and the pid, removes everything and exits 0; quiet once the VM let go', async () => {
    const { node, pod, attachment } = nodeAndPod();
    const runtime = new CniRuntime(node, attachment);
    const list = addressedChain();
    const before = fingerprint(pod);
    const first = addChain(runtime, list);
    const vm = await holdTapQueue(pod.path, 'tap0_kata');
    standIns.push(vm);
    const deleted = delChain(runtime, list, first.result);
    expect(lines(deleted), deleted.stderr).toEqual([
      `vcnet-cni DEL of ${attachment.containerId}/eth0 (tap0_kata): container ${attachment.containerId}'s tap0_kata is still open by pid ${vm.pid}: the VM is still running; it is removed anyway and the VM loses that NIC. Stop the VM before the runtime's DEL of its network`,
    ]);
    vm.kill('SIGKILL');
    expect(fingerprint(pod)).toEqual(before);

    const second = addChain(runtime, list);
    const quiet = delChain(runtime, list, second.result);
    expect(quiet.stderr).toBe('');
    expect(fingerprint(pod)).toEqual(before);
  });

  it('macvtap: DEL warns naming the macvtap and the pid that holds its /dev/tapN', async () => {
    const { node, pod, attachment } = nodeAndPod();
    const runtime = new CniRuntime(node, attachment);
    const list = addressedChain({ model: 'macvtap' });
    const added = addChain(runtime, list);
    const index = pod.ipJson<Array<{ ifindex: number }>>('link', 'show', 'tap0_kata')[0]!.ifindex;
    const vm = await holdDeviceFile(pod.path, `/dev/tap${index}`);
    standIns.push(vm);
    const deleted = delChain(runtime, list, added.result);
    expect(lines(deleted), deleted.stderr).toHaveLength(1);
    expect(lines(deleted)[0]).toMatch(
      new RegExp(
        `^vcnet-cni DEL of ${attachment.containerId}/eth0 \\(tap0_kata\\): container ${attachment.containerId}'s tap0_kata is still open by pid \\d+: the VM is still running`,
      ),
    );
    expect(pod.ipJson<Array<{ ifname: string }>>('link', 'show').map((link) => link.ifname)).not.toContain('tap0_kata');
  });

  it('the pod namespace path deleted while the VM runs in it: DEL undoes through the VM, naming it twice', async () => {
    const { node, pod, attachment } = nodeAndPod();
    const runtime = new CniRuntime(node, attachment);
    const list = addressedChain();
    const added = addChain(runtime, list);
    const vm = await holdTapQueue(pod.path, 'tap0_kata');
    standIns.push(vm);
    // `ip netns del` of the pod before the runtime's DEL: the VM keeps the namespace alive.
    pod.delete();
    expect(existsSync(pod.path)).toBe(false);
    const deleted = delChain(runtime, list, added.result);
    expect(lines(deleted), deleted.stderr).toEqual([
      `vcnet-cni DEL of ${attachment.containerId}/eth0: container ${attachment.containerId}: its namespace path ${pod.path} is gone, but process ${vm.pid} still runs in that namespace (/proc/${vm.pid}/ns/net): what ADD made is still there and is undone through it`,
      `vcnet-cni DEL of ${attachment.containerId}/eth0 (tap0_kata): container ${attachment.containerId}'s tap0_kata is still open by pid ${vm.pid}: the VM is still running; it is removed anyway and the VM loses that NIC. Stop the VM before the runtime's DEL of its network`,
    ]);
    // Undone in the namespace the VM still runs in: no tap, no ingress qdisc on eth0.
    const seen = (command: string, ...args: string[]) =>
      JSON.parse(
        execFileSync('nsenter', [`--net=/proc/${vm.pid}/ns/net`, command, '-j', ...args], { encoding: 'utf8' }) || '[]',
      ) as Array<Record<string, unknown>>;
    expect(seen('ip', 'link', 'show').map((link) => link.ifname)).not.toContain('tap0_kata');
    expect(seen('tc', 'qdisc', 'show', 'dev', 'eth0').map((qdisc) => qdisc.kind)).not.toContain('ingress');
  });
});
