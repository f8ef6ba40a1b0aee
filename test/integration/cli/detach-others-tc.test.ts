/**
 * Detach next to other tc users. vcnet's htb (its tx rate limit on the pod link) goes even when
 * another tool has put a filter or a class into it since: the link had no shaping before attach, and
 * a notice names what of the other tool's went with it. The ingress qdisc, shared by every tc user,
 * stays when another tool's filter is in it, and detach reports it as kept (not "already gone"). A
 * u32 node of another tool's at vcnet's priority stays too, in vcnet's qdisc or in one the link had:
 * vcnet's own node goes by its handle.
 */
import { describe, expect, it } from 'vitest';
import { filePerTestFile, stateDirectoryPerTest, vcnet } from '../../helpers/cli.js';
import { logRecords } from '../../helpers/node-snapshot.js';
import { makePod } from '../../helpers/pod.js';

const stateDirectory = stateDirectoryPerTest('vcnet-detach-tc-');
const config = filePerTestFile(
  'rl.toml',
  '[hypervisor.qemu]\nrx_rate_limiter_max_rate=10000000\ntx_rate_limiter_max_rate=20000000\n',
);

function attach(podPath: string): void {
  const result = vcnet([
    'attach',
    '--sandbox',
    's',
    '--netns',
    podPath,
    '--config',
    config,
    '--state-dir',
    stateDirectory(),
  ]);
  expect(result.status, result.stderr).toBe(0);
}

/** A new pod attached as sandbox s, then `tc <words>` run in it: another tool's change since attach. */
function attachedThenTc(words: string) {
  const { pod } = makePod();
  attach(pod.path);
  pod.exec('tc', words.split(' '));
  return pod;
}

/** Another tool's filter in the ingress qdisc, at a priority of its own. */
const OTHER_INGRESS_FILTER = 'filter add dev eth0 ingress prio 100 protocol ip u32 match ip dst 10.9.9.9/32 flowid 1:7';

const detach = (...extra: string[]) => vcnet(['detach', '--sandbox', 's', '--state-dir', stateDirectory(), ...extra]);

describe("detach with another tool's tc objects in vcnet's qdiscs", () => {
  it("deletes vcnet's htb with another tool's filter in it, and says so", () => {
    const pod = attachedThenTc(
      'filter add dev eth0 parent 1: prio 3 protocol ip u32 match ip dst 10.1.1.1/32 flowid 1:1',
    );
    const dry = detach('--dry-run');
    expect(dry.status, dry.stderr).toBe(0);
    expect(dry.stdout).toContain('tc qdisc del dev eth0 root');
    expect(dry.stdout).toMatch(
      /^# notice: the htb qdisc 1: attach added on eth0 is deleted with .*: filter prio 3 \(u32\)$/m,
    );
    expect(dry.stdout).not.toContain('already gone');
    const result = detach();
    expect(result.status, result.stderr).toBe(0);
    expect(result.stdout).not.toContain('already gone');
    expect(pod.tcJson<unknown[]>('class', 'show', 'dev', 'eth0')).toEqual([]);
    expect(pod.tcJson<Array<{ kind: string }>>('qdisc', 'show', 'dev', 'eth0').map((q) => q.kind)).not.toContain('htb');
    expect(logRecords(result.stderr).map((record) => record.msg)).toContainEqual(
      expect.stringMatching(
        /^the htb qdisc 1: attach added on eth0 is deleted with what another tool put in it since .*: filter prio 3 \(u32\)$/,
      ),
    );
  });

  it("deletes vcnet's htb with another tool's class in it, and names the class", () => {
    const pod = attachedThenTc('class add dev eth0 parent 1:1 classid 1:5 htb rate 1mbit');
    const result = detach();
    expect(result.status, result.stderr).toBe(0);
    expect(pod.tcJson<unknown[]>('class', 'show', 'dev', 'eth0')).toEqual([]);
    expect(logRecords(result.stderr).map((record) => record.msg)).toContainEqual(
      expect.stringMatching(/what another tool put in it since .*: class 1:5$/),
    );
  });

  it("keeps the ingress qdisc holding another tool's filter, and reports it as kept", () => {
    const pod = attachedThenTc(OTHER_INGRESS_FILTER);
    const dry = detach('--dry-run');
    expect(dry.status, dry.stderr).toBe(0);
    expect(dry.stdout).toContain("# kept: ingress qdisc on eth0: it holds another tool's filter (prio 100)");
    expect(dry.stdout).not.toContain('already gone');
    const json = detach('--dry-run', '--json');
    // Counts, as detach --json gives them, with the lists beside them.
    expect(JSON.parse(json.stdout)).toMatchObject({
      alreadyGone: 0,
      alreadyGoneObjects: [],
      kept: 1,
      keptObjects: ["ingress qdisc on eth0: it holds another tool's filter (prio 100)"],
    });

    const result = detach();
    expect(result.status, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/change\(s\) undone \(1 kept\)$/m);
    expect(logRecords(result.stderr).map((record) => record.msg)).toContainEqual(
      "kept the ingress qdisc on eth0: it holds another tool's filter (prio 100); only vcnet's own filters in it were deleted",
    );
    const filters = pod.tcJson<Array<{ pref: number }>>('filter', 'show', 'dev', 'eth0', 'ingress');
    expect(new Set(filters.map((filter) => filter.pref))).toEqual(new Set([100]));
  });

  it.each([
    ['an ingress qdisc the pod link had before attach', true],
    ["vcnet's own ingress qdisc", false],
  ])("deletes only its own u32 node when another tool's joined it at vcnet's priority, in %s", (_where, hadQdisc) => {
    const { pod } = makePod();
    if (hadQdisc) pod.exec('tc', 'qdisc add dev eth0 ingress'.split(' '));
    attach(pod.path);
    // Same priority, kind and protocol: the kernel adds it as a second node of vcnet's u32 (800::801),
    // so a delete of the priority would take it along, and keeping vcnet's node would leave a
    // redirect to the deleted tap in front of it, dropping every frame.
    pod.exec(
      'tc',
      'filter add dev eth0 ingress prio 49152 protocol all u32 match ip dst 10.9.9.9/32 flowid 1:7'.split(' '),
    );
    const dry = detach('--dry-run');
    expect(dry.status, dry.stderr).toBe(0);
    expect(dry.stdout).toContain('tc filter del dev eth0 parent ffff: protocol all prio 49152 handle 800::800 u32');
    const result = detach();
    expect(result.status, result.stderr).toBe(0);
    const left = pod.exec('tc', 'filter show dev eth0 ingress'.split(' '));
    expect(left).toContain('match 0a090909/ffffffff at 16');
    expect(left).not.toContain('Redirect');
    expect(pod.exec('tc', 'qdisc show dev eth0 ingress'.split(' '))).toContain('qdisc ingress ffff:');
    expect(pod.exec('ip', ['link', 'show'])).not.toContain('tap0_kata');
  });

  it('counts the kept ingress qdisc in --json', () => {
    attachedThenTc(OTHER_INGRESS_FILTER);
    const result = detach('--json');
    expect(result.status, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ alreadyGone: 0, kept: 1 });
  });
});
