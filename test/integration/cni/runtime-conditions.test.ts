/**
 * vcnet-cni under what a real runtime gives a plugin and a test shell does not: an empty or short
 * PATH, no HOME, a working directory it cannot write in or that was deleted, umask 077, stdin empty
 * or closed early, and CNI_ARGS with keys it does not know (containerd and CRI-O pass
 * `IgnoreUnknown=1;K8S_POD_NAMESPACE=...`). The chain is the real bridge + host-local before it; each
 * run is as libcni makes it (ip netns exec in the node namespace), started through /bin/sh only to
 * set the working directory and umask first.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  type Attachment,
  bridgeThenVcnet,
  CniRuntime,
  type Conflist,
  findPlugin,
  IP_COMMAND,
  missingCniPlugins,
  type PluginRun,
} from '../../helpers/cni.js';
import { cleanupNamespaces, makeNamespace, type TestNamespace } from '../../helpers/namespace.js';
import { fingerprint } from '../../helpers/pod.js';

const skipReason =
  process.getuid?.() !== 0 ? 'vcnet-cni integration tests need root (namespaces, taps, tc)' : missingCniPlugins();
if (skipReason) console.log(`skipping vcnet-cni runtime condition tests: ${skipReason}`);

let workDirectory: string;
beforeEach(() => {
  workDirectory = mkdtempSync(join(tmpdir(), 'vcnet-cni-conditions-'));
});
afterEach(() => {
  cleanupNamespaces();
  rmSync(workDirectory, { recursive: true, force: true });
});

/** How a plugin process starts: its working directory (`deleted`: made, entered, then removed) and umask. */
interface Launch {
  cwd?: string | 'deleted';
  umask?: string;
}

/** CniRuntime whose plugins start with `launch`'s working directory and umask, through /bin/sh. */
class LaunchingRuntime extends CniRuntime {
  constructor(
    node: TestNamespace,
    attachment: Attachment,
    extraEnvironment: Record<string, string>,
    private readonly launch: Launch,
  ) {
    super(node, attachment, extraEnvironment);
  }

  override invoke(
    command: string,
    config: Record<string, unknown>,
    environment: Record<string, string> = {},
    options: { input?: string } = {},
  ): PluginRun {
    const plugin = findPlugin(String(config.type), this.extraEnvironment.CNI_PATH);
    const deleted = join(workDirectory, `cwd-${randomBytes(4).toString('hex')}`);
    const cwd = this.launch.cwd === 'deleted' ? deleted : (this.launch.cwd ?? workDirectory);
    if (cwd === deleted) mkdirSync(deleted);
    const script = `umask ${this.launch.umask ?? '022'} && cd "$1" && ${cwd === deleted ? 'rmdir "$1" && ' : ''}shift && exec "$@"`;
    const result = spawnSync(
      IP_COMMAND,
      ['netns', 'exec', this.node.name, '/bin/sh', '-c', script, 'sh', cwd, plugin],
      {
        input: options.input ?? JSON.stringify(config),
        encoding: 'utf8',
        env: this.environment(command, environment),
      },
    );
    const run: PluginRun = {
      plugin: String(config.type),
      command,
      status: result.status ?? -1,
      stdout: result.stdout,
      stderr: result.stderr,
    };
    if (result.stdout.trim()) run.output = JSON.parse(result.stdout) as Record<string, unknown>;
    return run;
  }
}

function conflist(): Conflist {
  return bridgeThenVcnet({
    name: 'vcnet-conditions',
    bridge: 'vccond0',
    subnet: '10.231.30.0/24',
    dataDir: join(workDirectory, 'ipam'),
    vcnet: { stateDir: join(workDirectory, 'state') },
  });
}

/** A node namespace for the plugins, an empty pod namespace, and a runtime for one attachment to it. */
function nodeAndPod(extraEnvironment: Record<string, string>, launch: Launch = {}) {
  const node = makeNamespace('node');
  const pod = makeNamespace('pod');
  pod.exec('sysctl', ['-q', '-w', 'net.ipv6.conf.default.accept_dad=0', 'net.ipv6.conf.all.accept_dad=0']);
  const attachment = {
    containerId: `ctr-${randomBytes(4).toString('hex')}`,
    namespacePath: pod.path,
    interfaceName: 'eth0',
  };
  return { pod, runtime: new LaunchingRuntime(node, attachment, extraEnvironment, launch) };
}

/** The records under the chain's vcnet-cni state directory. */
function records(): string[] {
  const root = join(workDirectory, 'state');
  try {
    return (readdirSync(root, { recursive: true }) as string[]).filter((name) => name.endsWith('state.json'));
  } catch {
    return [];
  }
}

/** ADD, CHECK and DEL of the whole chain: the tap in the result, CHECK passes, DEL leaves the pod as bridge left it. */
function addCheckDel(runtime: CniRuntime, pod: TestNamespace, afterAdd?: () => void) {
  const list = conflist();
  let afterBridge: unknown;
  const result = runtime.add(list, (position) => {
    if (position === 0) afterBridge = fingerprint(pod);
  });
  expect((result.interfaces as Array<{ name: string }>).at(-1)?.name).toBe('tap0_kata');
  expect(records()).toHaveLength(1);
  afterAdd?.();
  runtime.check(list, result);
  runtime.del(list, result, (position) => {
    if (position === 0) expect(fingerprint(pod)).toEqual(afterBridge);
  });
  expect(records()).toEqual([]);
}

