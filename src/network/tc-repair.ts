/**
 * What `vcnet watch` does when tc objects vcnet made for an attached endpoint have gone while the
 * endpoint stays: someone ran `tc qdisc del dev eth0 ingress`, another tool flushed the link's
 * ingress, a CNI plugin made the link's qdiscs again, an htb was deleted. Without its redirect
 * filters a tcfilter VM gets no frame from its pod link (or the pod link none from the VM), and
 * without its htb the rate limit is gone.
 *
 * The record is the reference, read step by step: each ingress qdisc, u32 redirect filter and htb
 * rate limit it says vcnet added, on a link that is still there, is looked for in the kernel, and
 * one that is missing is made again exactly as the record has it (same link, handle, parent,
 * priority, protocol, redirect target; an htb with the rate attach gave it), so the record stays
 * true and detach undoes it as before. A place another tool's object holds now (a filter of its
 * own at vcnet's priority, a clsact where vcnet's ingress was, a root qdisc of its own where the htb
 * was) is left as it is: the outcome says what holds it and what to do. Pure policy over a
 * NetlinkHandle: the caller holds the sandbox lock and says the outcome.
 */
import { InterfaceFlag } from '../netlink/codec/link/message.js';
import type { Link } from '../netlink/codec/link.js';
import { MATCH_ALL_U32_KEYS } from '../netlink/codec/tc/filter/u32.js';
import type { Filter } from '../netlink/codec/tc/filter.js';
import { formatHandle, INGRESS_HANDLE, TC_H_INGRESS, TC_H_ROOT } from '../netlink/codec/tc/message.js';
import type { Qdisc } from '../netlink/codec/tc/qdisc.js';
import type { NetlinkHandle } from '../netlink/handle.js';
import { isVcnetRedirect } from './foreign-filters.js';
import { addIngressQdiscRetrying } from './ingress-qdisc.js';
import { type AttachedPlumbing, isUnfinished } from './model/plumbing-context.js';
import { DEFAULT_ROOT_QDISCS, ifbName } from './plan/plan-attach.js';
import type { PlumbingStep, RateLimit } from './plan/types.js';

/** What the check did about one tc object of an endpoint's record. */
export interface TrafficControlRepair {
  /** The link the object is on: the pod link, or vcnet's tap, macvtap or ifb. */
  link: string;
  /** The object, as tc names it: `ingress qdisc ffff:`, `filter prio 49152 (redirect to tap0_kata)`, `htb qdisc 1:`. */
  object: string;
  /**
   * `restored`: it was gone and is made again as recorded. `taken`: another tool's object holds its
   * place now, left as it is. `failed`: it is gone and could not be made again (the message says why).
   */
  outcome: 'restored' | 'taken' | 'failed';
  /** For people: link, object, what was done and, when it was not, what to do. */
  message: string;
}

type FilterRecord = Extract<PlumbingStep, { step: 'add-filter' }>;
type QdiscRecord = Extract<PlumbingStep, { step: 'add-qdisc' }>;

const HTB_ROOT = 0x10000; // 1:
const HTB_CLASSES = [
  { handle: 0x10001, parent: HTB_ROOT }, // 1:1
  { handle: 0x10002, parent: 0x10001 }, // 1:2
];

/** The part of an endpoint the check reads: its guest name, pod link and plumbing record. */
export interface RepairableEndpoint {
  name: string;
  properties: { link: Pick<Link, 'name' | 'index'> };
  plumbing: Pick<AttachedPlumbing, 'model' | 'steps' | 'tapName' | 'tapIndex' | 'partial'> | undefined;
}

/**
 * Puts back the tc objects `endpoint`'s record says vcnet made that are missing now; says what it
 * did (nothing when all are there). An endpoint whose device (tap, macvtap) is gone is left to the
 * lost-device path, a pod link that is gone to the link-removed path: nothing is checked for them.
 * `rateLimit` is the sandbox's (the one attach used): an htb is made again with it.
 */
