/**
 * gc's report of a removal batch (network/gc/report.ts reportOutcomes): an item is reported removed
 * only when its request was answered ok; refused, or with no answer at all, it is a failure, unless
 * the refusal says the object is gone already (detach's rule): then it is neither.
 */
import { describe, expect, it } from 'vitest';
import { NetlinkError } from '../../../src/netlink/errors.js';
import type { RequestOutcome } from '../../../src/netlink/protocol.js';
import {
  emptyGarbageReport,
  type GarbageItem,
  type GarbageReport,
  reportOutcomes,
} from '../../../src/network/gc/report.js';

const NAMESPACE = '/run/netns/s21gs-pod';

function emptyReport(): GarbageReport {
  return emptyGarbageReport({ dryRun: false, stateDirectories: [] });
}

describe('emptyGarbageReport', () => {
  it('has every list empty and nothing kept, with the dry run and directories given', () => {
    const report = emptyGarbageReport({ dryRun: true, stateDirectories: ['/run/vcnet/sandboxes'] });
    expect(report.dryRun).toBe(true);
    expect(report.kept).toBe(0);
    expect(report.stateDirectories).toEqual(['/run/vcnet/sandboxes']);
    const lists = Object.entries(report).filter(([key]) => !['dryRun', 'kept', 'stateDirectories'].includes(key));
    expect(lists.length).toBeGreaterThan(0);
    for (const [key, value] of lists) expect([key, value]).toEqual([key, []]);
  });

  it('gives each report lists of its own', () => {
    const first = emptyGarbageReport({ dryRun: false, stateDirectories: [] });
    const second = emptyGarbageReport({ dryRun: false, stateDirectories: [] });
    first.removed.push({ kind: 'link', namespacePath: NAMESPACE, name: 'tap0' });
    first.withheld.push({ namespacePath: NAMESPACE, links: [] });
    expect(second.removed).toEqual([]);
    expect(second.withheld).toEqual([]);
  });
});

const item = (name: string, kind: GarbageItem['kind'] = 'link'): GarbageItem => ({
  kind,
  namespacePath: NAMESPACE,
  name,
  detail: 'tap',
});

/** The kernel's refusal of request `sequence` with `errno` (a positive errno number). */
const refusal = (errno: number, sequence: number): RequestOutcome => ({
  ok: false,
  error: new NetlinkError(
    { type: 17, description: `request ${sequence}` },
    { errno, requestType: 17, requestSequence: sequence },
    NAMESPACE,
  ),
});

const ENOENT = 2;
const ENODEV = 19;
const EINVAL = 22;

describe('reportOutcomes', () => {
  it('reports an item removed when its request was answered ok, and a failure with the errno when refused', () => {
    const refused = new NetlinkError(
      { type: 17, description: 'delete orphan tap1' },
      { errno: 16, requestType: 17, requestSequence: 2 },
      NAMESPACE,
    );
    const outcomes: RequestOutcome[] = [
      { ok: true, messages: [] },
      { ok: false, error: refused },
    ];
    const report = emptyReport();
    reportOutcomes([item('tap0'), item('tap1')], outcomes, NAMESPACE, report);
    expect(report.removed.map((entry) => entry.name)).toEqual(['tap0']);
    expect(report.failures).toEqual([{ namespacePath: NAMESPACE, reason: refused.message, errno: refused.errno }]);
  });

  it('never reports an item removed whose request has no answer', () => {
    const report = emptyReport();
    reportOutcomes([item('tap0'), item('tap1')], [{ ok: true, messages: [] }], NAMESPACE, report);
    expect(report.removed.map((entry) => entry.name)).toEqual(['tap0']);
    expect(report.failures).toHaveLength(1);
    expect(report.failures[0]!.reason).toMatch(/tap1.*no answer/);
    expect(report.failures[0]!.errno).toBeUndefined();
  });

  it('counts a removal refused because the object is gone already as neither removed nor failed', () => {
    const report = emptyReport();
    reportOutcomes(
      [item('tap0'), item('eth0', 'qdisc'), item('eth0', 'filter'), item('eth1', 'qdisc'), item('tap1')],
      [refusal(ENODEV, 1), refusal(EINVAL, 2), refusal(ENOENT, 3), refusal(ENODEV, 4), refusal(EINVAL, 5)],
      NAMESPACE,
      report,
    );
    expect(report.removed).toEqual([]);
    // EINVAL says "gone" only for tc objects, built from gc's own dump; a link's EINVAL is a failure.
    expect(report.failures.map((failure) => failure.errno)).toEqual(['EINVAL']);
  });
});
