/**
 * `vcnet attach` whose record of the finished attach could not be written (the rename of that one
 * write refused with EIO, once, by strace's fault injection into the running vcnet), and whose undo
 * the kernel then refused in part (macvtap model: IPv6 turned off on eth0 while the attach was held
 * before its last step, so eth0's IPv6 addresses cannot go back). The record kept must list exactly
 * what is left, as an unfinished attach's: it was the last journal, naming everything the attach
 * made. Then `vcnet gc` (or `vcnet detach`) finishes it once the cause is gone, and the namespace is
 * as it was before the attach. All real: the kernel, the state directory, the CLI processes.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { collectOutput } from '../../helpers/child-output.js';
import { CLI, pauseAtStep, stateDirectoryPerTest, vcnet } from '../../helpers/cli.js';
import { fingerprint, makePod } from '../../helpers/pod.js';
import { straceFaultsSkipReason } from '../../helpers/strace.js';
import { until } from '../../helpers/until.js';

const skipReason = straceFaultsSkipReason('the refused last record write tests');

const stateDirectory = stateDirectoryPerTest('vcnet-last-write-');

/** The macvtap attach's steps: its last, the macvtap set up, comes after eth0's addresses were moved. */
const LAST_STEP = 10;

interface Record {
  attaching?: true;
  network: { endpoints: Array<{ plumbing?: { model: string; steps: Array<{ step: string }> } }> };
}

/**
 * `vcnet attach` of `pod` (macvtap) held before its last step; there IPv6 goes off on eth0 and strace
 * makes the next rename onto the record fail (EIO) once. What the attach printed, and its record.
 */
async function attachWithLastWriteRefused(pod: ReturnType<typeof makePod>['pod'], id: string) {
  const recordPath = join(stateDirectory(), id, 'state.json');
  const child = spawn(
    process.execPath,
    [
      CLI,
      'attach',
      '--sandbox',
      id,
      '--netns',
      pod.path,
      '--model',
      'macvtap',
      '--state-dir',
      stateDirectory(),
      '--json',
    ],
    { env: { ...process.env, ...pauseAtStep(LAST_STEP, 60_000) } },
  );
  const output = collectOutput(child);
  await until(
    () => output.sofar().stderr.includes(`paused at step ${LAST_STEP}`) || child.exitCode !== null,
    'vcnet attach to pause before its last step',
  );
  expect(output.sofar().stderr).toContain(`paused at step ${LAST_STEP} (set-link)`);
  pod.exec('sysctl', ['-q', '-w', 'net.ipv6.conf.eth0.disable_ipv6=1']);
  // Every write before this one is done. The next rename is the journal once every endpoint is
  // attached, the second the finished attach's record (refused), the third the undo's.
  const trace = join(stateDirectory(), 'renames.trace');
  const tracer = spawn('strace', [
    ...['-f', '-o', trace, '-e', 'trace=rename', '-e', 'inject=rename:error=EIO:when=2'],
    ...['-p', String(child.pid)],
  ]);
  const traced = collectOutput(tracer);
  try {
    await until(() => /attached/.test(traced.sofar().stderr) || tracer.exitCode !== null, 'strace to attach');
    expect(traced.sofar().stderr).toMatch(/attached/);
    child.kill('SIGUSR2');
    const attach = await output.done;
    await traced.done;
    const renames = readFileSync(trace, 'utf8')
      .split('\n')
      .filter((line) => line.includes('rename('));
    expect(renames).toEqual([
      expect.stringMatching(new RegExp(`"${recordPath}"\\) = 0$`)),
      expect.stringMatching(new RegExp(`"${recordPath}"\\) = -1 EIO .*\\(INJECTED\\)$`)),
      expect.stringMatching(new RegExp(`"${recordPath}"\\) = 0$`)),
    ]);
    return { attach, record: () => JSON.parse(readFileSync(recordPath, 'utf8')) as Record };
  } finally {
    if (tracer.exitCode === null) tracer.kill();
    await traced.done;
  }
}

describe.skipIf(skipReason)(
  "vcnet attach whose finished attach's record write is refused and whose undo is refused too",
  () => {
    for (const finisher of ['gc', 'detach'] as const) {
      it(`keeps a record of exactly what is left, which ${finisher} finishes`, async () => {
        const { pod } = makePod();
        const before = fingerprint(pod);
        try {
          const { attach, record } = await attachWithLastWriteRefused(pod, `lw${finisher}`);
          expect(attach.status, attach.stderr).not.toBe(0);
          const error = JSON.parse(attach.stdout).error as { code: string; message: string; hint: string };
          expect(error.code, error.message).toBe('VCNET_ROLLBACK_INCOMPLETE');
          expect(error.message).toMatch(/^attach failed: .*EIO.*; undoing it failed too \(/);
          expect(error.message).toContain('left addresses removed from eth0 (fd00:200::2/64)');
          expect(error.message).not.toContain('the record of what is left was not updated');
          // The record: eth0's two IPv6 addresses (global and link-local) to put back, nothing else, as an
          // unfinished attach's; it named the macvtap, its tap and every step before.
          const kept = record();
          expect(kept.attaching).toBe(true);
          expect(kept.network.endpoints.map((endpoint) => endpoint.plumbing?.model)).toEqual(['pending']);
          expect(kept.network.endpoints[0]?.plumbing?.steps.map((step) => step.step)).toEqual([
            'remove-addresses',
            'remove-addresses',
          ]);

          pod.exec('sysctl', ['-q', '-w', 'net.ipv6.conf.eth0.disable_ipv6=0']);
          const finished =
            finisher === 'gc'
              ? vcnet(['gc', '--netns', pod.path, '--state-dir', stateDirectory(), '--json'])
              : vcnet(['detach', '--sandbox', `lw${finisher}`, '--state-dir', stateDirectory()]);
          expect(finished.status, finished.stdout + finished.stderr).toBe(0);
          if (finisher === 'gc') {
            expect(JSON.parse(finished.stdout).removed.map((item: { detail: string }) => item.detail)).toEqual([
              expect.stringMatching(
                /^unfinished attach of eth0: addresses removed from eth0 \(fd00:200::2\/64\), addresses removed from eth0 \(fe80::[0-9a-f:]+\/64\)$/,
              ),
            ]);
          }
          expect(vcnet(['list', '--state-dir', stateDirectory(), '--json']).stdout.trim()).toBe('[]');
          expect(fingerprint(pod)).toEqual(before);
        } finally {
          pod.exec('sysctl', ['-q', '-w', 'net.ipv6.conf.eth0.disable_ipv6=0']);
        }
      }, 90_000);
    }
  },
);
