/**
 * What the records of older builds leave unsaid, and this build can still tell for certain.
 *
 * A pod link without a transmit queue (CNI's veths: txqueuelen 0) gets the kernel's default queue
 * of 1000 with its first qdisc, and keeps it when the qdisc is deleted. Since b514d1e
 * attach sets it back to 0 and records that as a change-link step; builds before it added their
 * ingress (or htb) qdisc on the pod link and recorded nothing of the queue, so this build's detach,
 * gc and CNI DEL of their records left the pod link at 1000. Their record does hold the queue length
 * the link had before attach (the scanned link, `properties.link.txQueueLength`), and the qdisc step
 * says vcnet's attach gave the link its first qdisc: so that change is vcnet's, and its undo is the
 * step a newer attach would have recorded, with `set` the length the kernel gave.
 */
import type { Link } from '../../netlink/codec/link.js';
import type { PlumbingStep } from './types.js';

/** The transmit queue length the kernel gives a link without one when it gets a qdisc (DEFAULT_TX_QUEUE_LEN). */
export const QUEUE_LENGTH_WITH_FIRST_QDISC = 1000;

/**
 * The change-link record an older build's attach left out: undefined unless `link` (the pod link
 * as scanned before attach) had no transmit queue, the steps add a qdisc on it, and no step records
 * its queue length. Detach then puts 0 back only where the link still has 1000; any other length
 * is someone else's since, and is left with a notice (plan-detach.ts attributesToRestore).
 */
export function impliedQueueLengthRecord(
  link: Pick<Link, 'name' | 'index' | 'txQueueLength'>,
  steps: readonly PlumbingStep[],
): PlumbingStep | undefined {
  if (link.txQueueLength !== 0) return undefined;
  const onPodLink = (step: PlumbingStep): boolean =>
    step.step !== 'create-link' && (step.index === undefined ? step.link === link.name : step.index === link.index);
  const qdisc = steps.find(
    (step): step is Extract<PlumbingStep, { step: 'add-qdisc' }> => step.step === 'add-qdisc' && onPodLink(step),
  );
  if (!qdisc) return undefined;
  const recorded = steps.some(
    (step) =>
      step.step === 'change-link' &&
      onPodLink(step) &&
      (step.before.txQueueLength !== undefined || step.set?.txQueueLength !== undefined),
  );
  if (recorded) return undefined;
  return {
    step: 'change-link',
    link: qdisc.link,
    ...(qdisc.index !== undefined ? { index: qdisc.index } : {}),
    ...(qdisc.madeAfter !== undefined ? { madeAfter: qdisc.madeAfter } : {}),
    before: { txQueueLength: 0 },
    set: { txQueueLength: QUEUE_LENGTH_WITH_FIRST_QDISC },
  };
}

/** The steps with the records older builds left out (above) added last, as attach records them now. */
export function withImpliedRecords(
  link: Pick<Link, 'name' | 'index' | 'txQueueLength'>,
  steps: PlumbingStep[],
): PlumbingStep[] {
  const implied = impliedQueueLengthRecord(link, steps);
  return implied ? [...steps, implied] : steps;
}
