/**
 * The glue between the netlink protocol (protocol.ts, no I/O) and one socket (socket.ts): requests
 * are written into a batch (one buffer, one sendto()), each with its own sequence number, and the
 * protocol matches the replies back.
 *
 * rtnetlink handles requests inside sendto(), so replies are usually queued before it returns: the
 * pump first drains the socket synchronously and only waits on the event loop (uv_poll) when a
 * reply is genuinely not there yet (long dumps). That keeps a ten-request attach at one send and a
 * few receives, with no event-loop round trip.
 */
import { constants as osConstants } from 'node:os';
import { channels, publish, traced, tracing } from '../diagnostics.js';
import { SystemCallError } from '../errors.js';
import { EVENT_LOOP_SLICE_MS } from '../event-loop.js';
import { testSeam } from '../test-seams.js';
import { MessageFlag, MessageType } from './codec/constants.js';
import type { RawMessage } from './codec/reader.js';
import { MessageWriter } from './codec/writer.js';
import { NetlinkClosedError } from './errors.js';
import { isGetRequest, NetlinkProtocol, type ProtocolRequest, type RequestOutcome } from './protocol.js';
import { RouteSocket } from './socket.js';

export type PendingRequest = ProtocolRequest;

/**
 * What the test seam below makes of the answers to one send: `answersRead` datagrams are read as
 * usual, then every datagram waiting is dropped and the receive fails with `errno`, as after an
 * overrun of the socket's receive buffer (ENOBUFS: the kernel drops what does not fit).
 */
export interface LostAnswers {
  errno: string;
  answersRead?: number;
}

/**
 * Test seam (never set in production): asked after each send has gone out (the kernel has run all
 * of it), with the requests it carried; a LostAnswers makes their answers lost. So a test puts a
 * change in the kernel and takes away the knowledge of it, as a receive failure does. Kept on
 * globalThis (src/test-seams.ts) like the executor's hook, so a test can set it in a bundled program.
 */
export type NetlinkRepliesTestHook = (requests: readonly ProtocolRequest[]) => LostAnswers | undefined;
const repliesSeam = testSeam<NetlinkRepliesTestHook>('netlinkReplies');

