/**
 * `--netns pod` where `ip netns add pod` made the namespace: the name, read against the working
 * directory, names no file. Every command that takes --netns says "no such file" and, in its hint,
 * the /var/run/netns path that was meant (it used to give only the general hint). A relative path
 * to a namespace, which attach refuses (its record must name the namespace from anywhere), gets
 * its absolute path in the hint.
 */
import { existsSync, realpathSync } from 'node:fs';
import { dirname, join } from 'node:path';
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

  // The refusal said only "the absolute path of the pod network namespace", leaving the user to
  // work out which one the relative path meant.
  it('attach given a relative path to a namespace names its absolute path in the hint, and makes nothing', () => {
    const pod = makeNamespace('netns-relative');
    const state = stateDirectory();
    const registry = { VCNET_STATE_REGISTRY: join(state, 'registry') };
    const cwd = realpathSync('/var/run/netns');
    for (const [netns, from] of [
      [`./${pod.name}`, cwd],
      [`netns/${pod.name}`, dirname(cwd)],
    ] as const) {
      for (const dryRun of [['--dry-run'], []]) {
        const args = ['attach', '--sandbox', 'netns-relative', '--netns', netns, '--state-dir', state, ...dryRun];
        const result = vcnet(args, registry, { cwd: from });
        expect(result.status, args.join(' ')).toBe(2);
        expect(result.stderr, args.join(' ')).toContain(`invalid --netns: "${netns}"`);
        expect(result.stderr, args.join(' ')).toContain(`hint: give its absolute path, ${join(cwd, pod.name)}:`);
      }
    }
    expect(pod.ipJson('link', 'show')).toHaveLength(1);
    expect(existsSync(join(state, 'netns-relative'))).toBe(false);
  });

  it('keeps the general hint for a name no namespace has', () => {
    const result = vcnet(['scan', '--netns', `${makeNamespace('netns-name').name}-none`]);
    expect(result.status).toBe(2);
    expect(result.stderr).toContain('hint: give a network namespace path such as /var/run/netns/NAME');
  });
});
