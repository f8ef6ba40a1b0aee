/**
 * A user other than root (ambient CAP_NET_ADMIN and CAP_SYS_ADMIN, its own state directory and
 * registry) cannot run a useful gc where root also uses vcnet: the default state directories are
 * root's, and a record gc cannot read keeps it from removing anything anywhere. Root's gc used to
 * refuse that user's directory (exit 2: another user's), and without it would take the user's live
 * taps for orphans. Now root's gc reads another user's directory for claims only: what its records
 * name is kept, nothing in it is acted on (no record dropped, no unfinished attach finished, no file
 * removed); a symbolic link to it is still refused. The user's own gc says what is going on.
 */
import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CLI, vcnet } from '../../helpers/cli.js';
import { cleanupNamespaces, type TestNamespace } from '../../helpers/namespace.js';
import { fingerprint, makePod } from '../../helpers/pod.js';

const NOBODY = 65534;
const CAPABILITIES = '+net_admin,+sys_admin';

let made: string[] = [];
afterEach(() => {
  cleanupNamespaces();
  for (const directory of made) rmSync(directory, { recursive: true, force: true });
  made = [];
});

/** A directory of nobody's (mode 0700), as that user's $XDG_RUNTIME_DIR would be. */
function nobodysDirectory(): string {
  const directory = mkdtempSync(join(tmpdir(), 'vcnet-claims-only-'));
  made.push(directory);
  chownSync(directory, NOBODY, NOBODY);
  return directory;
}

/** `vcnet ARGS` as nobody with the two capabilities ambient, its own state directory and registry. */
function asNobody(home: string, args: string[]) {
  const result = spawnSync(
    'setpriv',
    [
      ...['--reuid', String(NOBODY), '--regid', String(NOBODY), '--clear-groups'],
      ...[`--inh-caps=${CAPABILITIES}`, `--ambient-caps=${CAPABILITIES}`, '--'],
      ...[process.execPath, CLI, ...args],
    ],
    {
      encoding: 'utf8',
      timeout: 60_000,
      env: {
        ...process.env,
        VCNET_STATE_DIR: join(home, 'state'),
        VCNET_STATE_REGISTRY: join(home, 'state-directories'),
      },
    },
  );
  return { status: result.status ?? -1, stdout: result.stdout ?? '', stderr: result.stderr ?? '' };
}

/** Every entry under `directory`, with its owner, mode, and a file's bytes. */
function snapshot(directory: string): Record<string, string> {
  const entries: Record<string, string> = {};
  const walk = (path: string) => {
    const stats = lstatSync(path);
    let content = '';
    if (stats.isFile()) content = readFileSync(path, 'utf8');
    entries[path] = `${stats.uid}:${stats.mode.toString(8)}:${stats.mtimeMs}:${content}`;
    if (stats.isDirectory()) for (const name of readdirSync(path)) walk(join(path, name));
  };
  walk(directory);
  return entries;
}

function links(pod: TestNamespace): string[] {
  return pod.ipJson<Array<{ ifname: string }>>('link', 'show').map((link) => link.ifname);
}

interface Report {
  removed: Array<{ kind: string; namespacePath: string; name: string }>;
  skipped: Array<{ file: string; reason: string; closedRootDirectory?: true }>;
  claimsOnly?: Array<{ directory: string; owner: number }>;
  withheld: unknown[];
}

