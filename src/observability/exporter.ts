/**
 * Exporting spans is opt-in and uses the standard OpenTelemetry environment variables
 * (OTEL_TRACES_EXPORTER, OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_SERVICE_NAME...). vcnet itself depends only
 * on @opentelemetry/api; when one of those variables is set, the CLI starts the OpenTelemetry Node SDK
 * if it is installed next to vcnet (`npm install @opentelemetry/sdk-node`), and says so if it is not.
 */
import { logger } from './logger.js';

export function tracingRequested(env: NodeJS.ProcessEnv = process.env): boolean {
  return Boolean(
    env.OTEL_EXPORTER_OTLP_ENDPOINT ||
      env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ||
      (env.OTEL_TRACES_EXPORTER && env.OTEL_TRACES_EXPORTER !== 'none'),
  );
}

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
    return () => sdk.shutdown();
  } catch {
    logger().warn(
      'OTEL_* variables ask for trace export, but @opentelemetry/sdk-node is not installed: install it next to vcnet to export spans',
    );
    return async () => undefined;
  }
}
