/**
 * The netlink request/reply protocol with no I/O (the sans-IO shape of rust-netlink's netlink-proto):
 * encoded requests and received datagrams go in; the bytes to send next, finished requests and
 * multicast notifications come out. The socket below it (socket.ts) and the glue that pumps bytes
 * between the two (transport.ts) hold no protocol state, so everything here is tested on recorded
 * kernel bytes without a socket.
 *
 * What it knows about the kernel:
 * - every request carries its own sequence number; a change is answered by NLMSG_ERROR (errno 0 is
 *   the ack, asked for with NLM_F_ACK), a dump by NLM_F_MULTI messages ended by NLMSG_DONE, whose
 *   payload is an errno too (with extended-ack text when the dump failed);
 * - a socket runs one dump at a time (a second gets EBUSY): a dump ends a segment, and nothing more
 *   is sent until it is done, across batches too;
 * - the kernel handles every message of a sendto() before it returns and queues each answer on our
 *   socket; answers beyond the receive buffer are dropped (the next receive fails with ENOBUFS), so
 *   a batch goes out in segments of at most MAX_UNANSWERED requests, each only once every earlier
 *   request has its answer (a macvtap detach restoring 20,000 routes lost its acks, and with them
 *   the knowledge of which deletes had been done);
 * - a dump during which the namespace changed is marked NLM_F_DUMP_INTR (the kernel compares a
 *   generation counter between the chunks of a dump): its messages may be half old, half new. It is
 *   sent again under a fresh sequence number, up to `maxDumpAttempts` times, then fails with a
 *   DumpInterruptedError instead of being used;
 * - a receive that fails with ENOBUFS (the socket's queue overflowed and the kernel dropped
 *   something: an ack, a notification; or it was short of memory for the next part of a dump) during
 *   a dump: the dump is read to its end and thrown away, then sent again under a fresh sequence number,
 *   like an interrupted one (`maxDumpAttempts` in all), then fails with a DumpOverrunError. The kernel
 *   goes on with a dump after ENOBUFS (the next receive makes the next part), and refuses another
 *   dump on the socket (EBUSY) until it is done, so it is drained first. A change
 *   whose answer was still out fails with the receive's error: the kernel ran it, and whether its ack
 *   was lost is not known (the caller decides; a change is not sent twice); what is queued behind
 *   it fails as never sent (nothing of it was made);
 * - answers to our requests carry our socket's port id (the kernel gives it at bind(), getsockname
 *   tells it) and our sequence number; multicast notifications carry the sequence number and port of
 *   whoever caused them (`ip addr add` sets its own, the kernel's own changes 0), so a message from
 *   another port is a notification whatever its sequence number, and so is any message that answers
 *   none of our requests, and a data message carrying the sequence of one of our changes (the
 *   multicast copy of our own change, which reaches our socket when it listens).
 */

import { errnoOf } from '../errors.js';
import { MessageFlag, MessageType } from './codec/constants.js';
import { type DecodedError, decodeDone, decodeError, type RawMessage, splitMessages } from './codec/reader.js';
import { DumpInterruptedError, DumpOverrunError, NetlinkError } from './errors.js';

/** Where a request's sequence number sits in its netlink header. */
const SEQUENCE_OFFSET = 8;

/**
 * At most this many requests are sent and not yet answered. An ack takes about 1 KiB of the receive
 * buffer (the skb around it), which the shim asks to be 4 MiB but an unprivileged socket gets at
 * rmem_max (208 KiB by default): 256 fit in both. An attach's batch is far below it.
 */
export const MAX_UNANSWERED = 256;

/** How often a dump marked interrupted (or overrun: ENOBUFS) is sent in all before giving up. */
export const DEFAULT_MAX_DUMP_ATTEMPTS = 5;

export interface ProtocolRequest {
  sequence: number;
  /** The request's message type (RTM_*). */
  type: number;
  /** A GET with NLM_F_DUMP: answered by many messages and NLMSG_DONE. */
  dump: boolean;
  /** What the caller said it was doing, for error messages ("add qdisc ingress on eth0"). */
  description: string;
}

/** The answer to one request of a batch: the messages the kernel sent for it, or its error. */
export type RequestOutcome = { ok: true; messages: RawMessage[] } | { ok: false; error: NetlinkError };

