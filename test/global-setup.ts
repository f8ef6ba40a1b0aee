/**
 * Once per test run, in the vitest process: removes what earlier runs that were killed left (their
 * test namespaces and temporary directories, only those whose recorded owner process is dead, and
 * the directories runs made before they had a run directory, only once no test runner that started
 * before one still runs), puts
 * the system directories holding the programs the tests run on PATH, builds dist/ (`npm run build`:
 * tsc, then the bundled programs) so CLI and CNI tests exercise the real `vcnet` and `vcnet-cni`
 * files users run, and gives the run one temporary directory (TMPDIR, inherited by the test workers
 * and every program they start) holding its scratch and state directories and the registry of state
 * directories, so they never land in the host's /run/vcnet registry and go in one piece.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, lstatSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { forgetMissingStateDirectories } from '../src/network/state/registry.js';
import { findProgram } from '../src/program-search.js';
import {
  forgetNamespaceOwner,
  NAMESPACE_PREFIX,
  namespacesOfDeadOwners,
  ownerAlive,
  ownerRecord,
  startTimesOfProcessesNamed,
} from './helpers/owner-process.js';

const RUN_DIRECTORY_PREFIX = 'vcnet-test-run-';

/** The registry vcnet uses when VCNET_STATE_REGISTRY is unset (src/network/state/registry.ts). */
const HOST_REGISTRY = '/run/vcnet/state-directories';

/**
 * The run's directories a test's program wrote to the host's registry (a spawn with an environment
 * of its own that dropped VCNET_STATE_REGISTRY): said, so the test gets fixed, and taken out again
 * once the run directory is gone.
 */
async function forgetRunDirectoriesInHostRegistry(runDirectory: string): Promise<void> {
  if (process.env.VCNET_STATE_REGISTRY === HOST_REGISTRY) return;
  let lines: string[];
  try {
    lines = readFileSync(HOST_REGISTRY, 'utf8').split('\n');
  } catch {
    return;
  }
  const ours = lines.filter((line) => line.startsWith(`${runDirectory}/`));
  if (ours.length === 0) return;
  console.log(
    `global-setup: ${ours.length} state directory(ies) of this run were registered in the host's ${HOST_REGISTRY} (a test started vcnet without VCNET_STATE_REGISTRY); taking them out: ${ours.join(' ')}`,
  );
  try {
    await forgetMissingStateDirectories(ours, HOST_REGISTRY);
  } catch (error) {
    console.log(`global-setup: could not take them out of ${HOST_REGISTRY}: ${String(error)}`);
  }
}

/**
 * The programs the tests start by name that live in a system directory (sbin) a user's PATH may
 * lack: `sudo` with a short secure_path, `su` without `-`, `env -i`. vcnet itself looks for ip and
 * tc there (src/benchmark/iproute2-program.ts); the tests' own `ip netns exec ... sysctl` do not.
 */
const SYSTEM_PROGRAMS = ['ip', 'tc', 'sysctl', 'nsenter', 'iptables-save', 'iptables-restore'];
const SYSTEM_DIRECTORIES = ['/usr/local/sbin', '/usr/sbin', '/sbin'];

/**
 * Appends to PATH the system directories that hold a program of SYSTEM_PROGRAMS PATH does not find,
 * and says so; a program found nowhere is said too (the tests that run it fail naming it; unit and
 * docs tests need none of them, so the run goes on).
 */
function completePath(): void {
  const path = (process.env.PATH ?? '').split(':').filter((entry) => entry !== '');
  const added: string[] = [];
  const missing: string[] = [];
  for (const program of SYSTEM_PROGRAMS) {
    if (findProgram(program, [...path, ...added]) !== undefined) continue;
    const home = SYSTEM_DIRECTORIES.find((directory) => findProgram(program, [directory]) !== undefined);
    if (home) added.push(home);
    else missing.push(program);
  }
  if (added.length > 0) {
    process.env.PATH = [...path, ...added].join(':');
    console.log(`global-setup: PATH lacked ${added.join(' and ')} (where ip, tc, sysctl live): added for this run`);
  }
  if (missing.length > 0) {
    console.log(
      `global-setup: ${missing.join(', ')} not found on PATH nor in ${SYSTEM_DIRECTORIES.join(', ')}: ` +
        'the integration tests that run them will fail (scripts/setup installs them: iproute2, procps, util-linux, iptables)',
    );
  }
}

