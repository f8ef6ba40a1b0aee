/** Runs the built `vcnet` binary (dist/cli/main.js) and captures what it printed. */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeEach } from 'vitest';
import { collectOutput } from './child-output.js';
import { cleanupNamespaces } from './namespace.js';

export const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));

export interface CliResult {
  status: number;
  stdout: string;
  stderr: string;
}

export function vcnet(args: string[], env: Record<string, string> = {}, options: { cwd?: string } = {}): CliResult {
  const result = spawnSync(process.execPath, [CLI, ...args], {
    encoding: 'utf8',
    // A pod with thousands of routes prints them all (--json): more than spawnSync's 1 MiB default.
    maxBuffer: 256 * 1024 * 1024,
    env: { ...process.env, ...env },
    ...options,
  });
  return { status: result.status ?? -1, stdout: result.stdout, stderr: result.stderr };
}

export function vcnetAsync(args: string[], env: Record<string, string> = {}) {
  const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env } });
  const { done, sofar } = collectOutput(child);
  return { child, done: done as Promise<CliResult>, output: sofar };
}

export const SHORT_WAITS_PRELOAD = fileURLToPath(new URL('./short-waits-preload.mjs', import.meta.url));

/** The product's fixed waits a test may shorten in a vcnet process it starts (short-waits-preload.mjs). */
export interface ShortWaits {
  /** Each unplug's wait for the guest to release the NIC (10 s, or 20 s for add-iface's, del-iface's and an undo's). */
  unplugMs?: number;
}

/**
 * Environment that makes a vcnet process wait `waits` instead of the product's fixed waits, through
 * the wait seams (a preload sets them; production code has no such option): for a test that only sits
 * such a wait out (a paused QEMU never releases a NIC), not one that looks at its length or words.
 * `env`: more of the child's environment; a NODE_OPTIONS there keeps its preloads.
 */
export function shortWaits(waits: ShortWaits, env: Record<string, string> = {}): Record<string, string> {
  return {
    ...env,
    NODE_OPTIONS: `${env.NODE_OPTIONS ?? process.env.NODE_OPTIONS ?? ''} --import ${SHORT_WAITS_PRELOAD}`.trim(),
    ...(waits.unplugMs !== undefined ? { VCNET_TEST_UNPLUG_WAIT_MS: String(waits.unplugMs) } : {}),
  };
}

export const FAULT_PRELOAD = fileURLToPath(new URL('./fault-preload.mjs', import.meta.url));

/**
 * Environment that makes the vcnet process pause (30 s) right after it created `tap`, through the
 * executor's test seam (a preload sets it; production code has no such option).
 */
export function pauseAfterTap(tap: string, milliseconds = 30_000): Record<string, string> {
  return {
    NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import ${FAULT_PRELOAD}`.trim(),
    VCNET_TEST_PAUSE_AFTER_TAP: `${tap}:${milliseconds}`,
  };
}

/**
 * Environment that makes the vcnet (or vcnet-cni) process lose the answers to its `send`th netlink
 * send carrying a change (and, with `onwards`, to every send after it), through the transport's test
 * seam: the kernel runs the send, the receive then fails with ENOBUFS.
 */
export function loseAnswersAt(send: number, onwards = false): Record<string, string> {
  return {
    NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import ${FAULT_PRELOAD}`.trim(),
    VCNET_TEST_LOSE_ANSWERS: `${send}${onwards ? '+' : ''}`,
  };
}

