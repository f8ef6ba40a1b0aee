/**
 * `npm run bench:ab -- <git revision> [--iterations N] [--json]`: the tcfilter attach of this tree
 * against the same attach of another revision, both built and loaded in one process, attaching one
 * endpoint in turn in the same namespace (each revision its own handle and native shim).
 *
 * Why one process, in turn: on a VM the same build measured in two processes a minute apart differs
 * by up to 25%, more than most changes to the attach. Alternating in one process puts both under the same
 * conditions, so the ratio of the medians is what a change did. The other revision is checked out
 * with `git worktree` in a temporary directory, built there (tsc and node-gyp, with this tree's
 * node_modules), and removed at the end. Asserts nothing (speed is not a test).
 *
 * Both revisions must have the modules this script loads (below: the attach and undo entries of
 * today's layout, or of the one before it, with a module per model); an older layout is reported as
 * such, naming the module that is missing.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { median } from '../src/benchmark/attach-benchmark.js';

const MODULES = {
  namespace: 'dist/netns/namespace.js',
  handle: 'dist/netlink/handle.js',
  plumbingContext: 'dist/network/model/plumbing-context.js',
  undo: 'dist/network/plan/undo.js',
  syscallTime: 'dist/native/syscall-time.js',
} as const;

/** A revision before the model files went: tcfilter's attach and the undo had modules of their own. */
const MODULES_WITH_MODEL_FILES = {
  ...MODULES,
  plumbingContext: 'dist/network/model/tcfilter.js',
  undo: 'dist/network/plumbing.js',
} as const;

interface AttachSide {
  createNamespace(name: string): string;
  deleteNamespace(path: string): void;
  open(path: string): Handle;
  attach(context: object, source: unknown, tap: string): Promise<{ steps: unknown[] }>;
  undo(handle: Handle, steps: unknown[]): Promise<{ failures: Error[] }>;
  /** The calling thread's CPU time in ns (the side's own native shim). */
  threadCpuNs(): number;
}
interface Handle {
  close(): void;
  addLink(spec: object): Promise<void>;
  linkByName(name: string): Promise<unknown>;
  snapshot(parts: string[]): Promise<{ qdiscs: unknown[] }>;
}

const { values: options, positionals } = parseArgs({
  options: { iterations: { type: 'string', default: '400' }, json: { type: 'boolean', default: false } },
  allowPositionals: true,
});
const revision = positionals[0];
const iterations = Number(options.iterations);
const json = options.json;
const root = resolve(new URL('..', import.meta.url).pathname);
const log = (text: string) => process.stderr.write(`${text}\n`);

if (!revision || !Number.isInteger(iterations) || iterations < 10) {
  log('usage: npm run bench:ab -- <git revision> [--iterations N (10 or more, default 400)] [--json]');
  process.exit(2);
}

function run(command: string, commandArgs: string[], cwd: string): void {
  execFileSync(command, commandArgs, { cwd, stdio: ['ignore', 'ignore', 'inherit'] });
}

async function load(directory: string, label: string): Promise<AttachSide> {
  const modules: Record<string, Record<string, unknown>> = {};
  const withModelFiles = existsSync(join(directory, MODULES_WITH_MODEL_FILES.plumbingContext));
  for (const [key, path] of Object.entries(withModelFiles ? MODULES_WITH_MODEL_FILES : MODULES)) {
    const file = join(directory, path);
    if (!existsSync(file)) throw new Error(`${label} has no ${path}: its layout predates this script`);
    modules[key] = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
  }
  const { namespace, handle, plumbingContext, undo, syscallTime } = modules as unknown as {
    namespace: Pick<AttachSide, 'createNamespace' | 'deleteNamespace'>;
    handle: { NetlinkHandle: { open(path: string): Handle } };
    plumbingContext: {
      attachByPlan: (context: object, request: object) => ReturnType<AttachSide['attach']>;
      attachTcFilter: AttachSide['attach'];
    };
    undo: { undoRecords: AttachSide['undo']; undoPlumbing: AttachSide['undo'] };
    syscallTime: { nativeSyscallTime: { threadCpuNs(): number } };
  };
  return {
    createNamespace: namespace.createNamespace,
    deleteNamespace: namespace.deleteNamespace,
    open: (path) => handle.NetlinkHandle.open(path),
    attach: withModelFiles
      ? plumbingContext.attachTcFilter
      : (context, source, tapName) => plumbingContext.attachByPlan(context, { model: 'tcfilter', source, tapName }),
    undo: withModelFiles ? undo.undoPlumbing : undo.undoRecords,
    threadCpuNs: () => syscallTime.nativeSyscallTime.threadCpuNs(),
  };
}

