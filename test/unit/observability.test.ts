/**
 * Spans reach a tracer provider when one is registered (here an in-memory one built on the API alone),
 * and log lines carry the operation fields.
 */
import { context, type Span, type SpanOptions, type Tracer, trace } from '@opentelemetry/api';
import { afterAll, describe, expect, it } from 'vitest';
import { withSpan } from '../../src/observability/tracing.js';

describe('tracing', () => {
  const started: Array<{ name: string; attributes: unknown; ended: boolean; error?: string }> = [];
  const tracer: Tracer = {
    startSpan: (name: string, options?: SpanOptions) => {
      const record: (typeof started)[number] = { name, attributes: options?.attributes, ended: false };
      started.push(record);
      const span = trace.wrapSpanContext({ traceId: '1'.repeat(32), spanId: '2'.repeat(16), traceFlags: 1 });
      return Object.assign(span, {
        end: () => {
          record.ended = true;
        },
        recordException: (error: Error) => {
          record.error = error.message;
        },
        setStatus: () => span,
      }) as Span;
    },
    startActiveSpan: ((name: string, options: SpanOptions, fn: (span: Span) => unknown) =>
      fn(tracer.startSpan(name, options, context.active()))) as Tracer['startActiveSpan'],
  };
  trace.setGlobalTracerProvider({ getTracer: () => tracer });
  afterAll(() => trace.disable());

  it('records a span with attributes, ends it, and records the error of a failed operation', async () => {
    await withSpan('vcnet.attach', { 'vcnet.sandbox': 'sb1' }, async () => 42);
    await expect(withSpan('vcnet.detach', {}, async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    expect(started).toEqual([
      { name: 'vcnet.attach', attributes: { 'vcnet.sandbox': 'sb1' }, ended: true },
      { name: 'vcnet.detach', attributes: {}, ended: true, error: 'boom' },
    ]);
  });
});
