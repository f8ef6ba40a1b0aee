/**
 * Turns the library's diagnostics channel events (src/diagnostics.ts) into log lines. It subscribes
 * only to what the logger's level will print: at the default level (warn) that is the notices (a
 * watch that could not apply a change); the endpoint attaches from info, scans and netlink batches
 * from debug; at silent, nothing.
 *
 * A line from an event gives what the event knows of the four keys every line carries (logger.ts
 * bindLogContext): its endpoint and namespace, and its sandbox and operation for a program that
 * bound none; the rest comes from the program's bound context (the command, the CNI call). A line
 * about several endpoints (a detach of more than one, a watch change) says `endpoint: null`.
 */
import type { Logger } from 'pino';
import { channels, type EndpointEvent, type NoticeEvent, tracing, type WatchEvent } from '../../diagnostics.js';
import { classifyError } from '../../errors.js';
import { subscribeTracing } from './subscribe.js';

/**
 * An error as a log line carries it: its code and message (the message names each cause) below
 * debug, the full error with stack and cause chain from debug (docs/diagnostics.md says so).
 */
export function errorLogFields(log: Logger, error: unknown): Record<string, unknown> {
  if (log.isLevelEnabled('debug')) return { err: error };
  return { error: { code: classifyError(error).code, message: (error as Error)?.message ?? String(error) } };
}

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

  const endpointOperations = [
    [tracing.attachEndpoint, false],
    [tracing.hotplug, true],
  ] as const;
  if (log.isLevelEnabled('warn')) {
    const onNotice = (message: unknown): void => {
      const { message: text, error, details, handled, ...fields } = message as NoticeEvent;
      // The command was given it too (watch's onError, configure-guest's warn) and reports it itself.
      if (handled) return;
      log.warn(
        {
          ...fields,
          // '' (a notice about the attach as a whole) and a list of names are about no one endpoint.
          endpoint: fields.endpoint && !fields.endpoint.includes(',') ? fields.endpoint : null,
          ...(fields.endpoint?.includes(',') ? { endpoints: fields.endpoint.split(',') } : {}),
          ...details,
          ...(error ? errorLogFields(log, error) : {}),
        },
        text,
      );
    };
    channels.notice.subscribe(onNotice);
    unsubscribers.push(() => channels.notice.unsubscribe(onNotice));
  }
  for (const [operation, hotplug] of log.isLevelEnabled('info') ? endpointOperations : []) {
    const fields = (event: EndpointEvent) => ({
      sandbox: event.sandbox,
      netns: event.namespacePath,
      operation: hotplug ? 'hot-attach' : 'attach',
      endpoint: event.endpoint,
      type: event.endpointType,
    });
    unsubscribers.push(
      subscribeTracing(operation, {
        // The command reports the failure itself (and watch through a notice): here only for debugging.
        ...(log.isLevelEnabled('debug')
          ? {
              error: (event: EndpointEvent & { error?: unknown }) =>
                log.debug({ ...fields(event), err: event.error }, 'endpoint attach failed'),
            }
          : {}),
        ...(log.isLevelEnabled('info')
          ? {
              start: markStart,
              asyncEnd: (event: EndpointEvent & { error?: unknown; result?: unknown }) => {
                if ('error' in event) return;
                log.info(
                  { ...fields(event), tap: event.result, durationMs: milliseconds(startedAt.get(event)) },
                  'endpoint attached',
                );
              },
            }
          : {}),
      }),
    );
  }

  if (log.isLevelEnabled('info')) {
    unsubscribers.push(
      subscribeTracing(tracing.detach, {
        asyncEnd: (event) => {
          const report = event.result as
            | { undone?: number; alreadyGone?: number; kept?: number; failures?: unknown[]; stillPlugged?: unknown[] }
            | undefined;
          log.info(
            {
              sandbox: event.sandbox,
              netns: event.namespacePath,
              operation: 'detach',
              endpoint: event.endpoints.length === 1 ? event.endpoints[0] : null,
              endpoints: event.endpoints,
              undone: report?.undone,
              alreadyGone: report?.alreadyGone,
              kept: report?.kept,
              failures: report?.failures?.length,
              // NICs the VM kept: their plumbing stays, which is a failure of the detach too.
              ...(report?.stillPlugged?.length ? { stillPlugged: report.stillPlugged.length } : {}),
              ...('error' in event ? { err: event.error } : {}),
            },
            'endpoints detached',
          );
        },
      }),
    );
    const onWatch = (message: unknown): void => {
      const { sandbox, ...summary } = message as WatchEvent;
      log.info({ sandbox, operation: 'watch', endpoint: null, ...summary }, 'namespace change applied');
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
              // Undefined: the batch went to the namespace vcnet runs in, not the command's.
              netns: event.namespacePath ?? null,
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
