/**
 * For the node-shaped corpus (test/integration/nodes): a finer snapshot than fingerprint(): address
 * order and flags (primary/secondary), every route attribute iproute2 prints (metrics, realms, next
 * hops), proxy neighbours and per-link sysctls that matter to the kernel's side effects. Plus a
 * runner that attaches and detaches a pod through the public CLI and diffs before/after.
 */
import { execFileSync } from 'node:child_process';
import { type CliResult, vcnet } from './cli.js';
import type { TestNamespace } from './namespace.js';
import { fingerprint } from './pod.js';

export const MODELS = ['tcfilter', 'macvtap', 'none'] as const;
export type Model = (typeof MODELS)[number];

export function nodeSnapshot(namespace: TestNamespace): Record<string, unknown> {
  const base = fingerprint(namespace);
  const addressesInOrder = namespace
    .ipJson<Array<{ ifname: string; addr_info: Array<Record<string, unknown>> }>>('addr', 'show')
    .map((entry) => ({
      ifname: entry.ifname,
      addresses: entry.addr_info
        // The kernel's own link-local address follows the MAC and carrier; compared in base by scope.
        .map(
          (info) =>
            `${info.local}/${info.prefixlen}${info.secondary ? ' secondary' : ''}${info.label && info.label !== entry.ifname ? ` label ${info.label}` : ''}`,
        ),
    }));
  const routeDetails = ['-4', '-6']
    .flatMap((family) =>
      namespace.ipJson<Array<Record<string, unknown>>>(family, '-d', 'route', 'show', 'table', 'all'),
    )
    .map((route) => JSON.stringify(route))
    .sort();
  const proxyNeighbours = ['-4', '-6']
    .flatMap((family) => namespace.ipJson<Array<{ dst: string; dev: string }>>(family, 'neigh', 'show', 'proxy'))
    .map((entry) => `${entry.dst} ${entry.dev}`)
    .sort();
  return { ...base, addressesInOrder, routeDetails, proxyNeighbours };
}

/** Host (root namespace) links and qdiscs, read only: the "never the host" tests compare these. */
export function hostSnapshot(): Record<string, unknown> {
  const ip = (args: string[]) => JSON.parse(execFileSync('ip', ['-j', ...args], { encoding: 'utf8' }) || '[]');
  const tc = (args: string[]) => JSON.parse(execFileSync('tc', ['-j', ...args], { encoding: 'utf8' }) || '[]');
  return {
    links: (ip(['link', 'show']) as Array<Record<string, unknown>>).map((link) => ({
      ifname: link.ifname,
      ifindex: link.ifindex,
      address: link.address,
      mtu: link.mtu,
      flags: link.flags,
    })),
    addresses: (ip(['addr', 'show']) as Array<{ ifname: string; addr_info: Array<{ local: string }> }>).map(
      (entry) => `${entry.ifname}: ${entry.addr_info.map((info) => info.local).join(',')}`,
    ),
    qdiscs: (tc(['qdisc', 'show']) as Array<Record<string, unknown>>)
      .map((q) => `${q.dev} ${q.kind} ${q.handle} ${q.parent ?? 'root'}`)
      .sort(),
  };
}

export interface AttachRun {
  attached: CliResult;
  detached: CliResult;
  output:
    | { endpoints: Array<{ name: string; source: string; tap: string | null; tapDevice: string | null }> }
    | undefined;
}

/** `vcnet attach` then (after `between`) `vcnet detach`, through the built CLI. */
export function attachThenDetach(
  pod: TestNamespace,
  model: Model,
  stateDir: string,
  options: { sandbox?: string; attachArgs?: string[]; between?: (run: AttachRun) => void } = {},
): AttachRun {
  const sandbox = options.sandbox ?? `node-${model}`;
  const attached = vcnet([
    'attach',
    '--sandbox',
    sandbox,
    '--netns',
    pod.path,
    '--model',
    model,
    '--state-dir',
    stateDir,
    '--json',
    ...(options.attachArgs ?? []),
  ]);
  const run: AttachRun = {
    attached,
    detached: { status: -1, stdout: '', stderr: '' },
    output: attached.status === 0 ? JSON.parse(attached.stdout) : undefined,
  };
  if (attached.status === 0) options.between?.(run);
  run.detached = vcnet(['detach', '--sandbox', sandbox, '--state-dir', stateDir]);
  return run;
}

/** Lines of a CLI's stderr that are log records, parsed. */
export function logRecords(stderr: string): Array<Record<string, unknown>> {
  return stderr
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}
