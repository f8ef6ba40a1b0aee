import { trace } from '@opentelemetry/api';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  boundedFlush,
  flushTimeoutMs,
  tracerProviderRegistered,
  tracingRequested,
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
    const started = performance.now();
    await expect(boundedFlush(() => new Promise(() => undefined), 50)).resolves.toBe('timed-out');
    expect(performance.now() - started).toBeLessThan(1000);
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
      'vcnet: warning: VCNET_TRACE_FLUSH_TIMEOUT is "soon", not seconds from 0 to 60: using 2\n',
    );
  });

  it("knows whether an SDK registered a tracer provider with vcnet's copy of the API", () => {
    expect(tracerProviderRegistered()).toBe(false);
    const provider = { getTracer: () => trace.getTracer('unused') };
    trace.setGlobalTracerProvider(provider);
    expect(tracerProviderRegistered()).toBe(true);
  });
});
