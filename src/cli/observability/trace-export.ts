/**
 * What a program gets from trace export (exporter.ts), and what it gets without: kept apart from the
 * exporter so that a program not exporting loads no OpenTelemetry to have the no-op.
 */
import type { Attributes } from '@opentelemetry/api';

/** How the flush at exit ended: `timed-out` leaves an export in flight, which the caller cuts off by exiting. */
export type FlushOutcome = 'flushed' | 'failed' | 'timed-out';

/** Flushes the spans and stops the SDK; never rejects and settles within the flush deadline. */
export type StopTraceExport = () => Promise<FlushOutcome>;

/** The root span of one command (`vcnet attach`, a vcnet-cni ADD), which parents every span it makes. */
export interface CommandSpan {
  /** Renames it once the command is known (the CLI learns it from commander, after the span started). */
  rename(name: string): void;
  /** Marks it failed with a code decided elsewhere (vcnet-cni's error reply) and a message. */
  failWith(code: string, message: string): void;
}

export interface TraceExport {
  /**
   * Runs `work` in the command's root span (a thrown error marks it failed with the deciding code);
   * without export, just runs `work`.
   */
  inCommandSpan<Result>(
    name: string,
    attributes: Attributes,
    work: (span: CommandSpan) => Promise<Result>,
  ): Promise<Result>;
  stop: StopTraceExport;
}

const UNTRACED: CommandSpan = { rename: () => undefined, failWith: () => undefined };

/** What a command does when nothing is exported: runs its work, and stops at once. */
export const NO_TRACE_EXPORT: TraceExport = {
  inCommandSpan: (_name, _attributes, work) => work(UNTRACED),
  stop: async () => 'flushed',
};

/**
 * Loads the exporter (`load`, its import) and starts it for `env`. The exporter imports
 * @opentelemetry/api, an optional peer dependency that the SDK brings: an install of vcnet alone has
 * none, and loading the exporter there failed with Node's ERR_MODULE_NOT_FOUND and its trace (no
 * vcnet-cni result, DEL included). Said in one warning line instead, as a missing SDK is, and the
 * command runs without spans.
 */
export async function startTraceExportFrom(
  load: () => Promise<{ startTraceExport(env: NodeJS.ProcessEnv): Promise<TraceExport> }>,
  env: NodeJS.ProcessEnv,
): Promise<TraceExport> {
  let exporter: Awaited<ReturnType<typeof load>>;
  try {
    exporter = await load();
  } catch (error) {
    const failure = error as NodeJS.ErrnoException;
    if (failure?.code !== 'ERR_MODULE_NOT_FOUND' || !/'@opentelemetry\//.test(String(failure.message))) throw error;
    process.stderr.write(
      'vcnet: warning: OTEL_* variables ask for trace export, but @opentelemetry/api is not installed (@opentelemetry/sdk-node brings it): install @opentelemetry/sdk-node next to vcnet to export spans\n',
    );
    return NO_TRACE_EXPORT;
  }
  return exporter.startTraceExport(env);
}
