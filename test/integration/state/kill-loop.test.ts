/**
 * The kill -9 loop of issue 11: for each model, at least 50 kills of `vcnet attach` and 50 of
 * `vcnet detach` at random points (a worker thread in the process sends SIGKILL a random time after
 * the operation starts: test/helpers/kill-preload.mjs), each followed by `vcnet detach`. Every time:
 * nothing vcnet made is unrecorded while the record lives, detach finishes the job, the namespace is
 * exactly as before, and the sandbox id can be attached again (no id stuck).
 *
 * The random points are drawn over the whole window from the operation's start to the process's exit,
 * measured in the same run, plus a fifth more so that some runs finish (the loop counts real kills).
 * The seed is printed, and a failure names the round, the operation and the delay.
 */
import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { type CliResult, killAfter, stateDirectoryPerTest, vcnetAsync } from '../../helpers/cli.js';
import { crashTestSandbox } from '../../helpers/crash-sandbox.js';
import type { TestNamespace } from '../../helpers/namespace.js';
import { fingerprint } from '../../helpers/pod.js';
import { seededRandom } from '../../helpers/seeded-random.js';

const KILLS_PER_OPERATION = Number(process.env.VCNET_KILLS ?? 50);
const VCNET_GROUP = 0x7663;
const stateDirectory = stateDirectoryPerTest('vcnet-kill-loop-');

/** Runs the CLI without blocking the test worker; `killed` when SIGKILL ended it. */
async function run(args: string[], env: Record<string, string> = {}): Promise<CliResult & { killed: boolean }> {
  const started = vcnetAsync(args, env);
  const result = await started.done;
  return { ...result, killed: started.child.signalCode === 'SIGKILL' };
}

/** Every create-link step anywhere in a record. */
function recordedLinks(value: unknown, into = new Set<string>()): Set<string> {
  if (Array.isArray(value)) for (const item of value) recordedLinks(item, into);
  else if (value && typeof value === 'object') {
    const object = value as Record<string, unknown>;
    if (object.step === 'create-link' && typeof object.name === 'string') into.add(object.name);
    for (const item of Object.values(object)) recordedLinks(item, into);
  }
  return into;
}

/** vcnet's links in the pod (its link group) that no record names: what a journal gap would leak. */
function unrecordedLinks(pod: TestNamespace, recordFile: string): string[] {
  const record = existsSync(recordFile) ? JSON.parse(readFileSync(recordFile, 'utf8')) : undefined;
  const named = recordedLinks(record);
  return pod
    .ipJson<Array<{ ifname: string; group: string }>>('-d', 'link', 'show')
    .filter((link) => link.group === String(VCNET_GROUP) || link.group === '0x7663')
    .map((link) => link.ifname)
    .filter((name) => !named.has(name));
}

describe('kill -9 at random points of attach and detach', () => {
  for (const model of ['tcfilter', 'macvtap'] as const) {
    it(`${model}: ${KILLS_PER_OPERATION} kills of each, every namespace exact, nothing unrecorded, no id stuck`, async () => {
      const { pod, before, recordFile, attachArgs, detachArgs } = crashTestSandbox(stateDirectory(), model);

      // The windows, measured here: from the operation's start to the process's exit.
      const windowOf = (result: CliResult) => Number(/vcnet: kill window (\d+)/.exec(result.stderr)?.[1] ?? Number.NaN);
      const attached = await run(attachArgs, killAfter('attach'));
      expect(attached.status, attached.stderr).toBe(0);
      const detached = await run(detachArgs, killAfter('detach'));
      expect(detached.status, detached.stderr).toBe(0);
      const windows = { attach: windowOf(attached), detach: windowOf(detached) };
      expect(windows.attach).toBeGreaterThan(0);
      expect(windows.detach).toBeGreaterThan(0);

      const seed = Number(process.env.VCNET_KILL_SEED ?? Date.now() % 2 ** 31);
      const next = seededRandom(seed);
      console.log(`kill loop ${model}: seed ${seed}, windows attach ${windows.attach} us, detach ${windows.detach} us`);
      const kills = { attach: 0, detach: 0, detachOfCompleteAttach: 0 };
      // A fifth of the detach kills at least hit the detach of a complete attach (a third of the attaches run through).
      const enough = () =>
        kills.attach >= KILLS_PER_OPERATION &&
        kills.detach >= KILLS_PER_OPERATION &&
        kills.detachOfCompleteAttach >= Math.ceil(KILLS_PER_OPERATION / 5);
      for (let round = 0; !enough(); round++) {
        expect(round, 'too few runs were killed: the windows are wrong').toBeLessThan(KILLS_PER_OPERATION * 4);
        // An attach killed at a random point (a third of them run to the end), then a detach killed
        // at a random point of whatever that left, then a detach that must finish the job.
        const attachDelay = Math.floor(next() * windows.attach * 1.5);
        const detachDelay = Math.floor(next() * windows.detach * 1.2);
        const where = `round ${round}: attach killed at ${attachDelay} us, detach at ${detachDelay} us (seed ${seed})`;
        const attach = await run(attachArgs, killAfter('attach', attachDelay));
        if (attach.killed) kills.attach++;
        else expect(attach.status, `${where}: attach ran to the end: ${attach.stderr}`).toBe(0);
        // Whatever vcnet made is in the record (the journal has no gap).
        expect(unrecordedLinks(pod, recordFile), `${where}: after the attach`).toEqual([]);
        const detach = await run(detachArgs, killAfter('detach', detachDelay));
        if (detach.killed) {
          kills.detach++;
          if (!attach.killed) kills.detachOfCompleteAttach++;
        } else {
          expect(detach.status, `${where}: detach ran to the end: ${detach.stderr}`).toBe(0);
        }
        expect(unrecordedLinks(pod, recordFile), `${where}: after the detach`).toEqual([]);
        const finish = await run(detachArgs);
        expect(finish.status, `${where}: detach afterwards: ${finish.stderr}`).toBe(0);
        expect(fingerprint(pod), where).toEqual(before);
        expect(existsSync(recordFile), `${where}: the record is gone after detach`).toBe(false);
      }
      console.log(
        `kill loop ${model}: ${kills.attach} attach kills, ${kills.detach} detach kills (${kills.detachOfCompleteAttach} of a complete attach)`,
      );
      // The id is not stuck: a last attach and detach run through.
      expect((await run(attachArgs)).status).toBe(0);
      expect((await run(detachArgs)).status).toBe(0);
      expect(fingerprint(pod)).toEqual(before);
    }, 1_200_000);
  }
});
