/**
 * vcnet-cni as a process, fed what a runtime or a broken chain may hand it: valid network configs of
 * each cniVersion (prevResult in its own version) with one field changed to another type, removed,
 * or added, the bytes of stdin damaged (a BOM, cut short, non-UTF-8 bytes, duplicate keys, deep
 * nesting), and CNI_* variables changed. The answer is the spec's error object on stdout with a code
 * the docs list (never 999, vcnet-cni's own bug) and vcnet's words, exit 1; or a success. DEL
 * succeeds whatever it is given. Each run's pod namespace and state directory are compared with
 * what they were: a refused command changes neither, a successful ADD is undone by DEL.
 * Replay or widen a search with VCNET_FUZZ_SEED and VCNET_FUZZ_RUNS (the failure message gives the seed).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_CONFIG_DEPTH } from '../../../src/cni/config.js';
import { VCNET_CNI_PROGRAM } from '../../helpers/cni.js';
import {
  changedAt,
  damagedBytes,
  directoryListing,
  fuzzParameters,
  LEAKED,
  type ProgramRun,
  pathsIn,
  runProgram,
} from '../../helpers/entry-point-fuzz.js';
import { cleanupNamespaces, type TestNamespace } from '../../helpers/namespace.js';
import { fingerprint, makePod } from '../../helpers/pod.js';

const skipReason = process.getuid?.() !== 0 ? 'vcnet-cni fuzz tests need root (namespaces, taps, tc)' : undefined;
if (skipReason) console.log(`skipping vcnet-cni input fuzz tests: ${skipReason}`);

/** The CNI codes docs/cni.md and docs/troubleshooting.md give (999 is vcnet-cni's own bug). */
const DOCUMENTED_CNI_CODES = new Set([1, 2, 3, 4, 5, 6, 7, 11, 50, 100, 101, 102, 103, 104, 105, 106, 107, 108]);
const VERSIONS = ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] as const;

let pod: TestNamespace;
let workDirectory: string;
let stateDirectory: string;
let podAsMade: string;

beforeAll(() => {
  if (skipReason) return;
  pod = makePod().pod;
  podAsMade = JSON.stringify(fingerprint(pod));
  workDirectory = mkdtempSync(join(tmpdir(), 'vcnet-cni-fuzz-'));
  stateDirectory = join(workDirectory, 'state');
});
afterAll(() => {
  if (skipReason) return;
  cleanupNamespaces();
  rmSync(workDirectory, { recursive: true, force: true });
});

/** The conflist entry libcni gives vcnet-cni after bridge, prevResult in the list's version. */
function validConfig(version: (typeof VERSIONS)[number]): Record<string, unknown> {
  const old = version.startsWith('0.');
  return {
    cniVersion: version,
    name: 'fuzznet',
    type: 'vcnet-cni',
    model: 'tcfilter',
    queues: 1,
    stateDir: stateDirectory,
    lockTimeoutMs: 2000,
    prevResult: {
      cniVersion: version,
      interfaces: [
        { name: 'veth0', mac: '02:00:00:00:00:01' },
        { name: 'eth0', mac: '02:00:00:00:00:02', sandbox: pod.path },
      ],
      ips: [{ ...(old ? { version: '4' } : {}), address: '10.200.0.2/24', gateway: '10.200.0.1', interface: 1 }],
      routes: [{ dst: '0.0.0.0/0' }],
      dns: { nameservers: ['10.0.0.10'] },
    },
  };
}

function cniEnvironment(command: string): Record<string, string | undefined> {
  return {
    CNI_COMMAND: command,
    CNI_CONTAINERID: 'fuzz1',
    CNI_IFNAME: 'eth0',
    CNI_NETNS: pod.path,
    CNI_PATH: '/usr/lib/cni',
  };
}

function plugin(input: Buffer | string, env: Record<string, string | undefined>): ProgramRun {
  return runProgram(VCNET_CNI_PROGRAM, [], input, env);
}

/** What is wrong with a refusal: stdout must be the spec's error object, in vcnet's words. */
function refusalProblems(run: ProgramRun): string[] {
  let reply: { cniVersion?: unknown; code?: unknown; msg?: unknown; details?: unknown };
  try {
    reply = JSON.parse(run.stdout);
  } catch {
    return [`exit ${run.status} without a JSON reply: ${run.stdout.slice(0, 300)} ${run.stderr.slice(0, 300)}`];
  }
  const problems: string[] = [];
  if (!DOCUMENTED_CNI_CODES.has(reply.code as number)) problems.push(`code ${String(reply.code)}`);
  if (typeof reply.msg !== 'string' || reply.msg === '') problems.push('no msg');
  if (typeof reply.details !== 'string' || !reply.details.startsWith('VCNET_'))
    problems.push('details without a VCNET_ code');
  if (!(VERSIONS as readonly unknown[]).includes(reply.cniVersion))
    problems.push(`cniVersion ${String(reply.cniVersion)}`);
  if (LEAKED.test(`${String(reply.msg)} ${String(reply.details)}`)) problems.push("words that are not vcnet's");
  return problems.length === 0 ? [] : [`${problems.join(', ')}: ${run.stdout.slice(0, 600)}`];
}