/** Deletes the `${NAMESPACE_PREFIX}-*` namespaces whose owner process is dead, and their records. */
export async function removeNamespacesOfDeadRuns(): Promise<void> {
  const left = namespacesOfDeadOwners(NAMESPACE_PREFIX);
  if (left.length === 0) return;
  // Loaded only when there is something to delete: it loads the native addon.
  const { deleteNamespace, namespacePath } = await import('../src/netns/namespace.js');
  const removed: string[] = [];
  for (const name of left) {
    if (!name.startsWith(`${NAMESPACE_PREFIX}-`)) continue;
    try {
      deleteNamespace(namespacePath(name));
      forgetNamespaceOwner(NAMESPACE_PREFIX, name);
      removed.push(name);
    } catch (error) {
      console.log(`global-setup: could not delete namespace ${name} left by a dead test run: ${String(error)}`);
    }
  }
  if (removed.length > 0) {
    console.log(`global-setup: deleted ${removed.length} namespace(s) a killed test run left: ${removed.join(' ')}`);
  }
}

/** Removes `path` (a directory a dead run left), saying so when it cannot (another user's, in a sticky /tmp). */
function removeLeftover(path: string): boolean {
  try {
    rmSync(path, { recursive: true, force: true });
    return true;
  } catch (error) {
    console.log(`global-setup: could not remove ${path}, left by a test run that is gone: ${String(error)}`);
    return false;
  }
}

/** Removes the run directories (RUN_DIRECTORY_PREFIX*) in `parent` whose owner process is dead. */
export function removeRunDirectoriesOfDeadRuns(parent: string): void {
  const removed: string[] = [];
  for (const entry of readdirSync(parent)) {
    if (!entry.startsWith(RUN_DIRECTORY_PREFIX)) continue;
    let owner: string;
    try {
      owner = readFileSync(join(parent, entry, 'owner'), 'utf8');
    } catch {
      continue; // being made, or not ours: no record, no judgement
    }
    if (ownerAlive(owner)) continue;
    if (removeLeftover(join(parent, entry))) removed.push(entry);
  }
  if (removed.length > 0) {
    console.log(`global-setup: removed ${removed.length} temporary directory(ies) a killed test run left in ${parent}`);
  }
}

/**
 * The prefixes of the directories the tests made straight in the temporary directory before each
 * run had its own (up to session 22): the registry of state directories, state and scratch
 * directories. A run killed then left them with no owner record. Frozen: no test makes them there now.
 */
const OLDER_RUN_PREFIXES: ReadonlySet<string> = new Set(
  `vcnet-test-registry- vcnet-ab- vcnet-abort- vcnet-agent- vcnet-agent-main- vcnet-attach-skipped-
  vcnet-attach-tc- vcnet-bench-state- vcnet-bin- vcnet-binding- vcnet-bundle- vcnet-c-attach- vcnet-caps-
  vcnet-clh- vcnet-cni- vcnet-cni-faults- vcnet-cni-sbr- vcnet-cni-state- vcnet-cni-unit- vcnet-color-
  vcnet-configure-neigh- vcnet-conflict- vcnet-containerd- vcnet-cwd- vcnet-damaged- vcnet-dan-
  vcnet-detach-dry- vcnet-detach-held- vcnet-detach-routes- vcnet-detach-running- vcnet-detach-tc-
  vcnet-diagnostics- vcnet-directory- vcnet-disposal- vcnet-disposal-agent- vcnet-docs- vcnet-dry-
  vcnet-dry-path- vcnet-dry-sh- vcnet-dup-mac- vcnet-entry- vcnet-escapes- vcnet-f11p- vcnet-fake-qmp-
  vcnet-faults- vcnet-fd-release- vcnet-fifo- vcnet-file- vcnet-full- vcnet-gc- vcnet-gc-in-use-
  vcnet-gc-ingress- vcnet-gc-macvtap- vcnet-gc-stray- vcnet-gc-unreadable- vcnet-gc-untrusted- vcnet-gone-
  vcnet-guest- vcnet-held- vcnet-held-here- vcnet-hint- vcnet-holders- vcnet-hvsock- vcnet-identity-
  vcnet-input- vcnet-install- vcnet-iptables- vcnet-iptables-options- vcnet-kata-json- vcnet-keeps-nic-
  vcnet-khp- vcnet-kill- vcnet-kill-foreign- vcnet-kill-loop- vcnet-kn- vcnet-library- vcnet-lock-
  vcnet-log-fields- vcnet-loopback- vcnet-macvtap-lib- vcnet-macvtap-qemu- vcnet-macvtap-roots-
  vcnet-macvtap-v6- vcnet-missing-filter- vcnet-nodes- vcnet-noptrace- vcnet-older-qlen- vcnet-otel-
  vcnet-pack- vcnet-pcbr- vcnet-perm- vcnet-podman- vcnet-ptp6- vcnet-push- vcnet-q35- vcnet-q35-cli-
  vcnet-qemu- vcnet-qemu-killed- vcnet-qmp-free- vcnet-race- vcnet-records- vcnet-refused-env-
  vcnet-registry- vcnet-registry-hint- vcnet-ro- vcnet-root-registry- vcnet-rootless- vcnet-route-cache-
  vcnet-route-choice- vcnet-routes-wire- vcnet-s13fe- vcnet-s17lf- vcnet-shim-version- vcnet-signal-
  vcnet-sliced- vcnet-sliced-state- vcnet-soak-state- vcnet-state- vcnet-state-unit- vcnet-sticky-
  vcnet-sysfs- vcnet-tap-owner- vcnet-tenant- vcnet-trust- vcnet-types- vcnet-undo-refused-
  vcnet-unfinished-clh- vcnet-unfinished-hp- vcnet-unplug-retry- vcnet-unusable-state- vcnet-user-state-
  vcnet-userns- vcnet-v6vm- vcnet-vhost-user- vcnet-vhu- vcnet-vmm-attach- vcnet-watch- vcnet-watch-agent-
  vcnet-watch-batch- vcnet-watch-deaf- vcnet-watch-deaf-state- vcnet-watch-mac- vcnet-watch-macvtap-
  vcnet-watch-mtu- vcnet-watch-notice- vcnet-watch-overrun- vcnet-watch-overrun-state- vcnet-watch-removed-
  vcnet-watch-renamed- vcnet-watch-rules- vcnet-watch-stop- vcnet-watch-tapmtu- vcnet-watch-tc-
  vcnet-watch-tenant- vcnet-watch-unfinished- vcnet-watch-vanished- vcnet-watch-vmgone- vcnet-wrong-dir- vcnet-ws-
  vcnet-yield-`.split(/\s+/),
);
/** What mkdtemp appends to a prefix. */
const MKDTEMP_SUFFIX = /^[A-Za-z0-9]{6}$/;
/** Leeway for the wall clock against the boot clock start times are counted on (an NTP step). */
const CLOCK_LEEWAY_MS = 5_000;

