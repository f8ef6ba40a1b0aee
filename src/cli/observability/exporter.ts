/**
 * Exporting spans is opt-in and uses the standard OpenTelemetry environment variables
 * (OTEL_TRACES_EXPORTER, OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_SERVICE_NAME...). The CLI and the CNI
 * plugin depend only on @opentelemetry/api (the library on neither); when one of those variables is
 * set, they start the OpenTelemetry Node SDK if it is installed next to vcnet
 * (`npm install @opentelemetry/sdk-node`), say so if it is not, and subscribe spans to the library's
 * diagnostics channels (tracing.ts). Without those variables nothing subscribes and nothing is built.
 *
 * Telemetry never decides a command's outcome: a collector that is down, slow or refuses the spans
 * costs one warning line on stderr and at most VCNET_TRACE_FLUSH_TIMEOUT seconds at exit.
 */
import { Console } from 'node:console';
import { format } from 'node:util';
import {
  context,
  type DiagLogger,
  DiagLogLevel,
  diag,
  ProxyTracerProvider,
  type Span,
  SpanStatusCode,
  trace,
} from '@opentelemetry/api';
import { decimalSecondsAsMs } from '../../arguments.js';
import { VCNET_VERSION } from '../../version.js';
import { tracingRequested } from './environment.js';
import type { CommandSpan, FlushOutcome, TraceExport } from './trace-export.js';
import { NO_TRACE_EXPORT } from './trace-export.js';
import { recordFailure, subscribeSpans } from './tracing.js';

interface NodeSdk {
  start(): void;
  shutdown(): Promise<void>;
}

const DEFAULT_FLUSH_TIMEOUT_SECONDS = 2;
const MAX_FLUSH_TIMEOUT_SECONDS = 60;

function warn(message: string): void {
  // Straight to stderr: the logger may not be configured (export starts before it), and stdout is
  // the command's (or the CNI result's).
  process.stderr.write(`vcnet: warning: ${message}\n`);
}

/**
 * The time the exit may spend flushing spans: $VCNET_TRACE_FLUSH_TIMEOUT seconds, else 2. A value out
 * of range is a telemetry setting gone wrong, not a reason to refuse the command: warned, and 2 used.
 */
export function flushTimeoutMs(env: NodeJS.ProcessEnv): number {
  const text = env.VCNET_TRACE_FLUSH_TIMEOUT;
  if (text === undefined || text === '') return DEFAULT_FLUSH_TIMEOUT_SECONDS * 1000;
  const accepted = `seconds from 0 to ${MAX_FLUSH_TIMEOUT_SECONDS}`;
  try {
    // Decimal, as the CLI reads seconds: Number() would take "0x10", "1e1" or " 3".
    return decimalSecondsAsMs('VCNET_TRACE_FLUSH_TIMEOUT', text, MAX_FLUSH_TIMEOUT_SECONDS, accepted);
  } catch {
    warn(
      `VCNET_TRACE_FLUSH_TIMEOUT is ${JSON.stringify(text)}, not ${accepted} written as decimal digits: ` +
        `using ${DEFAULT_FLUSH_TIMEOUT_SECONDS}`,
    );
    return DEFAULT_FLUSH_TIMEOUT_SECONDS * 1000;
  }
}

/**
 * Sends what the process writes through `console` to stderr; returns the function that puts the
 * console back. The SDK's console exporters (OTEL_TRACES_EXPORTER=console, and for metrics and logs)
 * print with console.dir/log, which go to stdout, and stdout is the command's --json output or
 * vcnet-cni's CNI result. (The SDK's diagnostic logger, OTEL_LOG_LEVEL, is not reached this way: the
 * API's DiagConsoleLogger took the console's methods when it loaded; diagToStderr replaces it.) vcnet's programs never
 * write their output through `console` (they write process.stdout), so while the SDK runs every
 * console line is the SDK's. This leaves the exporters the SDK makes from OTEL_TRACES_EXPORTER as it
 * makes them (otlp, zipkin, console, a list): the SDK does not export the function that reads that
 * list, and giving it span processors instead would mean reading the list again here and loading
 * the OTLP and Zipkin exporters, packages of the SDK's that vcnet cannot count on resolving.
 */
export function consoleToStderr(): () => void {
  const original = globalThis.console;
  globalThis.console = new Console({ stdout: process.stderr, stderr: process.stderr });
  return () => {
    globalThis.console = original;
  };
}

/** OpenTelemetry's diagnostic lines, one per call, on stderr. */
const STDERR_DIAG_LOGGER: DiagLogger = Object.fromEntries(
  (['error', 'warn', 'info', 'debug', 'verbose'] as const).map((level) => [
    level,
    (message: string, ...args: unknown[]) => {
      process.stderr.write(`${format(message, ...args)}\n`);
    },
  ]),
) as unknown as DiagLogger;

/**
 * Gives OpenTelemetry's `diag` a logger writing to stderr at the level OTEL_LOG_LEVEL names, as the
 * SDK does with its DiagConsoleLogger (which writes with the console methods it took at load, so
 * stdout, whatever consoleToStderr did after). Called before the SDK is made (which is kept from
 * setting its own) and again after. Nothing when OTEL_LOG_LEVEL is not set (the SDK sets none then).
 */
function diagToStderr(env: NodeJS.ProcessEnv): void {
  const name = env.OTEL_LOG_LEVEL?.trim().toUpperCase();
  if (!name) return;
  const logLevel = (DiagLogLevel as unknown as Record<string, DiagLogLevel | undefined>)[name] ?? DiagLogLevel.INFO;
  diag.setLogger(STDERR_DIAG_LOGGER, { logLevel, suppressOverrideMessage: true });
}

