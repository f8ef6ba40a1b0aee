/**
 * vcnet-cni chained after the real CNI bridge plugin (host-local IPAM), run the way libcni runs a
 * conflist: plugins found in CNI_PATH, executed inside a "node" namespace, prevResult threaded
 * through ADD, the cached result given to CHECK and DEL, DEL in reverse order.
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { isIP } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { VCNET_LINK_GROUP } from '../../../src/network/plan/plan-attach.js';
import { FileLock, tryLockFile } from '../../../src/network/state/lock.js';
import { pauseAfterTap, vcnet } from '../../helpers/cli.js';
import {
  type Attachment,
  bridgeThenVcnet,
  CniChainError,
  type CniErrorOutput,
  CniRuntime,
  type Conflist,
  cniVariables,
  findPlugin,
  IP_COMMAND,
  missingCniPlugins,
  SYSTEM_CNI_DIRECTORY,
} from '../../helpers/cni.js';
import {
  cleanupNamespaces,
  kernelSupportsLinkKind,
  makeNamespace,
  replaceWithSameInode,
  type TestNamespace,
} from '../../helpers/namespace.js';
import { awaitLinkLocal, fingerprint } from '../../helpers/pod.js';

const skipReason =
  process.getuid?.() !== 0 ? 'vcnet-cni integration tests need root (namespaces, taps, tc)' : missingCniPlugins();
if (skipReason) console.log(`skipping vcnet-cni integration tests: ${skipReason}`);

interface ResultInterface {
  name: string;
  mac?: string;
  sandbox?: string;
}
interface ChainResult extends Record<string, unknown> {
  cniVersion: string;
  interfaces: ResultInterface[];
  ips: Array<{ address: string; interface?: number; version?: string }>;
}

interface TcFilter {
  pref?: number;
  kind?: string;
  options?: { actions?: Array<{ kind: string; to_dev?: string; stats?: { packets?: number } }> };
}

let workDirectory: string;
let stateDirectory: string;

beforeEach(() => {
  workDirectory = mkdtempSync(join(tmpdir(), 'vcnet-cni-'));
  stateDirectory = join(workDirectory, 'state');
});

afterEach(() => {
  cleanupNamespaces();
  rmSync(workDirectory, { recursive: true, force: true });
});

/** A node namespace (bridge, plugins) and an empty pod namespace, as a runtime has them before ADD. */
function makeNodeAndPod(): { node: TestNamespace; pod: TestNamespace } {
  const node = makeNamespace('node');
  const pod = makeNamespace('pod');
  // No duplicate address detection: IPv6 link-local addresses appear at once, so fingerprints do not race.
  pod.exec('sysctl', ['-q', '-w', 'net.ipv6.conf.default.accept_dad=0', 'net.ipv6.conf.all.accept_dad=0']);
  return { node, pod };
}

function conflist(options: { subnet?: string; bridge?: string; cniVersion?: string; vcnet?: Record<string, unknown> }) {
  return bridgeThenVcnet({
    name: 'vcnet-test',
    bridge: options.bridge ?? 'vcbr0',
    subnet: options.subnet ?? '10.231.1.0/24',
    dataDir: join(workDirectory, 'ipam'),
    ...(options.cniVersion ? { cniVersion: options.cniVersion } : {}),
    vcnet: { stateDir: stateDirectory, ...options.vcnet },
  });
}

function attachmentIn(pod: TestNamespace, interfaceName = 'eth0'): Attachment {
  return { containerId: `ctr-${randomBytes(4).toString('hex')}`, namespacePath: pod.path, interfaceName };
}

/** ADD of the whole list; returns the result and the pod namespace as the bridge plugin left it. */
function addChain(runtime: CniRuntime, list: Conflist, pod: TestNamespace) {
  let afterBridge: Record<string, unknown> | undefined;
  const result = runtime.add(list, (position) => {
    if (position !== 0) return;
    awaitLinkLocal(pod, runtime.attachment.interfaceName);
    afterBridge = fingerprint(pod);
  }) as ChainResult;
  return { result, afterBridge: afterBridge! };
}

/**
 * The chain ADDed again for the same container on another network (bridge vcbr1: the first bridge's
 * IPAM still holds the old address for this container id), plugin by plugin so that vcnet-cni's own
 * ADD is seen: asserts the bridge's ADD and returns the list and vcnet-cni's answer.
 */
function addOnAnotherNetwork(runtime: CniRuntime, name: string) {
  const after = { ...conflist({ bridge: 'vcbr1', subnet: '10.231.2.0/24' }), name };
  const bridge = runtime.invoke('ADD', { ...after.plugins[0], cniVersion: after.cniVersion, name: after.name });
  expect(bridge.status, bridge.stdout).toBe(0);
  const add = runtime.invoke('ADD', {
    ...after.plugins[1],
    cniVersion: after.cniVersion,
    name: after.name,
    prevResult: bridge.output,
  });
  return { after, add };
}

/** Two chains on one pod, eth0 (bridge vcbr0) and net1 (bridge vcbr1), each ending in vcnet-cni: the first ADDed. */
function twoChainsFirstAdded() {
  const { node, pod } = makeNodeAndPod();
  const first = conflist({ bridge: 'vcbr0', subnet: '10.231.1.0/24' });
  const second = { ...conflist({ bridge: 'vcbr1', subnet: '10.231.2.0/24' }), name: 'vcnet-second' };
  const attachment = attachmentIn(pod);
  const runtimeA = new CniRuntime(node, attachment);
  const runtimeB = new CniRuntime(node, { ...attachment, interfaceName: 'net1' });
  const { result: resultA } = addChain(runtimeA, first, pod);
  return { node, pod, first, second, attachment, runtimeA, runtimeB, resultA };
}

/** The same two chains, both ADDed. */
function twoChainsOnOnePod() {
  const chains = twoChainsFirstAdded();
  const { result: resultB } = addChain(chains.runtimeB, chains.second, chains.pod);
  return { ...chains, resultB };
}

/** DEL of the whole list, asserting that vcnet-cni's DEL leaves the pod exactly as the bridge left it. */
function delChain(runtime: CniRuntime, list: Conflist, result: ChainResult, pod: TestNamespace, afterBridge: unknown) {
  runtime.del(list, result, (position) => {
    if (position === 0) expect(fingerprint(pod)).toEqual(afterBridge);
  });
}

function failure(run: () => unknown): CniErrorOutput {
  try {
    run();
  } catch (error) {
    if (error instanceof CniChainError) return error.reply;
    throw error;
  }
  throw new Error('expected the plugin to fail');
}

function ingressFilters(pod: TestNamespace, device: string, statistics = false): TcFilter[] {
  return pod.tcJson<TcFilter[]>(...(statistics ? ['-s'] : []), 'filter', 'show', 'dev', device, 'ingress');
}

function redirectTarget(filters: TcFilter[]): string | undefined {
  return filters.flatMap((filter) => filter.options?.actions ?? []).find((action) => action.kind === 'mirred')?.to_dev;
}

