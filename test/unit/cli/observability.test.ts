/**
 * The CLI's subscribers: OpenTelemetry spans nested as the traced calls are, with attributes and errors;
 * pino lines at the level asked for, and no subscription at all for what the level would not print.
 */
import { Writable } from 'node:stream';
import { context, type Span, type SpanOptions, type Tracer, trace } from '@opentelemetry/api';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { subscribeLogs } from '../../../src/cli/observability/log-subscriber.js';
import {
  bindLogContext,
  commandLogContext,
  logContext,
  mergeLogContext,
} from '../../../src/cli/observability/logger.js';
import { subscribeSpans } from '../../../src/cli/observability/tracing.js';
import { channels, isObserved, traced, tracing } from '../../../src/diagnostics.js';
import { VcnetError } from '../../../src/errors.js';

interface Recorded {
  name: string;
  attributes: unknown;
  parent: string | undefined;
  ended: boolean;
  error?: string;
  errorAttributes?: unknown;
  status?: string;
}

/** A tracer keeping what it is given (built on the API alone, no SDK). */
function recordingTracer(): { tracer: Tracer; spans: Recorded[] } {
  const spans: Recorded[] = [];
  let nextId = 1;
  const tracer: Tracer = {
    startSpan: (name: string, options?: SpanOptions, parentContext = context.active()) => {
      const spanId = (nextId++).toString(16).padStart(16, '0');
      const record: Recorded = {
        name,
        attributes: options?.attributes,
        parent: trace.getSpan(parentContext)?.spanContext().spanId,
        ended: false,
      };
      spans.push(record);
      const span = trace.wrapSpanContext({ traceId: '1'.repeat(32), spanId, traceFlags: 1 });
      return Object.assign(span, {
        end: () => {
          record.ended = true;
        },
        recordException: (error: Error) => {
          record.error = error.message;
        },
        setAttributes: (attributes: unknown) => {
          record.errorAttributes = attributes;
          return span;
        },
        setStatus: (status: { message?: string }) => {
          record.status = status.message;
          return span;
        },
      }) as Span;
    },
    startActiveSpan: (() => {
      throw new Error('not used');
    }) as Tracer['startActiveSpan'],
  };
  return { tracer, spans };
}

function capturedLogger(level: string): { log: pino.Logger; lines: () => Array<Record<string, unknown>> } {
  const chunks: string[] = [];
  const sink = new Writable({
    write(chunk, _encoding, done) {
      chunks.push(String(chunk));
      done();
    },
  });
  const log = pino({ level, base: null }, sink);
  return {
    log,
    lines: () =>
      chunks
        .join('')
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line) as Record<string, unknown>),
  };
}

const endpointEvent = () => ({
  sandbox: 'sb1',
  namespacePath: '/run/netns/pod',
  endpoint: 'eth0',
  endpointType: 'veth',
});

