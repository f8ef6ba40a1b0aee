/**
 * A tenant with CAP_NET_ADMIN inside the pod moves things vcnet keeps track of; what detach and gc
 * take for vcnet's must survive it. Links vcnet made are known by their recorded ifindex and kind (a
 * renamed tap is still deleted, a look-alike under its name is not); a filter at vcnet's priority is
 * vcnet's only while it redirects to vcnet's link; gc deletes only kinds vcnet makes (taps, macvtaps,
 * ifbs), never a veth put into its group, nor a filter a live record claims.
 */
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { stateDirectoryPerTest, vcnet } from '../../helpers/cli.js';
import { logRecords } from '../../helpers/node-snapshot.js';
import { fingerprint, makePod } from '../../helpers/pod.js';

const stateDirectory = stateDirectoryPerTest('vcnet-tenant-');

const attach = (id: string, podPath: string) =>
  vcnet(['attach', '--sandbox', id, '--netns', podPath, '--state-dir', stateDirectory()]);
const detach = (...extra: string[]) => vcnet(['detach', '--sandbox', 's', '--state-dir', stateDirectory(), ...extra]);

interface Filter {
  pref: number;
  options?: { actions?: Array<{ to_dev?: string }> };
}

describe('detach and gc against a tenant inside the pod', () => {
  it("gc leaves a veth put in vcnet's group and a live record's filter; detach keeps a filter that is not its own", () => {
    const { pod, node } = makePod();
    const attached = attach('s', pod.path);
    expect(attached.status, attached.stderr).toBe(0);
    // The tenant: eth0 into vcnet's group, a tun of its own in it, and vcnet's eth0 filter replaced
    // by one at the same priority redirecting to that tun.
    pod.exec('ip', ['link', 'set', 'eth0', 'group', '30307']);
    pod.exec('ip', ['tuntap', 'add', 'dev', 'tap7_kata', 'mode', 'tap']);
    pod.exec('ip', ['link', 'set', 'tap7_kata', 'group', '30307']);
    pod.exec('tc', 'filter del dev eth0 parent ffff: prio 49152'.split(' '));
    pod.exec(
      'tc',
      'filter add dev eth0 parent ffff: protocol all prio 49152 u32 match u32 0 0 action mirred egress redirect dev tap7_kata'.split(
        ' ',
      ),
    );

    const gcArgs = ['gc', '--netns', pod.path, '--state-dir', stateDirectory(), '--json'];
    const dry = vcnet([...gcArgs, '--dry-run']);
    expect(dry.status, dry.stderr).toBe(0);
    const planned = JSON.parse(dry.stdout) as {
      removed: Array<{ kind: string; name: string }>;
      leftAlone: Array<{ kind: string; name: string; detail: string }>;
    };
    expect(planned.removed.map((item) => `${item.kind}:${item.name}`)).toEqual(['link:tap7_kata']);
    expect(planned.leftAlone).toEqual([
      expect.objectContaining({
        kind: 'link',
        name: 'eth0',
        detail: expect.stringContaining('vcnet never makes a veth'),
      }),
      expect.objectContaining({ kind: 'filter', name: 'eth0', detail: expect.stringContaining('record s claims') }),
    ]);
    const collected = vcnet(gcArgs);
    expect(collected.status, collected.stderr).toBe(0);
    expect(pod.exec('ip', ['-o', 'link', 'show', 'dev', 'eth0'])).toContain('eth0@');
    expect(node.exec('ip', ['-o', 'link', 'show', 'dev', 'veth0'])).toContain('veth0@');
    expect(pod.tcJson<Filter[]>('filter', 'show', 'dev', 'eth0', 'ingress').some((f) => f.pref === 49152)).toBe(true);

    const dryDetach = detach('--dry-run');
    expect(dryDetach.status, dryDetach.stderr).toBe(0);
    expect(dryDetach.stdout).not.toContain('tc qdisc del dev eth0 ingress');
    expect(dryDetach.stdout).not.toContain('tc filter del dev eth0');
    expect(dryDetach.stdout).toContain(
      "# kept: u32 filter prio 49152 on eth0: prio 49152 holds a filter that is not vcnet's",
    );
    const detached = detach();
    expect(detached.status, detached.stderr).toBe(0);
    expect(detached.stdout).toMatch(/\(2 kept\)$/m);
    expect(logRecords(detached.stderr).map((record) => record.msg)).toContainEqual(
      expect.stringMatching(/^kept the u32 filter prio 49152 on eth0: prio 49152 holds a filter that is not vcnet's/),
    );
    expect(pod.tcJson<Filter[]>('filter', 'show', 'dev', 'eth0', 'ingress').some((f) => f.pref === 49152)).toBe(true);

    // No record knows eth0 in vcnet's group: the next attach is refused, saying so (not "vcnet makes eth0").
    const refused = attach('s2', pod.path);
    expect(refused.status).toBe(1);
    expect(refused.stderr).toContain(`the namespace ${pod.path} has eth0 (index`);
    expect(refused.stderr).toMatch(/veth\) in vcnet's link group 0x7663, but no vcnet record knows it/);
    expect(refused.stderr).toContain('hint: vcnet never makes a veth, and gc leaves it');
    expect(refused.stderr).not.toContain('vcnet makes eth0 itself');

    // The command both hints quote acts in the pod's namespace wherever it is pasted: run in a
    // throwaway namespace standing in for the host's (so a bare command touches nothing real), it
    // moves the pod's eth0 out of vcnet's group.
    const quoted = (text: string) => /`([^`]*group default)`/.exec(text)?.[1];
    const command = quoted(refused.stderr);
    expect(command).toBeDefined();
    expect(quoted(planned.leftAlone[0]!.detail)).toBe(command);
    execFileSync('unshare', ['--net', 'sh', '-c', command!], { stdio: 'pipe' });
    expect(pod.exec('ip', ['-d', '-o', 'link', 'show', 'dev', 'eth0'])).not.toMatch(/group 30307|group 0x7663/);
  });

  it('deletes its renamed tap by ifindex, and leaves a look-alike made under its name', () => {
    const { pod } = makePod({ interfaces: 2 });
    const before = fingerprint(pod);
    const attached = attach('s', pod.path);
    expect(attached.status, attached.stderr).toBe(0);
    // The tenant renames one tap out of vcnet's group, and replaces the other by a tun of its own.
    pod.exec('ip', ['link', 'set', 'tap1_kata', 'name', 's13fi-stolen', 'group', 'default']);
    pod.exec('ip', ['link', 'del', 'tap0_kata']);
    pod.exec('ip', ['tuntap', 'add', 'dev', 'tap0_kata', 'mode', 'tap']);
    pod.exec('ip', ['link', 'set', 'tap0_kata', 'group', '30307']);

    const dry = detach('--dry-run');
    expect(dry.status, dry.stderr).toBe(0);
    expect(dry.stdout).toContain('ip link del dev s13fi-stolen');
    expect(dry.stdout).not.toContain('ip link del dev tap0_kata');
    expect(dry.stdout).not.toContain('ip link del group');
    expect(dry.stdout).toMatch(/^# notice: tap1_kata \(ifindex \d+\) was renamed s13fi-stolen after attach made it/m);
    expect(dry.stdout).toMatch(
      /^# notice: left tap0_kata \(ifindex \d+, tun\) as it is: it is not the link attach made/m,
    );

    const detached = detach();
    expect(detached.status, detached.stderr).toBe(0);
    expect(pod.exec('ip', ['-o', 'link', 'show'])).not.toContain('s13fi-stolen');
    expect(pod.exec('ip', ['-o', 'link', 'show', 'dev', 'tap0_kata'])).toContain('tap0_kata');
    // Without the tenant's own tun, the pod is as it was before attach.
    pod.exec('ip', ['link', 'del', 'tap0_kata']);
    expect(fingerprint(pod)).toEqual(before);
  });
});