describe.skipIf(skipReason)('vcnet-cni after bridge', () => {
  it('ADD prints the tap in the result, plumbs tc filters, CHECK passes, DEL restores what bridge left', () => {
    const { node, pod } = makeNodeAndPod();
    const list = conflist({});
    const attachment = attachmentIn(pod);
    const runtime = new CniRuntime(node, attachment);
    const { result, afterBridge } = addChain(runtime, list, pod);

    // The result: bridge's interfaces and IPs untouched, the tap added in the pod's namespace with its MAC.
    const tapMac = pod.ipJson<Array<{ address: string }>>('link', 'show', 'tap0_kata')[0]!.address;
    expect(result.cniVersion).toBe('1.0.0');
    expect(result.interfaces.at(-1)).toEqual({ name: 'tap0_kata', mac: tapMac, sandbox: pod.path });
    const eth0Position = result.interfaces.findIndex((entry) => entry.name === 'eth0' && entry.sandbox === pod.path);
    expect(eth0Position).toBeGreaterThanOrEqual(0);
    expect(result.ips).toEqual([expect.objectContaining({ address: expect.stringMatching(/^10\.231\.1\./) })]);
    expect(result.ips[0]!.interface).toBe(eth0Position);
    const eth0Mac = pod.ipJson<Array<{ address: string }>>('link', 'show', 'eth0')[0]!.address;
    expect(result.interfaces[eth0Position]!.mac).toBe(eth0Mac);

    // The plumbing, as tc sees it: ingress qdiscs and a redirect each way.
    const qdiscs = pod.tcJson<Array<{ dev: string; kind: string }>>('qdisc', 'show');
    expect(qdiscs).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ dev: 'eth0', kind: 'ingress' }),
        expect.objectContaining({ dev: 'tap0_kata', kind: 'ingress' }),
      ]),
    );
    expect(redirectTarget(ingressFilters(pod, 'eth0'))).toBe('tap0_kata');
    expect(redirectTarget(ingressFilters(pod, 'tap0_kata'))).toBe('eth0');
    expect(existsSync(join(stateDirectory, attachment.containerId, 'interfaces', 'eth0', 'state.json'))).toBe(true);

    // CHECK of the whole list (bridge's CHECK, then vcnet-cni's) with the cached result.
    runtime.check(list, result);

    // Frames for the pod now go to the VM's tap instead of the pod's stack: the node's ARP for the
    // pod address is stolen by eth0's filter (nobody answers; no VM reads the tap in this test).
    const podAddress = result.ips[0]!.address.split('/')[0]!;
    expect(() => node.exec('ping', ['-c', '2', '-W', '1', podAddress])).toThrow();
    const redirected = ingressFilters(pod, 'eth0', true)
      .flatMap((filter) => filter.options?.actions ?? [])
      .find((action) => action.kind === 'mirred');
    expect(redirected?.stats?.packets ?? 0).toBeGreaterThan(0);

    delChain(runtime, list, result, pod, afterBridge);
    expect(existsSync(join(stateDirectory, attachment.containerId))).toBe(false);
    expect(pod.ipJson<Array<{ ifname: string }>>('link', 'show').map((link) => link.ifname)).toEqual(['lo']);

    // DEL again: everything is gone already, and that is success.
    runtime.del(list, result);
  });

  it('DEL succeeds after the pod namespace was deleted, and forgets the attachment', () => {
    const { node, pod } = makeNodeAndPod();
    const list = conflist({});
    const attachment = attachmentIn(pod);
    const runtime = new CniRuntime(node, attachment);
    const { result } = addChain(runtime, list, pod);
    pod.delete();
    runtime.del(list, result);
    expect(existsSync(join(stateDirectory, attachment.containerId))).toBe(false);
    // Without CNI_NETNS too (the spec makes it optional for DEL).
    runtime.del(list, result);
    const run = runtime.invoke('DEL', { ...list.plugins[1], cniVersion: '1.0.0', name: list.name }, { CNI_NETNS: '' });
    expect(run.status, run.stdout).toBe(0);
  });

  it.each([
    ['that file', undefined],
    ['empty', ''],
  ])(
    "DEL succeeds when the pod namespace's mount is gone but its file stays (CNI_NETNS %s), and forgets the attachment",
    (_, namespaceVariable) => {
      const { node, pod } = makeNodeAndPod();
      const list = conflist({});
      const attachment = attachmentIn(pod);
      const runtime = new CniRuntime(node, attachment);
      addChain(runtime, list, pod);
      // A crash between the runtime's unmount and its unlink: an empty regular file stays at the path
      // (containerd takes it for a closed namespace and sends DEL with it, or with no CNI_NETNS).
      spawnSync('umount', [pod.path], { stdio: 'inherit' });
      expect(statSync(pod.path).isFile()).toBe(true);
      const run = runtime.invoke(
        'DEL',
        { ...list.plugins[1], cniVersion: '1.0.0', name: list.name },
        namespaceVariable === undefined ? {} : { CNI_NETNS: namespaceVariable },
      );
      expect(run.status, run.stdout + run.stderr).toBe(0);
      expect(existsSync(join(stateDirectory, attachment.containerId))).toBe(false);
    },
  );

  it('CHECK names what is missing; DEL still removes the rest and restores the namespace', () => {
    const { node, pod } = makeNodeAndPod();
    const list = conflist({});
    const runtime = new CniRuntime(node, attachmentIn(pod));
    const { result, afterBridge } = addChain(runtime, list, pod);
    const vcnetConfig = { ...list.plugins[1], cniVersion: list.cniVersion, name: list.name, prevResult: result };

    pod.exec('tc', ['filter', 'del', 'dev', 'eth0', 'ingress', 'pref', '49152']);
    let run = runtime.invoke('CHECK', vcnetConfig);
    expect(run.status).toBe(1);
    expect(run.output).toMatchObject({ code: 105 });
    expect(String(run.output?.msg)).toContain('u32 filter (priority 49152) on eth0 is missing');

    pod.exec('ip', ['link', 'del', 'tap0_kata']);
    run = runtime.invoke('CHECK', vcnetConfig);
    expect(run.output).toMatchObject({ code: 105 });
    expect(String(run.output?.msg)).toContain('tun tap0_kata is missing');

    // A cached result without the tap is not what ADD printed.
    run = runtime.invoke('CHECK', {
      ...vcnetConfig,
      prevResult: { ...result, interfaces: result.interfaces.slice(0, -1) },
    });
    expect(String(run.output?.msg)).toContain(`prevResult does not list tap0_kata in ${pod.path}`);

    delChain(runtime, list, result, pod, afterBridge);
  });

  it('CHECK fails when eth0 MAC or MTU changed after ADD (tuning after vcnet-cni, or a person), passes with tuning before', (context) => {
    const missing = missingCniPlugins(['tuning']);
    if (missing) {
      console.log(`skipping the tuning case: ${missing}`);
      context.skip();
    }
    const { node, pod } = makeNodeAndPod();
    const tuning = { type: 'tuning', mac: 'c2:00:5e:00:53:01', mtu: 1400, dataDir: join(workDirectory, 'tuning') };
    const base = conflist({});
    // Wrong: tuning changes eth0 after vcnet-cni recorded it (and the VM's NIC took its MAC and MTU).
    const wrong: Conflist = { ...base, plugins: [base.plugins[0]!, base.plugins[1]!, tuning] };
    const runtime = new CniRuntime(node, attachmentIn(pod));
    let recordedMac = '';
    const result = runtime.add(wrong, (position) => {
      if (position === 1) recordedMac = pod.ipJson<Array<{ address: string }>>('link', 'show', 'eth0')[0]!.address;
    });
    const vcnetCheck = (by: CniRuntime, prevResult: unknown) =>
      by.invoke('CHECK', { ...base.plugins[1], cniVersion: base.cniVersion, name: base.name, prevResult });
    let run = vcnetCheck(runtime, result);
    expect(run.status).toBe(1);
    expect(run.output).toMatchObject({ code: 105 });
    expect(String(run.output?.msg)).toContain(
      `eth0 MAC changed since ADD: recorded ${recordedMac}, now c2:00:5e:00:53:01`,
    );
    expect(String(run.output?.msg)).toContain('eth0 MTU changed since ADD: recorded 1500, now 1400');
    expect(String(run.output?.details)).toContain('put vcnet-cni last in the chain');
    runtime.del(wrong, result);

    // Right: tuning first, then vcnet-cni records the tuned eth0; CHECK passes until a person changes it.
    const right: Conflist = { ...base, plugins: [base.plugins[0]!, tuning, base.plugins[1]!] };
    const second = new CniRuntime(node, attachmentIn(pod));
    const tuned = second.add(right);
    run = vcnetCheck(second, tuned);
    expect(run.status, run.stdout).toBe(0);
    pod.exec('ip', ['link', 'set', 'eth0', 'mtu', '1300']);
    run = vcnetCheck(second, tuned);
    expect(run.output).toMatchObject({ code: 105 });
    expect(String(run.output?.msg)).toContain('eth0 MTU changed since ADD: recorded 1400, now 1300');
    expect(String(run.output?.msg)).not.toContain('MAC');
    second.del(right, tuned);
    expect(linkNames(pod)).toEqual(['lo']);
    expect(reservations()).toEqual([]);
  });

  it('CHECK says when eth0 was replaced since ADD; the whole DEL succeeds and vcnet-cni leaves the new eth0 alone', () => {
    const { node, pod } = makeNodeAndPod();
    const list = conflist({});
    const runtime = new CniRuntime(node, attachmentIn(pod));
    const { result } = addChain(runtime, list, pod);
    const vcnetConfig = { ...list.plugins[1], cniVersion: list.cniVersion, name: list.name, prevResult: result };
    const oldIndex = pod.ipJson<Array<{ ifindex: number }>>('link', 'show', 'eth0')[0]!.ifindex;

    // Someone deletes eth0 and makes another link of that name (here a veth inside the pod).
    pod.exec('ip', ['link', 'del', 'eth0']);
    pod.exec('ip', ['link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0peer']);
    pod.exec('tc', ['qdisc', 'add', 'dev', 'eth0', 'ingress']);
    const newIndex = pod.ipJson<Array<{ ifindex: number }>>('link', 'show', 'eth0')[0]!.ifindex;
    const run = runtime.invoke('CHECK', vcnetConfig);
    expect(run.output).toMatchObject({ code: 105 });
    const replaced = `eth0 was replaced since ADD (ifindex ${oldIndex} then, ${newIndex} now)`;
    expect(String(run.output?.msg)).toContain(replaced);
    // Said once, though ADD put both a qdisc and a filter on eth0.
    expect(String(run.output?.msg).split(replaced)).toHaveLength(2);

    // DEL of the chain succeeds; vcnet-cni's leaves the new eth0 its own ingress qdisc (bridge's DEL
    // then deletes eth0 by name, as that plugin does).
    let qdiscsAfterVcnet: string[] = [];
    runtime.del(list, result, (position) => {
      if (position === 0)
        qdiscsAfterVcnet = pod.tcJson<Array<{ kind: string }>>('qdisc', 'show', 'dev', 'eth0').map((q) => q.kind);
    });
    expect(qdiscsAfterVcnet).toContain('ingress');
    const vcnetLinks = pod
      .ipJson<Array<{ ifname: string; group: string }>>('-d', 'link', 'show')
      .filter((link) => link.group === String(VCNET_LINK_GROUP) || link.group === '0x7663');
    expect(vcnetLinks).toEqual([]);
  });

  it('bad config: code 7 naming the field, code 2 for an unknown field, code 1 for a version; nothing changed', () => {
    const { node, pod } = makeNodeAndPod();
    const list = conflist({});
    const runtime = new CniRuntime(node, attachmentIn(pod));
    const bridgeOnly: Conflist = { ...list, plugins: [list.plugins[0]!] };
    const previous = runtime.add(bridgeOnly);
    const before = fingerprint(pod);
    const vcnet = (extra: Record<string, unknown>) => ({
      ...list.plugins[1],
      cniVersion: '1.0.0',
      name: list.name,
      prevResult: previous,
      ...extra,
    });

    let run = runtime.invoke('ADD', vcnet({ model: 'fast' }));
    expect(run.status).toBe(1);
    expect(run.output).toMatchObject({ cniVersion: '1.0.0', code: 7 });
    expect(run.output?.msg).toBe(
      'invalid network config: model: expected one of default, macvtap, tcfilter, none (got "fast")',
    );
    run = runtime.invoke('ADD', vcnet({ rateLimit: { rx: -5 } }));
    expect(run.output).toMatchObject({ code: 7 });
    expect(String(run.output?.msg)).toContain('rateLimit.rx');
    run = runtime.invoke('ADD', vcnet({ rateLimit: { burst: 1 } }));
    expect(run.output).toMatchObject({ code: 2, msg: 'unsupported field in network config: rateLimit.burst = 1' });
    run = runtime.invoke('ADD', vcnet({ cniVersion: '0.2.0' }));
    expect(run.output).toMatchObject({ code: 1 });
    expect(String(run.output?.msg)).toContain('0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0');

    expect(fingerprint(pod)).toEqual(before);
    expect(existsSync(stateDirectory)).toBe(false);
    runtime.del(bridgeOnly, previous);
  });

  it('without prevResult (not chained) ADD fails with a clear error', () => {
    const { node, pod } = makeNodeAndPod();
    const runtime = new CniRuntime(node, attachmentIn(pod));
    const alone: Conflist = {
      cniVersion: '1.0.0',
      name: 'alone',
      plugins: [{ type: 'vcnet-cni', stateDir: stateDirectory }],
    };
    const reply = failure(() => runtime.add(alone));
    expect(reply.code).toBe(7);
    expect(reply.msg).toBe(
      'invalid network config: prevResult: missing: vcnet-cni is a chained plugin and ADD needs the result of the plugin before it',
    );
    expect(reply.details).toContain('list vcnet-cni after an interface plugin');
  });

  it('refuses its own namespace and a missing one as CNI_NETNS (code 4), and a second ADD (code 102)', () => {
    const { node, pod } = makeNodeAndPod();
    const list = conflist({});
    const runtime = new CniRuntime(node, attachmentIn(pod));
    const { result, afterBridge } = addChain(runtime, list, pod);
    const vcnetConfig = { ...list.plugins[1], cniVersion: '1.0.0', name: list.name, prevResult: result };

    let run = runtime.invoke('ADD', vcnetConfig, { CNI_NETNS: node.path });
    expect(run.output).toMatchObject({ code: 4 });
    expect(String(run.output?.msg)).toContain('CNI_NETNS');
    expect(node.ipJson<Array<{ ifname: string }>>('link', 'show').map((link) => link.ifname)).not.toContain(
      'tap0_kata',
    );
    run = runtime.invoke('ADD', vcnetConfig, { CNI_NETNS: '/var/run/netns/vcnet-no-such-namespace' });
    expect(run.output).toMatchObject({ code: 4 });
    expect(String(run.output?.msg)).toContain('(no such file; accepted: an existing network namespace)');
    // The pod's own path with a "/" after it: not "missing", as it used to say; what is wrong with it.
    run = runtime.invoke('ADD', vcnetConfig, { CNI_NETNS: `${pod.path}/` });
    expect(run.output).toMatchObject({ code: 4 });
    expect(String(run.output?.msg)).toBe(
      `environment variable CNI_NETNS is invalid: "${pod.path}/" (${pod.path} is a file, not a directory, so the path with a "/" after it names nothing: leave out the trailing "/"; accepted: an existing network namespace)`,
    );
    run = runtime.invoke('ADD', vcnetConfig, { CNI_IFNAME: 'eth7' });
    expect(run.output).toMatchObject({ code: 101, msg: `no interface eth7 in ${pod.path}` });
    run = runtime.invoke('ADD', vcnetConfig);
    expect(run.output).toMatchObject({ code: 102 });

    delChain(runtime, list, result, pod, afterBridge);
  });

  it('ADD over a record whose namespace exists nowhere (a persistent stateDir after a reboot) drops it and attaches', () => {
    const { node, pod } = makeNodeAndPod();
    const list = conflist({});
    const attachment = attachmentIn(pod);
    addChain(new CniRuntime(node, attachment), list, pod);
    const record = join(stateDirectory, attachment.containerId, 'interfaces', 'eth0', 'state.json');
    const before = JSON.parse(readFileSync(record, 'utf8')) as { namespace: { ino: number } };
    // The namespace goes with everything ADD made in it; the record stays, as /run would not after a reboot.
    pod.delete();
    const newPod = makeNamespace('pod');
    const runtime = new CniRuntime(node, { ...attachment, namespacePath: newPod.path });
    const { after, add } = addOnAnotherNetwork(runtime, 'vcnet-after-reboot');
    expect(add.status, add.stdout).toBe(0);
    expect(add.stderr).toContain(`removed the stale record ${record}`);
    expect(add.stderr).toContain(`its namespace ${pod.path} (inode ${before.namespace.ino}) exists nowhere`);
    const result = add.output as ChainResult;
    expect(result.interfaces).toContainEqual(expect.objectContaining({ name: 'tap0_kata', sandbox: newPod.path }));
    const recorded = JSON.parse(readFileSync(record, 'utf8')) as { namespace: { path: string } };
    expect(recorded.namespace.path).toBe(newPod.path);
    runtime.del(after, result);
    expect(existsSync(join(stateDirectory, attachment.containerId))).toBe(false);
  });

  it('ADD over a record whose namespace is gone and whose inode the new pod namespace got drops it and attaches', async (context) => {
    const { node, pod } = makeNodeAndPod();
    const list = conflist({});
    const attachment = attachmentIn(pod);
    addChain(new CniRuntime(node, attachment), list, pod);
    const record = join(stateDirectory, attachment.containerId, 'interfaces', 'eth0', 'state.json');
    const before = JSON.parse(readFileSync(record, 'utf8')) as { namespace: { ino: number; cookie: string } };
    // The pod namespace goes without a DEL (a runtime that crashed), and the pod's next namespace gets
    // its freed inode, as the kernel hands out the lowest free one: same inode, another cookie.
    const newPod = await replaceWithSameInode(pod, 'pod');
    if (!newPod) {
      console.log("skipped: no new namespace got the gone pod namespace's inode");
      return context.skip();
    }
    newPod.exec('sysctl', ['-q', '-w', 'net.ipv6.conf.default.accept_dad=0', 'net.ipv6.conf.all.accept_dad=0']);
    const runtime = new CniRuntime(node, { ...attachment, namespacePath: newPod.path });
    const { after, add } = addOnAnotherNetwork(runtime, 'vcnet-reused-inode');
    // The recorded namespace is gone (a later one has its inode: the one rule of detach, list and gc).
    expect(add.status, add.stdout).toBe(0);
    expect(add.stderr).toContain(`removed the stale record ${record}`);
    expect(add.stderr, add.stderr).toContain(`cookie ${before.namespace.cookie}`);
    const result = add.output as ChainResult;
    expect(result.interfaces).toContainEqual(expect.objectContaining({ name: 'tap0_kata', sandbox: newPod.path }));
    runtime.del(after, result);
    expect(existsSync(join(stateDirectory, attachment.containerId))).toBe(false);
  });

  it('ADD after a killed ADD says the earlier ADD did not complete and DEL cleans it; then ADD works', async () => {
    const { node, pod } = makeNodeAndPod();
    const list = conflist({});
    const attachment = attachmentIn(pod);
    const runtime = new CniRuntime(node, attachment);
    const bridgeOnly: Conflist = { ...list, plugins: [list.plugins[0]!] };
    const previous = runtime.add(bridgeOnly);
    const vcnetConfig = { ...list.plugins[1], cniVersion: list.cniVersion, name: list.name, prevResult: previous };

    // An ADD killed (-9) right after it made the tap: its record has no device.
    const child = spawn(IP_COMMAND, ['netns', 'exec', node.name, findPlugin('vcnet-cni')], {
      env: runtime.environment('ADD', pauseAfterTap('tap0_kata')),
    });
    child.stdin.end(JSON.stringify(vcnetConfig));
    await new Promise<void>((resolve, reject) => {
      let stderr = '';
      child.stderr.on('data', (chunk) => {
        stderr += chunk;
        if (stderr.includes('paused after creating tap0_kata')) resolve();
      });
      child.on('close', () => reject(new Error(`ADD ended before the pause: ${stderr}`)));
    });
    const ended = new Promise((resolve) => child.on('close', resolve));
    child.kill('SIGKILL');
    await ended;
    const record = JSON.parse(
      readFileSync(join(stateDirectory, attachment.containerId, 'interfaces', 'eth0', 'state.json'), 'utf8'),
    );
    expect(record.device).toBeUndefined();
    expect(linkNames(pod)).toContain('tap0_kata');

    const again = runtime.invoke('ADD', vcnetConfig);
    expect(again.status).toBe(1);
    expect(again.output).toMatchObject({ code: 102 });
    expect(String(again.output?.msg)).toContain(
      `an earlier ADD of eth0 of container ${attachment.containerId} did not complete`,
    );
    expect(String(again.output?.msg)).not.toContain('already attached');
    expect(String(again.output?.details)).toContain('DEL this container and interface');

    // As the message says: DEL removes what the killed ADD made, and ADD then succeeds.
    const del = runtime.invoke('DEL', vcnetConfig);
    expect(del.status, del.stdout).toBe(0);
    expect(linkNames(pod)).not.toContain('tap0_kata');
    const added = runtime.invoke('ADD', vcnetConfig);
    expect(added.status, added.stdout).toBe(0);
    runtime.del(list, added.output);
    expect(reservations()).toEqual([]);
    expect(linkNames(pod)).toEqual(['lo']);
  });

  it('takes the interface names libcni and bridge take (net+1); refuses ".." (code 4) saying why', () => {
    const { node, pod } = makeNodeAndPod();
    const list = conflist({});
    const attachment = attachmentIn(pod, 'net+1');
    const runtime = new CniRuntime(node, attachment);
    const { result, afterBridge } = addChain(runtime, list, pod);
    expect(result.interfaces.at(-1)).toMatchObject({ name: 'tap0_kata', sandbox: pod.path });
    expect(redirectTarget(ingressFilters(pod, 'net+1'))).toBe('tap0_kata');
    expect(existsSync(join(stateDirectory, attachment.containerId, 'interfaces', 'net+1', 'state.json'))).toBe(true);
    runtime.check(list, result);
    delChain(runtime, list, result, pod, afterBridge);
    expect(existsSync(join(stateDirectory, attachment.containerId))).toBe(false);

    const vcnetConfig = { ...list.plugins[1], cniVersion: list.cniVersion, name: list.name, prevResult: result };
    const run = runtime.invoke('ADD', vcnetConfig, { CNI_IFNAME: '..' });
    expect(run.output).toMatchObject({ code: 4 });
    expect(String(run.output?.msg)).toContain('CNI_IFNAME is invalid: ".." (".." names a directory');
    // DEL of a name nothing can be recorded under succeeds, and makes nothing.
    expect(runtime.invoke('DEL', vcnetConfig, { CNI_IFNAME: '..' }).status).toBe(0);
    expect(readdirSync(stateDirectory)).toEqual(['.locks']);
    expect(reservations()).toEqual([]);
  });

  it('a container locked by another vcnet-cni gives code 11 (try again later)', () => {
    const { node, pod } = makeNodeAndPod();
    const list = conflist({ vcnet: { lockTimeoutMs: 200 } });
    const attachment = attachmentIn(pod);
    const runtime = new CniRuntime(node, attachment);
    const bridgeOnly: Conflist = { ...list, plugins: [list.plugins[0]!] };
    const previous = runtime.add(bridgeOnly);
    // This test process holds the container's flock, as another ADD would while it runs.
    const lockPath = join(stateDirectory, '.locks', attachment.containerId);
    const held = tryLockFile(lockPath);
    if (!(held instanceof FileLock)) throw new Error(`${lockPath} is already held`);
    const run = runtime.invoke('ADD', {
      ...list.plugins[1],
      cniVersion: '1.0.0',
      name: list.name,
      prevResult: previous,
    });
    expect(run.output).toMatchObject({ code: 11 });
    expect(String(run.output?.msg)).toContain(`is being changed by process ${process.pid}`);
    expect(String(run.output?.details)).toContain('lockTimeoutMs');
    expect(readFileSync(lockPath, 'utf8')).toBe(String(process.pid));
    expect(pod.ipJson<Array<{ ifname: string }>>('link', 'show').map((link) => link.ifname)).not.toContain('tap0_kata');
    held.release();
    runtime.del(bridgeOnly, previous);
  });

  it('two chains on one pod get their own taps and records; DEL of one leaves the other intact', () => {
    const { pod, first, second, attachment, runtimeA, runtimeB, resultA, resultB } = twoChainsOnOnePod();
    expect(resultA.interfaces.at(-1)?.name).toBe('tap0_kata');
    expect(resultB.interfaces.at(-1)?.name).toBe('tap1_kata');
    expect(redirectTarget(ingressFilters(pod, 'net1'))).toBe('tap1_kata');
    expect(existsSync(join(stateDirectory, attachment.containerId, 'interfaces', 'net1', 'state.json'))).toBe(true);

    const secondChain = () => ({
      tap: pod.ipJson('-d', 'link', 'show', 'tap1_kata'),
      net1: ingressFilters(pod, 'net1'),
      tap1: ingressFilters(pod, 'tap1_kata'),
    });
    const secondBefore = secondChain();

    runtimeA.del(first, resultA);
    expect(pod.ipJson<Array<{ ifname: string }>>('link', 'show').map((link) => link.ifname)).not.toContain('tap0_kata');
    expect(secondChain()).toEqual(secondBefore);
    runtimeB.check(second, resultB);

    runtimeB.del(second, resultB);
    expect(existsSync(join(stateDirectory, attachment.containerId))).toBe(false);
    expect(pod.ipJson<Array<{ ifname: string }>>('link', 'show').map((link) => link.ifname)).toEqual(['lo']);
  });

  it('a second chain whose interface has the MAC the first gave the VM is refused before anything is made', () => {
    const { pod, first, second, attachment, runtimeA, runtimeB, resultA } = twoChainsFirstAdded();
    const bridgeOnly: Conflist = { ...second, plugins: [second.plugins[0]!] };
    const previous = runtimeB.add(bridgeOnly);
    // A static MAC given to both networks: eth0's guest NIC already has it.
    const eth0Mac = pod.ipJson<Array<{ address: string }>>('link', 'show', 'eth0')[0]!.address;
    pod.exec('ip', ['link', 'set', 'net1', 'address', eth0Mac]);
    const before = fingerprint(pod);
    const run = runtimeB.invoke('ADD', {
      ...second.plugins[1],
      cniVersion: '1.0.0',
      name: second.name,
      prevResult: previous,
    });
    expect(run.status).not.toBe(0);
    expect(run.output).toMatchObject({ code: 7 });
    expect(String(run.output?.msg)).toContain(`net1 has the MAC ${eth0Mac} of eth0`);
    expect(fingerprint(pod)).toEqual(before);
    expect(existsSync(join(stateDirectory, attachment.containerId, 'interfaces', 'net1', 'state.json'))).toBe(false);
    runtimeB.del(bridgeOnly, previous);
    runtimeA.del(first, resultA);
    expect(existsSync(join(stateDirectory, attachment.containerId))).toBe(false);
  });

  it('two ADDs of one container at once take turns (container lock) and pick different taps', async () => {
    const { node, pod } = makeNodeAndPod();
    const first = conflist({ bridge: 'vcbr0', subnet: '10.231.1.0/24' });
    const second = { ...conflist({ bridge: 'vcbr1', subnet: '10.231.2.0/24' }), name: 'vcnet-second' };
    const attachment = attachmentIn(pod);
    const runtimes = [new CniRuntime(node, attachment), new CniRuntime(node, { ...attachment, interfaceName: 'net1' })];
    const lists = [first, second];
    const bridgeResults = runtimes.map((runtime, position) =>
      runtime.add({ ...lists[position]!, plugins: [lists[position]!.plugins[0]!] }),
    );
    const runs = await Promise.all(
      runtimes.map((runtime, position) =>
        runtime.invokeConcurrently('ADD', {
          ...lists[position]!.plugins[1],
          cniVersion: '1.0.0',
          name: lists[position]!.name,
          prevResult: bridgeResults[position],
        }),
      ),
    );
    for (const run of runs) expect(run.status, run.stdout + run.stderr).toBe(0);
    const taps = runs.map((run) => (run.output as ChainResult).interfaces.at(-1)?.name).sort();
    expect(taps).toEqual(['tap0_kata', 'tap1_kata']);
    runtimes.forEach((runtime, position) => {
      runtime.del(lists[position]!, runs[position]!.output);
    });
    expect(existsSync(join(stateDirectory, attachment.containerId))).toBe(false);
    expect(pod.ipJson<Array<{ ifname: string }>>('link', 'show').map((link) => link.ifname)).toEqual(['lo']);
  });

  it('a 0.4.0 conflist with model macvtap and rate limits: the result in 0.4.0, exact DEL', (context) => {
    const { node, pod } = makeNodeAndPod();
    // A macvtap needs an ethernet parent: a veth pair in the node namespace, removed again.
    node.exec('ip', ['link', 'add', 'probe0', 'type', 'veth', 'peer', 'name', 'probe1']);
    const probe = kernelSupportsLinkKind(node, 'macvtap', ['link', 'probe0']);
    node.exec('ip', ['link', 'del', 'probe0']);
    if (!probe.ok) {
      console.log(`skipping the macvtap case: ${probe.reason}`);
      context.skip();
    }
    const list = conflist({
      cniVersion: '0.4.0',
      vcnet: { model: 'macvtap', rateLimit: { rx: 20_000_000, tx: 10_000_000 } },
    });
    const attachment = attachmentIn(pod);
    const runtime = new CniRuntime(node, attachment);
    const { result, afterBridge } = addChain(runtime, list, pod);
    const eth0Before = (afterBridge.links as Array<{ ifname: string; address: string }>).find(
      (link) => link.ifname === 'eth0',
    )!;

    expect(result.cniVersion).toBe('0.4.0');
    expect(result.ips[0]).toMatchObject({ version: '4' });
    const macvtap = pod.ipJson<Array<{ address: string; linkinfo: { info_kind: string } }>>(
      '-d',
      'link',
      'show',
      'tap0_kata',
    )[0]!;
    expect(macvtap.linkinfo.info_kind).toBe('macvtap');
    // The VM's device takes eth0's MAC; eth0 moves to another, and the result says so.
    expect(result.interfaces.at(-1)).toEqual({ name: 'tap0_kata', mac: eth0Before.address, sandbox: pod.path });
    const eth0Now = pod.ipJson<Array<{ address: string }>>('link', 'show', 'eth0')[0]!.address;
    expect(eth0Now).not.toBe(eth0Before.address);
    expect(result.interfaces.find((entry) => entry.name === 'eth0' && entry.sandbox === pod.path)?.mac).toBe(eth0Now);
    const qdiscs = pod.tcJson<Array<{ dev: string; kind: string }>>('qdisc', 'show');
    expect(qdiscs).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ dev: 'tap0_kata', kind: 'htb' }),
        expect.objectContaining({ dev: 'ifb0_kata', kind: 'htb' }),
      ]),
    );
    expect(redirectTarget(ingressFilters(pod, 'tap0_kata'))).toBe('ifb0_kata');

    // vcnet-cni's own CHECK. (bridge's CHECK expects the pod address on eth0, which the macvtap model
    // moves away, so the whole list's CHECK cannot pass with this model.)
    const run = runtime.invoke('CHECK', {
      ...list.plugins[1],
      cniVersion: '0.4.0',
      name: list.name,
      prevResult: result,
    });
    expect(run.status, run.stdout).toBe(0);

    delChain(runtime, list, result, pod, afterBridge);
  });

  it('the development wrapper runs the chain with a PATH that has no tools (only VCNET_NODE)', () => {
    const { node, pod } = makeNodeAndPod();
    const list = conflist({});
    const attachment = attachmentIn(pod);
    // As `env -i PATH=/nonexistent VCNET_NODE=...`: the plugins get nothing else but the CNI variables.
    const runtime = new CniRuntime(node, attachment, { PATH: '/nonexistent' });
    const { result, afterBridge } = addChain(runtime, list, pod);
    expect(result.interfaces.at(-1)).toMatchObject({ name: 'tap0_kata', sandbox: pod.path });
    runtime.check(list, result);
    delChain(runtime, list, result, pod, afterBridge);
    expect(existsSync(join(stateDirectory, attachment.containerId))).toBe(false);
    expect(reservations()).toEqual([]);
  });

  it('VERSION through the wrapper found in CNI_PATH', () => {
    const { node, pod } = makeNodeAndPod();
    const runtime = new CniRuntime(node, attachmentIn(pod));
    const run = runtime.invoke('VERSION', { type: 'vcnet-cni', cniVersion: '0.4.0' });
    expect(run.status).toBe(0);
    expect(run.output).toEqual({
      cniVersion: '0.4.0',
      supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'],
    });
  });
});

