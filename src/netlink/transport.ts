/**
 * One NETLINK_ROUTE socket bound to one namespace. Requests are written into a batch (one buffer,
 * one sendto()), each with its own sequence number; replies are matched back by sequence.
 *
 * rtnetlink handles requests inside sendto(), so replies are usually queued before it returns: the
 * receive loop first drains the socket synchronously and only waits on the event loop (uv_poll) when
 * a reply is genuinely not there yet (long dumps). That keeps a ten-request attach at one send and a
 * few receives, with no event-loop round trip.
 */
import { SystemCallError } from '../errors.js';
import { nativeShim, type WatchHandle } from '../native/binding.js';
import { withSpan } from '../observability/tracing.js';
import { MessageFlag, MessageType, NETLINK_ROUTE } from './codec/constants.js';
import { decodeError, type RawMessage, splitMessages } from './codec/reader.js';
import { MessageWriter } from './codec/writer.js';
import { NetlinkError } from './errors.js';

const RECEIVE_BUFFER_SIZE = 1 << 20;

export interface PendingRequest {
  sequence: number;
  type: number;
  dump: boolean;
  /** What the caller said it was doing, for error messages ("add qdisc ingress on eth0"). */
  description: string;
}

export type RequestOutcome = { ok: true; messages: RawMessage[] } | { ok: false; error: NetlinkError };

interface InFlight {
  request: PendingRequest;
  messages: RawMessage[];
  settle: (outcome: RequestOutcome) => void;
}

/** A batch of requests being built; send() returns one outcome per request, in order. */
export class RequestBatch {
  readonly writer = new MessageWriter();
  readonly requests: PendingRequest[] = [];
  /** Where each request ends in the writer's buffer, to split the batch around dumps. */
  readonly ends: number[] = [];

  constructor(private readonly socket: NetlinkSocket) {}

  /**
   * Adds a request: `encode` writes the family header and attributes. Acks are always requested so
   * that every change is confirmed or refused individually.
   */
  add(type: number, flags: number, description: string, encode: (writer: MessageWriter) => void): this {
    const sequence = this.socket.nextSequence();
    const dump = (flags & MessageFlag.DUMP) === MessageFlag.DUMP && isGet(type);
    this.writer.beginMessage(type, flags | MessageFlag.REQUEST | (dump ? 0 : MessageFlag.ACK), sequence);
    encode(this.writer);
    this.writer.endMessage();
    this.requests.push({ sequence, type, dump, description });
    this.ends.push(this.writer.length);
    return this;
  }

  get size(): number {
    return this.requests.length;
  }

  send(): Promise<RequestOutcome[]> {
    return this.socket.exchange(this);
  }
}

function isGet(type: number): boolean {
  return type >= 16 && (type & 3) === 2;
}

export class NetlinkSocket {
  private sequence = Math.floor(Math.random() * 0x7fffffff);
  private readonly inFlight = new Map<number, InFlight>();
  private readonly receiveBuffer = Buffer.allocUnsafe(RECEIVE_BUFFER_SIZE);
  private watcher: WatchHandle | undefined;
  private closed = false;
  /** Multicast was asked for: keep polling between requests. */
  private listening = false;
  /** Receives multicast messages (sequence 0) when the socket subscribed to groups. */
  onNotification: ((message: RawMessage) => void) | undefined;
  /** Called when a receive fails outside a request (ENOBUFS: events were lost). */
  onReceiveError: ((error: Error) => void) | undefined;

  private constructor(
    readonly fd: number,
    readonly namespacePath: string | undefined,
  ) {}

  static open(namespacePath?: string, groups = 0): NetlinkSocket {
    // Outside the try: a missing native shim is its own error (VCNET_NATIVE_MISSING), not a failed system call.
    const shim = nativeShim();
    try {
      const fd = shim.openNetlink(namespacePath ?? null, NETLINK_ROUTE, groups);
      return new NetlinkSocket(fd, namespacePath);
    } catch (error) {
      throw new SystemCallError(
        `open a netlink socket in ${namespacePath ?? 'the current namespace'}`,
        error as NodeJS.ErrnoException,
      );
    }
  }

  nextSequence(): number {
    this.sequence = (this.sequence + 1) & 0x7fffffff || 1;
    return this.sequence;
  }

  batch(): RequestBatch {
    return new RequestBatch(this);
  }

  /**
   * Sends a batch and resolves when every request in it has its ack, error or end of dump.
   * The kernel runs one dump per socket at a time (a second one gets EBUSY), so a dump ends a
   * segment: what follows it is sent once the dump is complete. Changes go out together.
   */
  exchange(batch: RequestBatch): Promise<RequestOutcome[]> {
    return withSpan(
      'vcnet.netlink.batch',
      { 'vcnet.netlink.requests': batch.size, 'vcnet.netns': this.namespacePath ?? '' },
      () => this.exchangeTraced(batch),
    );
  }

