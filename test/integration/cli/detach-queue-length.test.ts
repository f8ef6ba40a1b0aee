/**
 * A pod veth without a transmit queue (txqueuelen 0, as CNI makes it) and a completed tcfilter attach:
 * attach sets the kernel's 1000 before its ingress qdisc and 0 back after, so it leaves eth0 at 0.
 * A length someone sets afterwards (`ip link set`, or another tc user's root qdisc, with which the
 * kernel gives 1000) is theirs: detach leaves it, with a notice that tells what happened. Detach
 * once put 0 back over a later 1000 (and under another's htb), and for any other length said attach
 * had set it to 1000. An unfinished attach's undo still puts 0 back (detach-dry-run.test.ts).
 */
import { describe, expect, it } from 'vitest';
import { stateDirectoryPerTest, vcnet } from '../../helpers/cli.js';
import { fingerprint, makePod } from '../../helpers/pod.js';

const stateDirectory = stateDirectoryPerTest('vcnet-detach-queue-');

type Pod = ReturnType<typeof makePod>['pod'];
const queueLength = (pod: Pod) => pod.ipJson<Array<{ txqlen?: number }>>('link', 'show', 'eth0')[0]?.txqlen ?? 0;

describe('detach and a transmit queue length changed after a completed attach', () => {
  const cases: Array<{ name: string; change: (pod: Pod) => void; length: number }> = [
    {
      name: 'ip link set txqueuelen 1000',
      change: (pod) => pod.exec('ip', ['link', 'set', 'eth0', 'txqueuelen', '1000']),
      length: 1000,
    },
    {
      name: 'ip link set txqueuelen 500',
      change: (pod) => pod.exec('ip', ['link', 'set', 'eth0', 'txqueuelen', '500']),
      length: 500,
    },
    {
      name: 'another tc user’s root htb (the kernel gives 1000)',
      change: (pod) => pod.exec('tc', ['qdisc', 'add', 'dev', 'eth0', 'root', 'handle', '1:', 'htb', 'default', '1']),
      length: 1000,
    },
  ];
  for (const { name, change, length } of cases) {
    it(`${name}: kept, with a notice that attach left 0`, () => {
      const { pod } = makePod({ txQueueLength: 0 });
      const args = ['--sandbox', 'queue', '--state-dir', stateDirectory()];
      const attached = vcnet(['attach', ...args, '--netns', pod.path]);
      expect(attached.status, attached.stderr).toBe(0);
      expect(queueLength(pod)).toBe(0);
      change(pod);
      expect(queueLength(pod)).toBe(length);

      const dry = vcnet(['detach', '--dry-run', ...args]);
      expect(dry.status, dry.stderr).toBe(0);
      expect(dry.stdout).not.toContain('txqueuelen');
      const detached = vcnet(['detach', ...args]);
      expect(detached.status, detached.stderr).toBe(0);
      expect(queueLength(pod)).toBe(length);
      expect(detached.stderr).toContain(
        `left the transmit queue length of eth0 as it is (${length}): attach left it at 0, as it found it, and it changed since`,
      );
      expect(detached.stderr).not.toContain('set it to 1000');
      // Everything attach made went; their qdisc stays.
      expect(pod.exec('ip', ['-br', 'link', 'show'])).not.toContain('tap0_kata');
      expect(pod.exec('tc', ['qdisc', 'show', 'dev', 'eth0'])).not.toContain('ingress');
      if (name.includes('htb')) expect(pod.exec('tc', ['qdisc', 'show', 'dev', 'eth0'])).toMatch(/qdisc htb 1: root/);
    });
  }

  it('left as attach left it (0): detach changes nothing of it and says nothing', () => {
    const { pod } = makePod({ txQueueLength: 0 });
    const before = fingerprint(pod);
    const args = ['--sandbox', 'queue', '--state-dir', stateDirectory()];
    expect(vcnet(['attach', ...args, '--netns', pod.path]).status).toBe(0);
    const detached = vcnet(['detach', ...args]);
    expect(detached.status, detached.stderr).toBe(0);
    expect(detached.stderr).not.toContain('transmit queue length');
    expect(fingerprint(pod)).toEqual(before);
  });
});
