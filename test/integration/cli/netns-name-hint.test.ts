/**
 * `--netns pod` where `ip netns add pod` made the namespace: the name, read against the working
 * directory, names no file. Every command that takes --netns says "no such file" and, in its hint,
 * the /var/run/netns path that was meant (it used to give only the general hint).
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { stateDirectoryPerTest, vcnet } from '../../helpers/cli.js';
import { makeNamespace } from '../../helpers/namespace.js';

const stateDirectory = stateDirectoryPerTest();

describe('--netns given an ip netns name', () => {
  it('scan, attach (and its dry run) and gc name /var/run/netns/NAME in the hint, and make nothing', () => {
    const pod = makeNamespace('netns-name');
    const state = stateDirectory();
    const registry = { VCNET_STATE_REGISTRY: join(state, 'registry') };
    for (const args of [
      ['scan', '--netns', pod.name],
      ['attach', '--sandbox', 'netns-name', '--netns', pod.name, '--state-dir', state, '--dry-run'],
      ['attach', '--sandbox', 'netns-name', '--netns', pod.name, '--state-dir', state],
      ['gc', '--netns', pod.name, '--state-dir', state, '--dry-run'],
    ]) {
      const result = vcnet(args, registry);
      expect(result.status, args.join(' ')).toBe(2);
      expect(result.stderr, args.join(' ')).toMatch(/no such file/);
      expect(result.stderr, args.join(' ')).toContain(`hint: did you mean /var/run/netns/${pod.name}?`);
    }
    expect(pod.ipJson('link', 'show')).toHaveLength(1);
  });

  it('keeps the general hint for a name no namespace has', () => {
    const result = vcnet(['scan', '--netns', `${makeNamespace('netns-name').name}-none`]);
    expect(result.status).toBe(2);
    expect(result.stderr).toContain('hint: give a network namespace path such as /var/run/netns/NAME');
  });
});
