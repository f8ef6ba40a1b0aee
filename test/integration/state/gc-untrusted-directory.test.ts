/**
 * gc reads records as every other command does. It used to read any directory it was given or the
 * registry listed, without the trust check attach and detach make, and with readFileSync: a
 * state.json another user made a symbolic link to a file only root may read had that file's first
 * bytes printed in the skipped reason (JSON.parse quotes them), a FIFO state.json hung gc forever, and
 * gc removed directories in another user's directory. Then another user's directory named with
 * --state-dir was refused (exit 2, as detach refuses it), and one the registry lists skipped with
 * the reason. Now (session 27) root's gc reads such a directory for claims only (`claimsOnly`): what
 * its records name is kept, nothing in it is acted on or removed; any other user's gc still refuses
 * it. Everywhere a record is opened without following a link or blocking, and no error quotes what
 * a file holds.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CLI, stateDirectoryPerTest, vcnet } from '../../helpers/cli.js';
import { makeNamespace } from '../../helpers/namespace.js';
import { fingerprint, makePod } from '../../helpers/pod.js';

const stateDirectory = stateDirectoryPerTest('vcnet-gc-untrusted-');
const SECRET = 'SECRET-only-root-may-read-this';
const NOBODY = 65534;

/** gc, killed after 20 s (a FIFO read blocks forever): a hang shows as status -1. */
function gc(args: string[], registry: string) {
  const result = spawnSync(process.execPath, [CLI, 'gc', ...args], {
    encoding: 'utf8',
    timeout: 20_000,
    env: { ...process.env, VCNET_STATE_REGISTRY: registry },
  });
  return { status: result.status ?? -1, stdout: result.stdout ?? '', stderr: result.stderr ?? '' };
}

/** Records a hostile user can leave: a link to a secret, a FIFO, a directory gc would tidy away. */
function plantRecords(directory: string, secret: string): void {
  mkdirSync(join(directory, 'leak'));
  symlinkSync(secret, join(directory, 'leak', 'state.json'));
  mkdirSync(join(directory, 'hang'));
  spawnSync('mkfifo', [join(directory, 'hang', 'state.json')]);
  mkdirSync(join(directory, 'garbage'));
  writeFileSync(join(directory, 'garbage', 'state.json'), `${SECRET}{`);
  mkdirSync(join(directory, 'empty'));
}

