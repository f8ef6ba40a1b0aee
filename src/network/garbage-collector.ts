/**
 * `vcnet gc`: finds plumbing vcnet made whose sandbox is gone and removes it.
 *
 * vcnet's links carry the link group 0x7663. A link of that group that no sandbox state lists is an
 * orphan (its state was lost): gc deletes the filters that redirect to it, then the link. A state
 * whose namespace no longer exists is an orphan record: gc deletes the record.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { TC_H_INGRESS } from '../netlink/codec/constants.js';
import type { Link } from '../netlink/codec/link.js';
import { NetlinkHandle } from '../netlink/handle.js';
import { NETNS_RUN_DIRECTORY } from '../netns/namespace.js';
import { Network } from './network.js';
import { describeRecords } from './plan/apply.js';
import { VCNET_LINK_GROUP } from './plumbing.js';
import { SANDBOX_RECORD, type SandboxState } from './state/records.js';
import { SandboxStore, stateDirectory } from './state/store.js';

export interface GarbageItem {
  kind: 'link' | 'filter' | 'state';
  namespacePath: string;
  name: string;
  detail?: string;
}

export interface GarbageReport {
  dryRun: boolean;
  removed: GarbageItem[];
  kept: number;
}

function sandboxStates(root: string): Array<{ id: string; state: SandboxState | undefined }> {
  if (!existsSync(root)) return [];
  return readdirSync(root).flatMap((id) => {
    try {
      return [{ id, state: new SandboxStore(id, root).read<SandboxState>(SANDBOX_RECORD) }];
    } catch {
      return [{ id, state: undefined }];
    }
  });
}

export async function collectGarbage(
  options: { stateDirectory?: string; namespaces?: string[]; dryRun?: boolean } = {},
): Promise<GarbageReport> {
  const root = stateDirectory(options.stateDirectory);
  const report: GarbageReport = { dryRun: options.dryRun ?? false, removed: [], kept: 0 };
  const owned = new Map<string, Set<string>>();
  for (const entry of sandboxStates(root)) {
    const { id } = entry;
    let state = entry.state;
    if (!state) continue;
    const namespacePath = state.network.config.namespacePath;
    if (!existsSync(namespacePath)) {
      report.removed.push({ kind: 'state', namespacePath, name: id, detail: 'its namespace is gone' });
      if (!report.dryRun) new SandboxStore(id, root).remove();
      continue;
    }
    if (state.network.endpoints.some((endpoint) => endpoint.plumbing?.model === 'pending')) {
      state = await finishUnfinished(id, root, state, report);
      if (!state) continue;
    }
    const names = owned.get(namespacePath) ?? new Set<string>();
    for (const endpoint of state.network.endpoints) {
      for (const step of endpoint.plumbing?.steps ?? []) if (step.step === 'create-link') names.add(step.name);
    }
    owned.set(namespacePath, names);
  }

  const namespaces = new Set(options.namespaces ?? []);
  if (!options.namespaces) {
    if (existsSync(NETNS_RUN_DIRECTORY))
      for (const name of readdirSync(NETNS_RUN_DIRECTORY)) namespaces.add(join(NETNS_RUN_DIRECTORY, name));
    for (const path of owned.keys()) namespaces.add(path);
  }

  for (const namespacePath of namespaces) {
    let handle: NetlinkHandle;
    try {
      handle = NetlinkHandle.open(namespacePath);
    } catch {
      continue; // not a namespace we can enter (or gone meanwhile)
    }
    try {
      const links = await handle.links();
      const ours = owned.get(namespacePath) ?? new Set<string>();
      const orphans = links.filter((link) => link.group === VCNET_LINK_GROUP && !ours.has(link.name));
      report.kept += links.filter((link) => link.group === VCNET_LINK_GROUP).length - orphans.length;
      if (orphans.length === 0) continue;
      const orphanIndexes = new Set(orphans.map((link) => link.index));
      const batch = handle.changes();
      for (const link of links) {
        if (orphanIndexes.has(link.index)) continue;
        await collectRedirectFilters(handle, link, orphanIndexes, (priority, parent, protocol, target) => {
          report.removed.push({
            kind: 'filter',
            namespacePath,
            name: link.name,
            detail: `prio ${priority} redirect to #${target}`,
          });
          batch.deleteFilter({ index: link.index, parent, priority, protocol });
        });
      }
      for (const link of orphans) {
        report.removed.push({ kind: 'link', namespacePath, name: link.name, detail: link.kind ?? '' });
        batch.deleteLink(link.index, `delete orphan ${link.name}`);
      }
      if (!report.dryRun) await batch.send();
    } finally {
      handle.close();
    }
  }
  return report;
}

/**
 * A record with endpoints whose attach never completed (a crash, or an undo the kernel refused) and
 * whose lock is free: nobody is working on it, so gc undoes what those endpoints recorded. Returns the
 * record as it is afterwards (undefined when it is gone).
 */
async function finishUnfinished(
  id: string,
  root: string,
  state: SandboxState,
  report: GarbageReport,
): Promise<SandboxState | undefined> {
  const store = new SandboxStore(id, root);
  const namespacePath = state.network.config.namespacePath;
  try {
    return await store.withLock(async () => {
      const current = store.read<SandboxState>(SANDBOX_RECORD);
      if (!current) return undefined;
      const network = Network.load(current.network, id);
      try {
        const unfinished = network.endpoints().filter((endpoint) => endpoint.plumbing?.model === 'pending');
        for (const endpoint of unfinished) {
          report.removed.push({
            kind: 'state',
            namespacePath,
            name: id,
            detail: `unfinished attach of ${endpoint.properties.link.name}: ${describeRecords(endpoint.records).join(', ')}`,
          });
        }
        if (report.dryRun) return current;
        await network.removeEndpoints(unfinished);
        if (network.endpoints().length === 0) {
          store.remove();
          return undefined;
        }
        const kept = { ...current, network: network.save() };
        store.write(kept);
        return kept;
      } finally {
        network.close();
      }
    }, 0);
  } catch (error) {
    if ((error as { code?: string }).code === 'VCNET_SANDBOX_LOCKED') return state; // being changed right now
    throw error;
  }
}

/** Ingress filter priorities on `link` whose every filter redirects to one of `targets`. */
async function collectRedirectFilters(
  handle: NetlinkHandle,
  link: Link,
  targets: Set<number>,
  found: (priority: number, parent: number, protocol: number, target: number) => void,
): Promise<void> {
  let filters: Awaited<ReturnType<NetlinkHandle['filters']>>;
  try {
    filters = await handle.filters(link.index, TC_H_INGRESS);
  } catch {
    return; // no ingress qdisc
  }
  const byPriority = new Map<number, typeof filters>();
  for (const filter of filters) byPriority.set(filter.priority, [...(byPriority.get(filter.priority) ?? []), filter]);
  for (const [priority, group] of byPriority) {
    const rules = group.filter((filter) => 'actions' in filter.options && filter.options.actions.length > 0);
    if (rules.length === 0) continue;
    const redirectTargets = rules.map((filter) => {
      const actions = 'actions' in filter.options ? filter.options.actions : [];
      const mirred = actions.find((action) => action.kind === 'mirred' && 'targetIndex' in action);
      return mirred && 'targetIndex' in mirred ? mirred.targetIndex : -1;
    });
    if (redirectTargets.every((target) => targets.has(target)))
      found(priority, group[0]!.parent, group[0]!.protocol, redirectTargets[0]!);
  }
}
