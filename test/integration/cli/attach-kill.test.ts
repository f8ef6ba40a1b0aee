import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { type CliResult, killAtStep, stateDirectoryPerTest, vcnetAsync } from '../../helpers/cli.js';
import { crashTestSandbox } from '../../helpers/crash-sandbox.js';
import { fingerprint } from '../../helpers/pod.js';

const stateDirectory = stateDirectoryPerTest('vcnet-kill-');

const killAt = killAtStep;

/** The CLI without blocking the worker, so that the other model's loop goes on meanwhile. */
const vcnet = (args: string[]): Promise<CliResult> => vcnetAsync(args).done;

type Model = 'tcfilter' | 'macvtap';

/**
 * Runs `loop` for both models at once, each with its own directory (its pod, configuration and
 * state): a step is mostly the start of a vcnet process, one core's work, so two loops use the
 * machine's two cores. One test, not two concurrent ones: the per-test cleanup deletes every
 * namespace this worker made. `stopped()` turns true once the other loop failed: a loop ends at its
 * next step then, instead of running on over namespaces the cleanup deletes.
 */
async function bothModels(loop: (model: Model, directory: string, stopped: () => boolean) => Promise<void>) {
  let failed = false;
  const outcomes = await Promise.allSettled(
    (['tcfilter', 'macvtap'] as const).map((model) => {
      const directory = join(stateDirectory(), model);
      mkdirSync(directory);
      return loop(model, directory, () => failed).catch((error: unknown) => {
        failed = true;
        throw error;
      });
    }),
  );
  for (const outcome of outcomes) if (outcome.status === 'rejected') throw outcome.reason;
}

describe('kill -9 during attach, at every step', () => {
  it('tcfilter and macvtap: detach afterwards leaves the namespace exactly as before', async () => {
    await bothModels(async (model, directory, stopped) => {
      const { pod, before, attachArgs: args, detachArgs } = crashTestSandbox(directory, model);
      let killed = 0;
      for (let position = 0; !stopped(); position++) {
        const paused = await killAt(args, position);
        const detached = await vcnet(detachArgs);
        expect(detached.status, `${model}: detach after kill at step ${position}: ${detached.stderr}`).toBe(0);
        expect(fingerprint(pod), `${model}: namespace after kill at step ${position}`).toEqual(before);
        if (!paused) break;
        killed++;
      }
      if (stopped()) return;
      expect(killed, `${model}: steps killed`).toBeGreaterThan(10);
    });
  }, 600_000);
});

describe('kill -9 during attach, at every step, then only vcnet gc', () => {
  it('tcfilter and macvtap: gc alone puts the namespace back and drops the record, wherever the attach was killed', async () => {
    await bothModels(async (model, directory, stopped) => {
      const { pod, before, attachArgs: args, state, recordFile } = crashTestSandbox(directory, model);
      let killed = 0;
      for (let position = 0; !stopped(); position++) {
        const paused = await killAt(args, position);
        if (!paused) break;
        killed++;
        // What a node's cleanup runs when it does not know which sandboxes died: gc, not detach.
        const collected = await vcnet(['gc', '--netns', pod.path, '--state-dir', state]);
        expect(collected.status, `${model}: gc after kill at step ${position}: ${collected.stderr}`).toBe(0);
        expect(fingerprint(pod), `${model}: namespace after kill at step ${position} and gc`).toEqual(before);
        expect(existsSync(recordFile), `${model}: record after kill at step ${position} and gc`).toBe(false);
      }
      if (stopped()) return;
      expect(killed, `${model}: steps killed`).toBeGreaterThan(10);
      // The last run was not paused: it finished, and a finished attach is not the killed kind.
      expect(existsSync(recordFile), `${model}: record of the finished attach`).toBe(true);
      const attached = fingerprint(pod);
      expect((await vcnet(['gc', '--netns', pod.path, '--state-dir', state])).status, `${model}: gc`).toBe(0);
      expect(fingerprint(pod), `${model}: namespace after gc of a finished attach`).toEqual(attached);
      expect(existsSync(recordFile), `${model}: record after gc of a finished attach`).toBe(true);
      expect((await vcnet(['detach', '--sandbox', 'k', '--state-dir', state])).status, `${model}: detach`).toBe(0);
      expect(fingerprint(pod), `${model}: namespace after detach`).toEqual(before);
    });
  }, 600_000);
});

describe('kill -9 during attach of a pod veth without a transmit queue (txqueuelen 0, as CNI makes it), then vcnet gc', () => {
  // The kernel gives the veth 1000 with vcnet's first qdisc on it: killed anywhere after, gc puts 0
  // back, as the record says the link had, and does not call it someone else's change.
  it('tcfilter: gc alone puts txqueuelen 0 back, without a notice, wherever the attach was killed', async () => {
    const {
      pod,
      before,
      attachArgs: args,
      state,
      recordFile,
    } = crashTestSandbox(stateDirectory(), 'tcfilter', {
      txQueueLength: 0,
    });
    let killed = 0;
    for (let position = 0; ; position++) {
      const paused = await killAt(args, position);
      if (!paused) break;
      killed++;
      const collected = await vcnet(['gc', '--netns', pod.path, '--state-dir', state]);
      expect(collected.status, `gc after kill at step ${position}: ${collected.stderr}`).toBe(0);
      expect(collected.stderr, `gc after kill at step ${position}`).not.toContain('transmit queue length');
      expect(fingerprint(pod), `namespace after kill at step ${position} and gc`).toEqual(before);
      expect(existsSync(recordFile), `record after kill at step ${position} and gc`).toBe(false);
    }
    expect(killed).toBeGreaterThan(10);
    expect((await vcnet(['detach', '--sandbox', 'k', '--state-dir', state])).status).toBe(0);
    expect(fingerprint(pod)).toEqual(before);
  }, 600_000);
});
