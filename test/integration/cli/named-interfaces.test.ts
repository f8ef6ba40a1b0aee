/**
 * A link named with `attach --interface` (NetworkConfig.namedInterfaces) that the pod namespace does
 * not have is refused before anything is made, instead of leaving the VM one NIC short.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { InvalidInputError } from '../../../src/errors.js';
import type { NetworkConfig } from '../../../src/network/config.js';
import { attachSandbox } from '../../../src/sandbox/attach.js';
import { planSandboxAttach } from '../../../src/sandbox/plan.js';
import { stateDirectoryPerTest, vcnet } from '../../helpers/cli.js';
import { fingerprint, makePod, tcfilterConfig } from '../../helpers/pod.js';

const stateDirectory = stateDirectoryPerTest();

describe('a named interface the namespace lacks', () => {
  it('attach --interface nosuch exits 2 naming the flag, the value and the links; --dry-run refuses too', () => {
    const { pod } = makePod();
    pod.exec('ip', ['link', 'add', 'br9', 'type', 'bridge']);
    const before = fingerprint(pod);
    for (const extra of [[], ['--dry-run'], ['--json']]) {
      const result = vcnet([
        'attach',
        '--sandbox',
        'short',
        '--netns',
        pod.path,
        '--state-dir',
        stateDirectory(),
        '--interface',
        'br9',
        '--interface',
        'nosuch',
        ...extra,
      ]);
      expect(result.status).toBe(2);
      const message = extra[0] === '--json' ? JSON.parse(result.stdout).error.message : result.stderr;
      expect(message).toContain('--interface');
      expect(message).toContain('"nosuch"');
      expect(message).toMatch(/eth0/);
      expect(message).toMatch(/br9/);
    }
    expect(fingerprint(pod)).toEqual(before);
    expect(existsSync(join(stateDirectory(), 'short'))).toBe(false);
  });

  it('attach --interface "" is refused naming the flag, not the library\'s namedInterfaces[0]', () => {
    const { pod } = makePod();
    const before = fingerprint(pod);
    const args = ['attach', '--sandbox', 'short', '--netns', pod.path, '--state-dir', stateDirectory()];
    for (const extra of [[], ['--dry-run']]) {
      const result = vcnet([...args, '--interface', 'eth0', '--interface', '', ...extra]);
      expect(result.status).toBe(2);
      expect(result.stderr).toContain('vcnet: invalid --interface: "" (accepted: the name of a pod link)');
      expect(result.stderr).toContain('hint: set --interface to the name of a pod link');
      expect(result.stderr).not.toContain('namedInterfaces');
    }
    expect(fingerprint(pod)).toEqual(before);
    expect(existsSync(join(stateDirectory(), 'short'))).toBe(false);
  });

  it('the library refuses namedInterfaces naming a missing link, in the plan and the attach', async () => {
    const { pod } = makePod();
    const before = fingerprint(pod);
    const config: NetworkConfig = tcfilterConfig(pod, { namedInterfaces: ['nosuch'] });
    const plan = await planSandboxAttach(config, 'short').then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(plan).toBeInstanceOf(InvalidInputError);
    expect((plan as InvalidInputError).field).toBe('namedInterfaces');
    const attach = await attachSandbox('short', config, { stateDirectory: stateDirectory() }).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(attach).toBeInstanceOf(InvalidInputError);
    expect((attach as InvalidInputError).field).toBe('namedInterfaces');
    expect((attach as Error).message).toContain('"nosuch"');
    expect(fingerprint(pod)).toEqual(before);
    expect(existsSync(join(stateDirectory(), 'short'))).toBe(false);
  });
});