export async function repairTrafficControl(
  handle: Pick<
    NetlinkHandle,
    'links' | 'qdiscs' | 'filters' | 'addQdisc' | 'addFilter' | 'addHtbClass' | 'delQdisc' | 'setLink'
  >,
  endpoint: RepairableEndpoint,
  rateLimit: RateLimit | undefined,
): Promise<TrafficControlRepair[]> {
  const plumbing = endpoint.plumbing;
  if (!plumbing || isUnfinished(plumbing) || plumbing.partial) return [];
  const steps = plumbing.steps;
  if (!steps.some((step) => step.step === 'add-qdisc' || step.step === 'add-filter')) return [];
  const links = await handle.links();
  const byIndex = new Map(links.map((link) => [link.index, link]));
  const pod = byIndex.get(endpoint.properties.link.index);
  if (!pod || pod.name !== endpoint.properties.link.name) return [];
  // The device the VM uses: a tap or macvtap vcnet made, or (existing) the pod link itself.
  if (plumbing.tapIndex > 0 && byIndex.get(plumbing.tapIndex)?.name !== plumbing.tapName) return [];
  const made = new Map(
    steps.flatMap((step) => (step.step === 'create-link' && step.index !== undefined ? [[step.name, step.index]] : [])),
  );
  /** The link a record names now: by ifindex when it has one (its own, or the create-link's), else by name. */
  const resolve = (name: string, index?: number): Link | undefined => {
    const known =
      index ?? made.get(name) ?? (name === plumbing.tapName && plumbing.tapIndex > 0 ? plumbing.tapIndex : undefined);
    if (known !== undefined) {
      const link = byIndex.get(known);
      return link && (link.name === name || known === pod.index) ? link : undefined;
    }
    return links.find((link) => link.name === name);
  };
  const outcomes: TrafficControlRepair[] = [];
  const qdiscsOf = new Map<number, Qdisc[]>();
  const qdiscs = async (link: Link) => {
    let known = qdiscsOf.get(link.index);
    if (!known) {
      known = await handle.qdiscs(link.index);
      qdiscsOf.set(link.index, known);
    }
    return known;
  };
  /** Links whose ingress hook holds a qdisc that is not the one vcnet recorded: their filters are not looked at. */
  const ingressTaken = new Set<number>();
  for (const record of steps) {
    if (record.step !== 'add-qdisc') continue;
    const link = resolve(record.link, record.index);
    if (!link) continue;
    if (record.kind === 'ingress') {
      const outcome = await repairIngress(handle, link, record, await qdiscs(link));
      if (outcome) outcomes.push(outcome);
      if (outcome?.outcome === 'taken' || outcome?.outcome === 'failed') ingressTaken.add(link.index);
      else if (outcome) qdiscsOf.delete(link.index);
    }
  }
  for (const record of steps) {
    if (record.step !== 'add-filter') continue;
    const link = resolve(record.link, record.index);
    if (!link || ingressTaken.has(link.index)) continue;
    const target = redirectTarget(record, link, pod, plumbing.tapIndex, resolve);
    // The link it redirects to is gone: the lost-device or link-removed path says so.
    if (!target) continue;
    const outcome = await repairFilter(handle, link, record, target, await qdiscs(link), steps);
    if (outcome) outcomes.push(outcome);
  }
  for (const record of steps) {
    if (record.step !== 'add-qdisc' || record.kind !== 'htb') continue;
    const link = resolve(record.link, record.index);
    if (!link) continue;
    const rate = htbRate(plumbing.model, plumbing.tapName, link, pod, rateLimit);
    const outcome = await repairHtb(handle, link, record, rate, await qdiscs(link), link.index === pod.index);
    if (outcome) outcomes.push(outcome);
  }
  return outcomes;
}

async function repairIngress(
  handle: Pick<NetlinkHandle, 'addQdisc' | 'qdiscs'>,
  link: Link,
  record: QdiscRecord,
  qdiscs: readonly Qdisc[],
): Promise<TrafficControlRepair | undefined> {
  const hook = qdiscs.find((qdisc) => qdisc.parent === TC_H_INGRESS);
  const object = `ingress qdisc ${formatHandle(record.handle)}`;
  if (hook?.kind === 'ingress' && hook.handle === record.handle) return undefined;
  if (hook) {
    return {
      link: link.name,
      object,
      outcome: 'taken',
      message: `${link.name}'s ingress hook, where vcnet's ${object} was, holds another tool's ${hook.kind} qdisc ${formatHandle(hook.handle)}: vcnet left it, and its redirect filters on ${link.name} are not there; \`tc qdisc del dev ${link.name} ${hook.kind === 'clsact' ? 'clsact' : 'ingress'}\` lets the watch put vcnet's back, or \`vcnet del-iface\` and \`vcnet add-iface\` attach the link again beside it`,
    };
  }
  try {
    await addIngressQdiscRetrying(handle, link);
  } catch (error) {
    return {
      link: link.name,
      object,
      outcome: 'failed',
      message: `vcnet's ${object} on ${link.name} is gone and could not be made again (${(error as Error).message}); the watch tries again with the next tc change on it, or \`vcnet del-iface\` and \`vcnet add-iface\` attach the link again`,
    };
  }
  return {
    link: link.name,
    object,
    outcome: 'restored',
    message: `vcnet's ${object} on ${link.name} was gone (deleted by someone else): made again as recorded`,
  };
}

