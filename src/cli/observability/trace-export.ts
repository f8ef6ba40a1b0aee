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
