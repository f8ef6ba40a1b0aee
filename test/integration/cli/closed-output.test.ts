/**
 * `vcnet` whose stdout and stderr readers are gone (a runtime whose log reader died, `| head`) or
 * whose output goes to a full disk (/dev/full): the output is lost, the command still finishes
 * instead of hanging or crashing. A failure keeps its own exit code; a success whose stdout was lost
 * exits 6; a lost stderr (logs only) changes nothing.
 */
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CLI, stateDirectoryPerTest, vcnet } from '../../helpers/cli.js';
import { makePod } from '../../helpers/pod.js';

const stateDirectory = stateDirectoryPerTest();

/** Runs vcnet with both output pipes closed by the reader before the first write; kills it after `deadlineMs`. */
function runWithClosedOutput(args: string[], deadlineMs: number) {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  // Closing the read ends now makes every write of the child fail with EPIPE.
  child.stdout.destroy();
  child.stderr.destroy();
  let killed = false;
  const timer = setTimeout(() => {
    killed = true;
    child.kill('SIGKILL');
  }, deadlineMs);
  return new Promise<{ status: number | null; signal: NodeJS.Signals | null; killed: boolean }>((resolve) =>
    child.on('exit', (status, signal) => {
      clearTimeout(timer);
      resolve({ status, signal, killed });
    }),
  );
}

describe('closed output pipes', () => {
  it('attach with several log lines exits 6 (done, output lost) when stdout and stderr are closed', async () => {
    const { pod } = makePod();
    // Address-less links: one `skipped` warning line each on stderr.
    pod.exec('ip', ['link', 'add', 'br9', 'type', 'bridge']);
    pod.exec('ip', ['link', 'add', 'vx9', 'type', 'vxlan', 'id', '9', 'dstport', '4789']);
    pod.exec('ip', ['link', 'add', 'ifb9', 'type', 'ifb']);
    try {
      const result = await runWithClosedOutput(
        ['attach', '--sandbox', 'closed', '--netns', pod.path, '--state-dir', stateDirectory()],
        15_000,
      );
      expect(result.killed).toBe(false);
      expect(result).toMatchObject({ status: 6, signal: null });
    } finally {
      // The attach itself went through: undo it (the namespace goes in afterEach).
      vcnet(['detach', '--sandbox', 'closed', '--state-dir', stateDirectory()]);
    }
    expect(pod.exec('ip', ['link', 'show'])).not.toContain('tap0_kata');
  }, 30_000);

  it('a failing command keeps its exit code when stdout and stderr are closed', async () => {
    const result = await runWithClosedOutput(
      ['attach', '--sandbox', 'x', '--netns', '/var/run/netns/vcnet-no-such', '--state-dir', stateDirectory()],
      15_000,
    );
    expect(result).toMatchObject({ killed: false, status: 2, signal: null });
  }, 30_000);
});

/** Runs vcnet with its stdout reader gone before the first write (`| head -0`), stderr captured. */
function runWithStdoutClosed(args: string[]) {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.destroy();
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  return new Promise<{ status: number | null; stderr: string }>((resolve) =>
    child.on('close', (status) => resolve({ status, stderr })),
  );
}

describe('help read through | head', () => {
  it('help and --version whose reader leaves early exit 0 and say nothing (a reader of help may stop at any line)', async () => {
    for (const args of [['gc', '--help'], ['--version'], ['help', 'attach'], ['kata-network', '--help']]) {
      const result = await runWithStdoutClosed(args);
      expect({ args, ...result }).toEqual({ args, status: 0, stderr: '' });
    }
    // A full disk is still a lost answer, help or not.
    const full = spawnSync(process.execPath, [CLI, 'gc', '--help'], {
      stdio: ['ignore', openSync('/dev/full', 'w'), 'pipe'],
      encoding: 'utf8',
    });
    expect(full.status).toBe(6);
  }, 60_000);
});

/** Runs vcnet with stdout or stderr on /dev/full (every write fails with ENOSPC); the other one captured. */
function runWithFullOutput(args: string[], full: 'stdout' | 'stderr') {
  const device = openSync('/dev/full', 'w');
  try {
    const result = spawnSync(process.execPath, [CLI, ...args], {
      encoding: 'utf8',
      stdio: ['ignore', full === 'stdout' ? device : 'pipe', full === 'stderr' ? device : 'pipe'],
      timeout: 15_000,
    });
    return { status: result.status, captured: (full === 'stdout' ? result.stderr : result.stdout) ?? '' };
  } finally {
    closeSync(device);
  }
}

describe('output to a full disk', () => {
  it('attach and detach --json with stdout on /dev/full do the work, say so on stderr and exit 6', () => {
    const { pod } = makePod();
    const attach = runWithFullOutput(
      ['attach', '--sandbox', 'full', '--netns', pod.path, '--state-dir', stateDirectory()],
      'stdout',
    );
    expect(attach.captured).not.toContain('    at ');
    expect(attach.captured).toContain('output on stdout was lost (ENOSPC)');
    expect(attach.status).toBe(6);
    expect(pod.exec('ip', ['link', 'show'])).toContain('tap0_kata');
    const detach = runWithFullOutput(
      ['detach', '--sandbox', 'full', '--json', '--state-dir', stateDirectory()],
      'stdout',
    );
    expect(detach).toMatchObject({ status: 6 });
    expect(detach.captured).toContain('output on stdout was lost (ENOSPC)');
    expect(pod.exec('ip', ['link', 'show'])).not.toContain('tap0_kata');
  }, 30_000);

  it('a failure keeps its own exit code and message on stderr when its --json error cannot be written', () => {
    const result = runWithFullOutput(
      [
        'attach',
        '--sandbox',
        'x',
        '--netns',
        '/var/run/netns/vcnet-no-such',
        '--json',
        '--state-dir',
        stateDirectory(),
      ],
      'stdout',
    );
    expect(result.status).toBe(2);
    expect(result.captured).toContain('vcnet: --netns "/var/run/netns/vcnet-no-such": no such file');
    expect(result.captured).not.toContain('    at ');
  }, 30_000);

  it('attach with debug logs going to a full stderr succeeds (exit 0) and prints its result', () => {
    const { pod } = makePod();
    try {
      const result = runWithFullOutput(
        [
          '--log-level',
          'debug',
          'attach',
          '--sandbox',
          'logs',
          '--json',
          '--netns',
          pod.path,
          '--state-dir',
          stateDirectory(),
        ],
        'stderr',
      );
      expect(result.status).toBe(0);
      expect(JSON.parse(result.captured)).toMatchObject({ sandbox: 'logs' });
    } finally {
      vcnet(['detach', '--sandbox', 'logs', '--state-dir', stateDirectory()]);
    }
  }, 30_000);
});
