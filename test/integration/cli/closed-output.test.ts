/**
 * `vcnet` whose stdout and stderr readers are gone (a runtime whose log reader died, `| head`): the
 * output is lost, the command still finishes and exits with its own code instead of hanging.
 */
import { spawn } from 'node:child_process';
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
  it('attach with several log lines exits with its own code when stdout and stderr are closed', async () => {
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
      expect(result).toMatchObject({ status: 0, signal: null });
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
