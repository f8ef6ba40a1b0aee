/**
 * Rate limits are never dropped silently: an existing macvtap endpoint gets an htb on its egress (tx:
 * what the VM sends) and an ifb-fed htb from its ingress (rx), detach removes exactly those; ifb names
 * stay unique whatever the endpoint's name. The ifb redirect goes beside an ingress or clsact qdisc
 * of another tool's that the macvtap already has.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ifbName } from '../../../src/network/plan/plan-attach.js';
import { stateDirectoryPerTest, vcnet } from '../../helpers/cli.js';
import type { TestNamespace } from '../../helpers/namespace.js';
import { fingerprint, makePod } from '../../helpers/pod.js';

const stateDirectory = stateDirectoryPerTest();

/** A new pod with a macvtap of its own on eth0 (vm-nic0, 10.66.0.2/24, up): an existing macvtap endpoint. */
function podWithMacvtap(): TestNamespace {
  const { pod } = makePod();
  pod.exec('ip', ['link', 'add', 'link', 'eth0', 'name', 'vm-nic0', 'type', 'macvtap', 'mode', 'bridge']);
  pod.exec('ip', ['link', 'set', 'vm-nic0', 'up']);
  pod.exec('ip', ['addr', 'add', '10.66.0.2/24', 'dev', 'vm-nic0']);
  return pod;
}

/** `vcnet attach` of `pod` as `sandbox`, with Kata's configuration.toml `toml`; it must succeed. */
function attachWithConfiguration(sandbox: string, pod: TestNamespace, toml: string): void {
  const config = join(stateDirectory(), 'configuration.toml');
  writeFileSync(config, toml);
  const attached = vcnet([
    'attach',
    '--sandbox',
    sandbox,
    '--netns',
    pod.path,
    '--config',
    config,
    '--state-dir',
    stateDirectory(),
  ]);
  expect(attached.status, attached.stderr).toBe(0);
}

describe('rate limits on non-pair endpoints', () => {
  it('puts htb on an existing macvtap (tx) and on an ifb fed from it (rx), and detach removes them', () => {
    const pod = podWithMacvtap();
    const before = fingerprint(pod);
    attachWithConfiguration(
      'rl1',
      pod,
      '[hypervisor.qemu]\nrx_rate_limiter_max_rate = 10000000\ntx_rate_limiter_max_rate = 20000000\n',
    );
    const ifb = ifbName('vm-nic0');
    expect(ifb).not.toBe('vm-nic0');
    const htbOn = (dev: string) =>
      pod.tcJson<Array<{ kind: string }>>('qdisc', 'show', 'dev', dev).some((qdisc) => qdisc.kind === 'htb');
    expect(htbOn('vm-nic0')).toBe(true);
    expect(htbOn(ifb)).toBe(true);
    expect(pod.exec('tc', ['class', 'show', 'dev', 'vm-nic0'])).toMatch(/class htb 1:2 .*rate 20Mbit/);
    expect(pod.exec('tc', ['class', 'show', 'dev', ifb])).toMatch(/class htb 1:2 .*rate 10Mbit/);
    expect(vcnet(['detach', '--sandbox', 'rl1', '--state-dir', stateDirectory()]).status).toBe(0);
    expect(pod.exec('ip', ['link', 'show'])).not.toContain(ifb);
    expect(fingerprint(pod)).toEqual(before);
  });

  it.each([
    ['ingress', 'ingress'],
    ['clsact', 'ingress'],
  ])(
    "puts its ifb redirect beside an existing macvtap's own %s qdisc, and detach leaves that qdisc and its filter as they were",
    (kind, hook) => {
      const pod = podWithMacvtap();
      // Another tool's, at the priority vcnet's ifb redirect would take (49151).
      pod.exec('tc', ['qdisc', 'add', 'dev', 'vm-nic0', kind]);
      pod.exec(
        'tc',
        `filter add dev vm-nic0 ${hook} prio 49151 protocol ip u32 match ip dst 10.9.9.9/32 flowid 1:7`.split(' '),
      );
      const before = fingerprint(pod);
      attachWithConfiguration('rl2', pod, '[hypervisor.qemu]\nrx_rate_limiter_max_rate = 10000000\n');
      const ifb = ifbName('vm-nic0');
      const ingress = pod.exec('tc', ['filter', 'show', 'dev', 'vm-nic0', 'ingress']);
      expect(ingress).toMatch(new RegExp(`pref 49152 u32 [^]*Egress Redirect to device ${ifb}`));
      expect(ingress).toContain('match 0a090909/ffffffff at 16');
      expect(pod.exec('tc', ['class', 'show', 'dev', ifb])).toMatch(/class htb 1:2 .*rate 10Mbit/);
      const detached = vcnet(['detach', '--sandbox', 'rl2', '--state-dir', stateDirectory()]);
      expect(detached.status, detached.stderr).toBe(0);
      // The parent too: the kernel dumps a block's filters under the parent its last filter was added
      // with, and the redirect goes under the one the other tool's filter shows (ffff:fff2 after `tc
      // ... ingress`), so `tc filter show` reads after detach as before attach.
      expect(fingerprint(pod)).toEqual(before);
    },
  );

  it('names the ifb after the tap for Kata-style names, and uniquely (<= 15 bytes) for any other', () => {
    expect(ifbName('tap3_kata')).toBe('ifb3_kata');
    const names = ['vm-nic0', 'vm-nic1', 'ifb0', 'a-long-name-015'].map(ifbName);
    expect(new Set(names).size).toBe(names.length);
    for (const name of names) expect(Buffer.byteLength(name)).toBeLessThanOrEqual(15);
    expect(names).not.toContain('vm-nic0');
  });
});