/** The addresses host-local holds for a network: one file per reserved IP in <dataDir>/<network>. */
function reservations(network = 'vcnet-test'): string[] {
  const directory = join(workDirectory, 'ipam', network);
  if (!existsSync(directory)) return [];
  return readdirSync(directory).filter((name) => isIP(name) !== 0);
}

function linkNames(namespace: TestNamespace): string[] {
  return namespace.ipJson<Array<{ ifname: string }>>('link', 'show').map((link) => link.ifname);
}

describe.skipIf(skipReason)('vcnet-cni DEL always frees', () => {
  it.each([
    ['an invalid model', { model: 'fast' }, 7],
    ['an unknown field', { rateLimit: { burst: 1 } }, 2],
    ['a relative stateDir', { stateDir: 'relative/state' }, 7],
  ])(
    '%s: ADD of the chain fails, DEL of the chain succeeds and host-local keeps no reservation',
    (_case, bad, code) => {
      const { node, pod } = makeNodeAndPod();
      const list = conflist({ vcnet: bad });
      const runtime = new CniRuntime(node, attachmentIn(pod));
      const reply = failure(() => runtime.add(list));
      expect(reply.code).toBe(code);
      // bridge's ADD went through before vcnet-cni refused: one address is reserved.
      expect(reservations()).toHaveLength(1);
      // libcni has no cached result for a failed ADD: DEL runs without prevResult, vcnet-cni first.
      runtime.del(list);
      expect(reservations()).toEqual([]);
      expect(linkNames(pod)).toEqual(['lo']);
      expect(node.ipJson<Array<{ ifname: string }>>('link', 'show', 'master', 'vcbr0')).toEqual([]);
    },
  );
});

