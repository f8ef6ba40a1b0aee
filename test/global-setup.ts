/**
 * Once per test run, in the vitest process: removes what earlier runs that were killed left (their
 * test namespaces and temporary directories, only those whose recorded owner process is dead), puts
 * the system directories holding the programs the tests run on PATH, builds dist/ (`npm run build`:
 * tsc, then the bundled programs) so CLI and CNI tests exercise the real `vcnet` and `vcnet-cni`
 * files users run, and gives the run one temporary directory (TMPDIR, inherited by the test workers
 * and every program they start) holding its scratch and state directories and the registry of state
 * directories, so they never land in the host's /run/vcnet registry and go in one piece.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findProgram } from '../src/program-search.js';
import {
  forgetNamespaceOwner,
  NAMESPACE_PREFIX,
  namespacesOfDeadOwners,
  ownerAlive,
  ownerRecord,
} from './helpers/owner-process.js';

const RUN_DIRECTORY_PREFIX = 'vcnet-test-run-';

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

/** Removes the run directories (RUN_DIRECTORY_PREFIX*) whose owner process is dead. */
function removeRunDirectoriesOfDeadRuns(parent: string): void {
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
    rmSync(join(parent, entry), { recursive: true, force: true });
    removed.push(entry);
  }
  if (removed.length > 0) {
    console.log(`global-setup: removed ${removed.length} temporary directory(ies) a killed test run left in ${parent}`);
  }
}

export default async function setup(): Promise<() => void> {
  const parent = tmpdir();
  await removeNamespacesOfDeadRuns();
  removeRunDirectoriesOfDeadRuns(parent);
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
  return () => {
    process.off('exit', removeRunDirectory);
    removeRunDirectory();
  };
}
