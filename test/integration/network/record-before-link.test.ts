/**
 * A record journaled before a link exists names it by the index the link is then made at. When the
 * state disk fills up as the link is made (every write from then on fails), the last record written
 * is that one, and the attach's undo removes the link; a link someone makes later under the same
 * name (another attach, another tool) is not the one the record means, and a detach from that
 * record must leave it. It used to record the link by name only, and detach deleted the namesake.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Network, type NetworkState } from '../../../src/network/network.js';
import { VCNET_LINK_GROUP } from '../../../src/network/plan/plan-attach.js';
import { cleanupNamespaces, type TestNamespace } from '../../helpers/namespace.js';
import { failureOf, makePod, tcfilterConfig } from '../../helpers/pod.js';

afterEach(() => {
  cleanupNamespaces();
});

function linkThere(pod: TestNamespace, name: string): { ifindex: number; group: string } | undefined {
  return pod
    .ipJson<Array<{ ifname: string; ifindex: number; group: string }>>('link', 'show')
    .find((link) => link.ifname === name);
}

const cases = [
  {
    what: 'a tap',
    model: 'tcfilter' as const,
    link: 'tap0_kata',
    namesake: ['tuntap', 'add', 'tap0_kata', 'mode', 'tap'],
  },
  {
    what: "an ifb (a tap alone's tx limit)",
    model: 'none' as const,
    link: 'ifb0_kata',
    namesake: ['link', 'add', 'ifb0_kata', 'type', 'ifb'],
  },
  {
    what: 'a macvtap',
    model: 'macvtap' as const,
    link: 'tap0_kata',
    namesake: ['link', 'add', 'tap0_kata', 'link', 'eth0', 'type', 'macvtap'],
  },
];

describe('a record whose next write failed names the link it was written before', () => {
  for (const { what, model, link, namesake } of cases) {
    it(`${what}: detach from it leaves a namesake made after the failed attach`, async () => {
      const { pod } = makePod();
      const network = Network.open(
        tcfilterConfig(pod, { model, rateLimit: { rxBitsPerSecond: 10_000_000, txBitsPerSecond: 20_000_000 } }),
      );
      let last: NetworkState | undefined;
      let full = false;
      const error = await failureOf(
        network.addEndpoints({
          journal: (current) => {
            // The disk fills up as the link is made: this write and every later one fail.
            full ||= linkThere(pod, link) !== undefined;
            if (full) throw Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' });
            last = structuredClone(current.save());
          },
        }),
      );
      network.close();
      expect((error as Error).message).toContain('ENOSPC');
      expect(full).toBe(true);
      expect(linkThere(pod, link), 'the undo removed it').toBeUndefined();
      const made = JSON.stringify(last).match(new RegExp(`\\{"step":"create-link","name":"${link}"[^}]*\\}`));
      expect(made?.[0], 'the last record written names the link').toBeDefined();
      expect(JSON.parse(made![0]).index, 'by the index it was made at').toBeGreaterThan(0);

      // Someone else's link under that name, in vcnet's link group (as another attach leaves one).
      pod.exec('ip', namesake);
      pod.exec('ip', ['link', 'set', link, 'group', String(VCNET_LINK_GROUP)]);
      const theirs = linkThere(pod, link)!;

      const again = Network.load(last!);
      try {
        await again.removeEndpoints();
      } finally {
        again.close();
      }
      expect(linkThere(pod, link)?.ifindex, `${link} is someone else's`).toBe(theirs.ifindex);
    });
  }
});
