/**
 * A detach (or DEL, del-iface) whose undo lost the kernel's answers and could not look afterwards:
 * what it saw still there and what it could not check are said apart, in the text and in --json
 * (`value` and `notChecked`), as an attach's rollback says them. It used to list both as "left".
 */
import { describe, expect, it } from 'vitest';
import { DetachIncompleteError, RollbackIncompleteError } from '../../../src/errors.js';
import type { Endpoint } from '../../../src/network/endpoint/endpoint.js';
import type { Network } from '../../../src/network/network.js';
import type { PlumbingStep } from '../../../src/network/plan/types.js';
import type { UndoReport } from '../../../src/network/plan/undo.js';
import { detachRecorded, undoAfterFailure } from '../../../src/sandbox/recorded.js';

const tap = { step: 'create-link', name: 'tap0_kata', kind: 'tun', index: 7 } as unknown as PlumbingStep;
const filter = {
  step: 'add-filter',
  link: 'eth0',
  index: 2,
  parent: 4294901760,
  priority: 49152,
  protocol: 3,
  kind: 'u32',
  redirectTo: { link: 'tap0_kata', index: 7 },
} as unknown as PlumbingStep;

/** A network whose undo saw the tap refused and lost the answer about the filter, with no look after. */
function networkUndoing(report: UndoReport): Network {
  const endpoint = { name: 'eth0', records: [tap, filter] } as unknown as Endpoint;
  return {
    endpoints: () => [endpoint],
    removeEndpoints: async () => report,
  } as unknown as Network;
}

const report: UndoReport = {
  undone: 0,
  alreadyGone: 0,
  kept: 0,
  failures: [new Error('delete tun tap0_kata failed: EBUSY'), new Error('delete u32 filter: answer lost (ENOBUFS)')],
  left: [tap, filter],
  notChecked: [filter],
};

const keeper = { persist: () => {}, discard: () => {}, path: '/run/vcnet/s1/state.json' };

async function caught(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => new Error('it succeeded'),
    (error: unknown) => error,
  );
}

describe('an incomplete detach with answers lost', () => {
  it('says what is left and, apart, what it could not check (text and JSON)', async () => {
    const error = await caught(detachRecorded(networkUndoing(report), 'detach of s1', keeper));
    expect(error).toBeInstanceOf(DetachIncompleteError);
    const detach = error as DetachIncompleteError;
    expect(detach.leftObjects).toEqual(['tun tap0_kata']);
    expect(detach.notChecked).toEqual(['u32 filter prio 49152 on eth0']);
    expect(detach.message).toMatch(/^detach of s1 left 1 object\(s\) in place: tun tap0_kata; not checked/);
    expect(detach.message).toContain('maybe gone, kept in the record) u32 filter prio 49152 on eth0');
    const json = detach.toJSON();
    expect(json.value).toEqual(['tun tap0_kata']);
    expect(json.notChecked).toEqual(['u32 filter prio 49152 on eth0']);
  });

  it('with nothing seen left, says none left and all not checked', async () => {
    const error = (await caught(
      detachRecorded(
        networkUndoing({ ...report, failures: [report.failures[1]!], left: [filter] }),
        'detach of s1',
        keeper,
      ),
    )) as DetachIncompleteError;
    expect(error.leftObjects).toEqual([]);
    expect(error.message).toMatch(/^detach of s1 left 0 object\(s\) in place; not checked/);
    expect(error.toJSON().notChecked).toEqual(['u32 filter prio 49152 on eth0']);
  });

  it('an undo after a failure (add-iface) passes the split on to its rollback error', async () => {
    const error = (await caught(
      undoAfterFailure(new Error('the guest refused'), networkUndoing(report), 'add-iface eth0', keeper),
    )) as RollbackIncompleteError;
    expect(error).toBeInstanceOf(RollbackIncompleteError);
    expect(error.value).toEqual(['tun tap0_kata']);
    expect(error.notChecked).toEqual(['u32 filter prio 49152 on eth0']);
  });
});
