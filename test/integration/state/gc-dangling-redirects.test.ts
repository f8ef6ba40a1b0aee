/**
 * gc and vcnet's redirect left behind to a tap that is gone (deleted by hand, or by a detach or an
 * attach cut short, with its record): the kernel keeps the u32 match-all with its mirred redirect
 * and dumps its target as ifindex 0; every frame arriving on the pod link is dropped. No orphan link
 * is left for gc to start from. A gc that does not name the namespace lists the filter as unclaimed;
 * `gc --netns` removes it (it can only let traffic through again), with the ingress qdisc it leaves empty.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { stateDirectoryPerTest, vcnet } from '../../helpers/cli.js';
import { fingerprint, makePod } from '../../helpers/pod.js';

const stateDirectory = stateDirectoryPerTest('vcnet-gc-dangling-');
const registry = () => ({ VCNET_STATE_REGISTRY: join(stateDirectory(), 'registry') });

interface GcReport {
  removed: Array<{ kind: string; namespacePath: string; name: string; detail: string }>;
  unclaimed: Array<{ namespacePath: string; links: string[]; filters?: string[] }>;
}

describe('gc and a redirect to a tap that no longer exists', () => {
  it('lists it as unclaimed when the namespace is not named, and removes it (and the emptied ingress qdisc) when it is', () => {
    const { node, pod } = makePod();
    const before = fingerprint(pod);
    const state = stateDirectory();
    const attached = vcnet(['attach', '--sandbox', 'gone', '--netns', pod.path, '--state-dir', state], registry());
    expect(attached.status, attached.stderr).toBe(0);
    // The tap goes by hand, and the record with it: the redirect stays, pointed at nothing.
    pod.exec('ip', ['link', 'del', 'tap0_kata']);
    rmSync(join(state, 'gone'), { recursive: true });
    expect(pod.exec('tc', ['filter', 'show', 'dev', 'eth0', 'ingress'])).toContain('Egress Redirect to device *');
    // The pod's ingress is dropped: the node cannot reach it.
    expect(() => node.exec('ping', ['-c', '1', '-W', '1', '10.200.0.2'])).toThrow();

    // --dry-run: a whole-node gc sees other tests' namespaces too, and must not change them.
    const whole = vcnet(['gc', '--dry-run', '--json'], registry());
    expect(whole.status, whole.stderr).toBe(0);
    const listed = JSON.parse(whole.stdout) as GcReport;
    expect(listed.removed.filter((item) => item.namespacePath === pod.path)).toEqual([]);
    expect(listed.unclaimed).toContainEqual({
      namespacePath: pod.path,
      links: [],
      filters: [
        'eth0 ingress prio 49152 (a redirect to a device that no longer exists: it drops what arrives on eth0)',
      ],
    });
    const human = vcnet(['gc', '--dry-run'], registry());
    expect(human.stderr).toContain(
      `gc left the filter eth0 ingress prio 49152 (a redirect to a device that no longer exists: it drops what arrives on eth0) in ${pod.path}`,
    );
    expect(human.stderr).toContain(`\`vcnet gc --netns ${pod.path}\` removes them`);

    const scoped = vcnet(['gc', '--json', '--netns', pod.path, '--state-dir', state], registry());
    expect(scoped.status, scoped.stderr).toBe(0);
    // (A `state` item too: the sandbox's lock file, which nothing names any more.)
    const removed = (JSON.parse(scoped.stdout) as GcReport).removed.filter((item) => item.kind !== 'state');
    expect(removed.map((item) => `${item.kind} ${item.name}`).sort()).toEqual(['filter eth0', 'qdisc eth0']);
    expect(removed.find((item) => item.kind === 'filter')?.detail).toBe(
      'prio 49152 redirects to a device that no longer exists (every frame it matches is dropped)',
    );
    expect(fingerprint(pod)).toEqual(before);
    // The node's neighbour entry may still be spending its last ARP probes from the ping dropped
    // above: a packet queued on it then is dropped with it when it fails. Start it afresh.
    node.exec('ip', ['neigh', 'flush', 'to', '10.200.0.2']);
    node.exec('ping', ['-c', '1', '-W', '2', '10.200.0.2']);
  });

  it("leaves a redirect to a device that is gone alone when it is not at vcnet's priority or of its shape", () => {
    const { pod } = makePod();
    pod.exec('ip', ['link', 'add', 'gone0', 'type', 'ifb']);
    pod.exec('tc', ['qdisc', 'add', 'dev', 'eth0', 'ingress']);
    // Another tool's: match-alls at priorities of their own (49154: attach takes 49153 beside a
    // filter at 49152, never a priority above a free one), and one at vcnet's that matches only ICMP.
    for (const priority of ['100', '49154']) {
      pod.exec('tc', [
        ...['filter', 'add', 'dev', 'eth0', 'ingress', 'prio', priority, 'protocol', 'all'],
        ...'u32 match u32 0 0 action mirred egress redirect dev gone0'.split(' '),
      ]);
    }
    pod.exec(
      'tc',
      'filter add dev eth0 ingress prio 49152 protocol ip u32 match ip protocol 1 0xff action mirred egress redirect dev gone0'.split(
        ' ',
      ),
    );
    pod.exec('ip', ['link', 'del', 'gone0']);
    const before = fingerprint(pod);
    const scoped = vcnet(['gc', '--json', '--netns', pod.path, '--state-dir', stateDirectory()], registry());
    expect(scoped.status, scoped.stderr).toBe(0);
    const report = JSON.parse(scoped.stdout) as GcReport;
    expect(report.removed.filter((item) => item.namespacePath === pod.path)).toEqual([]);
    expect(fingerprint(pod)).toEqual(before);
  });

  it("removes an orphan tap's redirect and leaves another tool's u32 node that joined it at vcnet's priority", () => {
    const { pod } = makePod();
    const state = stateDirectory();
    const attached = vcnet(['attach', '--sandbox', 'lost', '--netns', pod.path, '--state-dir', state], registry());
    expect(attached.status, attached.stderr).toBe(0);
    // A classifier with no action, at vcnet's priority and protocol: a second node of vcnet's u32.
    pod.exec(
      'tc',
      'filter add dev eth0 ingress prio 49152 protocol all u32 match ip dst 10.9.9.9/32 flowid 1:7'.split(' '),
    );
    // The record is lost: the tap is an orphan, its redirect on eth0 with it.
    rmSync(join(state, 'lost'), { recursive: true });
    const scoped = vcnet(['gc', '--json', '--netns', pod.path, '--state-dir', state], registry());
    expect(scoped.status, scoped.stderr).toBe(0);
    expect(pod.exec('ip', ['link', 'show'])).not.toContain('tap0_kata');
    const left = pod.exec('tc', 'filter show dev eth0 ingress'.split(' '));
    expect(left).toContain('match 0a090909/ffffffff at 16');
    expect(left).not.toContain('Redirect');
    expect(pod.exec('tc', 'qdisc show dev eth0 ingress'.split(' '))).toContain('qdisc ingress ffff:');
  });

  it("removes a redirect to a tap deleted by hand and leaves another tool's u32 node that joined it at vcnet's priority", () => {
    const { pod, node } = makePod();
    const state = stateDirectory();
    const attached = vcnet(['attach', '--sandbox', 'gone', '--netns', pod.path, '--state-dir', state], registry());
    expect(attached.status, attached.stderr).toBe(0);
    pod.exec(
      'tc',
      'filter add dev eth0 ingress prio 49152 protocol all u32 match ip dst 10.9.9.9/32 flowid 1:7'.split(' '),
    );
    pod.exec('ip', ['link', 'del', 'tap0_kata']);
    rmSync(join(state, 'gone'), { recursive: true });
    const listed = JSON.parse(vcnet(['gc', '--dry-run', '--json'], registry()).stdout) as GcReport;
    expect(listed.unclaimed).toContainEqual({
      namespacePath: pod.path,
      links: [],
      filters: [
        'eth0 ingress prio 49152 (a redirect to a device that no longer exists: it drops what arrives on eth0)',
      ],
    });
    const scoped = vcnet(['gc', '--json', '--netns', pod.path, '--state-dir', state], registry());
    expect(scoped.status, scoped.stderr).toBe(0);
    const removed = (JSON.parse(scoped.stdout) as GcReport).removed.filter((item) => item.kind !== 'state');
    expect(removed).toEqual([
      {
        kind: 'filter',
        namespacePath: pod.path,
        name: 'eth0',
        detail:
          "prio 49152 redirects to a device that no longer exists (every frame it matches is dropped) (its u32 node 800::800; another tool's node at that priority stays)",
      },
    ]);
    const left = pod.exec('tc', 'filter show dev eth0 ingress'.split(' '));
    expect(left).toContain('match 0a090909/ffffffff at 16');
    expect(left).not.toContain('Redirect');
    node.exec('ping', ['-c', '1', '-W', '2', '10.200.0.2']);
  });

  // Another tool's node with an action (here a mirror to a capture device) joins vcnet's u32 as
  // readily as a classifier does: detach deletes vcnet's node by handle beside it, and so must gc.
  it.each([
    ['an orphan tap', 'redirects to orphan tap0_kata'],
    ['a tap deleted by hand', 'redirects to a device that no longer exists (every frame it matches is dropped)'],
  ])(
    "removes %s's redirect beside another tool's u32 node with an action at vcnet's priority, which stays",
    (_case, detail) => {
      const { pod, node } = makePod();
      const state = stateDirectory();
      const attached = vcnet(['attach', '--sandbox', 'lost', '--netns', pod.path, '--state-dir', state], registry());
      expect(attached.status, attached.stderr).toBe(0);
      pod.exec('ip', ['link', 'add', 'mon0', 'type', 'ifb']);
      pod.exec(
        'tc',
        'filter add dev eth0 ingress prio 49152 protocol all u32 match ip dst 10.9.9.9/32 action mirred egress mirror dev mon0'.split(
          ' ',
        ),
      );
      if (detail.includes('no longer exists')) pod.exec('ip', ['link', 'del', 'tap0_kata']);
      rmSync(join(state, 'lost'), { recursive: true });
      const listed = JSON.parse(vcnet(['gc', '--dry-run', '--json'], registry()).stdout) as GcReport;
      expect(listed.unclaimed.find((entry) => entry.namespacePath === pod.path)).toEqual({
        namespacePath: pod.path,
        links: detail.includes('orphan') ? ['tap0_kata'] : [],
        ...(detail.includes('orphan')
          ? {}
          : {
              filters: [
                'eth0 ingress prio 49152 (a redirect to a device that no longer exists: it drops what arrives on eth0)',
              ],
            }),
      });
      const scoped = vcnet(['gc', '--json', '--netns', pod.path, '--state-dir', state], registry());
      expect(scoped.status, scoped.stderr).toBe(0);
      const removed = (JSON.parse(scoped.stdout) as GcReport).removed.filter((item) => item.kind === 'filter');
      expect(removed).toEqual([
        {
          kind: 'filter',
          namespacePath: pod.path,
          name: 'eth0',
          detail: `prio 49152 ${detail} (its u32 node 800::800; another tool's node at that priority stays)`,
        },
      ]);
      expect(pod.exec('ip', ['link', 'show'])).not.toContain('tap0_kata');
      const left = pod.exec('tc', 'filter show dev eth0 ingress'.split(' '));
      expect(left).toContain('Egress Mirror to device mon0');
      expect(left).not.toContain('Redirect');
      expect(pod.exec('tc', 'qdisc show dev eth0 ingress'.split(' '))).toContain('qdisc ingress ffff:');
      node.exec('ping', ['-c', '1', '-W', '2', '10.200.0.2']);
    },
  );

  // tcfilter's redirect beside another tool's clsact goes under its ingress hook, ffff:fff2: a filter
  // list asked for under the ingress qdisc's ffff:fff1 is empty on a clsact.
  it.each([
    ['an orphan tap', 'redirects to orphan tap0_kata'],
    ['a tap deleted by hand', 'redirects to a device that no longer exists (every frame it matches is dropped)'],
  ])("removes %s's redirect from another tool's clsact, which stays with its filters", (_case, detail) => {
    const { pod, node } = makePod();
    pod.exec('tc', 'qdisc add dev eth0 clsact'.split(' '));
    const theirs = 'filter add dev eth0 ingress prio 1 protocol ip u32 match ip dst 10.9.9.9/32 flowid 1:7';
    pod.exec('tc', theirs.split(' '));
    const hookBefore = pod.exec('tc', 'filter show dev eth0 ingress'.split(' '));
    const state = stateDirectory();
    const attached = vcnet(['attach', '--sandbox', 'lost', '--netns', pod.path, '--state-dir', state], registry());
    expect(attached.status, attached.stderr).toBe(0);
    if (detail.includes('no longer exists')) pod.exec('ip', ['link', 'del', 'tap0_kata']);
    rmSync(join(state, 'lost'), { recursive: true });
    const scoped = vcnet(['gc', '--json', '--netns', pod.path, '--state-dir', state], registry());
    expect(scoped.status, scoped.stderr).toBe(0);
    const removed = (JSON.parse(scoped.stdout) as GcReport).removed.filter((item) => item.kind === 'filter');
    expect(removed).toEqual([
      { kind: 'filter', namespacePath: pod.path, name: 'eth0', detail: `prio 49152 ${detail}` },
    ]);
    expect(pod.exec('ip', ['link', 'show'])).not.toContain('tap0_kata');
    // The clsact and its filter stay as they were; nothing drops what arrives on eth0.
    expect(pod.exec('tc', 'qdisc show dev eth0'.split(' '))).toContain('qdisc clsact ffff:');
    expect(pod.exec('tc', 'filter show dev eth0 ingress'.split(' '))).toBe(hookBefore);
    node.exec('ping', ['-c', '1', '-W', '2', '10.200.0.2']);
  });
});
