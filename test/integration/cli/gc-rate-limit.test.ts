/**
 * A rate limit puts an htb on links that are not vcnet's (tcfilter's tx limit on the pod link, the
 * egress limit of a device the VM uses as it is). When the record is gone (a crash, a lost state
 * directory), `gc --netns` removes that htb with the redirects to the orphan that tell it was vcnet's
 * attach (--dry-run lists it with the reason), and the namespace is as before the attach. An htb of
 * another shape on such a link is another tool's: left alone, and said so.
 */
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ifbName } from '../../../src/network/plan/plan-attach.js';
import { RATE_LIMITED_KATA_CONFIG, stateDirectoryPerTest, vcnet } from '../../helpers/cli.js';
import { fingerprint, makePod } from '../../helpers/pod.js';

const stateDirectory = stateDirectoryPerTest('vcnet-s17lf-');

interface Report {
  removed: Array<{ kind: string; name: string; detail: string }>;
  leftAlone: Array<{ kind: string; name: string; detail: string }>;
  failures: unknown[];
}

/** Attaches `id` with the Kata config `config`, then drops its record as a lost state directory would. */
function attachAndLoseRecord(id: string, namespacePath: string, config: string): void {
  const file = join(stateDirectory(), 'configuration.toml');
  writeFileSync(file, config);
  const attached = vcnet([
    'attach',
    '--sandbox',
    id,
    '--netns',
    namespacePath,
    '--config',
    file,
    '--state-dir',
    stateDirectory(),
  ]);
  expect(attached.status, attached.stderr).toBe(0);
  rmSync(join(stateDirectory(), id), { recursive: true, force: true });
  rmSync(join(stateDirectory(), '.locks', id), { force: true });
}

function gc(namespacePath: string, dryRun: boolean): Report {
  const args = ['gc', '--netns', namespacePath, '--state-dir', stateDirectory(), '--json'];
  const result = vcnet(dryRun ? [...args, '--dry-run'] : args);
  expect(result.status, result.stderr).toBe(0);
  return JSON.parse(result.stdout) as Report;
}

const htbItems = (items: Report['removed']) =>
  items.filter((item) => item.kind === 'qdisc' && item.detail.startsWith('htb')).map((item) => item.name);

describe('gc and the qdiscs of a rate limit whose record is gone', () => {
  it('removes tcfilter’s htb on the pod link with the redirects to the orphan tap', () => {
    const { pod } = makePod();
    // CNI's veths have no transmit queue: the htb gave it one, gc's removal must not leave it.
    pod.exec('ip', ['link', 'set', 'eth0', 'txqueuelen', '0']);
    const before = fingerprint(pod);
    attachAndLoseRecord('rl-tcfilter', pod.path, RATE_LIMITED_KATA_CONFIG);
    expect(pod.exec('tc', ['qdisc', 'show', 'dev', 'eth0'])).toMatch(/qdisc htb 1: root/);

    const dry = gc(pod.path, true);
    expect(htbItems(dry.removed)).toEqual(['eth0']);
    expect(dry.removed.find((item) => item.detail.startsWith('htb'))?.detail).toMatch(/rate limit.*50000000/);
    expect(pod.exec('tc', ['qdisc', 'show', 'dev', 'eth0'])).toMatch(/qdisc htb 1: root/);

    const collected = gc(pod.path, false);
    expect(collected.failures).toEqual([]);
    expect(htbItems(collected.removed)).toEqual(['eth0']);
    expect(fingerprint(pod)).toEqual(before);
  });

  it('removes the htb on an existing macvtap the VM used as it is, with its ifb', () => {
    const { pod } = makePod();
    pod.exec('ip', ['link', 'add', 'link', 'eth0', 'name', 'vm-nic0', 'type', 'macvtap', 'mode', 'bridge']);
    pod.exec('ip', ['link', 'set', 'vm-nic0', 'up']);
    pod.exec('ip', ['addr', 'add', '10.66.0.2/24', 'dev', 'vm-nic0']);
    const before = fingerprint(pod);
    attachAndLoseRecord('rl-macvtap', pod.path, RATE_LIMITED_KATA_CONFIG);
    expect(pod.exec('tc', ['qdisc', 'show', 'dev', 'vm-nic0'])).toMatch(/qdisc htb 1: root/);

    // eth0 is attached too (tcfilter, its tx limit on eth0); vm-nic0's tx limit is on vm-nic0.
    expect(htbItems(gc(pod.path, true).removed).sort()).toEqual(['eth0', 'vm-nic0']);
    const collected = gc(pod.path, false);
    expect(collected.failures).toEqual([]);
    expect(htbItems(collected.removed).sort()).toEqual(['eth0', 'vm-nic0']);
    expect(collected.removed.map((item) => `${item.kind}:${item.name}`)).toContain(`link:${ifbName('vm-nic0')}`);
    expect(fingerprint(pod)).toEqual(before);
  });

  it('leaves an htb of another shape on the pod link, and says why', () => {
    const { pod } = makePod();
    // Another tool's shaping: default class 10, a class vcnet never makes.
    pod.exec('tc', ['qdisc', 'add', 'dev', 'eth0', 'root', 'handle', '1:', 'htb', 'default', '10']);
    pod.exec('tc', ['class', 'add', 'dev', 'eth0', 'parent', '1:', 'classid', '1:10', 'htb', 'rate', '5mbit']);
    const before = fingerprint(pod);
    const classes = pod.exec('tc', ['class', 'show', 'dev', 'eth0']);
    // rx only: its htb goes on the tap; the pod link's htb is left as it was.
    attachAndLoseRecord('rl-other', pod.path, '[hypervisor.qemu]\nrx_rate_limiter_max_rate = 100000000\n');

    const collected = gc(pod.path, false);
    expect(collected.failures).toEqual([]);
    expect(htbItems(collected.removed)).toEqual([]);
    expect(collected.leftAlone.filter((item) => item.kind === 'qdisc')).toEqual([
      expect.objectContaining({ name: 'eth0', detail: expect.stringMatching(/htb root qdisc not of the shape/) }),
    ]);
    expect(pod.exec('tc', ['class', 'show', 'dev', 'eth0'])).toBe(classes);
    expect(fingerprint(pod)).toEqual(before);
  });
});