export type ProtocolEvent =
  /** Every request of a submitted batch has its answer; outcomes are in request order. */
  | { kind: 'completed'; batch: number; outcomes: RequestOutcome[] }
  /** A message that answers none of our requests (multicast). */
  | { kind: 'notification'; message: RawMessage }
  /**
   * A dump came back marked NLM_F_DUMP_INTR, or a receive during it failed with ENOBUFS, and it was
   * sent again (attempt counts from 2).
   */
  | { kind: 'dump-retried'; request: ProtocolRequest; attempt: number; reason: DumpRetryReason };

/** Why a dump was sent again: the namespace changed during it, or the socket's queue overflowed. */
export type DumpRetryReason = 'interrupted' | 'overrun';

export interface ProtocolOptions {
  /**
   * The socket's port id (getsockname's nl_pid): a message is an answer only if it carries it and
   * the sequence number of a request in flight.
   */
  portId: number;
  /** Named in error messages. */
  namespacePath?: string;
  maxDumpAttempts?: number;
  /** The first sequence number is this + 1 (random by default, so two sockets rarely collide). */
  initialSequence?: number;
}

interface BatchState {
  outcomes: Array<RequestOutcome | undefined>;
  remaining: number;
}

interface InFlight {
  request: ProtocolRequest;
  batch: number;
  position: number;
  messages: RawMessage[];
  /** Some message of this dump carried NLM_F_DUMP_INTR. */
  interrupted: boolean;
  /** A receive failed with ENOBUFS during this attempt: its messages are read to the end and dropped. */
  overrun: boolean;
  /** That receive's error, for the DumpOverrunError of the last attempt. */
  overrunCause?: Error;
  attempt: number;
  /** The request's own bytes, kept for dumps so an interrupted one can be sent again. */
  bytes?: Buffer;
}

interface Segment {
  bytes: Buffer;
  entries: InFlight[];
}

/** A GET request (RTM_GET*): its data replies are answers, not notifications. */
export function isGetRequest(type: number): boolean {
  return type >= 16 && (type & 3) === 2;
}

export class NetlinkProtocol {
  private sequence: number;
  private nextBatch = 1;
  private readonly batches = new Map<number, BatchState>();
  /** Sent, waiting for their answer, by sequence number. */
  private readonly inFlight = new Map<number, InFlight>();
  /** Built, not sent yet. */
  private readonly queue: Segment[] = [];
  /** The segment last handed out by pollTransmit(), until the next call. */
  private lastSent: Segment | undefined;
  /** A dump is in flight: nothing more goes out until it ends. */
  private dumping = false;
  /** Our socket's port id: answers carry it, others' notifications do not. */
  private readonly portId: number;
  private events: ProtocolEvent[] = [];
  private readonly namespacePath: string | undefined;
  private readonly maxDumpAttempts: number;

  constructor(options: ProtocolOptions) {
    this.portId = options.portId;
    this.namespacePath = options.namespacePath;
    this.maxDumpAttempts = Math.max(1, options.maxDumpAttempts ?? DEFAULT_MAX_DUMP_ATTEMPTS);
    this.sequence = options.initialSequence ?? Math.floor(Math.random() * 0x7fffffff);
  }

  /** The sequence number for the next request (never 0, which kernel-originated messages use). */
  nextSequence(): number {
    this.sequence = (this.sequence + 1) & 0x7fffffff || 1;
    return this.sequence;
  }

  /**
   * Queues a batch: `bytes` holds the requests' messages back to back (as built by one writer) and
   * `ends[i]` is where request i ends. Returns the id its 'completed' event will carry.
   */
  submit(bytes: Buffer, requests: readonly ProtocolRequest[], ends: readonly number[]): number {
    const batch = this.nextBatch++;
    if (requests.length === 0) {
      this.events.push({ kind: 'completed', batch, outcomes: [] });
      return batch;
    }
    this.batches.set(batch, { outcomes: new Array(requests.length), remaining: requests.length });
    let segmentStart = 0;
    let entries: InFlight[] = [];
    requests.forEach((request, position) => {
      const start = position === 0 ? 0 : ends[position - 1]!;
      const end = ends[position]!;
      const entry: InFlight = {
        request,
        batch,
        position,
        messages: [],
        interrupted: false,
        overrun: false,
        attempt: 1,
      };
      if (request.dump) entry.bytes = Buffer.from(bytes.subarray(start, end));
      entries.push(entry);
      // A dump ends a segment: what follows it waits for its NLMSG_DONE. So does the request that
      // makes a segment MAX_UNANSWERED long: the next waits until the answers are in.
      if (request.dump || entries.length === MAX_UNANSWERED || position === requests.length - 1) {
        this.queue.push({ bytes: bytes.subarray(segmentStart, end), entries });
        segmentStart = end;
        entries = [];
      }
    });
    return batch;
  }

