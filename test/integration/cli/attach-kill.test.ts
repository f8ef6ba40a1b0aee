/**
 * kill -9 of `vcnet attach` at every step of its plan (two endpoints, tcfilter and macvtap with a
 * tx limit, so taps, macvtaps, ifbs, qdiscs and filters are all in flight at some point), then
 * `vcnet detach`: the namespace is exactly as before every time, and the sandbox id can be attached
 * again. The pause comes from the executor's test seam, set by a preload (test/helpers/fault-preload.mjs).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { pauseAtStep, stateDirectoryPerTest, vcnet, vcnetAsync } from '../../helpers/cli.js';
import { fingerprint, makePod } from '../../helpers/pod.js';

const stateDirectory = stateDirectoryPerTest('vcnet-kill-');

async function killAt(args: string[], position: number): Promise<boolean> {
  const run = vcnetAsync(args, pauseAtStep(position));
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (run.output().stderr.includes(`paused at step ${position}`)) break;
    if (run.child.exitCode !== null) return false; // the plan has fewer steps: attach completed
    if (Date.now() > deadline) throw new Error(`attach never paused: ${run.output().stderr}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  run.child.kill('SIGKILL');
  await run.done;
  return true;
}

describe('kill -9 during attach, at every step', () => {
  for (const model of ['tcfilter', 'macvtap'] as const) {
    it(`${model}: detach afterwards leaves the namespace exactly as before`, async () => {
      const { pod } = makePod({ interfaces: 2 });
      const before = fingerprint(pod);
      const config = join(stateDirectory(), 'configuration.toml');
      writeFileSync(
        config,
        `[runtime]\ninternetworking_model = "${model}"\n[hypervisor.qemu]\ntx_rate_limiter_max_rate = 20000000\n`,
      );
      const args = [
        'attach',
        '--sandbox',
        'k',
        '--netns',
        pod.path,
        '--config',
        config,
        '--state-dir',
        join(stateDirectory(), 'state'),
      ];
      let killed = 0;
      for (let position = 0; ; position++) {
        const paused = await killAt(args, position);
        const detached = vcnet(['detach', '--sandbox', 'k', '--state-dir', join(stateDirectory(), 'state')]);
        expect(detached.status, `detach after kill at step ${position}: ${detached.stderr}`).toBe(0);
        expect(fingerprint(pod), `namespace after kill at step ${position}`).toEqual(before);
        if (!paused) break;
        killed++;
      }
      expect(killed).toBeGreaterThan(10);
    }, 600_000);
  }
});
