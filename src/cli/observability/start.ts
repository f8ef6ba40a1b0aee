/**
 * What the vcnet-cni plugin observes, decided from its environment alone (a runtime passes no flags):
 * log lines on stderr when VCNET_LOG_LEVEL asks for them, spans when OTEL_* asks for export. pino and
 * OpenTelemetry are loaded only then, so a plain ADD starts no faster or slower because they exist.
 */
import { tracingRequested } from './environment.js';
import { NO_TRACE_EXPORT, type TraceExport } from './trace-export.js';

/**
 * Subscribes the asked-for observers; returns the command's root span runner and the function that
 * flushes and stops them, which never rejects and settles within the trace flush deadline (exporter.ts).
 */
export async function startObservability(env: NodeJS.ProcessEnv): Promise<TraceExport> {
  const stops: Array<() => void> = [];
  let traceExport = NO_TRACE_EXPORT;
  const level = env.VCNET_LOG_LEVEL;
  if (level && level !== 'silent') {
    const [{ configureLogger }, { subscribeLogs }] = await Promise.all([
      import('./logger.js'),
      import('./log-subscriber.js'),
    ]);
    stops.push(subscribeLogs(configureLogger({ level, format: 'json' })));
  }
  if (tracingRequested(env)) {
    const { startTraceExport } = await import('./exporter.js');
    traceExport = await startTraceExport(env);
  }
  return {
    inCommandSpan: traceExport.inCommandSpan,
    stop: async () => {
      const outcome = await traceExport.stop();
      for (const stop of stops) stop();
      return outcome;
    },
  };
}
