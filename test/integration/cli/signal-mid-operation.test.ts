/**
 * TERM, INT or HUP in the middle of attach ends vcnet at once, as kill -9 does (docs/troubleshooting.md,
 * "After a vcnet process was killed"): what it made is recorded, and detach or gc puts it back.
 */
import { describe, expect, it } from 'vitest';
import { pauseAtStep, stateDirectoryPerTest, vcnet, vcnetAsync } from '../../helpers/cli.js';
import { crashTestSandbox } from '../../helpers/crash-sandbox.js';
import { fingerprint } from '../../helpers/pod.js';

const stateDirectory = stateDirectoryPerTest('vcnet-signal-');

describe('a signal in the middle of attach', () => {
  for (const [signal, then] of [
    ['SIGTERM', 'detach'],
    ['SIGINT', 'gc'],
    ['SIGHUP', 'detach'],
  ] as const) {
    it(`${signal}: vcnet ends by the signal, the half-built attach is recorded, and ${then} puts the namespace back`, async () => {
      const { pod, before, attachArgs, detachArgs, state } = crashTestSandbox(stateDirectory(), 'tcfilter');
      // Step 3: a tap and more already made, the plan not finished.
      const run = vcnetAsync(attachArgs, pauseAtStep(3));
      const deadline = Date.now() + 20_000;
      while (!run.output().stderr.includes('paused at step 3')) {
        if (run.child.exitCode !== null || Date.now() > deadline) throw new Error(`no pause: ${run.output().stderr}`);
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
      const ended = new Promise<NodeJS.Signals | null>((resolve) => run.child.on('exit', (_code, how) => resolve(how)));
      run.child.kill(signal);
      expect(await ended).toBe(signal);
      expect(fingerprint(pod)).not.toEqual(before);
      const cleanup = then === 'detach' ? vcnet(detachArgs) : vcnet(['gc', '--netns', pod.path, '--state-dir', state]);
      expect(cleanup.status, cleanup.stderr).toBe(0);
      expect(fingerprint(pod)).toEqual(before);
    }, 60_000);
  }
});
