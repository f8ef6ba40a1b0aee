/**
 * A rate limit's htb that lost both its record and the redirects that told gc it was an attach's:
 * vcnet's shape (root 1: default 2, classes 1:1 and 1:2 at one rate, nothing else), on a pod link
 * with no vcnet redirect left. gc took such an htb only together with redirects it removed, so one
 * left this way (the pod link's ingress qdisc deleted by someone, taking the redirects with it, then
 * the record lost) was neither listed nor removed, and kept throttling what the pod link sends.
 * Now `gc --netns` removes it (--dry-run lists it), a gc that was not given the namespace lists it
 * under `unclaimed` with what it throttles and the tc command that removes it; an htb beside a live
 * redirect of vcnet's shape (an attach whose record gc cannot see), or of another shape, stays; so
 * does one a live record claims, one in a namespace another command holds the lock of, and one made
 * after gc's first look (gc judges it under the namespace's lock, from candidates listed before it
 * read the records).
 */
import { closeSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { nativeFileLock } from '../../../src/native/file-lock.js';
import { collectGarbage, setGcFirstLookTestHook } from '../../../src/network/garbage-collector.js';
import { RATE_LIMITED_KATA_CONFIG, stateDirectoryPerTest, vcnet } from '../../helpers/cli.js';
import { fingerprint, makePod } from '../../helpers/pod.js';

const stateDirectory = stateDirectoryPerTest('vcnet-gc-stray-htb-');

afterEach(() => setGcFirstLookTestHook(undefined));

interface Report {
  removed: Array<{ kind: string; name: string; detail: string }>;
  withheld: Array<{ namespacePath: string; links: string[]; beingChanged?: boolean }>;
  leftAlone: Array<{ kind: string; name: string; detail: string }>;
  unclaimed: Array<{ namespacePath: string; links: string[]; filters?: string[]; qdiscs?: string[] }>;
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

describe('gc and a rate limit’s htb left with no redirect and no record', () => {
  it('gc --netns removes the htb a lost record left once the pod link’s ingress went', () => {
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

    const dry = gc(['--netns', pod.path, '--dry-run']);
    expect(htbItems(dry.removed)).toEqual(['eth0']);
    expect(dry.removed.find((item) => item.detail.startsWith('htb'))?.detail).toMatch(
      /no record claims it and no redirect of vcnet's is on eth0.*50000000 bit\/s/,
    );
    expect(pod.exec('tc', ['qdisc', 'show', 'dev', 'eth0'])).toMatch(/qdisc htb 1: root/);

    const collected = gc(['--netns', pod.path]);
    expect(collected.failures).toEqual([]);
    expect(htbItems(collected.removed)).toEqual(['eth0']);
    expect(fingerprint(pod)).toEqual(before);
  });

  it('one made by hand on a pod link: listed under unclaimed with a hint when the namespace was not given, removed with --netns', () => {
    const { pod } = makePod();
    const before = fingerprint(pod);
    vcnetShapedHtb(pod.exec.bind(pod), 'eth0');

    // Not given, and no record names the namespace: listed, not removed (a dry run: gc over every
    // namespace must not remove anything of another helper's).
    const everywhere = gc(['--dry-run']);
    const here = everywhere.unclaimed.find((entry) => entry.namespacePath === pod.path);
    expect(here?.links).toEqual([]);
    expect(here?.qdiscs).toEqual([
      `eth0 root htb 1: (a vcnet rate limit: it holds what eth0 sends to 10000000 bit/s; \`nsenter --net=${pod.path} tc qdisc del dev eth0 root handle 1:\` removes it)`,
    ]);
    const text = vcnet(['gc', '--dry-run', '--state-dir', stateDirectory()]);
    expect(text.stderr).toContain(
      `the qdisc eth0 root htb 1: (a vcnet rate limit: it holds what eth0 sends to 10000000 bit/s;`,
    );
    expect(pod.exec('tc', ['qdisc', 'show', 'dev', 'eth0'])).toMatch(/qdisc htb 1: root/);

    const collected = gc(['--netns', pod.path]);
    expect(collected.failures).toEqual([]);
    expect(htbItems(collected.removed)).toEqual(['eth0']);
    expect(fingerprint(pod)).toEqual(before);
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

  it('stays while another command holds the namespace, and goes once it is done', () => {
    const { pod } = makePod();
    const before = fingerprint(pod);
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
    expect(htbItems(collected.removed)).toEqual(['eth0']);
    expect(fingerprint(pod)).toEqual(before);
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
    expect(fingerprint(pod)).toEqual(left);
    const detached = vcnet(['detach', '--sandbox', 'live', ...state]);
    expect(detached.status, detached.stderr).toBe(0);
  });

  it('one made after gc’s first look (an attach whose record gc read before it was written) stays for the next gc', async () => {
    const { pod } = makePod();
    const before = fingerprint(pod);
    // Made between gc's listing and its reading of the records: a running attach's, journaled after
    // that read, would look exactly so.
    setGcFirstLookTestHook(() => vcnetShapedHtb(pod.exec.bind(pod), 'eth0'));
    const options = { namespaces: [pod.path], stateDirectories: [stateDirectory()] };
    const first = await collectGarbage(options);
    setGcFirstLookTestHook(undefined);
    expect(first.failures).toEqual([]);
    expect(htbItems(first.removed)).toEqual([]);
    expect(pod.exec('tc', ['qdisc', 'show', 'dev', 'eth0'])).toMatch(/qdisc htb 1: root/);

    const next = await collectGarbage(options);
    expect(htbItems(next.removed)).toEqual(['eth0']);
    expect(fingerprint(pod)).toEqual(before);
  });
});
