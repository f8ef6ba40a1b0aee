/**
 * The kill -9 loop of vcnet-cni, run as a runtime runs the chain (bridge + host-local, then vcnet-cni
 * with a rate limit, each model in turn; test/helpers/cni.ts): vcnet-cni's ADD killed at a random
 * point, then the whole chain's DEL, which containerd and CRI-O run after a failed ADD (no cached
 * result: libcni caches only a successful ADD); and vcnet-cni's DEL killed at a random point (the
 * chain stops there), then the chain's DEL again, as the runtime retries it. After each round: the pod
 * namespace is exactly as before the ADD, the node's namespace has no bridge port left, host-local
 * holds no address for the container, vcnet-cni's state directory nothing of it (record, directory,
 * lock file), and the next round's ADD of the same container id works (a last ADD and DEL too).
 *
 * The kill comes from a worker thread in the plugin (test/helpers/kill-preload.mjs), counted from the
 * moment the preload loads, before vcnet-cni's own code, so that it lands in reading stdin and making
 * the lock file and directories too, or from the attach's or detach's start (killPoint; the windows
 * are measured in the same run). Only real kills are counted, and what each left for the DEL
 * is tallied and printed. The seed is printed (VCNET_KILL_SEED replays it), and a failure names the
 * round and the delay. CHECK is never run after a failed ADD (the CNI spec says a runtime must not).
 *
 * The detach itself is short (one netlink batch undoes the plumbing, then the record and its
 * directories go), and the random kills rarely land in it. So DEL is also killed deterministically
 * after each change its detach makes, in turn: first a DEL that reports them (each netlink batch
 * answered, the sysctl that may follow one, each file or directory changed: kill-preload.mjs; the
 * kernel runs one batch whole, so between its netlink send and its sysctl is the one place inside
 * the undo itself a kill can land), then one ADD and one DEL
 * killed after change n for n = 0 (the detach's start) to the last, each followed by the runtime's
 * retry of the chain's DEL, with the same checks.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { changesReported, killAfter, killAtChange } from '../../helpers/cli.js';
import {
  bridgeThenVcnet,
  CniChainError,
  CniRuntime,
  type Conflist,
  missingCniPlugins,
  type PluginRun,
} from '../../helpers/cni.js';
import { cleanupNamespaces, makeNamespace, type TestNamespace } from '../../helpers/namespace.js';
import { fingerprint, kataLinks } from '../../helpers/pod.js';
import { seededRandom } from '../../helpers/seeded-random.js';

const skipReason =
  process.getuid?.() !== 0 ? 'the vcnet-cni kill loop needs root (namespaces, taps, tc)' : missingCniPlugins();
if (skipReason) console.log(`skipping the vcnet-cni kill loop: ${skipReason}`);

/**
 * Kills of each operation per model (VCNET_CNI_KILLS): 15 for each of the two models, 30 in all,
 * keep the file near two minutes on a 2-CPU machine (the rounds take about a second each).
 */
const KILLS_PER_OPERATION = Number(process.env.VCNET_CNI_KILLS ?? 15);
const NETWORK = 'vcnet-kill';

let workDirectory: string;

beforeEach(() => {
  workDirectory = mkdtempSync(join(tmpdir(), 'vcnet-cni-kill-'));
});

afterEach(() => {
  cleanupNamespaces();
  rmSync(workDirectory, { recursive: true, force: true });
});

type Model = 'tcfilter' | 'macvtap';

/**
 * One runtime's node and pod, the chain with `model` and a rate limit (so an ifb and an htb are in
 * flight too; macvtap also moves the pod interface's MAC and addresses).
 */
