/**
 * attach --json lists the links it left out (no address, not named with --interface), as scan --json
 * does: they were only a warning on stderr, so a program reading the JSON could not tell a link
 * skipped from one that does not exist.
 */
import { describe, expect, it } from 'vitest';
import { stateDirectoryPerTest, vcnet } from '../../helpers/cli.js';
import { makePod } from '../../helpers/pod.js';

const stateDirectory = stateDirectoryPerTest('vcnet-attach-skipped-');

describe('attach --json', () => {
  it('lists the links it skipped, with the reason, beside the endpoints it made', () => {
    const { pod } = makePod();
    pod.exec('ip', ['link', 'add', 'eth9', 'type', 'veth', 'peer', 'name', 'peer9']);
    const attached = vcnet([
      'attach',
      '--sandbox',
      'k1',
      '--netns',
      pod.path,
      '--state-dir',
      stateDirectory(),
      '--json',
    ]);
    expect(attached.status, attached.stderr).toBe(0);
    const result = JSON.parse(attached.stdout) as {
      endpoints: Array<{ source: string }>;
      skipped: Array<{ source: string; reason: string }>;
    };
    expect(result.endpoints.map((endpoint) => endpoint.source)).toEqual(['eth0']);
    expect(result.skipped.map((entry) => entry.source).sort()).toEqual(['eth9', 'peer9']);
    expect(result.skipped[0]?.reason).toMatch(/address/);
    expect(vcnet(['detach', '--sandbox', 'k1', '--state-dir', stateDirectory()]).status).toBe(0);
  });
});
