/**
 * The pod's loopback device named where a pod link is expected (attach --interface lo, add-iface
 * {"name":"lo"}) is refused as the loopback device: the messages said lo was not a link of the
 * namespace, or that there was none free, while the namespace plainly has it.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { stateDirectoryPerTest, vcnet } from '../../helpers/cli.js';
import { fingerprint, makePod } from '../../helpers/pod.js';

const stateDirectory = stateDirectoryPerTest('vcnet-loopback-');

describe('lo named as a pod link', () => {
  it('is refused as the loopback device by attach --interface and add-iface, changing nothing', () => {
    const { pod } = makePod();
    const before = fingerprint(pod);
    const attach = vcnet([
      ...['attach', '--sandbox', 'l1', '--netns', pod.path, '--interface', 'lo'],
      ...['--state-dir', stateDirectory(), '--json'],
    ]);
    expect(attach.status, attach.stderr).toBe(1);
    expect(attach.stderr).toContain('lo is the loopback device: the guest has its own');
    expect(JSON.parse(attach.stdout).error.code).toBe('VCNET_UNSUPPORTED_INTERFACE');
    expect(fingerprint(pod)).toEqual(before);

    expect(vcnet(['attach', '--sandbox', 'l1', '--netns', pod.path, '--state-dir', stateDirectory()]).status).toBe(0);
    const attached = fingerprint(pod);
    const file = join(stateDirectory(), 'lo.json');
    writeFileSync(file, JSON.stringify({ name: 'lo' }));
    const added = vcnet(['add-iface', 'l1', file, '--state-dir', stateDirectory()]);
    expect(added.status, added.stderr).toBe(1);
    expect(added.stderr).toContain('lo is the loopback device: the guest has its own');
    expect(fingerprint(pod)).toEqual(attached);
    expect(vcnet(['detach', '--sandbox', 'l1', '--state-dir', stateDirectory()]).status).toBe(0);
    expect(fingerprint(pod)).toEqual(before);
  });
});
