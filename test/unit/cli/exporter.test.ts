import { describe, expect, it } from 'vitest';
import { startTraceExport, tracingRequested } from '../../../src/cli/observability/exporter.js';

describe('trace export', () => {
  it('is off unless the standard OTEL_* variables ask for it', () => {
    expect(tracingRequested({})).toBe(false);
    expect(tracingRequested({ OTEL_TRACES_EXPORTER: 'none' })).toBe(false);
    expect(tracingRequested({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318' })).toBe(true);
    expect(tracingRequested({ OTEL_TRACES_EXPORTER: 'otlp' })).toBe(true);
  });

  it('goes on without the SDK installed, and stops cleanly', async () => {
    const stop = await startTraceExport({ OTEL_TRACES_EXPORTER: 'otlp' });
    await expect(stop()).resolves.toBeUndefined();
  });
});
