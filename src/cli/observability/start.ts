/**
 * What the vcnet-cni plugin observes, decided from its environment alone (a runtime passes no flags):
 * log lines on stderr when VCNET_LOG_LEVEL asks for them, spans when OTEL_* asks for export. pino and
 * OpenTelemetry are loaded only then, so a plain ADD starts no faster or slower because they exist.
 */
import { tracingRequested } from './environment.js';
import { NO_TRACE_EXPORT, startTraceExportFrom, type TraceExport } from './trace-export.js';

/** What vcnet-cni observes: its root span runner, the function that stops it, and who writes the notices. */
export interface Observing extends TraceExport {
  /** The log lines carry the library's notices (VCNET_LOG_LEVEL warn or lower): the plugin writes none of its own. */
  logsNotices: boolean;
}

/**
 * Subscribes the asked-for observers; returns the command's root span runner and the function that
 * flushes and stops them, which never rejects and settles within the trace flush deadline (exporter.ts).
 */
export async function startObservability(env: NodeJS.ProcessEnv): Promise<Observing> {
  const stops: Array<() => void> = [];
  let traceExport = NO_TRACE_EXPORT;
  let logsNotices = false;
  if (env.VCNET_LOG_LEVEL && env.VCNET_LOG_LEVEL !== 'silent') {
    const [{ bindLogContext, configureLogger, logLevelFrom, LEVEL_NAMES }, { subscribeLogs }] = await Promise.all([
      import('./logger.js'),
      import('./log-subscriber.js'),
    ]);
    const level = logLevelFrom(env);
    if (level === undefined) {
      // A runtime cannot be asked to fix a plugin's logging before DEL may run: the command goes on,
      // with the default (no log lines), and says why once on stderr (never stdout, the runtime's).
      process.stderr.write(
        `vcnet-cni: VCNET_LOG_LEVEL=${JSON.stringify(env.VCNET_LOG_LEVEL)} is not a log level (accepted: ${LEVEL_NAMES.join(', ')}); no log lines are written\n`,
      );
    } else if (level !== 'silent') {
      // Every line says which CNI call it is about (docs/diagnostics.md); an event's endpoint (the
      // pod interface) and namespace override these.
      bindLogContext({
        operation: env.CNI_COMMAND,
        sandbox: env.CNI_CONTAINERID,
        netns: env.CNI_NETNS,
        endpoint: env.CNI_IFNAME,
      });
      const logger = configureLogger({ level, format: 'json' });
      // subscribeLogs logs the notices from warn on.
      logsNotices = logger.isLevelEnabled('warn');
      stops.push(subscribeLogs(logger));
    }
  }
  if (tracingRequested(env)) {
    traceExport = await startTraceExportFrom(() => import('./exporter.js'), env);
  }
  return {
    logsNotices,
    inCommandSpan: traceExport.inCommandSpan,
    stop: async () => {
      const outcome = await traceExport.stop();
      for (const stop of stops) stop();
      return outcome;
    },
  };
}