function chainFixture(model: Model) {
  const node = makeNamespace('node');
  const pod = makeNamespace('pod');
  // No duplicate address detection: IPv6 link-local addresses appear at once, so fingerprints do not race.
  pod.exec('sysctl', ['-q', '-w', 'net.ipv6.conf.default.accept_dad=0', 'net.ipv6.conf.all.accept_dad=0']);
  const stateDirectory = join(workDirectory, 'state');
  const ipamDirectory = join(workDirectory, 'ipam');
  const list: Conflist = bridgeThenVcnet({
    name: NETWORK,
    bridge: 'vckill0',
    subnet: '10.231.40.0/24',
    dataDir: ipamDirectory,
    vcnet: { stateDir: stateDirectory, model, rateLimit: { rx: 20_000_000, tx: 20_000_000 } },
  });
  const containerId = `kill-${randomBytes(4).toString('hex')}`;
  const runtime = new CniRuntime(node, { containerId, namespacePath: pod.path, interfaceName: 'eth0' });
  return { node, pod, stateDirectory, ipamDirectory, list, containerId, runtime };
}

type Fixture = ReturnType<typeof chainFixture>;

/** Each plugin's config in the list as libcni gives it, with `prevResult` when there is one. */
function pluginConfig(list: Conflist, position: number, previous?: Record<string, unknown>) {
  return {
    ...list.plugins[position]!,
    cniVersion: list.cniVersion,
    name: list.name,
    ...(previous ? { prevResult: previous } : {}),
  };
}

/** The chain's ADD, vcnet-cni's run with `environment` (a kill); the bridge's must succeed. */
function addChain(fixture: Fixture, environment: Record<string, string> = {}) {
  const bridge = fixture.runtime.invoke('ADD', pluginConfig(fixture.list, 0));
  if (bridge.status !== 0 || !bridge.output) throw new CniChainError(bridge);
  return fixture.runtime.invoke('ADD', pluginConfig(fixture.list, 1, bridge.output), environment);
}

/** The chain's DEL in reverse order, vcnet-cni's run with `environment`; stops at the first failure, as libcni does. */
function delChain(
  fixture: Fixture,
  cached: Record<string, unknown> | undefined,
  environment: Record<string, string> = {},
) {
  const vcnetCni = fixture.runtime.invoke('DEL', pluginConfig(fixture.list, 1, cached), environment);
  if (vcnetCni.status !== 0) return vcnetCni;
  const bridge = fixture.runtime.invoke('DEL', pluginConfig(fixture.list, 0, cached));
  if (bridge.status !== 0) throw new CniChainError(bridge);
  return vcnetCni;
}

/** host-local's reservations (one file per address, holding the container id) that name `containerId`. */
function reservationsOf(ipamDirectory: string, containerId: string): string[] {
  const directory = join(ipamDirectory, NETWORK);
  if (!existsSync(directory)) return [];
  return readdirSync(directory).filter((name) => {
    const path = join(directory, name);
    return statSync(path).isFile() && readFileSync(path, 'utf8').includes(containerId);
  });
}

/** What vcnet-cni's state directory holds of `containerId`: its directory, its lock file. */
function stateOf(stateDirectory: string, containerId: string): string[] {
  return [join(stateDirectory, containerId), join(stateDirectory, '.locks', containerId)].filter((path) =>
    existsSync(path),
  );
}

/** The windows a vcnet-cni run reported (killAfter without a delay): load to exit, load to the operation's start. */
function windowsOf(run: PluginRun): { window: number; operationAt: number } {
  const [, window, operationAt] = /vcnet: load window (\d+) operation at (\d+)/.exec(run.stderr) ?? [];
  return { window: Number(window ?? Number.NaN), operationAt: Number(operationAt ?? Number.NaN) };
}

function isKilled(run: PluginRun): boolean {
  return run.signal === 'SIGKILL';
}

/**
 * The node namespace's links by name and kind: the bridge, and no port of it left. (Not its whole
 * fingerprint: the bridge's carrier, and the routes' linkdown flags with it, follow its last port
 * by themselves, late.)
 */
function nodeLinks(node: TestNamespace): string[] {
  return node
    .ipJson<Array<{ ifname: string; linkinfo?: { info_kind?: string } }>>('-d', 'link', 'show')
    .map((link) => `${link.ifname} ${link.linkinfo?.info_kind ?? ''}`)
    .sort();
}

