/**
 * An htb of vcnet's rate-limit shape (root 1: default 2, classes 1:1 and 1:2 at one rate, nothing
 * else) that no record claims, on a link no vcnet redirect is on or leads to. The shape is Kata's,
 * and an operator's who shapes a pod link the same way: it proves nothing about who made it, and an
 * attach journals its htb before making it, so one of vcnet's has a record. gc never removes it (not
 * with --netns, not in a namespace a live record names), and lists it under `leftAlone` with what it
 * throttles and the tc command that removes it (for an htb whose record was deleted by hand). An htb
 * beside a live redirect of vcnet's shape, or of another shape, or that a live record claims, stays
 * unlisted as before.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { nativeFileLock } from '../../../src/native/file-lock.js';
import { collectGarbage, setGcFirstLookTestHook } from '../../../src/network/garbage-collector.js';
import { CLI, RATE_LIMITED_KATA_CONFIG, stateDirectoryPerTest, vcnet } from '../../helpers/cli.js';
import { fingerprint, makePod } from '../../helpers/pod.js';

const stateDirectory = stateDirectoryPerTest('vcnet-gc-stray-htb-');

afterEach(() => setGcFirstLookTestHook(undefined));

interface Report {
  removed: Array<{ kind: string; name: string; detail: string; namespacePath?: string }>;
  withheld: Array<{ namespacePath: string; links: string[]; beingChanged?: boolean }>;
  leftAlone: Array<{ kind: string; name: string; detail: string }>;
  unclaimed: Array<{ namespacePath: string; links: string[]; filters?: string[] }>;
  failures: unknown[];
}

function gc(args: string[]): Report {
  const result = vcnet(['gc', '--state-dir', stateDirectory(), '--json', ...args]);
  expect(result.status, result.stderr).toBe(0);
  return JSON.parse(result.stdout) as Report;
}

const htbItems = (items: ReadonlyArray<{ kind: string; name: string; detail?: string }>) =>
  items.filter((item) => item.kind === 'qdisc' && item.detail?.startsWith('htb')).map((item) => item.name);

/** vcnet's htb shape, made by hand on `device` (what a rate limit's attach leaves). */
function vcnetShapedHtb(exec: (command: string, args: string[]) => string, device: string, rate = '10mbit'): void {
  exec('tc', ['qdisc', 'add', 'dev', device, 'root', 'handle', '1:', 'htb', 'default', '2']);
  exec('tc', ['class', 'add', 'dev', device, 'parent', '1:', 'classid', '1:1', 'htb', 'rate', rate, 'ceil', rate]);
  exec('tc', ['class', 'add', 'dev', device, 'parent', '1:1', 'classid', '1:2', 'htb', 'rate', rate, 'ceil', rate]);
}