describe.skipIf(skipReason)('vcnet-cni with a VCNET_LOG_LEVEL it does not know', () => {
  it('ADD and DEL work, say once on stderr that the level is ignored, and stdout stays the result', () => {
    const { node, pod } = makeNodeAndPod();
    const runtime = new CniRuntime(node, attachmentIn(pod));
    const list = conflist({});
    const bridge = runtime.invoke('ADD', { ...list.plugins[0], cniVersion: list.cniVersion, name: list.name });
    expect(bridge.status, bridge.stderr).toBe(0);
    const vcnetConfig = { ...list.plugins[1], cniVersion: list.cniVersion, name: list.name };
    const add = runtime.invoke('ADD', { ...vcnetConfig, prevResult: bridge.output }, { VCNET_LOG_LEVEL: 'verbose' });
    expect(add.status, add.stdout + add.stderr).toBe(0);
    expect((add.output as ChainResult).interfaces.map((entry) => entry.name)).toContain('tap0_kata');
    expect(add.stderr).toContain('VCNET_LOG_LEVEL="verbose" is not a log level');
    // Any case of a level name is a level: Info logs at info (JSON lines on stderr).
    const del = runtime.invoke('DEL', { ...vcnetConfig, prevResult: add.output }, { VCNET_LOG_LEVEL: 'Info' });
    expect(del.status, del.stdout + del.stderr).toBe(0);
    expect(del.stdout).toBe('');
    expect(del.stderr).not.toContain('is not a log level');
    expect(linkNames(pod).sort()).toEqual(['eth0', 'lo']);
    runtime.invoke('DEL', { ...list.plugins[0], cniVersion: list.cniVersion, name: list.name });
  });
});

describe.skipIf(skipReason)('vcnet-cni after a DEL killed half-way', () => {
  /**
   * What a DEL killed after removing the record but before its directories leaves (its plumbing
   * undone): the emptied interface directory and the container's lock file, not held.
   */
  function leaveWhatAKilledDelLeaves(containerId: string): { containerDirectory: string; lockPath: string } {
    const containerDirectory = join(stateDirectory, containerId);
    mkdirSync(join(containerDirectory, 'interfaces', 'eth0'), { recursive: true });
    const lockPath = join(stateDirectory, '.locks', containerId);
    mkdirSync(dirname(lockPath), { recursive: true });
    writeFileSync(lockPath, '4242');
    return { containerDirectory, lockPath };
  }

  it('a later DEL, the plugin GC and vcnet gc each remove the empty directories and the lock file', () => {
    const { node, pod } = makeNodeAndPod();
    const list = conflist({});
    const attachment = attachmentIn(pod);
    const runtime = new CniRuntime(node, attachment);
    const { result, afterBridge } = addChain(runtime, list, pod);
    const vcnetConfig = { ...list.plugins[1], cniVersion: list.cniVersion, name: list.name, prevResult: result };
    const del = runtime.invoke('DEL', vcnetConfig);
    expect(del.status, del.stdout).toBe(0);
    expect(fingerprint(pod)).toEqual(afterBridge);

    let left = leaveWhatAKilledDelLeaves(attachment.containerId);
    const again = runtime.invoke('DEL', vcnetConfig);
    expect(again.status, again.stdout).toBe(0);
    expect(again.stdout).toBe('');
    expect(existsSync(left.containerDirectory)).toBe(false);
    expect(existsSync(left.lockPath)).toBe(false);

    // The plugin's GC (of any network: the directory names none) tidies it too.
    left = leaveWhatAKilledDelLeaves(attachment.containerId);
    const gc = runtime.invoke('GC', {
      ...list.plugins[1],
      cniVersion: '1.1.0',
      name: 'another-network',
      'cni.dev/valid-attachments': [],
    });
    expect(gc.status, gc.stdout).toBe(0);
    expect(existsSync(left.containerDirectory)).toBe(false);
    expect(existsSync(left.lockPath)).toBe(false);

    // And `vcnet gc`, which says so; a directory with a record set aside in it is not touched.
    left = leaveWhatAKilledDelLeaves(attachment.containerId);
    const asideDirectory = join(stateDirectory, 'ctr-aside', 'interfaces', 'eth0');
    mkdirSync(asideDirectory, { recursive: true });
    writeFileSync(join(asideDirectory, 'state.json.unreadable-2024-01-01T00-00-00-000Z'), 'garbage');
    const collected = vcnet(['gc', '--state-dir', stateDirectory, '--json']);
    expect(collected.status, collected.stderr).toBe(0);
    const report = JSON.parse(collected.stdout) as { removed: Array<{ kind: string; name: string; file?: string }> };
    expect(report.removed).toContainEqual(
      expect.objectContaining({ kind: 'state', name: attachment.containerId, file: left.containerDirectory }),
    );
    expect(report.removed.map((item) => item.name)).not.toContain('ctr-aside');
    expect(existsSync(left.containerDirectory)).toBe(false);
    expect(existsSync(left.lockPath)).toBe(false);
    expect(readdirSync(asideDirectory)).toHaveLength(1);

    runtime.del({ ...list, plugins: [list.plugins[0]!] }, result);
    expect(reservations()).toEqual([]);
  });

  it("GC leaves no lock file behind for an entry it cannot tidy (not vcnet's, a record set aside)", () => {
    const { node, pod } = makeNodeAndPod();
    const list = conflist({});
    const runtime = new CniRuntime(node, attachmentIn(pod));
    const foreign = join(stateDirectory, 'not-vcnets', 'interfaces', 'eth0');
    mkdirSync(foreign, { recursive: true });
    writeFileSync(join(foreign, 'notes.txt'), "someone else's");
    const aside = join(stateDirectory, 'ctr-aside', 'interfaces', 'eth0');
    mkdirSync(aside, { recursive: true });
    writeFileSync(join(aside, 'state.json.unreadable-2024-01-01T00-00-00-000Z'), 'garbage');
    for (let run = 0; run < 2; run++) {
      const gc = runtime.invoke('GC', {
        ...list.plugins[1],
        cniVersion: '1.1.0',
        name: list.name,
        'cni.dev/valid-attachments': [],
      });
      expect(gc.status, gc.stdout).toBe(0);
      expect(readdirSync(join(stateDirectory, '.locks'))).toEqual([]);
      expect(readdirSync(foreign)).toEqual(['notes.txt']);
      expect(readdirSync(aside)).toHaveLength(1);
    }
  });

  it('a DEL that finds the lock held waits, and leaves the directories to the holder', () => {
    const { node, pod } = makeNodeAndPod();
    const list = conflist({ vcnet: { lockTimeoutMs: 200 } });
    const attachment = attachmentIn(pod);
    const runtime = new CniRuntime(node, attachment);
    const left = leaveWhatAKilledDelLeaves(attachment.containerId);
    const held = tryLockFile(left.lockPath);
    if (!(held instanceof FileLock)) throw new Error(`${left.lockPath} is already held`);
    try {
      const del = runtime.invoke('DEL', { ...list.plugins[1], cniVersion: list.cniVersion, name: list.name });
      expect(del.output).toMatchObject({ code: 11 });
      expect(existsSync(join(left.containerDirectory, 'interfaces', 'eth0'))).toBe(true);
    } finally {
      held.release();
    }
    const del = runtime.invoke('DEL', { ...list.plugins[1], cniVersion: list.cniVersion, name: list.name });
    expect(del.status, del.stdout).toBe(0);
    expect(existsSync(left.containerDirectory)).toBe(false);
    expect(existsSync(left.lockPath)).toBe(false);
  });
});

