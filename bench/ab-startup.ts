/**
 * `npm run bench:ab-startup -- <git revision> [--rounds N] [--json]`: what one process of `vcnet` and
 * `vcnet-cni` costs, this tree against another revision, run in turn, with `node -e 0` (Node alone)
 * in every round as the floor.
 *
 * Each round runs, for each build (the one that goes first alternates): `vcnet --version`, `vcnet list
 * --json` over an empty state directory and over one with three records, `vcnet-cni` VERSION, and a
 * real `vcnet-cni` ADD then DEL (chained after a plugin that gave the pod eth0 and its address) in a
 * namespace made for the run. Wall time of each process, from spawn to exit (median), and its CPU time
 * (mean; on a machine shared with other work it moves less than the wall time).
 *
 * Why in turn: on a shared VM two runs a minute apart differ more than most changes to a start; taken
 * one after the other, both builds meet the same load. The other revision is checked out with
 * `git worktree` in a temporary directory and built there (with this tree's node_modules; its native
 * shim is this tree's when native/ is the same in both, else built there too), and removed at the end.
 * The namespaces start with `VCNET_TEST_NAMESPACE_PREFIX` when that is set. Asserts nothing.
 */
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { median } from '../src/benchmark/attach-benchmark.js';
import { createNamespace, deleteNamespace } from '../src/netns/namespace.js';

const { values: options, positionals } = parseArgs({
  options: { rounds: { type: 'string', default: '20' }, json: { type: 'boolean', default: false } },
  allowPositionals: true,
});
const revision = positionals[0];
const rounds = Number(options.rounds);
const root = resolve(new URL('..', import.meta.url).pathname);
const log = (text: string) => process.stderr.write(`${text}\n`);

if (!revision || !Number.isInteger(rounds) || rounds < 3) {
  log('usage: npm run bench:ab-startup -- <git revision> [--rounds N (3 or more, default 20)] [--json]');
  process.exit(2);
}

function run(command: string, commandArgs: string[], cwd: string): void {
  execFileSync(command, commandArgs, { cwd, stdio: ['ignore', 'ignore', 'inherit'] });
}

const CLOCK_TICKS_PER_SECOND = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());

/** CPU time (user and system) of this process's children that have been waited for, ms (/proc/self/stat). */
function childrenCpuMs(): number {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  // Fields after the command name in parentheses: cutime and cstime are the 14th and 15th of them.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[13]) + Number(fields[14])) * 1000) / CLOCK_TICKS_PER_SECOND;
}

/**
 * Wall time and CPU time of one process, ms; a failure throws with its stderr (a measure of a failing
 * command means nothing). The CPU time comes in clock ticks (10 ms here): only its mean over the
 * rounds means something. It does not count waiting for a CPU, as wall time on a busy machine does.
 */
function processMs(
  args: string[],
  options: { input?: string; env?: NodeJS.ProcessEnv } = {},
): { wall: number; cpu: number } {
  const cpuBefore = childrenCpuMs();
  const started = process.hrtime.bigint();
  execFileSync(process.execPath, args, { stdio: ['pipe', 'ignore', 'pipe'], ...options });
  return { wall: Number(process.hrtime.bigint() - started) / 1e6, cpu: childrenCpuMs() - cpuBefore };
}

const MEASURES = ['cli_version', 'cli_list_empty', 'cli_list_3_records', 'cni_version', 'cni_add', 'cni_del'] as const;
type Measure = (typeof MEASURES)[number];
const LABELS: Record<Measure, string> = {
  cli_version: 'vcnet --version',
  cli_list_empty: 'vcnet list --json, no records',
  cli_list_3_records: 'vcnet list --json, 3 records',
  cni_version: 'vcnet-cni VERSION',
  cni_add: 'vcnet-cni ADD (a tap, tc filters)',
  cni_del: 'vcnet-cni DEL',
};

