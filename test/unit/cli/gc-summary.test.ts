/**
 * The text `vcnet gc` prints after what it kept in use: one reason per kind of thing it kept, each
 * true. A record left because another process is changing it was counted among "live sandboxes"
 * ("nothing to collect (2 vcnet link(s) belong to live sandboxes)"); so were, by omission, records
 * kept because their namespace cannot be seen and records gc could not read (with no link withheld).
 * test/integration/state/gc-summary-reasons.test.ts makes each case for real.
 */
import { describe, expect, it } from 'vitest';
import { summaryLines } from '../../../src/cli/commands/gc.js';
import { emptyGarbageReport, type GarbageReport } from '../../../src/network/gc/report.js';

const POD = '/var/run/netns/s24gc-pod';
const RUN_AGAIN = 'run gc again once it is done';

function report(more: Partial<GarbageReport> = {}): GarbageReport {
  return { ...emptyGarbageReport({ dryRun: false, stateDirectories: [] }), ...more };
}

const changing = {
  skipped: [{ file: '/s/a/state.json', reason: 'being changed', beingChanged: true as const }],
  beingChanged: [{ namespacePath: POD, links: ['tap0_kata', 'tap1_kata'] }],
};

describe('gc summary', () => {
  it('live sandboxes only: nothing to collect', () => {
    expect(summaryLines(report({ kept: 3 }))).toEqual([
      'nothing to collect (3 vcnet link(s) belong to live sandboxes)',
    ]);
  });

  it('being changed: not live, and says to run gc again', () => {
    expect(summaryLines(report({ kept: 2, ...changing }))).toEqual([
      `removed nothing: 1 record(s) with 2 vcnet link(s) left as they are, as another process is changing them right now: ${RUN_AGAIN}`,
    ]);
    // With a live sandbox's link beside them: each counted under its own reason.
    expect(summaryLines(report({ kept: 3, ...changing }))).toEqual([
      `removed nothing: 1 record(s) with 2 vcnet link(s) left as they are, as another process is changing them right now: ${RUN_AGAIN}; 1 vcnet link(s) belong to live sandboxes`,
    ]);
    // A record of a namespace gone: no link.
    expect(summaryLines(report({ skipped: changing.skipped }))).toEqual([
      `removed nothing: 1 record(s) left as they are, as another process is changing them right now: ${RUN_AGAIN}`,
    ]);
  });

  it('being changed, after the table of what went', () => {
    const lines = summaryLines(
      report({ kept: 2, ...changing, removed: [{ kind: 'link', namespacePath: POD, name: 'orphan0', detail: 'tap' }] }),
    );
    expect(lines[0]).toBe('removed 1 item(s):');
    expect(lines.at(-1)).toBe(
      `not removed: 1 record(s) with 2 vcnet link(s) left as they are, as another process is changing them right now: ${RUN_AGAIN}`,
    );
    expect(lines.join('\n')).not.toContain('live');
  });

  it('a namespace that cannot be seen', () => {
    expect(
      summaryLines(report({ skipped: [{ file: '/s/b/state.json', reason: 'cannot be told', namespaceUnseen: true }] })),
    ).toEqual([
      'removed nothing: 1 record(s) kept, as whether their namespace still exists cannot be told (see stderr)',
    ]);
  });

  it('a record gc cannot read: skipped; with links withheld, said by the withheld line alone', () => {
    const skipped = [{ file: '/s/c/state.json', reason: 'EIO' }];
    expect(summaryLines(report({ skipped }))).toEqual([
      'removed nothing: 1 record(s) or state directories gc cannot read skipped (see stderr)',
    ]);
    expect(
      summaryLines(report({ skipped, kept: 1, withheld: [{ namespacePath: POD, links: ['tap0_kata'] }] })),
    ).toEqual([
      'removed nothing: 1 vcnet link(s) in 1 namespace(s) not examined, as a record gc could not read may be theirs (see stderr)',
    ]);
  });

  it('links withheld for an unreadable record are said after the table of what went too', () => {
    const lines = summaryLines(
      report({
        kept: 1,
        skipped: [{ file: '/s/c/state.json', reason: 'cut' }],
        withheld: [{ namespacePath: POD, links: ['tap0_kata'] }],
        removed: [{ kind: 'state', namespacePath: '/var/run/netns/gone', name: 'gone', detail: 'exists nowhere' }],
      }),
    );
    expect(lines[0]).toBe('removed 1 item(s):');
    expect(lines.at(-1)).toBe(
      'not removed: 1 vcnet link(s) in 1 namespace(s) not examined, as a record gc could not read may be theirs (see stderr)',
    );
  });

  it('failures: the count, then what was kept and why', () => {
    const failures = [{ namespacePath: POD, reason: 'EBUSY', errno: 'EBUSY' }];
    expect(summaryLines(report({ failures, kept: 2, ...changing }))).toEqual([
      `removed nothing (1 removal(s) failed, see stderr); 1 record(s) with 2 vcnet link(s) left as they are, as another process is changing them right now: ${RUN_AGAIN}`,
    ]);
  });

  it('links in use by a process are not counted as live', () => {
    expect(
      summaryLines(report({ kept: 2, inUse: [{ namespacePath: POD, name: 'tap0_kata', detail: 'fd open' }] })),
    ).toEqual(['nothing to collect (1 vcnet link(s) belong to live sandboxes)']);
  });
});
