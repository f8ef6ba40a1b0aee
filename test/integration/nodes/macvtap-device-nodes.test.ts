/**
 * Macvtap device nodes are never shared between pods (issue 13 item 3): several pods attached at once
 * with the macvtap model, through the public CLI, each record naming a /dev/tap<index> whose
 * major:minor is its own macvtap's (as /sys/dev/char lists it), all different; detach removes them.
 */
import { existsSync, readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { deviceNumbers, MACVTAP_INDEX_BASE } from '../../../src/network/plan/macvtap-index.js';
import { stateDirectoryPerTest, vcnet, vcnetAsync } from '../../helpers/cli.js';
import { fingerprint, makePod } from '../../helpers/pod.js';

const stateDirectory = stateDirectoryPerTest('vcnet-nodes-');

function macvtapMajor(): number {
  const line = readFileSync('/proc/devices', 'utf8')
    .split('\n')
    .find((entry) => /^\s*\d+ macvtap$/.test(entry));
  return Number.parseInt(line?.trim() ?? 'NaN', 10);
}

/** Every macvtap character device on the host named tap<index>, as major:minor. */
function sysfsDevicesNamed(index: number): string[] {
  const major = macvtapMajor();
  return readdirSync('/sys/dev/char').filter(
    (entry) => entry.startsWith(`${major}:`) && basename(readlinkSync(join('/sys/dev/char', entry))) === `tap${index}`,
  );
}

describe('macvtap device nodes (issue 13)', () => {
  it('gives each of several pods attached at once a /dev/tap<index> of its own, checked by major:minor', async () => {
    const pods = [makePod(), makePod(), makePod(), makePod()].map((fixture) => fixture.pod);
    const before = pods.map((pod) => fingerprint(pod));
    const runs = pods.map((pod, position) =>
      vcnetAsync([
        'attach',
        '--sandbox',
        `mvt${position}`,
        '--netns',
        pod.path,
        '--model',
        'macvtap',
        '--state-dir',
        stateDirectory(),
        '--json',
      ]),
    );
    const results = await Promise.all(runs.map((run) => run.done));
    const seen = new Set<string>();
    for (const [position, result] of results.entries()) {
      expect(result.stderr).toBe('');
      expect(result.status).toBe(0);
      const endpoint = JSON.parse(result.stdout).endpoints[0] as { tap: string; tapDevice: string };
      const pod = pods[position]!;
      const [macvtap] = pod.ipJson<Array<{ ifindex: number }>>('link', 'show', endpoint.tap);
      const index = macvtap!.ifindex;
      expect(index).toBeGreaterThanOrEqual(MACVTAP_INDEX_BASE);
      expect(endpoint.tapDevice).toBe(`/dev/tap${index}`);
      // Exactly one macvtap on the host is tap<index>, and the node is that device.
      const devices = sysfsDevicesNamed(index);
      expect(devices).toHaveLength(1);
      const node = deviceNumbers(statSync(endpoint.tapDevice).rdev);
      expect(`${node.major}:${node.minor}`).toBe(devices[0]);
      seen.add(devices[0]!);
    }
    expect(seen.size).toBe(pods.length);

    const paths = results.map((result) => JSON.parse(result.stdout).endpoints[0].tapDevice as string);
    for (const position of pods.keys()) {
      const detached = vcnet(['detach', '--sandbox', `mvt${position}`, '--state-dir', stateDirectory()]);
      expect(detached.status).toBe(0);
    }
    for (const path of paths) expect(existsSync(path)).toBe(false);
    expect(pods.map((pod) => fingerprint(pod))).toEqual(before);
  });
});