/**
 * What a killed run left for the DEL, so the output shows where the kills landed: vcnet-cni's state
 * of the container, and whether vcnet's links are in the pod (for a DEL's kill, `afterAdd`: whether
 * the pod is still as ADD left it, or the detach had begun).
 */
function leftByKill(fixture: Fixture, afterAdd?: unknown): string {
  const record = join(fixture.stateDirectory, fixture.containerId, 'interfaces', 'eth0', 'state.json');
  let state: string;
  if (existsSync(record)) {
    const content = JSON.parse(readFileSync(record, 'utf8')) as { device?: unknown; network?: { journal?: unknown } };
    state = content.device ? 'a record with its device' : 'a record without a device';
  } else if (existsSync(join(fixture.stateDirectory, fixture.containerId))) state = 'a directory without a record';
  else if (existsSync(join(fixture.stateDirectory, '.locks', fixture.containerId))) state = 'a lock file only';
  else state = 'no state';
  if (kataLinks(fixture.pod).length === 0) return state;
  if (afterAdd === undefined) return `${state}, vcnet's links in the pod`;
  return isDeepStrictEqual(fingerprint(fixture.pod), afterAdd)
    ? `${state}, the pod as ADD left it`
    : `${state}, the pod partly undone`;
}

/** Counts of what the kills left, printed at the end of a loop. */
function tally(counts: Map<string, number>, what: string): void {
  counts.set(what, (counts.get(what) ?? 0) + 1);
}

function describeTally(counts: Map<string, number>): string {
  return [...counts]
    .sort(([, a], [, b]) => b - a)
    .map(([what, count]) => `${count} ${what}`)
    .join('; ');
}

/**
 * Lets the worker's event loop reach I/O: the plugins run synchronously, and a loop of them would keep
 * the worker from vitest's RPC replies past its timeout (yield-between-tests.ts does it between tests).
 */
