/**
 * AttachRetries: a new link the watch could not attach is tried again on the watch's growing wait,
 * not with every change (its own rollback's among them), and at once when a change is about it.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { NamespaceChange } from '../../../src/network/namespace-watcher.js';
import type { NetworkInfo } from '../../../src/network/network-info.js';
import { AttachRetries } from '../../../src/sandbox/attach-retry.js';

const link = (name: string, index = 7) => ({ link: { name, index } }) as unknown as NetworkInfo;
const change = (parts: Partial<NamespaceChange> = {}): NamespaceChange => ({
  addedInterfaces: [],
  removedInterfaces: [],
  changedInterfaces: [],
  snapshotAt: new Date(0),
  ...parts,
});
const names = (of: NamespaceChange) => of.addedInterfaces.map((info) => info.link.name);

afterEach(() => {
  vi.useRealTimers();
});

describe('AttachRetries', () => {
  it('leaves a failed link out of the changes before its wait is over, and doubles the wait', () => {
    const retries = new AttachRetries(50, () => {});
    const first = change({ addedInterfaces: [link('eth7')] });
    retries.settle(retries.due(first, 0), ['eth7'], 0);
    // The rollback's own changes (a tc change, a tap gone) within the wait: eth7 is not tried.
    expect(names(retries.due(change({ trafficControl: true }), 199))).toEqual([]);
    const second = retries.due(change({ trafficControl: true }), 200);
    expect(names(second)).toEqual(['eth7']);
    retries.settle(second, ['eth7'], 200);
    expect(names(retries.due(change(), 599))).toEqual([]);
    expect(names(retries.due(change(), 600))).toEqual(['eth7']);
    retries.stop();
  });

  it('tries a failed link at once when a change is about it, and forgets it once attached or removed', () => {
    const retries = new AttachRetries(50, () => {});
    retries.settle(retries.due(change({ addedInterfaces: [link('eth7')] }), 0), ['eth7'], 0);
    const withAddress = change({ changedInterfaces: [link('eth7')] });
    expect(retries.due(withAddress, 10)).toBe(withAddress);
    retries.settle(withAddress, [], 10);
    expect(retries.links()).toEqual([]);
    retries.settle(retries.due(change({ addedInterfaces: [link('eth8', 8)] }), 20), ['eth8'], 20);
    retries.settle(retries.due(change({ removedInterfaces: ['eth8'] }), 30), [], 30);
    expect(retries.links()).toEqual([]);
    retries.stop();
  });

  it('keeps a link not tried (its wait not over) while another is settled', () => {
    const retries = new AttachRetries(50, () => {});
    retries.settle(retries.due(change({ addedInterfaces: [link('eth7')] }), 0), ['eth7'], 0);
    const other = retries.due(change({ addedInterfaces: [link('eth8', 8)] }), 50);
    expect(names(other)).toEqual(['eth8']);
    retries.settle(other, [], 50);
    expect(retries.links().map((info) => info.link.name)).toEqual(['eth7']);
    retries.stop();
  });

  it('asks for a read when the earliest wait ends, and for none after stop()', () => {
    vi.useFakeTimers({ now: 0 });
    const read = vi.fn();
    const retries = new AttachRetries(50, read);
    retries.settle(retries.due(change({ addedInterfaces: [link('eth7')] }), 0), ['eth7'], 0);
    vi.advanceTimersByTime(199);
    expect(read).not.toHaveBeenCalled();
    vi.advanceTimersByTime(1);
    expect(read).toHaveBeenCalledTimes(1);
    retries.settle(retries.due(change(), 200), ['eth7'], 200);
    retries.stop();
    vi.advanceTimersByTime(10_000);
    expect(read).toHaveBeenCalledTimes(1);
  });
});
