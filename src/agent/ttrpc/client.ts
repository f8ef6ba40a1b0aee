/**
 * ttrpc client over any Duplex byte stream (a unix socket to QEMU's virtio-serial chardev, a socketpair
 * in tests). Calls are unary; many may be in flight, each on its own odd stream id, as ttrpc requires
 * of the side that starts streams.
 */

import type { Duplex } from 'node:stream';
import {
  create,
  type DescMessage,
  fromBinary,
  type MessageInitShape,
  type MessageShape,
  toBinary,
} from '@bufbuild/protobuf';
import { onAbort } from '../../abort-listeners.js';
import { numberOption, optionsArgument } from '../../arguments.js';
import { InvalidInputError } from '../../errors.js';
import { AgentStatusError } from '../errors.js';
import { type Request, RequestSchema, ResponseSchema } from '../generated/ttrpc_pb.js';
import { encodeFrame, endThenDestroy, FrameDecoder, FrameType, MAX_FRAME_LENGTH } from './frame.js';
import { methodPath, type UnaryMethod } from './method.js';
import { StatusCode } from './status-code.js';

/**
 * Options of one agent call: its deadline in milliseconds (sent to the agent too), a signal that cancels it,
 * and ttrpc metadata.
 */
export interface CallOptions {
  /** Deadline of this call in milliseconds: sent to the server as timeout_nano and enforced here. */
  timeoutMs?: number;
  signal?: AbortSignal;
  metadata?: Record<string, string>;
}

/** A call's options as a plain JavaScript caller may give them: NaN or "soon" as timeoutMs would mean no deadline. */
function refusedCallOptions(options: CallOptions): InvalidInputError | undefined {
  try {
    optionsArgument(options, 'options', ['timeoutMs', 'signal', 'metadata']);
    numberOption(options.timeoutMs, 'timeoutMs', {
      min: 0,
      max: 3_600_000,
      integer: false,
      unit: 'milliseconds, 0 = none',
    });
    if (options.signal !== undefined && !(options.signal instanceof AbortSignal)) {
      throw new InvalidInputError('signal', options.signal, 'an AbortSignal');
    }
    return undefined;
  } catch (error) {
    return error as InvalidInputError;
  }
}

/** What an AbortSignal's reason says: an Error's message, else the value as text. */
function abortReasonText(reason: unknown): string {
  if (reason instanceof Error) return reason.message;
  return reason === undefined ? 'aborted' : String(reason);
}

interface PendingCall {
  path: string;
  settle: (outcome: { ok: true; payload: Uint8Array } | { ok: false; error: AgentStatusError }) => void;
}

export class TtrpcClient {
  private nextStreamId = 1;
  private readonly pending = new Map<number, PendingCall>();
  private readonly decoder: FrameDecoder;
  private closedReason: AgentStatusError | undefined;

  constructor(
    private readonly stream: Duplex,
    options: { maxFrameLength?: number } = {},
  ) {
    this.decoder = new FrameDecoder(options.maxFrameLength ?? MAX_FRAME_LENGTH);
    stream.on('data', (chunk: Buffer) => this.receive(chunk));
    stream.on('error', (error) => this.shutDown(`connection failed: ${error.message}`, error));
    stream.on('close', () => this.shutDown('connection closed'));
    stream.on('end', () => this.shutDown('connection closed by the agent'));
  }

  /** Calls are in flight (answers not yet received). */
  get inFlight(): number {
    return this.pending.size;
  }

  get closed(): boolean {
    return this.closedReason !== undefined;
  }

  async call<Input extends DescMessage, Output extends DescMessage>(
    method: UnaryMethod<Input, Output>,
    request: MessageInitShape<Input>,
    options: CallOptions = {},
  ): Promise<MessageShape<Output>> {
    const payload = toBinary(method.input, create(method.input, request));
    const answer = await this.callRaw(method, payload, options);
    try {
      return fromBinary(method.output, answer);
    } catch (error) {
      throw new AgentStatusError(
        StatusCode.INTERNAL,
        `undecodable ${method.output.typeName} in the answer: ${(error as Error).message}`,
        methodPath(method),
        { local: true, cause: error },
      );
    }
  }

