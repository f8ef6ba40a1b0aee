/**
 * `vcnet watch` started over a record that keeps an unfinished attach (a watch or add-iface killed
 * while it attached a link: its endpoint is recorded as 'pending'): the watch undoes what was made
 * for it, says so, and attaches the link as the new link it is.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { type WatchSummary, watchSandbox } from '../../../src/sandbox/sandbox-watch.js';
import { cleanupAfterEach } from '../../helpers/cleanup.js';
import { vcnet } from '../../helpers/cli.js';
import { makePod } from '../../helpers/pod.js';
import { until } from '../../helpers/until.js';

const cleanup = cleanupAfterEach();

interface RecordedEndpoint {
  properties: { link: { name: string } };
  plumbing: Record<string, unknown> & { model: string; steps: unknown[] };
}

describe('vcnet watch over an unfinished attach', () => {
  it('undoes it at start, names the link, and attaches the link again as new', async () => {
    const stateDir = cleanup.directory('vcnet-watch-unfinished-');
    const { pod } = makePod({ interfaces: 2 });
    const attach = vcnet(['attach', '--sandbox', 'u1', '--netns', pod.path, '--state-dir', stateDir]);
    expect(attach.status, attach.stderr).toBe(0);
    // What a kill -9 during eth1's attach leaves: its endpoint recorded as pending, with its steps.
    const file = join(stateDir, 'u1', 'state.json');
    const record = JSON.parse(readFileSync(file, 'utf8')) as { network: { endpoints: RecordedEndpoint[] } };
    const eth1 = record.network.endpoints.find((endpoint) => endpoint.properties.link.name === 'eth1')!;
    eth1.plumbing = {
      model: 'pending',
      steps: eth1.plumbing.steps,
      tapName: '',
      tapIndex: 0,
      guestHardwareAddress: '',
      queues: eth1.plumbing.queues,
    };
    writeFileSync(file, JSON.stringify(record));
    const tapsBefore = pod
      .ipJson<Array<{ ifname: string; ifindex: number }>>('link', 'show')
      .filter((link) => link.ifname.startsWith('tap'));
    expect(tapsBefore.map((link) => link.ifname).sort()).toEqual(['tap0_kata', 'tap1_kata']);

    const applied: WatchSummary[] = [];
    const watching = await watchSandbox('u1', {
      stateDirectory: stateDir,
      debounceMs: 50,
      onApplied: (summary) => applied.push(summary),
    });
    cleanup.defer(() => watching.stop());
    expect(watching.undoneAttaches).toEqual(['eth1']);
    expect(watching.notUndone).toEqual([]);
    expect(watching.leftAlone).toEqual([]);
    await until(() => applied.some((summary) => summary.added.includes('eth1')), 'eth1 attached again');
    const after = JSON.parse(readFileSync(file, 'utf8')) as { network: { endpoints: RecordedEndpoint[] } };
    expect(
      after.network.endpoints.map((endpoint) => [endpoint.properties.link.name, endpoint.plumbing.model]).sort(),
    ).toEqual([
      ['eth0', 'tcfilter'],
      ['eth1', 'tcfilter'],
    ]);
    // The half-made tap went and a new one was made: one tap per endpoint, nothing left over.
    const tapsAfter = pod
      .ipJson<Array<{ ifname: string; ifindex: number }>>('link', 'show')
      .filter((link) => link.ifname.startsWith('tap'));
    expect(tapsAfter).toHaveLength(2);
    const eth1Tap = after.network.endpoints.find((endpoint) => endpoint.properties.link.name === 'eth1')!.plumbing;
    expect(tapsAfter.find((link) => link.ifname === eth1Tap.tapName)?.ifindex).toBe(eth1Tap.tapIndex);
    expect(tapsBefore.map((link) => link.ifindex)).not.toContain(eth1Tap.tapIndex);
    await watching.stop();
    const detach = vcnet(['detach', '--sandbox', 'u1', '--state-dir', stateDir]);
    expect(detach.status, detach.stderr).toBe(0);
  });
});
