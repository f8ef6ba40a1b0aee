/**
 * vcnet's only observability hook: named `node:diagnostics_channel` channels. The library chooses no
 * logger and no tracer; an application subscribes (the `vcnet` CLI and the `vcnet-cni` plugin turn
 * these into pino lines and, when OTEL_* asks for it, OpenTelemetry spans: src/cli/observability/).
 *
 * Without a subscriber nothing is built: `traced` and `publish` take a function that makes the event
 * and call it only when the channel has subscribers, so an unobserved attach pays one boolean check
 * per event site.
 *
 * Tracing channels (start, end, asyncStart, asyncEnd, error; the context object carries `result` or
 * `error` when the operation settles):
 *   vcnet:scan                one scan of a namespace (ScanEvent)
 *   vcnet:attach              one attach call, all its endpoints (AttachEvent)
 *   vcnet:attach:endpoint     one endpoint's host plumbing, cold attach (EndpointEvent; result: tap name)
 *   vcnet:hotplug             one endpoint plugged into a running VM (EndpointEvent; result: tap name)
 *   vcnet:detach              one detach of endpoints (DetachEvent; result: the undo report)
 *   vcnet:netlink:batch       one netlink batch sent and answered (NetlinkBatchEvent)
 * Plain channels:
 *   vcnet:netlink:dump-retried a dump the kernel marked interrupted was sent again (NetlinkDumpRetriedEvent)
 *   vcnet:plan:step           one step of a plan applied or undone (PlanStepEvent)
 *   vcnet:watch               a namespace change applied to a watched sandbox (WatchEvent)
 *   vcnet:notice              something went other than asked but the operation went on (NoticeEvent)
 */
import { type Channel, channel, type TracingChannel, tracingChannel } from 'node:diagnostics_channel';

// Frozen: every copy of vcnet in a process shares these names, so no caller may change them.
export const DiagnosticsChannel = Object.freeze({
  scan: 'vcnet:scan',
  attach: 'vcnet:attach',
  attachEndpoint: 'vcnet:attach:endpoint',
  hotplug: 'vcnet:hotplug',
  detach: 'vcnet:detach',
  netlinkBatch: 'vcnet:netlink:batch',
  netlinkDumpRetried: 'vcnet:netlink:dump-retried',
  planStep: 'vcnet:plan:step',
  watch: 'vcnet:watch',
  notice: 'vcnet:notice',
} as const);

export type DiagnosticsChannelName = (typeof DiagnosticsChannel)[keyof typeof DiagnosticsChannel];

export interface ScanEvent {
  namespacePath: string;
}

export interface AttachEvent {
  sandbox: string;
  namespacePath: string;
  model: string;
  hotplug: boolean;
}

export interface EndpointEvent {
  sandbox: string;
  namespacePath: string;
  /** The pod interface's name. */
  endpoint: string;
  endpointType: string;
}

export interface DetachEvent {
  sandbox: string;
  namespacePath: string;
  endpoints: string[];
}

export interface NetlinkBatchEvent {
  /** Undefined for the namespace of the process. */
  namespacePath: string | undefined;
  requests: number;
}

export interface NetlinkDumpRetriedEvent {
  /** Undefined for the namespace of the process. */
  namespacePath: string | undefined;
  /** The dump sent again: its description ("list links"), message type (RTM_GET*) and sequence number. */
  request: { description: string; type: number; sequence: number };
  /** 2 for the first resend. */
  attempt: number;
}

export interface PlanStepEvent {
  /** The namespace the step changed (the path the handle was opened with). */
  namespacePath: string | undefined;
  /** What the step does, as the ip/tc command --dry-run prints for it. */
  step: string;
  /** `apply`: a step of an attach; `undo`: a step of a rollback or a detach. */
  phase: 'apply' | 'undo';
  /** The kernel's refusal; absent when the step was made. */
  error?: unknown;
}

export interface WatchEvent {
  sandbox: string;
  added: string[];
  removed: string[];
  updated: string[];
  /** Links that could not be attached (tried again with the next change). */
  failed: Array<{ name: string; message: string }>;
}

export interface NoticeEvent {
  operation: string;
  /** The pod interface's name. */
  endpoint: string;
  message: string;
  error?: unknown;
  details?: Record<string, unknown>;
}

/** The tracing channels, one per operation. */
export const tracing = {
  scan: tracingChannel<unknown, ScanEvent>(DiagnosticsChannel.scan),
  attach: tracingChannel<unknown, AttachEvent>(DiagnosticsChannel.attach),
  attachEndpoint: tracingChannel<unknown, EndpointEvent>(DiagnosticsChannel.attachEndpoint),
  hotplug: tracingChannel<unknown, EndpointEvent>(DiagnosticsChannel.hotplug),
  detach: tracingChannel<unknown, DetachEvent>(DiagnosticsChannel.detach),
  netlinkBatch: tracingChannel<unknown, NetlinkBatchEvent>(DiagnosticsChannel.netlinkBatch),
} as const;

/** The plain channels, one message per event. */
export const channels = {
  netlinkDumpRetried: channel(DiagnosticsChannel.netlinkDumpRetried) as Channel<unknown, NetlinkDumpRetriedEvent>,
  planStep: channel(DiagnosticsChannel.planStep) as Channel<unknown, PlanStepEvent>,
  watch: channel(DiagnosticsChannel.watch) as Channel<unknown, WatchEvent>,
  notice: channel(DiagnosticsChannel.notice) as Channel<unknown, NoticeEvent>,
} as const;

/** Whether anyone listens to any of a tracing channel's five events. */
export function isObserved(operation: TracingChannel<unknown, object>): boolean {
  return (
    operation.start.hasSubscribers ||
    operation.end.hasSubscribers ||
    operation.asyncStart.hasSubscribers ||
    operation.asyncEnd.hasSubscribers ||
    operation.error.hasSubscribers
  );
}

/** Runs `work` as one traced operation; `makeEvent` is called only when someone subscribes. */
export function traced<Event extends object, Result>(
  operation: TracingChannel<unknown, Event>,
  makeEvent: () => Event,
  work: () => Promise<Result>,
): Promise<Result> {
  if (!isObserved(operation)) return work();
  return operation.tracePromise(work, makeEvent());
}

/** Publishes one event; `makeEvent` is called only when someone subscribes. */
export function publish<Event>(target: Channel<unknown, Event>, makeEvent: () => Event): void {
  if (target.hasSubscribers) target.publish(makeEvent());
}
