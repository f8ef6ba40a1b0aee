/**
 * CHECK of vcnet-cni: verify that what ADD made is still in place as recorded (its links, qdiscs and
 * filters, and the pod link's MAC and MTU), listing every difference.
 */
import { InterfaceFlag } from '../netlink/codec/link/message.js';
import type { Link } from '../netlink/codec/link.js';
import { formatHandle } from '../netlink/codec/tc/message.js';
import type { NetlinkHandle } from '../netlink/handle.js';
import { damagedIdentityField, RecordedIdentityDamagedError, sameNamespace } from '../netns/namespace-identity.js';
import { isUnfinished } from '../network/model/plumbing-context.js';
import { linkResolver } from '../network/plan/plan-detach.js';
import type { PlumbingStep } from '../network/plan/types.js';
import { earlierBootOf, earlierBootReason } from '../network/state/boot-id.js';
import { requirePreviousResult } from './config.js';
import { CniError } from './errors.js';
import { type CniRequest, storeOf, usableNamespace } from './request.js';
import type { CniAttachmentState } from './state.js';

/** Verifies that what ADD made is still there, as recorded; throws CHECK_FAILED listing every difference. */
export async function check(request: CniRequest): Promise<void> {
  const { environment, config } = request;
  const previous = requirePreviousResult(config, 'CHECK');
  const namespace = usableNamespace(environment.namespacePath);
  const store = storeOf(request);
  const fail = (problems: string[], drifted = false) =>
    new CniError(
      'VCNET_CNI_CHECK_FAILED',
      `${environment.interfaceName} of container ${environment.containerId} is not as ADD left it: ${problems.join('; ')}`,
      {
        value: problems,
        hint: drifted
          ? `the VM's NIC was built from ${environment.interfaceName} as ADD recorded it: put vcnet-cni last in the chain, after every plugin that changes the interface (tuning...), and change the pod's MAC or MTU only through them; the runtime recreates the pod network (DEL, then ADD) to repair it`
          : 'the runtime recreates the pod network (DEL, then ADD) to repair it',
      },
    );
  const nothingRecorded = () => fail([`no completed ADD is recorded in ${store.statePath}`]);
  // As DEL: with nothing recorded, CHECK answers without making the state or lock directories.
  if (!store.hasRecord() && !store.hasLockFile()) {
    namespace.opened.close();
    throw nothingRecorded();
  }
  await store
    .withLock(async () => {
      const state = store.read();
      if (!state?.device) throw nothingRecorded();
      const earlier = earlierBootOf(state);
      if (earlier) throw fail([`its record ${store.statePath} is stale: ${earlierBootReason(earlier)}`]);
      if (!sameNamespace(state.namespace, namespace.opened.identity)) {
        const found = namespace.opened.identity;
        const damaged = damagedIdentityField(state.namespace, found, state.createdAt);
        if (damaged) throw new RecordedIdentityDamagedError(store.statePath, damaged, state.namespace, found);
        throw fail([`ADD attached ${state.namespace.path}, not this namespace`]);
      }
      const device = state.device;
      const problems: string[] = [];
      if (!previous.interfaces?.some((entry) => entry.name === device.name && entry.sandbox === namespace.path)) {
        problems.push(`prevResult does not list ${device.name} in ${namespace.path}`);
      }
      // On the socket the namespace's cookie was read on: CHECK's one socket there.
      const handle = namespace.opened.netlinkHandle(namespace.opened.entryPath);
      let drift: string[];
      try {
        problems.push(...(await plumbingProblems(handle, state)));
        drift = podLinkDrift(await handle.links(), state);
      } finally {
        await handle.close();
      }
      if (problems.length + drift.length > 0) throw fail([...problems, ...drift], drift.length > 0);
    }, config.lockTimeoutMs)
    .finally(() => namespace.opened.close());
}

/**
 * The pod link's MAC and MTU as ADD left them: as it found them, then what its own steps set (the
 * macvtap model gives the pod link a private MAC, its own MAC going to the VM).
 */
function podLinkAsLeft(endpoint: CniAttachmentState['network']['endpoints'][number]) {
  const expected: { address?: string; mtu?: number } = {
    ...(endpoint.properties.link.address ? { address: endpoint.properties.link.address } : {}),
    mtu: endpoint.properties.link.mtu,
  };
  for (const step of endpoint.plumbing?.steps ?? []) {
    if (step.step !== 'change-link' || step.link !== endpoint.name) continue;
    // A record without `set` (older vcnet) does not say what the MAC became: not compared.
    if ('address' in step.before) {
      if (step.set?.address) expected.address = step.set.address;
      else delete expected.address;
    }
    if ('mtu' in step.before) {
      if (step.set?.mtu !== undefined) expected.mtu = step.set.mtu;
      else delete expected.mtu;
    }
  }
  return expected;
}

