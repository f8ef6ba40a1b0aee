/**
 * vcnet's only observability hook: named `node:diagnostics_channel` channels. The library chooses no
 * logger and no tracer; an application subscribes (the `vcnet` CLI and the `vcnet-cni` plugin turn
 * these into pino lines and, when OTEL_* asks for it, OpenTelemetry spans: src/cli/observability/).
 *
 * Without a subscriber nothing is built: `traced` and `publish` take a function that makes the event
 * and call it only when the channel has subscribers, so an unobserved attach pays one boolean check
 * per event site. What only a notice needs (its text, whether there is anything to say, a look at
 * the kernel or /proc for it) is computed inside that function, never before the call.
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
 *   vcnet:netlink:dump-retried a dump interrupted or overrun (ENOBUFS) was sent again (NetlinkDumpRetriedEvent)
 *   vcnet:plan:step           one step of a plan applied or undone (PlanStepEvent)
 *   vcnet:watch               a namespace change applied to a watched sandbox (WatchEvent)
 *   vcnet:notice              something went other than asked but the operation went on (NoticeEvent)
 */
import type { AsyncLocalStorage } from 'node:async_hooks';
import { channel, tracingChannel } from 'node:diagnostics_channel';
import type { ErrorCode } from './error-codes.js';

// Frozen: every copy of vcnet in a process shares these names, so no caller may change them.
/**
 * The names of vcnet's `node:diagnostics_channel` channels: tracing channels for operations (scan, attach,
 * attachEndpoint, hotplug, detach, netlinkBatch; typed in `tracing`) and plain channels for events
 * (netlinkDumpRetried, planStep, watch, notice; typed in `channels`). docs/diagnostics.md says what each carries.
 */
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

/** The name of one of vcnet's diagnostics channels (`vcnet:scan`, `vcnet:attach`, ...). */
export type DiagnosticsChannelName = (typeof DiagnosticsChannel)[keyof typeof DiagnosticsChannel];

/** What the `vcnet:scan` tracing channel carries: the namespace scanned. */
export interface ScanEvent {
  namespacePath: string;
}

/**
 * What the `vcnet:attach` tracing channel carries: the sandbox, its namespace and model, and whether NICs are
 * hot-plugged into a running VM.
 */
export interface AttachEvent {
  sandbox: string;
  namespacePath: string;
  model: string;
  hotplug: boolean;
}

/**
 * What the `vcnet:attach:endpoint` and `vcnet:hotplug` tracing channels carry: one pod interface being
 * attached (or hot-plugged into a running VM), and its endpoint type.
 */
export interface EndpointEvent {
  sandbox: string;
  namespacePath: string;
  /** The pod interface's name. */
  endpoint: string;
  endpointType: string;
}

/**
 * What the `vcnet:detach` tracing channel carries: the sandbox, its namespace and the pod interfaces it
 * detaches.
 */
export interface DetachEvent {
  sandbox: string;
  namespacePath: string;
  endpoints: string[];
}

/** What the `vcnet:netlink:batch` tracing channel carries: one batch of netlink requests sent together, and how many. */
export interface NetlinkBatchEvent {
  /** Undefined for the namespace of the process. */
  namespacePath: string | undefined;
  requests: number;
}

/**
 * What `vcnet:netlink:dump-retried` publishes: a dump the kernel interrupted (NLM_F_DUMP_INTR) sent again.
 */
export interface NetlinkDumpRetriedEvent {
  /** Undefined for the namespace of the process. */
  namespacePath: string | undefined;
  /** The dump sent again: its description ("list links"), message type (RTM_GET*) and sequence number. */
  request: { description: string; type: number; sequence: number };
  /** 2 for the first resend. */
  attempt: number;
  /** Why: the kernel marked it interrupted (NLM_F_DUMP_INTR), or a receive during it failed with ENOBUFS. */
  reason: 'interrupted' | 'overrun';
}