  private async exchangeTraced(batch: RequestBatch): Promise<RequestOutcome[]> {
    if (this.closed) throw new Error('netlink socket is closed');
    const buffer = batch.writer.finish();
    const outcomes: Array<Promise<RequestOutcome>> = [];
    let segmentStart = 0;
    let segmentFirst = 0;
    for (let position = 0; position < batch.requests.length; position++) {
      const last = position === batch.requests.length - 1;
      if (!batch.requests[position]!.dump && !last) continue;
      const segment = batch.requests.slice(segmentFirst, position + 1);
      const end = batch.ends[position]!;
      const settled = this.sendSegment(buffer.subarray(segmentStart, end), segment);
      outcomes.push(...settled);
      segmentStart = end;
      segmentFirst = position + 1;
      // Wait for the dump to end before the next segment; plain changes need no wait.
      if (!last) await settled[settled.length - 1];
    }
    return Promise.all(outcomes);
  }

  private sendSegment(bytes: Buffer, requests: PendingRequest[]): Array<Promise<RequestOutcome>> {
    const outcomes = requests.map(
      (request) =>
        new Promise<RequestOutcome>((settle) => {
          this.inFlight.set(request.sequence, { request, messages: [], settle });
        }),
    );
    try {
      nativeShim().netlinkSend(this.fd, bytes);
    } catch (error) {
      const failure = new SystemCallError('send a netlink request', error as NodeJS.ErrnoException);
      for (const request of requests) {
        const entry = this.inFlight.get(request.sequence);
        this.inFlight.delete(request.sequence);
        entry?.settle({ ok: false, error: NetlinkError.fromFailure(request, failure, this.namespacePath) });
      }
      return outcomes;
    }
    this.drain();
    if (this.inFlight.size > 0) this.watch();
    return outcomes;
  }

  /** Starts delivering multicast messages (groups given to open()) to onNotification. */
  startListening(): void {
    this.listening = true;
    this.watch();
  }

  /** Subscribes to more multicast groups (numbers as in RTNLGRP_*). */
  addMembership(group: number): void {
    nativeShim().addMembership(this.fd, group);
    this.listening = true;
    this.watch();
  }

  private watch(): void {
    if (this.watcher || this.closed) return;
    this.watcher = nativeShim().watchReadable(this.fd, () => {
      this.drain();
      if (this.inFlight.size === 0 && !this.listening) this.unwatch();
    });
  }

  private unwatch(): void {
    if (!this.watcher) return;
    nativeShim().unwatch(this.watcher);
    this.watcher = undefined;
  }

  /** Reads everything waiting on the socket and settles what it completes. */
  private drain(): void {
    const shim = nativeShim();
    for (;;) {
      let length: number;
      try {
        length = shim.netlinkRecv(this.fd, this.receiveBuffer);
      } catch (error) {
        const failure = new SystemCallError('receive netlink replies', error as NodeJS.ErrnoException);
        if (this.inFlight.size > 0) this.failAll(failure);
        else this.onReceiveError?.(failure);
        return;
      }
      if (length < 0) return;
      let messages: RawMessage[];
      try {
        // One copy per receive (the buffer is reused); messages are views into it.
        messages = splitMessages(Buffer.from(this.receiveBuffer.subarray(0, length)));
      } catch (error) {
        this.failAll(error as Error);
        return;
      }
      for (const message of messages) this.dispatch(message);
    }
  }

  private dispatch(message: RawMessage): void {
    const entry = this.inFlight.get(message.sequence);
    if (!entry) {
      // Multicast notifications carry the sequence number of whoever caused them (`ip addr add`
      // sets its own), so anything that answers none of our requests is a notification.
      this.onNotification?.(message);
      return;
    }
    if (message.type === MessageType.ERROR) {
      const error = decodeError(message);
      this.inFlight.delete(message.sequence);
      if (error.errno === 0) entry.settle({ ok: true, messages: entry.messages });
      else entry.settle({ ok: false, error: new NetlinkError(entry.request, error, this.namespacePath) });
      return;
    }
    if (message.type === MessageType.DONE) {
      this.inFlight.delete(message.sequence);
      entry.settle({ ok: true, messages: entry.messages });
      return;
    }
    entry.messages.push(message);
  }

  private failAll(error: Error): void {
    for (const [sequence, entry] of this.inFlight) {
      this.inFlight.delete(sequence);
      entry.settle({ ok: false, error: NetlinkError.fromFailure(entry.request, error, this.namespacePath) });
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.unwatch();
    this.failAll(new Error('netlink socket closed'));
    nativeShim().closeFd(this.fd);
  }
}