describe('OpenTelemetry subscriber', () => {
  const cleanups: Array<() => void> = [];
  afterEach(() => {
    for (const cleanup of cleanups.splice(0)) cleanup();
  });

  it('makes a span per traced operation, nested, with vcnet.* attributes, ended, errors recorded', async () => {
    const { tracer, spans } = recordingTracer();
    cleanups.push(subscribeSpans(tracer));
    await traced(
      tracing.attach,
      () => ({ sandbox: 'sb1', namespacePath: '/run/netns/pod', model: 'tcfilter', hotplug: false }),
      async () => {
        await traced(
          tracing.netlinkBatch,
          () => ({ namespacePath: '/run/netns/pod', requests: 6 }),
          async () => [],
        );
        await traced(tracing.attachEndpoint, endpointEvent, async () => Promise.reject(new Error('EEXIST'))).catch(
          () => undefined,
        );
      },
    );
    expect(spans.map(({ name, attributes, ended, error }) => ({ name, attributes, ended, error }))).toEqual([
      {
        name: 'vcnet.attach',
        attributes: {
          'vcnet.sandbox': 'sb1',
          'vcnet.namespacePath': '/run/netns/pod',
          'vcnet.model': 'tcfilter',
          'vcnet.hotplug': false,
        },
        ended: true,
        error: undefined,
      },
      {
        name: 'vcnet.netlink.batch',
        attributes: { 'vcnet.namespacePath': '/run/netns/pod', 'vcnet.requests': 6 },
        ended: true,
        error: undefined,
      },
      {
        name: 'vcnet.attach.endpoint',
        attributes: {
          'vcnet.sandbox': 'sb1',
          'vcnet.namespacePath': '/run/netns/pod',
          'vcnet.endpoint': 'eth0',
          'vcnet.endpointType': 'veth',
        },
        ended: true,
        error: 'EEXIST',
      },
    ]);
    const attachId = '0000000000000001';
    expect(spans.map((span) => span.parent)).toEqual([undefined, attachId, attachId]);
  });

  it("marks a failed span with the deciding VCNET_* code, and the failed operation's as outerCode", async () => {
    const { tracer, spans } = recordingTracer();
    cleanups.push(subscribeSpans(tracer));
    const taken = new VcnetError('VCNET_LINK_NAME_TAKEN', 'tap0_kata exists in the pod');
    const failure = new VcnetError('VCNET_ATTACH_FAILED', 'attaching eth0 failed', { cause: taken });
    await traced(tracing.attachEndpoint, endpointEvent, async () => Promise.reject(failure)).catch(() => undefined);
    expect(spans).toMatchObject([
      {
        name: 'vcnet.attach.endpoint',
        error: 'attaching eth0 failed',
        errorAttributes: {
          'vcnet.error.code': 'VCNET_LINK_NAME_TAKEN',
          'vcnet.error.outerCode': 'VCNET_ATTACH_FAILED',
        },
        status: 'VCNET_LINK_NAME_TAKEN: attaching eth0 failed',
      },
    ]);
  });

  it('unsubscribes completely', () => {
    const { tracer } = recordingTracer();
    const unsubscribe = subscribeSpans(tracer);
    expect(isObserved(tracing.netlinkBatch)).toBe(true);
    unsubscribe();
    expect(isObserved(tracing.netlinkBatch)).toBe(false);
  });
});

describe('log subscriber', () => {
  const cleanups: Array<() => void> = [];
  afterEach(() => {
    for (const cleanup of cleanups.splice(0)) cleanup();
  });

  it('at info, logs an attached endpoint with its tap and duration; a failed one only at debug', async () => {
    const { log, lines } = capturedLogger('info');
    cleanups.push(subscribeLogs(log));
    await traced(tracing.attachEndpoint, endpointEvent, async () => 'tap0_kata');
    await traced(tracing.hotplug, endpointEvent, async () => Promise.reject(new Error('EBUSY'))).catch(() => undefined);
    const [attached] = lines();
    expect(attached).toMatchObject({
      level: 30,
      msg: 'endpoint attached',
      sandbox: 'sb1',
      netns: '/run/netns/pod',
      operation: 'attach',
      endpoint: 'eth0',
      type: 'veth',
      tap: 'tap0_kata',
    });
    expect(attached?.durationMs).toEqual(expect.any(Number));
    // The command itself reports the failure: a second line at info would say it twice.
    expect(lines()).toHaveLength(1);

    const debug = capturedLogger('debug');
    cleanups.push(subscribeLogs(debug.log));
    await traced(tracing.hotplug, endpointEvent, async () => Promise.reject(new Error('EBUSY'))).catch(() => undefined);
    expect(debug.lines().find((line) => line.msg === 'endpoint attach failed')).toMatchObject({
      level: 20,
      operation: 'hot-attach',
      err: { message: 'EBUSY' },
    });
  });

  it("logs a notice's error as code and message at warn, with its stack only from debug", () => {
    const failure = new VcnetError('VCNET_UNSUPPORTED_INTERFACE', 'unsupported network interface vx5: kind vxlan');
    const notice = { operation: 'watch', endpoint: 'vx5', message: 'could not attach vx5', error: failure };
    const warn = capturedLogger('warn');
    cleanups.push(subscribeLogs(warn.log));
    channels.notice.publish(notice);
    const [line] = warn.lines();
    expect(line).toMatchObject({
      msg: 'could not attach vx5',
      error: { code: 'VCNET_UNSUPPORTED_INTERFACE', message: 'unsupported network interface vx5: kind vxlan' },
    });
    expect(JSON.stringify(line)).not.toContain('stack');
    cleanups.splice(0).forEach((cleanup) => {
      cleanup();
    });
    const debug = capturedLogger('debug');
    cleanups.push(subscribeLogs(debug.log));
    channels.notice.publish(notice);
    expect(debug.lines()[0]).toMatchObject({ err: { stack: expect.stringContaining('vx5') } });
  });

  it('at silent, listens to nothing', () => {
    const { log } = capturedLogger('silent');
    cleanups.push(subscribeLogs(log));
    for (const operation of Object.values(tracing)) expect(isObserved(operation)).toBe(false);
  });

  it('at warn (the default), does not listen to what it would not print', async () => {
    const { log, lines } = capturedLogger('warn');
    cleanups.push(subscribeLogs(log));
    expect(isObserved(tracing.netlinkBatch)).toBe(false);
    expect(isObserved(tracing.detach)).toBe(false);
    expect(isObserved(tracing.attachEndpoint)).toBe(false);
    await traced(tracing.attachEndpoint, endpointEvent, async () => Promise.reject(new Error('EBUSY'))).catch(
      () => undefined,
    );
    expect(lines()).toEqual([]);
  });
});

