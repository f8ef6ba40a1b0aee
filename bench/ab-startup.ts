/**
 * `npm run bench:ab-startup -- <git revision> [--rounds N] [--json]`: what one process of `vcnet` and
 * `vcnet-cni` costs, this tree against another revision, run in turn, with `node -e 0` (Node alone)
 * in every round as the floor.
 *
 * Each round runs, for each build (the one that goes first alternates): `vcnet --version`, `vcnet list
 * --json` over an empty state directory and over one with three records, `vcnet-cni` VERSION, and a
 * real `vcnet-cni` ADD then DEL (chained after a plugin that gave the pod eth0 and its address) in a
 * namespace made for the run. Wall time of each process, from spawn to exit.
 *
 * Why in turn: on a shared VM two runs a minute apart differ more than most changes to a start; taken
 * one after the other, both builds meet the same load. The other revision is checked out with
 * `git worktree` in a temporary directory and built there (with this tree's node_modules; its native
 * shim is this tree's when native/ is the same in both, else built there too), and removed at the end.
 * The namespaces start with `VCNET_TEST_NAMESPACE_PREFIX` when that is set. Asserts nothing.
 */
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
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

/** Wall time of one process, ms; a failure throws with its stderr (a measure of a failing command means nothing). */
function processMs(args: string[], options: { input?: string; env?: NodeJS.ProcessEnv } = {}): number {
  const started = process.hrtime.bigint();
  execFileSync(process.execPath, args, { stdio: ['pipe', 'ignore', 'pipe'], ...options });
  return Number(process.hrtime.bigint() - started) / 1e6;
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

  const sides = [
    { label: revision, directory: worktree },
    { label: 'this tree', directory: root },
  ].map((side) => ({
    ...side,
    cli: join(side.directory, 'dist', 'cli', 'main.js'),
    cni: join(side.directory, 'dist', 'cni', 'main.js'),
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
      [sides[1]!.cli, '--log-level', 'error', 'attach', '--sandbox', `s${i}`, '--netns', path, '--state-dir', listState],
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

  const node: number[] = [];
  const samples = sides.map(() => Object.fromEntries(MEASURES.map((measure) => [measure, [] as number[]]))) as Array<
    Record<Measure, number[]>
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

  const nodeMs = median(node);
  const rows = MEASURES.map((measure) => {
    const [before, after] = samples.map((sample) => sample[measure]);
    return {
      measure,
      revision_ms: Number(median(before!).toFixed(1)),
      revision_p25_ms: Number(quantile(before!, 0.25).toFixed(1)),
      this_tree_ms: Number(median(after!).toFixed(1)),
      this_tree_p25_ms: Number(quantile(after!, 0.25).toFixed(1)),
      ratio: Number((median(after!) / median(before!)).toFixed(3)),
      above_node_revision_ms: Number((median(before!) - nodeMs).toFixed(1)),
      above_node_this_tree_ms: Number((median(after!) - nodeMs).toFixed(1)),
    };
  });
  if (options.json) process.stdout.write(`${JSON.stringify({ revision, rounds, node_ms: nodeMs, rows })}\n`);
  else {
    const lines = [
      `process wall time, median (p25) ms over ${rounds} rounds in turn; node -e 0: ${nodeMs.toFixed(1)} ms (p25 ${quantile(node, 0.25).toFixed(1)})`,
      `| | ${revision} | this tree | this tree / ${revision} | above node -e 0 (${revision} → this tree) |`,
      '| --- | --- | --- | --- | --- |',
      ...rows.map(
        (row) =>
          `| ${LABELS[row.measure]} | ${row.revision_ms} (${row.revision_p25_ms}) | ${row.this_tree_ms} (${row.this_tree_p25_ms}) | ` +
          `${row.ratio} | ${row.above_node_revision_ms} → ${row.above_node_this_tree_ms} |`,
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