const quantile = (values: number[], q: number) => [...values].sort((a, b) => a - b)[Math.floor(values.length * q)]!;
const prefix = `${process.env.VCNET_TEST_NAMESPACE_PREFIX || 'vcnet'}-abs-${process.pid}`;
const worktree = mkdtempSync(join(tmpdir(), 'vcnet-ab-startup-'));
const scratch = mkdtempSync(join(tmpdir(), 'vcnet-ab-startup-state-'));
const namespaces: string[] = [];
// Every state directory vcnet writes in is noted in a registry (/run/vcnet/state-directories by
// default) for gc: the run's own registry, so that its directories, removed at the end, stay out of the host's.
process.env.VCNET_STATE_REGISTRY = join(scratch, 'state-directories');
let added = false;
try {
  log(`building this tree and ${revision} (in ${worktree})…`);
  run('npm', ['run', 'build', '--silent'], root);
  if (!existsSync(join(root, 'build', 'Release'))) run('npm', ['run', 'build:native', '--silent'], root);
  run('git', ['worktree', 'add', '--detach', '--quiet', worktree, revision], root);
  added = true;
  symlinkSync(join(root, 'node_modules'), join(worktree, 'node_modules'));
  run('npm', ['run', 'build', '--silent'], worktree);
  let sameNative = true;
  try {
    execFileSync('git', ['diff', '--quiet', revision, '--', 'native', 'binding.gyp'], { cwd: root });
  } catch {
    sameNative = false;
  }
  if (sameNative) cpSync(join(root, 'build'), join(worktree, 'build'), { recursive: true });
  else run('npm', ['run', 'build:native', '--silent'], worktree);

  // The revision's build, then this tree's.
  const sides = [worktree, root].map((directory) => ({
    cli: join(directory, 'dist', 'cli', 'main.js'),
    cni: join(directory, 'dist', 'cni', 'main.js'),
  }));

  // Three sandboxes attached by this tree's `vcnet attach`, each in a namespace of its own, for list.
  const pod = (name: string) => {
    const path = createNamespace(name);
    namespaces.push(path);
    execFileSync('ip', ['-n', name, '-batch', '-'], {
      input: 'link add eth0 type veth peer name peer0\nlink set eth0 up\naddr add 10.9.0.2/24 dev eth0\n',
    });
    return path;
  };
  const emptyState = join(scratch, 'empty');
  const listState = join(scratch, 'list');
  mkdirSync(emptyState);
  for (let i = 0; i < 3; i++) {
    const path = pod(`${prefix}-l${i}`);
    run(
      process.execPath,
      [
        sides[1]!.cli,
        '--log-level',
        'error',
        'attach',
        '--sandbox',
        `s${i}`,
        '--netns',
        path,
        '--state-dir',
        listState,
      ],
      root,
    );
  }
  // vcnet-cni chained after a plugin that gave the pod eth0 and its address (what bridge would pass on).
  const cniPod = pod(`${prefix}-cni`);
  const cniConfig = JSON.stringify({
    cniVersion: '1.0.0',
    name: 'bench',
    type: 'vcnet-cni',
    stateDir: join(scratch, 'cni'),
    prevResult: {
      cniVersion: '1.0.0',
      interfaces: [{ name: 'eth0', sandbox: cniPod }],
      ips: [{ address: '10.9.0.2/24', interface: 0 }],
    },
  });
  const cniEnvironment = (command: string) => ({
    ...process.env,
    CNI_COMMAND: command,
    CNI_CONTAINERID: 'bench',
    CNI_NETNS: cniPod,
    CNI_IFNAME: 'eth0',
    CNI_PATH: '/usr/lib/cni',
  });

  type Sample = { wall: number; cpu: number };
  const node: Sample[] = [];
  const samples = sides.map(() => Object.fromEntries(MEASURES.map((measure) => [measure, [] as Sample[]]))) as Array<
    Record<Measure, Sample[]>
  >;
  for (let round = 0; round < rounds; round++) {
    node.push(processMs(['-e', '0']));
    // Each goes first in every other round, so that neither always runs in the other's wake.
    for (const which of round % 2 === 0 ? [0, 1] : [1, 0]) {
      const side = sides[which]!;
      const into = samples[which]!;
      into.cli_version.push(processMs([side.cli, '--version']));
      into.cli_list_empty.push(processMs([side.cli, 'list', '--json', '--state-dir', emptyState]));
      into.cli_list_3_records.push(processMs([side.cli, 'list', '--json', '--state-dir', listState]));
      into.cni_version.push(processMs([side.cni], { input: '{"cniVersion":"1.0.0"}', env: cniEnvironment('VERSION') }));
      into.cni_add.push(processMs([side.cni], { input: cniConfig, env: cniEnvironment('ADD') }));
      into.cni_del.push(processMs([side.cni], { input: cniConfig, env: cniEnvironment('DEL') }));
    }
  }

  const walls = (values: Sample[]) => values.map((value) => value.wall);
  const meanCpu = (values: Sample[]) => values.reduce((sum, value) => sum + value.cpu, 0) / values.length;
  const fixed = (value: number) => Number(value.toFixed(1));
  const nodeMs = median(walls(node));
  const nodeCpuMs = meanCpu(node);
  const rows = MEASURES.map((measure) => {
    const [before, after] = samples.map((sample) => sample[measure]) as [Sample[], Sample[]];
    return {
      measure,
      revision_ms: fixed(median(walls(before))),
      revision_p25_ms: fixed(quantile(walls(before), 0.25)),
      this_tree_ms: fixed(median(walls(after))),
      this_tree_p25_ms: fixed(quantile(walls(after), 0.25)),
      ratio: Number((median(walls(after)) / median(walls(before))).toFixed(3)),
      above_node_revision_ms: fixed(median(walls(before)) - nodeMs),
      above_node_this_tree_ms: fixed(median(walls(after)) - nodeMs),
      revision_cpu_ms: fixed(meanCpu(before)),
      this_tree_cpu_ms: fixed(meanCpu(after)),
      cpu_ratio: Number((meanCpu(after) / meanCpu(before)).toFixed(3)),
    };
  });
  if (options.json)
    process.stdout.write(
      `${JSON.stringify({ revision, rounds, node_ms: nodeMs, node_cpu_ms: fixed(nodeCpuMs), rows })}\n`,
    );
  else {
    const lines = [
      `${rounds} rounds in turn; node -e 0: wall ${nodeMs.toFixed(1)} ms (p25 ${quantile(walls(node), 0.25).toFixed(1)}), CPU ${nodeCpuMs.toFixed(1)} ms`,
      `| | wall, median (p25) ms: ${revision} | this tree | ratio | above node -e 0 | CPU, mean ms: ${revision} | this tree | ratio |`,
      '| --- | --- | --- | --- | --- | --- | --- | --- |',
      ...rows.map(
        (row) =>
          `| ${LABELS[row.measure]} | ${row.revision_ms} (${row.revision_p25_ms}) | ${row.this_tree_ms} (${row.this_tree_p25_ms}) | ` +
          `${row.ratio} | ${row.above_node_revision_ms} → ${row.above_node_this_tree_ms} | ` +
          `${row.revision_cpu_ms} | ${row.this_tree_cpu_ms} | ${row.cpu_ratio} |`,
      ),
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
  }
} finally {
  if (added) execFileSync('git', ['worktree', 'remove', '--force', worktree], { cwd: root, stdio: 'ignore' });
  rmSync(worktree, { recursive: true, force: true });
  for (const path of namespaces) {
    try {
      deleteNamespace(path);
    } catch (error) {
      log(`could not delete ${path}: ${String(error)}`);
    }
  }
  rmSync(scratch, { recursive: true, force: true });
}
