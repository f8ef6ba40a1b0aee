/**
 * Entries in a state directory that are not directories of records (a symbolic link loop such as a
 * stray `ln -s stray stray`, links pointing at each other, a dangling link, a FIFO, a loop where a
 * CNI record's interfaces are) hold no records. gc read the loop's ELOOP as an unreadable directory,
 * removed nothing in any namespace, and said "nothing to collect (1 vcnet link(s) belong to live
 * sandboxes)" with advice to fix the file system. Now they are passed over and the orphan goes; and
 * where gc does withhold collection (a directory it really cannot list: EIO), its summary says so.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CLI, stateDirectoryPerTest, vcnet } from '../../helpers/cli.js';
import { fingerprint, makePod } from '../../helpers/pod.js';

const stateDirectory = stateDirectoryPerTest('vcnet-gc-stray-');
const STRACE = spawnSync('strace', ['-V']).status === 0;
if (!STRACE) {
  console.log(
    'gc-stray-entries: skipping the unlistable directory (EIO) case: strace is not installed (apt-get install strace)',
  );
}

interface Report {
  removed: Array<{ kind: string; name: string }>;
  skipped: Array<{ file: string; reason: string }>;
  withheld: Array<{ namespacePath: string; links: string[] }>;
  ignored: Array<{ path: string; reason: string }>;
}

/** A pod with an orphan tap (its sandbox's record deleted): what gc --netns is for. */
function podWithOrphan() {
  const { pod } = makePod();
  const before = fingerprint(pod);
  const state = join(stateDirectory(), 'state');
  const attached = vcnet(['attach', '--sandbox', 'gone', '--netns', pod.path, '--state-dir', state]);
  expect(attached.status, attached.stderr).toBe(0);
  rmSync(join(state, 'gone'), { recursive: true });
  rmSync(join(state, '.locks', 'gone'), { force: true });
  return { pod, before, state };
}

