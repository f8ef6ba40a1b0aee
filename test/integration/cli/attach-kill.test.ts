import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { killAtStep, stateDirectoryPerTest, vcnet } from '../../helpers/cli.js';
import { crashTestSandbox } from '../../helpers/crash-sandbox.js';
import { fingerprint } from '../../helpers/pod.js';

const stateDirectory = stateDirectoryPerTest('vcnet-kill-');

const killAt = killAtStep;

describe('kill -9 during attach, at every step', () => {
  for (const model of ['tcfilter', 'macvtap'] as const) {
    it(`${model}: detach afterwards leaves the namespace exactly as before`, async () => {
      const { pod, before, attachArgs: args, detachArgs } = crashTestSandbox(stateDirectory(), model);
      let killed = 0;
      for (let position = 0; ; position++) {
        const paused = await killAt(args, position);
        const detached = vcnet(detachArgs);
        expect(detached.status, `detach after kill at step ${position}: ${detached.stderr}`).toBe(0);
        expect(fingerprint(pod), `namespace after kill at step ${position}`).toEqual(before);
        if (!paused) break;
        killed++;
      }
      expect(killed).toBeGreaterThan(10);
    }, 600_000);
  }
});

describe('kill -9 during attach, at every step, then only vcnet gc', () => {
  for (const model of ['tcfilter', 'macvtap'] as const) {
    it(`${model}: gc alone puts the namespace back and drops the record, wherever the attach was killed`, async () => {
      const { pod, before, attachArgs: args, state, recordFile } = crashTestSandbox(stateDirectory(), model);
      let killed = 0;
      for (let position = 0; ; position++) {
        const paused = await killAt(args, position);
        if (!paused) break;
        killed++;
        // What a node's cleanup runs when it does not know which sandboxes died: gc, not detach.
        const collected = vcnet(['gc', '--netns', pod.path, '--state-dir', state]);
        expect(collected.status, `gc after kill at step ${position}: ${collected.stderr}`).toBe(0);
        expect(fingerprint(pod), `namespace after kill at step ${position} and gc`).toEqual(before);
        expect(existsSync(recordFile), `record after kill at step ${position} and gc`).toBe(false);
      }
      expect(killed).toBeGreaterThan(10);
      // The last run was not paused: it finished, and a finished attach is not the killed kind.
      expect(existsSync(recordFile)).toBe(true);
      const attached = fingerprint(pod);
      expect(vcnet(['gc', '--netns', pod.path, '--state-dir', state]).status).toBe(0);
      expect(fingerprint(pod)).toEqual(attached);
      expect(existsSync(recordFile)).toBe(true);
      expect(vcnet(['detach', '--sandbox', 'k', '--state-dir', state]).status).toBe(0);
      expect(fingerprint(pod)).toEqual(before);
    }, 600_000);
  }
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
      const collected = vcnet(['gc', '--netns', pod.path, '--state-dir', state]);
      expect(collected.status, `gc after kill at step ${position}: ${collected.stderr}`).toBe(0);
      expect(collected.stderr, `gc after kill at step ${position}`).not.toContain('transmit queue length');
      expect(fingerprint(pod), `namespace after kill at step ${position} and gc`).toEqual(before);
      expect(existsSync(recordFile), `record after kill at step ${position} and gc`).toBe(false);
    }
    expect(killed).toBeGreaterThan(10);
    expect(vcnet(['detach', '--sandbox', 'k', '--state-dir', state]).status).toBe(0);
    expect(fingerprint(pod)).toEqual(before);
  }, 600_000);
});
