/**
 * vcnet run as a service manager may run it: with some capabilities dropped. A refusal is reported as
 * "not permitted" (exit 3) naming what is missing, and nothing refused is reported done.
 */
import { spawnSync } from 'node:child_process';
import { appendFileSync, chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CLI, pauseAfterTap, stateDirectoryPerTest, vcnet, vcnetAsync } from '../../helpers/cli.js';
import { cniVariables, VCNET_CNI_PROGRAM, vcnetCniAlone } from '../../helpers/cni.js';
import { makePod } from '../../helpers/pod.js';

const stateDirectory = stateDirectoryPerTest('vcnet-caps-');

/** `vcnet ARGS` as root with only the capabilities `keep` (e.g. ['sys_admin']), through setpriv. */
function vcnetWithCapabilities(keep: string[], args: string[], env: Record<string, string> = {}) {
  const caps = ['-all', ...keep.map((cap) => `+${cap}`)].join(',');
  const result = spawnSync(
    'setpriv',
    [`--bounding-set=${caps}`, `--inh-caps=${caps}`, '--', process.execPath, CLI, ...args],
    { encoding: 'utf8', env: { ...process.env, ...env } },
  );
  return { status: result.status ?? -1, stdout: result.stdout, stderr: result.stderr, error: result.error };
}