/** The link a recorded redirect filter sends to now; undefined when that link is gone. */
function redirectTarget(
  record: FilterRecord,
  link: Link,
  pod: Link,
  tapIndex: number,
  resolve: (name: string, index?: number) => Link | undefined,
): Link | undefined {
  if (record.redirectTo) return resolve(record.redirectTo.link, record.redirectTo.index);
  // Records of older builds do not say: the pod link's filter sends to the tap, the tap's to the pod link.
  if (link.index === pod.index) return tapIndex > 0 ? resolve('', tapIndex) : undefined;
  return link.index === tapIndex ? pod : undefined;
}

function describeForeign(filters: readonly Filter[]): string {
  const kinds = [...new Set(filters.map((filter) => filter.kind))];
  const redirects = filters.flatMap((filter) =>
    'actions' in filter.options
      ? filter.options.actions.flatMap((action) =>
          action.kind === 'mirred' && 'targetIndex' in action
            ? [`${action.mode} to ifindex ${action.targetIndex}`]
            : [],
        )
      : [],
  );
  return [...kinds, ...new Set(redirects)].join(', ');
}

async function repairFilter(
  handle: Pick<NetlinkHandle, 'filters' | 'addFilter'>,
  link: Link,
  record: FilterRecord,
  target: Link,
  qdiscs: readonly Qdisc[],
  steps: readonly PlumbingStep[],
): Promise<TrafficControlRepair | undefined> {
  const object = `filter prio ${record.priority} (redirect to ${target.name})`;
  const hook = qdiscs.find((qdisc) => qdisc.parent === TC_H_INGRESS);
  if (!hook) {
    // vcnet's filter was in another tool's ingress qdisc (attach found it there), which is gone: the
    // record does not say vcnet made one, so it does not make one nobody would delete.
    const ours = steps.some(
      (step) => step.step === 'add-qdisc' && step.kind === 'ingress' && step.link === record.link,
    );
    if (ours) return undefined;
    return {
      link: link.name,
      object,
      outcome: 'failed',
      message: `${link.name}'s ingress qdisc, another tool's that vcnet's ${object} was in, is gone and took the filter with it: vcnet does not make a qdisc it does not own; \`tc qdisc add dev ${link.name} ingress\` lets the watch put its filter back, or \`vcnet del-iface\` and \`vcnet add-iface\` attach the link again`,
    };
  }
  const present = (await handle.filters(link.index, record.parent)).filter(
    (filter) => filter.priority === record.priority,
  );
  if (present.length > 0) {
    const targets = new Set([target.index]);
    const strangers = present.filter((filter) => !isVcnetRedirect(filter, record.kind, targets));
    if (strangers.length === 0) return undefined;
    return {
      link: link.name,
      object,
      outcome: 'taken',
      message: `vcnet's ${object} on ${link.name} is gone and another tool's filter holds its priority now (${describeForeign(strangers)}): vcnet left it, and frames ${link.name} receives ${strangers.length < present.length ? 'may not' : 'do not'} reach ${target.name}; \`tc filter del dev ${link.name} ingress prio ${record.priority}\` lets the watch put vcnet's back, or \`vcnet del-iface\` removes the endpoint`,
    };
  }
  try {
    await handle.addFilter({
      index: link.index,
      parent: record.parent,
      priority: record.priority,
      protocol: record.protocol,
      options: {
        kind: 'u32',
        keys: MATCH_ALL_U32_KEYS,
        actions: [{ kind: 'mirred', direction: 'egress', mode: 'redirect', targetIndex: target.index }],
      },
    });
  } catch (error) {
    return {
      link: link.name,
      object,
      outcome: 'failed',
      message: `vcnet's ${object} on ${link.name} is gone and could not be made again (${(error as Error).message}); frames ${link.name} receives do not reach ${target.name}: the watch tries again with the next tc change on it, or \`vcnet del-iface\` and \`vcnet add-iface\` attach the link again`,
    };
  }
  return {
    link: link.name,
    object,
    outcome: 'restored',
    message: `vcnet's ${object} on ${link.name} was gone (deleted by someone else${hook.kind === 'ingress' && hook.handle === INGRESS_HANDLE ? ', or its ingress qdisc' : ''}): made again as recorded`,
  };
}

