/**
 * Another tool's u32 filter at vcnet's priority (49152) in another chain of the pod link's ingress
 * qdisc, added while attached. u32 keeps one set of hash tables per qdisc and lists them by priority
 * whatever the chain, so a dump of chain 0 shows the other tool's node (in its own hash table) inside
 * vcnet's filter. Detach, and gc with the record lost (the tap an orphan, or deleted by hand), must
 * still take vcnet's filter away whole and leave the other tool's.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { stateDirectoryPerTest, vcnet } from '../../helpers/cli.js';
import { attachThenDetach } from '../../helpers/node-snapshot.js';
import { makePod } from '../../helpers/pod.js';

const stateDirectory = stateDirectoryPerTest('vcnet-others-u32-chain-');

interface GcReport {
  removed: Array<{ kind: string; namespacePath: string; name: string; detail: string }>;
  unclaimed: Array<{ namespacePath: string; links: string[]; filters?: string[] }>;
}

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
  // The tap an orphan (gc removes it with its redirect), or deleted by hand (its redirect then names
  // no device, ifindex 0): either way vcnet's redirect drops every frame on eth0 until gc removes it.
  it.each([
    ['an orphan tap', 'redirects to orphan tap0_kata'],
    ['a tap deleted by hand', 'redirects to a device that no longer exists (every frame it matches is dropped)'],
  ])(
    "gc with the record lost removes the redirect to %s and leaves the other tool's chain-1 filter",
    (_case, detail) => {
      const { pod, node } = makePod();
      pod.exec('ip', ['link', 'add', 'mon0', 'type', 'ifb']);
      const state = stateDirectory();
      const registry = { VCNET_STATE_REGISTRY: join(state, 'registry') };
      const attached = vcnet(['attach', '--sandbox', 'lost', '--netns', pod.path, '--state-dir', state], registry);
      expect(attached.status, attached.stderr).toBe(0);
      pod.exec('tc', [
        ...['filter', 'add', 'dev', 'eth0', 'ingress', 'chain', '1', 'prio', '49152', 'protocol', 'all'],
        ...['u32', 'match', 'ip', 'dst', '10.9.9.9/32', 'action', 'mirred', 'egress', 'mirror', 'dev', 'mon0'],
      ]);
      if (detail.includes('no longer exists')) pod.exec('ip', ['link', 'del', 'tap0_kata']);
      rmSync(join(state, 'lost'), { recursive: true });
      // A gc that does not name the namespace lists the redirect (or the orphan tap it goes with).
      const listed = JSON.parse(vcnet(['gc', '--dry-run', '--json'], registry).stdout) as GcReport;
      expect(listed.unclaimed.find((entry) => entry.namespacePath === pod.path)).toEqual({
        namespacePath: pod.path,
        ...(detail.includes('orphan')
          ? { links: ['tap0_kata'] }
          : {
              links: [],
              filters: [
                'eth0 ingress prio 49152 (a redirect to a device that no longer exists: it drops what arrives on eth0)',
              ],
            }),
      });
      const collected = vcnet(['gc', '--json', '--netns', pod.path, '--state-dir', state], registry);
      expect(collected.status, collected.stderr).toBe(0);
      const removed = (JSON.parse(collected.stdout) as GcReport).removed.filter((item) => item.kind === 'filter');
      expect(removed).toEqual([
        { kind: 'filter', namespacePath: pod.path, name: 'eth0', detail: `prio 49152 ${detail}` },
      ]);
      expect(pod.exec('ip', ['link', 'show'])).not.toContain('tap0_kata');
      const left = pod.tcJson<TcFilter[]>('filter', 'show', 'dev', 'eth0', 'ingress');
      // Before the fix (orphan tap): the tap went and its redirect stayed (to device *), dropping every frame.
      expect(JSON.stringify(left)).toContain('mon0');
      expect(left.filter((filter) => (filter.chain ?? 0) === 0)).toEqual([]);
      expect(pod.exec('tc', 'qdisc show dev eth0 ingress'.split(' '))).toContain('qdisc ingress ffff:');
      node.exec('ping', ['-c', '1', '-W', '2', '10.200.0.2']);
    },
  );
});