/**
 * What `vcnet:plan:step` publishes: one step of a plan applied or undone, as the `ip`/`tc` command a dry run
 * prints for it.
 */
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

/**
 * What `vcnet:watch` publishes after each change set a watch applied: the pod interfaces added, removed and
 * updated, and those that could not be attached (with their code).
 */
export interface WatchEvent {
  sandbox: string;
  added: string[];
  removed: string[];
  updated: string[];
  /** Links that could not be attached (tried again after a growing wait, or when the link changes). */
  failed: Array<{ name: string; code: ErrorCode; message: string }>;
}

/**
 * What `vcnet:notice` publishes: a failure an operation went on after (a route it could not restore, a push
 * to the agent that failed), with the operation, the pod interface and the error. `handled` says a caller's
 * handler got it too.
 */
export interface NoticeEvent {
  operation: string;
  /** The pod interface's name. */
  endpoint: string;
  message: string;
  error?: unknown;
  details?: Record<string, unknown>;
  /**
   * True when the caller's own handler (watchSandbox's `onError`, configureGuest's `warn`) was given
   * the same failure: a subscriber that logs everything may skip it, the caller reports it already.
   */
  handled?: boolean;
}

/**
 * What a tracing channel's `end`, `asyncStart` and `asyncEnd` events carry: the operation's event, and
 * `result` or `error` once it has settled.
 */
export type SettledEvent<Event extends object> = Event & { result?: unknown; error?: unknown };

/** A failed operation's event, as its tracing channel's `error` event carries it. */
export type FailedEvent<Event extends object> = Event & { error: unknown };

/** A listener of one channel: the message, and the channel's name. */
export type ChannelListener<Message> = (message: Message, name: string | symbol) => void;

/** Handlers for a tracing channel's events; any may be left out. */
export interface TracingHandlers<Event extends object> {
  start?: (event: Event) => void;
  end?: (event: SettledEvent<Event>) => void;
  asyncStart?: (event: SettledEvent<Event>) => void;
  asyncEnd?: (event: SettledEvent<Event>) => void;
  error?: (event: FailedEvent<Event>) => void;
}

/**
 * A plain `node:diagnostics_channel` channel carrying `Message`: the part of Node's `Channel` vcnet and
 * its subscribers use. vcnet declares it rather than naming Node's class, whose type parameters
 * changed order between @types/node versions (a project's own @types/node would refuse vcnet's types).
 */
export interface DiagnosticsPlainChannel<Message> {
  readonly name: string | symbol;
  readonly hasSubscribers: boolean;
  subscribe(listener: ChannelListener<Message>): void;
  unsubscribe(listener: ChannelListener<Message>): boolean;
  publish(message: Message): void;
  bindStore<Store>(store: AsyncLocalStorage<Store>, transform?: (message: Message) => Store): void;
  unbindStore<Store>(store: AsyncLocalStorage<Store>): boolean;
}

/** A `node:diagnostics_channel` tracing channel whose events carry `Event` (see DiagnosticsPlainChannel for why vcnet's own type). */
export interface DiagnosticsTracingChannel<Event extends object> {
  readonly start: DiagnosticsPlainChannel<Event>;
  readonly end: DiagnosticsPlainChannel<SettledEvent<Event>>;
  readonly asyncStart: DiagnosticsPlainChannel<SettledEvent<Event>>;
  readonly asyncEnd: DiagnosticsPlainChannel<SettledEvent<Event>>;
  readonly error: DiagnosticsPlainChannel<FailedEvent<Event>>;
  subscribe(handlers: TracingHandlers<Event>): void;
  unsubscribe(handlers: TracingHandlers<Event>): void;
  /** Runs `work` with `event` published on the five channels (vcnet's own calls use `traced`). */
  tracePromise<Result>(work: () => Promise<Result>, event: Event): Promise<Result>;
}

