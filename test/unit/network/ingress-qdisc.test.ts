/** The ingress qdisc add retried on EBUSY as Kata does (5 tries, (i+1)×10 ms), then a clear error. */
import { describe, expect, it } from 'vitest';
import { TC_H_INGRESS } from '../../../src/netlink/codec/tc/message.js';
import type { Qdisc, QdiscSpec } from '../../../src/netlink/codec/tc/qdisc.js';
import { addIngressQdiscRetrying } from '../../../src/network/ingress-qdisc.js';

function fakeHandle(failures: string[], present: Qdisc[] = []) {
  const added: QdiscSpec[] = [];
  return {
    added,
    addQdisc: async (spec: QdiscSpec) => {
      const errno = failures.shift();
      if (errno) throw Object.assign(new Error(`add qdisc failed: ${errno}`), { errno });
      added.push(spec);
    },
    qdiscs: async () => present,
  };
}

describe('ingress qdisc with EBUSY retry', () => {
  it('retries EBUSY with (i+1)×10 ms between tries and succeeds', async () => {
    const handle = fakeHandle(['EBUSY', 'EBUSY']);
    const slept: number[] = [];
    await addIngressQdiscRetrying(handle, { index: 4, name: 'eth0' }, { sleep: async (ms) => void slept.push(ms) });
    expect(slept).toEqual([10, 20]);
    expect(handle.added).toEqual([expect.objectContaining({ index: 4, parent: TC_H_INGRESS })]);
  });

  it('gives up after 5 tries and names what holds the ingress hook', async () => {
    const clsact: Qdisc = {
      index: 4,
      handle: 0xffff0000,
      parent: TC_H_INGRESS,
      kind: 'clsact',
      options: { kind: 'clsact' } as Qdisc['options'],
    };
    const handle = fakeHandle(['EBUSY', 'EBUSY', 'EBUSY', 'EBUSY', 'EBUSY'], [clsact]);
    const slept: number[] = [];
    const attempt = addIngressQdiscRetrying(
      handle,
      { index: 4, name: 'eth0' },
      { sleep: async (ms) => void slept.push(ms) },
    );
    await expect(attempt).rejects.toMatchObject({
      code: 'VCNET_INGRESS_BUSY',
      value: 'eth0',
      message: expect.stringMatching(/ingress qdisc on eth0 \(EBUSY, 5 tries\).*held by a clsact qdisc ffff:/),
    });
    expect(slept).toEqual([10, 20, 30, 40]);
  });

  it('does not retry other errors', async () => {
    const handle = fakeHandle(['EEXIST']);
    await expect(
      addIngressQdiscRetrying(handle, { index: 4, name: 'eth0' }, { sleep: async () => {} }),
    ).rejects.toThrow(/EEXIST/);
    expect(handle.added).toEqual([]);
  });
});
