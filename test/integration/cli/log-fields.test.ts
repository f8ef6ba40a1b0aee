/**
 * Every log line of the built `vcnet` and `vcnet-cni` carries operation, sandbox, netns and endpoint
 * (null where the line is about none; docs/diagnostics.md), and spans of OpenTelemetry's console
 * exporter go to stderr: stdout stays the command's --json output and the CNI result.
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { stateDirectoryPerTest, vcnet, vcnetAsync } from '../../helpers/cli.js';
import { cniVariables, VCNET_CNI_PROGRAM, vcnetCniAlone } from '../../helpers/cni.js';
import type { TestNamespace } from '../../helpers/namespace.js';
import { makePod } from '../../helpers/pod.js';
import { until } from '../../helpers/until.js';

const stateDirectory = stateDirectoryPerTest('vcnet-log-fields-');
const KEYS = ['operation', 'sandbox', 'netns', 'endpoint'];
const DEBUG_JSON = ['--log-level', 'debug', '--log-format', 'json'];

type Line = Record<string, unknown>;

/** stderr's JSON log lines; any other line fails the test (a warning printed as text, say). */
function logLines(stderr: string): Line[] {
  const lines = stderr
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as Line);
  expect(lines.length).toBeGreaterThan(0);
  for (const line of lines) expect(Object.keys(line), String(line.msg)).toEqual(expect.arrayContaining(KEYS));
  return lines;
}

function cni(pod: TestNamespace, command: 'ADD' | 'DEL', env: Record<string, string>) {
  const config = vcnetCniAlone({
    name: 'log-fields',
    namespacePath: pod.path,
    settings: { stateDir: stateDirectory() },
  });
  const result = spawnSync(process.execPath, [VCNET_CNI_PROGRAM], {
    input: JSON.stringify(config),
    encoding: 'utf8',
    env: {
      ...process.env,
      ...cniVariables(command, { containerId: 'logfields-ctr', namespacePath: pod.path }),
      ...env,
    },
  });
  return { status: result.status ?? -1, stdout: result.stdout, stderr: result.stderr };
}

describe('log lines', () => {
  it('of attach, detach and scan each carry operation, sandbox, netns and endpoint', () => {
    const { pod } = makePod();
    // A second route to a destination: attach warns that the guest gets only one.
    pod.exec('ip', ['route', 'add', '10.100.0.0/16', 'via', '10.200.0.1', 'metric', '50']);
    const attached = vcnet([
      ...DEBUG_JSON,
      'attach',
      '--sandbox',
      'lf',
      '--netns',
      pod.path,
      '--state-dir',
      stateDirectory(),
      '--json',
    ]);
    expect(attached.status, attached.stderr).toBe(0);
    expect(() => JSON.parse(attached.stdout)).not.toThrow();
    const attachLines = logLines(attached.stderr);
    for (const line of attachLines) {
      expect(line.sandbox, String(line.msg)).toBe('lf');
      expect(line.netns, String(line.msg)).toBe(pod.path);
      expect(line.operation, String(line.msg)).toBe('attach');
    }
    const messages = attachLines.map((line) => String(line.msg));
    expect(messages).toEqual(
      expect.arrayContaining([
        'netlink batch',
        'namespace scanned',
        'endpoint attached',
        expect.stringMatching(/^vhost-net off for the QEMU NICs/),
        expect.stringMatching(/^the guest gets one route per destination/),
      ]),
    );
    for (const line of attachLines)
      expect(line.endpoint, String(line.msg)).toBe(line.msg === 'endpoint attached' ? 'eth0' : null);

    const detached = vcnet([...DEBUG_JSON, 'detach', '--sandbox', 'lf', '--state-dir', stateDirectory(), '--json']);
    expect(detached.status, detached.stderr).toBe(0);
    expect(() => JSON.parse(detached.stdout)).not.toThrow();
    const detachLines = logLines(detached.stderr);
    for (const line of detachLines) {
      expect(line).toMatchObject({ operation: 'detach', sandbox: 'lf', netns: pod.path });
      expect(line.endpoint, String(line.msg)).toBe(line.msg === 'endpoints detached' ? 'eth0' : null);
    }
    expect(detachLines.map((line) => line.msg)).toContain('endpoints detached');

    const scanned = vcnet([...DEBUG_JSON, 'scan', '--netns', pod.path, '--json']);
    expect(scanned.status, scanned.stderr).toBe(0);
    for (const line of logLines(scanned.stderr))
      expect(line).toMatchObject({ operation: 'scan', sandbox: null, netns: pod.path, endpoint: null });
  });

  it('of vcnet-cni ADD and DEL carry the CNI command, container id, CNI_NETNS and the interface', () => {
    const { pod } = makePod();
    for (const command of ['ADD', 'DEL'] as const) {
      const run = cni(pod, command, { VCNET_LOG_LEVEL: 'debug' });
      expect(run.status, run.stderr).toBe(0);
      for (const line of logLines(run.stderr))
        expect(line, String(line.msg)).toMatchObject({
          operation: command,
          sandbox: 'logfields-ctr',
          netns: pod.path,
          endpoint: 'eth0',
        });
    }
  });
});

