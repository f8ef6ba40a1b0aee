/**
 * ttrpc server over any Duplex byte stream: decodes frames as they arrive (in any pieces), dispatches
 * requests by service and method, and answers each on its stream id with a google.rpc.Status. Nothing a
 * peer sends can throw out of here: bad frames get an error status (as containerd's ttrpc answers them)
 * and the connection carries on.
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
import { AgentStatusError } from '../errors.js';
import { type Request, RequestSchema, ResponseSchema } from '../generated/ttrpc_pb.js';
import { encodeFrame, endThenDestroy, FrameDecoder, FrameType, MAX_FRAME_LENGTH } from './frame.js';
import { methodPath, type UnaryMethod } from './method.js';
import { StatusCode } from './status-code.js';

/** What a ttrpc method handler learns about the call it serves besides its payload. */
export interface CallContext {
  service: string;
  method: string;
  streamId: number;
  /** Aborted at the caller's deadline (timeout_nano) or when the connection closes. */
  signal: AbortSignal;
  metadata: ReadonlyArray<{ key: string; value: string }>;
}

/**
 * A raw ttrpc method handler: the request's bytes in, the answer's bytes out. Throw to answer with an error
 * status (see `TtrpcServerOptions.statusOf`).
 */
export type UnaryHandler = (payload: Uint8Array, context: CallContext) => Promise<Uint8Array> | Uint8Array;

/** A ttrpc status: a gRPC code (0 is OK) and its message. */
export interface Status {
  code: number;
  message: string;
}

/**
 * Options of a `TtrpcServer`: how a thrown error becomes a status, the largest frame accepted (bytes), and a
 * callback for failed calls.
 */
export interface TtrpcServerOptions {
  /** Turns what a handler threw into a status; the default keeps AgentStatusError's, else INTERNAL. */
  statusOf?: (error: unknown) => Status;
  maxFrameLength?: number;
  /** Told about every failed call and connection problem (for logs); never affects the answer. */
  onCallFailed?: (
    context: { service: string; method: string; streamId: number },
    status: Status,
    error: unknown,
  ) => void;
}

export function defaultStatusOf(error: unknown): Status {
  if (error instanceof AgentStatusError) return { code: error.status, message: error.statusMessage };
  return { code: StatusCode.INTERNAL, message: error instanceof Error ? error.message : String(error) };
}

/**
 * A ttrpc server (the protocol the Kata agent speaks over vsock): register methods, then `serve` each
 * accepted stream. `createAgentServer` makes one that serves the agent's network calls.
 */
export class TtrpcServer {
  private readonly handlers = new Map<string, Map<string, UnaryHandler>>();

  constructor(readonly options: TtrpcServerOptions = {}) {}

  /** Registers a typed unary method: requests are decoded (INVALID_ARGUMENT if they cannot be) and answers encoded. */
  register<Input extends DescMessage, Output extends DescMessage>(
    method: UnaryMethod<Input, Output>,
    handler: (request: MessageShape<Input>, context: CallContext) => Promise<MessageInitShape<Output>>,
  ): this {
    return this.registerRaw(method.service, method.method, async (payload, context) => {
      let request: MessageShape<Input>;
      try {
        request = fromBinary(method.input, payload);
      } catch (error) {
        throw new AgentStatusError(
          StatusCode.INVALID_ARGUMENT,
          `undecodable ${method.input.typeName}: ${(error as Error).message}`,
          methodPath(method),
          { cause: error },
        );
      }
      const answer = await handler(request, context);
      return toBinary(method.output, create(method.output, answer));
    });
  }

  registerRaw(service: string, method: string, handler: UnaryHandler): this {
    let methods = this.handlers.get(service);
    if (!methods) {
      methods = new Map();
      this.handlers.set(service, methods);
    }
    methods.set(method, handler);
    return this;
  }

  /** Serves one connection until it closes. */
  serve(stream: Duplex): TtrpcConnection {
    return new TtrpcConnection(stream, this.handlers, this.options);
  }
}

/**
 * One client's ttrpc session on a stream, from `TtrpcServer.serve`. Serves calls until the peer closes,
 * `close()` or `[Symbol.dispose]`; `done` resolves then.
 */
export class TtrpcConnection {
  /** Resolves when the connection has closed (by the peer, an error, or close()). */
  readonly done: Promise<void>;
  private readonly decoder: FrameDecoder;
  private readonly active = new Map<number, AbortController>();
  private lastStreamId = 0;
  private open = true;
  private resolveDone!: () => void;

  constructor(
    private readonly stream: Duplex,
    private readonly handlers: ReadonlyMap<string, ReadonlyMap<string, UnaryHandler>>,
    private readonly options: TtrpcServerOptions,
  ) {
    this.decoder = new FrameDecoder(options.maxFrameLength ?? MAX_FRAME_LENGTH);
    this.done = new Promise((resolve) => {
      this.resolveDone = resolve;
    });
    stream.on('data', (chunk: Buffer) => this.receive(chunk));
    // A peer that vanishes mid-write gives EPIPE/ECONNRESET: that ends the connection, not the process.
    stream.on('error', () => this.shutDown());
    stream.on('end', () => this.shutDown());
    stream.on('close', () => this.shutDown());
  }

