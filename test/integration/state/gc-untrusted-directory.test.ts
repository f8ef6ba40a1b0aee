/**
 * gc reads records as every other command does. It used to read any directory it was given or the
 * registry listed, without the trust check attach and detach make, and with readFileSync: a
 * state.json another user made a symbolic link to a file only root may read had that file's first
 * bytes printed in the skipped reason (JSON.parse quotes them), a FIFO state.json hung gc forever, and
 * gc removed directories in another user's directory. Now: another user's directory named with
 * --state-dir is refused (exit 2, as detach refuses it); one the registry lists is skipped with the
 * reason; in vcnet's own directories a record is opened without following a link or blocking, and
 * no error quotes what a file holds.
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
  it("another user's directory: refused when named (exit 2), skipped with the reason when the registry lists it", () => {
    const pod = makeNamespace('gcu');
    const base = stateDirectory();
    const secret = join(base, 'secret');
    writeFileSync(secret, `${SECRET}\n`, { mode: 0o600 });
    const evil = join(base, 'evil');
    mkdirSync(evil, { mode: 0o755 });
    plantRecords(evil, secret);
    chownSync(evil, NOBODY, NOBODY);
    const registry = join(base, 'registry');

    const named = gc(['--netns', pod.path, '--state-dir', evil], registry);
    expect(named.status, named.stderr).toBe(2);
    expect(named.stderr).toContain(`cannot use ${evil} as a state directory: it is owned by uid ${NOBODY}`);
    expect(existsSync(join(evil, 'empty'))).toBe(true);

    writeFileSync(registry, `${evil}\n`, { mode: 0o644 });
    const listed = gc(['--netns', pod.path, '--dry-run', '--json'], registry);
    expect(listed.status, listed.stderr).toBe(0);
    const report = JSON.parse(listed.stdout) as { skipped: Array<{ file: string; reason: string }> };
    expect(report.skipped).toContainEqual({
      file: evil,
      reason: expect.stringContaining(`it is owned by uid ${NOBODY}`),
    });
    expect(report.skipped.filter((entry) => entry.file.startsWith(`${evil}/`))).toEqual([]);
    expect(listed.stdout + listed.stderr).not.toContain(SECRET);
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

  it("a registered directory whose mode went wrong still protects its live sandboxes' plumbing", () => {
    // Skipped as untrusted, its records are not acted on; but the sandboxes they name may be live
    // VMs, and taking their taps for orphans would cut them off. gc names the namespace and still
    // leaves it alone.
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
      const report = JSON.parse(result.stdout) as { removed: unknown[]; skipped: Array<{ file: string }> };
      expect(report.skipped.map((entry) => entry.file)).toContain(live);
      expect(report.removed).toEqual([]);
      expect(fingerprint(pod)).toEqual(before);
    } finally {
      chmodSync(live, 0o700);
    }
    const detached = vcnet(['detach', '--sandbox', 'live', '--state-dir', live], { VCNET_STATE_REGISTRY: registry });
    expect(detached.status, detached.stderr).toBe(0);
  });
});