describe('gc and records it must not trust', () => {
  it("another user's directory: root's gc reads it for claims only, named or listed; another user's gc refuses it (exit 2)", () => {
    const pod = makeNamespace('gcu');
    const base = stateDirectory();
    const secret = join(base, 'secret');
    writeFileSync(secret, `${SECRET}\n`, { mode: 0o600 });
    const evil = join(base, 'evil');
    mkdirSync(evil, { mode: 0o755 });
    plantRecords(evil, secret);
    chownSync(evil, NOBODY, NOBODY);
    const registry = join(base, 'registry');

    // Read, never acted on: its planted entries are skipped as in vcnet's own directory (a FIFO does
    // not hang it, a link is not followed, nothing quotes the secret), and nothing there is removed.
    const named = gc(['--netns', pod.path, '--state-dir', evil, '--json'], registry);
    expect(named.status, named.stderr).toBe(0);
    const namedReport = JSON.parse(named.stdout) as { claimsOnly: unknown[]; skipped: Array<{ file: string }> };
    expect(namedReport.claimsOnly).toEqual([{ directory: evil, owner: NOBODY }]);
    expect(namedReport.skipped.map((entry) => entry.file)).toEqual(
      expect.arrayContaining(['leak', 'hang', 'garbage'].map((id) => join(evil, id, 'state.json'))),
    );
    expect(named.stderr).toContain(`vcnet: gc read ${evil} (owned by uid ${NOBODY}) for claims only`);
    expect(existsSync(join(evil, 'empty'))).toBe(true);
    expect(named.stdout + named.stderr).not.toContain(SECRET);

    writeFileSync(registry, `${evil}\n`, { mode: 0o644 });
    const listed = gc(['--netns', pod.path, '--dry-run', '--json'], registry);
    expect(listed.status, listed.stderr).toBe(0);
    const report = JSON.parse(listed.stdout) as { claimsOnly: unknown[]; skipped: Array<{ file: string }> };
    expect(report.claimsOnly).toEqual([{ directory: evil, owner: NOBODY }]);
    expect(report.skipped.map((entry) => entry.file)).not.toContain(evil);
    expect(listed.stdout + listed.stderr).not.toContain(SECRET);

    // A user other than root (and than its owner) reads no other user's records at all.
    chmodSync(base, 0o755);
    const otherUser = spawnSync(
      'setpriv',
      ['--reuid', '65533', '--regid', '65533', '--clear-groups', '--', process.execPath, CLI, 'gc'].concat([
        '--netns',
        pod.path,
        '--state-dir',
        evil,
        '--dry-run',
      ]),
      { encoding: 'utf8', timeout: 20_000, env: { ...process.env, VCNET_STATE_REGISTRY: registry } },
    );
    expect(otherUser.status, otherUser.stderr).toBe(2);
    expect(otherUser.stderr).toContain(`cannot use ${evil} as a state directory: it is owned by uid ${NOBODY}`);
    expect(existsSync(join(evil, 'empty'))).toBe(true);
  });

  it('in its own directory: a linked or FIFO record is skipped without being read, and no reason quotes a file', () => {
    const pod = makeNamespace('gcu');
    const base = stateDirectory();
    const secret = join(base, 'secret');
    writeFileSync(secret, `${SECRET}\n`, { mode: 0o600 });
    const own = join(base, 'own');
    mkdirSync(own, { mode: 0o700 });
    plantRecords(own, secret);
    const result = gc(['--netns', pod.path, '--state-dir', own, '--dry-run', '--json'], join(base, 'registry'));
    expect(result.status, result.stderr).toBe(0);
    const report = JSON.parse(result.stdout) as { skipped: Array<{ file: string; reason: string }> };
    const reason = (id: string) => report.skipped.find((entry) => entry.file === join(own, id, 'state.json'))?.reason;
    expect(reason('leak')).toContain('is a symbolic link');
    expect(reason('hang')).toContain('is not a regular file');
    expect(reason('garbage')).toContain('is not valid JSON');
    expect(result.stdout + result.stderr).not.toContain(SECRET);
  });

  it("a registered directory whose mode went wrong is read for claims only: its live sandboxes' plumbing stays", () => {
    // Its records are not acted on; but the sandboxes they name may be live VMs, and taking their
    // taps for orphans would cut them off. Root's gc reads it for claims only (it used to skip it
    // and leave every namespace its records name alone).
    const { pod } = makePod();
    const base = stateDirectory();
    const live = join(base, 'live');
    const registry = join(base, 'registry');
    const attached = vcnet(['attach', '--sandbox', 'live', '--netns', pod.path, '--state-dir', live], {
      VCNET_STATE_REGISTRY: registry,
    });
    expect(attached.status, attached.stderr).toBe(0);
    const before = fingerprint(pod);
    chmodSync(live, 0o777);
    try {
      const result = gc(['--netns', pod.path, '--json'], registry);
      expect(result.status, result.stderr).toBe(0);
      const report = JSON.parse(result.stdout) as { removed: unknown[]; claimsOnly: unknown[] };
      expect(report.claimsOnly).toEqual([{ directory: live, owner: 0 }]);
      expect(report.removed).toEqual([]);
      expect(fingerprint(pod)).toEqual(before);
    } finally {
      chmodSync(live, 0o700);
    }
    const detached = vcnet(['detach', '--sandbox', 'live', '--state-dir', live], { VCNET_STATE_REGISTRY: registry });
    expect(detached.status, detached.stderr).toBe(0);
  });
});
