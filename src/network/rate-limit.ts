/**
 * Rate limits as Kata sets them (rx_rate_limiter_max_rate / tx_rate_limiter_max_rate, bits per second):
 * an htb root qdisc 1: with default class 2, class 1:1 (rate = ceil = max) and class 1:2 under it
 * (rate = ceil = max).
 *   rx (towards the VM): on the tap side (tap or macvtap) egress.
 *   tx (from the VM):    tcfilter: on the pod interface's egress; other models: an ifb that the tap
 *                        side's ingress is redirected to, with the htb on the ifb.
 */
import { createHash } from 'node:crypto';
import { InvalidInputError } from '../errors.js';
import { INGRESS_HANDLE, TC_H_INGRESS, TC_H_ROOT } from '../netlink/codec/constants.js';
import { ingressQdisc, MATCH_ALL_U32_KEYS, parseHandle } from '../netlink/codec/traffic-control.js';
import type { LinkReference, PlumbingTransaction } from './models/plumbing-context.js';
import { VCNET_LINK_GROUP } from './plumbing.js';

export interface RateLimit {
  rxBitsPerSecond?: number;
  txBitsPerSecond?: number;
}

export const FILTER_PRIORITY = 49152;

export function validateRate(field: string, value: unknown): number | undefined {
  if (value === undefined || value === 0) return undefined;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new InvalidInputError(field, value, 'a whole number of bits per second (0 = no limit)');
  }
  return value;
}

/** Refuses to replace a root qdisc somebody else configured (Kata would silently replace it). */
function assertRootQdiscFree(transaction: PlumbingTransaction, link: LinkReference): void {
  const root = transaction.context.qdiscs.find((qdisc) => qdisc.index === link.index && qdisc.parent === TC_H_ROOT);
  const defaults = new Set(['noqueue', 'pfifo_fast', 'fq_codel', 'mq', 'noop', 'pfifo', 'fq']);
  if (root && root.handle !== 0 && !defaults.has(root.kind)) {
    throw new InvalidInputError(
      `root qdisc of ${link.name}`,
      root.kind,
      'a link without a configured root qdisc',
      'another tool configured traffic shaping on this link: remove it or disable vcnet rate limiting',
    );
  }
}

/** Queues the htb tree on `link` in the transaction. */
export function addHtbLimit(transaction: PlumbingTransaction, link: LinkReference, bitsPerSecond: number): void {
  assertRootQdiscFree(transaction, link);
  const root = parseHandle('1:');
  transaction.add(
    (batch) =>
      batch.addQdisc({ index: link.index, handle: root, parent: TC_H_ROOT, options: { kind: 'htb', defaultClass: 2 } }),
    { step: 'add-qdisc', link: link.name, handle: root, parent: TC_H_ROOT, kind: 'htb' },
  );
  // Classes go with the qdisc, so they need no undo record of their own.
  transaction.add((batch) =>
    batch.addHtbClass({
      index: link.index,
      handle: parseHandle('1:1'),
      parent: root,
      rateBitsPerSecond: bitsPerSecond,
    }),
  );
  transaction.add((batch) =>
    batch.addHtbClass({
      index: link.index,
      handle: parseHandle('1:2'),
      parent: parseHandle('1:1'),
      rateBitsPerSecond: bitsPerSecond,
    }),
  );
}

/**
 * The ifb that shapes a tap's tx: `ifb<idx>_kata` next to `tap<idx>_kata`, and for any other name
 * (an existing macvtap such as `vm-nic0`) `ifb_` plus a hash of it, so it never collides with the
 * link it serves and stays within the kernel's 15 bytes.
 */
export function ifbName(tapName: string): string {
  const kata = /^tap(\d+)_kata$/.exec(tapName);
  if (kata) return `ifb${kata[1]}_kata`;
  return `ifb_${createHash('sha256').update(tapName).digest('hex').slice(0, 11)}`;
}

/**
 * tx limit through an ifb: create `ifb<idx>_kata`, redirect the tap side's ingress to it, shape there.
 * Needs a second commit: the ifb's index is only known after it exists.
 */
export async function addIfbLimit(
  transaction: PlumbingTransaction,
  tapSide: LinkReference,
  bitsPerSecond: number,
): Promise<void> {
  const handle = transaction.context.handle;
  const name = ifbName(tapSide.name);
  transaction.add((batch) => batch.addLink({ name, group: VCNET_LINK_GROUP, data: { kind: 'ifb' } }), {
    step: 'create-link',
    name,
    kind: 'ifb',
  });
  await transaction.commit();
  const ifb = await handle.linkByName(name);
  transaction.add((batch) => batch.setLink(ifb.index, { up: true }));
  const hasIngress = transaction.context.qdiscs.some((q) => q.index === tapSide.index && q.parent === TC_H_INGRESS);
  if (!hasIngress) {
    transaction.add((batch) => batch.addQdisc(ingressQdisc(tapSide.index)), {
      step: 'add-qdisc',
      link: tapSide.name,
      handle: parseHandle('ffff:'),
      parent: TC_H_INGRESS,
      kind: 'ingress',
    });
  }
  transaction.add(
    (batch) =>
      batch.addFilter({
        index: tapSide.index,
        parent: INGRESS_HANDLE,
        priority: FILTER_PRIORITY - 1,
        options: {
          kind: 'u32',
          keys: MATCH_ALL_U32_KEYS,
          actions: [{ kind: 'mirred', direction: 'egress', mode: 'redirect', targetIndex: ifb.index }],
        },
      }),
    {
      step: 'add-filter',
      link: tapSide.name,
      parent: TC_H_INGRESS,
      priority: FILTER_PRIORITY - 1,
      protocol: 3,
      kind: 'u32',
    },
  );
  addHtbLimit(transaction, ifb, bitsPerSecond);
}
