/**
 * NamespaceWatcher and `vcnet watch` against real kernel events in throwaway namespaces. Everything
 * the tests change is inside namespaces they made; afterEach stops the watchers and deletes them.
 */
import { spawn } from 'node:child_process';
import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  type NamespaceChange,
  NamespaceWatcher,
  type NamespaceWatcherOptions,
} from '../../../src/network/namespace-watcher.js';
import type { NetworkInfo } from '../../../src/network/network-info.js';
import { type WatchSummary, watchSandbox } from '../../../src/sandbox/sandbox-watch.js';
import { cleanupAfterEach } from '../../helpers/cleanup.js';
import { vcnet, vcnetAsync } from '../../helpers/cli.js';
import { kernelSupportsLinkKind, makeNamespace, type TestNamespace } from '../../helpers/namespace.js';
import { fingerprint, makePod } from '../../helpers/pod.js';
import { until } from '../../helpers/until.js';

/** Waits for a condition, failing with `what` after a generous deadline (no timing is asserted). */
const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const cleanup = cleanupAfterEach();
/** The state directory of the running test. */
let stateDir = '';

/** Runs iproute2 commands in one `ip -batch` process inside the namespace: microseconds apart. */
function batch(namespace: TestNamespace, commands: string[]): void {
  const directory = cleanup.directory('vcnet-watch-batch-');
  const file = join(directory, 'commands');
  writeFileSync(file, `${commands.join('\n')}\n`);
  namespace.exec('ip', ['-batch', file]);
}

async function watch(namespace: TestNamespace, options: Partial<NamespaceWatcherOptions> = {}) {
  const changes: NamespaceChange[] = [];
  const errors: Error[] = [];
  const watcher = await NamespaceWatcher.start(namespace.path, {
    onChange: (change) => void changes.push(change),
    onError: (error) => void errors.push(error),
    ...options,
  });
  cleanup.defer(() => watcher.stop());
  return { watcher, changes, errors };
}

const added = (changes: NamespaceChange[]) => changes.flatMap((change) => change.addedInterfaces);
const changed = (changes: NamespaceChange[]) => changes.flatMap((change) => change.changedInterfaces);
const removed = (changes: NamespaceChange[]) => changes.flatMap((change) => change.removedInterfaces);
const named = (list: NetworkInfo[], name: string) => list.filter((info) => info.link.name === name);
const mentioned = (changes: NamespaceChange[]) => [
  ...added(changes).map((info) => info.link.name),
  ...changed(changes).map((info) => info.link.name),
  ...removed(changes),
];

/** Link names in the namespace as iproute2 lists them, loopback left out. */
function linkNames(namespace: TestNamespace): string[] {
  return namespace
    .ipJson<Array<{ ifname: string }>>('link', 'show')
    .map((link) => link.ifname)
    .filter((name) => name !== 'lo')
    .sort();
}