  /** Whether pollTransmit() would hand out bytes now. */
  get canTransmit(): boolean {
    const next = this.queue[0];
    if (this.dumping || next === undefined) return false;
    return this.inFlight.size === 0 || this.inFlight.size + next.entries.length <= MAX_UNANSWERED;
  }

  /** Requests sent and not answered yet, plus those queued. */
  get pending(): number {
    return this.inFlight.size + this.queue.reduce((sum, segment) => sum + segment.entries.length, 0);
  }

  /**
   * The next bytes to send (one sendto), or undefined while a dump is under way or nothing is
   * queued. Their requests count as sent from now on.
   */
  pollTransmit(): Buffer | undefined {
    if (!this.canTransmit) return undefined;
    const segment = this.queue.shift()!;
    for (const entry of segment.entries) {
      this.inFlight.set(entry.request.sequence, entry);
      if (entry.request.dump) this.dumping = true;
    }
    this.lastSent = segment;
    return segment.bytes;
  }

  /** The requests of the bytes last returned by pollTransmit(). */
  get lastSentRequests(): readonly ProtocolRequest[] {
    return this.lastSent?.entries.map((entry) => entry.request) ?? [];
  }

  /** The bytes last returned by pollTransmit() could not be sent: their requests fail with `cause`. */
  transmitFailed(cause: Error): void {
    const segment = this.lastSent;
    this.lastSent = undefined;
    if (!segment) return;
    for (const entry of segment.entries) {
      if (this.inFlight.get(entry.request.sequence) !== entry) continue;
      this.finish(entry, { ok: false, error: NetlinkError.fromFailure(entry.request, cause, this.namespacePath) });
    }
  }

  /**
   * One datagram read from the socket (whole messages). Malformed bytes fail every request waiting
   * (their answers may be in them) and are thrown to the caller.
   */
  receive(datagram: Buffer): void {
    let messages: RawMessage[];
    try {
      messages = splitMessages(datagram);
    } catch (error) {
      this.failAll(error as Error);
      throw error;
    }
    for (const message of messages) this.dispatch(message);
  }

  /**
   * A receive failed with `cause`. ENOBUFS during a dump: the dump is drained and sent again (see the
   * header), also when a change sent with it fails (the kernel goes on sending it); failed at once
   * on ENOBUFS while its last attempt is drained. A change still waiting fails with it, its answer lost, and then
   * what is queued fails as never sent (what follows a change may depend on it). Any other error
   * fails everything waiting. What is only queued stays when nothing failed.
   */
  receiveFailed(cause: Error): void {
    if (errnoOf(cause) !== 'ENOBUFS') {
      this.failAll(cause);
      return;
    }
    let changeFailed = false;
    for (const entry of [...this.inFlight.values()]) {
      if (!entry.request.dump) {
        this.finish(entry, { ok: false, error: NetlinkError.fromFailure(entry.request, cause, this.namespacePath) });
        changeFailed = true;
      } else if (entry.overrun && entry.attempt >= this.maxDumpAttempts) {
        // ENOBUFS again and again while draining the last attempt: given up, so that a receive that
        // fails every time (no datagram read) cannot keep the pump looping.
        this.finish(entry, {
          ok: false,
          error: new DumpOverrunError(entry.request, entry.attempt, cause, this.namespacePath),
        });
        changeFailed = true;
      } else if (entry.overrun) {
        entry.attempt++;
      } else {
        entry.overrun = true;
        entry.overrunCause = cause;
      }
    }
    if (changeFailed) this.failQueued(cause);
  }

  /** Fails every queued request, none of which was sent, as not sent (NetlinkError.notSent). */
  private failQueued(cause: Error): void {
    const entries = this.queue.flatMap((segment) => segment.entries);
    this.queue.length = 0;
    for (const entry of entries) {
      this.finish(entry, { ok: false, error: NetlinkError.notSent(entry.request, cause, this.namespacePath) });
    }
  }