/** An attach of sandbox `id` killed (SIGKILL) right after it created tap0_kata: its record says so. */
async function killedAttach(id: string, namespacePath: string): Promise<void> {
  const run = vcnetAsync(
    ['attach', '--sandbox', id, '--netns', namespacePath, '--state-dir', stateDirectory()],
    pauseAfterTap('tap0_kata'),
  );
  const deadline = Date.now() + 20_000;
  while (!run.output().stderr.includes('paused after creating tap0_kata')) {
    if (run.child.exitCode !== null || Date.now() > deadline)
      throw new Error(`attach never paused: ${run.output().stderr}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  run.child.kill('SIGKILL');
  await run.done;
}

describe('gc without CAP_NET_ADMIN', () => {
  it('reports nothing it could not remove as removed, and exits 3 (text and --json)', async () => {
    const { pod } = makePod();
    await killedAttach('g', pod.path);
    const gcArgs = ['gc', '--netns', pod.path, '--state-dir', stateDirectory()];

    const text = vcnetWithCapabilities(['sys_admin'], gcArgs);
    expect(text.error).toBeUndefined();
    expect(text.stdout).not.toContain('unfinished attach');
    expect(text.stdout).toContain('removed nothing');
    expect(text.stderr).toContain('delete tun tap0_kata failed: EPERM');
    expect(text.status, text.stderr).toBe(3);

    const json = vcnetWithCapabilities(['sys_admin'], [...gcArgs, '--json']);
    expect(json.status, json.stderr).toBe(3);
    const report = JSON.parse(json.stdout) as { removed: unknown[]; failures: Array<{ errno?: string }> };
    expect(report.removed).toEqual([]);
    expect(report.failures).toContainEqual(expect.objectContaining({ errno: 'EPERM' }));
    // stderr says what failed and what to do with --json too, as every other command does.
    expect(json.stderr).toContain('delete tun tap0_kata failed: EPERM');
    expect(json.stderr).toMatch(/^hint: .*CAP_NET_ADMIN/m);
    expect(pod.exec('ip', ['link', 'show'])).toContain('tap0_kata');
    expect(existsSync(join(stateDirectory(), 'g', 'state.json'))).toBe(true);

    // With the capabilities, gc finishes it.
    const root = vcnet(gcArgs);
    expect(root.status, root.stderr).toBe(0);
    expect(root.stdout).toContain('unfinished attach of eth0');
    expect(pod.exec('ip', ['link', 'show'])).not.toContain('tap0_kata');
  }, 60_000);
});

describe('detach without CAP_NET_ADMIN', () => {
  it('is "not permitted" (exit 3) and the hint names the missing capability, not "run the command again"', () => {
    const { pod } = makePod();
    const state = ['--state-dir', stateDirectory()];
    expect(vcnet(['attach', '--sandbox', 'd', '--netns', pod.path, ...state]).status).toBe(0);
    const refused = vcnetWithCapabilities(['sys_admin'], ['detach', '--sandbox', 'd', '--json', ...state]);
    expect(refused.status, refused.stderr).toBe(3);
    const { error } = JSON.parse(refused.stdout) as { error: { outerCode: string; hint: string } };
    expect(error.outerCode).toBe('VCNET_DETACH_INCOMPLETE');
    expect(error.hint).toContain('lacks CAP_NET_ADMIN');
    expect(error.hint).not.toContain('run the command again');
    expect(pod.exec('ip', ['link', 'show'])).toContain('tap0_kata');
    expect(vcnet(['detach', '--sandbox', 'd', ...state]).status).toBe(0);
    expect(pod.exec('ip', ['link', 'show'])).not.toContain('tap0_kata');
  }, 60_000);
});

describe('attach with one of the two capabilities', () => {
  for (const [keep, missing] of [
    ['sys_admin', 'CAP_NET_ADMIN'],
    ['net_admin', 'CAP_SYS_ADMIN'],
  ] as const) {
    it(`with only ${keep}: exit 3, the hint names ${missing}; no state directory is left`, () => {
      const { pod } = makePod();
      // Made by the attach, two levels deep: neither is left once it is refused.
      const made = join(stateDirectory(), 'new', 'state');
      const result = vcnetWithCapabilities(
        [keep],
        ['attach', '--sandbox', 'c', '--netns', pod.path, '--state-dir', made],
      );
      expect(result.status, result.stderr).toBe(3);
      expect(result.stderr).toMatch(new RegExp(`^hint: .*lacks ${missing} `, 'm'));
      expect(result.stderr).not.toContain('see the cause');
      // The refused call is named as a word, not as "setns : ..." with the gap of a missing detail.
      expect(result.stderr).not.toMatch(/\w : /);
      if (missing === 'CAP_SYS_ADMIN')
        expect(result.stderr).toContain(`enter network namespace ${pod.path} failed: setns: Operation not permitted`);
      expect(pod.exec('ip', ['link', 'show'])).not.toContain('tap0_kata');
      expect(existsSync(join(stateDirectory(), 'new'))).toBe(false);
      // One that was there before stays, as it was.
      const again = vcnetWithCapabilities(
        [keep],
        ['attach', '--sandbox', 'c', '--netns', pod.path, '--state-dir', stateDirectory()],
      );
      expect(again.status, again.stderr).toBe(3);
      expect(readdirSync(stateDirectory())).toEqual([]);
    }, 30_000);
  }
});

describe('vcnet-cni ADD with one of the two capabilities', () => {
  for (const keep of ['net_admin', 'sys_admin']) {
    it(`with only ${keep}: refused (code 108), and the stateDir it made is not left`, () => {
      const { pod } = makePod();
      const stateDir = join(stateDirectory(), 'cni', 'state');
      const config = JSON.stringify(vcnetCniAlone({ name: 'caps', namespacePath: pod.path, settings: { stateDir } }));
      const caps = `-all,+${keep}`;
      const result = spawnSync(
        'setpriv',
        [`--bounding-set=${caps}`, `--inh-caps=${caps}`, '--', process.execPath, VCNET_CNI_PROGRAM],
        {
          encoding: 'utf8',
          input: config,
          env: { ...process.env, ...cniVariables('ADD', { containerId: 'caps', namespacePath: pod.path }) },
        },
      );
      expect(result.status, result.stdout + result.stderr).toBe(1);
      expect((JSON.parse(result.stdout) as { code: number }).code).toBe(108);
      expect(pod.exec('ip', ['link', 'show'])).not.toContain('tap0_kata');
      expect(existsSync(join(stateDirectory(), 'cni'))).toBe(false);
    }, 30_000);
  }
});

describe('a user other than root with CAP_NET_ADMIN and CAP_SYS_ADMIN', () => {
  it("whose registry is root's: the hint names the registry and VCNET_STATE_REGISTRY, not root", () => {
    const { pod } = makePod();
    // A registry in a directory only root may enter, as /run/vcnet is.
    const rootOnly = mkdtempSync(join(tmpdir(), 'vcnet-root-registry-'));
    const own = mkdtempSync(join(tmpdir(), 'vcnet-user-state-'));
    chownSync(own, 65534, 65534);
    try {
      const caps = '+net_admin,+sys_admin';
      const result = spawnSync(
        'setpriv',
        [
          ...['--reuid', '65534', '--regid', '65534', '--clear-groups'],
          ...[`--inh-caps=${caps}`, `--ambient-caps=${caps}`, '--'],
          ...[process.execPath, CLI, 'attach', '--sandbox', 'u', '--netns', pod.path, '--state-dir', join(own, 's')],
        ],
        { encoding: 'utf8', env: { ...process.env, VCNET_STATE_REGISTRY: join(rootOnly, 'state-directories') } },
      );
      expect(result.status, result.stderr).toBe(3);
      expect(result.stderr).toContain(
        `hint: ${join(rootOnly, 'state-directories')} (the registry of state directories`,
      );
      expect(result.stderr).toContain('set VCNET_STATE_REGISTRY');
      expect(pod.exec('ip', ['link', 'show'])).not.toContain('tap0_kata');
    } finally {
      rmSync(rootOnly, { recursive: true, force: true });
      rmSync(own, { recursive: true, force: true });
    }
  }, 30_000);

  it("vcnet list: root's registry and root's state directories, closed to it, each come with what to do", () => {
    const { pod } = makePod();
    // Only root may enter it, as /run/vcnet: the default registry and state directories are in it.
    const rootOnly = mkdtempSync(join(tmpdir(), 'vcnet-root-only-'));
    const own = mkdtempSync(join(tmpdir(), 'vcnet-user-state-'));
    chownSync(own, 65534, 65534);
    const userState = join(own, 's');
    const registry = join(own, 'state-directories');
    const asNobody = (args: string[], registryPath: string, capabilities = false) => {
      const caps = '+net_admin,+sys_admin';
      const result = spawnSync(
        'setpriv',
        [
          ...['--reuid', '65534', '--regid', '65534', '--clear-groups'],
          ...(capabilities ? [`--inh-caps=${caps}`, `--ambient-caps=${caps}`] : []),
          ...['--', process.execPath, CLI, ...args],
        ],
        { encoding: 'utf8', env: { ...process.env, VCNET_STATE_DIR: userState, VCNET_STATE_REGISTRY: registryPath } },
      );
      return { status: result.status, stdout: result.stdout, stderr: result.stderr };
    };
    try {
      const closedRegistry = join(rootOnly, 'state-directories');
      const refused = asNobody(['list'], closedRegistry);
      expect(refused.status, refused.stderr).toBe(3);
      expect(refused.stderr).toContain(`hint: ${closedRegistry} (the registry of state directories`);
      expect(refused.stderr).toContain('run as root, or set VCNET_STATE_REGISTRY');

      const attached = asNobody(['attach', '--sandbox', 'u', '--netns', pod.path], registry, true);
      expect(attached.status, attached.stderr).toBe(0);
      // The user's registry names a directory of root's too, as root's /run/vcnet/sandboxes is read.
      const closedDirectory = join(rootOnly, 'sandboxes');
      appendFileSync(registry, `${closedDirectory}\n`);
      const listed = asNobody(['list'], registry);
      expect(listed.status, listed.stderr).toBe(1);
      expect(listed.stdout).toMatch(/^u +attached /m);
      expect(listed.stderr).toContain(
        `hint: ${closedDirectory} is a state directory of root's, closed to this user (uid 65534): run \`vcnet list\` as root`,
      );
      expect(listed.stderr).toContain(`\`vcnet list --state-dir ${userState}\` lists this user's own records alone`);
      const alone = asNobody(['list', '--state-dir', userState], registry);
      expect(alone.status, alone.stderr).toBe(0);
      expect(alone.stdout).toMatch(/^u +attached /m);
      const detached = asNobody(['detach', '--sandbox', 'u'], registry, true);
      expect(detached.status, detached.stderr).toBe(0);
    } finally {
      rmSync(rootOnly, { recursive: true, force: true });
      rmSync(own, { recursive: true, force: true });
    }
  }, 60_000);
});
