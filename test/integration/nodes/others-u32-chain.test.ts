/**
 * Another tool's u32 filter at vcnet's priority (49152) in another chain of the pod link's ingress
 * qdisc, added while attached. u32 keeps one set of hash tables per qdisc and lists them by priority
 * whatever the chain, so a dump of chain 0 shows the other tool's node (in its own hash table) inside
 * vcnet's filter. Detach, and gc with the record lost, must still take vcnet's filter away whole
 * and leave the other tool's.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { stateDirectoryPerTest, vcnet } from '../../helpers/cli.js';
import { attachThenDetach } from '../../helpers/node-snapshot.js';
import { makePod } from '../../helpers/pod.js';

const stateDirectory = stateDirectoryPerTest('vcnet-others-u32-chain-');

type TcFilter = { chain?: number; pref?: number; kind?: string; options?: Record<string, unknown> };

describe("another tool's u32 at vcnet's priority in chain 1", () => {
  it("detach leaves only the other tool's chain-1 filter, none of vcnet's in chain 0", () => {
    const { pod } = makePod();
    pod.exec('ip', ['link', 'add', 'mon0', 'type', 'ifb']);
    const filters = () => pod.tcJson<TcFilter[]>('filter', 'show', 'dev', 'eth0', 'ingress');
    const run = attachThenDetach(pod, 'tcfilter', stateDirectory(), {
      between: () => {
        pod.exec('tc', [
          ...['filter', 'add', 'dev', 'eth0', 'ingress', 'chain', '1', 'prio', '49152', 'protocol', 'all'],
          ...['u32', 'match', 'ip', 'dst', '10.9.9.9/32', 'action', 'mirred', 'egress', 'mirror', 'dev', 'mon0'],
        ]);
      },
    });
    expect(run.attached.status, run.attached.stderr).toBe(0);
    expect(run.detached.status, run.detached.stderr).toBe(0);
    const left = filters();
    // The other tool's filter stays, with its mirror.
    expect(JSON.stringify(left)).toContain('mon0');
    // vcnet's u32 in chain 0 is gone, head and hash table too: `tc filter show` lists nothing there.
    expect(left.filter((filter) => (filter.chain ?? 0) === 0)).toEqual([]);
  });
  it("gc with the record lost removes the orphan tap's redirect and leaves the other tool's chain-1 filter", () => {
    const { pod } = makePod();
    pod.exec('ip', ['link', 'add', 'mon0', 'type', 'ifb']);
    const state = stateDirectory();
    const registry = { VCNET_STATE_REGISTRY: join(state, 'registry') };
    const attached = vcnet(['attach', '--sandbox', 'lost', '--netns', pod.path, '--state-dir', state], registry);
    expect(attached.status, attached.stderr).toBe(0);
    pod.exec('tc', [
      ...['filter', 'add', 'dev', 'eth0', 'ingress', 'chain', '1', 'prio', '49152', 'protocol', 'all'],
      ...['u32', 'match', 'ip', 'dst', '10.9.9.9/32', 'action', 'mirred', 'egress', 'mirror', 'dev', 'mon0'],
    ]);
    rmSync(join(state, 'lost'), { recursive: true });
    const collected = vcnet(['gc', '--json', '--netns', pod.path, '--state-dir', state], registry);
    expect(collected.status, collected.stderr).toBe(0);
    expect(pod.exec('ip', ['link', 'show'])).not.toContain('tap0_kata');
    const left = pod.tcJson<TcFilter[]>('filter', 'show', 'dev', 'eth0', 'ingress');
    // Before the fix: the orphan tap went and its redirect stayed (to device *), dropping every frame.
    expect(JSON.stringify(left)).toContain('mon0');
    expect(left.filter((filter) => (filter.chain ?? 0) === 0)).toEqual([]);
    expect(pod.exec('tc', 'qdisc show dev eth0 ingress'.split(' '))).toContain('qdisc ingress ffff:');
  });
});