/** The lines of the test run's state directory registry (test/global-setup.ts points vcnet at it). */
function registeredDirectories(): string[] {
  const registry = process.env.VCNET_STATE_REGISTRY;
  if (!registry || !existsSync(registry)) return [];
  return readFileSync(registry, 'utf8').split('\n').filter(Boolean);
}

describe.skipIf(skipReason)('vcnet-cni with a stateDir it cannot use', () => {
  /** A plugin that loops is killed after this long: the test then fails instead of hanging. */
  const BOUND_MS = 20_000;

  it('under /proc (where recursive mkdir loops): DEL succeeds, STATUS and ADD fail naming the path, all at once', () => {
    const { node, pod } = makeNodeAndPod();
    const runtime = new CniRuntime(node, attachmentIn(pod));
    const stateDir = `/proc/vcnet-no-such-${randomBytes(4).toString('hex')}`;
    const config = { type: 'vcnet-cni', name: 'vcnet-test', stateDir };

    const del = runtime.invoke('DEL', { ...config, cniVersion: '1.0.0' }, {}, { timeoutMs: BOUND_MS });
    expect(del.status, del.stderr).toBe(0);

    const status = runtime.invoke('STATUS', { ...config, cniVersion: '1.1.0' }, {}, { timeoutMs: BOUND_MS });
    expect(status.status, status.stderr).toBe(1);

    const bridgeOnly: Conflist = { ...conflist({}), plugins: [conflist({}).plugins[0]!] };
    const previous = runtime.add(bridgeOnly);
    const add = runtime.invoke(
      'ADD',
      { ...config, cniVersion: '1.0.0', prevResult: previous },
      {},
      { timeoutMs: BOUND_MS },
    );
    expect(add.status, add.stderr).toBe(1);
    expect(add.output).toMatchObject({ code: 7 });
    expect(String(add.output?.msg)).toContain(`stateDir: cannot be used as a state directory`);
    expect(String(add.output?.msg)).toContain(stateDir);
    expect(String(add.output?.msg)).toContain('ENOENT');
    // STATUS's own code (50: cannot serve ADD), for ADD's reason.
    expect(status.output).toMatchObject({ code: 50 });
    expect(String(status.output?.msg)).toContain(String(add.output?.msg));
    expect(linkNames(pod)).not.toContain('tap0_kata');
    runtime.del(bridgeOnly, previous);
  });

  it('"/" or a path with a NUL byte: STATUS and ADD refuse it naming stateDir (STATUS made /.locks), DEL succeeds', () => {
    const { node, pod } = makeNodeAndPod();
    const runtime = new CniRuntime(node, attachmentIn(pod));
    const locksBefore = existsSync('/.locks');
    for (const stateDir of ['/', `${workDirectory}/a\u0000b`]) {
      const config = { type: 'vcnet-cni', name: 'vcnet-test', stateDir };
      const status = runtime.invoke('STATUS', { ...config, cniVersion: '1.1.0' }, {}, { timeoutMs: BOUND_MS });
      expect(status.status, status.stderr).toBe(1);
      expect(String(status.output?.msg)).toContain('stateDir');
      expect(String(status.output?.msg)).not.toContain('null bytes');
      const add = runtime.invoke('ADD', { ...config, cniVersion: '1.0.0' }, {}, { timeoutMs: BOUND_MS });
      expect(add.output).toMatchObject({ code: 7 });
      expect(String(add.output?.msg)).toContain('stateDir');
      const del = runtime.invoke('DEL', { ...config, cniVersion: '1.0.0' }, {}, { timeoutMs: BOUND_MS });
      expect(del.status, del.stderr).toBe(0);
    }
    expect(existsSync('/.locks')).toBe(locksBefore);
    expect(linkNames(pod)).not.toContain('tap0_kata');
  });

  it('under a file: DEL succeeds, ADD fails with code 7 naming stateDir, the value and ENOTDIR (not 999)', () => {
    const { node, pod } = makeNodeAndPod();
    const runtime = new CniRuntime(node, attachmentIn(pod));
    const file = join(workDirectory, 'a-file');
    writeFileSync(file, 'not a directory\n');
    const stateDir = join(file, 'state');
    const list = conflist({ vcnet: { stateDir } });
    const bridgeOnly: Conflist = { ...list, plugins: [list.plugins[0]!] };
    const previous = runtime.add(bridgeOnly);
    const vcnetConfig = { ...list.plugins[1], cniVersion: '1.0.0', name: list.name };

    const add = runtime.invoke('ADD', { ...vcnetConfig, prevResult: previous });
    expect(add.status, add.stderr).toBe(1);
    expect(add.output).toMatchObject({ code: 7 });
    expect(String(add.output?.msg)).toBe(
      `invalid network config: stateDir: cannot be used as a state directory: ${file} is not a directory (ENOTDIR) (got ${JSON.stringify(stateDir)})`,
    );
    expect(String(add.output?.details)).toContain('VCNET_CNI_CONFIG');
    // The hint names the plugin's setting and default, not the CLI's --state-dir (or its default).
    const status = runtime.invoke('STATUS', { ...vcnetConfig, cniVersion: '1.1.0' });
    expect(status.output).toMatchObject({ code: 50 });
    for (const reply of [add.output, status.output]) {
      expect(String(reply?.details)).toContain(
        `point "stateDir" in the plugin's network configuration at a directory vcnet can create and write (default /run/vcnet/cni)`,
      );
      expect(String(reply?.details)).not.toMatch(/--state-dir|VCNET_STATE_DIR|\/run\/vcnet\/sandboxes/);
    }

    const del = runtime.invoke('DEL', vcnetConfig);
    expect(del.status, del.stdout).toBe(0);
    expect(del.stdout).toBe('');
    runtime.del(bridgeOnly, previous);
    expect(reservations()).toEqual([]);
  });

  it('on a read-only file system where the record goes: ADD fails with code 11, the hint naming "stateDir", and is undone', () => {
    const { node, pod } = makeNodeAndPod();
    const attachment = attachmentIn(pod);
    const runtime = new CniRuntime(node, attachment);
    const list = conflist({});
    const bridgeOnly: Conflist = { ...list, plugins: [list.plugins[0]!] };
    const previous = runtime.add(bridgeOnly);
    awaitLinkLocal(pod, attachment.interfaceName);
    const afterBridge = fingerprint(pod);
    const vcnetConfig = { ...list.plugins[1], cniVersion: '1.0.0', name: list.name };
    // The state directory and its lock stay writable (ADD gets as far as writing the record); the
    // interface's record directory is a read-only bind mount, in a private mount namespace of the
    // plugin's run only, so nothing outside sees it.
    const readOnly = join(stateDirectory, attachment.containerId, 'interfaces', attachment.interfaceName);
    mkdirSync(readOnly, { recursive: true, mode: 0o700 });
    const script = 'mount --bind "$RO" "$RO" && mount -o remount,bind,ro "$RO" || exit 90; exec "$@"';
    const plugin = [IP_COMMAND, 'netns', 'exec', node.name, findPlugin('vcnet-cni')];
    const run = spawnSync('unshare', ['-m', '--propagation', 'private', 'sh', '-c', script, 'sh', ...plugin], {
      input: JSON.stringify({ ...vcnetConfig, prevResult: previous }),
      encoding: 'utf8',
      env: runtime.environment('ADD', { RO: readOnly }),
    });
    expect(run.status, run.stderr).toBe(1);
    const reply = JSON.parse(run.stdout) as CniErrorOutput;
    expect(reply).toMatchObject({ code: 11 });
    expect(reply.msg).toContain('EROFS');
    // The plugin's setting, not the CLI's --state-dir (vcnet-cni takes no such flag).
    expect(reply.details).toContain(`point "stateDir" in the plugin's network configuration at a writable one`);
    expect(reply.details).not.toMatch(/--state-dir|VCNET_STATE_DIR/);
    expect(fingerprint(pod)).toEqual(afterBridge);

    const del = runtime.invoke('DEL', vcnetConfig);
    expect(del.status, del.stdout).toBe(0);
    runtime.del(bridgeOnly, previous);
    expect(reservations()).toEqual([]);
  });

  it('ADD that fails before recording anything (code 101) registers no state directory', () => {
    const { node, pod } = makeNodeAndPod();
    const runtime = new CniRuntime(node, attachmentIn(pod, 'eth7'));
    const list = conflist({});
    const bridgeOnly: Conflist = { ...list, plugins: [list.plugins[0]!] };
    const bridgeRuntime = new CniRuntime(node, attachmentIn(pod));
    const previous = bridgeRuntime.add(bridgeOnly);
    const add = runtime.invoke('ADD', {
      ...list.plugins[1],
      cniVersion: '1.0.0',
      name: list.name,
      prevResult: previous,
    });
    expect(add.output).toMatchObject({ code: 101, msg: `no interface eth7 in ${pod.path}` });
    expect(registeredDirectories()).not.toContain(stateDirectory);
    // Nor is the state directory it made left behind (empty, with an empty .locks).
    expect(existsSync(stateDirectory)).toBe(false);
    bridgeRuntime.del(bridgeOnly, previous);
  });

  it('ADD of lo is an unsupported interface (107) naming the loopback device, not a missing one (101)', () => {
    const { node, pod } = makeNodeAndPod();
    const runtime = new CniRuntime(node, attachmentIn(pod, 'lo'));
    const list = conflist({});
    const bridgeOnly: Conflist = { ...list, plugins: [list.plugins[0]!] };
    const bridgeRuntime = new CniRuntime(node, attachmentIn(pod));
    const previous = bridgeRuntime.add(bridgeOnly);
    const add = runtime.invoke('ADD', {
      ...list.plugins[1],
      cniVersion: '1.0.0',
      name: list.name,
      prevResult: previous,
    });
    expect(add.output).toMatchObject({ code: 107, msg: 'lo is the loopback device: the guest has its own' });
    bridgeRuntime.del(bridgeOnly, previous);
  });

  it('a stateDir another user could write in: ADD fails with code 7 naming it, its owner and mode, and STATUS with 50 for that reason', () => {
    const { node, pod } = makeNodeAndPod();
    const runtime = new CniRuntime(node, attachmentIn(pod));
    mkdirSync(stateDirectory, { mode: 0o700 });
    chmodSync(stateDirectory, 0o777);
    const list = conflist({});
    const bridgeOnly: Conflist = { ...list, plugins: [list.plugins[0]!] };
    const previous = runtime.add(bridgeOnly);
    const add = runtime.invoke('ADD', {
      ...list.plugins[1],
      cniVersion: '1.0.0',
      name: list.name,
      prevResult: previous,
    });
    expect(add.output).toMatchObject({ code: 7 });
    expect(String(add.output?.msg)).toContain(
      `stateDir: cannot be used as a state directory: it is writable by its group and others (owner uid 0, mode 0777)`,
    );
    expect(String(add.output?.details)).toContain(`chmod 700 ${stateDirectory}`);
    expect(linkNames(pod)).not.toContain('tap0_kata');
    expect(existsSync(join(stateDirectory, '.locks'))).toBe(false);
    // STATUS answers whether ADD can be served: not with this stateDir, for ADD's reason.
    const status = runtime.invoke('STATUS', { ...list.plugins[1], cniVersion: '1.1.0', name: list.name });
    expect(status.status, status.stderr).toBe(1);
    expect(status.output).toMatchObject({ code: 50 });
    expect(String(status.output?.msg)).toBe(`vcnet-cni cannot serve ADD: ${add.output?.msg}`);
    expect(String(status.output?.details)).toContain(`chmod 700 ${stateDirectory}`);
    expect(existsSync(join(stateDirectory, '.locks'))).toBe(false);
    runtime.del(bridgeOnly, previous);
  });

  it('DEL and CHECK with nothing recorded create no directory, lock or registry line', () => {
    const { node, pod } = makeNodeAndPod();
    const attachment = attachmentIn(pod);
    const runtime = new CniRuntime(node, attachment);
    const list = conflist({});
    const vcnetConfig = { ...list.plugins[1], cniVersion: '1.0.0', name: list.name };
    const del = runtime.invoke('DEL', vcnetConfig);
    expect(del.status, del.stdout).toBe(0);
    expect(existsSync(stateDirectory)).toBe(false);
    const check = runtime.invoke('CHECK', { ...vcnetConfig, prevResult: { cniVersion: '1.0.0', interfaces: [] } });
    expect(check.output).toMatchObject({ code: 105, msg: expect.stringContaining('no completed ADD is recorded') });
    expect(existsSync(stateDirectory)).toBe(false);
    expect(registeredDirectories()).not.toContain(stateDirectory);

    // Undecodable stdin: DEL looks in the default /run/vcnet/cni, and must not make it to find nothing.
    const defaultDirectory = '/run/vcnet/cni';
    const existedBefore = existsSync(defaultDirectory);
    const registeredBefore = registeredDirectories().includes(defaultDirectory);
    const lockPath = join(defaultDirectory, '.locks', attachment.containerId);
    try {
      const undecodable = runtime.invoke(
        'DEL',
        { type: 'vcnet-cni' },
        {},
        { input: '{"cniVersion": "1.0.0", trailing garbage' },
      );
      expect(undecodable.status, undecodable.stdout).toBe(0);
      expect(existsSync(lockPath)).toBe(false);
      expect(existsSync(defaultDirectory)).toBe(existedBefore);
      expect(registeredDirectories().includes(defaultDirectory)).toBe(registeredBefore);
    } finally {
      // Only what this test may have made (a vcnet without the fix makes them).
      rmSync(lockPath, { force: true });
      if (!existedBefore) {
        for (const directory of [join(defaultDirectory, '.locks'), defaultDirectory]) {
          try {
            rmdirSync(directory);
          } catch {
            // not empty or absent: not ours to remove
          }
        }
      }
    }
  });
});

