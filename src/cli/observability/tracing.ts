/**
 * OpenTelemetry spans from the library's tracing channels (src/diagnostics.ts): a span per scan,
 * attach, endpoint attach, hot-plug, detach and netlink batch, named after the channel
 * (`vcnet:netlink:batch` → `vcnet.netlink.batch`), its event's fields as `vcnet.*` attributes, nested
 * as the calls are (an AsyncLocalStorage bound to each channel's start carries the parent span), under
 * the command's root span when there is one (exporter.ts: the active OpenTelemetry context). A failed
 * span carries the deciding VCNET_* code (errorAttributes).
 * Only the CLI and the CNI plugin load this, and only when OTEL_* asks for export (exporter.ts).
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import {
  type Attributes,
  type AttributeValue,
  context,
  type Span,
  SpanStatusCode,
  type Tracer,
  trace,
} from '@opentelemetry/api';
import { DiagnosticsChannel, type DiagnosticsTracingChannel, tracing } from '../../diagnostics.js';
import { classifyError, VcnetError } from '../../errors.js';
import { subscribeTracing } from './subscribe.js';

/**
 * A failure's codes as span attributes: `vcnet.error.code` is the deciding one (classifyError follows
 * `cause`: a name taken inside an attach is VCNET_LINK_NAME_TAKEN), `vcnet.error.outerCode` the
 * failed operation's when it differs (VCNET_ATTACH_FAILED).
 */
function errorAttributes(error: unknown): Attributes {
  const code = classifyError(error).code;
  const outer = error instanceof VcnetError ? error.code : undefined;
  return {
    'vcnet.error.code': code,
    ...(outer !== undefined && outer !== code ? { 'vcnet.error.outerCode': outer } : {}),
  };
}

/** Marks `span` failed with `error`: the exception, the codes, and an ERROR status naming the deciding code. */
export function recordFailure(span: Span, error: unknown): void {
  const failure = error instanceof Error ? error : new Error(String(error));
  const attributes = errorAttributes(error);
  span.recordException(failure);
  span.setAttributes(attributes);
  span.setStatus({ code: SpanStatusCode.ERROR, message: `${attributes['vcnet.error.code']}: ${failure.message}` });
}

function attributesOf(event: object): Attributes {
  const attributes: Attributes = {};
  for (const [key, value] of Object.entries(event)) {
    if (key === 'result' || key === 'error' || value === undefined) continue;
    const usable =
      typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean'
        ? value
        : Array.isArray(value) && value.every((item) => typeof item === 'string')
          ? (value as string[])
          : undefined;
    if (usable !== undefined) attributes[`vcnet.${key}`] = usable as AttributeValue;
  }
  return attributes;
}

/** Subscribes `tracer` to vcnet's tracing channels; returns the function that unsubscribes it. */
export function subscribeSpans(tracer: Tracer): () => void {
  const currentSpan = new AsyncLocalStorage<Span>();
  const spans = new WeakMap<object, Span>();
  const unsubscribers: Array<() => void> = [];
  for (const key of Object.keys(tracing) as Array<keyof typeof tracing>) {
    // Every channel is handled alike: seen as carrying plain objects.
    const operation = tracing[key] as DiagnosticsTracingChannel<object>;
    const spanName = DiagnosticsChannel[key].replaceAll(':', '.');
    operation.start.bindStore(currentSpan, (event) => {
      const parent = currentSpan.getStore();
      const span = tracer.startSpan(
        spanName,
        { attributes: attributesOf(event) },
        parent ? trace.setSpan(context.active(), parent) : context.active(),
      );
      spans.set(event, span);
      return span;
    });
    unsubscribers.push(
      () => operation.start.unbindStore(currentSpan),
      subscribeTracing(operation, {
        error: (event) => {
          const span = spans.get(event);
          if (span) recordFailure(span, event.error);
        },
        asyncEnd: (event) => {
          spans.get(event)?.end();
          spans.delete(event);
        },
      }),
    );
  }
  return () => {
    for (const unsubscribe of unsubscribers) unsubscribe();
  };
}
