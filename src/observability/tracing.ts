/**
 * Tracing with the OpenTelemetry API: a span per scan, attach, detach, hot-plug and netlink batch.
 * Without a registered tracer provider (the default) every span is a no-op costing well under a
 * microsecond; an application that registers an SDK (OTLP via the standard OTEL_* variables) gets them.
 */
import { type Attributes, type Span, SpanStatusCode, trace } from '@opentelemetry/api';

const tracer = () => trace.getTracer('vcnet', '0.1.0');

/** Runs `work` inside a span named `name`; errors are recorded on the span and rethrown. */
export async function withSpan<T>(name: string, attributes: Attributes, work: (span: Span) => Promise<T>): Promise<T> {
  return tracer().startActiveSpan(name, { attributes }, async (span) => {
    try {
      return await work(span);
    } catch (error) {
      span.recordException(error as Error);
      span.setStatus({ code: SpanStatusCode.ERROR, message: (error as Error).message });
      throw error;
    } finally {
      span.end();
    }
  });
}