function tracingChannelFor<Event extends object>(name: DiagnosticsChannelName): DiagnosticsTracingChannel<Event> {
  // Node's untyped channel seen through vcnet's declared shape (same object, narrower messages).
  return tracingChannel(name) as unknown as DiagnosticsTracingChannel<Event>;
}

function channelFor<Message>(name: DiagnosticsChannelName): DiagnosticsPlainChannel<Message> {
  return channel(name) as unknown as DiagnosticsPlainChannel<Message>;
}

/** The tracing channels, one per operation, typed: `tracing.attachEndpoint.subscribe({ asyncEnd(event) {...} })`. */
export const tracing = {
  scan: tracingChannelFor<ScanEvent>(DiagnosticsChannel.scan),
  attach: tracingChannelFor<AttachEvent>(DiagnosticsChannel.attach),
  attachEndpoint: tracingChannelFor<EndpointEvent>(DiagnosticsChannel.attachEndpoint),
  hotplug: tracingChannelFor<EndpointEvent>(DiagnosticsChannel.hotplug),
  detach: tracingChannelFor<DetachEvent>(DiagnosticsChannel.detach),
  netlinkBatch: tracingChannelFor<NetlinkBatchEvent>(DiagnosticsChannel.netlinkBatch),
} as const;

/** The plain channels, one message per event, typed: `channels.notice.subscribe((notice) => {...})`. */
export const channels = {
  netlinkDumpRetried: channelFor<NetlinkDumpRetriedEvent>(DiagnosticsChannel.netlinkDumpRetried),
  planStep: channelFor<PlanStepEvent>(DiagnosticsChannel.planStep),
  watch: channelFor<WatchEvent>(DiagnosticsChannel.watch),
  notice: channelFor<NoticeEvent>(DiagnosticsChannel.notice),
} as const;

/** Whether anyone listens to any of a tracing channel's five events (of whatever event type). */
export function isObserved(
  operation: Record<'start' | 'end' | 'asyncStart' | 'asyncEnd' | 'error', { readonly hasSubscribers: boolean }>,
): boolean {
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
  operation: DiagnosticsTracingChannel<Event>,
  makeEvent: () => Event,
  work: () => Promise<Result>,
): Promise<Result> {
  if (!isObserved(operation)) return work();
  return operation.tracePromise(work, makeEvent());
}

/**
 * Publishes one event; `makeEvent` is called only when someone subscribes. It may find there is
 * nothing to tell (undefined), so what decides whether to tell is computed inside it too.
 */
export function publish<Event>(target: DiagnosticsPlainChannel<Event>, makeEvent: () => Event | undefined): void {
  if (!target.hasSubscribers) return;
  const event = makeEvent();
  if (event !== undefined) target.publish(event);
}

/**
 * The type of the process warning a notice becomes when no one takes it (`process.on('warning')`
 * sees it as `warning.name`; Node prints `(node:PID) VcnetWarning: ...`).
 */
const NOTICE_WARNING_TYPE = 'VcnetWarning';

/**
 * Reports a failure the operation goes on after, so that it is never lost and never written by the
 * library itself: published on vcnet:notice whenever someone subscribes (with `handled` when `handler`
 * is given), passed to `handler` when the caller gave one, and only when there is neither a handler
 * nor a subscriber, a process warning of type VcnetWarning whose text is `warningText` (default: the
 * event's message).
 */
export function reportNotice(
  makeEvent: () => NoticeEvent,
  handler: (() => void) | undefined,
  warningText?: (event: NoticeEvent) => string,
): void {
  const heard = channels.notice.hasSubscribers;
  if (heard) channels.notice.publish({ ...makeEvent(), ...(handler ? { handled: true } : {}) });
  if (handler) handler();
  else if (!heard) {
    const event = makeEvent();
    process.emitWarning(warningText?.(event) ?? event.message, NOTICE_WARNING_TYPE);
  }
}
