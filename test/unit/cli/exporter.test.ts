import { readFileSync } from 'node:fs';
import { trace } from '@opentelemetry/api';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { tracingRequested } from '../../../src/cli/observability/environment.js';
import {
  boundedFlush,
  consoleToStderr,
  flushTimeoutMs,
  tracerProviderRegistered,
} from '../../../src/cli/observability/exporter.js';

describe('trace export', () => {
  afterEach(() => {
    vi.restoreAllMocks();
    trace.disable();
  });

  it('is off unless the standard OTEL_* variables ask for it', () => {
    expect(tracingRequested({})).toBe(false);
    expect(tracingRequested({ OTEL_TRACES_EXPORTER: 'none' })).toBe(false);
    expect(tracingRequested({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318' })).toBe(true);
    expect(tracingRequested({ OTEL_TRACES_EXPORTER: 'otlp' })).toBe(true);
  });

  it('flushes within the deadline: a failure or a hang is one warning line, never a rejection', async () => {
    const stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    await expect(boundedFlush(async () => undefined, 1000)).resolves.toBe('flushed');
    expect(stderr).not.toHaveBeenCalled();
    await expect(boundedFlush(() => Promise.reject(new Error('Bad Request')), 1000)).resolves.toBe('failed');
    expect(stderr).toHaveBeenLastCalledWith('vcnet: warning: spans not exported: Bad Request\n');
    // A flush that never settles: only the 50 ms bound can end this wait (else the test's timeout would).
    await expect(boundedFlush(() => new Promise(() => undefined), 50)).resolves.toBe('timed-out');
    expect(String(stderr.mock.lastCall?.[0])).toContain('within 0.05 s (VCNET_TRACE_FLUSH_TIMEOUT');
    expect(stderr).toHaveBeenCalledTimes(2);
  });

  it('reads the flush deadline from VCNET_TRACE_FLUSH_TIMEOUT; a bad value is warned about and 2 s used', () => {
    const stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    expect(flushTimeoutMs({})).toBe(2000);
    expect(flushTimeoutMs({ VCNET_TRACE_FLUSH_TIMEOUT: '0.5' })).toBe(500);
    expect(stderr).not.toHaveBeenCalled();
    expect(flushTimeoutMs({ VCNET_TRACE_FLUSH_TIMEOUT: 'soon' })).toBe(2000);
    expect(stderr).toHaveBeenCalledWith(
      'vcnet: warning: VCNET_TRACE_FLUSH_TIMEOUT is "soon", not seconds from 0 to 60 written as decimal digits: using 2\n',
    );
  });

  it('reads VCNET_TRACE_FLUSH_TIMEOUT as decimal seconds, as the CLI reads them: 0x10, 1e1 are warned about', () => {
    const stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    expect(flushTimeoutMs({ VCNET_TRACE_FLUSH_TIMEOUT: '0' })).toBe(0);
    expect(flushTimeoutMs({ VCNET_TRACE_FLUSH_TIMEOUT: '.25' })).toBe(250);
    expect(flushTimeoutMs({ VCNET_TRACE_FLUSH_TIMEOUT: '60' })).toBe(60_000);
    expect(stderr).not.toHaveBeenCalled();
    for (const text of ['0x10', '1e1', ' 3', '-1', '61', 'Infinity', '0b1']) {
      stderr.mockClear();
      expect(flushTimeoutMs({ VCNET_TRACE_FLUSH_TIMEOUT: text }), text).toBe(2000);
      expect(stderr).toHaveBeenCalledWith(
        `vcnet: warning: VCNET_TRACE_FLUSH_TIMEOUT is ${JSON.stringify(text)}, not seconds from 0 to 60 written as decimal digits: using 2\n`,
      );
    }
  });

  it('sends console output to stderr while the SDK runs, and puts the console back', () => {
    const original = globalThis.console;
    const stdout = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
    const stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    const restore = consoleToStderr();
    try {
      // What the SDK's ConsoleSpanExporter and its diagnostic logger call.
      console.dir({ traceId: 'abc' }, { depth: 3 });
      console.log('span');
      console.info('diag');
    } finally {
      restore();
    }
    expect(globalThis.console).toBe(original);
    expect(stdout).not.toHaveBeenCalled();
    expect(stderr.mock.calls.map(([text]) => String(text)).join('')).toContain("traceId: 'abc'");
  });

  it("knows whether an SDK registered a tracer provider with vcnet's copy of the API", () => {
    expect(tracerProviderRegistered()).toBe(false);
    const provider = { getTracer: () => trace.getTracer('unused') };
    trace.setGlobalTracerProvider(provider);
    expect(tracerProviderRegistered()).toBe(true);
  });

  it('sees no provider that an SDK registered through an older copy of the API (which a newer one ignores)', () => {
    // What @opentelemetry/api 1.9.1's registerGlobal leaves when an SDK nested with it starts.
    const key = Symbol.for('opentelemetry.js.api.1');
    const global = globalThis as Record<symbol, unknown>;
    global[key] = { version: '1.9.1', trace: { getTracer: () => trace.getTracer('unused') } };
    try {
      expect(tracerProviderRegistered()).toBe(false);
    } finally {
      delete global[key];
    }
  });
});

/** [lowest, first excluded] of a `^x.y.z` or `>=a.b.c <d.e.f` range, versions as comparable numbers. */
function bounds(range: string): [number, number] {
  const number = (version: string) => version.split('.').reduce((total, part) => total * 1000 + Number(part), 0);
  const caret = /^\^(\d+)\.(\d+\.\d+)$/.exec(range);
  if (caret) return [number(`${caret[1]}.${caret[2]}`), number(`${Number(caret[1]) + 1}.0.0`)];
  const between = /^>=(\S+) <(\S+)$/.exec(range);
  if (between) return [number(between[1]!), number(between[2]!)];
  throw new Error(`a range this test does not read: ${range}`);
}

describe('the @opentelemetry/api range', () => {
  const root = new URL('../../../', import.meta.url).pathname;
  // An optional peer dependency: the SDK a user installs brings the API, and vcnet uses that copy.
  const ours = (JSON.parse(readFileSync(`${root}package.json`, 'utf8')) as { peerDependencies: Record<string, string> })
    .peerDependencies['@opentelemetry/api']!;
  const meets = (peer: string) => {
    const [low, high] = bounds(ours);
    const [peerLow, peerHigh] = bounds(peer);
    return low < peerHigh && peerLow < high;
  };

  it("meets every @opentelemetry/sdk-node's peer range, so npm keeps one copy that both use", () => {
    // sdk-node 0.200 to 0.223 (>=1.3.0 <1.10.0) and the one installed here (0.300 on: >=1.10.0 <1.11.0).
    expect(meets('>=1.3.0 <1.10.0')).toBe(true);
    const installed = JSON.parse(readFileSync(`${root}node_modules/@opentelemetry/sdk-node/package.json`, 'utf8')) as {
      peerDependencies: Record<string, string>;
    };
    expect(meets(installed.peerDependencies['@opentelemetry/api']!)).toBe(true);
  });
});
