/**
 * Span export from the built `vcnet` and `vcnet-cni` with the real OpenTelemetry SDK (a dev
 * dependency) to a real OTLP/HTTP receiver on 127.0.0.1 of a test namespace, the programs run in
 * the same namespace: a collector that is down, refuses the spans or never answers costs one warning
 * line and a bounded wait, never the command's outcome or its stdout.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CLI, stateDirectoryPerTest } from '../../helpers/cli.js';
import { makeNamespace, type TestNamespace } from '../../helpers/namespace.js';
import { startOtlpReceiver } from '../../helpers/otlp-receiver.js';
import { makePod } from '../../helpers/pod.js';

const CNI = join(CLI, '../../cni/main.js');
const stateDirectory = stateDirectoryPerTest('vcnet-otel-');

interface Run {
  status: number;
  stdout: string;
  stderr: string;
  seconds: number;
}

/** Runs a node program inside `namespace` (where the receiver listens), without blocking the worker. */
function runIn(
  namespace: TestNamespace,
  program: string,
  args: string[],
  env: Record<string, string>,
  input = '',
): Promise<Run> {
  const started = performance.now();
  const child = spawn('ip', ['netns', 'exec', namespace.name, process.execPath, program, ...args], {
    env: { ...process.env, VCNET_STATE_REGISTRY: join(stateDirectory(), 'registry'), ...env },
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk) => {
    stdout += chunk;
  });
  child.stderr.on('data', (chunk) => {
    stderr += chunk;
  });
  child.stdin.end(input);
  return new Promise((resolve) =>
    child.on('close', (status) =>
      resolve({ status: status ?? -1, stdout, stderr, seconds: (performance.now() - started) / 1000 }),
    ),
  );
}

/** A namespace for the receiver and the programs that export to it: lo up, nothing else. */
function collectorNamespace(): TestNamespace {
  const namespace = makeNamespace('otel');
  namespace.exec('ip', ['link', 'set', 'lo', 'up']);
  return namespace;
}

/** An endpoint nobody listens on, in `namespace`: the collector is down. */
const DOWN = 'http://127.0.0.1:9';

const warnings = (stderr: string) => stderr.split('\n').filter((line) => line.startsWith('vcnet: warning:'));

function cniAdd(pod: TestNamespace, containerId: string, command: 'ADD' | 'DEL') {
  const config = {
    cniVersion: '1.0.0',
    name: 'otel-test',
    type: 'vcnet-cni',
    stateDir: stateDirectory(),
    prevResult: {
      cniVersion: '1.0.0',
      interfaces: [{ name: 'eth0', sandbox: pod.path }],
      ips: [{ address: '10.200.0.2/24', interface: 0 }],
    },
  };
  const env = {
    CNI_COMMAND: command,
    CNI_CONTAINERID: containerId,
    CNI_NETNS: pod.path,
    CNI_IFNAME: 'eth0',
    CNI_PATH: '/usr/lib/cni',
  };
  return { config: JSON.stringify(config), env };
}

describe('trace export never decides a command', () => {
  for (const collector of ['down', 'refuse-400', 'never-answer'] as const) {
    it(`vcnet attach succeeds, prints its result and one warning when the collector is ${collector}`, async () => {
      const { pod } = makePod();
      const namespace = collectorNamespace();
      const receiver = collector === 'down' ? undefined : await startOtlpReceiver(namespace, collector);
      try {
        const run = await runIn(
          namespace,
          CLI,
          ['attach', '--netns', pod.path, '--sandbox', 'otel1', '--state-dir', stateDirectory(), '--json'],
          { OTEL_EXPORTER_OTLP_ENDPOINT: receiver?.endpoint ?? DOWN, VCNET_TRACE_FLUSH_TIMEOUT: '1' },
        );
        expect(run.status, run.stderr).toBe(0);
        expect(JSON.parse(run.stdout)).toMatchObject({ sandbox: 'otel1' });
        expect(warnings(run.stderr)).toEqual([expect.stringContaining('spans not exported')]);
        // The SDK's own export timeout is 10 s; the exit waits at most VCNET_TRACE_FLUSH_TIMEOUT.
        expect(run.seconds).toBeLessThan(8);
        if (collector !== 'down') expect(receiver?.requests().length).toBeGreaterThan(0);
        const detach = await runIn(namespace, CLI, ['detach', '--sandbox', 'otel1', '--state-dir', stateDirectory()], {
          OTEL_EXPORTER_OTLP_ENDPOINT: receiver?.endpoint ?? DOWN,
          VCNET_TRACE_FLUSH_TIMEOUT: '1',
        });
        expect(detach.status, detach.stderr).toBe(0);
        expect(pod.ipJson<Array<{ ifname: string }>>('link', 'show').map((link) => link.ifname)).not.toContain(
          'tap0_kata',
        );
      } finally {
        await receiver?.stop();
      }
    });
  }

  for (const collector of ['down', 'refuse-400'] as const) {
    it(`vcnet-cni ADD prints its result and exits 0, and DEL exits 0, when the collector is ${collector}`, async () => {
      const { pod } = makePod();
      const namespace = collectorNamespace();
      const receiver = collector === 'down' ? undefined : await startOtlpReceiver(namespace, collector);
      try {
        const exportTo = { OTEL_EXPORTER_OTLP_ENDPOINT: receiver?.endpoint ?? DOWN, VCNET_TRACE_FLUSH_TIMEOUT: '1' };
        const add = cniAdd(pod, 'otel-cni-1', 'ADD');
        const added = await runIn(namespace, CNI, [], { ...add.env, ...exportTo }, add.config);
        expect(added.status, added.stderr).toBe(0);
        const result = JSON.parse(added.stdout) as { interfaces: Array<{ name: string }> };
        expect(result.interfaces.map((link) => link.name)).toContain('tap0_kata');
        expect(warnings(added.stderr)).toEqual([expect.stringContaining('spans not exported')]);
        const del = cniAdd(pod, 'otel-cni-1', 'DEL');
        const deleted = await runIn(namespace, CNI, [], { ...del.env, ...exportTo }, del.config);
        expect(deleted.status, deleted.stderr).toBe(0);
        expect(deleted.stdout).toBe('');
        expect(pod.ipJson<Array<{ ifname: string }>>('link', 'show').map((link) => link.ifname)).not.toContain(
          'tap0_kata',
        );
      } finally {
        await receiver?.stop();
      }
    });
  }
});