describe('the four keys of every log line', () => {
  afterEach(() => bindLogContext({}));

  it("come from the bound context; a line's endpoint and netns win, the program's operation and sandbox stay", () => {
    const chunks: string[] = [];
    const log = pino(
      { base: null, mixin: logContext, mixinMergeStrategy: mergeLogContext },
      new Writable({
        write(chunk, _encoding, done) {
          chunks.push(String(chunk));
          done();
        },
      }),
    );
    bindLogContext({ operation: 'ADD', sandbox: 'ctr', netns: '/run/netns/pod', endpoint: '' });
    log.info('bound');
    log.info({ sandbox: 'ctr/eth0', operation: 'attach', endpoint: 'eth0', netns: undefined }, 'event');
    log.info({ endpoint: null, netns: null }, 'about none');
    const lines = chunks.map((chunk) => JSON.parse(chunk) as Record<string, unknown>);
    const keys = (line: Record<string, unknown> | undefined) => [
      line?.operation,
      line?.sandbox,
      line?.netns,
      line?.endpoint,
    ];
    // An empty value (CNI_IFNAME="") is none.
    expect(keys(lines[0])).toEqual(['ADD', 'ctr', '/run/netns/pod', null]);
    expect(keys(lines[1])).toEqual(['ADD', 'ctr', '/run/netns/pod', 'eth0']);
    expect(keys(lines[2])).toEqual(['ADD', 'ctr', null, null]);
    // Once each: pino would write a key bound on a child and given again twice.
    for (const chunk of chunks) expect(chunk.match(/"endpoint"/g)).toHaveLength(1);
  });

  it("of a CLI command: its name, its --sandbox or <sandbox>, its --netns (one path, not gc's list)", () => {
    const command = (options: Record<string, unknown>, names: string[] = [], values: unknown[] = []) => ({
      opts: () => options,
      registeredArguments: names.map((name) => ({ name: () => name })),
      processedArgs: values,
    });
    expect(commandLogContext('attach', command({ sandbox: 's1', netns: '/run/netns/p' }))).toEqual({
      operation: 'attach',
      sandbox: 's1',
      netns: '/run/netns/p',
    });
    expect(commandLogContext('add-iface', command({}, ['sandbox', 'file'], ['s2', '-']))).toMatchObject({
      sandbox: 's2',
      netns: undefined,
    });
    expect(commandLogContext('gc', command({ netns: ['/a', '/b'] }))).toMatchObject({
      sandbox: undefined,
      netns: undefined,
    });
  });
});

describe('vcnet-cni observability, from the environment alone', () => {
  it('subscribes nothing by default, and logs when VCNET_LOG_LEVEL asks', async () => {
    const { startObservability } = await import('../../../src/cli/observability/start.js');
    const quiet = await startObservability({});
    expect(isObserved(tracing.attachEndpoint)).toBe(false);
    await quiet.stop();
    const logging = await startObservability({ VCNET_LOG_LEVEL: 'info' });
    expect(isObserved(tracing.attachEndpoint)).toBe(true);
    await logging.stop();
    expect(isObserved(tracing.attachEndpoint)).toBe(false);
  });
});