describe.skipIf(skipReason)('vcnet-cni in the process a runtime starts', () => {
  it.each([
    ['an empty PATH', { PATH: '' }],
    ['PATH=/usr/bin only (no ip, tc or sysctl: /usr/sbin)', { PATH: '/usr/bin' }],
  ])('with %s and no HOME: the chain attaches, checks and frees (vcnet needs no ip or tc)', (_case, environment) => {
    const { pod, runtime } = nodeAndPod(environment);
    expect(runtime.environment('ADD').HOME).toBeUndefined();
    addCheckDel(runtime, pod);
  });

  it.each([
    ['it cannot write in (/proc)', '/proc'],
    ['that was deleted', 'deleted' as const],
  ])('with a working directory %s: the chain attaches, checks and frees', (_case, cwd) => {
    const { pod, runtime } = nodeAndPod({}, { cwd });
    addCheckDel(runtime, pod);
  });

  it('under umask 077: the record is one the next invocation (CHECK, DEL under umask 022) reads, its modes are its own', () => {
    const { pod, runtime } = nodeAndPod({}, { umask: '077' });
    const list = conflist();
    const result = runtime.add(list);
    const [record] = records();
    const recordPath = join(workDirectory, 'state', record!);
    // vcnet sets the modes itself: 0600 and 0700 whatever the umask (only root reads them).
    expect(statSync(recordPath).mode & 0o777).toBe(0o600);
    expect(statSync(join(recordPath, '..')).mode & 0o777).toBe(0o700);
    const next = new LaunchingRuntime(runtime.node, runtime.attachment, {}, { umask: '022' });
    next.check(list, result);
    next.del(list, result);
    expect(records()).toEqual([]);
    expect(pod.exec('ip', ['-br', 'link', 'show'])).not.toContain('tap0_kata');
  });

  it('with the CNI_ARGS containerd and CRI-O pass (IgnoreUnknown=1, K8S_POD_*): the chain attaches, checks and frees', () => {
    const cniArgs =
      'IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=vm-pod;K8S_POD_INFRA_CONTAINER_ID=abc;K8S_POD_UID=1a2b';
    const { pod, runtime } = nodeAndPod({ CNI_ARGS: cniArgs });
    addCheckDel(runtime, pod);
  });

  it.each([
    ['an unknown key without IgnoreUnknown', 'FOO=bar'],
    ['pairs that are not KEY=VALUE', 'garbage;;=x'],
  ])(
    'with CNI_ARGS holding %s: vcnet-cni, which reads no key, ignores them (as portmap and bandwidth; bridge refuses them)',
    (_case, cniArgs) => {
      const { pod, runtime } = nodeAndPod({});
      const list = conflist();
      const [bridge, vcnet] = list.plugins.map((plugin) => ({
        ...plugin,
        cniVersion: list.cniVersion,
        name: list.name,
      }));
      // bridge reads CNI_ARGS (a MAC) and refuses what it does not know: it runs without them here.
      expect(runtime.invoke('ADD', bridge!, { CNI_ARGS: cniArgs }).output).toMatchObject({ code: 999 });
      const bridgeAdd = runtime.invoke('ADD', bridge!);
      expect(bridgeAdd.status, bridgeAdd.stdout).toBe(0);
      const add = runtime.invoke('ADD', { ...vcnet!, prevResult: bridgeAdd.output }, { CNI_ARGS: cniArgs });
      expect(add.status, add.stdout).toBe(0);
      expect(records()).toHaveLength(1);
      expect(runtime.invoke('CHECK', { ...vcnet!, prevResult: add.output }, { CNI_ARGS: cniArgs }).status).toBe(0);
      expect(runtime.invoke('DEL', { ...vcnet!, prevResult: add.output }, { CNI_ARGS: cniArgs }).status).toBe(0);
      expect(records()).toEqual([]);
      expect(runtime.invoke('DEL', { ...bridge!, prevResult: add.output }).status).toBe(0);
      expect(pod.exec('ip', ['-br', 'link', 'show'])).not.toContain('tap0_kata');
    },
  );

  it.each([
    ['empty', { input: '' }],
    ['closed after half the config', { input: '{"cniVersion":"1.0.0","name":"vcnet-con' }],
  ])('with stdin %s: ADD and CHECK are a decoding error (code 6) that changes nothing', (_case, stdin) => {
    const { pod, runtime } = nodeAndPod({});
    const before = fingerprint(pod);
    for (const command of ['ADD', 'CHECK']) {
      const run = runtime.invoke(command, { type: 'vcnet-cni' }, {}, stdin);
      expect({ command, status: run.status }).toEqual({ command, status: 1 });
      expect(run.output).toMatchObject({
        code: 6,
        msg: expect.stringMatching(/^network config on stdin is not valid JSON/),
      });
    }
    expect(fingerprint(pod)).toEqual(before);
    expect(records()).toEqual([]);
  });
});
