/**
 * vcnet-cni and `vcnet attach` in one pod namespace: each refuses a namespace the other holds before
 * anything is made, and every writer of vcnet's link group there (attach, detach, ADD, DEL) takes its
 * turn on the namespace's flock, so that detach's one delete of vcnet's whole group never takes a link
 * an ADD made between detach's look at the namespace and that delete. The lock is proved by holding
 * it from the test: each command waits for it, fails as busy changing nothing, and succeeds once it
 * is released (no timing-dependent race).
 */
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { nativeFileLock } from '../../../src/native/file-lock.js';
import { CLI, pauseAfterTap, stateDirectoryPerTest, vcnet } from '../../helpers/cli.js';
import {
  type CniErrorOutput,
  CniRuntime,
  findPlugin,
  IP_COMMAND,
  missingCniPlugins,
  vcnetCniAlone,
} from '../../helpers/cni.js';
import { makeNamespace, type TestNamespace } from '../../helpers/namespace.js';
import { fingerprint, makePod } from '../../helpers/pod.js';

const skipReason =
  process.getuid?.() !== 0 ? 'vcnet-cni integration tests need root (namespaces, taps, tc)' : missingCniPlugins([]);

const stateDirectory = stateDirectoryPerTest('vcnet-state-');
const cniStateDirectory = stateDirectoryPerTest('vcnet-cni-state-');

/** vcnet-cni alone (the interface plugin's work done by makePod), its prevResult naming the interface. */
function vcnetCni(pod: TestNamespace, interfaceName: string, more: Record<string, unknown> = {}) {
  return vcnetCniAlone({
    name: 'shared-ns',
    namespacePath: pod.path,
    interfaceName,
    settings: { stateDir: cniStateDirectory(), ...more },
  });
}

function cni(node: TestNamespace, pod: TestNamespace, containerId: string, interfaceName: string) {
  return new CniRuntime(node, { containerId, namespacePath: pod.path, interfaceName });
}

function cniRecord(containerId: string, interfaceName: string): string {
  return join(cniStateDirectory(), containerId, 'interfaces', interfaceName, 'state.json');
}

function attach(id: string, pod: TestNamespace, ...extra: string[]) {
  return vcnet(['attach', '--sandbox', id, '--netns', pod.path, '--state-dir', stateDirectory(), ...extra]);
}

function detach(id: string, ...extra: string[]) {
  return vcnet(['detach', '--sandbox', id, '--state-dir', stateDirectory(), ...extra]);
}

/** Holds the namespace's flock (as lockNamespace takes it) until the returned function is called. */
function holdNamespaceLock(path: string): () => void {
  const fd = openSync(path, 'r');
  if (!nativeFileLock.lockFile(fd, true)) {
    closeSync(fd);
    throw new Error(`the namespace ${path} is locked already`);
  }
  return () => closeSync(fd);
}

describe.skipIf(skipReason)('vcnet-cni ADD into a namespace a `vcnet attach` sandbox holds', () => {
  for (const model of ['tcfilter', 'macvtap']) {
    it(`is refused before anything is made, naming the sandbox (${model})`, () => {
      const { pod, node } = makePod({ interfaces: 3 });
      expect(attach('held-sb', pod, '--model', model).status).toBe(0);
      const held = fingerprint(pod);
      const run = cni(node, pod, 'ctr-other', 'eth2').invoke('ADD', vcnetCni(pod, 'eth2', { model }));
      expect(run.status, run.stdout + run.stderr).not.toBe(0);
      const reply = run.output as unknown as CniErrorOutput;
      // VCNET_LINK_NAME_TAKEN is CNI 103, as attach's refusal of a held namespace.
      expect(reply.code).toBe(103);
      expect(reply.msg).toMatch(
        new RegExp(
          `^the namespace ${pod.path} holds the NICs of sandbox held-sb \\(its tap\\d_kata, index \\d+, (tun|macvtap)\\); nothing was changed$`,
        ),
      );
      expect(reply.details).toBe(
        `VCNET_LINK_NAME_TAKEN: one namespace holds one sandbox's NICs: detach sandbox held-sb first (its record: ${join(stateDirectory(), 'held-sb', 'state.json')})`,
      );
      expect(fingerprint(pod)).toEqual(held);
      expect(existsSync(join(cniStateDirectory(), 'ctr-other'))).toBe(false);
      expect(detach('held-sb').status).toBe(0);
    });
  }

  it('refuses another container in a namespace vcnet-cni holds, and lets the same container add a chain', () => {
    const { pod, node } = makePod({ interfaces: 2 });
    const before = fingerprint(pod);
    const first = cni(node, pod, 'ctr-a', 'eth0');
    const added = first.invoke('ADD', vcnetCni(pod, 'eth0'));
    expect(added.status, added.stdout + added.stderr).toBe(0);
    const held = fingerprint(pod);
    const other = cni(node, pod, 'ctr-b', 'eth1').invoke('ADD', vcnetCni(pod, 'eth1'));
    expect(other.status).not.toBe(0);
    const reply = other.output as unknown as CniErrorOutput;
    expect(reply.code).toBe(103);
    expect(reply.msg).toContain(`holds the NICs of vcnet-cni's eth0 of container ctr-a (its tap0_kata, index`);
    expect(reply.details).toContain(
      `the runtime's CNI DEL of container ctr-a (CNI_IFNAME eth0) frees it first (its record: ${cniRecord('ctr-a', 'eth0')})`,
    );
    expect(fingerprint(pod)).toEqual(held);
    // A second chain of the same container (its own record) is not another owner.
    const second = cni(node, pod, 'ctr-a', 'eth1');
    const chained = second.invoke('ADD', vcnetCni(pod, 'eth1'));
    expect(chained.status, chained.stdout + chained.stderr).toBe(0);
    expect(second.invoke('DEL', vcnetCni(pod, 'eth1')).status).toBe(0);
    expect(first.invoke('DEL', vcnetCni(pod, 'eth0')).status).toBe(0);
    expect(fingerprint(pod)).toEqual(before);
  });
});