/**
 * One attach of `side`, timed (wall µs, and the thread's CPU µs: on a loaded machine wall time also
 * counts waiting for a CPU), then its detach (untimed).
 */
async function attachOnce(side: AttachSide, handle: Handle, path: string): Promise<{ wall: number; cpu: number }> {
  const source = await handle.linkByName('eth0');
  const qdiscs = (await handle.snapshot(['qdiscs'])).qdiscs;
  const context = { handle, namespacePath: path, queues: 1, keepFds: false, vhostNet: 'off', qdiscs };
  const cpuStarted = side.threadCpuNs();
  const started = process.hrtime.bigint();
  const attached = await side.attach(context, source, 'tap0_kata');
  const wall = Number(process.hrtime.bigint() - started) / 1000;
  const cpu = (side.threadCpuNs() - cpuStarted) / 1000;
  const report = await side.undo(handle, attached.steps);
  if (report.failures.length > 0) throw report.failures[0];
  return { wall, cpu };
}

const quantile = (values: number[], q: number) => [...values].sort((a, b) => a - b)[Math.floor(values.length * q)]!;

const worktree = mkdtempSync(join(tmpdir(), 'vcnet-ab-'));
let added = false;
try {
  log(`building this tree and ${revision} (in ${worktree})…`);
  run('npm', ['run', 'build', '--silent'], root);
  run('npm', ['run', 'build:native', '--silent'], root);
  run('git', ['worktree', 'add', '--detach', '--quiet', worktree, revision], root);
  added = true;
  symlinkSync(join(root, 'node_modules'), join(worktree, 'node_modules'));
  run('npm', ['run', 'build', '--silent'], worktree);
  run('npm', ['run', 'build:native', '--silent'], worktree);

  const sides = [await load(worktree, revision), await load(root, 'this tree')] as const;
  const path = sides[1].createNamespace(`${process.env.VCNET_TEST_NAMESPACE_PREFIX || 'vcnet'}-ab-${process.pid}`);
  const handles = sides.map((side) => side.open(path));
  const times: [number[], number[]] = [[], []];
  const cpuTimes: [number[], number[]] = [[], []];
  try {
    await handles[1]!.addLink({ name: 'eth0', up: true, data: { kind: 'veth', peer: { name: 'peer0' } } });
    for (let i = 0; i < iterations; i++) {
      // Each goes first in every other round, so neither always runs right after the other's detach.
      const order = i % 2 === 0 ? [0, 1] : [1, 0];
      for (const which of order) {
        const spent = await attachOnce(sides[which]!, handles[which]!, path);
        times[which as 0 | 1].push(spent.wall);
        cpuTimes[which as 0 | 1].push(spent.cpu);
      }
    }
  } finally {
    for (const handle of handles) handle.close();
    sides[1].deleteNamespace(path);
  }
  // The first rounds compile and warm up both sides: left out.
  const warm = (values: number[]) => values.slice(Math.min(20, Math.floor(iterations / 10)));
  const [revisionTimes, treeTimes] = times.map(warm);
  const [revisionCpu, treeCpu] = cpuTimes.map(warm);
  const result = {
    revision,
    iterations,
    revision_attach_us: Math.round(median(revisionTimes!)),
    revision_attach_p25_us: Math.round(quantile(revisionTimes!, 0.25)),
    attach_us: Math.round(median(treeTimes!)),
    attach_p25_us: Math.round(quantile(treeTimes!, 0.25)),
    ratio: Number((median(treeTimes!) / median(revisionTimes!)).toFixed(3)),
    revision_attach_cpu_us: Math.round(median(revisionCpu!)),
    attach_cpu_us: Math.round(median(treeCpu!)),
    cpu_ratio: Number((median(treeCpu!) / median(revisionCpu!)).toFixed(3)),
  };
  if (json) process.stdout.write(`${JSON.stringify(result)}\n`);
  else
    process.stdout.write(
      `tcfilter attach, 1 endpoint, median (p25) µs over ${iterations} in turn:\n` +
        `  ${revision}: ${result.revision_attach_us} (${result.revision_attach_p25_us})\n` +
        `  this tree: ${result.attach_us} (${result.attach_p25_us})\n` +
        `  this tree / ${revision}: ${result.ratio}\n` +
        `thread CPU time, median µs: ${revision} ${result.revision_attach_cpu_us}, this tree ${result.attach_cpu_us}, ` +
        `ratio ${result.cpu_ratio}\n`,
    );
} finally {
  if (added) execFileSync('git', ['worktree', 'remove', '--force', worktree], { cwd: root, stdio: 'ignore' });
  rmSync(worktree, { recursive: true, force: true });
}