describe('spans of the console exporter', () => {
  it('go to stderr: attach --json prints only its JSON on stdout, vcnet-cni only its CNI result', () => {
    const { pod } = makePod();
    const consoleSpans = { OTEL_TRACES_EXPORTER: 'console' };
    const attached = vcnet(
      ['attach', '--sandbox', 'lfo', '--netns', pod.path, '--state-dir', stateDirectory(), '--json'],
      consoleSpans,
    );
    expect(attached.status, attached.stderr).toBe(0);
    expect(JSON.parse(attached.stdout)).toMatchObject({ sandbox: 'lfo' });
    expect(attached.stderr).toContain("name: 'vcnet.cli.attach'");
    expect(vcnet(['detach', '--sandbox', 'lfo', '--state-dir', stateDirectory()]).status).toBe(0);

    const added = cni(pod, 'ADD', consoleSpans);
    expect(added.status, added.stderr).toBe(0);
    const result = JSON.parse(added.stdout) as { interfaces: Array<{ name: string }> };
    expect(result.interfaces.map((link) => link.name)).toContain('tap0_kata');
    expect(added.stderr).toContain('traceId');
    const deleted = cni(pod, 'DEL', consoleSpans);
    expect(deleted.status, deleted.stderr).toBe(0);
    expect(deleted.stdout).toBe('');
  });
});

describe('vcnet detach log lines', () => {
  it("name the namespace the sandbox's record names, a notice's too (detach takes no --netns)", () => {
    const { pod } = makePod();
    const state = ['--state-dir', stateDirectory()];
    expect(vcnet(['attach', '--sandbox', 'ln', '--netns', pod.path, ...state]).status).toBe(0);
    // A tap renamed since attach: detach deletes it under its new name, and says so in a notice.
    pod.exec('ip', ['link', 'set', 'tap0_kata', 'name', 'renamed0']);
    const detached = vcnet([...DEBUG_JSON, 'detach', '--sandbox', 'ln', ...state]);
    expect(detached.status, detached.stderr).toBe(0);
    const lines = logLines(detached.stderr);
    const notice = lines.find((line) => String(line.msg).includes('was renamed renamed0'));
    expect(notice, detached.stderr).toMatchObject({ operation: 'detach', sandbox: 'ln', netns: pod.path });
    for (const line of lines) expect(line.netns, String(line.msg)).toBe(pod.path);
  });
});

describe('vcnet watch log lines', () => {
  it("name the namespace the sandbox's record names (watch takes no --netns)", async () => {
    const { pod, node } = makePod();
    const state = ['--state-dir', stateDirectory()];
    expect(vcnet(['attach', '--sandbox', 'lw', '--netns', pod.path, ...state]).status).toBe(0);
    const watch = vcnetAsync([...DEBUG_JSON, 'watch', '--sandbox', 'lw', '--debounce', '100', ...state]);
    try {
      await until(() => watch.output().stderr.includes('watching sandbox lw'), 'watch to start', 15_000);
      node.exec('ip', ['link', 'add', 'peth6', 'type', 'veth', 'peer', 'name', 'eth6', 'netns', pod.name]);
      pod.exec('ip', ['addr', 'add', '10.66.0.2/24', 'dev', 'eth6']);
      pod.exec('ip', ['link', 'set', 'eth6', 'up']);
      await until(() => watch.output().stdout.includes('"added":["eth6"]'), 'watch to attach eth6', 15_000);
    } finally {
      watch.child.kill('SIGTERM');
      await watch.done;
    }
    // Its plain lines ("vcnet: watching ...") are not log lines.
    const lines = watch
      .output()
      .stderr.split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as Line);
    const applied = lines.find((line) => line.msg === 'namespace change applied');
    expect(applied).toMatchObject({ operation: 'watch', sandbox: 'lw', netns: pod.path, endpoint: null });
    for (const line of lines) {
      expect(Object.keys(line), String(line.msg)).toEqual(expect.arrayContaining(KEYS));
      expect(line.netns, String(line.msg)).not.toBeNull();
    }
    expect(vcnet(['detach', '--sandbox', 'lw', ...state]).status).toBe(0);
  }, 60_000);
});
