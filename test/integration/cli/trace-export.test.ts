/**
 * Span export from the built `vcnet` and `vcnet-cni` with the real OpenTelemetry SDK (a dev
 * dependency) to a real OTLP/HTTP receiver on 127.0.0.1 of a test namespace, the programs run in
 * the same namespace: a collector that is down, refuses the spans or never answers costs one warning
 * line and a bounded wait, never the command's outcome or its stdout.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { collectOutput } from '../../helpers/child-output.js';
import { CLI, pauseAtStep, stateDirectoryPerTest } from '../../helpers/cli.js';
import { cniVariables, VCNET_CNI_PROGRAM, vcnetCniAlone } from '../../helpers/cni.js';
import { makeNamespace, type TestNamespace } from '../../helpers/namespace.js';
import { type ReceivedRequest, startOtlpReceiver } from '../../helpers/otlp-receiver.js';
import { makePod } from '../../helpers/pod.js';

const stateDirectory = stateDirectoryPerTest('vcnet-otel-');

interface Run {
  status: number;
  stdout: string;
  stderr: string;
}

/** Runs a node program inside `namespace` (where the receiver listens), without blocking the worker. */
function runIn(
  namespace: TestNamespace,
  program: string,
  args: string[],
  env: Record<string, string>,
  input = '',
  onStderr: (stderr: string) => void = () => undefined,
): Promise<Run> {
  const child = spawn('ip', ['netns', 'exec', namespace.name, process.execPath, program, ...args], {
    env: { ...process.env, VCNET_STATE_REGISTRY: join(stateDirectory(), 'registry'), ...env },
  });
  child.stdin.end(input);
  return collectOutput(child, onStderr).done.then(({ status, stdout, stderr }) => ({
    status,
    stdout,
    stderr,
  }));
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
  const config = vcnetCniAlone({
    name: 'otel-test',
    namespacePath: pod.path,
    settings: { stateDir: stateDirectory() },
  });
  return { config: JSON.stringify(config), env: cniVariables(command, { containerId, namespacePath: pod.path }) };
}

