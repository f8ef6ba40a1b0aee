/**
 * Soak: does vcnet leave anything behind after many attach/detach cycles?
 *
 *   npx tsx bench/soak.ts [--cycles N] [--sandboxes M] [--json]      (defaults 1000 and 50)
 *   node --expose-gc --import tsx bench/soak.ts ...                  (same, with the flag for gc)
 *
 * (a) N attach/detach cycles of one sandbox with 4 endpoints in one process, rotating the models
 *     (tcfilter, macvtap, none, tcfilter with rx/tx rate limits; disable_new_netns scans nothing, as in Kata), with the tap
 *     and vhost fds kept open as a runtime keeps them. Afterwards: no link of vcnet's group and no
 *     tun/ifb/macvtap link, the pod namespace identical to before (links, addresses, routes,
 *     neighbours, qdiscs, filters), this process's open fds back to the start value, and RSS growth
 *     after a warm-up under RSS_GROWTH_BOUND_BYTES.
 * (b) M sandboxes attached, then detached, concurrently by M separate `vcnet` processes (the built
 *     dist/cli/main.js), each in its own pod namespace: every command succeeds, every pod is identical
 *     before and after, and the state directory is empty at the end.
 *
 * Every namespace is made here (createNamespace) and deleted in `finally` (deleteNamespace), and by an
 * exit hook as a last resort. Prints the figures; exits 1 when anything leaked. The same functions run
 * in `npm test` with smaller numbers (test/integration/soak.test.ts).
 */
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isDeepStrictEqual } from 'node:util';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { createNamespace, deleteNamespace } from '../src/netns/namespace.js';
import type { NetworkConfig } from '../src/network/config.js';
import { Network } from '../src/network/network.js';
import { VCNET_LINK_GROUP } from '../src/network/plan/plan-attach.js';
// One definition of "the namespace is unchanged" for the tests and the soak.
import { collectOutput } from '../test/helpers/child-output.js';
import { namespaceView, type TestNamespace } from '../test/helpers/namespace.js';
import { fingerprint } from '../test/helpers/pod.js';

export const CLI_PATH = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));

/**
 * RSS may grow by at most this much between the end of the warm-up and the end of the cycles (both
 * measured after a forced garbage collection). It is loose on purpose: RSS also grows without a leak,
 * in steps that then stay flat, when V8 enlarges its young generation (heapTotal +16 MiB at some
 * point in a long run) and when glibc keeps the freed 1 MiB netlink receive buffer of each closed
 * handle in its heap instead of unmapping it. 1000 cycles measured 13-19 MiB here; a native leak of
 * 40 KiB per cycle (ten 4 KiB pages) would exceed the bound in 1000 cycles.
 */
export const RSS_GROWTH_BOUND_BYTES = 32 * 1024 * 1024;

/**
 * The V8 heap in use (after a forced collection) is the tight check: an endpoint, handle, listener or
 * closure kept per cycle grows it linearly. 1000 cycles measured under 0.5 MiB here.
 */
export const HEAP_GROWTH_BOUND_BYTES = 2 * 1024 * 1024;

/** Kinds of link only vcnet makes in a pod namespace (a pod made here has only veths). */
const VCNET_LINK_KINDS = new Set(['tun', 'ifb', 'macvtap']);

// ---------------------------------------------------------------------------------------------
// Namespaces

const madeNamespaces = new Set<string>();

process.on('exit', () => {
  for (const path of madeNamespaces) {
    try {
      deleteNamespace(path);
    } catch {
      // best effort at exit
    }
  }
});

/** A namespace made by the soak, shaped like the tests' TestNamespace so `fingerprint` reads it. */
export function soakNamespace(name: string): TestNamespace {
  const path = createNamespace(name);
  madeNamespaces.add(path);
  return namespaceView(name, path, () => {
    deleteNamespace(path);
    madeNamespaces.delete(path);
  });
}

function ipBatch(namespace: string, commands: string[]): void {
  execFileSync('ip', ['-n', namespace, '-batch', '-'], {
    input: `${commands.join('\n')}\n`,
    stdio: ['pipe', 'ignore', 'pipe'],
  });
}

/**
 * A pod namespace the way CNI leaves one (as test/helpers/pod.ts makes it, in two `ip -batch` runs
 * instead of one process per command): ethI is a veth whose peer `peerPrefix`I sits in `node`, with
 * IPv4 and IPv6 addresses, a route with an MTU and a permanent neighbour; eth0 carries the default route.
 */