  /** One call with an already encoded request; resolves with the encoded answer. */
  callRaw(
    method: { service: string; method: string },
    payload: Uint8Array,
    options: CallOptions = {},
  ): Promise<Uint8Array> {
    const path = methodPath(method);
    const fail = (status: number, message: string, cause?: unknown) =>
      Promise.reject(new AgentStatusError(status, message, path, { local: true, cause }));
    const refused = refusedCallOptions(options);
    if (refused) return Promise.reject(refused);
    if (this.closedReason) return fail(StatusCode.UNAVAILABLE, this.closedReason.statusMessage);
    if (options.signal?.aborted) {
      const reason = options.signal.reason;
      return fail(StatusCode.CANCELLED, `cancelled before it was sent: ${abortReasonText(reason)}`, reason);
    }
    if (this.nextStreamId > 0xffffffff) return fail(StatusCode.RESOURCE_EXHAUSTED, 'stream ids exhausted: reconnect');

    const timeoutMs = options.timeoutMs;
    const request: Request = create(RequestSchema, {
      service: method.service,
      method: method.method,
      payload,
      // The agent bounds its own work by the same deadline.
      timeoutNano: timeoutMs !== undefined && timeoutMs > 0 ? BigInt(Math.ceil(timeoutMs * 1e6)) : 0n,
      metadata: Object.entries(options.metadata ?? {}).map(([key, value]) => ({ key, value })),
    });
    const body = toBinary(RequestSchema, request);
    if (body.length > MAX_FRAME_LENGTH) {
      return fail(
        StatusCode.RESOURCE_EXHAUSTED,
        `request of ${body.length} bytes exceeds ttrpc's limit of ${MAX_FRAME_LENGTH}`,
      );
    }
    const streamId = this.nextStreamId;
    this.nextStreamId += 2;

    return new Promise<Uint8Array>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      // The caller's reason (signal.abort(reason)) is what they need to see: in the message and as the cause.
      const aborted = () => {
        const reason = options.signal?.reason;
        finish({ ok: false, error: local(StatusCode.CANCELLED, `cancelled: ${abortReasonText(reason)}`, reason) });
      };
      const local = (status: number, message: string, cause?: unknown) =>
        new AgentStatusError(status, message, path, { local: true, cause });
      const finish: PendingCall['settle'] = (outcome) => {
        if (!this.pending.delete(streamId)) return;
        if (timer) clearTimeout(timer);
        stopWaiting?.();
        if (outcome.ok) resolve(outcome.payload);
        else reject(outcome.error);
      };
      this.pending.set(streamId, { path, settle: finish });
      if (timeoutMs !== undefined && timeoutMs > 0) {
        timer = setTimeout(
          () => finish({ ok: false, error: local(StatusCode.DEADLINE_EXCEEDED, `no answer within ${timeoutMs} ms`) }),
          timeoutMs,
        );
      }
      // One listener per signal for all calls (abort-listeners.ts): a daemon's one signal on many requests.
      const stopWaiting = options.signal ? onAbort(options.signal, aborted) : undefined;
      this.stream.write(encodeFrame(streamId, FrameType.REQUEST, 0, body), (error) => {
        if (error) finish({ ok: false, error: local(StatusCode.UNAVAILABLE, `sending failed: ${error.message}`) });
      });
    });
  }

  /** Closes the connection; calls in flight fail with UNAVAILABLE. */
  close(): void {
    this.shutDown('client closed');
    // With nothing left to send, the descriptor closes now, not when the event loop next runs: a VM's
    // agent port (QEMU's chardev socket) serves one client at a time, and the next one (another
    // process, run synchronously right after) would wait behind this connection and get no answer.
    if (this.stream.writableLength === 0) this.stream.destroy();
    else endThenDestroy(this.stream);
  }

  [Symbol.dispose](): void {
    this.close();
  }

  private receive(chunk: Buffer): void {
    for (const frame of this.decoder.push(chunk)) {
      const call = this.pending.get(frame.header.streamId);
      // Answers to calls that already timed out, and frames of other types, are dropped.
      if (!call || frame.header.type !== FrameType.RESPONSE) continue;
      if (frame.kind === 'oversized') {
        call.settle({
          ok: false,
          error: new AgentStatusError(
            StatusCode.RESOURCE_EXHAUSTED,
            `answer of ${frame.header.length} bytes exceeds ttrpc's limit of ${MAX_FRAME_LENGTH}`,
            call.path,
            { local: true },
          ),
        });
        continue;
      }
      try {
        const response = fromBinary(ResponseSchema, frame.payload);
        const status = response.status;
        if (status && status.code !== StatusCode.OK) {
          call.settle({ ok: false, error: new AgentStatusError(status.code, status.message, call.path) });
        } else {
          call.settle({ ok: true, payload: response.payload });
        }
      } catch (error) {
        call.settle({
          ok: false,
          error: new AgentStatusError(
            StatusCode.INTERNAL,
            `undecodable ttrpc response: ${(error as Error).message}`,
            call.path,
            { local: true, cause: error },
          ),
        });
      }
    }
  }

  private shutDown(reason: string, cause?: unknown): void {
    if (!this.closedReason) {
      this.closedReason = new AgentStatusError(StatusCode.UNAVAILABLE, reason, 'ttrpc', { local: true, cause });
    }
    for (const [, call] of this.pending) {
      call.settle({
        ok: false,
        error: new AgentStatusError(StatusCode.UNAVAILABLE, reason, call.path, { local: true, cause }),
      });
    }
  }
}
