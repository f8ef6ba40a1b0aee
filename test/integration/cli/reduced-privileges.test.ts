/**
 * vcnet run as a service manager may run it: with some capabilities dropped. A refusal is reported as
 * "not permitted" (exit 3) naming what is missing, and nothing refused is reported done.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CLI, pauseAfterTap, stateDirectoryPerTest, vcnet, vcnetAsync } from '../../helpers/cli.js';
import { makePod } from '../../helpers/pod.js';

const stateDirectory = stateDirectoryPerTest('vcnet-caps-');

/** `vcnet ARGS` as root with only the capabilities `keep` (e.g. ['sys_admin']), through setpriv. */
function vcnetWithCapabilities(keep: string[], args: string[], env: Record<string, string> = {}) {
  const caps = ['-all', ...keep.map((cap) => `+${cap}`)].join(',');
  const result = spawnSync(
    'setpriv',
    [`--bounding-set=${caps}`, `--inh-caps=${caps}`, '--', process.execPath, CLI, ...args],
    { encoding: 'utf8', env: { ...process.env, ...env } },
  );
  return { status: result.status ?? -1, stdout: result.stdout, stderr: result.stderr, error: result.error };
}

/** An attach of sandbox `id` killed (SIGKILL) right after it created tap0_kata: its record says so. */
async function killedAttach(id: string, namespacePath: string): Promise<void> {
  const run = vcnetAsync(
    ['attach', '--sandbox', id, '--netns', namespacePath, '--state-dir', stateDirectory()],
    pauseAfterTap('tap0_kata'),
  );
  const deadline = Date.now() + 20_000;
  while (!run.output().stderr.includes('paused after creating tap0_kata')) {
    if (run.child.exitCode !== null || Date.now() > deadline)
      throw new Error(`attach never paused: ${run.output().stderr}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  run.child.kill('SIGKILL');
  await run.done;
}

describe('gc without CAP_NET_ADMIN', () => {
  it('reports nothing it could not remove as removed, and exits 3 (text and --json)', async () => {
    const { pod } = makePod();
    await killedAttach('g', pod.path);
    const gcArgs = ['gc', '--netns', pod.path, '--state-dir', stateDirectory()];

    const text = vcnetWithCapabilities(['sys_admin'], gcArgs);
    expect(text.error).toBeUndefined();
    expect(text.stdout).not.toContain('unfinished attach');
    expect(text.stdout).toContain('removed nothing');
    expect(text.stderr).toContain('delete tun tap0_kata failed: EPERM');
    expect(text.status, text.stderr).toBe(3);

    const json = vcnetWithCapabilities(['sys_admin'], [...gcArgs, '--json']);
    expect(json.status, json.stderr).toBe(3);
    const report = JSON.parse(json.stdout) as { removed: unknown[]; failures: Array<{ errno?: string }> };
    expect(report.removed).toEqual([]);
    expect(report.failures).toContainEqual(expect.objectContaining({ errno: 'EPERM' }));
    expect(pod.exec('ip', ['link', 'show'])).toContain('tap0_kata');
    expect(existsSync(join(stateDirectory(), 'g', 'state.json'))).toBe(true);

    // With the capabilities, gc finishes it.
    const root = vcnet(gcArgs);
    expect(root.status, root.stderr).toBe(0);
    expect(root.stdout).toContain('unfinished attach of eth0');
    expect(pod.exec('ip', ['link', 'show'])).not.toContain('tap0_kata');
  }, 60_000);
});
