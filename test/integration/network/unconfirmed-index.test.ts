/**
 * vcnet chooses the ifindex of each tap and ifb it makes before making it, and journals it first. An
 * index taken by another tool's link is tried again elsewhere (taps did, ifbs failed with EEXIST);
 * and a record journaled before the kernel confirmed the create (the process killed there) marks
 * the index unconfirmed: detach then deletes the link at that index only if it also has the recorded
 * name, kind and vcnet's group, so another tool's link made there since is left (it was deleted as
 * "renamed after attach made it").
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Network, type NetworkState } from '../../../src/network/network.js';
import { LINK_INDEX_BASE, setLinkIndexTestHook } from '../../../src/network/plan/link-creation.js';
import { cleanupNamespaces, type TestNamespace } from '../../helpers/namespace.js';
import { failureOf, makePod, tcfilterConfig } from '../../helpers/pod.js';

afterEach(() => {
  setLinkIndexTestHook(undefined);
  cleanupNamespaces();
});

const THEIRS = LINK_INDEX_BASE + 24;
const rateLimit = { rxBitsPerSecond: 10_000_000, txBitsPerSecond: 20_000_000 };

function links(pod: TestNamespace): Array<{ ifname: string; ifindex: number; link_type: string; group: string }> {
  return pod.ipJson('link', 'show');
}

/** The tap (made first) at a random index, the ifb first tried at THEIRS: returns the indexes forced. */
function forceIfbIndex(): number[] {
  const forced: number[] = [];
  let call = 0;
  setLinkIndexTestHook(() => {
    if (call++ !== 1) return undefined;
    forced.push(THEIRS);
    return THEIRS;
  });
  return forced;
}

/** Another tool's ifb at the index vcnet is made to choose first, outside vcnet's group. */
function theirIfb(pod: TestNamespace): void {
  pod.exec('ip', ['link', 'add', 'theirs0', 'index', String(THEIRS), 'type', 'ifb']);
}

describe('an index chosen before the link exists', () => {
  it('an ifb whose chosen index is taken is made at another index', async () => {
    const { pod } = makePod();
    theirIfb(pod);
    const forced = forceIfbIndex();
    const network = Network.open(tcfilterConfig(pod, { model: 'none', rateLimit }));
    try {
      await network.addEndpoints();
      const ifb = links(pod).find((link) => link.ifname === 'ifb0_kata');
      expect(ifb, 'the ifb was made').toBeDefined();
      expect(ifb!.ifindex).not.toBe(THEIRS);
      expect(forced, 'the taken index was tried').toEqual([THEIRS]);
      await network.removeEndpoints();
    } finally {
      network.close();
    }
    expect(links(pod).find((link) => link.ifindex === THEIRS)?.ifname).toBe('theirs0');
  });

  it("detach from a record journaled before the ifb's create leaves another tool's link made at its index", async () => {
    const { pod } = makePod();
    forceIfbIndex();
    const network = Network.open(tcfilterConfig(pod, { model: 'none', rateLimit }));
    let last: NetworkState | undefined;
    const error = await failureOf(
      network.addEndpoints({
        journal: (current) => {
          const saved = structuredClone(current.save());
          // The record naming the ifb before it is made is written; the process dies as it is sent.
          if (JSON.stringify(saved).includes('"kind":"ifb"')) {
            last = saved;
            throw Object.assign(new Error('killed'), { code: 'EINTR' });
          }
        },
      }),
    );
    network.close();
    expect((error as Error).message).toContain('killed');
    const made = JSON.stringify(last).match(/\{"step":"create-link","name":"ifb0_kata"[^}]*\}/)?.[0];
    expect(JSON.parse(made!)).toEqual({
      step: 'create-link',
      name: 'ifb0_kata',
      kind: 'ifb',
      index: THEIRS,
      unconfirmed: true,
    });
    expect(links(pod).find((link) => link.ifname === 'ifb0_kata')).toBeUndefined();

    // Later another tool's ifb gets that index.
    theirIfb(pod);
    const again = Network.load(last!);
    try {
      await again.removeEndpoints();
    } finally {
      again.close();
    }
    expect(links(pod).find((link) => link.ifindex === THEIRS)?.ifname, 'their ifb is left').toBe('theirs0');
  });

  it('a tap whose chosen index is taken is made at another, and the batch after it names that one', async () => {
    const { pod } = makePod();
    theirIfb(pod);
    let call = 0;
    setLinkIndexTestHook(() => (call++ === 0 ? THEIRS : undefined));
    const network = Network.open(tcfilterConfig(pod, { model: 'tcfilter' }));
    try {
      await network.addEndpoints();
      const tap = links(pod).find((link) => link.ifname === 'tap0_kata');
      expect(tap, 'the tap was made').toBeDefined();
      expect(tap!.ifindex).not.toBe(THEIRS);
      // The pod link's filter redirects to the tap where it is, not to the index first chosen.
      const filters = pod.tcJson<Array<{ options?: { actions?: Array<{ to_dev?: string }> } }>>(
        'filter',
        'show',
        'dev',
        'eth0',
        'ingress',
      );
      const targets = filters.flatMap((filter) => filter.options?.actions ?? []).map((action) => action.to_dev);
      expect(targets).toContain('tap0_kata');
      expect(targets).not.toContain('theirs0');
      await network.removeEndpoints();
    } finally {
      network.close();
    }
    expect(links(pod).map((link) => link.ifname)).not.toContain('tap0_kata');
    expect(links(pod).find((link) => link.ifindex === THEIRS)?.ifname).toBe('theirs0');
  });

  it('says every tried tap index was taken, not that a VM holds the tap', async () => {
    const { pod } = makePod();
    theirIfb(pod);
    setLinkIndexTestHook(() => THEIRS);
    const network = Network.open(tcfilterConfig(pod, { model: 'tcfilter' }));
    const error = (await failureOf(network.addEndpoints())) as Error & { hint?: string };
    network.close();
    expect(error.message).toMatch(/16 indexes from \d+ tried, each taken/);
    expect(error.hint).toMatch(/every index tried was another link's/);
    expect(error.hint).not.toMatch(/running VM/);
    expect(links(pod).find((link) => link.ifname === 'tap0_kata')).toBeUndefined();
  });
});
