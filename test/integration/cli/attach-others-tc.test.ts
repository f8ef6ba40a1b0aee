/**
 * attach next to another tool's ingress filters on the pod link: one that runs before vcnet's
 * redirect (a lower prio number) takes what it matches away from the VM. vcnet keeps Kata's
 * priority, and says so in a notice (attach and --dry-run), naming those filters. An ingress qdisc
 * whose filters are a shared block takes none by device: attach is refused with a hint that says so,
 * and names the remedy for the filter it was (tcfilter's redirect, or a pod macvtap's ifb redirect).
 */
import { describe, expect, it } from 'vitest';
import { filePerTestFile, RATE_LIMITED_KATA_CONFIG, stateDirectoryPerTest, vcnet } from '../../helpers/cli.js';
import { addPodMacvtap } from '../../helpers/dry-run-cases.js';
import { logRecords } from '../../helpers/node-snapshot.js';
import { fingerprint, makePod } from '../../helpers/pod.js';

const stateDirectory = stateDirectoryPerTest('vcnet-attach-tc-');
const rateLimited = filePerTestFile('configuration.toml', RATE_LIMITED_KATA_CONFIG);

const tc = (line: string) => line.split(' ');

function warnings(stderr: string): string[] {
  return logRecords(stderr)
    .filter((record) => record.level === 40)
    .map((record) => String(record.msg));
}

