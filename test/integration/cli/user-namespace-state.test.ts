/**
 * vcnet in a user namespace of an unprivileged user (rootless: `unshare -Urn` as that user): a
 * directory of a user the namespace does not map shows as the overflow uid (65534). It is refused as
 * before (that user could be anyone on the host), but said so, and the hint is one that can be
 * followed there: a state directory and registry under a directory this user owns, not `chown root`.
 */
import { spawnSync } from 'node:child_process';
import { chownSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CLI } from '../../helpers/cli.js';

/** `vcnet ARGS` as uid 65534 in a user namespace of its own where it is root (`unshare -Urn`). */
function vcnetRootless(args: string[], env: Record<string, string>) {
  const result = spawnSync(
    'setpriv',
    ['--reuid=65534', '--regid=65534', '--clear-groups', 'unshare', '-Urn', process.execPath, CLI, ...args],
    { encoding: 'utf8', env: { ...process.env, ...env } },
  );
  return { status: result.status ?? -1, stdout: result.stdout, stderr: result.stderr };
}

const probe = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'unshare', '-Urn', 'true']);
const skipReason =
  process.getuid?.() !== 0
    ? 'needs root'
    : probe.error || probe.status !== 0
      ? `an unprivileged user cannot unshare -Urn here (${probe.error?.message ?? probe.stderr})`
      : undefined;
if (skipReason) console.log(`skipping the rootless state directory tests: ${skipReason}`);

let directory: string;
let own: string;
beforeEach(() => {
  directory = mkdtempSync(join(tmpdir(), 'vcnet-rootless-'));
  // Searchable by the unprivileged user; its own directory inside.
  spawnSync('chmod', ['755', directory]);
  own = join(directory, 'own');
  mkdirSync(own);
  chownSync(own, 65534, 65534);
});
afterEach(() => rmSync(directory, { recursive: true, force: true }));

describe.skipIf(skipReason !== undefined)('in a user namespace, a directory of a user outside it', () => {
  it('as the state directory: refused, named as such, and the hint is not `chown root`', () => {
    const rootOwned = join(directory, 'state');
    mkdirSync(rootOwned, { mode: 0o755 });
    const result = vcnetRootless(['detach', '--sandbox', 'x', '--state-dir', rootOwned], {
      VCNET_STATE_REGISTRY: join(own, 'registry'),
    });
    expect(result.status, result.stderr).toBe(2);
    expect(result.stderr).toMatch(/owned by a user outside this user namespace \(shown as uid \d+; mode 0755\)/);
    expect(result.stderr).toMatch(/^hint: .*under a directory this user owns, e\.g\. \$XDG_RUNTIME_DIR\/vcnet/m);
    expect(result.stderr).not.toMatch(/chown (root|0) /);
  });

  it('as the registry directory (a sticky /tmp of the host): refused, and the hint moves VCNET_STATE_REGISTRY', () => {
    const result = vcnetRootless(['detach', '--sandbox', 'x', '--state-dir', join(own, 'state')], {
      VCNET_STATE_REGISTRY: '/tmp/vcnet-rootless-registry',
    });
    // detach of nothing does not register; gc reads the registry.
    const gc = vcnetRootless(['gc', '--state-dir', own, '--dry-run'], {
      VCNET_STATE_REGISTRY: '/tmp/vcnet-rootless-registry',
    });
    for (const run of [result, gc].filter((entry) => entry.status !== 0)) {
      expect(run.stderr).toMatch(/its directory \/tmp is owned by a user outside this user namespace/);
      expect(run.stderr).toMatch(/^hint: .*VCNET_STATE_REGISTRY=\$XDG_RUNTIME_DIR\/vcnet\/state-directories/m);
      expect(run.stderr).not.toContain('chown root');
    }
    expect(gc.status, gc.stderr).toBe(2);
  });
});
