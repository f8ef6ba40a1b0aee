/**
 * Turns the library's diagnostics channel events (src/diagnostics.ts) into log lines. It subscribes
 * only to what the logger's level will print, so at the default level (warn) an attach that succeeds
 * builds no event at all, and a failed one builds one.
 */
import type { Logger } from 'pino';
import { channels, type EndpointEvent, tracing, type WatchEvent } from '../../diagnostics.js';
import { subscribeTracing } from './subscribe.js';

function milliseconds(since: number | undefined): number | undefined {
  return since === undefined ? undefined : Number((performance.now() - since).toFixed(3));
}

/** Subscribes `log` to vcnet's channels; returns the function that unsubscribes it. */
export function subscribeLogs(log: Logger): () => void {
  const unsubscribers: Array<() => void> = [];
  const startedAt = new WeakMap<object, number>();
  const markStart = (event: object): void => {
    startedAt.set(event, performance.now());
  };

  for (const [operation, hotplug] of [
    [tracing.attachEndpoint, false],
    [tracing.hotplug, true],
  ] as const) {
    const fields = (event: EndpointEvent) => ({
      sandbox: event.sandbox,
      netns: event.namespacePath,
      operation: hotplug ? 'hot-attach' : 'attach',
      endpoint: event.endpoint,
      type: event.endpointType,
    });
    unsubscribers.push(
      subscribeTracing(operation, {
        ...(log.isLevelEnabled('info') ? { start: markStart } : {}),
        error: (event) => {
          if (log.isLevelEnabled('warn')) {
            log.warn({ ...fields(event), err: event.error }, 'attach failed; what it made was removed');
          }
        },
        asyncEnd: (event) => {
          if ('error' in event || !log.isLevelEnabled('info')) return;
          log.info(
            { ...fields(event), tap: event.result, durationMs: milliseconds(startedAt.get(event)) },
            'endpoint attached',
          );
        },
      }),
    );
  }

  if (log.isLevelEnabled('info')) {
    unsubscribers.push(
      subscribeTracing(tracing.detach, {
        asyncEnd: (event) => {
          const report = event.result as { undone?: number; alreadyGone?: number; failures?: unknown[] } | undefined;
          log.info(
            {
              sandbox: event.sandbox,
              netns: event.namespacePath,
              operation: 'detach',
              endpoints: event.endpoints,
              undone: report?.undone,
              alreadyGone: report?.alreadyGone,
              failures: report?.failures?.length,
              ...('error' in event ? { err: event.error } : {}),
            },
            'endpoints detached',
          );
        },
      }),
    );
    const onWatch = (message: unknown): void => {
      const { sandbox, ...summary } = message as WatchEvent;
      log.info({ sandbox, operation: 'watch', ...summary }, 'namespace change applied');
    };
    channels.watch.subscribe(onWatch);
    unsubscribers.push(() => channels.watch.unsubscribe(onWatch));
  }

  if (log.isLevelEnabled('debug')) {
    unsubscribers.push(
      subscribeTracing(tracing.scan, {
        start: markStart,
        asyncEnd: (event) =>
          log.debug(
            { netns: event.namespacePath, durationMs: milliseconds(startedAt.get(event)) },
            'namespace scanned',
          ),
      }),
      subscribeTracing(tracing.netlinkBatch, {
        start: markStart,
        asyncEnd: (event) =>
          log.debug(
            {
              netns: event.namespacePath,
              requests: event.requests,
              durationMs: milliseconds(startedAt.get(event)),
              ...('error' in event ? { err: event.error } : {}),
            },
            'netlink batch',
          ),
      }),
    );
  }

  return () => {
    for (const unsubscribe of unsubscribers) unsubscribe();
  };
}
