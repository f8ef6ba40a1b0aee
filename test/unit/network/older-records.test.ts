/** The records an older build left out, added when its record is read (src/network/plan/older-records.ts). */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { impliedQueueLengthRecord } from '../../../src/network/plan/older-records.js';
import type { PlumbingStep } from '../../../src/network/plan/types.js';

/** a015099's tcfilter attach of a pod veth with txqueuelen 0 (ingress qdisc on eth0, no change-link). */
const old = JSON.parse(
  readFileSync(fileURLToPath(new URL('../../fixtures/state/tcfilter-attach-a015099.json', import.meta.url)), 'utf8'),
);
const endpoint = old.network.endpoints[0] as {
  properties: { link: { name: string; index: number; txQueueLength: number } };
  plumbing: { steps: PlumbingStep[] };
};
const link = endpoint.properties.link;
const steps = endpoint.plumbing.steps;

describe('impliedQueueLengthRecord', () => {
  it('gives an older tcfilter record the change-link a newer attach records: 0 before, 1000 from the qdisc', () => {
    expect(impliedQueueLengthRecord(link, steps)).toEqual({
      step: 'change-link',
      link: 'eth0',
      index: link.index,
      before: { txQueueLength: 0 },
      set: { txQueueLength: 1000 },
    });
  });

  it('adds nothing to a record that holds the queue length (this build writes one), nor twice', () => {
    const current: PlumbingStep = {
      step: 'change-link',
      link: 'eth0',
      index: link.index,
      before: { txQueueLength: 0 },
      set: { txQueueLength: 0 },
    };
    expect(impliedQueueLengthRecord(link, [...steps, current])).toBeUndefined();
    expect(impliedQueueLengthRecord(link, [...steps, impliedQueueLengthRecord(link, steps)!])).toBeUndefined();
  });

  it('adds nothing for a pod link that had a queue, or when attach put no qdisc on the pod link', () => {
    expect(impliedQueueLengthRecord({ ...link, txQueueLength: 1000 }, steps)).toBeUndefined();
    const tapOnly = steps.filter((step) => !(step.step === 'add-qdisc' && step.link === 'eth0'));
    expect(impliedQueueLengthRecord(link, tapOnly)).toBeUndefined();
    // A qdisc on another pod link (same name, another ifindex: eth0 replaced) is not this link's.
    expect(impliedQueueLengthRecord({ ...link, index: link.index + 10 }, steps)).toBeUndefined();
  });
});