describe('NamespaceWatcher', () => {
  it('reports a new veth once, with the addresses it got, and its removal', async () => {
    const namespace = makeNamespace('watch');
    const { changes, errors } = await watch(namespace);

    batch(namespace, [
      'link add eth3 type veth peer name peer3',
      'addr add 10.33.0.2/24 dev eth3',
      'link set peer3 up',
      'link set eth3 up',
    ]);
    await until(() => named(added(changes), 'eth3').length > 0, 'eth3 added');
    const first = changes.find((change) => named(change.addedInterfaces, 'eth3').length > 0)!;
    expect(named(first.addedInterfaces, 'eth3')[0]!.addresses.map((address) => address.address)).toContain('10.33.0.2');
    expect(named(first.addedInterfaces, 'peer3')).toHaveLength(1);
    expect(first.removedInterfaces).toEqual([]);

    namespace.exec('ip', ['link', 'del', 'eth3']);
    await until(() => removed(changes).includes('eth3'), 'eth3 removed');
    expect(removed(changes)).toContain('peer3');
    expect(named(added(changes), 'eth3')).toHaveLength(1);
    expect(errors).toEqual([]);
  });

  it('reports address, route MTU, link MTU and permanent neighbour changes as changed interfaces', async () => {
    const namespace = makeNamespace('watch');
    batch(namespace, ['link add eth3 type veth peer name peer3', 'link set peer3 up', 'link set eth3 up']);
    const { changes, errors } = await watch(namespace);
    const latest = (predicate: (info: NetworkInfo) => boolean, what: string) =>
      until(() => named(changed(changes), 'eth3').some(predicate), what);

    namespace.exec('ip', ['addr', 'add', '10.33.0.2/24', 'dev', 'eth3']);
    await latest((info) => info.addresses.some((address) => address.address === '10.33.0.2'), 'the address');

    namespace.exec('ip', ['route', 'add', '10.50.0.0/16', 'via', '10.33.0.1', 'dev', 'eth3', 'mtu', '1400']);
    const routeMtu = (info: NetworkInfo, mtu: number) =>
      info.routes.some((route) => route.destination === '10.50.0.0' && route.mtu === mtu);
    await latest((info) => routeMtu(info, 1400), 'the route with MTU 1400');

    namespace.exec('ip', ['route', 'change', '10.50.0.0/16', 'via', '10.33.0.1', 'dev', 'eth3', 'mtu', '1300']);
    await latest((info) => routeMtu(info, 1300), 'the route MTU changed to 1300');

    namespace.exec('ip', ['link', 'set', 'eth3', 'mtu', '1450']);
    await latest((info) => info.link.mtu === 1450, 'the link MTU');

    const neighbour = ['10.33.0.9', 'lladdr', '02:00:00:00:33:09', 'dev', 'eth3', 'nud', 'permanent'];
    namespace.exec('ip', ['neigh', 'add', ...neighbour]);
    await latest((info) => info.neighbours.some((entry) => entry.destination === '10.33.0.9'), 'the neighbour');
    const before = changes.length;
    namespace.exec('ip', ['neigh', 'del', '10.33.0.9', 'dev', 'eth3']);
    await until(
      () =>
        named(changed(changes.slice(before)), 'eth3').some(
          (info) => !info.neighbours.some((entry) => entry.destination === '10.33.0.9'),
        ),
      'the neighbour deleted',
    );

    expect(added(changes)).toEqual([]);
    expect(removed(changes)).toEqual([]);
    expect(errors).toEqual([]);
  });

  it("ignores vcnet's own taps and ifbs", async () => {
    const namespace = makeNamespace('watch');
    const ifb = kernelSupportsLinkKind(namespace, 'ifb');
    if (!ifb.ok) console.log(`namespace-watcher: ifb part left out: ${ifb.reason}`);
    const { changes } = await watch(namespace);

    namespace.exec('ip', ['tuntap', 'add', 'dev', 'tap0_kata', 'mode', 'tap']);
    namespace.exec('ip', ['link', 'set', 'tap0_kata', 'up']);
    if (ifb.ok) namespace.exec('ip', ['link', 'add', 'ifb0_kata', 'type', 'ifb']);
    // A link that is reported marks the point by which the taps' events were handled too.
    namespace.exec('ip', ['link', 'add', 'mark0', 'type', 'veth', 'peer', 'name', 'mark1']);
    await until(() => named(added(changes), 'mark0').length > 0, 'mark0 added');
    namespace.exec('ip', ['link', 'del', 'tap0_kata']);
    if (ifb.ok) namespace.exec('ip', ['link', 'del', 'ifb0_kata']);
    namespace.exec('ip', ['link', 'del', 'mark0']);
    await until(() => removed(changes).includes('mark0'), 'mark0 removed');

    expect(mentioned(changes)).not.toContain('tap0_kata');
    expect(mentioned(changes)).not.toContain('ifb0_kata');
  });

  it('debounces a burst of 50 veths made and deleted into a few changes that add up to the final state', async () => {
    const namespace = makeNamespace('watch');
    namespace.exec('ip', ['link', 'add', 'keep0', 'type', 'veth', 'peer', 'name', 'keep1']);
    const { changes, errors } = await watch(namespace);
    // What the watcher's changes say is there, applied one after another onto the starting view.
    const view = new Set(linkNames(namespace));
    const inconsistencies: string[] = [];
    const applied = { count: 0 };
    const apply = () => {
      for (const change of changes.slice(applied.count)) {
        for (const name of change.removedInterfaces) if (!view.delete(name)) inconsistencies.push(`-${name}`);
        for (const info of change.addedInterfaces) {
          if (view.has(info.link.name)) inconsistencies.push(`+${info.link.name}`);
          view.add(info.link.name);
        }
      }
      applied.count = changes.length;
    };

    // 50 pairs made (100 links), then the first 30 pairs deleted, one link up and down: over 200 events.
    const commands: string[] = [];
    for (let i = 0; i < 50; i++) commands.push(`link add b${i} type veth peer name c${i}`);
    for (let i = 0; i < 50; i++) commands.push(`link set b${i} up`, `link set c${i} up`);
    for (let i = 0; i < 30; i++) commands.push(`link del b${i}`);
    commands.push('link del keep0');
    batch(namespace, commands);
    const final = linkNames(namespace);
    expect(final).toHaveLength(40);

    await until(() => {
      apply();
      return [...view].sort().join(' ') === final.join(' ');
    }, 'the changes to add up to the namespace');
    // Nothing more comes: one more event leads to a diff that finds only it.
    namespace.exec('ip', ['link', 'add', 'last0', 'type', 'veth', 'peer', 'name', 'last1']);
    await until(() => named(added(changes), 'last0').length > 0, 'last0 added');
    apply();
    const last = changes.find((change) => named(change.addedInterfaces, 'last0').length > 0)!;
    expect(last.addedInterfaces.map((info) => info.link.name).sort()).toEqual(['last0', 'last1']);
    expect(last.removedInterfaces).toEqual([]);
    expect(inconsistencies).toEqual([]);

    // Over 200 events, a debounce of 200 ms and reads at least every second: a handful of changes.
    expect(changes.length).toBeLessThanOrEqual(12);
    expect(errors).toEqual([]);
  });

  it('stop() ends the changes and closes its sockets', async () => {
    const namespace = makeNamespace('watch');
    const descriptors = () => readdirSync('/proc/self/fd').length;
    const before = descriptors();
    const { watcher, changes } = await watch(namespace, { debounceMs: 50 });
    expect(descriptors()).toBe(before + 2);
    namespace.exec('ip', ['link', 'add', 'eth3', 'type', 'veth', 'peer', 'name', 'peer3']);
    await until(() => changes.length > 0, 'a change before stop()');

    await watcher.stop();
    expect(descriptors()).toBe(before);
    const seen = changes.length;
    namespace.exec('ip', ['link', 'del', 'eth3']);
    await pause(500);
    expect(changes).toHaveLength(seen);
  });

  it('lets the process exit once stopped, also when stop() is called from onChange', async () => {
    const namespace = makeNamespace('watch');
    const module = pathToFileURL(
      fileURLToPath(new URL('../../../dist/network/namespace-watcher.js', import.meta.url)),
    ).href;
    // No process.exit(): the child ends only if nothing (socket poller, timer) is left open.
    const script = `
      const { NamespaceWatcher } = await import(${JSON.stringify(module)});
      const watcher = await NamespaceWatcher.start(process.argv[1], {
        debounceMs: 50,
        onChange: (change) => {
          console.log('change ' + change.addedInterfaces.map((info) => info.link.name).sort().join(','));
          void watcher.stop();
        },
      });
      console.log('ready');
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script, namespace.path]);
    let output = '';
    child.stdout.on('data', (chunk) => {
      output += chunk;
    });
    child.stderr.on('data', (chunk) => {
      output += chunk;
    });
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    cleanup.defer(() => child.kill('SIGKILL'));
    await until(() => output.includes('ready'), `the child to start (output: ${output})`);
    namespace.exec('ip', ['link', 'add', 'eth3', 'type', 'veth', 'peer', 'name', 'peer3']);
    const code = await Promise.race([exited, pause(20_000).then(() => 'still running')]);
    expect(code, `child output: ${output}`).toBe(0);
    expect(output).toContain('change eth3,peer3');
  });
});

describe('vcnet watch', () => {
  it('keeps the smaller MTU add-iface asked for when the pod link changes (the NIC cannot go above it)', async () => {
    stateDir = cleanup.directory('vcnet-watch-');
    const { pod } = makePod();
    expect(vcnet(['attach', '--sandbox', 'm1', '--netns', pod.path, '--state-dir', stateDir]).status).toBe(0);
    pod.exec('ip', ['link', 'add', 'eth7', 'type', 'veth', 'peer', 'name', 'peer7']);
    pod.exec('ip', ['link', 'set', 'peer7', 'up']);
    pod.exec('ip', ['link', 'set', 'eth7', 'up']);
    const request = join(stateDir, 'add.json');
    writeFileSync(
      request,
      JSON.stringify({ name: 'eth7', mtu: 1400, IPAddresses: [{ address: '10.77.0.2', mask: '24' }] }),
    );
    expect(vcnet(['add-iface', 'm1', request, '--state-dir', stateDir]).status).toBe(0);
    const applied: WatchSummary[] = [];
    const watching = await watchSandbox('m1', {
      stateDirectory: stateDir,
      debounceMs: 100,
      onApplied: (summary) => applied.push(summary),
    });
    cleanup.defer(() => watching.stop());
    pod.exec('ip', ['addr', 'add', '10.77.0.9/24', 'dev', 'eth7']);
    await until(() => applied.some((summary) => summary.updated.includes('eth7')), 'the change of eth7 applied');
    const listed = JSON.parse(vcnet(['list-ifaces', 'm1', '--state-dir', stateDir, '--json']).stdout) as Array<{
      name: string;
      mtu: number;
      IPAddresses: Array<{ address: string }>;
    }>;
    const eth7 = listed.find((entry) => entry.name === 'eth7');
    expect(eth7?.IPAddresses.map((address) => address.address)).toContain('10.77.0.9');
    expect(eth7?.mtu).toBe(1400);
    await watching.stop();
    expect(vcnet(['detach', '--sandbox', 'm1', '--state-dir', stateDir]).status).toBe(0);
  });

  it('follows the pod MTU down and back up, never above the MTU the NIC was plugged with', async () => {
    const directory = cleanup.directory('vcnet-watch-');
    const { pod } = makePod();
    expect(vcnet(['attach', '--sandbox', 'mtu1', '--netns', pod.path, '--state-dir', directory]).status).toBe(0);
    const recordedMtu = () =>
      (
        JSON.parse(vcnet(['list-ifaces', 'mtu1', '--state-dir', directory, '--json']).stdout) as Array<{
          name: string;
          mtu: number;
        }>
      ).find((entry) => entry.name === 'eth0')?.mtu;
    expect(recordedMtu()).toBe(1500);
    const applied: WatchSummary[] = [];
    const watching = await watchSandbox('mtu1', {
      stateDirectory: directory,
      debounceMs: 100,
      onApplied: (summary) => applied.push(summary),
    });
    cleanup.defer(() => watching.stop());
    // Down, further down, back up (once stuck at the lowest), then above the NIC's 1500.
    for (const [set, expected] of [
      [1400, 1400],
      [1300, 1300],
      [1450, 1450],
      [9000, 1500],
    ] as const) {
      const seen = applied.length;
      pod.exec('ip', ['link', 'set', 'eth0', 'mtu', String(set)]);
      await until(() => applied.slice(seen).some((summary) => summary.updated.includes('eth0')), `MTU ${set} applied`);
      expect(recordedMtu(), `pod MTU ${set}`).toBe(expected);
    }
    await watching.stop();
    expect(vcnet(['detach', '--sandbox', 'mtu1', '--state-dir', directory]).status).toBe(0);
  });

  it('attaches a new pod interface, forgets a deleted one, and detach leaves the namespace as it was', async () => {
    stateDir = cleanup.directory('vcnet-watch-');
    const { pod } = makePod();
    const before = fingerprint(pod);
    expect(vcnet(['attach', '--sandbox', 'w1', '--netns', pod.path, '--state-dir', stateDir]).status).toBe(0);
    const applied: WatchSummary[] = [];
    const watching = await watchSandbox('w1', {
      stateDirectory: stateDir,
      debounceMs: 100,
      onApplied: (summary) => applied.push(summary),
    });
    cleanup.defer(() => watching.stop());

    // A link without an address is skipped (as Kata), and attached once it gets one.
    // Skipping it changes nothing, so no summary says so: a change the watch acts on comes after it
    // (eth0's MTU, which its tap takes), and once that is applied eth8 has been read too.
    pod.exec('ip', ['link', 'add', 'eth8', 'type', 'veth', 'peer', 'name', 'peer8']);
    pod.exec('ip', ['link', 'set', 'eth0', 'mtu', '1400']);
    await until(() => applied.some((summary) => summary.updated.includes('eth0')), "eth0's new MTU applied");
    expect(applied.flatMap((summary) => summary.added)).not.toContain('eth8');
    expect(pod.exec('ip', ['link', 'show'])).not.toContain('tap1_kata');
    // As it was, for the fingerprint at the end.
    pod.exec('ip', ['link', 'set', 'eth0', 'mtu', '1500']);

    pod.exec('ip', ['addr', 'add', '10.88.0.2/24', 'dev', 'eth8']);
    await until(() => applied.some((summary) => summary.added.includes('eth8')), 'eth8 attached');
    expect(pod.exec('ip', ['link', 'show'])).toContain('tap1_kata');
    expect(
      JSON.parse(vcnet(['list-ifaces', 'w1', '--state-dir', stateDir, '--json']).stdout).map(
        (entry: { name: string }) => entry.name,
      ),
    ).toContain('eth8');
    const listed = JSON.parse(vcnet(['list-ifaces', 'w1', '--state-dir', stateDir, '--json']).stdout) as Array<{
      name: string;
      IPAddresses: Array<{ address: string }>;
    }>;
    expect(listed.find((entry) => entry.name === 'eth8')?.IPAddresses.map((address) => address.address)).toContain(
      '10.88.0.2',
    );

    pod.exec('ip', ['link', 'del', 'eth8']);
    await until(() => applied.some((summary) => summary.removed.includes('eth8')), 'eth8 removed');
    expect(pod.exec('ip', ['link', 'show'])).not.toContain('tap1_kata');
    await watching.stop();

    // The command itself: runs until SIGTERM, one JSON line per applied change.
    const run = vcnetAsync(['watch', '--sandbox', 'w1', '--state-dir', stateDir, '--debounce', '50']);
    await until(() => run.output().stderr.includes('watching sandbox w1'), 'the watch command');
    pod.exec('ip', ['link', 'add', 'eth9', 'type', 'veth', 'peer', 'name', 'peer9']);
    pod.exec('ip', ['addr', 'add', '10.89.0.2/24', 'dev', 'eth9']);
    await until(() => run.output().stdout.includes('"eth9"'), 'eth9 in the watch output');
    run.child.kill('SIGTERM');
    expect((await run.done).status).toBe(0);
    pod.exec('ip', ['link', 'del', 'eth9']);

    expect(vcnet(['detach', '--sandbox', 'w1', '--state-dir', stateDir]).status).toBe(0);
    expect(fingerprint(pod)).toEqual(before);
  });

  it('attaches each interface of a change on its own: one it cannot attach is reported (a refused one once), never blocking the others', async () => {
    stateDir = cleanup.directory('vcnet-watch-');
    const { pod } = makePod();
    const before = fingerprint(pod);
    expect(vcnet(['attach', '--sandbox', 'w2', '--netns', pod.path, '--state-dir', stateDir]).status).toBe(0);
    const applied: WatchSummary[] = [];
    const watching = await watchSandbox('w2', {
      stateDirectory: stateDir,
      debounceMs: 300,
      onApplied: (summary) => applied.push(summary),
    });
    cleanup.defer(() => watching.stop());
    const failedNames = () => applied.flatMap((summary) => summary.failed.map((failure) => failure.name));

    // In one change: a vxlan with an address (no endpoint type for it) and two veths.
    try {
      pod.exec('ip', ['link', 'add', 'vx5', 'type', 'vxlan', 'id', '55', 'dstport', '4789', 'dev', 'eth0']);
    } catch (error) {
      console.log(
        `skip: this kernel cannot create vxlan links: ${String((error as { stderr?: string }).stderr ?? error).trim()}`,
      );
      return;
    }
    const batch = [
      'addr add 10.55.0.1/24 dev vx5',
      'link add eth5 type veth peer name peer5',
      'addr add 10.85.0.2/24 dev eth5',
      'link add eth6 type veth peer name peer6',
      'addr add 10.86.0.2/24 dev eth6',
    ];
    pod.exec('sh', ['-c', `printf '%s\\n' ${batch.map((line) => `'${line}'`).join(' ')} | ip -batch -`]);
    await until(
      () => ['eth5', 'eth6'].every((name) => applied.some((summary) => summary.added.includes(name))),
      'eth5 and eth6 attached',
    );
    expect(failedNames()).toContain('vx5');
    expect(applied.find((summary) => summary.failed.length > 0)?.failed[0]?.message).toContain(
      'unsupported network interface vx5: kind vxlan',
    );
    expect(applied.find((summary) => summary.failed.length > 0)?.failed[0]?.code).toBe('VCNET_UNSUPPORTED_INTERFACE');
    // A vxlan is refused for what it is: reported once, with its own hint (not add-iface's), and named by the handle.
    const refusal = applied.find((summary) => summary.failed.length > 0)?.failed[0];
    expect(refusal?.refused).toBe(true);
    expect(refusal?.hint).toContain("remove vx5's addresses or move it out of the pod namespace");
    expect([...watching.refusals.keys()]).toEqual(['vx5']);

    // The next change does not try vx5 again, nor report it; once vx5 is gone nothing is left of it.
    const seen = applied.length;
    pod.exec('ip', ['addr', 'add', '10.85.0.3/24', 'dev', 'eth5']);
    await until(
      () => applied.slice(seen).some((summary) => summary.updated.includes('eth5')),
      'the next change applied',
    );
    expect(applied.slice(seen).flatMap((summary) => summary.failed)).toEqual([]);
    expect(failedNames()).toEqual(['vx5']);
    pod.exec('ip', ['link', 'del', 'vx5']);
    const afterDelete = applied.length;
    pod.exec('ip', ['addr', 'add', '10.86.0.3/24', 'dev', 'eth6']);
    await until(
      () => applied.slice(afterDelete).some((summary) => summary.updated.includes('eth6')),
      'the change after vx5 went',
    );
    expect(applied.slice(afterDelete).flatMap((summary) => summary.failed)).toEqual([]);
    expect(watching.refusals.size).toBe(0);
    await watching.stop();

    // The command: the refused vxlan is one JSON line and one warning, a later change that does nothing
    // else prints no line for it, and the closing words name it with its own hint, never add-iface.
    const run = vcnetAsync(['watch', '--sandbox', 'w2', '--state-dir', stateDir, '--debounce', '100']);
    await until(() => run.output().stderr.includes('watching sandbox w2'), 'the watch command');
    pod.exec('ip', ['link', 'add', 'vx6', 'type', 'vxlan', 'id', '66', 'dstport', '4789', 'dev', 'eth0']);
    pod.exec('ip', ['addr', 'add', '10.66.0.1/24', 'dev', 'vx6']);
    await until(() => run.output().stdout.includes('"vx6"'), 'vx6 in the watch output');
    pod.exec('ip', ['link', 'add', 'eth7', 'type', 'veth', 'peer', 'name', 'peer7']);
    pod.exec('ip', ['addr', 'add', '10.87.0.2/24', 'dev', 'eth7']);
    await until(() => run.output().stdout.includes('"eth7"'), 'eth7 in the watch output');
    pod.exec('ip', ['addr', 'add', '10.66.0.2/24', 'dev', 'vx6']);
    pod.exec('ip', ['addr', 'add', '10.87.0.3/24', 'dev', 'eth7']);
    await until(() => run.output().stdout.includes('"updated":["eth7"]'), 'eth7 updated');
    run.child.kill('SIGINT');
    const done = await run.done;
    expect(done.status, done.stderr).toBe(0);
    const lines = done.stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as WatchSummary);
    expect(lines.flatMap((line) => line.failed)).toEqual([
      expect.objectContaining({ name: 'vx6', code: 'VCNET_UNSUPPORTED_INTERFACE', refused: true }),
    ]);
    for (const line of lines)
      expect(line.added.length + line.removed.length + line.updated.length + line.failed.length).toBeGreaterThan(0);
    expect(done.stderr.match(/did not attach vx6, which vcnet refuses/g)).toHaveLength(1);
    expect(done.stderr).toContain(
      'vcnet: watch ended without attaching vx6, which vcnet refuses (unsupported network interface vx6: kind vxlan): vcnet connects veth',
    );
    expect(done.stderr).not.toContain('add-iface w2 FILE` attaches');
    pod.exec('ip', ['link', 'del', 'vx6']);
    pod.exec('ip', ['link', 'del', 'eth7']);

    pod.exec('ip', ['link', 'del', 'eth5']);
    pod.exec('ip', ['link', 'del', 'eth6']);
    expect(vcnet(['detach', '--sandbox', 'w2', '--state-dir', stateDir]).status).toBe(0);
    expect(fingerprint(pod)).toEqual(before);
  });

  it('names a link it leaves alone at start that vcnet refuses with its own refusal, never with add-iface', async () => {
    stateDir = cleanup.directory('vcnet-watch-');
    const { pod } = makePod();
    const before = fingerprint(pod);
    expect(vcnet(['attach', '--sandbox', 'w3', '--netns', pod.path, '--state-dir', stateDir]).status).toBe(0);
    // Made with addresses after attach, before watch starts: both are left alone.
    try {
      pod.exec('ip', ['link', 'add', 'vx7', 'type', 'vxlan', 'id', '77', 'dstport', '4789', 'dev', 'eth0']);
    } catch (error) {
      console.log(
        `skip: this kernel cannot create vxlan links: ${String((error as { stderr?: string }).stderr ?? error).trim()}`,
      );
      return;
    }
    pod.exec('ip', ['addr', 'add', '10.77.0.1/24', 'dev', 'vx7']);
    pod.exec('ip', ['link', 'add', 'eth7', 'type', 'veth', 'peer', 'name', 'peer7']);
    pod.exec('ip', ['addr', 'add', '10.87.0.2/24', 'dev', 'eth7']);

    const run = vcnetAsync(['watch', '--sandbox', 'w3', '--state-dir', stateDir, '--debounce', '50']);
    await until(() => run.output().stderr.includes('watching sandbox w3'), 'the watch command');
    run.child.kill('SIGINT');
    const done = await run.done;
    expect(done.status, done.stderr).toBe(0);
    expect(done.stderr).toContain(
      'vcnet: watch leaves eth7 alone: it had an address and was not attached when watch started (`vcnet add-iface w3 FILE` attaches one)\n',
    );
    expect(done.stderr).toContain(
      'vcnet: watch leaves vx7 alone, which vcnet refuses (unsupported network interface vx7: kind vxlan): vcnet connects veth',
    );
    expect(done.stderr).toContain("remove vx7's addresses or move it out of the pod namespace");
    expect(done.stderr).not.toMatch(/leaves [^\n]*vx7[^\n]*add-iface w3 FILE` attaches/);
    // Nothing was attached: the JSON lines do not name vx7 as failed either (it was never tried).
    expect(done.stdout).not.toContain('"vx7"');

    pod.exec('ip', ['link', 'del', 'vx7']);
    pod.exec('ip', ['link', 'del', 'eth7']);
    expect(vcnet(['detach', '--sandbox', 'w3', '--state-dir', stateDir]).status).toBe(0);
    expect(fingerprint(pod)).toEqual(before);
  });
});
