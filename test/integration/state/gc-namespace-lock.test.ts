/**
 * gc finishing an attach a killed process left is an undo in a pod namespace, as detach's and
 * vcnet-cni DEL's are: it takes the namespace's lock as they do (without waiting), and leaves the
 * record while another command holds it, where it undid the killed attach under that command's
 * feet. It opens the record's namespace as detach does, so a path that names another namespace now
 * is followed to the recorded one through the process still in it (gc skipped such a record).
 * Its orphan links, redirects and qdiscs it judges and removes under that lock too: a namespace
 * another command is changing is left whole for the next gc (`withheld`, `beingChanged`).
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { nativeFileLock } from '../../../src/native/file-lock.js';
import { killAtStep, stateDirectoryPerTest, vcnet } from '../../helpers/cli.js';
import { fingerprint, kataLinks, makePod } from '../../helpers/pod.js';
import { until } from '../../helpers/until.js';

const stateDirectory = stateDirectoryPerTest('vcnet-gc-netns-lock-');
const holders: ChildProcess[] = [];

afterEach(() => {
  for (const holder of holders.splice(0)) holder.kill('SIGKILL');
});

/** Holds the namespace's flock (as attach, detach and DEL take it) until the returned function is called. */
function holdNamespaceLock(path: string): () => void {
  const fd = openSync(path, 'r');
  if (!nativeFileLock.lockFile(fd, true)) {
    closeSync(fd);
    throw new Error(`the namespace ${path} is locked already`);
  }
  return () => closeSync(fd);
}

interface GcJson {
  removed: Array<{ kind: string; name: string }>;
  skipped: Array<{ file: string; reason: string; beingChanged?: boolean }>;
  withheld: Array<{ namespacePath: string; links: string[]; beingChanged?: boolean; reason?: string }>;
}

