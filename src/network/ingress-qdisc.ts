/**
 * Adding an ingress qdisc, retried while the kernel answers EBUSY: another tc user changing the same
 * link's qdiscs at that moment makes the kernel refuse for a short while. As Kata (addQdiscIngress):
 * 5 tries, (i+1)×10 ms apart, EBUSY only. Then the error names what holds the link's ingress hook.
 * The attach engine sends ingress qdiscs in its one batch and calls this only for one the kernel
 * refused there with EBUSY.
 */

import { VcnetError } from '../errors.js';
import { formatHandle, TC_H_INGRESS } from '../netlink/codec/tc/message.js';
import { ingressQdisc, type Qdisc } from '../netlink/codec/tc/qdisc.js';
import type { NetlinkHandle } from '../netlink/handle.js';

const INGRESS_QDISC_ATTEMPTS = 5;

export interface IngressRetryOptions {
  attempts?: number;
  /** Milliseconds to wait after failed attempt `attempt` (0-based); Kata's (i+1)×10 ms by default. */
  delayMs?: (attempt: number) => number;
  sleep?: (milliseconds: number) => Promise<void>;
}

/**
 * The kernel kept refusing vcnet's ingress qdisc on a link with EBUSY (`VCNET_INGRESS_BUSY`): another tc user
 * is changing it at the same time. Attach again once it is done.
 */
export class IngressQdiscBusyError extends VcnetError {
  static override readonly errorName: string = 'IngressQdiscBusyError';
  constructor(link: string, attempts: number, holders: Qdisc[], cause: unknown) {
    const holding =
      holders.length > 0
        ? holders.map((qdisc) => `a ${qdisc.kind} qdisc ${formatHandle(qdisc.handle)}`).join(', ')
        : 'no qdisc vcnet can see (a change in progress)';
    super(
      'VCNET_INGRESS_BUSY',
      `the kernel kept refusing an ingress qdisc on ${link} (EBUSY, ${attempts} tries): its ingress hook is held by ${holding}`,
      {
        value: link,
        hint: `another tc user is changing ${link} at the same time: let it finish (tc qdisc show dev ${link} ingress) and attach again`,
        cause,
      },
    );
  }
}

const wait = (milliseconds: number) => new Promise<void>((resolve) => setTimeout(resolve, milliseconds));

/** Adds `link`'s ingress qdisc; EBUSY is retried with backoff, anything else is thrown at once. */
export async function addIngressQdiscRetrying(
  handle: Pick<NetlinkHandle, 'addQdisc' | 'qdiscs'>,
  link: { index: number; name: string },
  options: IngressRetryOptions = {},
): Promise<void> {
  const attempts = options.attempts ?? INGRESS_QDISC_ATTEMPTS;
  const delayMs = options.delayMs ?? ((attempt) => (attempt + 1) * 10);
  const sleep = options.sleep ?? wait;
  let lastError: unknown;
  for (let attempt = 0; attempt < attempts; attempt++) {
    try {
      await handle.addQdisc(ingressQdisc(link.index), `add ingress qdisc ffff: on ${link.name}`);
      return;
    } catch (error) {
      if ((error as { errno?: unknown }).errno !== 'EBUSY') throw error;
      lastError = error;
      if (attempt < attempts - 1) await sleep(delayMs(attempt));
    }
  }
  const holders = await handle
    .qdiscs(link.index)
    .then((qdiscs) => qdiscs.filter((qdisc) => qdisc.parent === TC_H_INGRESS))
    .catch(() => []);
  throw new IngressQdiscBusyError(link.name, attempts, holders, lastError);
}