export function setNetlinkRepliesTestHook(hook: NetlinkRepliesTestHook | undefined): void {
  repliesSeam.set(hook);
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
    const dump = (flags & MessageFlag.DUMP) === MessageFlag.DUMP && isGetRequest(type);
    this.writer.beginMessage(type, flags | MessageFlag.REQUEST | (dump ? 0 : MessageFlag.ACK), sequence);
    try {
      encode(this.writer);
      this.writer.endMessage();
    } catch (error) {
      // The batch stays usable: the half-written message goes (its sequence number stays used).
      this.writer.abortMessage();
      throw error;
    }
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

/** Whether a batch's bytes hold an RTM_DELLINK (walking the message headers: length, then type). */
export function deletesLinks(bytes: Buffer): boolean {
  for (let offset = 0; offset + 16 <= bytes.length; ) {
    const length = bytes.readUInt32LE(offset);
    if (bytes.readUInt16LE(offset + 4) === MessageType.DELLINK) return true;
    if (length < 16) return false;
    offset += (length + 3) & ~3;
  }
  return false;
}

export class NetlinkSocket {
  private readonly protocol: NetlinkProtocol;
  private readonly waiting = new Map<number, (outcomes: RequestOutcome[]) => void>();
  private closed = false;
  /** Multicast was asked for: keep polling between requests. */
  private listening = false;
  /** A send is running on a pool thread: nothing else goes out until it is back (order). */
  private sendingInBackground = false;
  /** Receives every message that answers none of our requests (multicast notifications). */
  onNotification: ((message: RawMessage) => void) | undefined;
  /** Called when a receive fails outside a request (ENOBUFS: events were lost). */
  onReceiveError: ((error: Error) => void) | undefined;
  /** The answers the test seam said are lost (setNetlinkRepliesTestHook), until the receive fails. */
  private lostAnswers: { errno: string; answersRead: number; dump: boolean } | undefined;

  private constructor(
    private readonly socket: RouteSocket,
    readonly namespacePath: string | undefined,
  ) {
    this.protocol = new NetlinkProtocol({ portId: socket.portId, namespacePath });
  }

  static open(namespacePath?: string, groups = 0, label = namespacePath): NetlinkSocket {
    return new NetlinkSocket(RouteSocket.open(namespacePath, groups), label);
  }

  /** The transport over a socket already open (the one a namespace's identity was checked on), owning it now. */
  static over(socket: RouteSocket, label = socket.namespacePath): NetlinkSocket {
    return new NetlinkSocket(socket, label);
  }

  get fd(): number {
    return this.socket.fd;
  }

  /** An fd of the namespace the socket talks to, owned by the socket (see RouteSocket.namespace). */
  namespace(): number {
    return this.socket.namespace();
  }

  nextSequence(): number {
    return this.protocol.nextSequence();
  }

  batch(): RequestBatch {
    return new RequestBatch(this);
  }

  /**
   * Sends a batch and resolves when every request in it has its ack, error or end of dump. The
   * protocol holds back whatever follows a dump until the dump is done (one dump per socket).
   */
  exchange(batch: RequestBatch): Promise<RequestOutcome[]> {
    return traced(
      tracing.netlinkBatch,
      () => ({ namespacePath: this.namespacePath, requests: batch.size }),
      () => this.exchangeUntraced(batch),
    );
  }

  private exchangeUntraced(batch: RequestBatch): Promise<RequestOutcome[]> {
    if (this.closed) return Promise.reject(new NetlinkClosedError(this.namespacePath));
    const id = this.protocol.submit(batch.writer.finish(), batch.requests, batch.ends);
    const outcomes = new Promise<RequestOutcome[]>((resolve) => this.waiting.set(id, resolve));
    this.pump();
    return outcomes;
  }

  /** Starts delivering multicast messages (groups given to open()) to onNotification. */
  startListening(): void {
    this.listening = true;
    this.pump();
  }

  /** Subscribes to more multicast groups (numbers as in RTNLGRP_*). */
  addMembership(group: number): void {
    this.socket.addMembership(group);
    this.startListening();
  }

  /**
   * Sends what the protocol lets out, reads everything waiting, delivers what completed; again
   * while a finished dump lets more go out. Then waits on the event loop only if something is
   * still expected.
   */
  private pump(): void {
    if (this.closed) return;
    // A big dump (a thousand links, their addresses and routes) is read in slices: once reading has
    // taken this long, the rest waits for the socket watch below, so the event loop runs in between.
    // Only reading counts: the kernel's time inside sendto (making taps) cannot be cut, and an
    // attach's acks are read at once, without an event-loop trip.
    let budget = EVENT_LOOP_SLICE_MS;
    let sliced = false;
    do {
      this.transmit();
      // With the replies seam set, a send out on a pool thread keeps its answers unread until it is
      // back and the seam has been asked (its callback pumps again): read before, they would settle
      // the send before the seam could lose them.
      if (this.sendingInBackground && repliesSeam.hook()) {
        this.socket.stopWatching();
        return;
      }
      const reading = performance.now();
      sliced = this.drain(reading + budget);
      budget -= performance.now() - reading;
      this.deliver();
    } while (!sliced && this.protocol.canTransmit && !this.sendingInBackground && !this.closed);
    if (this.closed) return;
    // Cut short just as a dump ended: what waited behind it goes out now, or no reply would ever
    // wake the watch below.
    if (sliced) this.transmit();
    // A send on a pool thread pumps again when it is back; its replies may also wake the watch.
    if (this.protocol.pending > 0 || this.listening) this.socket.watch(() => this.pump());
    else this.socket.stopWatching();
  }

  /**
   * Sends whatever the protocol lets out now. Bytes that delete links go to a pool thread: the
   * kernel waits for RCU grace periods inside that sendto (~20 ms a link), which on this thread
   * would stop the event loop of whoever embeds the library for as long (a detach, a gc).
   */
  private transmit(): void {
    if (this.sendingInBackground) return;
    for (let bytes = this.protocol.pollTransmit(); bytes; bytes = this.protocol.pollTransmit()) {
      try {
        if (deletesLinks(bytes) && this.socket.canSendInBackground) {
          this.sendingInBackground = true;
          this.socket.sendInBackground(bytes, (error) => {
            this.sendingInBackground = false;
            if (error) this.protocol.transmitFailed(error);
            else this.askRepliesSeam();
            this.pump();
          });
          return;
        }
        this.socket.send(bytes);
        this.askRepliesSeam();
      } catch (error) {
        this.sendingInBackground = false;
        this.protocol.transmitFailed(error as Error);
      }
    }
  }

  /**
   * Reads the datagrams waiting into the protocol (at least one, when there is one); true when it
   * stopped at `deadline` with more perhaps waiting.
   */
  private drain(deadline: number): boolean {
    for (let read = 0; ; read++) {
      if (read > 0 && performance.now() > deadline) return true;
      let datagram: Buffer | undefined;
      try {
        datagram = this.receive();
      } catch (error) {
        // ENOBUFS and the like: replies or events were lost. A dump under way is drained and sent
        // again; a change waiting may never get its answer; a listener must resynchronise.
        const waiting = this.protocol.pending > 0;
        if (waiting) this.protocol.receiveFailed(error as Error);
        if (!waiting || this.listening) this.onReceiveError?.(error as Error);
        if (waiting && this.protocol.pending > 0) continue;
        return false;
      }
      if (!datagram) return false;
      const expected = this.protocol.pending > 0;
      try {
        this.protocol.receive(datagram);
      } catch (error) {
        // Malformed bytes: the protocol failed every request waiting; otherwise tell the listener.
        if (!expected) this.onReceiveError?.(error as Error);
      }
    }
  }

  /** The next datagram waiting, if any: the socket's, unless the test seam took the answers away. */
  private receive(): Buffer | undefined {
    const lost = this.lostAnswers;
    if (!lost) return this.socket.receive();
    if (lost.answersRead > 0) {
      const datagram = this.socket.receive();
      if (datagram) lost.answersRead--;
      return datagram;
    }
    this.lostAnswers = undefined;
    // The kernel drops acks (and events) that an overrun receive buffer cannot hold, but never a
    // dump's parts: a dump waits for room and goes on, so its datagrams stay to be read after the
    // failed receive, as they do for real.
    while (!lost.dump && this.socket.receive() !== undefined) {
      // dropped
    }
    const errnoNumber = (osConstants.errno as Record<string, number | undefined>)[lost.errno] ?? osConstants.errno.EIO;
    throw new SystemCallError(
      'receive netlink replies',
      Object.assign(new Error(`recvfrom netlink: ${lost.errno} (test seam)`), {
        code: lost.errno,
        errno: errnoNumber,
        syscall: 'recvfrom',
      }),
    );
  }

  private askRepliesSeam(): void {
    const hook = repliesSeam.hook();
    if (!hook) return;
    const lost = hook(this.protocol.lastSentRequests);
    if (lost) {
      const dump = this.protocol.lastSentRequests.some((request) => request.dump);
      this.lostAnswers = { errno: lost.errno, answersRead: lost.answersRead ?? 0, dump };
    }
  }

  private deliver(): void {
    for (const event of this.protocol.takeEvents()) {
      if (event.kind === 'completed') {
        const resolve = this.waiting.get(event.batch);
        this.waiting.delete(event.batch);
        resolve?.(event.outcomes);
      } else if (event.kind === 'notification') {
        this.onNotification?.(event.message);
      } else {
        const { description, type, sequence } = event.request;
        publish(channels.netlinkDumpRetried, () => ({
          namespacePath: this.namespacePath,
          request: { description, type, sequence },
          attempt: event.attempt,
          reason: event.reason,
        }));
      }
    }
  }

  /** Settles once the socket's fds are closed (RouteSocket.close). */
  close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      this.socket.stopWatching();
      this.protocol.failAll(new NetlinkClosedError(this.namespacePath));
      this.deliver();
    }
    return this.socket.close();
  }
}