describe.skipIf(skipReason)('vcnet-cni DEL with an unreadable record', () => {
  const recordOf = (containerId: string, interfaceName = 'eth0') =>
    join(stateDirectory, containerId, 'interfaces', interfaceName, 'state.json');
  /** One chain (bridge, then vcnet-cni) ADDed on a new pod, with vcnet-cni's record and its config for DEL/CHECK. */
  const oneChainAddedWithItsRecord = () => {
    const { node, pod } = makeNodeAndPod();
    const list = conflist({});
    const attachment = attachmentIn(pod);
    const runtime = new CniRuntime(node, attachment);
    const { result } = addChain(runtime, list, pod);
    const record = recordOf(attachment.containerId);
    const vcnetConfig = { ...list.plugins[1], cniVersion: list.cniVersion, name: list.name, prevResult: result };
    return { pod, list, attachment, runtime, result, record, vcnetConfig };
  };
  const setAside = (containerId: string, interfaceName = 'eth0') =>
    readdirSync(join(stateDirectory, containerId, 'interfaces', interfaceName)).filter((name) =>
      /^state\.json\.unreadable-/.test(name),
    );

  it.each([
    ['garbage', () => 'not json {'],
    ['an empty file', () => ''],
    ['{}', () => '{}'],
    ['a record of an older vcnet (version 1)', (text: string) => JSON.stringify({ ...JSON.parse(text), version: 1 })],
  ])(
    '%s: DEL sets it aside with one warning, removes the tap and its filters, and the chain frees the address',
    (_case, replace) => {
      const { pod, list, attachment, runtime, result, record, vcnetConfig } = oneChainAddedWithItsRecord();
      const content = replace(readFileSync(record, 'utf8'));
      writeFileSync(record, content);

      const del = runtime.invoke('DEL', vcnetConfig);
      expect(del.status, del.stdout).toBe(0);
      expect(del.stdout).toBe('');
      const warnings = del.stderr.split('\n').filter(Boolean);
      expect(warnings).toHaveLength(1);
      const [aside] = setAside(attachment.containerId);
      expect(aside).toBeDefined();
      expect(warnings[0]).toContain(
        `set aside the unreadable record ${record} as ${record}${aside!.slice('state.json'.length)}`,
      );
      expect(warnings[0]).toContain('tap0_kata');
      // Nothing destroyed: the operator finds the record as it was.
      expect(existsSync(record)).toBe(false);
      expect(readFileSync(join(dirname(record), aside!), 'utf8')).toBe(content);
      // What vcnet made for eth0 is gone: the tap, and eth0's redirect to it.
      expect(linkNames(pod)).not.toContain('tap0_kata');
      expect(redirectTarget(ingressFilters(pod, 'eth0'))).toBeUndefined();

      // DEL again succeeds quietly, and the rest of the chain frees the pod's address.
      const again = runtime.invoke('DEL', vcnetConfig);
      expect(again.status, again.stdout).toBe(0);
      expect(again.stderr).toBe('');
      runtime.del({ ...list, plugins: [list.plugins[0]!] }, result);
      expect(reservations()).toEqual([]);
      expect(linkNames(pod)).toEqual(['lo']);
    },
  );

  // Records that passed validation before: CHECK said the plumbing was fine and DEL deleted the record
  // as if there were nothing to undo, leaving tap0_kata, both redirect filters and both ingress qdiscs.
  it.each<
    [
      string,
      (record: { namespace: { ino: number }; network: { endpoints: Array<Record<string, unknown>> } }) => void,
      string,
    ]
  >([
    ['no plumbing', (record) => delete record.network.endpoints[0]!.plumbing, 'network.endpoints.0.plumbing'],
    [
      'plumbing renamed by a bit flip',
      (record) => {
        const endpoint = record.network.endpoints[0]!;
        endpoint.pluíbing = endpoint.plumbing;
        delete endpoint.plumbing;
      },
      'network.endpoints.0.plumbing',
    ],
    ['no endpoint', (record) => (record.network.endpoints = []), 'network.endpoints'],
    // The pod namespace has the recorded cookie: the record is damaged, the namespace is not gone (DEL
    // deleted the record as if it were, and left everything).
    ['namespace inode wrong, cookie right', (record) => (record.namespace.ino += 1), 'namespace.ino'],
  ])('%s: CHECK refuses the record (106) naming the file and the field, DEL sets it aside', (_case, damage, field) => {
    const { pod, list, attachment, runtime, result, record, vcnetConfig } = oneChainAddedWithItsRecord();
    const damaged = JSON.parse(readFileSync(record, 'utf8'));
    damage(damaged);
    const content = JSON.stringify(damaged, null, 2);
    writeFileSync(record, content);
    const plumbing = () => ({
      links: linkNames(pod),
      eth0: ingressFilters(pod, 'eth0'),
      tap: ingressFilters(pod, 'tap0_kata'),
      qdiscs: pod.exec('tc', ['qdisc', 'show']),
    });
    const before = plumbing();
    expect(redirectTarget(before.eth0)).toBe('tap0_kata');

    const check = runtime.invoke('CHECK', vcnetConfig);
    expect(check.status, check.stdout).toBe(1);
    expect(check.output).toMatchObject({ code: 106 });
    expect(String(check.output?.msg)).toContain(`state file ${record}: field ${field} `);
    expect(readFileSync(record, 'utf8')).toBe(content);
    expect(plumbing()).toEqual(before);

    const del = runtime.invoke('DEL', vcnetConfig);
    expect(del.status, del.stdout).toBe(0);
    const warnings = del.stderr.split('\n').filter(Boolean);
    expect(warnings).toHaveLength(1);
    const [aside] = setAside(attachment.containerId);
    expect(warnings[0]).toContain(
      `set aside the unreadable record ${record} as ${record}${aside!.slice('state.json'.length)}`,
    );
    expect(warnings[0]).toContain(`field ${field} `);
    // What no record owns any more is removed as for any unreadable record, and said.
    // Every object removed is named: the redirect on eth0, the tap, and eth0's ingress qdisc, emptied.
    expect(warnings[0]).toMatch(
      /; removed filter on eth0 \(prio \d+ redirects to orphan tap0_kata\), link tap0_kata, ingress qdisc on eth0 \(no record owns them\) in /,
    );
    expect(warnings[0]).toContain(`(no record owns them) in ${pod.path}`);
    expect(pod.exec('tc', ['qdisc', 'show', 'dev', 'eth0'])).not.toContain('ingress');
    expect(readFileSync(join(dirname(record), aside!), 'utf8')).toBe(content);
    expect(linkNames(pod)).not.toContain('tap0_kata');
    runtime.del({ ...list, plugins: [list.plugins[0]!] }, result);
    expect(reservations()).toEqual([]);
  });

  // A record filed under another interface's directory is not that interface's: gc names the field
  // (as every damaged record is named: state file X: field F …), skips it and leaves its namespace alone.
  it('vcnet gc skips a record whose interfaceName is not its directory, naming the field, and keeps the pod', () => {
    const { pod, list, attachment, runtime, result, record, vcnetConfig } = oneChainAddedWithItsRecord();
    const misfiled = join(stateDirectory, attachment.containerId, 'interfaces', 'eth9', 'state.json');
    mkdirSync(dirname(misfiled));
    renameSync(record, misfiled);
    const before = fingerprint(pod);

    const collected = vcnet(['gc', '--state-dir', stateDirectory, '--netns', pod.path, '--json']);
    expect(collected.status, collected.stderr).toBe(0);
    const report = JSON.parse(collected.stdout) as { skipped: Array<{ file: string; reason: string }> };
    // Then why gc keeps it (its namespace is alive) and how to settle it.
    expect(report.skipped).toContainEqual({
      file: misfiled,
      reason: expect.stringMatching(
        /^state file .*: field interfaceName is "eth0", not eth9; its namespace \(inode \d+, cookie \d+\) is still there, so gc keeps the record/,
      ),
    });
    expect(fingerprint(pod)).toEqual(before);
    expect(readdirSync(dirname(misfiled))).toEqual(['state.json']);

    renameSync(misfiled, record);
    rmdirSync(dirname(misfiled));
    const del = runtime.invoke('DEL', vcnetConfig);
    expect(del.status, del.stdout).toBe(0);
    expect(linkNames(pod)).not.toContain('tap0_kata');
    runtime.del({ ...list, plugins: [list.plugins[0]!] }, result);
    expect(reservations()).toEqual([]);
  });

  it('the pod namespace gone, or no CNI_NETNS: DEL sets the record aside and succeeds', () => {
    const { node, pod } = makeNodeAndPod();
    const list = conflist({});
    const attachment = attachmentIn(pod);
    const runtime = new CniRuntime(node, attachment);
    const { result } = addChain(runtime, list, pod);
    const vcnetConfig = { ...list.plugins[1], cniVersion: list.cniVersion, name: list.name, prevResult: result };
    writeFileSync(recordOf(attachment.containerId), 'garbage');
    pod.delete();
    let del = runtime.invoke('DEL', vcnetConfig);
    expect(del.status, del.stdout).toBe(0);
    expect(del.stderr).toContain(`set aside the unreadable record ${recordOf(attachment.containerId)}`);
    expect(setAside(attachment.containerId)).toHaveLength(1);

    writeFileSync(recordOf(attachment.containerId), '{}');
    del = runtime.invoke('DEL', vcnetConfig, { CNI_NETNS: '' });
    expect(del.status, del.stdout).toBe(0);
    expect(setAside(attachment.containerId)).toHaveLength(2);
    runtime.del({ ...list, plugins: [list.plugins[0]!] }, result);
    expect(reservations()).toEqual([]);
  });

  // The salvaged namespace was compared by device and inode only: a later namespace that got the
  // recorded one's freed inode was taken for it, and what no record claims there was removed.
  it('CNI_NETNS a later namespace with the recorded inode (another cookie): DEL sets the record aside and removes nothing there', async (context) => {
    const { pod, list, attachment, runtime, result, record, vcnetConfig } = oneChainAddedWithItsRecord();
    const damaged = JSON.parse(readFileSync(record, 'utf8'));
    damaged.network.endpoints = [];
    const recorded = damaged.namespace as { ino: number; cookie?: string };
    writeFileSync(record, JSON.stringify(damaged, null, 2));
    if (recorded.cookie === undefined) {
      console.log('skipped: the kernel tells no namespace cookies (before 5.14)');
      return context.skip();
    }
    const newPod = await replaceWithSameInode(pod, 'pod');
    if (!newPod) {
      console.log("skipped: no new namespace got the gone pod namespace's inode");
      return context.skip();
    }
    // A link of vcnet's kind in its group that no record claims: gc would take it, were this the recorded namespace.
    newPod.exec('ip', ['tuntap', 'add', 'tap0_kata', 'mode', 'tap']);
    newPod.exec('ip', ['link', 'set', 'tap0_kata', 'group', String(VCNET_LINK_GROUP)]);
    const before = fingerprint(newPod);

    const del = runtime.invoke('DEL', vcnetConfig, { CNI_NETNS: newPod.path });
    expect(del.status, del.stdout).toBe(0);
    const warnings = del.stderr.split('\n').filter(Boolean);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain(`set aside the unreadable record ${record}`);
    expect(warnings[0]).toContain(`cookie ${recorded.cookie}`);
    expect(warnings[0]).toContain(`CNI_NETNS ${newPod.path} is a later namespace`);
    expect(warnings[0]).toContain('nothing removed there');
    expect(fingerprint(newPod)).toEqual(before);
    expect(setAside(attachment.containerId)).toHaveLength(1);
    expect(existsSync(record)).toBe(false);
    runtime.del({ ...list, plugins: [list.plugins[0]!] }, result);
    expect(reservations()).toEqual([]);
  });

  // A cookie damaged past parsing took the whole salvaged identity with it: DEL then removed what no
  // record claims in whatever namespace CNI_NETNS named. It is read as no cookie: device and inode still tell.
  it.each([
    ['not digits', 'not-a-cookie'],
    ['above a u64', '18446744073709551616'],
  ])(
    'a record whose cookie is damaged past parsing (%s) still names its namespace by inode: DEL removes nothing in another CNI_NETNS',
    (_case, cookie) => {
      const { pod, list, runtime, result, record, vcnetConfig } = oneChainAddedWithItsRecord();
      const damaged = JSON.parse(readFileSync(record, 'utf8'));
      damaged.namespace.cookie = cookie;
      writeFileSync(record, JSON.stringify(damaged, null, 2));
      // Another pod namespace with a tap of vcnet's group no record claims: gc would take it there.
      const other = makeNamespace('other');
      other.exec('ip', ['tuntap', 'add', 'tap0_kata', 'mode', 'tap']);
      other.exec('ip', ['link', 'set', 'tap0_kata', 'group', String(VCNET_LINK_GROUP)]);
      const before = fingerprint(other);
      const podBefore = fingerprint(pod);

      const del = runtime.invoke('DEL', vcnetConfig, { CNI_NETNS: other.path });
      expect(del.status, del.stdout).toBe(0);
      const warnings = del.stderr.split('\n').filter(Boolean);
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toContain(`set aside the unreadable record ${record}`);
      expect(warnings[0]).toContain('field namespace.cookie ');
      expect(warnings[0]).toContain(
        `the record named another namespace than CNI_NETNS ${other.path}: nothing removed there`,
      );
      expect(fingerprint(other)).toEqual(before);
      expect(fingerprint(pod)).toEqual(podBefore);
      runtime.del({ ...list, plugins: [list.plugins[0]!] }, result);
      expect(reservations()).toEqual([]);
    },
  );

  // gc leaves an htb of a rate limit's shape that no record claims and no redirect of vcnet's leads
  // to (Kata's and operators' shape too): DEL said "removed link tap0_kata" and nothing of the htb.
  it("a rate limit's htb no redirect leads to any more stays, and DEL's warning names it and the command that removes it", () => {
    const { node, pod } = makeNodeAndPod();
    const list = conflist({ vcnet: { rateLimit: { tx: 10_000_000 } } });
    const attachment = attachmentIn(pod);
    const runtime = new CniRuntime(node, attachment);
    const { result } = addChain(runtime, list, pod);
    const record = recordOf(attachment.containerId);
    const vcnetConfig = { ...list.plugins[1], cniVersion: list.cniVersion, name: list.name, prevResult: result };
    const htbOnEth0 = () => pod.tcJson<Array<{ kind: string }>>('qdisc', 'show', 'dev', 'eth0', 'root')[0]?.kind;
    expect(htbOnEth0()).toBe('htb');
    const damaged = JSON.parse(readFileSync(record, 'utf8'));
    damaged.network.endpoints = [];
    writeFileSync(record, JSON.stringify(damaged, null, 2));
    // Someone deleted eth0's ingress qdisc, and the redirects to the tap with it.
    pod.exec('tc', ['qdisc', 'del', 'dev', 'eth0', 'ingress']);

    const del = runtime.invoke('DEL', vcnetConfig);
    expect(del.status, del.stdout).toBe(0);
    const warnings = del.stderr.split('\n').filter(Boolean);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain(`set aside the unreadable record ${record}`);
    expect(warnings[0]).toContain(`removed link tap0_kata (no record owns it) in ${pod.path}`);
    expect(warnings[0]).toContain('; left qdisc on eth0: htb root qdisc of the shape a vcnet rate limit makes');
    // The pod is pinned under iproute2's directories (/var/run a link to /run): reached by its name.
    expect(warnings[0]).toContain(`\`tc -n ${pod.name} qdisc del dev eth0 root handle 1:\` removes it`);
    expect(warnings[0]).not.toContain('/proc/self/fd/');
    expect(htbOnEth0()).toBe('htb');
    expect(linkNames(pod)).not.toContain('tap0_kata');
    runtime.del({ ...list, plugins: [list.plugins[0]!] }, result);
    expect(reservations()).toEqual([]);
  });

  it("leaves the stateDir's other entries alone: another container's lock file and empty directories, a file not vcnet's", () => {
    // What gc would take as a killed command's leftovers, and a file of another program's beside
    // them: DEL of one container is not the one to remove them (it removed the lock files).
    const others = [
      join(stateDirectory, '.locks', 'other-container'),
      join(stateDirectory, '.locks', 'not-vcnets'),
      join(stateDirectory, 'other-container', 'interfaces', 'eth0'),
    ];
    const { pod, list, runtime, result, record, vcnetConfig } = oneChainAddedWithItsRecord();
    writeFileSync(others[0]!, '');
    writeFileSync(others[1]!, "another program's lock\n");
    mkdirSync(others[2]!, { recursive: true });
    writeFileSync(record, 'not json {');

    const del = runtime.invoke('DEL', vcnetConfig);
    expect(del.status, del.stdout).toBe(0);
    expect(del.stderr).toContain('set aside the unreadable record');
    expect(others.filter((path) => !existsSync(path))).toEqual([]);
    expect(readFileSync(others[1]!, 'utf8')).toBe("another program's lock\n");
    expect(linkNames(pod)).not.toContain('tap0_kata');
    runtime.del({ ...list, plugins: [list.plugins[0]!] }, result);
  });

  it("another chain's interface in the same pod keeps its tap, filters and record", () => {
    const { pod, first, second, attachment, runtimeA, runtimeB, resultA, resultB } = twoChainsOnOnePod();
    const secondChain = () => ({
      tap: pod.ipJson('-d', 'link', 'show', 'tap1_kata'),
      net1: ingressFilters(pod, 'net1'),
      tap1: ingressFilters(pod, 'tap1_kata'),
      record: readFileSync(recordOf(attachment.containerId, 'net1'), 'utf8'),
    });
    const secondBefore = secondChain();

    writeFileSync(recordOf(attachment.containerId), 'not json {');
    runtimeA.del(first, resultA);
    expect(linkNames(pod)).not.toContain('tap0_kata');
    expect(linkNames(pod)).not.toContain('eth0');
    expect(secondChain()).toEqual(secondBefore);
    runtimeB.check(second, resultB);
    runtimeB.del(second, resultB);
    expect(linkNames(pod)).toEqual(['lo']);
    expect(reservations('vcnet-test')).toEqual([]);
    expect(reservations('vcnet-second')).toEqual([]);
  });
});