describe('gc and an htb of a rate limit’s shape with no redirect and no record', () => {
  it('an operator’s htb of Kata’s shape on a pod link the live sandbox does not use stays (gc --netns, and a gc of every namespace)', () => {
    const { pod } = makePod({ interfaces: 2 });
    // eth1 has no address: attach passes over it, and no record names it.
    pod.exec('ip', ['addr', 'flush', 'dev', 'eth1']);
    const state = ['--state-dir', stateDirectory()];
    const attached = vcnet(['attach', '--sandbox', 'live', '--netns', pod.path, ...state]);
    expect(attached.status, attached.stderr).toBe(0);
    vcnetShapedHtb(pod.exec.bind(pod), 'eth1', '50mbit');
    const shaped = fingerprint(pod);

    const everywhere = gc(['--dry-run']);
    expect(htbItems(everywhere.removed.filter((item) => item.namespacePath === pod.path))).toEqual([]);
    for (const dryRun of [['--dry-run'], []]) {
      const collected = gc(['--netns', pod.path, ...dryRun]);
      expect(collected.failures).toEqual([]);
      expect(htbItems(collected.removed)).toEqual([]);
      expect(collected.leftAlone.find((item) => item.kind === 'qdisc' && item.name === 'eth1')?.detail).toMatch(
        /no record claims it.*50000000 bit\/s.*`tc -n \S+ qdisc del dev eth1 root handle 1:`/,
      );
    }
    expect(fingerprint(pod)).toEqual(shaped);
    const detached = vcnet(['detach', '--sandbox', 'live', ...state]);
    expect(detached.status, detached.stderr).toBe(0);
  });

  it('an htb whose record was deleted after the pod link’s ingress went stays, with the command that removes it', () => {
    const { pod } = makePod();
    pod.exec('ip', ['link', 'set', 'eth0', 'txqueuelen', '0']);
    const before = fingerprint(pod);
    const config = join(stateDirectory(), 'configuration.toml');
    writeFileSync(config, RATE_LIMITED_KATA_CONFIG);
    const attached = vcnet([
      ...['attach', '--sandbox', 'lost', '--netns', pod.path, '--config', config],
      ...['--state-dir', stateDirectory()],
    ]);
    expect(attached.status, attached.stderr).toBe(0);
    rmSync(join(stateDirectory(), 'lost'), { recursive: true, force: true });
    rmSync(join(stateDirectory(), '.locks', 'lost'), { force: true });
    // Someone deletes the pod link's ingress qdisc: the redirects go with it.
    pod.exec('tc', ['qdisc', 'del', 'dev', 'eth0', 'ingress']);
    expect(pod.exec('tc', ['qdisc', 'show', 'dev', 'eth0'])).toMatch(/qdisc htb 1: root/);

    for (const dryRun of [['--dry-run'], []]) {
      const collected = gc(['--netns', pod.path, ...dryRun]);
      expect(collected.failures).toEqual([]);
      expect(htbItems(collected.removed)).toEqual([]);
      expect(htbItems(collected.leftAlone)).toEqual(['eth0']);
      expect(collected.leftAlone.find((item) => item.name === 'eth0')?.detail).toMatch(
        /no record claims it and no redirect of vcnet's is on eth0.*50000000 bit\/s/,
      );
    }
    // The orphan tap went (with --netns); the htb stays.
    expect(pod.exec('tc', ['qdisc', 'show', 'dev', 'eth0'])).toMatch(/qdisc htb 1: root/);
    // The command gc names removes it, and the pod link is as it was before the attach.
    pod.exec('tc', ['qdisc', 'del', 'dev', 'eth0', 'root', 'handle', '1:']);
    expect(fingerprint(pod)).toEqual(before);
  });

  it('one made by hand on a pod link no record names: listed under leftAlone with the command, in a gc of every namespace and with --netns', () => {
    const { pod } = makePod();
    vcnetShapedHtb(pod.exec.bind(pod), 'eth0');
    const shaped = fingerprint(pod);

    // A dry run: gc over every namespace must not remove anything of another helper's.
    const everywhere = gc(['--dry-run']);
    expect(everywhere.unclaimed.find((entry) => entry.namespacePath === pod.path)).toBeUndefined();
    const here = everywhere.leftAlone.find(
      (item) => item.name === 'eth0' && item.detail.includes(`tc -n ${pod.name} `),
    );
    expect(here?.detail).toMatch(/^htb root qdisc of the shape a vcnet rate limit makes .*10000000 bit\/s/);
    expect(here?.detail).toContain(`\`tc -n ${pod.name} qdisc del dev eth0 root handle 1:\` removes it`);
    const text = vcnet(['gc', '--dry-run', '--netns', pod.path, '--state-dir', stateDirectory()]);
    expect(text.stderr).toContain(`gc left the qdisc eth0 in ${pod.path}: htb root qdisc of the shape`);

    const collected = gc(['--netns', pod.path]);
    expect(collected.failures).toEqual([]);
    expect(htbItems(collected.removed)).toEqual([]);
    expect(fingerprint(pod)).toEqual(shaped);
  });

  it('named through gc’s own process (--netns /dev/fd/N, /proc/self/ns/net): the command names a path that outlives gc (the pin, by its name), and removes the htb when pasted into bash', () => {
    const { pod } = makePod();
    // A tenant picks the link's name: `$` and `'` must reach tc as they are.
    const device = "d$0'x";
    pod.exec('ip', ['link', 'add', device, 'type', 'veth', 'peer', 'name', 'p0']);
    const htbOn = () => pod.tcJson<Array<{ kind: string }>>('qdisc', 'show', 'dev', device, 'root')[0]?.kind;
    const state = ['--state-dir', stateDirectory(), '--json', '--dry-run'];
    const fd = openSync(pod.path, 'r');
    try {
      const runs = [
        // The namespace's fd, passed as fd 3: /dev/fd/3 is gc's own.
        () =>
          spawnSync(process.execPath, [CLI, 'gc', '--netns', '/dev/fd/3', ...state], {
            encoding: 'utf8',
            stdio: ['ignore', 'pipe', 'pipe', fd],
          }),
        // gc run in the namespace, named by its own /proc/self: in the host shell it is pasted into,
        // that path is the host's namespace.
        () =>
          spawnSync(
            'ip',
            ['netns', 'exec', pod.name, process.execPath, CLI, 'gc', '--netns', '/proc/self/ns/net', ...state],
            {
              encoding: 'utf8',
            },
          ),
      ];
      for (const gcRun of runs) {
        vcnetShapedHtb(pod.exec.bind(pod), device);
        const run = gcRun();
        expect(run.status, run.stderr).toBe(0);
        const detail = (JSON.parse(run.stdout) as Report).leftAlone.find((item) => item.name === device)?.detail;
        const command = /`([^`]*qdisc del[^`]*)` removes it/.exec(detail ?? '')?.[1];
        expect(command, detail).toBe(`tc -n ${pod.name} qdisc del dev 'd$0'\\''x' root handle 1:`);
        expect(htbOn()).toBe('htb');
        const pasted = spawnSync('bash', ['-c', command!], { encoding: 'utf8' });
        expect(pasted.status, pasted.stderr).toBe(0);
        expect(htbOn()).not.toBe('htb');
      }
    } finally {
      closeSync(fd);
    }
  });

  it('named through gc’s own process in a namespace nothing else holds: the command says PATH and why', () => {
    // A namespace of gc's own (unshare -n, exec'd: no other process is in it), which goes with it.
    const script = `ip link add 'd$0' type veth peer name p0 && tc qdisc add dev 'd$0' root handle 1: htb default 2 && tc class add dev 'd$0' parent 1: classid 1:1 htb rate 10mbit ceil 10mbit && tc class add dev 'd$0' parent 1:1 classid 1:2 htb rate 10mbit ceil 10mbit && exec "$@"`;
    const run = spawnSync(
      'unshare',
      [
        '-n',
        'sh',
        '-c',
        script,
        'sh',
        process.execPath,
        CLI,
        'gc',
        '--netns',
        '/proc/self/ns/net',
        '--state-dir',
        stateDirectory(),
        '--json',
        '--dry-run',
      ],
      { encoding: 'utf8' },
    );
    expect(run.status, run.stderr).toBe(0);
    const detail = (JSON.parse(run.stdout) as Report).leftAlone.find((item) => item.name === 'd$0')?.detail;
    expect(detail).toContain(
      "`nsenter --net=PATH tc qdisc del dev 'd$0' root handle 1:` removes it; PATH stands for a path of the namespace: /proc/self/ns/net reaches it through this vcnet process",
    );
    expect(detail).not.toMatch(/nsenter --net=\/proc\//);
  });

  it('stays beside a live redirect of vcnet’s shape, and when it is of another shape', () => {
    const { pod } = makePod({ interfaces: 3 });
    // eth0: vcnet's htb, and a redirect of vcnet's shape to a link that exists (eth1): an attach
    // whose record gc cannot see, live.
    vcnetShapedHtb(pod.exec.bind(pod), 'eth0');
    pod.exec('tc', ['qdisc', 'add', 'dev', 'eth0', 'ingress']);
    pod.exec('tc', [
      ...['filter', 'add', 'dev', 'eth0', 'parent', 'ffff:', 'prio', '49152', 'protocol', 'all'],
      ...['u32', 'match', 'u8', '0', '0', 'action', 'mirred', 'egress', 'redirect', 'dev', 'eth1'],
    ]);
    // eth2: an htb with a third class, not vcnet's shape.
    vcnetShapedHtb(pod.exec.bind(pod), 'eth2');
    pod.exec('tc', ['class', 'add', 'dev', 'eth2', 'parent', '1:', 'classid', '1:10', 'htb', 'rate', '5mbit']);
    const before = fingerprint(pod);

    const collected = gc(['--netns', pod.path]);
    expect(collected.failures).toEqual([]);
    expect(htbItems(collected.removed)).toEqual([]);
    expect(fingerprint(pod)).toEqual(before);
  });

  it('stays, unlisted, while another command holds the namespace, and stays once it is done', () => {
    const { pod } = makePod();
    vcnetShapedHtb(pod.exec.bind(pod), 'eth0');
    const shaped = fingerprint(pod);
    // As attach, detach and vcnet-cni ADD/DEL hold it: gc does not look into the namespace at all.
    const fd = openSync(pod.path, 'r');
    expect(nativeFileLock.lockFile(fd, true)).toBe(true);
    try {
      for (const dryRun of [['--dry-run'], []]) {
        const held = gc(['--netns', pod.path, ...dryRun]);
        expect(htbItems(held.removed)).toEqual([]);
        expect(held.withheld).toEqual([expect.objectContaining({ namespacePath: pod.path, beingChanged: true })]);
        expect(fingerprint(pod)).toEqual(shaped);
      }
    } finally {
      closeSync(fd);
    }
    const collected = gc(['--netns', pod.path]);
    expect(htbItems(collected.removed)).toEqual([]);
    expect(htbItems(collected.leftAlone)).toEqual(['eth0']);
    expect(fingerprint(pod)).toEqual(shaped);
  });

  it('stays when a live record claims it, though all its redirects are gone', () => {
    const { pod } = makePod();
    pod.exec('ip', ['link', 'set', 'eth0', 'txqueuelen', '0']);
    const config = join(stateDirectory(), 'configuration.toml');
    writeFileSync(config, RATE_LIMITED_KATA_CONFIG);
    const state = ['--state-dir', stateDirectory()];
    const attached = vcnet(['attach', '--sandbox', 'live', '--netns', pod.path, '--config', config, ...state]);
    expect(attached.status, attached.stderr).toBe(0);
    // Both ways' redirects gone (each ingress qdisc deleted): only the record says whose the htb is.
    for (const device of ['eth0', 'tap0_kata']) pod.exec('tc', ['qdisc', 'del', 'dev', device, 'ingress']);
    const left = fingerprint(pod);

    const collected = gc(['--netns', pod.path]);
    expect(collected.failures).toEqual([]);
    expect(htbItems(collected.removed)).toEqual([]);
    expect(htbItems(collected.leftAlone)).toEqual([]);
    expect(fingerprint(pod)).toEqual(left);
    const detached = vcnet(['detach', '--sandbox', 'live', ...state]);
    expect(detached.status, detached.stderr).toBe(0);
  });

  it('one made after gc’s first look (an attach whose record gc read before it was written) is not even listed', async () => {
    const { pod } = makePod();
    // Made between gc's listing and its reading of the records: a running attach's, journaled after
    // that read, would look exactly so.
    setGcFirstLookTestHook(() => vcnetShapedHtb(pod.exec.bind(pod), 'eth0'));
    const options = { namespaces: [pod.path], stateDirectories: [stateDirectory()] };
    const first = await collectGarbage(options);
    setGcFirstLookTestHook(undefined);
    expect(first.failures).toEqual([]);
    expect(htbItems(first.removed)).toEqual([]);
    expect(htbItems(first.leftAlone)).toEqual([]);
    expect(pod.exec('tc', ['qdisc', 'show', 'dev', 'eth0'])).toMatch(/qdisc htb 1: root/);

    const next = await collectGarbage(options);
    expect(htbItems(next.removed)).toEqual([]);
    expect(htbItems(next.leftAlone)).toEqual(['eth0']);
  });
});
