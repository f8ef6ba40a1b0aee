/**
 * Two other tools' u32 filters at vcnet's priority (49152) on the pod link's ingress before attach:
 * one in chain 0 (protocol ip) and one in chain 1 (protocol all), each mirroring to an ifb of its
 * own. vcnet's redirect cannot join chain 0's u32 (another protocol there), so it takes the next free
 * priority; detach, gc after an attach killed at any step, and gc with the record lost must each take
 * away vcnet's filter alone and leave the namespace exactly as it was, the two filters with their
 * mirrors and the ingress qdisc they are in.
 */
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { killAtStep, stateDirectoryPerTest, vcnet } from '../../helpers/cli.js';
import type { TestNamespace } from '../../helpers/namespace.js';
import { fingerprint, makePod } from '../../helpers/pod.js';

const stateDirectory = stateDirectoryPerTest('vcnet-others-u32-before-');

interface GcReport {
  removed: Array<{ kind: string; namespacePath: string; name: string; detail: string }>;
}

type TcFilter = {
  chain?: number;
  pref: number;
  protocol: string;
  options?: { actions?: Array<{ mirred_action?: string; to_dev?: string }> };
};

/** The two other tools' filters, then the pod's fingerprint: what every case must come back to. */
function stagedPod() {
  const { pod, node } = makePod();
  for (const ifb of ['mon0', 'mon1']) pod.exec('ip', ['link', 'add', ifb, 'type', 'ifb']);
  pod.exec('tc', 'qdisc add dev eth0 ingress'.split(' '));
  pod.exec(
    'tc',
    'filter add dev eth0 ingress chain 0 prio 49152 protocol ip u32 match ip dst 10.9.9.9/32 action mirred egress mirror dev mon0'.split(
      ' ',
    ),
  );
  pod.exec(
    'tc',
    'filter add dev eth0 ingress chain 1 prio 49152 protocol all u32 match ip dst 10.8.8.8/32 action mirred egress mirror dev mon1'.split(
      ' ',
    ),
  );
  return { pod, node, before: fingerprint(pod) };
}

/** "chain/prio/protocol → mirror to": each mirror the ingress holds, to check nothing but vcnet's moved. */
function mirrors(pod: TestNamespace): string[] {
  return pod
    .tcJson<TcFilter[]>('filter', 'show', 'dev', 'eth0', 'ingress')
    .flatMap((filter) =>
      (filter.options?.actions ?? []).map(
        (action) => `${filter.chain ?? 0}/${filter.pref}/${filter.protocol} ${action.mirred_action} ${action.to_dev}`,
      ),
    )
    .sort();
}

/** Where vcnet's redirect to tap0_kata is: "chain/prio/protocol". */
function vcnetRedirects(pod: TestNamespace): string[] {
  return mirrors(pod).filter((entry) => entry.endsWith(' redirect tap0_kata'));
}

describe("two other tools' u32 filters at vcnet's priority before attach, in chains 0 and 1", () => {
  it('attach goes to the next free priority, and detach leaves the namespace exactly as it was', () => {
    const { pod, before } = stagedPod();
    const theirs = mirrors(pod);
    // The kernel dumps each chain's filter with every hash table of the priority (u32 shares them
    // per qdisc): each mirror shows twice per chain.
    expect(theirs).toHaveLength(4);
    const state = ['--state-dir', stateDirectory()];
    const attached = vcnet(['attach', '--sandbox', 'u', '--netns', pod.path, ...state]);
    expect(attached.status, attached.stderr).toBe(0);
    expect(vcnetRedirects(pod)).toEqual(['0/49153/all redirect tap0_kata']);
    expect(mirrors(pod).filter((entry) => !entry.endsWith('tap0_kata'))).toEqual(theirs);
    const detached = vcnet(['detach', '--sandbox', 'u', ...state]);
    expect(detached.status, detached.stderr).toBe(0);
    expect(fingerprint(pod)).toEqual(before);
  });

  it('an attach killed at any step, then gc alone, leaves the namespace exactly as it was', async () => {
    const { pod, before } = stagedPod();
    const state = join(stateDirectory(), 'state');
    const args = ['attach', '--sandbox', 'k', '--netns', pod.path, '--state-dir', state];
    let killed = 0;
    for (let position = 0; ; position++) {
      const paused = await killAtStep(args, position);
      if (!paused) break;
      killed++;
      const collected = vcnet(['gc', '--netns', pod.path, '--state-dir', state]);
      expect(collected.status, `gc after kill at step ${position}: ${collected.stderr}`).toBe(0);
      expect(fingerprint(pod), `namespace after kill at step ${position} and gc`).toEqual(before);
      expect(existsSync(join(state, 'k', 'state.json')), `record after kill at step ${position} and gc`).toBe(false);
    }
    expect(killed).toBeGreaterThan(3);
    // The last run finished: its redirect went beside theirs, and its detach takes it away.
    expect(vcnetRedirects(pod)).toEqual(['0/49153/all redirect tap0_kata']);
    expect(vcnet(['detach', '--sandbox', 'k', '--state-dir', state]).status).toBe(0);
    expect(fingerprint(pod)).toEqual(before);
  }, 300_000);

  // The tap an orphan (gc removes it with its redirect), or deleted by hand (its redirect then names
  // no device, ifindex 0, and drops every frame that reaches prio 49153).
  it.each([
    ['an orphan tap', 'prio 49153 redirects to orphan tap0_kata'],
    [
      'a tap deleted by hand',
      'prio 49153 redirects to a device that no longer exists (every frame it matches is dropped)',
    ],
  ])('gc with the record lost removes the redirect to %s and leaves the namespace as it was', (_case, detail) => {
    const { pod, node, before } = stagedPod();
    const state = stateDirectory();
    const registry = { VCNET_STATE_REGISTRY: join(state, 'registry') };
    const attached = vcnet(['attach', '--sandbox', 'lost', '--netns', pod.path, '--state-dir', state], registry);
    expect(attached.status, attached.stderr).toBe(0);
    if (detail.includes('no longer exists')) pod.exec('ip', ['link', 'del', 'tap0_kata']);
    rmSync(join(state, 'lost'), { recursive: true });
    const collected = vcnet(['gc', '--json', '--netns', pod.path, '--state-dir', state], registry);
    expect(collected.status, collected.stderr).toBe(0);
    const removed = (JSON.parse(collected.stdout) as GcReport).removed.filter((item) => item.kind === 'filter');
    expect(removed).toEqual([{ kind: 'filter', namespacePath: pod.path, name: 'eth0', detail }]);
    expect(fingerprint(pod)).toEqual(before);
    node.exec('ip', ['neigh', 'flush', 'to', '10.200.0.2']);
    node.exec('ping', ['-c', '1', '-W', '2', '10.200.0.2']);
  });
});
