/**
 * gc knows every owner: with a CLI sandbox on a named namespace, one attached through
 * /proc/PID/ns/net and a vcnet-cni pod live, gc changes none of them (it finds their state
 * directories through the registry alone); once their records are deleted it removes every object
 * they made. Unreadable records are named and skipped, and a namespace one of them names is left
 * alone (every namespace, while one names none). Every gc here is scoped with --netns to this test's namespaces (other tests run at once).
 */

import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { registeredStateDirectories } from '../../../src/network/state/registry.js';
import { vcnet } from '../../helpers/cli.js';
import { bridgeThenVcnet, CniRuntime, missingCniPlugins } from '../../helpers/cni.js';
import { cleanupNamespaces, makeNamespace, type TestNamespace } from '../../helpers/namespace.js';
import { fingerprint, makePod } from '../../helpers/pod.js';

const VCNET_GROUP = 0x7663;
let work: string;
const processes: ChildProcess[] = [];

beforeEach(() => {
  work = mkdtempSync(join(tmpdir(), 'vcnet-gc-'));
});

afterEach(() => {
  for (const child of processes.splice(0)) child.kill('SIGKILL');
  cleanupNamespaces();
  rmSync(work, { recursive: true, force: true });
});

const missing = missingCniPlugins();
if (missing) console.log(`skip gc with a vcnet-cni pod: ${missing}`);

interface GcReport {
  removed: Array<{ kind: string; namespacePath: string; name: string; detail?: string }>;
  skipped: Array<{ file: string; reason: string }>;
  kept: number;
  stateDirectories: string[];
}

function gc(namespaces: string[], ...flags: string[]): GcReport {
  const result = vcnet(['gc', '--json', '--netns', ...namespaces, ...flags]);
  expect(result.status, result.stderr).toBe(0);
  return JSON.parse(result.stdout) as GcReport;
}

/** vcnet's links (group 0x7663) in a namespace, by name. */
function vcnetLinks(namespace: { exec(command: string, args: string[]): string }): string[] {
  const links = JSON.parse(namespace.exec('ip', ['-j', '-d', 'link', 'show'])) as Array<{
    ifname: string;
    group: string;
  }>;
  return links
    .filter((link) => link.group === String(VCNET_GROUP) || link.group === '0x7663')
    .map((link) => link.ifname);
}

