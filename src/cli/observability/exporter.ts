/**
 * Exporting spans is opt-in and uses the standard OpenTelemetry environment variables
 * (OTEL_TRACES_EXPORTER, OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_SERVICE_NAME...). The CLI and the CNI
 * plugin depend only on @opentelemetry/api (the library on neither); when one of those variables is
 * set, they start the OpenTelemetry Node SDK if it is installed next to vcnet
 * (`npm install @opentelemetry/sdk-node`), say so if it is not, and subscribe spans to the library's
 * diagnostics channels (tracing.ts). Without those variables nothing subscribes and nothing is built.
 */
import { trace } from '@opentelemetry/api';
import { tracingRequested } from './environment.js';
import { subscribeSpans } from './tracing.js';

export { tracingRequested } from './environment.js';

interface NodeSdk {
  start(): void;
  shutdown(): Promise<void>;
}

/** Starts the SDK when asked for; returns a function that flushes and stops it. */
export async function startTraceExport(env: NodeJS.ProcessEnv = process.env): Promise<() => Promise<void>> {
  if (!tracingRequested(env)) return async () => undefined;
  const moduleName = '@opentelemetry/sdk-node';
  try {
    const { NodeSDK } = (await import(moduleName)) as { NodeSDK: new (options: Record<string, unknown>) => NodeSdk };
    const sdk = new NodeSDK({ serviceName: env.OTEL_SERVICE_NAME ?? 'vcnet' });
    sdk.start();
    const unsubscribe = subscribeSpans(trace.getTracer('vcnet', '0.1.0'));
    return async () => {
      unsubscribe();
      await sdk.shutdown();
    };
  } catch {
    // Straight to stderr: the logger is not configured yet when export starts, and a request for
    // spans that silently gives none is worse than one line.
    process.stderr.write(
      'vcnet: warning: OTEL_* variables ask for trace export, but @opentelemetry/sdk-node is not installed: install it next to vcnet to export spans\n',
    );
    return async () => undefined;
  }
}