/** Runs `flush` for at most `timeoutMs`; a failure or the deadline is one warning line, never a rejection. */
export async function boundedFlush(flush: () => Promise<void>, timeoutMs: number): Promise<FlushOutcome> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<FlushOutcome>((resolve) => {
    timer = setTimeout(() => resolve('timed-out'), timeoutMs);
    // The deadline alone must not keep a finished command alive.
    timer.unref();
  });
  const flushed = (async () => {
    await flush();
    return 'flushed' as const;
  })().catch((error: unknown) => {
    warn(`spans not exported: ${(error as Error)?.message ?? String(error)}`);
    return 'failed' as const;
  });
  const outcome = await Promise.race([flushed, deadline]);
  clearTimeout(timer);
  if (outcome === 'timed-out')
    warn(
      `spans not exported: the collector did not take them within ${timeoutMs / 1000} s ` +
        '(VCNET_TRACE_FLUSH_TIMEOUT sets how long to wait)',
    );
  return outcome;
}

/**
 * Whether vcnet's copy of @opentelemetry/api sees a registered tracer provider. It does not when the
 * SDK registered its provider with another copy of the API that vcnet's will not read (npm nests two
 * copies when their version ranges do not meet; a newer API ignores a provider an older one registered).
 */
export function tracerProviderRegistered(): boolean {
  const provider = trace.getTracerProvider();
  // The API's own proxy delegates to a no-op provider until an SDK registers one through this copy.
  const noop = new ProxyTracerProvider().getDelegate();
  return !(provider instanceof ProxyTracerProvider && provider.getDelegate() === noop);
}

function commandSpanOf(span: Span): CommandSpan {
  return {
    rename: (name) => {
      span.updateName(name);
    },
    failWith: (code, message) => {
      span.setAttribute('vcnet.error.code', code);
      span.setStatus({ code: SpanStatusCode.ERROR, message: `${code}: ${message}` });
    },
  };
}

/** Starts the SDK when asked for; returns the command's root span runner and the flush (see StopTraceExport). */
export async function startTraceExport(env: NodeJS.ProcessEnv = process.env): Promise<TraceExport> {
  if (!tracingRequested(env)) return NO_TRACE_EXPORT;
  const timeoutMs = flushTimeoutMs(env);
  const moduleName = '@opentelemetry/sdk-node';
  let NodeSDK: new (options: Record<string, unknown>) => NodeSdk;
  try {
    ({ NodeSDK } = (await import(moduleName)) as { NodeSDK: typeof NodeSDK });
  } catch (error) {
    const missing = (error as NodeJS.ErrnoException)?.code === 'ERR_MODULE_NOT_FOUND';
    warn(
      missing
        ? 'OTEL_* variables ask for trace export, but @opentelemetry/sdk-node is not installed: install it next to vcnet to export spans'
        : `OTEL_* variables ask for trace export, but @opentelemetry/sdk-node did not load: ${(error as Error)?.message ?? String(error)}`,
    );
    return NO_TRACE_EXPORT;
  }
  let sdk: NodeSdk;
  // From before the SDK is made: its diagnostic logger may print while it starts.
  const restoreConsole = consoleToStderr();
  diagToStderr(env);
  // The SDK's constructor sets its own DiagConsoleLogger when it sees OTEL_LOG_LEVEL, and that logger
  // prints at once (its own registration, the exporters it picks) on stdout: it does not see the
  // variable, vcnet's stderr logger has that level already, and is set again after, to be sure.
  const logLevel = process.env.OTEL_LOG_LEVEL;
  delete process.env.OTEL_LOG_LEVEL;
  try {
    sdk = new NodeSDK({ serviceName: env.OTEL_SERVICE_NAME ?? 'vcnet' });
    diagToStderr(env);
    sdk.start();
  } catch (error) {
    restoreConsole();
    warn(`trace export did not start: ${(error as Error)?.message ?? String(error)}`);
    return NO_TRACE_EXPORT;
  } finally {
    if (logLevel !== undefined) process.env.OTEL_LOG_LEVEL = logLevel;
  }
  if (!tracerProviderRegistered())
    warn(
      'OTEL_* variables ask for trace export, but the OpenTelemetry SDK registered its tracer provider with ' +
        "another copy of @opentelemetry/api than vcnet's, so no span would reach it: make npm keep one copy " +
        '(`npm ls @opentelemetry/api` lists them; `npm dedupe`, or an @opentelemetry/sdk-node whose ' +
        "@opentelemetry/api peer range includes vcnet's copy)",
    );
  const tracer = trace.getTracer('vcnet', VCNET_VERSION);
  const unsubscribe = subscribeSpans(tracer);
  return {
    inCommandSpan: (name, attributes, work) => {
      const span = tracer.startSpan(name, { attributes, root: true });
      // Active for everything the command runs: the library's spans (tracing.ts) take it as parent.
      return context.with(trace.setSpan(context.active(), span), async () => {
        try {
          return await work(commandSpanOf(span));
        } catch (error) {
          recordFailure(span, error);
          throw error;
        } finally {
          span.end();
        }
      });
    },
    stop: async () => {
      unsubscribe();
      const outcome = await boundedFlush(() => sdk.shutdown(), timeoutMs);
      // A flush cut off by the deadline may still print: the console stays on stderr until exit.
      if (outcome !== 'timed-out') restoreConsole();
      return outcome;
    },
  };
}