describe.skipIf(skipReason)("vcnet-cni ADD beside another container's ADD killed half-way", () => {
  it('is refused naming that container, whose DEL frees the namespace; then it is added', async () => {
    const { pod, node } = makePod({ interfaces: 2 });
    const before = fingerprint(pod);
    const killed = cni(node, pod, 'ctr-killed', 'eth0');
    // Killed (-9) right after it made its tap: the tap is in no group yet, and the record has no device.
    const child = spawn(IP_COMMAND, ['netns', 'exec', node.name, findPlugin('vcnet-cni')], {
      env: killed.environment('ADD', pauseAfterTap('tap0_kata')),
    });
    child.stdin.end(JSON.stringify(vcnetCni(pod, 'eth0')));
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
    expect(JSON.parse(readFileSync(cniRecord('ctr-killed', 'eth0'), 'utf8')).device).toBeUndefined();
    const half = fingerprint(pod);

    // Another container's ADD into the namespace would make a second VM's NIC beside the first's.
    const other = cni(node, pod, 'ctr-next', 'eth1');
    const refused = other.invoke('ADD', vcnetCni(pod, 'eth1'));
    expect(refused.status, refused.stdout + refused.stderr).not.toBe(0);
    const reply = refused.output as unknown as CniErrorOutput;
    expect(reply.code).toBe(103);
    expect(reply.msg).toContain(`holds the NICs of vcnet-cni's eth0 of container ctr-killed (its tap0_kata, index`);
    expect(reply.details).toContain(
      `the runtime's CNI DEL of container ctr-killed (CNI_IFNAME eth0) frees it first (its record: ${cniRecord('ctr-killed', 'eth0')})`,
    );
    expect(fingerprint(pod)).toEqual(half);
    expect(existsSync(join(cniStateDirectory(), 'ctr-next'))).toBe(false);

    // As the hint says: the killed container's DEL, then the ADD goes through.
    expect(killed.invoke('DEL', vcnetCni(pod, 'eth0')).status).toBe(0);
    expect(fingerprint(pod)).toEqual(before);
    const added = other.invoke('ADD', vcnetCni(pod, 'eth1'));
    expect(added.status, added.stdout + added.stderr).toBe(0);
    expect(other.invoke('DEL', vcnetCni(pod, 'eth1')).status).toBe(0);
    expect(fingerprint(pod)).toEqual(before);
  });
});