describe("attach beside another tool's ingress filters", () => {
  it('names the filters ahead of its redirect, in attach and in --dry-run', () => {
    const { pod } = makePod();
    pod.exec('tc', tc('qdisc add dev eth0 ingress'));
    // A classifier with a flowid and no action, and an ARP filter: both below vcnet's 49152.
    pod.exec('tc', tc('filter add dev eth0 ingress prio 1 protocol ip u32 match ip dst 10.9.9.9/32 flowid 1:1'));
    pod.exec('tc', tc('filter add dev eth0 ingress prio 40000 protocol arp u32 match u32 0 0 flowid 1:2'));
    // After vcnet's: never reached for what vcnet redirects, nothing to say about it.
    pod.exec('tc', tc('filter add dev eth0 ingress prio 60000 protocol ip u32 match ip dst 10.8.8.8/32 flowid 1:3'));
    const expected =
      "eth0's ingress has another tool's filters ahead of vcnet's redirect to the VM (prio 49152): prio 1 protocol ip (u32), prio 40000 protocol arp (u32); traffic they match does not reach the VM (Kata uses the same priority)";
    const state = ['--state-dir', stateDirectory()];
    const dry = vcnet(['attach', '--dry-run', '--sandbox', 'at', '--netns', pod.path, ...state]);
    expect(dry.status, dry.stderr).toBe(0);
    expect(warnings(dry.stderr)).toContain(expected);
    const json = vcnet(['attach', '--dry-run', '--json', '--sandbox', 'at', '--netns', pod.path, ...state]);
    expect(JSON.parse(json.stdout).endpoints[0].plan.warnings).toEqual([expected]);
    const attach = vcnet(['attach', '--sandbox', 'at', '--netns', pod.path, ...state]);
    expect(attach.status, attach.stderr).toBe(0);
    expect(warnings(attach.stderr)).toContain(expected);
    expect(vcnet(['detach', '--sandbox', 'at', ...state]).status).toBe(0);
  });

  it('says nothing when no filter runs before its redirect', () => {
    const { pod } = makePod();
    pod.exec('tc', tc('qdisc add dev eth0 ingress'));
    pod.exec('tc', tc('filter add dev eth0 ingress prio 60000 protocol ip u32 match ip dst 10.8.8.8/32 flowid 1:3'));
    const state = ['--state-dir', stateDirectory()];
    const attach = vcnet(['attach', '--sandbox', 'an', '--netns', pod.path, ...state]);
    expect(attach.status, attach.stderr).toBe(0);
    expect(warnings(attach.stderr).filter((message) => message.includes('ahead of'))).toEqual([]);
    expect(vcnet(['detach', '--sandbox', 'an', ...state]).status).toBe(0);
  });

  it('does not name a filter ahead whose actions end in continue (frames go on to the redirect), and does name pipe', () => {
    const { pod } = makePod();
    pod.exec('ip', ['link', 'add', 'ifbcap', 'type', 'ifb']);
    pod.exec('tc', tc('qdisc add dev eth0 ingress'));
    // A capture mirror that hands every frame on (TC_ACT_UNSPEC), and one that ends in pipe, which
    // ends the ingress filters for the frames it matches (checked with real traffic by s23nd).
    pod.exec(
      'tc',
      tc(
        'filter add dev eth0 ingress prio 1 protocol all u32 match u32 0 0 action mirred egress mirror dev ifbcap continue',
      ),
    );
    pod.exec(
      'tc',
      tc(
        'filter add dev eth0 ingress prio 2 protocol ip u32 match ip dst 10.9.9.9/32 action mirred egress mirror dev ifbcap pipe',
      ),
    );
    const state = ['--state-dir', stateDirectory()];
    const attach = vcnet(['attach', '--sandbox', 'ac', '--netns', pod.path, ...state]);
    expect(attach.status, attach.stderr).toBe(0);
    expect(warnings(attach.stderr).filter((message) => message.includes('ahead of'))).toEqual([
      "eth0's ingress has another tool's filter ahead of vcnet's redirect to the VM (prio 49152): prio 2 protocol ip (u32); traffic it matches does not reach the VM (Kata uses the same priority)",
    ]);
    expect(vcnet(['detach', '--sandbox', 'ac', ...state]).status).toBe(0);
  });

  it("takes the next free priority when another tool's filter holds 49152", () => {
    const { pod } = makePod();
    pod.exec('tc', tc('qdisc add dev eth0 ingress'));
    pod.exec('tc', tc('filter add dev eth0 ingress prio 49152 protocol ip u32 match ip dst 10.8.8.8/32 flowid 1:3'));
    const state = ['--state-dir', stateDirectory()];
    const attach = vcnet(['attach', '--sandbox', 'ap', '--netns', pod.path, ...state]);
    expect(attach.status, attach.stderr).toBe(0);
    const filters = pod.tcJson<Array<{ pref: number; protocol: string }>>('filter', 'show', 'dev', 'eth0', 'ingress');
    expect(filters.some((filter) => filter.pref === 49153 && filter.protocol === 'all')).toBe(true);
    expect(vcnet(['detach', '--sandbox', 'ap', ...state]).status).toBe(0);
    expect(
      new Set(pod.tcJson<Array<{ pref: number }>>('filter', 'show', 'dev', 'eth0', 'ingress').map((f) => f.pref)),
    ).toEqual(new Set([49152]));
  });

  it('refuses beside an ingress qdisc whose filters are a shared block, saying so, and leaves it as it was', () => {
    const { pod } = makePod();
    pod.exec('tc', tc('qdisc add dev eth0 ingress_block 22 ingress'));
    pod.exec('tc', tc('filter add block 22 prio 10 protocol ip u32 match ip dst 10.9.9.9/32 flowid 1:7'));
    const before = fingerprint(pod);
    const state = ['--state-dir', stateDirectory()];
    const attach = vcnet(['attach', '--sandbox', 'ab', '--netns', pod.path, ...state]);
    expect(attach.status).not.toBe(0);
    expect(attach.stderr).toContain('This filter block is shared');
    // The request named by the link's name, as tc would: it said "on link #2".
    expect(attach.stderr).toContain('add u32 filter prio 49152 on eth0 parent ffff:');
    expect(attach.stderr).toContain('(everything it had made was removed)');
    expect(attach.stderr).toContain(
      "hint: another tool's qdisc on this link keeps its filters in a shared block (ingress_block or egress_block in `tc qdisc show`), which takes no filter by device, as vcnet adds its redirect: use the macvtap model, which adds no filter to the pod link, or have that tool give the link a qdisc of its own",
    );
    expect(fingerprint(pod)).toEqual(before);
    expect(pod.exec('tc', tc('filter show block 22'))).toContain('match 0a090909/ffffffff at 16');
  });

  it("on a pod's own macvtap with an rx limit (its ifb redirect), refuses with the remedy for a macvtap, not the macvtap model", () => {
    const { pod } = makePod();
    addPodMacvtap(pod);
    pod.exec('tc', tc('qdisc add dev mvt ingress_block 23 ingress'));
    const before = fingerprint(pod);
    const state = ['--state-dir', stateDirectory()];
    const config = ['--config', rateLimited];
    const attach = vcnet(['attach', '--sandbox', 'am', '--netns', pod.path, ...config, ...state]);
    expect(attach.status).not.toBe(0);
    expect(attach.stderr).toContain('This filter block is shared');
    expect(attach.stderr).toContain('on mvt parent ffff:');
    expect(attach.stderr).toContain(
      "hint: mvt is a macvtap the VM uses as it is, and another tool's ingress qdisc on it keeps its filters in a shared block (ingress_block in `tc qdisc show dev mvt`), which takes no filter by device: the limit on what the VM receives (rx_rate_limiter_max_rate) goes through an ifb that a redirect filter on mvt's ingress feeds. Attach it without rx_rate_limiter_max_rate (tx_rate_limiter_max_rate needs no filter), or have that tool give mvt an ingress qdisc of its own",
    );
    expect(attach.stderr).not.toContain('use the macvtap model');
    expect(fingerprint(pod)).toEqual(before);
  });
});