/** Runs one changed input and says what went wrong, undoing a successful ADD with a valid DEL. */
function problemsOf(command: string, input: Buffer, env: Record<string, string | undefined>): string[] {
  const stateBefore = directoryListing(workDirectory);
  const run = plugin(input, env);
  const problems: string[] = [];
  if (/\n\s+at \S|(Type|Range|Reference)Error/.test(run.stderr))
    problems.push(`a trace on stderr: ${run.stderr.slice(0, 600)}`);
  if (run.status === 0) {
    if (command === 'ADD') {
      try {
        JSON.parse(run.stdout);
      } catch {
        problems.push(`ADD succeeded without a JSON result: ${run.stdout.slice(0, 300)}`);
      }
      // The same container and interface (a changed CNI_CONTAINERID may have been valid).
      const del = plugin(JSON.stringify(validConfig('1.0.0')), { ...env, CNI_COMMAND: 'DEL' });
      if (del.status !== 0) problems.push(`the DEL after a successful ADD failed: ${del.stdout}`);
    }
  } else if (run.status === 1) {
    problems.push(...refusalProblems(run));
    if (command === 'DEL') problems.push(`DEL failed: ${run.stdout.slice(0, 300)}`);
  } else {
    problems.push(`exit ${run.status} (signal ${run.signal}): ${run.stdout.slice(0, 300)} ${run.stderr.slice(0, 300)}`);
  }
  if (JSON.stringify(fingerprint(pod)) !== podAsMade) {
    problems.push('the pod namespace changed');
    plugin(JSON.stringify(validConfig('1.0.0')), cniEnvironment('DEL'));
  }
  if (run.status !== 0 && JSON.stringify(directoryListing(workDirectory)) !== JSON.stringify(stateBefore)) {
    problems.push(`the state directory changed: ${directoryListing(workDirectory).join(' | ').slice(0, 400)}`);
  }
  return problems;
}

/** Values of every type, and the odd ones: NUL, lone surrogates, huge, deep, names of Object's own keys. */
const oddValue = fc.oneof(
  fc.constantFrom(null, true, false, 0, -1, 1.5, 1e308, -0, 2 ** 31, 2 ** 53 + 2, '', ' ', 'x', '\u0000', '\ud800'),
  fc.constantFrom('💥', [], {}, [[]], { a: { b: { c: {} } } }, 'eth0', '/', '0.0.0.0/0', '::/0', '10.0.0.2/33'),
  fc.constantFrom('__proto__', 'constructor', 'toString', 'A'.repeat(20_000)),
  fc.string({ maxLength: 10, unit: 'binary' }),
  fc.anything({ maxDepth: 2, maxKeys: 3 }),
);
const addedKey = fc.constantFrom(
  'runtimeConfig',
  'capabilities',
  'args',
  'rateLimit',
  'tapOwner',
  'tapGroup',
  'cni.dev/valid-attachments',
);
/** How the bytes on stdin are damaged after the config is written. */
const damage = fc.constantFrom('none', 'none', 'bom', 'duplicate keys', 'cut', 'non-UTF-8', 'empty', 'deep', 'NUL');

