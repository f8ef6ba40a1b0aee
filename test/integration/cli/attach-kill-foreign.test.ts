/**
 * An attach journals every record it may leave, for all its endpoints, before its first change (its
 * intent). Killed before an endpoint made its link, that endpoint's steps on pod links were never
 * made: detach and gc used to undo them anyway, deleting another tool's htb (and its class) and an
 * empty ingress qdisc it added on the pod link after the kill, and, for macvtap, putting back an
 * address and a route the pod's owner had removed since. Now they are passed over, and not counted
 * as "already gone". The attach is paused before a step by the executor's test seam and killed -9.
 */
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { pauseAtStep, stateDirectoryPerTest, vcnet, vcnetAsync } from '../../helpers/cli.js';
import type { TestNamespace } from '../../helpers/namespace.js';
import { fingerprint, makePod } from '../../helpers/pod.js';

const stateDirectory = stateDirectoryPerTest('vcnet-kill-foreign-');

/** Attach paused before step `position` (whole process) and killed -9 there: the op it paused at, or undefined when it finished. */
async function killAt(args: string[], position: number): Promise<string | undefined> {
  const run = vcnetAsync(args, pauseAtStep(position));
  const deadline = Date.now() + 20_000;
  for (;;) {
    const paused = new RegExp(`paused at step ${position} \\(([a-z-]+)\\)`).exec(run.output().stderr);
    if (paused) {
      run.child.kill('SIGKILL');
      await run.done;
      return paused[1];
    }
    if (run.child.exitCode !== null) return undefined;
    if (Date.now() > deadline) throw new Error(`attach never paused: ${run.output().stderr}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

function sandbox(model: 'tcfilter' | 'macvtap', rates: boolean) {
  const directory = stateDirectory();
  const { pod } = makePod({ interfaces: 2 });
  const config = join(directory, 'configuration.toml');
  writeFileSync(
    config,
    `[runtime]\ninternetworking_model = "${model}"\n${rates ? '[hypervisor.qemu]\ntx_rate_limiter_max_rate = 20000000\nrx_rate_limiter_max_rate = 30000000\n' : ''}`,
  );
  const state = join(directory, 'state');
  return {
    pod,
    state,
    recordFile: join(state, 'k', 'state.json'),
    attachArgs: ['attach', '--sandbox', 'k', '--netns', pod.path, '--config', config, '--state-dir', state],
    detachArgs: ['detach', '--sandbox', 'k', '--state-dir', state],
    gcArgs: ['gc', '--netns', pod.path, '--state-dir', state],
  };
}

/** Another tool shapes eth1 (a root htb and a class) and adds an empty ingress qdisc there. */
function shapeEth1(pod: TestNamespace): void {
  pod.exec('tc', ['qdisc', 'add', 'dev', 'eth1', 'root', 'handle', '1:', 'htb', 'default', '10']);
  pod.exec('tc', ['class', 'add', 'dev', 'eth1', 'parent', '1:', 'classid', '1:10', 'htb', 'rate', '5mbit']);
  pod.exec('tc', ['qdisc', 'add', 'dev', 'eth1', 'ingress']);
}

function unshapeEth1(pod: TestNamespace): void {
  pod.exec('tc', ['qdisc', 'del', 'dev', 'eth1', 'root']);
  pod.exec('tc', ['qdisc', 'del', 'dev', 'eth1', 'ingress']);
}

/** eth1's htb classes (this tc prints no JSON for them). */
const eth1Classes = (pod: TestNamespace) =>
  [...pod.exec('tc', ['class', 'show', 'dev', 'eth1']).matchAll(/class htb (\S+)/g)].map((match) => match[1]);

describe("a killed attach's steps on pod links it never reached", () => {
  it("tcfilter with rate limits: detach after a kill anywhere before eth1's tap leaves another tool's shaping of eth1", async () => {
    const { pod, attachArgs, detachArgs } = sandbox('tcfilter', true);
    shapeEth1(pod);
    const theirs = fingerprint(pod);
    unshapeEth1(pod);
    let position = 0;
    for (; ; position++) {
      const op = await killAt(attachArgs, position);
      expect(op, `the attach paused at step ${position}`).toBeDefined();
      // Past eth0's plan: eth1's tap is next (that kill is checked too, then the loop ends).
      const eth1Next = position > 0 && op === 'create-tap';
      shapeEth1(pod);
      const detached = vcnet(detachArgs);
      expect(detached.status, detached.stderr).toBe(0);
      if (position === 0) {
        expect(detached.stdout).toBe('detached sandbox k: 0 change(s) undone\n');
        expect(detached.stderr).toBe('');
      }
      expect(fingerprint(pod), `namespace after a kill at step ${position} and detach`).toEqual(theirs);
      expect(eth1Classes(pod), `eth1's class after a kill at step ${position}`).toEqual(['1:10']);
      unshapeEth1(pod);
      if (eth1Next) break;
    }
    expect(position).toBeGreaterThan(10);
  }, 600_000);

  it("tcfilter with rate limits: gc after a kill before either tap leaves another tool's shaping, and drops the record", async () => {
    const { pod, attachArgs, gcArgs, recordFile } = sandbox('tcfilter', true);
    expect(await killAt(attachArgs, 0)).toBe('create-tap');
    shapeEth1(pod);
    const theirs = fingerprint(pod);
    const collected = vcnet(gcArgs);
    expect(collected.status, collected.stderr).toBe(0);
    // Neither endpoint made anything: said once for both (--json lists each).
    expect(collected.stdout).toContain(
      'unfinished attach of 2 interfaces (eth0, eth1), stopped before it made anything for them',
    );
    expect(fingerprint(pod)).toEqual(theirs);
    expect(eth1Classes(pod)).toEqual(['1:10']);
    expect(existsSync(recordFile)).toBe(false);
  }, 120_000);

  it('gc --dry-run after a kill at any step lists what gc then removes, not the qdiscs and filters journaled ahead', async () => {
    const { pod, attachArgs, gcArgs } = sandbox('tcfilter', false);
    const before = fingerprint(pod);
    const removed = (args: string[]) => {
      const result = vcnet([...args, '--json']);
      expect(result.status, result.stderr).toBe(0);
      return (JSON.parse(result.stdout) as { removed: Array<{ kind: string; detail: string }> }).removed
        .filter((item) => item.kind === 'state')
        .map((item) => item.detail)
        .sort();
    };
    let sawUnmade = false;
    for (let position = 0; ; position++) {
      const op = await killAt(attachArgs, position);
      if (op === undefined) {
        expect(vcnet(['detach', ...attachArgs.slice(1, 3), ...attachArgs.slice(-2)]).status).toBe(0);
        break;
      }
      const planned = removed([...gcArgs, '--dry-run']);
      // Killed after eth0's tap, before its batch: the tap is all there is to undo on eth0.
      if (planned.includes('unfinished attach of eth0: tun tap0_kata')) sawUnmade = true;
      expect(removed(gcArgs), `killed at step ${position} (${op})`).toEqual(planned);
      expect(fingerprint(pod), `killed at step ${position} (${op})`).toEqual(before);
    }
    expect(sawUnmade).toBe(true);
  }, 600_000);

  for (const mode of ['detach', 'gc'] as const) {
    it(`macvtap killed before its first macvtap: ${mode} puts back no address, route or neighbour the owner removed since`, async () => {
      const { pod, attachArgs, detachArgs, gcArgs, recordFile } = sandbox('macvtap', false);
      const op = await killAt(attachArgs, 0);
      // The pod's owner takes eth1's IPv4 address and its route away, and eth0's IPv6 address and neighbour.
      pod.exec('ip', ['route', 'del', '10.101.0.0/16']);
      pod.exec('ip', ['addr', 'del', '10.201.0.2/24', 'dev', 'eth1']);
      pod.exec('ip', ['addr', 'del', 'fd00:200::2/64', 'dev', 'eth0']);
      pod.exec('ip', ['neigh', 'del', '10.200.0.9', 'dev', 'eth0']);
      const theirs = fingerprint(pod);
      const result = vcnet(mode === 'detach' ? detachArgs : gcArgs);
      expect(result.status, result.stderr).toBe(0);
      if (mode === 'detach') expect(result.stdout).toBe('detached sandbox k: 0 change(s) undone\n');
      expect(fingerprint(pod)).toEqual(theirs);
      expect(existsSync(recordFile)).toBe(false);
      // The macvtap is its attach's first step: nothing on eth0 or eth1 comes before it.
      expect(op).toBe('create-link');
    }, 120_000);
  }

  // Killed after eth0's pod-link steps (before eth1's first), then eth0's own link deleted by hand (an
  // operator tidying up, a pod restart) or renamed: eth0's link is absent (or under another name), but
  // its steps on eth0 are there, and were undone before session 19 recorded them `madeAfter` that
  // link. They are told made by what shows on eth0 (vcnet's redirect, its htb, the MAC it set), so
  // everything goes back; eth1's, which never ran, stay passed over (another tool's shaping there too).
  for (const model of ['tcfilter', 'macvtap'] as const) {
    for (const hand of ['deleted', 'renamed'] as const) {
      for (const mode of ['detach', 'gc'] as const) {
        it(`${model}${model === 'tcfilter' ? ' with rate limits' : ''}, killed after eth0's steps, its ${model === 'tcfilter' ? 'tap' : 'macvtap'} ${hand} by hand: ${mode} puts eth0 back exactly`, async () => {
          const { pod, attachArgs, detachArgs, gcArgs, recordFile } = sandbox(model, model === 'tcfilter');
          // eth0's plan is as many steps as its dry run has changes: eth1's first step comes next.
          const dryRun = vcnet([...attachArgs, '--dry-run']);
          const eth0Steps = Number(/# eth0 \(virtual\): \w+, (\d+) change/.exec(dryRun.stdout)?.[1]);
          expect(eth0Steps, dryRun.stdout).toBeGreaterThan(3);
          const before = fingerprint(pod);
          const op = await killAt(attachArgs, eth0Steps);
          expect(op, "eth1's first step: its own link").toBe(model === 'tcfilter' ? 'create-tap' : 'create-link');
          if (hand === 'deleted') pod.exec('ip', ['link', 'del', 'tap0_kata']);
          else pod.exec('ip', ['link', 'set', 'tap0_kata', 'name', 'moved0']);
          if (model === 'tcfilter') shapeEth1(pod);
          const result = vcnet(mode === 'detach' ? detachArgs : gcArgs);
          expect(result.status, result.stderr).toBe(0);
          if (model === 'tcfilter') {
            expect(eth1Classes(pod)).toEqual(['1:10']);
            unshapeEth1(pod);
          }
          expect(fingerprint(pod)).toEqual(before);
          expect(existsSync(recordFile)).toBe(false);
          if (mode === 'gc') {
            // Only what it undid: not a link that was gone already, nor eth1's steps that never ran.
            expect(result.stdout).toContain('unfinished attach of eth0: ');
            expect(result.stdout).toContain('unfinished attach of eth1, stopped before it made anything');
            if (hand === 'deleted') expect(result.stdout).not.toContain('tap0_kata');
          } else {
            expect(result.stdout).not.toContain(' 0 change(s) undone');
          }
        }, 120_000);
      }
    }
  }
});
