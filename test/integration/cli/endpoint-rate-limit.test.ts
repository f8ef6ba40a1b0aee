/**
 * Rate limits are never dropped silently: an existing macvtap endpoint gets an htb on its egress (tx:
 * what the VM sends) and an ifb-fed htb from its ingress (rx), detach removes exactly those; ifb names
 * stay unique whatever the endpoint's name.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ifbName } from '../../../src/network/plan/plan-attach.js';
import { stateDirectoryPerTest, vcnet } from '../../helpers/cli.js';
import { fingerprint, makePod } from '../../helpers/pod.js';

const stateDirectory = stateDirectoryPerTest();

describe('rate limits on non-pair endpoints', () => {
  it('puts htb on an existing macvtap (tx) and on an ifb fed from it (rx), and detach removes them', () => {
    const { pod } = makePod();
    pod.exec('ip', ['link', 'add', 'link', 'eth0', 'name', 'vm-nic0', 'type', 'macvtap', 'mode', 'bridge']);
    pod.exec('ip', ['link', 'set', 'vm-nic0', 'up']);
    pod.exec('ip', ['addr', 'add', '10.66.0.2/24', 'dev', 'vm-nic0']);
    const before = fingerprint(pod);
    const config = join(stateDirectory(), 'configuration.toml');
    writeFileSync(
      config,
      '[hypervisor.qemu]\nrx_rate_limiter_max_rate = 10000000\ntx_rate_limiter_max_rate = 20000000\n',
    );
    const attached = vcnet([
      'attach',
      '--sandbox',
      'rl1',
      '--netns',
      pod.path,
      '--config',
      config,
      '--state-dir',
      stateDirectory(),
    ]);
    expect(attached.status, attached.stderr).toBe(0);
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

  it('names the ifb after the tap for Kata-style names, and uniquely (<= 15 bytes) for any other', () => {
    expect(ifbName('tap3_kata')).toBe('ifb3_kata');
    const names = ['vm-nic0', 'vm-nic1', 'ifb0', 'a-long-name-015'].map(ifbName);
    expect(new Set(names).size).toBe(names.length);
    for (const name of names) expect(Buffer.byteLength(name)).toBeLessThanOrEqual(15);
    expect(names).not.toContain('vm-nic0');
  });
});
