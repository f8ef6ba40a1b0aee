/** Subscribing to one of vcnet's tracing channels with only the events a subscriber cares about. */
import type { TracingChannel } from 'node:diagnostics_channel';

type Handlers<Event extends object> = {
  start?: (event: Event) => void;
  end?: (event: Event & { error?: unknown; result?: unknown }) => void;
  asyncStart?: (event: Event & { error?: unknown; result?: unknown }) => void;
  asyncEnd?: (event: Event & { error?: unknown; result?: unknown }) => void;
  error?: (event: Event & { error: unknown }) => void;
};

const ignore = (): void => undefined;

/** Subscribes `handlers` to `operation`; returns the function that unsubscribes them. */
export function subscribeTracing<Event extends object>(
  operation: TracingChannel<unknown, Event>,
  handlers: Handlers<Event>,
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