/** A namespace only a process holds (no /var/run/netns entry), with eth0 from a node namespace. */
async function unpinnedPod(node: TestNamespace) {
  const child = spawn('unshare', ['--net', 'sh', '-c', 'echo ready; exec sleep 300'], { stdio: 'pipe' });
  processes.push(child);
  await new Promise<void>((resolve) => child.stdout?.once('data', () => resolve()));
  const veth = `vp${randomBytes(3).toString('hex')}`;
  node.exec('ip', ['link', 'add', veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', String(child.pid)]);
  const path = `/proc/${child.pid}/ns/net`;
  const exec = (command: string, args: string[]) => spawnText('nsenter', [`--net=${path}`, command, ...args]);
  exec('ip', ['link', 'set', 'eth0', 'up']);
  exec('ip', ['addr', 'add', '10.207.0.2/24', 'dev', 'eth0']);
  return { path, exec };
}

/**
 * The unpinned pod's links as `ip -d link show` prints them, minus carrier and operstate: the kernel
 * updates those through linkwatch up to a second after a tap's last fd closes, by itself.
 */
function unpinnedLinks(pod: { exec: (command: string, args: string[]) => string }): string {
  return pod
    .exec('ip', ['-d', 'link', 'show'])
    .replace(/NO-CARRIER,|,LOWER_UP|M-DOWN,?/g, '')
    .replace(/ state [A-Z]+ /g, ' ');
}

function spawnText(command: string, args: string[]): string {
  return execFileSync(command, args, { encoding: 'utf8' });
}

describe('vcnet gc', () => {
  it.skipIf(missing !== undefined)(
    'changes no live CLI or CNI sandbox, removes all their objects once their records are gone, and skips unreadable records',
    async () => {
      const cliDir = join(work, 'cli-state');
      const cniDir = join(work, 'cni-state');

      // A CLI sandbox on a named namespace.
      const named = makePod();
      expect(vcnet(['attach', '--sandbox', 'named', '--netns', named.pod.path, '--state-dir', cliDir]).status).toBe(0);
      // A CLI sandbox attached through /proc/PID/ns/net (nothing pins that namespace).
      const unpinned = await unpinnedPod(named.node);
      const viaPid = vcnet(['attach', '--sandbox', 'via-pid', '--netns', unpinned.path, '--state-dir', cliDir]);
      expect(viaPid.stderr).toBe('');
      // A vcnet-cni pod (bridge, then vcnet-cni), recorded in its own state directory.
      const node = makeNamespace('node');
      const cniPod = makeNamespace('pod');
      const list = bridgeThenVcnet({
        name: 'vcnet-gc',
        bridge: 'vcbr7',
        subnet: '10.232.7.0/24',
        dataDir: join(work, 'ipam'),
        vcnet: { stateDir: cniDir },
      });
      const containerId = `ctr-${randomBytes(4).toString('hex')}`;
      const runtime = new CniRuntime(node, { containerId, namespacePath: cniPod.path, interfaceName: 'eth0' });
      const cniResult = runtime.add(list);

      // gc finds both state directories without being told.
      expect(registeredStateDirectories()).toEqual(expect.arrayContaining([cliDir, cniDir]));

      // Unreadable records: a truncated one, and one whose namespace is readable (a fourth pod with an orphan tap).
      const guarded = makePod();
      guarded.pod.exec('ip', ['tuntap', 'add', 'tap9_kata', 'mode', 'tap']);
      guarded.pod.exec('ip', ['link', 'set', 'tap9_kata', 'group', String(VCNET_GROUP)]);
      mkdirSync(join(cliDir, 'truncated'));
      writeFileSync(join(cliDir, 'truncated', 'state.json'), '{"version": 2, "id": "trunc');
      const namedRecord = JSON.parse(readFileSync(join(cliDir, 'named', 'state.json'), 'utf8'));
      mkdirSync(join(cliDir, 'guarded'));
      const pinned = statSync(guarded.pod.path);
      const guardedNamespace = { path: guarded.pod.path, dev: pinned.dev, ino: pinned.ino };
      writeFileSync(
        join(cliDir, 'guarded', 'state.json'),
        JSON.stringify({ ...namedRecord, id: 'guarded', namespace: guardedNamespace, network: null }),
      );

      const namespaces = [named.pod.path, unpinned.path, cniPod.path, guarded.pod.path];
      const before = {
        named: fingerprint(named.pod),
        cni: fingerprint(cniPod),
        unpinned: unpinnedLinks(unpinned),
        guarded: fingerprint(guarded.pod),
      };
      expect(vcnetLinks(named.pod)).toEqual(['tap0_kata']);
      expect(vcnetLinks({ exec: unpinned.exec })).toEqual(['tap0_kata']);
      expect(vcnetLinks(cniPod)).toEqual(['tap0_kata']);

      const dry = gc(namespaces, '--dry-run');
      expect(dry.removed).toEqual([]);
      expect(dry.skipped.map((record) => record.file).sort()).toEqual(
        [join(cliDir, 'guarded', 'state.json'), join(cliDir, 'truncated', 'state.json')].sort(),
      );
      expect(dry.skipped.find((record) => record.file.includes('truncated'))?.reason).toContain('is not valid JSON');
      // Cut before its namespace, the truncated record may be any live sandbox's: gc removes nothing anywhere.
      expect(dry.skipped.find((record) => record.file.includes('truncated'))?.reason).toContain(
        'it does not say which namespace it is about, so gc removes no link, filter or qdisc in any namespace while it is there',
      );
      expect(dry.skipped.find((record) => record.file.includes('guarded'))?.reason).toContain('field network');
      const real = gc(namespaces);
      expect(real.removed).toEqual([]);
      expect(real.kept).toBe(4); // three taps of live records, and the tap in the guarded namespace
      expect(fingerprint(named.pod)).toEqual(before.named);
      expect(fingerprint(cniPod)).toEqual(before.cni);
      expect(unpinnedLinks(unpinned)).toBe(before.unpinned);
      expect(fingerprint(guarded.pod)).toEqual(before.guarded);
      const human = vcnet(['gc', '--netns', ...namespaces]);
      expect(human.stderr).toContain(
        `gc skipped a record it cannot read: state file ${join(cliDir, 'truncated', 'state.json')}`,
      );

      // The records go (the truncated one too, as its hint says): every object they made is now an orphan.
      rmSync(join(cliDir, 'truncated'), { recursive: true });
      rmSync(join(cliDir, 'named'), { recursive: true });
      rmSync(join(cliDir, 'via-pid'), { recursive: true });
      rmSync(join(cniDir, containerId), { recursive: true });
      rmSync(join(cliDir, 'guarded'), { recursive: true });
      const planned = gc(namespaces, '--dry-run');
      expect(
        planned.removed
          .filter((item) => item.kind === 'link')
          .map((item) => `${item.namespacePath} ${item.name}`)
          .sort(),
      ).toEqual(
        [
          `${named.pod.path} tap0_kata`,
          `${unpinned.path} tap0_kata`,
          `${cniPod.path} tap0_kata`,
          `${guarded.pod.path} tap9_kata`,
        ].sort(),
      );
      expect(planned.removed.every((item) => item.detail)).toBe(true);
      expect(vcnetLinks(named.pod)).toEqual(['tap0_kata']);
      const collected = gc(namespaces);
      expect(collected.removed.length).toBe(planned.removed.length);
      expect(vcnetLinks(named.pod)).toEqual([]);
      expect(vcnetLinks({ exec: unpinned.exec })).toEqual([]);
      expect(vcnetLinks(cniPod)).toEqual([]);
      expect(vcnetLinks(guarded.pod)).toEqual([]);
      for (const pod of [named.pod, cniPod]) expect(pod.tcJson('filter', 'show', 'dev', 'eth0', 'ingress')).toEqual([]);
      expect(cniResult).toBeDefined();
    },
    180_000,
  );

  it('leaves a live sandbox of another registry alone when no --netns is given; naming its namespace collects it', () => {
    // Two vcnet installs with their own registries (or a wiped /run): records gc cannot see. Such
    // links may be a running VM's, so only a gc that names the namespace removes them.
    const { pod } = makePod();
    const otherRegistry = join(work, 'other-registry');
    const otherState = join(work, 'other-state');
    const attached = vcnet(['attach', '--sandbox', 'elsewhere', '--netns', pod.path, '--state-dir', otherState], {
      VCNET_STATE_REGISTRY: otherRegistry,
    });
    expect(attached.status, attached.stderr).toBe(0);
    const before = fingerprint(pod);
    // This gc reads neither otherState nor otherRegistry. --dry-run: other tests' namespaces are on
    // this node too, and a whole-node gc must not change them.
    const whole = vcnet(['gc', '--dry-run', '--json'], { VCNET_STATE_REGISTRY: join(work, 'empty-registry') });
    expect(whole.status, whole.stderr).toBe(0);
    const report = JSON.parse(whole.stdout) as GcReport & {
      unclaimed: Array<{ namespacePath: string; links: string[] }>;
    };
    expect(report.removed.filter((item) => item.namespacePath === pod.path)).toEqual([]);
    expect(report.unclaimed).toContainEqual({ namespacePath: pod.path, links: ['tap0_kata'] });
    const human = vcnet(['gc', '--dry-run'], { VCNET_STATE_REGISTRY: join(work, 'empty-registry') });
    expect(human.stderr).toContain(`gc left tap0_kata in ${pod.path}: no record it read names that namespace`);
    expect(fingerprint(pod)).toEqual(before);
    // Named, the namespace is this gc's business: its unclaimed tap and filters go.
    const scoped = vcnet(['gc', '--json', '--netns', pod.path], { VCNET_STATE_REGISTRY: join(work, 'empty-registry') });
    expect(scoped.status, scoped.stderr).toBe(0);
    expect((JSON.parse(scoped.stdout) as GcReport).removed.map((item) => `${item.kind} ${item.name}`).sort()).toEqual([
      'filter eth0',
      'link tap0_kata',
      'qdisc eth0',
    ]);
    expect(vcnetLinks(pod)).toEqual([]);
  });

  it("removes tcfilter's ingress qdisc with the last redirect it removes, and leaves one that keeps another's filter", () => {
    const state = join(work, 'state');
    // plain: eth0 had no qdisc at its ingress; shared: it had an ingress qdisc with someone's filter.
    const plain = makePod().pod;
    const shared = makePod().pod;
    shared.exec('tc', ['qdisc', 'add', 'dev', 'eth0', 'ingress']);
    shared.exec('tc', 'filter add dev eth0 ingress prio 7 protocol ip u32 match u32 0 0 classid 1:1'.split(' '));
    const before = { plain: fingerprint(plain), shared: fingerprint(shared) };
    for (const [id, pod] of [
      ['plain', plain],
      ['shared', shared],
    ] as const) {
      const attached = vcnet(['attach', '--sandbox', id, '--netns', pod.path, '--state-dir', state]);
      expect(attached.status, attached.stderr).toBe(0);
      rmSync(join(state, id), { recursive: true });
    }
    const namespaces = [plain.path, shared.path];
    const planned = gc(namespaces, '--dry-run');
    const items = (report: GcReport) =>
      report.removed
        .filter((item) => item.kind !== 'state')
        .map((item) => `${item.namespacePath} ${item.kind} ${item.name}`);
    expect(items(planned).sort()).toEqual(
      [
        `${plain.path} filter eth0`,
        `${plain.path} qdisc eth0`,
        `${plain.path} link tap0_kata`,
        `${shared.path} filter eth0`,
        `${shared.path} link tap0_kata`,
      ].sort(),
    );
    expect(planned.removed.find((item) => item.kind === 'qdisc')?.detail).toContain(
      'ingress qdisc (ffff:) with no filter left once its redirects to an orphan go',
    );
    const collected = gc(namespaces);
    expect(items(collected).sort()).toEqual(items(planned).sort());
    // Exactly as before the attach: the plain pod without a qdisc, the shared one with its own filter.
    expect(fingerprint(plain)).toEqual(before.plain);
    // tc prints `parent ffff:` on the remaining filters once a filter was added there through netlink
    // with that parent (a plain detach shows the same): the filters themselves are unchanged.
    const withoutParent = (print: Record<string, unknown>) =>
      JSON.parse(JSON.stringify(print, (key, value) => (key === 'parent' ? undefined : value)));
    expect(withoutParent(fingerprint(shared))).toEqual(withoutParent(before.shared));
    // A gc that removes no filter there leaves an ingress qdisc alone.
    plain.exec('tc', ['qdisc', 'add', 'dev', 'eth0', 'ingress']);
    const idle = fingerprint(plain);
    expect(gc([plain.path]).removed).toEqual([]);
    expect(fingerprint(plain)).toEqual(idle);
  });
});