export function soakPod(name: string, node: TestNamespace, interfaces: number, peerPrefix: string): TestNamespace {
  const pod = soakNamespace(name);
  // No duplicate address detection, so link-local addresses do not appear in the middle of a comparison.
  pod.exec('sysctl', ['-q', '-w', 'net.ipv6.conf.default.accept_dad=0', 'net.ipv6.conf.all.accept_dad=0']);
  const commands: string[] = [];
  const peers: string[] = [];
  for (let i = 0; i < interfaces; i++) {
    const eth = `eth${i}`;
    peers.push(`link set ${peerPrefix}${i} up`);
    commands.push(
      `link add ${eth} type veth peer name ${peerPrefix}${i} netns ${node.name}`,
      `link set ${eth} up`,
      `addr add 10.${200 + i}.0.2/24 dev ${eth}`,
      `addr add fd00:${200 + i}::2/64 dev ${eth} nodad`,
      `route add 10.${100 + i}.0.0/16 via 10.${200 + i}.0.1 mtu 1400`,
      `neigh add 10.${200 + i}.0.9 lladdr 02:00:00:00:0${i % 10}:09 dev ${eth} nud permanent`,
    );
  }
  commands.push('route add default via 10.200.0.1');
  ipBatch(pod.name, commands);
  ipBatch(node.name, peers);
  return pod;
}

function deleteAll(namespaces: TestNamespace[]): void {
  const errors: unknown[] = [];
  for (const namespace of namespaces) {
    try {
      namespace.delete();
    } catch (error) {
      errors.push(error);
    }
  }
  if (errors.length > 0) throw errors[0];
}

// ---------------------------------------------------------------------------------------------
// Leak checks

export function countOpenFds(): number {
  return readdirSync('/proc/self/fd').length;
}

/** Links in the namespace that vcnet made: its link group, or a kind only vcnet creates here. */
export function leakedLinks(namespace: TestNamespace): string[] {
  return namespace
    .ipJson<Array<{ ifname: string; group?: string; linkinfo?: { info_kind?: string } }>>('-d', 'link', 'show')
    .filter(
      (link) =>
        link.group === String(VCNET_LINK_GROUP) ||
        link.group === `0x${VCNET_LINK_GROUP.toString(16)}` ||
        VCNET_LINK_KINDS.has(link.linkinfo?.info_kind ?? ''),
    )
    .map((link) => `${link.ifname} (${link.linkinfo?.info_kind ?? 'link'}, group ${link.group ?? '-'})`);
}

/** What differs between two fingerprints, one line per differing part, short enough to print. */
export function fingerprintDifferences(
  before: Record<string, unknown>,
  after: Record<string, unknown>,
  where: string,
): string[] {
  return Object.keys({ ...before, ...after })
    .filter((key) => !isDeepStrictEqual(before[key], after[key]))
    .map(
      (key) =>
        `${where}: ${key} differ: before ${JSON.stringify(before[key]).slice(0, 400)} after ${JSON.stringify(after[key]).slice(0, 400)}`,
    );
}

/** Forces a full collection: global.gc under --expose-gc, otherwise the same function fetched through V8's flag. */
export function forceGarbageCollection(): 'global.gc' | 'v8 flag' {
  let collect = globalThis.gc;
  let how: 'global.gc' | 'v8 flag' = 'global.gc';
  if (typeof collect !== 'function') {
    setFlagsFromString('--expose-gc');
    collect = runInNewContext('gc') as NodeJS.GCFunction;
    how = 'v8 flag';
  }
  // Twice: the first pass runs finalizers that free more on the second.
  collect();
  collect();
  return how;
}

// ---------------------------------------------------------------------------------------------
// (a) attach/detach cycles in one process

export interface SoakVariant {
  label: string;
  config: Pick<NetworkConfig, 'model' | 'disableNewNetns'> & Partial<Pick<NetworkConfig, 'rateLimit'>>;
}

export const SOAK_VARIANTS: readonly SoakVariant[] = [
  { label: 'tcfilter', config: { model: 'tcfilter', disableNewNetns: false } },
  { label: 'macvtap', config: { model: 'macvtap', disableNewNetns: false } },
  { label: 'none', config: { model: 'none', disableNewNetns: false } },
  {
    label: 'tcfilter+ratelimit',
    config: {
      model: 'tcfilter',
      disableNewNetns: false,
      rateLimit: { rxBitsPerSecond: 100_000_000, txBitsPerSecond: 50_000_000 },
    },
  },
];