describe.skipIf(skipReason)('vcnet-cni with older and newer CNI versions', () => {
  it('a 0.3.1 conflist: ADD prints a 0.3.1 result (IPs with "version"), DEL frees everything', () => {
    const { node, pod } = makeNodeAndPod();
    const list = conflist({ cniVersion: '0.3.1' });
    const attachment = attachmentIn(pod);
    const runtime = new CniRuntime(node, attachment);
    const { result, afterBridge } = addChain(runtime, list, pod);
    expect(result.cniVersion).toBe('0.3.1');
    expect(result.ips).toEqual([
      expect.objectContaining({ version: '4', address: expect.stringMatching(/^10\.231\.1\./) }),
    ]);
    expect(result.interfaces.at(-1)).toMatchObject({ name: 'tap0_kata', sandbox: pod.path });
    expect(redirectTarget(ingressFilters(pod, 'eth0'))).toBe('tap0_kata');
    expect(redirectTarget(ingressFilters(pod, 'tap0_kata'))).toBe('eth0');
    // 0.3.x has no CHECK.
    const run = runtime.invoke('CHECK', {
      ...list.plugins[1],
      cniVersion: '0.3.1',
      name: list.name,
      prevResult: result,
    });
    expect(run.output).toMatchObject({ code: 1, msg: 'CNI CHECK is not part of cniVersion 0.3.1' });
    expect(reservations()).toHaveLength(1);

    delChain(runtime, list, result, pod, afterBridge);
    expect(reservations()).toEqual([]);
    expect(existsSync(join(stateDirectory, attachment.containerId))).toBe(false);
  });

  it('a conflist without cniVersion, as libcni runs it ("" to each plugin): bridge answers in 0.1.0, vcnet-cni refuses saying the conflist names none, DEL of the chain frees everything', () => {
    const { node, pod } = makeNodeAndPod();
    // libcni's NetworkConfFromBytes leaves CNIVersion "" for a list without one, and injects it into each plugin.
    const list = { ...conflist({}), cniVersion: '' };
    const runtime = new CniRuntime(node, attachmentIn(pod));
    const bridge = runtime.invoke('ADD', { ...list.plugins[0], cniVersion: '', name: list.name });
    expect(bridge.status, bridge.stdout).toBe(0);
    expect(bridge.output).toMatchObject({ cniVersion: '0.1.0', ip4: { ip: expect.stringMatching(/^10\.231\.1\./) } });
    const before = fingerprint(pod);
    const add = runtime.invoke('ADD', {
      ...list.plugins[1],
      cniVersion: '',
      name: list.name,
      prevResult: bridge.output,
    });
    expect(add.status).toBe(1);
    expect(add.output).toEqual({
      cniVersion: '1.0.0',
      code: 1,
      msg: 'the conflist names no cniVersion (the runtime passed ""), which CNI reads as 0.1.0: vcnet-cni supports 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0',
      details:
        'VCNET_CNI_VERSION: add "cniVersion": "1.0.0" to the conflist (the plugins before vcnet-cni then answer in 1.0.0 too, not with 0.1.0\'s "ip4" result); a conflist that lists only cniVersions (CNI 1.1) needs a runtime whose libcni chooses from that list, and an older one passes none: keep cniVersion beside it',
    });
    expect(fingerprint(pod)).toEqual(before);
    // The ADD failed: libcni runs the chain's DEL without a cached result, vcnet-cni first.
    runtime.del(list);
    expect(reservations()).toEqual([]);
    expect(linkNames(pod)).toEqual(['lo']);
    expect(existsSync(join(stateDirectory, runtime.attachment.containerId))).toBe(false);
  });

  it('1.1.0: STATUS answers ready; GC keeps valid attachments and undoes stale ones in their namespace', () => {
    const { node, pod } = makeNodeAndPod();
    // bridge 1.1.1 speaks up to 1.0.0: the 1.1.0 config is vcnet-cni's alone, prevResult relabelled.
    const list = conflist({});
    const bridgeOnly: Conflist = { ...list, plugins: [list.plugins[0]!] };
    const attachment = attachmentIn(pod);
    const runtime = new CniRuntime(node, attachment);
    const previous = runtime.add(bridgeOnly);
    const vcnetConfig = { ...list.plugins[1], cniVersion: '1.1.0', name: list.name };
    const added = runtime.invoke('ADD', { ...vcnetConfig, prevResult: { ...previous, cniVersion: '1.1.0' } });
    expect(added.status, added.stdout).toBe(0);
    expect(added.output).toMatchObject({ cniVersion: '1.1.0' });
    expect(linkNames(pod)).toContain('tap0_kata');

    expect(runtime.invoke('STATUS', vcnetConfig).status).toBe(0);
    const valid = [{ containerID: attachment.containerId, ifname: 'eth0' }];
    let gc = runtime.invoke('GC', { ...vcnetConfig, 'cni.dev/valid-attachments': valid });
    expect(gc.status, gc.stdout).toBe(0);
    expect(linkNames(pod)).toContain('tap0_kata');
    // Another network's GC does not touch this network's attachments.
    gc = runtime.invoke('GC', { ...vcnetConfig, name: 'another-network', 'cni.dev/valid-attachments': [] });
    expect(linkNames(pod)).toContain('tap0_kata');

    // Without the list (neither key), GC must not take "nothing is valid" for an answer.
    gc = runtime.invoke('GC', vcnetConfig);
    expect(gc.status).toBe(1);
    expect(gc.output).toMatchObject({ code: 7, msg: expect.stringContaining('cni.dev/valid-attachments: missing') });
    expect(linkNames(pod)).toContain('tap0_kata');
    // The key as the 1.1.0 SPEC first named it.
    gc = runtime.invoke('GC', { ...vcnetConfig, 'cni.dev/attachments': valid });
    expect(gc.status, gc.stdout).toBe(0);
    expect(linkNames(pod)).toContain('tap0_kata');

    gc = runtime.invoke('GC', { ...vcnetConfig, 'cni.dev/valid-attachments': [] });
    expect(gc.status, gc.stdout).toBe(0);
    expect(linkNames(pod)).not.toContain('tap0_kata');
    expect(
      pod.tcJson<Array<{ dev: string; kind: string }>>('qdisc', 'show').filter((q) => q.kind === 'ingress'),
    ).toEqual([]);
    expect(existsSync(join(stateDirectory, attachment.containerId))).toBe(false);
    runtime.del(bridgeOnly, previous);
    expect(reservations()).toEqual([]);
  });
});