describe("root's gc given another user's state directory", () => {
  it("keeps what that user's records claim, removes its leftovers, and acts on nothing in that directory", () => {
    const home = nobodysDirectory();
    const userState = join(home, 'state');
    const { pod: live } = makePod();
    const { pod: lost } = makePod();
    const { pod: deleted } = makePod();

    const attached = asNobody(home, ['attach', '--sandbox', 'live', '--netns', live.path]);
    expect(attached.status, attached.stderr).toBe(0);
    const gone = asNobody(home, ['attach', '--sandbox', 'lost', '--netns', lost.path]);
    expect(gone.status, gone.stderr).toBe(0);
    // Its record lost (a wiped directory, a bad restore): its tap is a leftover no record claims.
    rmSync(join(userState, 'lost'), { recursive: true });
    rmSync(join(userState, '.locks', 'lost'));
    expect(links(lost)).toContain('tap0_kata');

    // A record of a namespace that exists no more: one of root's own would be dropped.
    const dropped = asNobody(home, ['attach', '--sandbox', 'deleted', '--netns', deleted.path]);
    expect(dropped.status, dropped.stderr).toBe(0);
    deleted.delete();

    // A record that says an attach of the live pod never finished: a gc acting on it would undo the
    // live sandbox's plumbing. It is that user's to write, never root's gc's to act on.
    const liveRecord = JSON.parse(readFileSync(join(userState, 'live', 'state.json'), 'utf8'));
    mkdirSync(join(userState, 'forged'), { mode: 0o700 });
    writeFileSync(
      join(userState, 'forged', 'state.json'),
      JSON.stringify({ ...liveRecord, id: 'forged', attaching: true }, null, 2),
    );
    // And what a gc tidies in a directory of its own: a record directory without a record.
    mkdirSync(join(userState, 'empty'), { mode: 0o700 });
    chownSync(join(userState, 'forged'), NOBODY, NOBODY);
    chownSync(join(userState, 'forged', 'state.json'), NOBODY, NOBODY);
    chownSync(join(userState, 'empty'), NOBODY, NOBODY);

    const liveBefore = fingerprint(live);
    const filesBefore = snapshot(home);
    const registryBase = mkdtempSync(join(tmpdir(), 'vcnet-claims-registry-'));
    made.push(registryBase);
    const gcArgs = ['gc', '--netns', live.path, lost.path, deleted.path, '--state-dir', userState, '--json'];
    const result = vcnet(gcArgs, {
      VCNET_STATE_REGISTRY: join(registryBase, 'state-directories'),
    });
    expect(result.status, result.stderr).toBe(0);
    const report = JSON.parse(result.stdout) as Report;
    expect(report.claimsOnly).toEqual([{ directory: userState, owner: NOBODY }]);
    expect(result.stderr).toContain(`vcnet: gc read ${userState} (owned by uid ${NOBODY}) for claims only`);
    expect(report.removed).toContainEqual(
      expect.objectContaining({ kind: 'link', namespacePath: lost.path, name: 'tap0_kata' }),
    );
    expect(report.removed.filter((item) => item.namespacePath === live.path || item.kind === 'state')).toEqual([]);
    // Not even tried (a store refuses another user's directory): nothing there is gc's to act on.
    expect(report.skipped.filter((entry) => entry.file.startsWith(`${home}/`))).toEqual([]);
    expect(links(lost)).not.toContain('tap0_kata');
    expect(fingerprint(live)).toEqual(liveBefore);
    expect(links(live)).toContain('tap0_kata');
    expect(snapshot(home)).toEqual(filesBefore);

    // The user detaches its sandbox from its record alone, as before.
    rmSync(join(userState, 'forged'), { recursive: true });
    const detached = asNobody(home, ['detach', '--sandbox', 'live']);
    expect(detached.status, detached.stderr).toBe(0);
    expect(links(live)).not.toContain('tap0_kata');
  }, 120_000);

  it('a symbolic link to that directory is still refused (exit 2)', () => {
    const home = nobodysDirectory();
    const userState = join(home, 'state');
    mkdirSync(userState, { mode: 0o700 });
    chownSync(userState, NOBODY, NOBODY);
    const { pod } = makePod();
    const linkBase = mkdtempSync(join(tmpdir(), 'vcnet-claims-link-'));
    made.push(linkBase);
    const link = join(linkBase, 'state');
    symlinkSync(userState, link);
    const result = vcnet(['gc', '--netns', pod.path, '--state-dir', link, '--dry-run'], {
      VCNET_STATE_REGISTRY: join(linkBase, 'state-directories'),
    });
    expect(result.status, result.stderr).toBe(2);
    expect(result.stderr).toContain(`cannot use ${link} as a state directory: it is a symbolic link`);
  }, 60_000);
});