export interface CycleSoakOptions {
  cycles: number;
  /** Endpoints (pod interfaces) per cycle; 4 by default. */
  endpoints?: number;
  /** Cycles before the RSS baseline is taken (lazy loading, JIT, allocator pools). */
  warmupCycles?: number;
  rssGrowthBoundBytes?: number;
  heapGrowthBoundBytes?: number;
  progress?: (done: number, total: number) => void;
}

export interface CycleSoakResult {
  cycles: number;
  endpoints: number;
  seconds: number;
  cyclesPerSecond: number;
  cycleMs: { mean: number; median: number; p99: number; max: number };
  cyclesByVariant: Record<string, number>;
  /** Median milliseconds of one attach+detach cycle per variant (macvtap and rate limits cost more). */
  medianCycleMsByVariant: Record<string, number>;
  fdStart: number;
  /** Most fds open at once while attached (the kept tap/macvtap/vhost fds): proves the fd check can fail. */
  fdWhileAttachedMax: number;
  fdEnd: number;
  fdDelta: number;
  warmupCycles: number;
  garbageCollection: 'global.gc' | 'v8 flag';
  rssAfterWarmupBytes: number;
  rssEndBytes: number;
  rssGrowthBytes: number;
  rssGrowthBoundBytes: number;
  heapGrowthBytes: number;
  heapGrowthBoundBytes: number;
  /** Empty when nothing leaked. */
  leaks: string[];
  namespacePrefix: string;
}

const round = (value: number, digits = 2) => Number(value.toFixed(digits));

function percentile(sorted: number[], fraction: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.ceil(fraction * sorted.length) - 1)]!;
}