/**
 * Removes the directories in `parent` named by OLDER_RUN_PREFIXES and mkdtemp's suffix whose run is
 * over. They name no owner, but a run makes its directories after its runner started and the runner
 * (the vitest process, whose arguments contain `runnerName`) lives until the run ends: a directory
 * last changed before every running runner started belongs to none of them. One changed later is
 * kept while that runner runs (it may be that run's, of an older checkout), whoever made it.
 */
export function removeOlderRunLeftovers(parent: string, runnerName = 'vitest'): void {
  const runnersStarted = startTimesOfProcessesNamed(runnerName);
  const removed: string[] = [];
  for (const entry of readdirSync(parent, { withFileTypes: true })) {
    const name = entry.name;
    if (!entry.isDirectory() || !OLDER_RUN_PREFIXES.has(name.slice(0, -6)) || !MKDTEMP_SUFFIX.test(name.slice(-6))) {
      continue;
    }
    let changed: number;
    try {
      changed = lstatSync(join(parent, name)).mtimeMs;
    } catch {
      continue; // removed meanwhile
    }
    if (runnersStarted.some((started) => started - CLOCK_LEEWAY_MS <= changed)) continue;
    if (removeLeftover(join(parent, name))) removed.push(name);
  }
  if (removed.length > 0) {
    console.log(
      `global-setup: removed ${removed.length} directory(ies) test runs that are over left in ${parent} (from before run directories): ${removed.join(' ')}`,
    );
  }
}

export default async function setup(): Promise<() => Promise<void>> {
  const parent = tmpdir();
  await removeNamespacesOfDeadRuns();
  removeRunDirectoriesOfDeadRuns(parent);
  removeOlderRunLeftovers(parent);
  completePath();
  execFileSync('npm', ['run', 'build', '--silent'], { stdio: 'inherit' });
  const runDirectory = mkdtempSync(join(parent, RUN_DIRECTORY_PREFIX));
  writeFileSync(join(runDirectory, 'owner'), `${ownerRecord()}\n`);
  // As /tmp is: the tests that run programs as another user (nobody, a user namespace's) reach and
  // make their files here as they did there.
  chmodSync(runDirectory, 0o1777);
  process.env.TMPDIR = runDirectory;
  // In a directory of its own (0700), as before the run directory: a registry beside others' files
  // in a sticky directory is a different case, which state-directory-trust tests on purpose.
  process.env.VCNET_STATE_REGISTRY ??= join(mkdtempSync(join(runDirectory, 'registry-')), 'state-directories');
  const removeRunDirectory = (): void => rmSync(runDirectory, { recursive: true, force: true });
  // vitest answers SIGINT and SIGTERM with process.exit(), without its teardown. Its own 'exit'
  // listener calls process.exit() again, which ends the process at once: listeners added after it
  // (as this one would be) never run, so this one goes first.
  process.prependOnceListener('exit', removeRunDirectory);
  return async () => {
    process.off('exit', removeRunDirectory);
    removeRunDirectory();
    await forgetRunDirectoriesInHostRegistry(runDirectory);
  };
}