describe('the gc of a user other than root, where a directory of root gc must read is closed to it', () => {
  it("says the directory holds root's records, and what to do: root's gc with --state-dir, or detach", () => {
    const home = nobodysDirectory();
    const userState = join(home, 'state');
    // A directory of root's only root may enter, as /run/vcnet/sandboxes is, named by the user's
    // registry (the defaults are read too, but may not exist on this machine).
    const rootOnly = mkdtempSync(join(tmpdir(), 'vcnet-claims-root-'));
    made.push(rootOnly);
    const { pod } = makePod();
    const attached = asNobody(home, ['attach', '--sandbox', 'live', '--netns', pod.path]);
    expect(attached.status, attached.stderr).toBe(0);
    writeFileSync(join(home, 'state-directories'), `${userState}\n${rootOnly}\n`, { mode: 0o644 });
    chownSync(join(home, 'state-directories'), NOBODY, NOBODY);

    const result = asNobody(home, ['gc', '--netns', pod.path, '--state-dir', userState, '--json']);
    expect(result.status, result.stderr).toBe(0);
    const report = JSON.parse(result.stdout) as Report;
    const reason = report.skipped.find((entry) => entry.file === rootOnly)?.reason ?? '';
    expect(reason).toContain("root's records, which this user (uid 65534) cannot read");
    expect(reason).toContain(`vcnet gc --state-dir ${userState}`);
    expect(reason).toContain('vcnet detach');
    expect(reason).not.toContain('fix the file system or its permissions');
    expect(result.stderr).toContain("root's records");
    const detached = asNobody(home, ['detach', '--sandbox', 'live']);
    expect(detached.status, detached.stderr).toBe(0);
  }, 60_000);

  // As /run/vcnet/sandboxes and /run/vcnet/cni are: both closed to the user, by their parent (mode
  // 0700, as /run/vcnet is here) or each by its own mode with the parent open.
  it.each([
    ['their parent is closed', 0o700, 0o755],
    ['each is closed, their parent open', 0o755, 0o700],
  ])(
    'with two such directories (%s), says the hint once, naming both; --json lists each',
    (_case, parentMode, mode) => {
      const home = nobodysDirectory();
      const userState = join(home, 'state');
      const parent = mkdtempSync(join(tmpdir(), 'vcnet-claims-root-'));
      made.push(parent);
      const sandboxes = join(parent, 'sandboxes');
      const cni = join(parent, 'cni');
      for (const directory of [sandboxes, cni]) mkdirSync(directory, { mode });
      chmodSync(parent, parentMode);
      const { pod } = makePod();
      const attached = asNobody(home, ['attach', '--sandbox', 'live', '--netns', pod.path]);
      expect(attached.status, attached.stderr).toBe(0);
      writeFileSync(join(home, 'state-directories'), `${userState}\n${sandboxes}\n${cni}\n`, { mode: 0o644 });
      chownSync(join(home, 'state-directories'), NOBODY, NOBODY);

      const result = asNobody(home, ['gc', '--netns', pod.path, '--state-dir', userState, '--json']);
      expect(result.status, result.stderr).toBe(0);
      const hints = result.stderr.split('\n').filter((line) => line.includes("root's records"));
      // The defaults (/run/vcnet/...) may be closed to the user too: said in that same line.
      expect(hints, result.stderr).toHaveLength(1);
      expect(hints[0]).toContain(sandboxes);
      expect(hints[0]).toContain(cni);
      expect(hints[0]).toContain(`vcnet gc --state-dir ${userState}`);
      // --json keeps one entry per directory, each with the whole hint (naming both) and the mark.
      const report = JSON.parse(result.stdout) as Report;
      for (const directory of [sandboxes, cni]) {
        const entry = report.skipped.find((skipped) => skipped.file === directory);
        expect(entry?.closedRootDirectory, JSON.stringify(report.skipped)).toBe(true);
        expect(entry?.reason).toContain("root's records, which this user (uid 65534) cannot read");
        expect(entry?.reason).toContain(sandboxes);
        expect(entry?.reason).toContain(cni);
      }
      const detached = asNobody(home, ['detach', '--sandbox', 'live']);
      expect(detached.status, detached.stderr).toBe(0);
    },
    60_000,
  );
});