export async function runCycleSoak(options: CycleSoakOptions): Promise<CycleSoakResult> {
  const endpoints = options.endpoints ?? 4;
  const warmupCycles = Math.min(options.cycles, options.warmupCycles ?? Math.max(20, Math.floor(options.cycles / 10)));
  const bound = options.rssGrowthBoundBytes ?? RSS_GROWTH_BOUND_BYTES;
  const heapBound = options.heapGrowthBoundBytes ?? HEAP_GROWTH_BOUND_BYTES;
  const prefix = `vcnet-soak-${randomBytes(3).toString('hex')}`;
  const leaks: string[] = [];
  const made: TestNamespace[] = [];
  try {
    const node = soakNamespace(`${prefix}-node`);
    made.push(node);
    const pod = soakPod(`${prefix}-pod`, node, endpoints, 'peer');
    made.push(pod);
    const before = fingerprint(pod);

    const garbageCollection = forceGarbageCollection();
    const fdStart = countOpenFds();
    let fdWhileAttachedMax = fdStart;
    let rssAfterWarmupBytes = process.memoryUsage().rss;
    let heapAfterWarmup = process.memoryUsage().heapUsed;
    const cycleMs: number[] = [];
    const cyclesByVariant: Record<string, number> = {};
    const variantMs: Record<string, number[]> = {};
    const started = performance.now();

    for (let cycle = 0; cycle < options.cycles; cycle++) {
      const variant = SOAK_VARIANTS[cycle % SOAK_VARIANTS.length]!;
      const cycleStarted = performance.now();
      const network = Network.open(
        {
          namespacePath: pod.path,
          namespaceCreatedByVcnet: false,
          queues: 1,
          vhostNet: 'auto',
          ...variant.config,
        },
        'soak',
      );
      try {
        const attached = await network.addEndpoints({ keepFds: true });
        fdWhileAttachedMax = Math.max(fdWhileAttachedMax, countOpenFds());
        // The attach must have built something, or the checks below prove nothing.
        const ours = (await network.scan(['links'])).links.filter((link) => link.group === VCNET_LINK_GROUP);
        if (attached.length !== endpoints || ours.length < endpoints) {
          leaks.push(
            `cycle ${cycle} (${variant.label}): attached ${attached.length} endpoint(s) and ${ours.length} vcnet link(s), expected ${endpoints}`,
          );
        }
        const report = await network.removeEndpoints();
        if (report.failures.length > 0) {
          leaks.push(
            `cycle ${cycle} (${variant.label}): detach failed: ${report.failures.map((f) => f.message).join('; ')}`,
          );
        }
        const left = (await network.scan(['links'])).links.filter((link) => link.group === VCNET_LINK_GROUP);
        if (left.length > 0) {
          leaks.push(`cycle ${cycle} (${variant.label}): left ${left.map((link) => link.name).join(', ')}`);
        }
      } finally {
        network.close();
      }
      const elapsed = performance.now() - cycleStarted;
      cycleMs.push(elapsed);
      variantMs[variant.label] = [...(variantMs[variant.label] ?? []), elapsed];
      cyclesByVariant[variant.label] = (cyclesByVariant[variant.label] ?? 0) + 1;
      if (leaks.length > 20) throw new Error(`soak stopped after cycle ${cycle}:\n${leaks.join('\n')}`);
      if (cycle + 1 === warmupCycles) {
        forceGarbageCollection();
        rssAfterWarmupBytes = process.memoryUsage().rss;
        heapAfterWarmup = process.memoryUsage().heapUsed;
      }
      options.progress?.(cycle + 1, options.cycles);
    }
    const seconds = (performance.now() - started) / 1000;

    forceGarbageCollection();
    const rssEndBytes = process.memoryUsage().rss;
    const heapEnd = process.memoryUsage().heapUsed;
    const fdEnd = countOpenFds();
    if (fdEnd !== fdStart) leaks.push(`open fds: ${fdStart} before the cycles, ${fdEnd} after`);
    const rssGrowthBytes = rssEndBytes - rssAfterWarmupBytes;
    if (rssGrowthBytes > bound) {
      leaks.push(`RSS grew by ${rssGrowthBytes} bytes after the warm-up (bound ${bound})`);
    }
    const heapGrowthBytes = heapEnd - heapAfterWarmup;
    if (heapGrowthBytes > heapBound) {
      leaks.push(`V8 heap in use grew by ${heapGrowthBytes} bytes after the warm-up (bound ${heapBound})`);
    }
    for (const link of leakedLinks(pod)) leaks.push(`leaked link in the pod: ${link}`);
    leaks.push(...fingerprintDifferences(before, fingerprint(pod), 'pod namespace'));

    const sorted = [...cycleMs].sort((a, b) => a - b);
    return {
      cycles: options.cycles,
      endpoints,
      seconds: round(seconds),
      cyclesPerSecond: round(options.cycles / seconds, 1),
      cycleMs: {
        mean: round(cycleMs.reduce((sum, value) => sum + value, 0) / Math.max(1, cycleMs.length)),
        median: round(percentile(sorted, 0.5)),
        p99: round(percentile(sorted, 0.99)),
        max: round(sorted.at(-1) ?? 0),
      },
      cyclesByVariant,
      medianCycleMsByVariant: Object.fromEntries(
        Object.entries(variantMs).map(([label, values]) => [
          label,
          round(
            percentile(
              [...values].sort((a, b) => a - b),
              0.5,
            ),
          ),
        ]),
      ),
      fdStart,
      fdWhileAttachedMax,
      fdEnd,
      fdDelta: fdEnd - fdStart,
      warmupCycles,
      garbageCollection,
      rssAfterWarmupBytes,
      rssEndBytes,
      rssGrowthBytes,
      rssGrowthBoundBytes: bound,
      heapGrowthBytes,
      heapGrowthBoundBytes: heapBound,
      leaks,
      namespacePrefix: prefix,
    };
  } finally {
    deleteAll(made.reverse());
  }
}

// ---------------------------------------------------------------------------------------------
// (b) concurrent sandboxes, one `vcnet` process each

export interface ConcurrentSoakOptions {
  sandboxes: number;
  /** Pod interfaces per sandbox; 2 by default. */
  interfaces?: number;
  /** The built CLI; dist/cli/main.js by default. */
  cli?: string;
}

export interface CommandFailure {
  sandbox: string;
  command: 'attach' | 'detach';
  status: number;
  stderr: string;
}

export interface ConcurrentSoakResult {
  sandboxes: number;
  interfaces: number;
  attachAllMs: number;
  detachAllMs: number;
  /** Sandbox ids by model, as attached (models rotate: tcfilter, macvtap, none). */
  models: Record<string, number>;
  failures: CommandFailure[];
  leftoverState: string[];
  leaks: string[];
  namespacePrefix: string;
}

interface ProcessResult {
  status: number;
  stdout: string;
  stderr: string;
}

async function runProcess(cli: string, args: string[]): Promise<ProcessResult> {
  const child = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const { status, stdout, stderr, signal } = await collectOutput(child).done;
  return { status, stdout, stderr: `${stderr}${signal ?? ''}` };
}