/**
 * The rate an htb on `link` enforces, as attach placed it (plan-attach.ts): tcfilter rx on the tap,
 * tx on the pod link; a tap alone rx on it, tx on its ifb; a macvtap (or an existing one) tx on it,
 * rx on its ifb.
 */
function htbRate(
  model: AttachedPlumbing['model'],
  tapName: string,
  link: Link,
  pod: Link,
  rateLimit: RateLimit | undefined,
): number | undefined {
  const rx = rateLimit?.rxBitsPerSecond;
  const tx = rateLimit?.txBitsPerSecond;
  const device = model === 'existing' ? pod.name : tapName;
  if (model === 'tcfilter') return link.name === tapName ? rx : link.index === pod.index ? tx : undefined;
  const onDevice = link.name === device;
  const onIfb = link.name === ifbName(device);
  if (model === 'none') return onDevice ? rx : onIfb ? tx : undefined;
  if (model === 'macvtap' || model === 'existing') return onDevice ? tx : onIfb ? rx : undefined;
  return undefined;
}

async function repairHtb(
  handle: Pick<NetlinkHandle, 'addQdisc' | 'addHtbClass' | 'delQdisc' | 'setLink' | 'links'>,
  link: Link,
  record: QdiscRecord,
  rate: number | undefined,
  qdiscs: readonly Qdisc[],
  isPodLink: boolean,
): Promise<TrafficControlRepair | undefined> {
  const object = `htb qdisc ${formatHandle(record.handle)}`;
  // vcnet's htb is always 1: (plan-attach.ts htbSteps); another handle is no record of its.
  if (record.handle !== HTB_ROOT) return undefined;
  const root = qdiscs.find((qdisc) => qdisc.parent === TC_H_ROOT);
  if (root?.kind === 'htb' && root.handle === record.handle) return undefined;
  // A link that is down has the noop qdisc until it comes up: nothing to shape, and htb could not be told apart.
  if ((link.flags & InterfaceFlag.UP) === 0 && (!root || root.kind === 'noop')) return undefined;
  if (root && root.handle !== 0 && !DEFAULT_ROOT_QDISCS.has(root.kind)) {
    return {
      link: link.name,
      object,
      outcome: 'taken',
      message: `vcnet's rate limit on ${link.name} (${object}) is gone and another tool's ${root.kind} qdisc ${formatHandle(root.handle)} is its root now: vcnet left it, and the rate limit does not apply; \`tc qdisc del dev ${link.name} root\` lets the watch make vcnet's htb again`,
    };
  }
  if (rate === undefined) {
    return {
      link: link.name,
      object,
      outcome: 'failed',
      message: `vcnet's rate limit on ${link.name} (${object}) is gone and the sandbox's record has no rate for it: it is not made again; \`vcnet del-iface\` and \`vcnet add-iface\` attach the link again with the sandbox's rate limits`,
    };
  }
  const queueLength = link.txQueueLength;
  try {
    await handle.addQdisc({
      index: link.index,
      handle: record.handle,
      parent: record.parent,
      options: { kind: 'htb', defaultClass: 2 },
    });
    try {
      for (const htbClass of HTB_CLASSES) {
        await handle.addHtbClass({ index: link.index, ...htbClass, rateBitsPerSecond: rate });
      }
    } catch (error) {
      // Nothing half-built: the qdisc goes again with whatever class it got.
      await handle.delQdisc(link.index, record.handle, record.parent).catch(() => {});
      throw error;
    }
  } catch (error) {
    return {
      link: link.name,
      object,
      outcome: 'failed',
      message: `vcnet's rate limit on ${link.name} (${object}, ${rate} bit/s) is gone and could not be made again (${(error as Error).message}): the link is not rate limited; the watch tries again with the next tc change on it, or \`vcnet del-iface\` and \`vcnet add-iface\` attach the link again`,
    };
  }
  // A link with no transmit queue (CNI's veths) gets one of 1000 with its first qdisc: set back, as attach does.
  if (isPodLink && queueLength === 0) {
    const now = (await handle.links()).find((candidate) => candidate.index === link.index);
    if (now?.txQueueLength !== undefined && now.txQueueLength !== 0)
      await handle.setLink(link.index, { txQueueLength: 0 }).catch(() => {});
  }
  return {
    link: link.name,
    object,
    outcome: 'restored',
    message: `vcnet's rate limit on ${link.name} (${object}, ${rate} bit/s) was gone (deleted by someone else): made again as attach makes it`,
  };
}