describe.skipIf(skipReason)('vcnet-cni notices on stderr', () => {
  it("DEL and GC write detach's notice (a tap renamed since ADD) as one line naming the command, container and interface", () => {
    const { node, pod } = makeNodeAndPod();
    const list = conflist({});
    const bridgeOnly: Conflist = { ...list, plugins: [list.plugins[0]!] };
    const vcnetConfig = { ...list.plugins[1], cniVersion: '1.1.0', name: list.name };
    /** bridge, then vcnet-cni in 1.1.0 (GC), then the tap renamed as a person might. */
    const addedAndRenamed = (attachment: Attachment) => {
      const runtime = new CniRuntime(node, attachment);
      const previous = runtime.add(bridgeOnly);
      const added = runtime.invoke('ADD', { ...vcnetConfig, prevResult: { ...previous, cniVersion: '1.1.0' } });
      expect(added.status, added.stdout + added.stderr).toBe(0);
      expect(added.stderr).toBe('');
      pod.exec('ip', ['link', 'set', 'tap0_kata', 'name', 'renamed0']);
      return { runtime, previous };
    };
    const stderrLines = (stderr: string) => stderr.split('\n').filter(Boolean);

    const first = attachmentIn(pod);
    const { runtime, previous } = addedAndRenamed(first);
    const del = runtime.invoke('DEL', vcnetConfig);
    expect(del.status, del.stdout + del.stderr).toBe(0);
    expect(del.stdout).toBe('');
    expect(stderrLines(del.stderr)).toEqual([
      expect.stringMatching(new RegExp(`^vcnet-cni DEL of ${first.containerId}/eth0 \\(tap0_kata\\): .*renamed0`)),
    ]);
    expect(linkNames(pod)).not.toContain('renamed0');
    runtime.del(bridgeOnly, previous);

    const second = attachmentIn(pod);
    const again = addedAndRenamed(second);
    const gc = again.runtime.invoke('GC', { ...vcnetConfig, 'cni.dev/valid-attachments': [] });
    expect(gc.status, gc.stdout + gc.stderr).toBe(0);
    expect(stderrLines(gc.stderr)).toEqual([
      expect.stringMatching(
        new RegExp(
          `^vcnet-cni GC of network vcnet-test, DEL of ${second.containerId}/eth0 \\(tap0_kata\\): .*renamed0`,
        ),
      ),
    ]);
    expect(linkNames(pod)).not.toContain('renamed0');
    again.runtime.del(bridgeOnly, again.previous);
    expect(reservations()).toEqual([]);
  });
});

describe.skipIf(skipReason)('vcnet install-cni', () => {
  it('installs a launcher and a conflist (idempotent) that run ADD/DEL with no node on PATH', () => {
    const binDirectory = join(workDirectory, 'opt-cni-bin');
    const confDirectory = join(workDirectory, 'net.d');
    const emptyPath = join(workDirectory, 'empty-path');
    mkdirSync(emptyPath);
    const args = [
      'install-cni',
      '--bin-dir',
      binDirectory,
      '--conf-dir',
      confDirectory,
      '--network-name',
      'vcnet-test',
      '--bridge',
      'vcbr0',
      '--subnet',
      '10.231.1.0/24',
      '--state-dir',
      stateDirectory,
    ];
    const first = vcnet(args);
    expect(first.status, first.stderr).toBe(0);
    expect(first.stdout).toBe(
      `installed ${join(binDirectory, 'vcnet-cni')}\ninstalled ${join(confDirectory, '99-vcnet.conflist')}\n`,
    );
    const plugin = join(binDirectory, 'vcnet-cni');
    const installedBytes = readFileSync(plugin);
    expect(statSync(plugin).mode & 0o777).toBe(0o755);
    const again = vcnet(args);
    expect(again.stdout).toBe(`unchanged ${plugin}\nunchanged ${join(confDirectory, '99-vcnet.conflist')}\n`);
    expect(readFileSync(plugin)).toEqual(installedBytes);
    expect(readdirSync(binDirectory)).toEqual(['vcnet-cni']);

    // The runtime's environment: nothing but the CNI variables and a PATH on which there is no node.
    expect(existsSync(join(emptyPath, 'node'))).toBe(false);
    const { node, pod } = makeNodeAndPod();
    const attachment = attachmentIn(pod);
    const runtime = new CniRuntime(node, attachment, {
      PATH: emptyPath,
      CNI_PATH: `${SYSTEM_CNI_DIRECTORY}:${binDirectory}`,
    });
    const version = runtime.invoke('VERSION', { type: 'vcnet-cni', cniVersion: '0.3.1' });
    expect(version.status, version.stderr).toBe(0);
    expect(version.output).toMatchObject({ cniVersion: '0.3.1', supportedVersions: expect.arrayContaining(['1.1.0']) });

    const installed = JSON.parse(readFileSync(join(confDirectory, '99-vcnet.conflist'), 'utf8')) as Conflist;
    expect(installed.plugins.map((entry) => entry.type)).toEqual(['bridge', 'vcnet-cni']);
    // host-local keeps its leases in the test's directory, not the host's /var/lib/cni.
    const bridge = installed.plugins[0]!;
    const list: Conflist = {
      ...installed,
      plugins: [
        { ...bridge, ipam: { ...(bridge.ipam as object), dataDir: join(workDirectory, 'ipam') } },
        installed.plugins[1]!,
      ],
    };
    const { result, afterBridge } = addChain(runtime, list, pod);
    expect(result.interfaces.at(-1)).toMatchObject({ name: 'tap0_kata', sandbox: pod.path });
    expect(redirectTarget(ingressFilters(pod, 'eth0'))).toBe('tap0_kata');
    delChain(runtime, list, result, pod, afterBridge);
    expect(reservations()).toEqual([]);
    expect(existsSync(join(stateDirectory, attachment.containerId))).toBe(false);
  });

  // install-cni refuses a --subnet only because host-local would refuse it at every pod's ADD: the
  // two agree on each edge (IPv4 and IPv6 sizes, host bits, an IPv4-mapped IPv6 range).
  it('--subnet: host-local allocates from every range install-cni takes, and from none it refuses', () => {
    const pod = makeNamespace('pod');
    const subnets = [
      '10.231.2.0/30',
      '10.231.2.0/31',
      '10.231.2.1/24',
      'fd00:231::/126',
      'fd00:231::/127',
      'fd00:231::/128',
      'fd00:231::1/64',
      'FD00:231::/64',
      '::ffff:10.231.2.0/120',
      '::ffff:10.231.2.1/120',
      '::ffff:0:0/96',
    ];
    const verdicts = subnets.map((subnet, index) => {
      const confDirectory = join(workDirectory, `subnet-${index}`);
      const install = vcnet([
        'install-cni',
        '--bin-dir',
        join(workDirectory, 'subnet-bin'),
        '--conf-dir',
        confDirectory,
        '--subnet',
        subnet,
      ]);
      const hostLocal = spawnSync(join(SYSTEM_CNI_DIRECTORY, 'host-local'), [], {
        input: JSON.stringify({
          cniVersion: '1.0.0',
          name: 'vcnet-test',
          type: 'host-local',
          ipam: { type: 'host-local', ranges: [[{ subnet }]], dataDir: join(workDirectory, `ipam-${index}`) },
        }),
        encoding: 'utf8',
        env: {
          ...cniVariables('ADD', { containerId: `subnet-${index}`, namespacePath: pod.path }),
          PATH: '/nonexistent',
        },
      });
      return {
        subnet,
        installCni: install.status === 0 ? 'installed' : install.stderr.split('\n')[0],
        hostLocal: hostLocal.status === 0 ? 'allocated' : hostLocal.stdout,
      };
    });
    for (const verdict of verdicts)
      expect(verdict.installCni === 'installed', JSON.stringify(verdict)).toBe(verdict.hostLocal === 'allocated');
  });

  it('a launcher whose vcnet is gone: DEL succeeds (the chain goes on), ADD prints a CNI error', () => {
    const binDirectory = join(workDirectory, 'bin');
    const installed = vcnet([
      'install-cni',
      '--bin-dir',
      binDirectory,
      '--conf-dir',
      join(workDirectory, 'conf'),
      '--no-conflist',
    ]);
    expect(installed.status, installed.stderr).toBe(0);
    const plugin = join(binDirectory, 'vcnet-cni');
    // The same launcher pointing at a removed checkout.
    writeFileSync(plugin, readFileSync(plugin, 'utf8').replace(/^entry=.*$/m, "entry='/nonexistent/dist/cni/main.js'"));
    const run = (command: string, cniVersion = '1.0.0') =>
      spawnSync(plugin, [], {
        input: JSON.stringify({ cniVersion, name: 'vcnet-test', type: 'vcnet-cni' }),
        encoding: 'utf8',
        env: { CNI_COMMAND: command, PATH: '/nonexistent' },
      });
    expect(run('DEL').status).toBe(0);
    const add = run('ADD');
    expect(add.status).toBe(1);
    expect(JSON.parse(add.stdout)).toMatchObject({
      cniVersion: '1.0.0',
      code: 5,
      msg: 'vcnet-cni is not installed completely',
    });
    // In the config's version; STATUS with the spec's "plugin not available".
    expect(JSON.parse(run('ADD', '0.3.1').stdout)).toMatchObject({ cniVersion: '0.3.1', code: 5 });
    expect(JSON.parse(run('STATUS', '1.1.0').stdout)).toMatchObject({ cniVersion: '1.1.0', code: 50 });
  });
});