/**
 * A pod link whose MAC or MTU changed since ADD (a plugin after vcnet-cni in the chain, a person):
 * the VM's NIC still has what was recorded, so its traffic no longer matches the pod's.
 */
function podLinkDrift(links: readonly Link[], state: CniAttachmentState): string[] {
  const resolve = linkResolver(links);
  const problems: string[] = [];
  for (const endpoint of state.network.endpoints) {
    // The same link (by ifindex): a replaced or missing one is reported by plumbingProblems.
    const link = resolve(endpoint.name, endpoint.properties.link.index);
    if (!link || link.name !== endpoint.name) continue;
    const expected = podLinkAsLeft(endpoint);
    if (expected.address && link.address && expected.address.toLowerCase() !== link.address.toLowerCase())
      problems.push(`${endpoint.name} MAC changed since ADD: recorded ${expected.address}, now ${link.address}`);
    if (expected.mtu !== undefined && link.mtu !== expected.mtu)
      problems.push(`${endpoint.name} MTU changed since ADD: recorded ${expected.mtu}, now ${link.mtu}`);
  }
  return problems;
}

/** Differences between the namespace and the steps ADD recorded (links, qdiscs and filters it created). */
async function plumbingProblems(handle: NetlinkHandle, state: CniAttachmentState): Promise<string[]> {
  // Links by name, and pod links by ifindex (a link made again under the same name is not the one ADD plumbed).
  const resolve = linkResolver(await handle.links());
  const problems: string[] = [];
  if (!resolve(state.interfaceName)) {
    // Renamed (by a plugin after vcnet-cni, a person), the link ADD attached is still there by its
    // ifindex: saying so tells the reader it was not deleted, and where its plumbing now is.
    const recorded = state.network.endpoints.find((endpoint) => endpoint.name === state.interfaceName);
    const renamed = recorded ? resolve(recorded.name, recorded.properties.link.index) : undefined;
    problems.push(
      renamed
        ? `${state.interfaceName} is missing: the link ADD attached (ifindex ${renamed.index}) is named ${renamed.name} now`
        : `${state.interfaceName} is missing`,
    );
  }
  const steps: PlumbingStep[] = [];
  for (const endpoint of state.network.endpoints) {
    if (isUnfinished(endpoint.plumbing)) problems.push(`the attach of ${endpoint.name} never completed`);
    steps.push(...(endpoint.plumbing?.steps ?? []));
  }
  const missingLinks = new Set<string>();
  for (const step of steps) {
    if (step.step !== 'create-link') continue;
    const link = resolve(step.name);
    if (!link) {
      missingLinks.add(step.name);
      problems.push(`${step.kind} ${step.name} is missing`);
    } else if ((link.flags & InterfaceFlag.UP) === 0) {
      problems.push(`${step.name} is down`);
    }
  }
  // A replaced or missing link is said once, however many of ADD's qdiscs and filters were on it.
  const linksReported = new Set<string>();
  for (const step of steps) {
    if (step.step !== 'add-qdisc' && step.step !== 'add-filter') continue;
    const link = resolve(step.link, step.index);
    if (!link) {
      if (linksReported.has(step.link)) continue;
      linksReported.add(step.link);
      const namesake = resolve(step.link);
      if (namesake)
        problems.push(`${step.link} was replaced since ADD (ifindex ${step.index} then, ${namesake.index} now)`);
      else if (!missingLinks.has(step.link) && step.link !== state.interfaceName)
        problems.push(`${step.link} is missing`);
      continue;
    }
    if (step.step === 'add-qdisc') {
      const present = (await handle.qdiscs(link.index)).some(
        (qdisc) => qdisc.handle === step.handle && qdisc.parent === step.parent && qdisc.kind === step.kind,
      );
      if (!present) problems.push(`${step.kind} qdisc ${formatHandle(step.handle)} on ${step.link} is missing`);
    } else {
      // A dump under a qdisc that is gone fails: then the filter is gone too.
      const filters = await handle.filters(link.index, step.parent).catch(() => []);
      const present = filters.some((filter) => filter.priority === step.priority && filter.kind === step.kind);
      if (!present) problems.push(`${step.kind} filter (priority ${step.priority}) on ${step.link} is missing`);
    }
  }
  return problems;
}
