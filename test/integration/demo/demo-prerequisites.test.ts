/**
 * `vcnet demo` on a host without one of the programs it starts (ping is not in minimal Debian
 * images): it must stop before it makes anything and name the program and its Debian package. It
 * used to run on and print "ping loss 100%, avg NaN ms" with exit 0.
 */
import { mkdtempSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DemoError, demoUnavailableReason, runDemo } from '../../../src/demo/scenario.js';
import { findProgram, UNSET_PATH_DIRECTORIES } from '../../../src/program-search.js';

/** A directory of links to every program on PATH except `hidden`, to stand in for PATH. */
function pathWithout(hidden: string[]): string {
  const directory = mkdtempSync(join(tmpdir(), `${process.env.VCNET_TEST_NAMESPACE_PREFIX ?? 'vcnet'}-path-`));
  for (const source of (process.env.PATH ?? '').split(':')) {
    if (!source) continue;
    let entries: string[];
    try {
      entries = readdirSync(source);
    } catch {
      continue;
    }
    for (const entry of entries) {
      if (hidden.includes(entry)) continue;
      try {
        symlinkSync(join(source, entry), join(directory, entry));
      } catch {
        // an earlier directory on PATH had it: that one wins, as it does for a PATH search
      }
    }
  }
  return directory;
}

const originalPath = process.env.PATH;
const made: string[] = [];
afterEach(() => {
  process.env.PATH = originalPath;
  for (const directory of made.splice(0)) rmSync(directory, { recursive: true, force: true });
});

async function demoFailure(hidden: string[], iperfSeconds: number): Promise<DemoError> {
  const directory = pathWithout(hidden);
  made.push(directory);
  process.env.PATH = directory;
  const progress: string[] = [];
  const failure = await runDemo({
    iperfSeconds,
    // The first progress line comes after the namespaces were made: stop there, should the check miss.
    progress: (line) => {
      progress.push(line);
      throw new Error(`the demo went on past its prerequisites: ${line}`);
    },
  }).then(
    () => undefined,
    (error: unknown) => error,
  );
  expect(failure).toBeInstanceOf(DemoError);
  expect(progress).toEqual([]);
  return failure as DemoError;
}

describe('vcnet demo prerequisites', () => {
  it('stops before making anything when ping is missing, naming ping and iputils-ping', async () => {
    const failure = await demoFailure(['ping'], 1);
    expect(failure.code).toBe('VCNET_DEMO_FAILED');
    expect(failure.value).toBe('checking prerequisites');
    expect(failure.message).toMatch(/ping \(Debian package iputils-ping\)/);
    expect(failure.message).not.toMatch(/iperf3/);
    expect(failure.hint).toMatch(/apt-get install|scripts\/setup/);
  });

  it('asks for iperf3 only when the demo runs iperf3', async () => {
    const withIperf = await demoFailure(['ping', 'iperf3'], 1);
    expect(withIperf.message).toMatch(/iperf3 \(Debian package iperf3\)/);
    const withoutIperf = await demoFailure(['ping', 'iperf3'], 0);
    expect(withoutIperf.message).not.toMatch(/iperf3/);
  });

  it('with PATH unset (env -i) looks where the programs will be started from, not in an empty PATH', (context) => {
    // The demo's children are started by name; with no PATH, Node and execvp search /usr/bin:/bin.
    const present = ['ip', 'ping'].filter((program) => findProgram(program, UNSET_PATH_DIRECTORIES));
    if (present.length === 0) {
      console.log(`skipped: neither ip nor ping is in ${UNSET_PATH_DIRECTORIES.join(':')} on this machine`);
      return context.skip();
    }
    delete process.env.PATH;
    const reason = demoUnavailableReason({ iperfSeconds: 0 }) ?? '';
    for (const program of present) expect(reason).not.toMatch(new RegExp(`\\b${program} \\(Debian package`));
    if (reason.includes('programs not found')) expect(reason).toMatch(/in \/usr\/bin:\/bin \(PATH is not set\)/);
  });
});