function yieldToVitest(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * Where a kill lands. Most of the load-to-exit window is Node loading vcnet-cni's code, and the
 * operation itself is short and, on a loaded machine, of varying length; so half the kills are
 * counted from the load, between the last fifth of loading and the end (stdin, the lock file, the
 * directories, the scan, then the rest), and half from the operation's own start, over its part of
 * the window and half as much again (the attach or detach, the records, the result). Both overshoot,
 * so some runs finish.
 */
function killPoint(
  next: () => number,
  operation: 'attach' | 'detach',
  { window, operationAt }: { window: number; operationAt: number },
): { delay: number; environment: Record<string, string>; from: string } {
  if (next() < 0.5) {
    const from = operationAt * 0.8;
    const delay = Math.floor(from + next() * (window * 1.2 - from));
    return { delay, environment: killAfter(operation, delay, { fromLoad: true }), from: 'load' };
  }
  const delay = Math.floor(next() * (window - operationAt) * 1.5);
  return { delay, environment: killAfter(operation, delay), from: `the ${operation}'s start` };
}

/** Everything a round must leave: nothing of the container anywhere, both namespaces as before. */
function expectNothingLeft(fixture: Fixture, before: { pod: unknown; node: string[] }, where: string) {
  expect(kataLinks(fixture.pod), `${where}: vcnet's taps in the pod`).toEqual([]);
  expect(fingerprint(fixture.pod), `${where}: the pod namespace`).toEqual(before.pod);
  expect(nodeLinks(fixture.node), `${where}: the node namespace's links`).toEqual(before.node);
  expect(reservationsOf(fixture.ipamDirectory, fixture.containerId), `${where}: host-local reservations`).toEqual([]);
  expect(stateOf(fixture.stateDirectory, fixture.containerId), `${where}: vcnet-cni's state`).toEqual([]);
}

/**
 * One complete ADD and DEL with the windows reported (which also makes the bridge, which stays:
 * the baseline of the node namespace is taken after it).
 */
function measure(fixture: Fixture, operation: 'attach' | 'detach') {
  const add = addChain(fixture, operation === 'attach' ? killAfter('attach', undefined, { fromLoad: true }) : {});
  expect(add.status, add.stdout || add.stderr).toBe(0);
  const del = delChain(
    fixture,
    add.output,
    operation === 'detach' ? killAfter('detach', undefined, { fromLoad: true }) : {},
  );
  expect(del.status, del.stdout || del.stderr).toBe(0);
  const windows = windowsOf(operation === 'attach' ? add : del);
  expect(windows.window, 'the window is reported').toBeGreaterThan(0);
  return windows;
}

const MODELS: Model[] = ['tcfilter', 'macvtap'];

describe.skipIf(skipReason).each(MODELS)(
  'kill -9 of vcnet-cni (%s) at random points, then the runtime DELs the chain',
  (model) => {
    it(`ADD: ${KILLS_PER_OPERATION} kills, each followed by the chain's DEL: nothing left, the id ADDs again`, async () => {
      const fixture = chainFixture(model);
      const podBefore = fingerprint(fixture.pod);
      const windows = measure(fixture, 'attach');
      const before = { pod: podBefore, node: nodeLinks(fixture.node) };
      expectNothingLeft(fixture, before, 'the measuring ADD and DEL');

      const seed = Number(process.env.VCNET_KILL_SEED ?? Date.now() % 2 ** 31);
      const next = seededRandom(seed);
      console.log(
        `vcnet-cni ${model} ADD kill loop: seed ${seed}, window ${windows.window} us from load to exit, ${windows.operationAt} us to the attach's start`,
      );
      let kills = 0;
      let completed = 0;
      const left = new Map<string, number>();
      for (let round = 0; kills < KILLS_PER_OPERATION; round++) {
        expect(round, 'too few runs were killed: the window is wrong').toBeLessThan(KILLS_PER_OPERATION * 4);
        const kill = killPoint(next, 'attach', windows);
        const where = `round ${round}: ADD killed at ${kill.delay} us from ${kill.from} (seed ${seed})`;
        const add = addChain(fixture, kill.environment);
        if (isKilled(add)) {
          kills++;
          tally(left, leftByKill(fixture));
        } else {
          expect(add.status, `${where}: ADD ran to the end: ${add.stdout || add.stderr}`).toBe(0);
          completed++;
        }
        // A failed ADD leaves the runtime no cached result; a complete one is given back to DEL.
        const del = delChain(fixture, isKilled(add) ? undefined : add.output);
        expect(del.status, `${where}: the chain's DEL: ${del.stdout || del.stderr}`).toBe(0);
        expectNothingLeft(fixture, before, where);
        await yieldToVitest();
      }
      console.log(
        `vcnet-cni ${model} ADD kill loop: ${kills} ADD kills, ${completed} ADDs ran to the end; the kills left ${describeTally(left)}`,
      );
      const last = addChain(fixture);
      expect(last.status, `the last ADD: ${last.stdout || last.stderr}`).toBe(0);
      expect(delChain(fixture, last.output).status).toBe(0);
      expectNothingLeft(fixture, before, 'the last ADD and DEL');
    }, 600_000);

    it("DEL killed after each change of its detach in turn, each followed by the runtime's retry of the chain's DEL: nothing left", async () => {
      const fixture = chainFixture(model);
      const podBefore = fingerprint(fixture.pod);
      // One complete ADD and DEL that lists the changes of the detach (and makes the bridge, which stays).
      const measuringAdd = addChain(fixture);
      expect(measuringAdd.status, measuringAdd.stdout || measuringAdd.stderr).toBe(0);
      const measuringDel = delChain(fixture, measuringAdd.output, killAtChange('detach', 'report'));
      expect(measuringDel.status, measuringDel.stdout || measuringDel.stderr).toBe(0);
      const changes = changesReported(measuringDel.stderr);
      console.log(
        `vcnet-cni ${model} DEL: the detach's changes: ${changes.map((what, at) => `${at + 1}. ${what}`).join('; ')}`,
      );
      // At least the netlink batch that undoes the plumbing and the record's removal.
      expect(
        changes.some((what) => what.startsWith('netlink batch (undo)')),
        'the undo batch among the changes',
      ).toBe(true);
      expect(
        changes.some((what) => /state\.json/.test(what)),
        "the record's removal among the changes",
      ).toBe(true);
      const before = { pod: podBefore, node: nodeLinks(fixture.node) };
      expectNothingLeft(fixture, before, 'the measuring ADD and DEL');

      const left: string[] = [];
      for (let change = 0; change <= changes.length; change++) {
        const where = `DEL killed after change ${change} (${change === 0 ? "the detach's start" : changes[change - 1]})`;
        const add = addChain(fixture);
        expect(add.status, `${where}: the ADD: ${add.stdout || add.stderr}`).toBe(0);
        const afterAdd = fingerprint(fixture.pod);
        const del = delChain(fixture, add.output, killAtChange('detach', change));
        expect(del.signal, `${where}: the DEL was not killed: ${del.stdout || del.stderr}`).toBe('SIGKILL');
        expect(del.stderr, where).toContain(`vcnet: killed after change ${change}:`);
        left.push(`${change}: ${leftByKill(fixture, afterAdd)}`);
        // The chain stopped at vcnet-cni: the runtime retries the whole DEL.
        const retry = delChain(fixture, add.output);
        expect(retry.status, `${where}: the retried DEL: ${retry.stdout || retry.stderr}`).toBe(0);
        expectNothingLeft(fixture, before, where);
        await yieldToVitest();
      }
      console.log(`vcnet-cni ${model} DEL killed after each change: what each kill left: ${left.join('; ')}`);
    }, 600_000);

    it(`DEL: ${KILLS_PER_OPERATION} kills, each followed by the runtime's retry of the chain's DEL: nothing left`, async () => {
      const fixture = chainFixture(model);
      const podBefore = fingerprint(fixture.pod);
      const windows = measure(fixture, 'detach');
      const before = { pod: podBefore, node: nodeLinks(fixture.node) };
      expectNothingLeft(fixture, before, 'the measuring ADD and DEL');

      const seed = Number(process.env.VCNET_KILL_SEED ?? Date.now() % 2 ** 31);
      const next = seededRandom(seed);
      console.log(
        `vcnet-cni ${model} DEL kill loop: seed ${seed}, window ${windows.window} us from load to exit, ${windows.operationAt} us to the detach's start`,
      );
      let kills = 0;
      let completed = 0;
      const left = new Map<string, number>();
      for (let round = 0; kills < KILLS_PER_OPERATION; round++) {
        expect(round, 'too few runs were killed: the window is wrong').toBeLessThan(KILLS_PER_OPERATION * 4);
        const kill = killPoint(next, 'detach', windows);
        const where = `round ${round}: DEL killed at ${kill.delay} us from ${kill.from} (seed ${seed})`;
        const add = addChain(fixture);
        expect(add.status, `${where}: the ADD: ${add.stdout || add.stderr}`).toBe(0);
        const afterAdd = fingerprint(fixture.pod);
        const del = delChain(fixture, add.output, kill.environment);
        if (isKilled(del)) {
          kills++;
          tally(left, leftByKill(fixture, afterAdd));
          // The chain stopped at vcnet-cni: the runtime retries the whole DEL.
          const retry = delChain(fixture, add.output);
          expect(retry.status, `${where}: the retried DEL: ${retry.stdout || retry.stderr}`).toBe(0);
        } else {
          expect(del.status, `${where}: DEL ran to the end: ${del.stdout || del.stderr}`).toBe(0);
          completed++;
        }
        expectNothingLeft(fixture, before, where);
        await yieldToVitest();
      }
      console.log(
        `vcnet-cni ${model} DEL kill loop: ${kills} DEL kills, ${completed} DELs ran to the end; the kills left ${describeTally(left)}`,
      );
    }, 600_000);
  },
);