  /** Calls being handled now. */
  get activeCalls(): number {
    return this.active.size;
  }

  /** Stops answering and ends the stream (the peer sees end of stream); destroys it if that lingers. */
  close(): void {
    this.shutDown();
    endThenDestroy(this.stream);
  }

  [Symbol.dispose](): void {
    this.close();
  }

  private receive(chunk: Buffer): void {
    for (const frame of this.decoder.push(chunk)) {
      const { streamId, type, length } = frame.header;
      if (frame.kind === 'oversized') {
        const limit = this.options.maxFrameLength ?? MAX_FRAME_LENGTH;
        this.reject(
          streamId,
          StatusCode.RESOURCE_EXHAUSTED,
          `message length ${length} exceed maximum message size of ${limit}`,
        );
        continue;
      }
      if (streamId % 2 !== 1) {
        this.reject(streamId, StatusCode.INVALID_ARGUMENT, 'StreamID must be odd for client initiated streams');
        continue;
      }
      if (type === FrameType.DATA) {
        // Only unary calls exist here: there is never an open stream to take data.
        this.reject(streamId, StatusCode.INVALID_ARGUMENT, 'StreamID is no longer active');
        continue;
      }
      // Responses and types from a newer ttrpc are not for a server: ignored, as ttrpc does.
      if (type !== FrameType.REQUEST) continue;
      if (streamId <= this.lastStreamId) {
        this.reject(streamId, StatusCode.INVALID_ARGUMENT, 'StreamID cannot be re-used and must increment');
        continue;
      }
      this.lastStreamId = streamId;
      this.dispatch(streamId, frame.payload);
    }
  }

  private dispatch(streamId: number, body: Uint8Array): void {
    let request: Request;
    try {
      request = fromBinary(RequestSchema, body);
    } catch (error) {
      this.reject(streamId, StatusCode.INVALID_ARGUMENT, `unmarshal request error: ${(error as Error).message}`);
      return;
    }
    const handler = this.handlers.get(request.service)?.get(request.method);
    if (!handler) {
      const known = this.handlers.has(request.service);
      this.reject(
        streamId,
        StatusCode.UNIMPLEMENTED,
        known ? `method ${request.method}` : `service ${request.service}`,
        request,
      );
      return;
    }
    const controller = new AbortController();
    this.active.set(streamId, controller);
    let timer: NodeJS.Timeout | undefined;
    if (request.timeoutNano > 0n) {
      const milliseconds = Number(request.timeoutNano / 1_000_000n);
      timer = setTimeout(
        () =>
          controller.abort(
            new AgentStatusError(StatusCode.DEADLINE_EXCEEDED, 'deadline exceeded', methodPath(request)),
          ),
        Math.min(milliseconds, 0x7fffffff),
      );
    }
    const context: CallContext = {
      service: request.service,
      method: request.method,
      streamId,
      signal: controller.signal,
      metadata: request.metadata.map(({ key, value }) => ({ key, value })),
    };
    // The handler runs on its own: other requests on this connection are not held behind it.
    Promise.resolve()
      .then(() => handler(request.payload, context))
      .then(
        (payload) => this.answer(streamId, { code: StatusCode.OK, message: '' }, payload, request),
        (error: unknown) => {
          const status = (this.options.statusOf ?? defaultStatusOf)(error);
          this.options.onCallFailed?.({ service: request.service, method: request.method, streamId }, status, error);
          this.answer(streamId, status, new Uint8Array(0), request);
        },
      )
      .finally(() => {
        if (timer) clearTimeout(timer);
        this.active.delete(streamId);
      });
  }

  private reject(streamId: number, code: number, message: string, request?: { service: string; method: string }): void {
    this.options.onCallFailed?.(
      { service: request?.service ?? '', method: request?.method ?? '', streamId },
      { code, message },
      undefined,
    );
    this.answer(streamId, { code, message }, new Uint8Array(0), request);
  }

  private answer(
    streamId: number,
    status: Status,
    payload: Uint8Array,
    request?: { service: string; method: string },
  ): void {
    if (!this.open) return;
    let body = toBinary(ResponseSchema, create(ResponseSchema, { status, payload }));
    if (body.length > MAX_FRAME_LENGTH) {
      const tooLarge = {
        code: StatusCode.RESOURCE_EXHAUSTED,
        message: `answer of ${body.length} bytes exceeds ttrpc's limit of ${MAX_FRAME_LENGTH}`,
      };
      this.options.onCallFailed?.(
        { service: request?.service ?? '', method: request?.method ?? '', streamId },
        tooLarge,
        undefined,
      );
      body = toBinary(ResponseSchema, create(ResponseSchema, { status: tooLarge }));
    }
    this.stream.write(encodeFrame(streamId, FrameType.RESPONSE, 0, body));
  }

  private shutDown(): void {
    if (!this.open) return;
    this.open = false;
    for (const controller of this.active.values()) {
      controller.abort(new AgentStatusError(StatusCode.CANCELLED, 'connection closed', 'ttrpc'));
    }
    this.resolveDone();
  }
}
