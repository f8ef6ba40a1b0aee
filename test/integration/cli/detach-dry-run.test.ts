/**
 * `vcnet detach --dry-run` prints what detach would undo, as ip/tc commands, from the record and the
 * namespace as they are now. It changes nothing (namespace and record); pasted into a shell inside
 * the pod, the commands put the namespace back as it was before attach, exactly as detach would, and
 * the detach that follows finds everything already gone.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { killAtStep, stateDirectoryPerTest, vcnet } from '../../helpers/cli.js';
import { dryRunCases } from '../../helpers/dry-run-cases.js';
import { fingerprint, makePod } from '../../helpers/pod.js';

const stateDirectory = stateDirectoryPerTest('vcnet-detach-dry-');

const cases = dryRunCases();

describe('vcnet detach --dry-run', () => {
  for (const { model, extra, shape, label } of cases) {
    it(`${model} ${label}: changes nothing, and its commands undo what attach made`, () => {
      const { pod } = makePod({ interfaces: 2 });
      shape?.(pod);
      const before = fingerprint(pod);
      const attach = vcnet([
        'attach',
        '--sandbox',
        'dry',
        '--netns',
        pod.path,
        '--model',
        model,
        '--state-dir',
        stateDirectory(),
        ...extra,
      ]);
      expect(attach.status, attach.stderr).toBe(0);
      const attached = fingerprint(pod);
      const statePath = join(stateDirectory(), 'dry', 'state.json');
      const record = readFileSync(statePath, 'utf8');

      const dry = vcnet(['detach', '--dry-run', '--sandbox', 'dry', '--state-dir', stateDirectory()]);
      expect(dry.status, dry.stderr).toBe(0);
      expect(fingerprint(pod)).toEqual(attached);
      expect(readFileSync(statePath, 'utf8')).toBe(record);
      expect(dry.stdout).toMatch(/^ip link del /m);

      // Run where a command smuggled in a link name would leave a file (see HOSTILE_LINK_NAMES).
      const shellDirectory = mkdtempSync(join(tmpdir(), 'vcnet-dry-sh-'));
      try {
        execFileSync('ip', ['netns', 'exec', pod.name, 'sh', '-e'], {
          input: dry.stdout,
          encoding: 'utf8',
          cwd: shellDirectory,
        });
        expect(readdirSync(shellDirectory)).toEqual([]);
      } finally {
        rmSync(shellDirectory, { recursive: true, force: true });
      }
      expect(fingerprint(pod)).toEqual(before);

      // Nothing is left for detach to do (a link attribute set again to the value it has is accepted,
      // so it may count as undone); the namespace stays as it was, and the record goes.
      const detach = vcnet(['detach', '--sandbox', 'dry', '--state-dir', stateDirectory(), '--json']);
      expect(detach.status, detach.stderr).toBe(0);
      const report = JSON.parse(detach.stdout) as { found: boolean; undone: number; alreadyGone: number };
      expect(report.found).toBe(true);
      expect(report.alreadyGone).toBeGreaterThan(0);
      expect(fingerprint(pod)).toEqual(before);
      const after = vcnet(['detach', '--dry-run', '--sandbox', 'dry', '--state-dir', stateDirectory()]);
      expect(after.stdout).toContain('sandbox dry is not attached: detach would do nothing');
    });
  }

  it('--json gives the changes as data, with their commands', () => {
    const { pod } = makePod();
    expect(vcnet(['attach', '--sandbox', 'js', '--netns', pod.path, '--state-dir', stateDirectory()]).status).toBe(0);
    const dry = vcnet(['detach', '--dry-run', '--json', '--sandbox', 'js', '--state-dir', stateDirectory()]);
    expect(dry.status, dry.stderr).toBe(0);
    const output = JSON.parse(dry.stdout) as {
      sandbox: string;
      dryRun: boolean;
      found: boolean;
      namespacePath: string;
      steps: Array<{ change: { op: string; link: { name: string; role: string } }; command: string }>;
    };
    expect(output).toMatchObject({ sandbox: 'js', dryRun: true, found: true, namespacePath: pod.path });
    // The tap goes (with the filters on it); the ingress qdisc goes from eth0, taking its filter.
    expect(output.steps.map((step) => `${step.change.op} ${step.change.link.name} ${step.change.link.role}`)).toEqual(
      expect.arrayContaining(['delete-link tap0_kata tap', 'delete-qdisc eth0 pod']),
    );
    expect(output.steps.every((step) => step.command.length > 0)).toBe(true);
    // The same names as detach --json, with the same types: counts, the lists beside them.
    expect(output).toMatchObject({ alreadyGone: 0, kept: 0, alreadyGoneObjects: [], keptObjects: [] });
    expect(vcnet(['detach', '--sandbox', 'js', '--state-dir', stateDirectory()]).status).toBe(0);
  });
  it('counts its changes as the detach after it does (a group delete is each of its links)', () => {
    const { pod } = makePod({ interfaces: 3 });
    const attach = vcnet(['attach', '--sandbox', 'count', '--netns', pod.path, '--state-dir', stateDirectory()]);
    expect(attach.status, attach.stderr).toBe(0);
    const dry = vcnet(['detach', '--dry-run', '--sandbox', 'count', '--state-dir', stateDirectory()]);
    expect(dry.status, dry.stderr).toBe(0);
    // Three taps go with one `ip link del group` request.
    expect(dry.stdout).toMatch(/^ip link del group /m);
    const planned = Number(/^# (\d+) change\(s\)$/m.exec(dry.stdout)?.[1]);
    const detach = vcnet(['detach', '--sandbox', 'count', '--state-dir', stateDirectory()]);
    expect(detach.status, detach.stderr).toBe(0);
    const undone = Number(/(\d+) change\(s\) undone/.exec(detach.stdout)?.[1]);
    expect(undone).toBeGreaterThan(3);
    expect(planned).toBe(undone);
  });

  it('lists what an attach killed before it made anything recorded ahead: never made, not undone, as detach', async () => {
    const { pod } = makePod();
    const before = fingerprint(pod);
    const args = ['--sandbox', 'never', '--state-dir', stateDirectory()];
    // Killed -9 paused before its first step: every intent is journaled, nothing made.
    expect(await killAtStep(['attach', ...args, '--netns', pod.path], 0)).toBe(true);
    const dry = vcnet(['detach', '--dry-run', ...args]);
    expect(dry.status, dry.stderr).toBe(0);
    expect(dry.stdout).toContain('# never made, not undone: tun tap0_kata\n');
    expect(dry.stdout).toContain('# never made, not undone: ingress qdisc on eth0\n');
    expect(dry.stdout).toContain('# 0 change(s)\n');
    const json = JSON.parse(vcnet(['detach', '--dry-run', '--json', ...args]).stdout);
    expect(json).toMatchObject({ steps: [], alreadyGone: 0, neverMade: expect.any(Number) });
    expect(json.neverMadeObjects).toHaveLength(json.neverMade);
    expect(json.neverMadeObjects).toEqual(expect.arrayContaining(['tun tap0_kata', 'ingress qdisc on eth0']));
    // The detach passes them over too: nothing undone, nothing counted as gone.
    const detach = vcnet(['detach', ...args]);
    expect(detach.status, detach.stderr).toBe(0);
    expect(detach.stdout).toContain('detached sandbox never: 0 change(s) undone\n');
    expect(fingerprint(pod)).toEqual(before);
  });

  it('tcfilter killed after the ingress qdisc on a veth without a transmit queue: its commands put txqueuelen 0 back, after the qdisc', async () => {
    const { pod } = makePod({ txQueueLength: 0 });
    const before = fingerprint(pod);
    const args = ['--sandbox', 'queue', '--state-dir', stateDirectory()];
    // Step 6 sets eth0's length back to 0: paused before it, eth0 has its ingress qdisc and the kernel's 1000.
    expect(await killAtStep(['attach', ...args, '--netns', pod.path], 6)).toBe(true);
    expect(pod.ipJson<Array<{ txqlen?: number }>>('link', 'show', 'eth0')[0]?.txqlen).toBe(1000);
    const dry = vcnet(['detach', '--dry-run', ...args]);
    expect(dry.status, dry.stderr).toBe(0);
    const commands = dry.stdout.split('\n').filter((line) => line !== '' && !line.startsWith('#'));
    expect(commands.slice(-2)).toEqual(['tc qdisc del dev eth0 ingress', 'ip link set dev eth0 txqueuelen 0']);
    expect(dry.stdout).not.toContain('transmit queue length');
    execFileSync('ip', ['netns', 'exec', pod.name, 'sh', '-e'], { input: dry.stdout, encoding: 'utf8' });
    expect(fingerprint(pod)).toEqual(before);
    expect(vcnet(['detach', ...args]).status).toBe(0);
    expect(fingerprint(pod)).toEqual(before);
  });

  it('macvtap killed at every step: the dry run counts the changes and what is already gone as detach then does', async () => {
    const { pod } = makePod();
    const before = fingerprint(pod);
    const args = ['--sandbox', 'mv', '--state-dir', stateDirectory()];
    let killed = 0;
    for (let position = 0; ; position++) {
      // Killed -9 paused before step `position`; past the macvtap, eth0 still has its addresses until its batch ran.
      if (!(await killAtStep(['attach', ...args, '--netns', pod.path, '--model', 'macvtap'], position))) {
        expect(vcnet(['detach', ...args]).status).toBe(0);
        break;
      }
      killed++;
      const dry = vcnet(['detach', '--dry-run', ...args]);
      expect(dry.status, dry.stderr).toBe(0);
      const planned = Number(/^# (\d+) change\(s\)$/m.exec(dry.stdout)?.[1]);
      const json = JSON.parse(vcnet(['detach', '--dry-run', '--json', ...args]).stdout);
      const detach = vcnet(['detach', ...args, '--json']);
      expect(detach.status, detach.stderr).toBe(0);
      expect(JSON.parse(detach.stdout), `killed at step ${position}:\n${dry.stdout}`).toMatchObject({
        undone: planned,
        alreadyGone: json.alreadyGone,
        kept: json.kept,
      });
      expect(fingerprint(pod), `killed at step ${position}`).toEqual(before);
    }
    expect(killed).toBeGreaterThan(5);
  }, 600_000);

  it('classifies what an attach killed after its first step never made as detach does: already gone, not a change', async () => {
    const { pod } = makePod();
    const before = fingerprint(pod);
    const args = ['--sandbox', 'first', '--state-dir', stateDirectory()];
    // Killed -9 paused before step 1: the tap is made; the ingress qdisc on eth0 is journaled, never made.
    expect(await killAtStep(['attach', ...args, '--netns', pod.path], 1)).toBe(true);
    const dry = vcnet(['detach', '--dry-run', ...args]);
    expect(dry.status, dry.stderr).toBe(0);
    expect(dry.stdout).toContain('# already gone: ingress qdisc on eth0\n');
    expect(dry.stdout).not.toMatch(/^tc qdisc del dev eth0 ingress$/m);
    const planned = Number(/^# (\d+) change\(s\)$/m.exec(dry.stdout)?.[1]);
    const gone = dry.stdout.match(/^# already gone: /gm)?.length ?? 0;
    const json = JSON.parse(vcnet(['detach', '--dry-run', '--json', ...args]).stdout);
    const detach = vcnet(['detach', ...args, '--json']);
    expect(detach.status, detach.stderr).toBe(0);
    // Exactly what the dry run said: its changes undone, its already-gone records gone, none found so by the kernel.
    expect(JSON.parse(detach.stdout)).toMatchObject({ undone: planned, alreadyGone: gone, kept: 0 });
    expect(json).toMatchObject({ alreadyGone: gone, kept: 0 });
    expect(fingerprint(pod)).toEqual(before);
  });
});