const CONCURRENT_MODELS = [
  { model: 'tcfilter', flags: ['--model', 'tcfilter'] },
  { model: 'macvtap', flags: ['--model', 'macvtap'] },
  { model: 'none', flags: ['--model', 'none'] },
] as const;

export async function runConcurrentSoak(options: ConcurrentSoakOptions): Promise<ConcurrentSoakResult> {
  const cli = options.cli ?? CLI_PATH;
  if (!existsSync(cli)) throw new Error(`${cli} is missing: build it first (npm run build)`);
  const interfaces = options.interfaces ?? 2;
  const prefix = `vcnet-soak-${randomBytes(3).toString('hex')}`;
  const stateDirectory = mkdtempSync(join(tmpdir(), 'vcnet-soak-state-'));
  const made: TestNamespace[] = [];
  const failures: CommandFailure[] = [];
  const leaks: string[] = [];
  const models: Record<string, number> = {};
  try {
    // The veth peers of every pod share one node namespace (peer names carry the pod number).
    const node = soakNamespace(`${prefix}-node`);
    made.push(node);
    const pods: TestNamespace[] = [];
    for (let i = 0; i < options.sandboxes; i++) {
      const pod = soakPod(`${prefix}-pod${i}`, node, interfaces, `p${i}e`);
      made.push(pod);
      pods.push(pod);
    }
    const before = pods.map((pod) => fingerprint(pod));
    const sandboxId = (i: number) => `soak-${i}`;

    let started = performance.now();
    const attached = await Promise.all(
      pods.map((pod, i) => {
        const { model, flags } = CONCURRENT_MODELS[i % CONCURRENT_MODELS.length]!;
        models[model] = (models[model] ?? 0) + 1;
        return runProcess(cli, [
          'attach',
          '--sandbox',
          sandboxId(i),
          '--netns',
          pod.path,
          '--state-dir',
          stateDirectory,
          '--json',
          ...flags,
        ]);
      }),
    );
    const attachAllMs = performance.now() - started;
    attached.forEach((result, i) => {
      if (result.status !== 0) {
        failures.push({ sandbox: sandboxId(i), command: 'attach', status: result.status, stderr: result.stderr });
        return;
      }
      const count = (JSON.parse(result.stdout) as { endpoints: unknown[] }).endpoints.length;
      if (count !== interfaces) leaks.push(`${sandboxId(i)}: attach reported ${count} endpoint(s), not ${interfaces}`);
      if (!existsSync(join(stateDirectory, sandboxId(i), 'state.json')))
        leaks.push(`${sandboxId(i)}: attach wrote no state file`);
      const built = leakedLinks(pods[i]!).length;
      if (built < interfaces) leaks.push(`${sandboxId(i)}: ${built} vcnet link(s) after attach, not ${interfaces}`);
    });

    started = performance.now();
    const detached = await Promise.all(
      pods.map((_, i) => runProcess(cli, ['detach', '--sandbox', sandboxId(i), '--state-dir', stateDirectory])),
    );
    const detachAllMs = performance.now() - started;
    detached.forEach((result, i) => {
      if (result.status !== 0 || !result.stdout.includes(`detached sandbox ${sandboxId(i)}`))
        failures.push({ sandbox: sandboxId(i), command: 'detach', status: result.status, stderr: result.stderr });
    });

    pods.forEach((pod, i) => {
      for (const link of leakedLinks(pod)) leaks.push(`${sandboxId(i)}: leaked link ${link}`);
      leaks.push(...fingerprintDifferences(before[i]!, fingerprint(pod), sandboxId(i)));
    });
    // The lock directory stays (locks live beside the sandboxes, never inside them); its files must not.
    const locks = join(stateDirectory, '.locks');
    const leftoverState = [
      ...readdirSync(stateDirectory).filter((entry) => entry !== '.locks'),
      ...(existsSync(locks) ? readdirSync(locks).map((entry) => join('.locks', entry)) : []),
    ];
    for (const entry of leftoverState) leaks.push(`state left in ${join(stateDirectory, entry)}`);
    return {
      sandboxes: options.sandboxes,
      interfaces,
      attachAllMs: Math.round(attachAllMs),
      detachAllMs: Math.round(detachAllMs),
      models,
      failures,
      leftoverState,
      leaks,
      namespacePrefix: prefix,
    };
  } finally {
    try {
      deleteAll(made.reverse());
    } finally {
      rmSync(stateDirectory, { recursive: true, force: true });
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Command line

function numberFlag(argv: string[], flag: string, fallback: number): number {
  const position = argv.indexOf(flag);
  if (position < 0) return fallback;
  const value = Number(argv[position + 1]);
  if (!Number.isInteger(value) || value < 1) throw new Error(`${flag} needs a whole number of at least 1`);
  return value;
}

const mebibytes = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(2)} MiB`;

async function main(argv: string[]): Promise<number> {
  const cycles = numberFlag(argv, '--cycles', 1000);
  const sandboxes = numberFlag(argv, '--sandboxes', 50);
  const json = argv.includes('--json');
  const log = (text: string) => {
    if (!json) process.stdout.write(`${text}\n`);
  };
  // Ctrl-C: leave through process.exit so the exit hook deletes the namespaces.
  process.on('SIGINT', () => process.exit(130));
  process.on('SIGTERM', () => process.exit(143));

  log(`== (a) ${cycles} attach/detach cycles, 4 endpoints, models ${SOAK_VARIANTS.map((v) => v.label).join(', ')} ==`);
  const cycleResult = await runCycleSoak({
    cycles,
    progress: (done, total) => {
      if (!json && done % 100 === 0 && done < total) process.stderr.write(`  ${done}/${total} cycles\n`);
    },
  });
  log(
    `${cycleResult.cycles} cycles in ${cycleResult.seconds} s: ${cycleResult.cyclesPerSecond} cycles/s, per cycle ` +
      `mean ${cycleResult.cycleMs.mean} ms, median ${cycleResult.cycleMs.median} ms, p99 ${cycleResult.cycleMs.p99} ms, max ${cycleResult.cycleMs.max} ms`,
  );
  log(
    `median per cycle by model: ${Object.entries(cycleResult.medianCycleMsByVariant)
      .map(([label, ms]) => `${label} ${ms} ms`)
      .join(', ')}`,
  );
  log(
    `fds: ${cycleResult.fdStart} at start, up to ${cycleResult.fdWhileAttachedMax} while attached, ${cycleResult.fdEnd} at end (delta ${cycleResult.fdDelta})`,
  );
  log(
    `RSS after ${cycleResult.warmupCycles} warm-up cycles ${mebibytes(cycleResult.rssAfterWarmupBytes)}, at end ${mebibytes(cycleResult.rssEndBytes)}: ` +
      `growth ${mebibytes(cycleResult.rssGrowthBytes)} (bound ${mebibytes(cycleResult.rssGrowthBoundBytes)}), heap growth ${mebibytes(cycleResult.heapGrowthBytes)} (bound ${mebibytes(cycleResult.heapGrowthBoundBytes)}), gc by ${cycleResult.garbageCollection}`,
  );
  log(`leaks found: ${cycleResult.leaks.length}`);
  for (const leak of cycleResult.leaks) log(`  ${leak}`);

  log(`\n== (b) ${sandboxes} sandboxes attached and detached concurrently, one vcnet process each ==`);
  const concurrentResult = await runConcurrentSoak({ sandboxes });
  log(
    `attach all: ${concurrentResult.attachAllMs} ms, detach all: ${concurrentResult.detachAllMs} ms ` +
      `(${concurrentResult.interfaces} interfaces each; models ${JSON.stringify(concurrentResult.models)})`,
  );
  log(`failed commands: ${concurrentResult.failures.length}`);
  for (const failure of concurrentResult.failures)
    log(`  ${failure.command} ${failure.sandbox}: exit ${failure.status}: ${failure.stderr.trim()}`);
  log(`leaks found: ${concurrentResult.leaks.length}`);
  for (const leak of concurrentResult.leaks) log(`  ${leak}`);

  const clean =
    cycleResult.leaks.length === 0 && concurrentResult.leaks.length === 0 && concurrentResult.failures.length === 0;
  if (json) process.stdout.write(`${JSON.stringify({ cycles: cycleResult, concurrent: concurrentResult, clean })}\n`);
  else log(clean ? '\nsoak: clean' : '\nsoak: LEAKS FOUND');
  return clean ? 0 : 1;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  process.exitCode = await main(process.argv.slice(2)).catch((error: unknown) => {
    process.stderr.write(`soak: ${(error as Error)?.stack ?? String(error)}\n`);
    return 2;
  });
}