  /** Fails every queued and in-flight request (the socket closed or a receive failed). */
  failAll(cause: Error): void {
    const entries = [...this.inFlight.values(), ...this.queue.flatMap((segment) => segment.entries)];
    this.queue.length = 0;
    for (const entry of entries) {
      this.finish(entry, { ok: false, error: NetlinkError.fromFailure(entry.request, cause, this.namespacePath) });
    }
  }

  /** What happened since the last call, in order. */
  takeEvents(): ProtocolEvent[] {
    const events = this.events;
    this.events = [];
    return events;
  }

  private dispatch(message: RawMessage): void {
    if (message.type === MessageType.NOOP) return;
    const entry = this.inFlight.get(message.sequence);
    // Answers to us carry our port id; another process's change may reuse our sequence number.
    if (!entry || message.portId !== this.portId) {
      this.events.push({ kind: 'notification', message });
      return;
    }
    if (entry.overrun) {
      // Read to its end and dropped; sent again once it has ended (or failed).
      if (message.type === MessageType.ERROR || message.type === MessageType.DONE) this.retryOverrun(entry);
      return;
    }
    if (message.type === MessageType.ERROR) {
      this.settle(entry, decodeError(message));
      return;
    }
    if (message.type === MessageType.DONE) {
      if (message.flags & MessageFlag.DUMP_INTR) entry.interrupted = true;
      this.settle(entry, decodeDone(message));
      return;
    }
    if (!isGetRequest(entry.request.type)) {
      // Changes are answered by an ack only: this is the multicast copy of our own change.
      this.events.push({ kind: 'notification', message });
      return;
    }
    if (message.flags & MessageFlag.DUMP_INTR) entry.interrupted = true;
    entry.messages.push(message);
  }

  /** The request's last message (ack, error or end of dump) arrived. */
  private settle(entry: InFlight, answer: DecodedError): void {
    if (answer.errno !== 0) {
      this.finish(entry, { ok: false, error: new NetlinkError(entry.request, answer, this.namespacePath) });
      return;
    }
    if (entry.request.dump && entry.interrupted) {
      if (entry.attempt < this.maxDumpAttempts) {
        this.resend(entry, 'interrupted');
        return;
      }
      this.finish(entry, {
        ok: false,
        error: new DumpInterruptedError(entry.request, entry.attempt, this.namespacePath),
      });
      return;
    }
    this.finish(entry, { ok: true, messages: entry.messages });
  }

  /** An overrun dump has ended: sent again, or failed once it has had all its attempts. */
  private retryOverrun(entry: InFlight): void {
    if (entry.attempt < this.maxDumpAttempts) {
      this.resend(entry, 'overrun');
      return;
    }
    this.finish(entry, {
      ok: false,
      error: new DumpOverrunError(entry.request, entry.attempt, entry.overrunCause!, this.namespacePath),
    });
  }

  /** Sends an interrupted or overrun dump again, first in line, under a new sequence number. */
  private resend(entry: InFlight, reason: DumpRetryReason): void {
    this.inFlight.delete(entry.request.sequence);
    if (entry.request.dump) this.dumping = false;
    const sequence = this.nextSequence();
    const bytes = Buffer.from(entry.bytes!);
    bytes.writeUInt32LE(sequence, SEQUENCE_OFFSET);
    const retry: InFlight = {
      ...entry,
      request: { ...entry.request, sequence },
      messages: [],
      interrupted: false,
      overrun: false,
      overrunCause: undefined,
      attempt: entry.attempt + 1,
      bytes,
    };
    this.queue.unshift({ bytes, entries: [retry] });
    this.events.push({ kind: 'dump-retried', request: retry.request, attempt: retry.attempt, reason });
  }

  private finish(entry: InFlight, outcome: RequestOutcome): void {
    this.inFlight.delete(entry.request.sequence);
    if (entry.request.dump) this.dumping = false;
    const batch = this.batches.get(entry.batch);
    if (!batch || batch.outcomes[entry.position] !== undefined) return;
    batch.outcomes[entry.position] = outcome;
    batch.remaining--;
    if (batch.remaining === 0) {
      this.batches.delete(entry.batch);
      this.events.push({ kind: 'completed', batch: entry.batch, outcomes: batch.outcomes as RequestOutcome[] });
    }
  }
}
