/**
 * NamespaceWatcher and `vcnet watch` against real kernel events in a throwaway namespace.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { type NamespaceChange, NamespaceWatcher } from '../../../src/network/namespace-watcher.js';
import { type WatchSummary, watchSandbox } from '../../../src/sandbox/sandbox-watch.js';
import { vcnet, vcnetAsync } from '../../helpers/cli.js';
import { cleanupNamespaces, makeNamespace } from '../../helpers/namespace.js';
import { fingerprint, makePod } from '../../helpers/pod.js';

async function until(condition: () => boolean, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

const stops: Array<() => unknown> = [];
let stateDir: string | undefined;
afterEach(async () => {
  for (const stop of stops.splice(0)) await stop();
  cleanupNamespaces();
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
});

describe('NamespaceWatcher', () => {
  it('reports added, changed and removed interfaces, ignores vcnet taps, and debounces bursts', async () => {
    const namespace = makeNamespace('watch');
    const changes: NamespaceChange[] = [];
    const watcher = await NamespaceWatcher.start(namespace.path, {
      debounceMs: 100,
      onChange: (change) => void changes.push(change),
    });
    stops.push(() => watcher.stop());

    namespace.exec('ip', ['link', 'add', 'eth3', 'type', 'veth', 'peer', 'name', 'peer3']);
    await until(
      () => changes.some((change) => change.addedInterfaces.some((info) => info.link.name === 'eth3')),
      'eth3 added',
    );

    namespace.exec('ip', ['link', 'set', 'eth3', 'up']);
    namespace.exec('ip', ['addr', 'add', '10.33.0.2/24', 'dev', 'eth3']);
    await until(
      () =>
        changes.some((change) =>
          change.changedInterfaces.some((info) => info.addresses.some((address) => address.address === '10.33.0.2')),
        ),
      'address change',
    );

    namespace.exec('ip', ['tuntap', 'add', 'dev', 'tap0_kata', 'mode', 'tap']);
    namespace.exec('ip', ['link', 'del', 'eth3']);
    await until(() => changes.some((change) => change.removedInterfaces.includes('eth3')), 'eth3 removed');
    expect(changes.flatMap((change) => change.addedInterfaces.map((info) => info.link.name))).not.toContain(
      'tap0_kata',
    );

    // A burst of 100 link events becomes a handful of change sets, and the last view is right.
    const before = changes.length;
    const commands = Array.from({ length: 50 }, (_, i) => `link add b${i} type veth peer name c${i}`).join('\n');
    namespace.exec('sh', ['-c', `printf '%s\\n' '${commands.replaceAll('\n', "' '")}' | ip -batch -`]);
    await until(() => changes.slice(before).flatMap((change) => change.addedInterfaces).length >= 100, 'the burst');
    expect(changes.length - before).toBeLessThan(20);
    watcher.stop();
    namespace.exec('ip', ['link', 'add', 'late0', 'type', 'veth', 'peer', 'name', 'late1']);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(changes.flatMap((change) => change.addedInterfaces.map((info) => info.link.name))).not.toContain('late0');
  });
});

describe('vcnet watch', () => {
  it('attaches a new pod interface, forgets a deleted one, and detach leaves the namespace as it was', async () => {
    stateDir = mkdtempSync(join(tmpdir(), 'vcnet-watch-'));
    const { pod } = makePod();
    const before = fingerprint(pod);
    expect(vcnet(['attach', '--sandbox', 'w1', '--netns', pod.path, '--state-dir', stateDir]).status).toBe(0);
    const applied: WatchSummary[] = [];
    const watching = await watchSandbox('w1', {
      stateDirectory: stateDir,
      debounceMs: 100,
      onApplied: (summary) => applied.push(summary),
    });
    stops.push(() => watching.stop());

    pod.exec('ip', ['link', 'add', 'eth8', 'type', 'veth', 'peer', 'name', 'peer8']);
    await until(() => applied.some((summary) => summary.added.includes('eth8')), 'eth8 attached');
    expect(pod.exec('ip', ['link', 'show'])).toContain('tap1_kata');
    expect(
      JSON.parse(vcnet(['list-ifaces', 'w1', '--state-dir', stateDir, '--json']).stdout).map(
        (entry: { name: string }) => entry.name,
      ),
    ).toContain('eth8');

    pod.exec('ip', ['addr', 'add', '10.88.0.2/24', 'dev', 'eth8']);
    await until(() => applied.some((summary) => summary.updated.includes('eth8')), 'eth8 updated');
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
    await until(() => run.output().stdout.includes('"eth9"'), 'eth9 in the watch output');
    run.child.kill('SIGTERM');
    expect((await run.done).status).toBe(0);
    pod.exec('ip', ['link', 'del', 'eth9']);

    expect(vcnet(['detach', '--sandbox', 'w1', '--state-dir', stateDir]).status).toBe(0);
    expect(fingerprint(pod)).toEqual(before);
  });
});
