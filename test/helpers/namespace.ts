/**
 * Throwaway network namespaces for tests. Every namespace made here is deleted by `cleanup()`, which
 * tests call from afterEach/finally, and, as a last resort, when this process ends: at exit, on
 * SIGINT/SIGTERM/SIGHUP (Ctrl-C reaches the test worker too, and a signal's default action skips
 * 'exit'), and when the vitest process that started this worker is gone (a CI timeout's SIGTERM to
 * vitest alone leaves the worker running on, holding its namespaces). Each namespace's owner is
 * written down (owner-process.ts) so that the next run's global setup removes those a SIGKILL left.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { statSync } from 'node:fs';
import { basename } from 'node:path';
import { createNamespace, deleteNamespace } from '../../src/netns/namespace.js';
import { forgetNamespaceOwner, NAMESPACE_PREFIX, recordNamespaceOwner } from './owner-process.js';

// One set per process, however many times a test runner evaluates this module, so that the handlers
// below (installed once) see every namespace made.
const MADE_KEY = Symbol.for('vcnet.test.namespaces-made');
const processGlobals = globalThis as { [MADE_KEY]?: Set<string> };
const firstLoad = processGlobals[MADE_KEY] === undefined;
processGlobals[MADE_KEY] ??= new Set<string>();
const made: Set<string> = processGlobals[MADE_KEY];

function deleteNamespaceAndOwner(path: string): void {
  deleteNamespace(path);
  made.delete(path);
  forgetNamespaceOwner(NAMESPACE_PREFIX, basename(path));
}

function deleteAllMade(): void {
  for (const path of [...made]) {
    try {
      deleteNamespaceAndOwner(path);
    } catch {
      // best effort while the process ends
    }
  }
}

if (firstLoad) {
  process.on('exit', deleteAllMade);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      deleteAllMade();
      // The handler is gone (once): the signal's default action now ends the process as it would have.
      process.kill(process.pid, signal);
    });
  }
  const parentAtStart = process.ppid;
  setInterval(() => {
    if (process.ppid === parentAtStart) return;
    deleteAllMade();
    process.kill(process.pid, 'SIGKILL');
  }, 1000).unref();
}

export interface TestNamespace {
  name: string;
  path: string;
  /** Runs a command inside the namespace (ip netns exec) and returns its stdout. */
  exec(command: string, args: string[]): string;
  /** `ip -j ...` inside the namespace, parsed. */
  ipJson<T = unknown>(...args: string[]): T;
  /** `tc -j ...` inside the namespace, parsed. */
  tcJson<T = unknown>(...args: string[]): T;
  delete(): void;
}

/** A TestNamespace view of an existing named namespace (ip netns exec, ip -j, tc -j). */
export function namespaceView(
  name: string,
  path: string,
  remove: () => void = () => deleteNamespace(path),
): TestNamespace {
  // `ip -n NAME` and `tc -n NAME` enter the namespace as `ip netns exec NAME` does (the same setns,
  // private mounts and /sys), in one program started instead of two: fingerprints run ip and tc
  // dozens of times a test, and the kill loop thousands.
  const exec = (command: string, args: string[]): string =>
    execFileSync(
      command === 'ip' || command === 'tc' ? command : 'ip',
      command === 'ip' || command === 'tc' ? ['-n', name, ...args] : ['netns', 'exec', name, command, ...args],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] },
    );
  return {
    name,
    path,
    exec,
    ipJson: <T>(...args: string[]) => JSON.parse(exec('ip', ['-j', ...args]) || '[]') as T,
    tcJson: <T>(...args: string[]) => JSON.parse(exec('tc', ['-j', ...args]) || '[]') as T,
    delete: remove,
  };
}

export function makeNamespace(label = 'test'): TestNamespace {
  const name = `${NAMESPACE_PREFIX}-${label}-${randomBytes(4).toString('hex')}`;
  // The owner first: a namespace never exists unrecorded (a record without its namespace is harmless).
  recordNamespaceOwner(NAMESPACE_PREFIX, name);
  let path: string;
  try {
    path = createNamespace(name);
  } catch (error) {
    forgetNamespaceOwner(NAMESPACE_PREFIX, name);
    throw error;
  }
  made.add(path);
  return namespaceView(name, path, () => deleteNamespaceAndOwner(path));
}

/**
 * Deletes `namespace` and makes a new one the kernel gives its inode, for tests of a record whose
 * namespace is gone and whose inode number a later namespace has; undefined when none got it in
 * `tries` (the test then says it skipped). The kernel hands out the lowest free number, to
 * namespaces and /proc entries alike, so lower numbers freed by others are taken first by
 * namespaces made (and kept) before the delete; then namespaces are made (and kept: deleting one
 * frees lower numbers again) until the number comes free (a namespace's teardown is asynchronous)
 * and one gets it. Those kept are deleted before it returns.
 */
export async function replaceWithSameInode(
  namespace: TestNamespace,
  label = 'reuse',
  tries = 100,
): Promise<TestNamespace | undefined> {
  const { ino } = statSync(namespace.path);
  const kept: TestNamespace[] = [];
  try {
    for (let attempt = 0; attempt < tries; attempt++) {
      const filler = makeNamespace(label);
      kept.push(filler);
      if (statSync(filler.path).ino > ino) break;
    }
    namespace.delete();
    for (let attempt = 0; attempt < tries; attempt++) {
      const made = makeNamespace(label);
      if (statSync(made.path).ino === ino) return made;
      kept.push(made);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    return undefined;
  } finally {
    for (const made of kept) made.delete();
  }
}

/** Deletes every namespace this process made and has not deleted yet. */
export function cleanupNamespaces(): void {
  for (const path of [...made]) deleteNamespaceAndOwner(path);
}

/** Whether this kernel can create a link of `kind` (ipvlan, dummy, vxlan... are missing on some hosts). */
export function kernelSupportsLinkKind(
  namespace: TestNamespace,
  kind: string,
  extra: string[] = [],
): { ok: boolean; reason: string } {
  const probe = `probe${randomBytes(2).toString('hex')}`;
  try {
    namespace.exec('ip', ['link', 'add', probe, ...extra, 'type', kind]);
    namespace.exec('ip', ['link', 'del', probe]);
    return { ok: true, reason: '' };
  } catch (error) {
    const stderr = String((error as { stderr?: string }).stderr ?? error).trim();
    return { ok: false, reason: `this kernel cannot create ${kind} links: ${stderr}` };
  }
}
