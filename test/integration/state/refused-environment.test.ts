/**
 * An attach or vcnet-cni ADD refused for its environment (VCNET_STATE_REGISTRY empty or another
 * user's to change, VCNET_STATE_DIR empty) makes nothing first: not its state directory, not its
 * lock, not even for the moment before a refused command tidied them away (traced with strace).
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CLI, stateDirectoryPerTest } from '../../helpers/cli.js';
import { cniVariables, VCNET_CNI_PROGRAM, vcnetCniAlone } from '../../helpers/cni.js';
import { fingerprint, linkMac, makePod } from '../../helpers/pod.js';
import { straceFaultsSkipReason } from '../../helpers/strace.js';

const stateDirectory = stateDirectoryPerTest('vcnet-refused-env-');
const skipReason = straceFaultsSkipReason('refused-environment tests');

/** Runs `argv` under strace, tracing every mkdir; its exit status, stdout, stderr and the mkdir paths. */
function traceMkdirs(argv: string[], env: Record<string, string>, input?: string) {
  const trace = join(stateDirectory(), `trace-${Math.random().toString(36).slice(2)}`);
  const result = spawnSync('strace', ['-f', '-qq', '-e', 'trace=mkdir,mkdirat', '-o', trace, ...argv], {
    encoding: 'utf8',
    timeout: 60_000,
    env: { PATH: process.env.PATH, ...env },
    ...(input !== undefined ? { input } : {}),
  });
  const made = [...readFileSync(trace, 'utf8').matchAll(/mkdir(?:at)?\((?:AT_FDCWD, )?"([^"]+)"/g)].map(
    (match) => match[1]!,
  );
  return { status: result.status, stdout: result.stdout, stderr: result.stderr, made };
}

describe.skipIf(skipReason)('an environment the command refuses', () => {
  /** A registry in a directory others may write (not sticky): refused, as another user could change it. */
  function openRegistry(): string {
    const directory = join(stateDirectory(), 'open');
    mkdirSync(directory, { recursive: true });
    chmodSync(directory, 0o777);
    return join(directory, 'registry');
  }

  const cases: Array<[string, () => Record<string, string>, RegExp]> = [
    ['VCNET_STATE_REGISTRY empty', () => ({ VCNET_STATE_REGISTRY: '' }), /invalid VCNET_STATE_REGISTRY: ""/],
    [
      'VCNET_STATE_REGISTRY in a directory others may write',
      () => ({ VCNET_STATE_REGISTRY: openRegistry() }),
      /invalid VCNET_STATE_REGISTRY: .*writable by its group and others/,
    ],
    [
      'VCNET_STATE_DIR empty',
      () => ({ VCNET_STATE_REGISTRY: join(stateDirectory(), 'registry'), VCNET_STATE_DIR: '' }),
      /invalid VCNET_STATE_DIR: ""/,
    ],
  ];

  it.each(cases)('attach: %s is refused before the state directory is made', (_, environment, message) => {
    const { pod } = makePod();
    const before = fingerprint(pod);
    const state = join(stateDirectory(), 'nested', 'state');
    const run = traceMkdirs(
      [process.execPath, CLI, 'attach', '--sandbox', 's1', '--netns', pod.path, '--state-dir', state],
      environment(),
    );
    expect(run.status, run.stderr).toBe(2);
    expect(run.stderr).toMatch(message);
    expect(run.made.filter((path) => path.startsWith(join(stateDirectory(), 'nested')))).toEqual([]);
    expect(existsSync(join(stateDirectory(), 'nested'))).toBe(false);
    expect(fingerprint(pod)).toEqual(before);
  });

  it.each(cases)('vcnet-cni ADD: %s is refused before the stateDir is made', (_, environment, message) => {
    const { pod } = makePod();
    const before = fingerprint(pod);
    const state = join(stateDirectory(), 'nested', 'cni');
    const config = JSON.stringify(
      vcnetCniAlone({
        name: 'vcnet-refused-env',
        namespacePath: pod.path,
        mac: linkMac(pod),
        settings: { stateDir: state },
      }),
    );
    const run = traceMkdirs(
      [process.execPath, VCNET_CNI_PROGRAM],
      { ...environment(), ...cniVariables('ADD', { containerId: 'ctr-refused-env', namespacePath: pod.path }) },
      config,
    );
    expect(run.status, run.stderr).toBe(1);
    expect(JSON.parse(run.stdout)).toMatchObject({ code: 7, msg: expect.stringMatching(message) });
    expect(run.made.filter((path) => path.startsWith(join(stateDirectory(), 'nested')))).toEqual([]);
    expect(existsSync(join(stateDirectory(), 'nested'))).toBe(false);
    expect(fingerprint(pod)).toEqual(before);
  });
});