/** Environment that makes the vcnet process pause (30 s) before the plan step at `position`. */
export function pauseAtStep(position: number, milliseconds = 30_000): Record<string, string> {
  return {
    NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import ${FAULT_PRELOAD}`.trim(),
    VCNET_TEST_PAUSE_AT_STEP: `${position}:${milliseconds}`,
  };
}

/**
 * Runs vcnet `args` paused before plan step `position` (pauseAtStep) and kills it there with SIGKILL.
 * False when it never paused: the plan has fewer steps, and the run completed.
 */
export async function killAtStep(args: string[], position: number): Promise<boolean> {
  const run = vcnetAsync(args, pauseAtStep(position));
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (run.output().stderr.includes(`paused at step ${position}`)) break;
    if (run.child.exitCode !== null) return false;
    if (Date.now() > deadline) throw new Error(`vcnet never paused at step ${position}: ${run.output().stderr}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  run.child.kill('SIGKILL');
  await run.done;
  return true;
}

/**
 * A fresh state directory for each test of the file, removed afterwards together with the test's
 * namespaces (even when the test fails). Returns the current test's directory.
 */
export function stateDirectoryPerTest(prefix = 'vcnet-state-'): () => string {
  let directory = '';
  beforeEach(() => {
    directory = mkdtempSync(join(tmpdir(), prefix));
  });
  afterEach(() => {
    cleanupNamespaces();
    rmSync(directory, { recursive: true, force: true });
  });
  return () => directory;
}

/** Kata's configuration.toml with an rx and a tx limit on the QEMU NICs, as a user would write it. */
export const RATE_LIMITED_KATA_CONFIG =
  '[hypervisor.qemu]\nrx_rate_limiter_max_rate = 100000000\ntx_rate_limiter_max_rate = 50000000\n';

/**
 * A file holding `text` for the whole test file (for cases listed before any test runs, where a
 * per-test directory does not exist yet), removed after its last test.
 */
export function filePerTestFile(name: string, text: string): string {
  const directory = mkdtempSync(join(tmpdir(), 'vcnet-file-'));
  const path = join(directory, name);
  writeFileSync(path, text);
  afterAll(() => rmSync(directory, { recursive: true, force: true }));
  return path;
}

export const KILL_PRELOAD = fileURLToPath(new URL('./kill-preload.mjs', import.meta.url));

/**
 * Environment for a vcnet (or vcnet-cni) run that kills itself (SIGKILL) `microseconds` after
 * `operation` starts, or, with `fromLoad`, after the process loaded the preload (before its own code);
 * with `atEnd`, when the operation's promise settles; with neither, it reports its windows instead
 * (kill-preload.mjs). `cniCommand` limits the kill to vcnet-cni runs of that CNI_COMMAND.
 */
export function killAfter(
  operation: 'attach' | 'detach',
  microseconds?: number,
  options: { fromLoad?: boolean; atEnd?: boolean; cniCommand?: 'ADD' | 'DEL' } = {},
): Record<string, string> {
  return {
    NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import ${KILL_PRELOAD}`.trim(),
    VCNET_TEST_KILL_OPERATION: operation,
    ...(options.fromLoad ? { VCNET_TEST_KILL_FROM: 'load' } : {}),
    ...(options.cniCommand ? { VCNET_TEST_KILL_CNI_COMMAND: options.cniCommand } : {}),
    ...(options.atEnd
      ? { VCNET_TEST_KILL_AT: 'asyncEnd' }
      : microseconds === undefined
        ? { VCNET_TEST_REPORT_WINDOW: '1' }
        : { VCNET_TEST_KILL_AFTER_US: String(microseconds) }),
  };
}

/**
 * Environment for a vcnet (or vcnet-cni) run that kills itself (SIGKILL) right after the `change`-th
 * change it makes from `operation`'s start (0: at the start), a netlink send that changes something
 * or a file changed; with `report`, it runs to the end and prints each change on stderr instead
 * ("vcnet: change <n>: <what>"; changesReported counts them). kill-preload.mjs says what counts.
 */
export function killAtChange(operation: 'attach' | 'detach', change: number | 'report'): Record<string, string> {
  return {
    NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import ${KILL_PRELOAD}`.trim(),
    VCNET_TEST_KILL_OPERATION: operation,
    ...(change === 'report' ? { VCNET_TEST_REPORT_CHANGES: '1' } : { VCNET_TEST_KILL_AT_CHANGE: String(change) }),
  };
}

/** The changes a killAtChange(…, 'report') run printed on `stderr`, in order. */
export function changesReported(stderr: string): string[] {
  return [...stderr.matchAll(/^vcnet: change \d+: (.*)$/gm)].map((match) => match[1]!);
}

/**
 * Environment for a vcnet run (add-iface, watch) that kills itself (SIGKILL) as soon as its first
 * endpoint hot-plug is done (tap, filters, netdev_add, device_add): the NIC is in the VM and the
 * record still keeps the endpoint as unfinished ('pending').
 */
export function killAfterHotplug(): Record<string, string> {
  return {
    NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import ${KILL_PRELOAD}`.trim(),
    VCNET_TEST_KILL_OPERATION: 'hotplug',
    VCNET_TEST_KILL_AT: 'asyncEnd',
  };
}