describe('gc and the namespace lock', () => {
  it("leaves a killed attach's record and plumbing while another command holds the namespace, and finishes it after", async () => {
    const { pod } = makePod({ interfaces: 2 });
    const before = fingerprint(pod);
    const state = join(stateDirectory(), 'state');
    // Killed part-way: the first endpoint's plumbing made, its record says `attaching`.
    expect(await killAtStep(['attach', '--sandbox', 'locked', '--netns', pod.path, '--state-dir', state], 6)).toBe(
      true,
    );
    const killed = fingerprint(pod);
    expect(kataLinks(pod).length).toBeGreaterThan(0);
    const gcArgs = ['gc', '--netns', pod.path, '--state-dir', state, '--json'];

    const release = holdNamespaceLock(pod.path);
    try {
      for (const dryRun of [true, false]) {
        const gc = vcnet(dryRun ? [...gcArgs, '--dry-run'] : gcArgs);
        expect(gc.status, gc.stderr).toBe(0);
        const report = JSON.parse(gc.stdout) as GcJson;
        expect(report.removed.filter((item) => item.name === 'locked')).toEqual([]);
        expect(report.skipped).toEqual([
          {
            file: join(state, 'locked', 'state.json'),
            reason: `the unfinished attach of sandbox locked was left as it is: its namespace ${pod.path} is being changed right now by process ${process.pid} (an attach, detach or vcnet-cni ADD or DEL); run gc again once that is done`,
            beingChanged: true,
          },
        ]);
        expect(gc.stderr).toContain(`vcnet: gc kept the record ${join(state, 'locked', 'state.json')}: `);
        expect(fingerprint(pod)).toEqual(killed);
        expect(existsSync(join(state, 'locked', 'state.json'))).toBe(true);
      }
    } finally {
      release();
    }

    const gc = vcnet(gcArgs);
    expect(gc.status, gc.stderr).toBe(0);
    const report = JSON.parse(gc.stdout) as GcJson;
    expect(report.skipped).toEqual([]);
    expect(report.removed.filter((item) => item.kind === 'state' && item.name === 'locked').length).toBeGreaterThan(0);
    expect(existsSync(join(state, 'locked'))).toBe(false);
    expect(fingerprint(pod)).toEqual(before);
  }, 120_000);

  it('finishes a killed attach through the process in its namespace when the path names another namespace now', async () => {
    const { pod } = makePod();
    const state = join(stateDirectory(), 'state');
    expect(await killAtStep(['attach', '--sandbox', 'reused', '--netns', pod.path, '--state-dir', state], 6)).toBe(
      true,
    );
    const holder = spawn('ip', ['netns', 'exec', pod.name, 'sleep', '60'], { stdio: 'ignore' });
    holders.push(holder);
    const recordedInode = statSync(pod.path).ino;
    const entered = () => {
      try {
        return statSync(`/proc/${holder.pid}/ns/net`).ino === recordedInode;
      } catch {
        return false; // not started yet
      }
    };
    // It went on after 2 s of tries whether the holder was in or not; on a busy machine `ip netns exec` may
    // take that long (20 s is a budget for a busy machine).
    await until(entered, 'the holder to enter the namespace', 20_000, 10);
    const seenThroughHolder = () =>
      (
        JSON.parse(
          execFileSync('nsenter', [`--net=/proc/${holder.pid}/ns/net`, 'ip', '-j', 'link', 'show'], {
            encoding: 'utf8',
          }),
        ) as Array<{ ifname: string }>
      )
        .map((link) => link.ifname)
        .sort();
    expect(seenThroughHolder()).toContain('tap0_kata');
    // The pod's path re-made under the same name: another, empty namespace.
    pod.delete();
    execFileSync('ip', ['netns', 'add', pod.name]);
    try {
      expect(statSync(pod.path).ino).not.toBe(recordedInode);
      const gc = vcnet(['gc', '--netns', pod.path, '--state-dir', state, '--json']);
      expect(gc.status, gc.stderr).toBe(0);
      const report = JSON.parse(gc.stdout) as GcJson;
      expect(report.skipped).toEqual([]);
      expect(report.removed.filter((item) => item.kind === 'state' && item.name === 'reused').length).toBeGreaterThan(
        0,
      );
      expect(existsSync(join(state, 'reused'))).toBe(false);
      expect(seenThroughHolder()).toEqual(['eth0', 'lo']);
    } finally {
      execFileSync('ip', ['netns', 'del', pod.name]);
    }
  }, 120_000);

  it('leaves an orphan tap, its redirect and its qdiscs while another command holds the namespace, and removes them after', () => {
    const { pod } = makePod();
    const before = fingerprint(pod);
    const state = join(stateDirectory(), 'state');
    const attached = vcnet(['attach', '--sandbox', 'lost', '--netns', pod.path, '--state-dir', state]);
    expect(attached.status, attached.stderr).toBe(0);
    rmSync(join(state, 'lost'), { recursive: true }); // the record is lost: its tap is an orphan
    const orphaned = fingerprint(pod);
    const gcArgs = ['gc', '--netns', pod.path, '--state-dir', state];

    const release = holdNamespaceLock(pod.path);
    try {
      for (const dryRun of [true, false]) {
        const gc = vcnet(dryRun ? [...gcArgs, '--json', '--dry-run'] : [...gcArgs, '--json']);
        expect(gc.status, gc.stderr).toBe(0);
        const report = JSON.parse(gc.stdout) as GcJson;
        expect(report.removed.filter((item) => item.kind !== 'state')).toEqual([]);
        const reason = `being changed right now by process ${process.pid} (an attach, detach or vcnet-cni ADD or DEL), so gc did not look at it; run gc again once that is done`;
        expect(report.withheld).toEqual([
          { namespacePath: pod.path, links: ['tap0_kata'], beingChanged: true, reason },
        ]);
        expect(gc.stderr).toContain(`vcnet: gc left ${pod.path} as it is: ${reason}\n`);
        expect(fingerprint(pod)).toEqual(orphaned);
      }
      const human = vcnet(gcArgs);
      expect(human.status, human.stderr).toBe(0);
      expect(human.stdout).toBe(
        'removed nothing: 1 namespace(s) not examined, as another command was changing them: run gc again (see stderr)\n',
      );
      expect(fingerprint(pod)).toEqual(orphaned);
    } finally {
      release();
    }

    const gc = vcnet([...gcArgs, '--json']);
    expect(gc.status, gc.stderr).toBe(0);
    const report = JSON.parse(gc.stdout) as GcJson;
    expect(report.withheld).toEqual([]);
    expect(
      report.removed
        .filter((item) => item.kind !== 'state')
        .map((item) => `${item.kind} ${item.name}`)
        .sort(),
    ).toEqual(['filter eth0', 'link tap0_kata', 'qdisc eth0']);
    expect(fingerprint(pod)).toEqual(before);
  }, 120_000);
});
