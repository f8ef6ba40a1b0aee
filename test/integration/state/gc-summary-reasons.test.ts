/**
 * gc's summary says why it kept what it kept. A killed attach's record that gc left because another
 * process held its namespace's lock was summed up as "nothing to collect (2 vcnet link(s) belong to
 * live sandboxes)": nothing there is live, it is being changed, and gc must be run again once that is
 * done. Each reason gc keeps a record or its links for has its own words, in the text and in --json:
 * being changed (the namespace's lock, the record's lock, a gone namespace's record whose lock is
 * held), a record gc cannot read, and links that live records own.
 */
import { closeSync, existsSync, mkdirSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { nativeFileLock } from '../../../src/native/file-lock.js';
import { killAtStep, stateDirectoryPerTest, vcnet } from '../../helpers/cli.js';
import { fingerprint, kataLinks, makePod } from '../../helpers/pod.js';

const stateDirectory = stateDirectoryPerTest('vcnet-gc-summary-reasons-');

/** Holds an flock on `path` (a namespace's file, as attach and DEL take it; a record's lock file) until released. */
function holdLock(path: string): () => void {
  const fd = openSync(path, 'r');
  if (!nativeFileLock.lockFile(fd, true)) {
    closeSync(fd);
    throw new Error(`${path} is locked already`);
  }
  return () => closeSync(fd);
}

interface GcJson {
  removed: Array<{ kind: string; name: string }>;
  kept: number;
  skipped: Array<{ file: string; reason: string; beingChanged?: boolean }>;
  beingChanged: Array<{ namespacePath: string; links: string[] }>;
}

const RUN_AGAIN = 'run gc again once it is done';

describe("gc's summary of what it kept", () => {
  it('a killed attach whose namespace another process is changing: being changed, not live; --json lists its links in beingChanged', async () => {
    const { pod } = makePod({ interfaces: 2 });
    const state = join(stateDirectory(), 'state');
    expect(await killAtStep(['attach', '--sandbox', 'locked', '--netns', pod.path, '--state-dir', state], 6)).toBe(
      true,
    );
    const links = kataLinks(pod).sort();
    expect(links.length).toBeGreaterThan(0);
    const gcArgs = ['gc', '--netns', pod.path, '--state-dir', state];
    const release = holdLock(pod.path);
    try {
      for (const dryRun of [true, false]) {
        const text = vcnet(dryRun ? [...gcArgs, '--dry-run'] : gcArgs);
        expect(text.status, text.stderr).toBe(0);
        expect(text.stdout).toBe(
          `removed nothing: 1 record(s) with ${links.length} vcnet link(s) left as they are, as another process is changing them right now: ${RUN_AGAIN}\n`,
        );
        const json = vcnet([...gcArgs, '--json', ...(dryRun ? ['--dry-run'] : [])]);
        expect(json.status, json.stderr).toBe(0);
        const report = JSON.parse(json.stdout) as GcJson;
        expect(report.beingChanged.map((entry) => ({ ...entry, links: entry.links.sort() }))).toEqual([
          { namespacePath: pod.path, links },
        ]);
        expect(report.kept).toBe(links.length);
      }
    } finally {
      release();
    }
    const gc = vcnet([...gcArgs, '--json']);
    expect(gc.status, gc.stderr).toBe(0);
    expect((JSON.parse(gc.stdout) as GcJson).beingChanged).toEqual([]);
  }, 120_000);

  it('says what it kept for being changed after the table of what it removed', async () => {
    const { pod } = makePod();
    const other = makePod();
    const state = join(stateDirectory(), 'state');
    expect(await killAtStep(['attach', '--sandbox', 'locked', '--netns', pod.path, '--state-dir', state], 6)).toBe(
      true,
    );
    // An orphan tap in the other pod: gc removes it.
    other.pod.exec('ip', ['tuntap', 'add', 'orphan0', 'mode', 'tap']);
    other.pod.exec('ip', ['link', 'set', 'orphan0', 'group', String(0x7663)]);
    const release = holdLock(pod.path);
    try {
      const text = vcnet(['gc', '--netns', pod.path, other.pod.path, '--state-dir', state]);
      expect(text.status, text.stderr).toBe(0);
      const lines = text.stdout.trimEnd().split('\n');
      expect(lines[0]).toBe('removed 1 item(s):');
      expect(lines.at(-1)).toBe(
        `not removed: 1 record(s) with ${kataLinks(pod).length} vcnet link(s) left as they are, as another process is changing them right now: ${RUN_AGAIN}`,
      );
      expect(text.stdout).not.toContain('live');
    } finally {
      release();
    }
  }, 120_000);

  it("a killed attach whose record's lock another process holds: being changed, and listed in skipped", async () => {
    const { pod } = makePod();
    const before = fingerprint(pod);
    const state = join(stateDirectory(), 'state');
    expect(await killAtStep(['attach', '--sandbox', 'held', '--netns', pod.path, '--state-dir', state], 6)).toBe(true);
    const links = kataLinks(pod);
    const gcArgs = ['gc', '--netns', pod.path, '--state-dir', state];
    const release = holdLock(join(state, '.locks', 'held'));
    try {
      const text = vcnet(gcArgs);
      expect(text.status, text.stderr).toBe(0);
      expect(text.stdout).toBe(
        `removed nothing: 1 record(s) with ${links.length} vcnet link(s) left as they are, as another process is changing them right now: ${RUN_AGAIN}\n`,
      );
      expect(text.stderr).toContain(
        `vcnet: gc kept the record ${join(state, 'held', 'state.json')}: the unfinished attach of sandbox held was left as it is: process ${process.pid} is changing it right now (it holds the sandbox's lock); run gc again once that is done`,
      );
      const report = JSON.parse(vcnet([...gcArgs, '--json']).stdout) as GcJson;
      expect(report.skipped).toEqual([
        expect.objectContaining({ file: join(state, 'held', 'state.json'), beingChanged: true }),
      ]);
      expect(report.beingChanged).toEqual([{ namespacePath: pod.path, links: expect.any(Array) }]);
    } finally {
      release();
    }
    expect(vcnet(gcArgs).status).toBe(0);
    expect(fingerprint(pod)).toEqual(before);
  }, 120_000);

  it("a record of a namespace gone whose lock another process holds: being changed, not 'nothing to collect'", () => {
    const { pod } = makePod();
    const state = join(stateDirectory(), 'state');
    const attached = vcnet(['attach', '--sandbox', 'gone', '--netns', pod.path, '--state-dir', state]);
    expect(attached.status, attached.stderr).toBe(0);
    const path = pod.path;
    pod.delete();
    const release = holdLock(join(state, '.locks', 'gone'));
    try {
      // A dry run says what the gc it stands for does: it had the record "removed".
      for (const dryRun of [['--dry-run'], []]) {
        const text = vcnet(['gc', '--netns', path, '--state-dir', state, ...dryRun]);
        expect(text.status, text.stderr).toBe(0);
        expect(text.stdout).toBe(
          `removed nothing: 1 record(s) left as they are, as another process is changing them right now: ${RUN_AGAIN}\n`,
        );
        expect(text.stderr).toContain(
          `vcnet: gc kept the record ${join(state, 'gone', 'state.json')}: its namespace (${path}) exists nowhere, but process ${process.pid} is changing the record right now (it holds the sandbox's lock); run gc again once that is done`,
        );
        expect(existsSync(join(state, 'gone', 'state.json'))).toBe(true);
      }
    } finally {
      release();
    }
    // A dry run probes the lock without making or writing its file: none there stays none.
    rmSync(join(state, '.locks', 'gone'));
    const dry = vcnet(['gc', '--netns', path, '--state-dir', state, '--dry-run']);
    expect(dry.status, dry.stderr).toBe(0);
    expect(dry.stdout).toMatch(/^would remove 1 item\(s\):/);
    expect(existsSync(join(state, '.locks', 'gone'))).toBe(false);
    const gc = vcnet(['gc', '--netns', path, '--state-dir', state]);
    expect(gc.status, gc.stderr).toBe(0);
    expect(gc.stdout).toMatch(/^removed 1 item\(s\):/);
    expect(existsSync(join(state, 'gone', 'state.json'))).toBe(false);
  }, 60_000);

  it("a record gc cannot read, with no link to withhold: says it skipped it, not 'nothing to collect'", () => {
    const { pod } = makePod();
    const state = join(stateDirectory(), 'state');
    mkdirSync(join(state, 'damaged'), { recursive: true, mode: 0o700 });
    writeFileSync(join(state, 'damaged', 'state.json'), '{"version": 1, "namesp');
    const text = vcnet(['gc', '--netns', pod.path, '--state-dir', state]);
    expect(text.status, text.stderr).toBe(0);
    expect(text.stdout).toBe('removed nothing: 1 record(s) or state directories gc cannot read skipped (see stderr)\n');
  });

  it('links of live sandboxes only: nothing to collect', () => {
    const { pod } = makePod();
    const state = join(stateDirectory(), 'state');
    expect(vcnet(['attach', '--sandbox', 'live', '--netns', pod.path, '--state-dir', state]).status).toBe(0);
    const text = vcnet(['gc', '--netns', pod.path, '--state-dir', state]);
    expect(text.status, text.stderr).toBe(0);
    expect(text.stdout).toBe(`nothing to collect (${kataLinks(pod).length} vcnet link(s) belong to live sandboxes)\n`);
    expect(vcnet(['detach', '--sandbox', 'live', '--state-dir', state]).status).toBe(0);
  });
});