describe.skipIf(skipReason)('vcnet-cni fed changed input', () => {
  it('refuses a config nested 5000 levels deep with code 6 before it makes anything (ADD used to attach, then fail with code 999)', () => {
    const stateBefore = directoryListing(workDirectory);
    const config = validConfig('1.0.0');
    const text = JSON.stringify(config).replace('"dns":', `"deep":${'['.repeat(5000)}${']'.repeat(5000)},"dns":`);
    const run = plugin(text, cniEnvironment('ADD'));
    try {
      expect(run.status).toBe(1);
      expect(JSON.parse(run.stdout)).toEqual({
        cniVersion: '1.0.0',
        code: 6,
        msg: `network config on stdin nests deeper than ${MAX_CONFIG_DEPTH} levels (at prevResult.deep[0][0]...)`,
        details: expect.stringMatching(/^VCNET_CNI_DECODE: /),
      });
      expect(JSON.stringify(fingerprint(pod))).toBe(podAsMade);
      expect(directoryListing(workDirectory)).toEqual(stateBefore);
      // DEL of the same input reads its stateDir all the same, and finds nothing to do.
      expect(plugin(text, cniEnvironment('DEL'))).toMatchObject({ status: 0, stdout: '' });
    } finally {
      plugin(JSON.stringify(config), cniEnvironment('DEL'));
    }
  });

  it('answers every changed config with a documented error or a success, and a refusal changes nothing', () => {
    const change = fc.record({
      version: fc.constantFrom(...VERSIONS),
      command: fc.constantFrom('ADD', 'ADD', 'CHECK', 'DEL', 'STATUS', 'GC', 'VERSION'),
      pick: fc.nat(),
      remove: fc.boolean(),
      to: oddValue,
      added: fc.option(addedKey, { nil: undefined, freq: 3 }),
      damage,
      at: fc.nat(),
    });
    fc.assert(
      fc.property(change, (generated) => {
        const valid = validConfig(generated.version);
        // stateDir keeps its value: a config that names another directory may make it (ADD's job).
        const paths = pathsIn(valid).filter((path) => path.length > 0 && path[0] !== 'stateDir');
        const path = paths[generated.pick % paths.length]!;
        const config =
          generated.added === undefined
            ? changedAt(valid, path, generated)
            : { ...valid, [generated.added]: generated.to };
        const input = damagedConfig(JSON.stringify(config) ?? '', generated.damage, generated.at);
        expect(problemsOf(generated.command, input, cniEnvironment(generated.command))).toEqual([]);
      }),
      fuzzParameters(36, 40),
    );
  });

  it('answers changed CNI_* variables with code 4 naming the variable, or a success; DEL never fails', () => {
    const variableValue = fc.oneof(
      fc.constantFrom(undefined, '', ' ', 'eth0/x', 'eth0:1', 'a'.repeat(16), 'é'.repeat(8), '.', '..', 'ns/net'),
      fc.constantFrom('/proc/self/ns/net', '/', '/dev/null', '/tmp', '/nonexistent/x', 'a;b', 'K=V;', ';;;', '='),
      fc.constantFrom('IgnoreUnknown=1;K8S_POD_NAME=x', 'a=b=c', 'x\ny', '../../etc', 'A'.repeat(129), 'add', 'ADD '),
      fc.string({ maxLength: 20 }).map((text) => text.replaceAll('\u0000', '')),
    );
    const change = fc.record({
      version: fc.constantFrom(...VERSIONS),
      command: fc.constantFrom('ADD', 'CHECK', 'DEL'),
      variable: fc.constantFrom('CNI_ARGS', 'CNI_IFNAME', 'CNI_NETNS', 'CNI_CONTAINERID', 'CNI_PATH'),
      value: variableValue,
    });
    fc.assert(
      fc.property(change, (generated) => {
        const env = { ...cniEnvironment(generated.command), [generated.variable]: generated.value };
        const input = Buffer.from(JSON.stringify(validConfig(generated.version)));
        const problems = problemsOf(generated.command, input, env);
        expect(problems).toEqual([]);
      }),
      fuzzParameters(36, 30),
    );
  });

  it('DEL of an attached interface succeeds on any prevResult, and again when nothing is left', () => {
    // 5000 levels: more than ADD takes (code 6), while DEL still reads its stateDir and undoes.
    const deep = { nested: 5000 };
    const garbage = fc.oneof(oddValue, fc.constant(deep));
    fc.assert(
      fc.property(garbage, fc.constantFrom(...VERSIONS), (prevResult, version) => {
        const valid = validConfig(version);
        try {
          const added = plugin(JSON.stringify(valid), cniEnvironment('ADD'));
          expect(added.status, added.stdout).toBe(0);
          const text =
            prevResult === deep
              ? JSON.stringify({ ...valid, prevResult: 0 }).replace(
                  '"prevResult":0',
                  `"prevResult":${'['.repeat(5000)}${']'.repeat(5000)}`,
                )
              : JSON.stringify({ ...valid, prevResult });
          for (const attempt of ['first', 'again']) {
            const del = plugin(text, cniEnvironment('DEL'));
            expect({ attempt, status: del.status, stdout: del.stdout }).toEqual({ attempt, status: 0, stdout: '' });
          }
          expect(JSON.stringify(fingerprint(pod))).toBe(podAsMade);
          expect(directoryListing(join(stateDirectory, 'fuzz1'))).toEqual(['(ENOENT)']);
        } finally {
          plugin(JSON.stringify(valid), cniEnvironment('DEL'));
        }
      }),
      fuzzParameters(36, 8),
    );
  });
});

function damagedConfig(text: string, how: string, at: number): Buffer {
  return damagedBytes(text, how, at, {
    duplicateKeys: '"model":"bogus","queues":"x"',
    nul: ['fuzznet', 'fuzz\\u0000net'],
  });
}