describe('trace export never decides a command', () => {
  for (const collector of ['down', 'refuse-400', 'never-answer'] as const) {
    it(`vcnet attach succeeds, prints its result and one warning when the collector is ${collector}`, async () => {
      const { pod } = makePod();
      const namespace = collectorNamespace();
      const receiver = collector === 'down' ? undefined : await startOtlpReceiver(namespace, collector);
      // The receiver must have the whole request within the flush bound (it is asserted below): 1 s
      // is short for that on a loaded machine. A refusal ends the wait at once, so it gets a bound
      // it never waits out; silence waits the bound out, so it gets a short one.
      const flushSeconds = { down: '1', 'refuse-400': '30', 'never-answer': '3' }[collector];
      try {
        const run = await runIn(
          namespace,
          CLI,
          ['attach', '--netns', pod.path, '--sandbox', 'otel1', '--state-dir', stateDirectory(), '--json'],
          // The SDK's own export timeout made 10 minutes: a run that waited for it, not for
          // VCNET_TRACE_FLUSH_TIMEOUT, would outlast the test's timeout (no clock is compared: a
          // loaded machine stretches any run).
          {
            OTEL_EXPORTER_OTLP_ENDPOINT: receiver?.endpoint ?? DOWN,
            VCNET_TRACE_FLUSH_TIMEOUT: flushSeconds,
            OTEL_EXPORTER_OTLP_TIMEOUT: '600000',
          },
        );
        expect(run.status, run.stderr).toBe(0);
        expect(JSON.parse(run.stdout)).toMatchObject({ sandbox: 'otel1' });
        expect(warnings(run.stderr)).toEqual([expect.stringContaining('spans not exported')]);
        // A collector that never answers is given up on at VCNET_TRACE_FLUSH_TIMEOUT, and says so;
        // one that refuses is not waited for.
        if (collector === 'never-answer')
          expect(warnings(run.stderr)).toEqual([expect.stringContaining('did not take them within 3 s')]);
        if (collector === 'refuse-400')
          expect(warnings(run.stderr)).toEqual([expect.not.stringContaining('did not take them')]);
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
        const added = await runIn(namespace, VCNET_CNI_PROGRAM, [], { ...add.env, ...exportTo }, add.config);
        expect(added.status, added.stderr).toBe(0);
        const result = JSON.parse(added.stdout) as { interfaces: Array<{ name: string }> };
        expect(result.interfaces.map((link) => link.name)).toContain('tap0_kata');
        expect(warnings(added.stderr)).toEqual([expect.stringContaining('spans not exported')]);
        const del = cniAdd(pod, 'otel-cni-1', 'DEL');
        const deleted = await runIn(namespace, VCNET_CNI_PROGRAM, [], { ...del.env, ...exportTo }, del.config);
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

describe("OpenTelemetry's diagnostics (OTEL_LOG_LEVEL) go to stderr", () => {
  const debugToConsole = { OTEL_TRACES_EXPORTER: 'console', OTEL_LOG_LEVEL: 'debug', VCNET_TRACE_FLUSH_TIMEOUT: '1' };

  it('vcnet attach --json and vcnet-cni ADD print only their JSON on stdout', async () => {
    const { pod } = makePod();
    const namespace = collectorNamespace();
    const attach = await runIn(
      namespace,
      CLI,
      ['attach', '--netns', pod.path, '--sandbox', 'otel-diag', '--state-dir', stateDirectory(), '--json'],
      debugToConsole,
    );
    expect(attach.status, attach.stderr).toBe(0);
    expect(JSON.parse(attach.stdout)).toMatchObject({ sandbox: 'otel-diag' });
    // The SDK's debug lines were printed, on stderr.
    expect(attach.stderr).toContain('Registered a global for diag');
    const detach = await runIn(
      namespace,
      CLI,
      ['detach', '--sandbox', 'otel-diag', '--state-dir', stateDirectory()],
      {},
    );
    expect(detach.status, detach.stderr).toBe(0);

    const add = cniAdd(pod, 'otel-diag-1', 'ADD');
    const added = await runIn(namespace, VCNET_CNI_PROGRAM, [], { ...add.env, ...debugToConsole }, add.config);
    expect(added.status, added.stderr).toBe(0);
    expect(JSON.parse(added.stdout)).toHaveProperty('interfaces');
    expect(added.stderr).toContain('Registered a global for diag');
    const del = cniAdd(pod, 'otel-diag-1', 'DEL');
    expect((await runIn(namespace, VCNET_CNI_PROGRAM, [], del.env, del.config)).status).toBe(0);
  });
});

interface ExportedSpan {
  name: string;
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  attributes: Record<string, unknown>;
  status?: { code?: number; message?: string };
}

/** The spans of OTLP/JSON trace requests, attributes as a plain object. */
function spansOf(requests: ReceivedRequest[]): ExportedSpan[] {
  type Attribute = { key: string; value: Record<string, unknown> };
  type Body = { resourceSpans?: Array<{ scopeSpans?: Array<{ spans?: Array<Record<string, unknown>> }> }> };
  return requests.flatMap((request) =>
    ((request.body as Body).resourceSpans ?? []).flatMap((resource) =>
      (resource.scopeSpans ?? []).flatMap((scope) =>
        (scope.spans ?? []).map((span) => ({
          ...(span as unknown as ExportedSpan),
          attributes: Object.fromEntries(
            ((span.attributes ?? []) as Attribute[]).map(({ key, value }) => [key, Object.values(value)[0]]),
          ),
        })),
      ),
    ),
  );
}

/** Asserts `spans` form one trace under one root, and returns the root. */
function oneTree(spans: ExportedSpan[]): ExportedSpan {
  expect(new Set(spans.map((span) => span.traceId)).size).toBe(1);
  const roots = spans.filter((span) => !span.parentSpanId);
  expect(roots.map((span) => span.name)).toHaveLength(1);
  const ids = new Set(spans.map((span) => span.spanId));
  for (const span of spans.filter((candidate) => candidate.parentSpanId))
    expect(ids.has(span.parentSpanId!), `${span.name}'s parent is exported`).toBe(true);
  return roots[0]!;
}

describe('one trace per command', () => {
  const exportJson = (endpoint: string) => ({
    OTEL_EXPORTER_OTLP_ENDPOINT: endpoint,
    OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
  });

  it('a vcnet-cni ADD is one trace under vcnet.cni.add, with the container id, ifname and netns', async () => {
    const { pod } = makePod();
    const namespace = collectorNamespace();
    const receiver = await startOtlpReceiver(namespace, 'ok');
    try {
      const add = cniAdd(pod, 'otel-cni-2', 'ADD');
      const added = await runIn(
        namespace,
        VCNET_CNI_PROGRAM,
        [],
        { ...add.env, ...exportJson(receiver.endpoint) },
        add.config,
      );
      expect(added.status, added.stderr).toBe(0);
      expect(warnings(added.stderr)).toEqual([]);
      const spans = spansOf(receiver.requests());
      const root = oneTree(spans);
      expect(root).toMatchObject({
        name: 'vcnet.cni.add',
        attributes: {
          'vcnet.cni.command': 'ADD',
          'vcnet.cni.containerId': 'otel-cni-2',
          'vcnet.cni.ifname': 'eth0',
          'vcnet.cni.netns': pod.path,
        },
      });
      expect(new Set(spans.map((span) => span.name))).toEqual(
        new Set(['vcnet.cni.add', 'vcnet.scan', 'vcnet.attach', 'vcnet.attach.endpoint', 'vcnet.netlink.batch']),
      );
      const del = cniAdd(pod, 'otel-cni-2', 'DEL');
      const deleted = await runIn(namespace, VCNET_CNI_PROGRAM, [], del.env, del.config);
      expect(deleted.status, deleted.stderr).toBe(0);
    } finally {
      await receiver.stop();
    }
  });

  it('a failed vcnet-cni ADD marks its root span and the failed span with the deciding VCNET_* code', async () => {
    const { pod } = makePod();
    const namespace = collectorNamespace();
    const receiver = await startOtlpReceiver(namespace, 'ok');
    try {
      const add = cniAdd(pod, 'otel-cni-3', 'ADD');
      // Someone makes tap0_kata while the ADD, which planned that name, waits before its first step:
      // the attach fails (VCNET_ATTACH_FAILED) because the name is taken (VCNET_LINK_NAME_TAKEN, the
      // deciding code).
      let madeTap = false;
      const added = await runIn(
        namespace,
        VCNET_CNI_PROGRAM,
        [],
        { ...add.env, ...exportJson(receiver.endpoint), ...pauseAtStep(0, 3000) },
        add.config,
        (stderr) => {
          if (madeTap || !stderr.includes('paused at step 0')) return;
          madeTap = true;
          pod.exec('ip', ['tuntap', 'add', 'tap0_kata', 'mode', 'tap']);
        },
      );
      expect(madeTap, added.stderr).toBe(true);
      expect(added.status).toBe(1);
      const reply = JSON.parse(added.stdout) as { details: string };
      const decided = /^VCNET_[A-Z_]+/.exec(reply.details)?.[0];
      expect(decided).toBe('VCNET_LINK_NAME_TAKEN');
      const spans = spansOf(receiver.requests());
      const root = oneTree(spans);
      expect(root).toMatchObject({
        name: 'vcnet.cni.add',
        attributes: { 'vcnet.error.code': decided },
        status: { code: 2, message: expect.stringMatching(/^VCNET_LINK_NAME_TAKEN: /) },
      });
      const attach = spans.find((span) => span.name === 'vcnet.attach');
      expect(attach).toMatchObject({
        attributes: { 'vcnet.error.code': decided, 'vcnet.error.outerCode': expect.stringMatching(/^VCNET_/) },
        status: { code: 2 },
      });
    } finally {
      await receiver.stop();
    }
  });

  it('a vcnet command is one trace under vcnet.cli.<command>', async () => {
    const { pod } = makePod();
    const namespace = collectorNamespace();
    const receiver = await startOtlpReceiver(namespace, 'ok');
    try {
      const run = await runIn(
        namespace,
        CLI,
        ['attach', '--netns', pod.path, '--sandbox', 'otel2', '--state-dir', stateDirectory()],
        exportJson(receiver.endpoint),
      );
      expect(run.status, run.stderr).toBe(0);
      const spans = spansOf(receiver.requests());
      expect(oneTree(spans).name).toBe('vcnet.cli.attach');
      expect(spans.map((span) => span.name)).toContain('vcnet.attach');
      const detach = await runIn(namespace, CLI, ['detach', '--sandbox', 'otel2', '--state-dir', stateDirectory()], {});
      expect(detach.status, detach.stderr).toBe(0);
    } finally {
      await receiver.stop();
    }
  });
});