describe('gc and entries of a state directory that hold no records', () => {
  it('a symbolic link loop, links to each other, a dangling link, a FIFO: the orphan is still collected', () => {
    const { pod, before, state } = podWithOrphan();
    symlinkSync('stray', join(state, 'stray'));
    symlinkSync('b', join(state, 'a'));
    symlinkSync('a', join(state, 'b'));
    symlinkSync('nowhere', join(state, 'dangling'));
    spawnSync('mkfifo', [join(state, 'fifo')]);
    mkdirSync(join(state, 'cni-like', 'interfaces'), { recursive: true });
    symlinkSync('l', join(state, 'cni-like', 'interfaces', 'l'));
    writeFileSync(join(state, 'notes.txt'), 'not a record\n');

    const dry = vcnet(['gc', '--netns', pod.path, '--state-dir', state, '--dry-run', '--json']);
    expect(dry.status, dry.stderr).toBe(0);
    const planned = JSON.parse(dry.stdout) as Report;
    expect(planned.skipped).toEqual([]);
    expect(planned.withheld).toEqual([]);
    expect(planned.removed).toContainEqual(expect.objectContaining({ kind: 'link', name: 'tap0_kata' }));
    // Passed over, but listed: each entry that names no sandbox and is no directory, and what it is.
    const link = 'a symbolic link that leads to no directory of records';
    // (Only this test's directory: gc reads the host's default directories too.)
    const here = planned.ignored.filter((entry) => entry.path.startsWith(`${state}/`));
    expect(here.sort((x, y) => x.path.localeCompare(y.path))).toEqual([
      { path: join(state, 'a'), reason: link },
      { path: join(state, 'b'), reason: link },
      { path: join(state, 'dangling'), reason: link },
      { path: join(state, 'fifo'), reason: 'a FIFO' },
      { path: join(state, 'notes.txt'), reason: 'a regular file' },
      { path: join(state, 'stray'), reason: link },
    ]);
    // One line on stderr says so, with --json too.
    const summary = dry.stderr.split('\n').filter((line) => line.includes('name no sandbox'));
    expect(summary).toHaveLength(1);
    expect(summary[0]).toMatch(
      /^vcnet: gc passed over \d+ entries of state directories that name no sandbox \(.*\): remove them if nothing needs them$/,
    );
    expect(summary[0]).toContain(`${join(state, 'notes.txt')}: a regular file`);

    const collected = vcnet(['gc', '--netns', pod.path, '--state-dir', state]);
    expect(collected.status, collected.stderr).toBe(0);
    expect(collected.stderr).toContain(`${join(state, 'fifo')}: a FIFO`);
    expect(collected.stderr).not.toContain('ELOOP');
    expect(collected.stdout).toMatch(/^removed 3 item\(s\):/);
    expect(collected.stdout).toContain("tun in vcnet's group that no record claims");
    expect(fingerprint(pod)).toEqual(before);
  });

  it('a symbolic link to a live sandbox of the same state directory is an alias: ignored, its sandbox not withheld', () => {
    const { pod } = makePod();
    const before = fingerprint(pod);
    const state = join(stateDirectory(), 'state');
    const attached = vcnet(['attach', '--sandbox', 'live', '--netns', pod.path, '--state-dir', state]);
    expect(attached.status, attached.stderr).toBe(0);
    // An orphan in the live sandbox's namespace: a tap in vcnet's group that no record claims.
    pod.exec('ip', ['tuntap', 'add', 'orphan0', 'mode', 'tap']);
    pod.exec('ip', ['link', 'set', 'orphan0', 'group', String(0x7663)]);
    symlinkSync('live', join(state, 'alias'));
    symlinkSync(join(state, 'live'), join(state, 'absolute-alias'));

    const dry = vcnet(['gc', '--netns', pod.path, '--state-dir', state, '--dry-run', '--json']);
    expect(dry.status, dry.stderr).toBe(0);
    const planned = JSON.parse(dry.stdout) as Report;
    // Read through the link, the record's id ("live") did not match the entry's name: skipped, and
    // every link of its namespace withheld (the orphan was never removed).
    expect(planned.skipped).toEqual([]);
    expect(planned.withheld).toEqual([]);
    const here = planned.ignored.filter((entry) => entry.path.startsWith(`${state}/`));
    expect(here.sort((x, y) => x.path.localeCompare(y.path))).toEqual([
      {
        path: join(state, 'absolute-alias'),
        reason: `a symbolic link to ${join(state, 'live')}, in this state directory: its records are read there, not through the link`,
      },
      {
        path: join(state, 'alias'),
        reason: 'a symbolic link to live, in this state directory: its records are read there, not through the link',
      },
    ]);
    expect(planned.removed).toEqual([expect.objectContaining({ kind: 'link', name: 'orphan0' })]);

    const collected = vcnet(['gc', '--netns', pod.path, '--state-dir', state]);
    expect(collected.status, collected.stderr).toBe(0);
    const links = pod.ipJson<Array<{ ifname: string }>>('link', 'show').map((link) => link.ifname);
    expect(links).not.toContain('orphan0');
    expect(links).toContain('tap0_kata');
    const detached = vcnet(['detach', '--sandbox', 'live', '--state-dir', state]);
    expect(detached.status, detached.stderr).toBe(0);
    expect(fingerprint(pod)).toEqual(before);
  });

  it.skipIf(!STRACE)(
    'a directory gc cannot list (EIO): the summary says nothing was examined, not that the links are live',
    () => {
      const { pod, state } = podWithOrphan();
      const result = spawnSync(
        'strace',
        [
          ...['-f', '-qq', '-o', '/dev/null', '-P', state, '-e', 'trace=getdents64'],
          ...['-e', 'inject=getdents64:error=EIO:when=1', process.execPath, CLI, 'gc'],
          ...['--netns', pod.path, '--state-dir', state],
        ],
        { encoding: 'utf8', timeout: 60_000 },
      );
      expect(result.status, result.stderr).toBe(0);
      expect(result.stdout).toBe(
        'removed nothing: 1 vcnet link(s) in 1 namespace(s) not examined, as a record gc could not read may be theirs (see stderr)\n',
      );
      expect(result.stdout).not.toContain('belong to live sandboxes');
      expect(result.stderr).toContain('EIO');
      expect(pod.ipJson<Array<{ ifname: string }>>('link', 'show').map((link) => link.ifname)).toContain('tap0_kata');

      const json = vcnet(['gc', '--netns', pod.path, '--state-dir', state, '--dry-run', '--json']);
      expect((JSON.parse(json.stdout) as Report).withheld).toEqual([]);
      expect(vcnet(['gc', '--netns', pod.path, '--state-dir', state]).status).toBe(0);
    },
  );
});