describe.skipIf(skipReason)('`vcnet attach` into a namespace where vcnet-cni ADD made a tap', () => {
  it('is refused (attach and --dry-run), naming the container and how to free it', () => {
    const { pod, node } = makePod({ interfaces: 2 });
    const runtime = cni(node, pod, 'ctr-cni', 'eth0');
    expect(runtime.invoke('ADD', vcnetCni(pod, 'eth0')).status).toBe(0);
    const held = fingerprint(pod);
    for (const extra of [[], ['--dry-run'], ['--model', 'macvtap']]) {
      const result = attach('late-sb', pod, ...extra);
      expect(result.status, `${extra.join(' ')}: ${result.stderr}`).toBe(1);
      expect(result.stderr).toMatch(
        /a link named tap0_kata is already in the namespace \(index \d+, tun, made by vcnet-cni's eth0 of container ctr-cni\)/,
      );
      expect(result.stderr).toContain(
        `hint: one namespace holds one sandbox's NICs: the runtime's CNI DEL of container ctr-cni (CNI_IFNAME eth0) frees it first (its record: ${cniRecord('ctr-cni', 'eth0')})`,
      );
      expect(fingerprint(pod)).toEqual(held);
      expect(existsSync(join(stateDirectory(), 'late-sb'))).toBe(false);
    }
    expect(runtime.invoke('DEL', vcnetCni(pod, 'eth0')).status).toBe(0);
  });
});

describe.skipIf(skipReason)('the namespace lock', () => {
  it('vcnet-cni ADD and DEL wait for it: busy (code 11) changing nothing, then done once it is free', () => {
    const { pod, node } = makePod();
    const before = fingerprint(pod);
    const runtime = cni(node, pod, 'ctr-lock', 'eth0');
    const config = vcnetCni(pod, 'eth0', { lockTimeoutMs: 300 });
    const busy = (run: ReturnType<CniRuntime['invoke']>) => {
      expect(run.status, run.stdout + run.stderr).not.toBe(0);
      const reply = run.output as unknown as CniErrorOutput;
      expect(reply.code).toBe(11);
      expect(reply.msg).toBe(
        `the namespace ${pod.path} is being changed by process ${process.pid}, an attach, detach or vcnet-cni ADD or DEL in it (waited 300 ms)`,
      );
      expect(reply.details).toContain('raise "lockTimeoutMs" in the plugin\'s network configuration');
    };
    let release = holdNamespaceLock(pod.path);
    try {
      busy(runtime.invoke('ADD', config));
      expect(fingerprint(pod)).toEqual(before);
      expect(existsSync(cniRecord('ctr-lock', 'eth0'))).toBe(false);
    } finally {
      release();
    }
    expect(runtime.invoke('ADD', config).status).toBe(0);
    const added = fingerprint(pod);
    release = holdNamespaceLock(pod.path);
    try {
      busy(runtime.invoke('DEL', config));
      expect(fingerprint(pod)).toEqual(added);
      expect(existsSync(cniRecord('ctr-lock', 'eth0'))).toBe(true);
    } finally {
      release();
    }
    expect(runtime.invoke('DEL', config).status).toBe(0);
    expect(fingerprint(pod)).toEqual(before);
    expect(existsSync(cniRecord('ctr-lock', 'eth0'))).toBe(false);
  });

  it('DEL after the pod namespace was deleted does not need it', () => {
    const { pod, node } = makePod();
    const runtime = cni(node, pod, 'ctr-gone', 'eth0');
    const config = vcnetCni(pod, 'eth0', { lockTimeoutMs: 300 });
    expect(runtime.invoke('ADD', config).status).toBe(0);
    pod.delete();
    const run = runtime.invoke('DEL', config);
    expect(run.status, run.stdout + run.stderr).toBe(0);
    expect(existsSync(cniRecord('ctr-gone', 'eth0'))).toBe(false);
  });

  it('`vcnet detach` waits for it: busy (exit 4) changing nothing, then detaches once it is free', () => {
    const { pod } = makePod({ interfaces: 2 });
    const before = fingerprint(pod);
    expect(attach('lock-sb', pod).status).toBe(0);
    const attached = fingerprint(pod);
    const release = holdNamespaceLock(pod.path);
    try {
      const result = detach('lock-sb', '--lock-timeout', '0.3');
      expect(result.status, result.stderr).toBe(4);
      expect(result.stderr).toContain(
        `the namespace ${pod.path} is being changed by process ${process.pid}, an attach, detach or vcnet-cni ADD or DEL in it (waited 300 ms)`,
      );
      expect(result.stderr).toContain('give a longer --lock-timeout');
      expect(fingerprint(pod)).toEqual(attached);
      expect(existsSync(join(stateDirectory(), 'lock-sb', 'state.json'))).toBe(true);
    } finally {
      release();
    }
    const result = detach('lock-sb');
    expect(result.status, result.stderr).toBe(0);
    expect(fingerprint(pod)).toEqual(before);
  });

  it('a disable_new_netns sandbox (the shared "host" namespace) detaches without it, as it attaches', () => {
    // vcnet runs inside a namespace of the test's, which plays the host's.
    const host = makeNamespace('host');
    const inHost = (args: string[]) => {
      const result = spawnSync(IP_COMMAND, ['netns', 'exec', host.name, process.execPath, CLI, ...args], {
        encoding: 'utf8',
      });
      return { status: result.status ?? -1, stderr: result.stderr };
    };
    const attached = inHost([
      'attach',
      '--sandbox',
      'shared-sb',
      '--disable-new-netns',
      '--model',
      'none',
      '--state-dir',
      stateDirectory(),
    ]);
    expect(attached.status, attached.stderr).toBe(0);
    const release = holdNamespaceLock(host.path);
    try {
      const detached = inHost([
        'detach',
        '--sandbox',
        'shared-sb',
        '--state-dir',
        stateDirectory(),
        '--lock-timeout',
        '0.3',
      ]);
      expect(detached.status, detached.stderr).toBe(0);
    } finally {
      release();
    }
    expect(existsSync(join(stateDirectory(), 'shared-sb', 'state.json'))).toBe(false);
  });
});
