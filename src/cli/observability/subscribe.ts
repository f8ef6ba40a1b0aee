/** Subscribing to one of vcnet's tracing channels with only the events a subscriber cares about. */
import type { DiagnosticsTracingChannel, TracingHandlers } from '../../diagnostics.js';

const ignore = (): void => undefined;

/** Subscribes `handlers` to `operation`; returns the function that unsubscribes them. */
export function subscribeTracing<Event extends object>(
  operation: DiagnosticsTracingChannel<Event>,
  handlers: TracingHandlers<Event>,
): () => void {
  const complete = {
    start: handlers.start ?? ignore,
    end: handlers.end ?? ignore,
    asyncStart: handlers.asyncStart ?? ignore,
    asyncEnd: handlers.asyncEnd ?? ignore,
    error: handlers.error ?? ignore,
  };
  operation.subscribe(complete);
  return () => {
    operation.unsubscribe(complete);
  };
}
