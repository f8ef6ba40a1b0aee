/**
 * The netlink protocol without a socket, on whole exchanges the kernel really had with vcnet
 * (test/fixtures/netlink/protocol-exchanges.json, recorded by
 * scripts/capture-netlink-protocol-fixtures.ts): the bytes go in as they were received, and what
 * comes out is checked (outcomes, what may be sent next, notifications, dump retries).
 */
import { describe, expect, it } from 'vitest';
import { classifyError, SystemCallError } from '../../../src/errors.js';
import { MessageFlag, MessageType } from '../../../src/netlink/codec/constants.js';
import { decodeLink } from '../../../src/netlink/codec/link.js';
import { MalformedMessageError, type RawMessage, splitMessages } from '../../../src/netlink/codec/reader.js';
import { MessageWriter } from '../../../src/netlink/codec/writer.js';
import { answerLost, DumpInterruptedError, DumpOverrunError, NetlinkError } from '../../../src/netlink/errors.js';
import {
  DEFAULT_MAX_DUMP_ATTEMPTS,
  MAX_UNANSWERED,
  NetlinkProtocol,
  type ProtocolEvent,
  type ProtocolRequest,
  type RequestOutcome,
} from '../../../src/netlink/protocol.js';
import fixture from '../../fixtures/netlink/protocol-exchanges.json' with { type: 'json' };

interface Exchange {
  sent: string;
  received: string[];
}

const bytesOf = (hex: string) => Buffer.from(hex, 'hex');
const datagrams = (exchange: Exchange) => exchange.received.map(bytesOf);

/** The recorded request messages, each as the protocol is told about it. */
function requestsOf(
  exchange: Exchange,
  description = 'recorded request',
): { bytes: Buffer; requests: ProtocolRequest[]; ends: number[] } {
  const bytes = bytesOf(exchange.sent);
  const requests: ProtocolRequest[] = [];
  const ends: number[] = [];
  let end = 0;
  for (const message of splitMessages(bytes)) {
    end += (16 + message.payload.length + 3) & ~3;
    requests.push({
      sequence: message.sequence,
      type: message.type,
      dump: (message.flags & MessageFlag.DUMP) === MessageFlag.DUMP,
      description,
    });
    ends.push(end);
  }
  return { bytes, requests, ends };
}

/** A copy of recorded datagrams with every message's sequence number changed from `from` to `to`. */
function withSequence(received: Buffer[], from: number, to: number): Buffer[] {
  return received.map((datagram) => {
    const copy = Buffer.from(datagram);
    let offset = 0;
    while (offset + 16 <= copy.length) {
      const length = copy.readUInt32LE(offset);
      if (copy.readUInt32LE(offset + 8) === from) copy.writeUInt32LE(to, offset + 8);
      offset += (length + 3) & ~3;
    }
    return copy;
  });
}

function completed(events: ProtocolEvent[]): RequestOutcome[][] {
  return events.flatMap((event) => (event.kind === 'completed' ? [event.outcomes] : []));
}

function notifications(events: ProtocolEvent[]): RawMessage[] {
  return events.flatMap((event) => (event.kind === 'notification' ? [event.message] : []));
}

const sequenceOf = (bytes: Buffer) => bytes.readUInt32LE(8);

/** The port id of the socket that had `exchange`: what its answers (acks, errors, NLMSG_DONE) carry. */
function portOf(exchange: Exchange): number {
  const answers = datagrams(exchange)
    .flatMap((datagram) => splitMessages(datagram))
    .filter((message) => message.type === MessageType.ERROR || message.type === MessageType.DONE);
  const ports = new Set(answers.map((message) => message.portId));
  if (ports.size !== 1) throw new Error(`expected the answers of one socket, got ports ${[...ports].join(', ')}`);
  return answers[0]!.portId;
}

/** The recording's socket (every exchange but `notifications` was had on one socket). */
const OUR_PORT = portOf(fixture.changes);

/** A copy of a recorded message with its sequence number and port id changed. */
function rewritten(message: RawMessage, sequence: number, portId: number): Buffer {
  const copy = Buffer.alloc(16 + message.payload.length);
  copy.writeUInt32LE(copy.length, 0);
  copy.writeUInt16LE(message.type, 4);
  copy.writeUInt16LE(message.flags, 6);
  copy.writeUInt32LE(sequence, 8);
  copy.writeUInt32LE(portId, 12);
  message.payload.copy(copy, 16);
  return copy;
}
const dumpOf = (exchange: Exchange) => sequenceOf(bytesOf(exchange.sent));

/** What the native shim throws when a call fails with `code` (its name, the number, the call). */
function rawError(code: 'ENOBUFS' | 'EIO', syscall: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${syscall} netlink: failed`), { code, errno: code === 'ENOBUFS' ? 105 : 5, syscall });
}

/** What the socket throws for a receive the kernel failed with ENOBUFS (its queue overflowed). */
const enobufs = () => new SystemCallError('receive netlink replies', rawError('ENOBUFS', 'recv'));

describe('NetlinkProtocol on recorded exchanges', () => {
  it('sends a change batch as one buffer and settles each change from its ack or its error, with the kernel text', () => {
    const protocol = new NetlinkProtocol({ portId: OUR_PORT, namespacePath: '/run/netns/recorded' });
    const { bytes, requests, ends } = requestsOf(fixture.changes, 'add ingress qdisc');
    protocol.submit(bytes, requests, ends);
    expect(protocol.pollTransmit()?.equals(bytes)).toBe(true);
    expect(protocol.pollTransmit()).toBeUndefined();

    const [first, second, third] = datagrams(fixture.changes);
    protocol.receive(first!);
    protocol.receive(second!);
    expect(completed(protocol.takeEvents())).toEqual([]);
    protocol.receive(third!);
    const [outcomes] = completed(protocol.takeEvents());
    expect(outcomes?.map((outcome) => outcome.ok)).toEqual([true, true, false]);
    const refused = outcomes?.[2];
    if (refused?.ok !== false) throw new Error('expected the third change to be refused');
    expect(refused.error).toBeInstanceOf(NetlinkError);
    expect(refused.error.errno).toBe('EEXIST');
    expect(refused.error.kernelMessage).toMatch(/exclusivity flag/i);
    expect(refused.error.message).toContain('add ingress qdisc failed: EEXIST');
    expect(refused.error.namespacePath).toBe('/run/netns/recorded');
    expect(protocol.pending).toBe(0);
  });

  it('collects a dump over several datagrams and completes it at NLMSG_DONE', () => {
    const protocol = new NetlinkProtocol({ portId: OUR_PORT });
    const { bytes, requests, ends } = requestsOf(fixture.linkDump, 'list links');
    protocol.submit(bytes, requests, ends);
    protocol.pollTransmit();
    const received = datagrams(fixture.linkDump);
    expect(received.length).toBeGreaterThan(2);
    for (const datagram of received.slice(0, -1)) {
      protocol.receive(datagram);
      expect(completed(protocol.takeEvents())).toEqual([]);
    }
    protocol.receive(received.at(-1)!);
    const [[outcome]] = completed(protocol.takeEvents()) as [[RequestOutcome]];
    if (!outcome.ok) throw outcome.error;
    const names = outcome.messages.map((message) => decodeLink(message).name);
    expect(names).toHaveLength(1 + 2 * fixture.vethPairs);
    for (let i = 0; i < fixture.vethPairs; i++) expect(names).toEqual(expect.arrayContaining([`v${i}`, `w${i}`]));
  });

  it('holds back whatever follows a dump, in the same batch or another, until the dump is done', () => {
    const protocol = new NetlinkProtocol({ portId: OUR_PORT });
    const dump = requestsOf(fixture.linkDump, 'list links');
    const change = requestsOf(fixture.changes);
    // One batch: the dump, then the first recorded change (link up).
    const first = change.requests[0]!;
    const changeBytes = change.bytes.subarray(0, change.ends[0]);
    const bytes = Buffer.concat([dump.bytes, changeBytes]);
    protocol.submit(bytes, [dump.requests[0]!, first], [dump.ends[0]!, bytes.length]);
    // A second batch with a dump of its own (the kernel would answer EBUSY if it went out now).
    protocol.submit(dump.bytes, [{ ...dump.requests[0]!, sequence: 999 }], dump.ends);

    expect(protocol.pollTransmit()?.equals(dump.bytes)).toBe(true);
    expect(protocol.canTransmit).toBe(false);
    expect(protocol.pollTransmit()).toBeUndefined();
    for (const datagram of datagrams(fixture.linkDump)) protocol.receive(datagram);
    expect(protocol.pollTransmit()?.equals(changeBytes)).toBe(true);
    protocol.receive(datagrams(fixture.changes)[0]!); // the change's ack
    const [outcomes] = completed(protocol.takeEvents());
    expect(outcomes?.map((outcome) => outcome.ok)).toEqual([true, true]);
    // Only now the second batch's dump goes out.
    expect(protocol.pollTransmit()?.equals(dump.bytes)).toBe(true);
    expect(protocol.pending).toBe(1);
  });

  it('sends a dump the kernel marked NLM_F_DUMP_INTR again under a new sequence, and uses only the clean one', () => {
    const protocol = new NetlinkProtocol({ portId: OUR_PORT });
    const interrupted = datagrams(fixture.interruptedLinkDump);
    const marked = interrupted.flatMap((datagram) => splitMessages(datagram));
    expect(marked.some((message) => message.flags & MessageFlag.DUMP_INTR)).toBe(true);

    const { bytes, requests, ends } = requestsOf(fixture.interruptedLinkDump, 'list links');
    protocol.submit(bytes, requests, ends);
    protocol.pollTransmit();
    for (const datagram of interrupted) protocol.receive(datagram);
    const events = protocol.takeEvents();
    expect(completed(events)).toEqual([]);
    expect(events).toContainEqual(expect.objectContaining({ kind: 'dump-retried', attempt: 2 }));

    const retry = protocol.pollTransmit();
    if (!retry) throw new Error('expected the dump to be sent again');
    const newSequence = sequenceOf(retry);
    expect(newSequence).not.toBe(requests[0]!.sequence);
    // The same request otherwise, byte for byte.
    const expected = Buffer.from(bytes);
    expected.writeUInt32LE(newSequence, 8);
    expect(retry.equals(expected)).toBe(true);

    // Late messages of the abandoned attempt are not taken for the new one.
    protocol.receive(interrupted[0]!);
    for (const datagram of withSequence(datagrams(fixture.cleanLinkDump), dumpOf(fixture.cleanLinkDump), newSequence))
      protocol.receive(datagram);
    const [[outcome]] = completed(protocol.takeEvents()) as [[RequestOutcome]];
    if (!outcome.ok) throw outcome.error;
    expect(outcome.messages.length).toBe(1 + 2 * fixture.vethPairs);
    expect(outcome.messages.every((message) => !(message.flags & MessageFlag.DUMP_INTR))).toBe(true);
    expect(outcome.messages.every((message) => message.sequence === newSequence)).toBe(true);
  });

  it(`gives up after ${DEFAULT_MAX_DUMP_ATTEMPTS} interrupted attempts with a DumpInterruptedError`, () => {
    const protocol = new NetlinkProtocol({ portId: OUR_PORT, namespacePath: '/run/netns/busy' });
    const { bytes, requests, ends } = requestsOf(fixture.interruptedLinkDump, 'list links');
    protocol.submit(bytes, requests, ends);
    let sent = protocol.pollTransmit();
    let transmissions = 0;
    const original = dumpOf(fixture.interruptedLinkDump);
    while (sent) {
      transmissions++;
      for (const datagram of withSequence(datagrams(fixture.interruptedLinkDump), original, sequenceOf(sent)))
        protocol.receive(datagram);
      sent = protocol.pollTransmit();
    }
    expect(transmissions).toBe(DEFAULT_MAX_DUMP_ATTEMPTS);
    const [[outcome]] = completed(protocol.takeEvents()) as [[RequestOutcome]];
    if (outcome.ok) throw new Error('expected the dump to fail');
    expect(outcome.error).toBeInstanceOf(DumpInterruptedError);
    expect(outcome.error).toBeInstanceOf(NetlinkError);
    expect((outcome.error as DumpInterruptedError).attempts).toBe(DEFAULT_MAX_DUMP_ATTEMPTS);
    expect(outcome.error.errno).toBe('EINTR');
    expect(outcome.error.message).toContain('list links failed');
    expect(outcome.error.hint).toMatch(/changing the namespace/);
    expect(protocol.pending).toBe(0);
  });

  it('honours a smaller bound on attempts', () => {
    const protocol = new NetlinkProtocol({ portId: OUR_PORT, maxDumpAttempts: 1 });
    const { bytes, requests, ends } = requestsOf(fixture.interruptedLinkDump, 'list links');
    protocol.submit(bytes, requests, ends);
    protocol.pollTransmit();
    for (const datagram of datagrams(fixture.interruptedLinkDump)) protocol.receive(datagram);
    expect(protocol.pollTransmit()).toBeUndefined();
    const [[outcome]] = completed(protocol.takeEvents()) as [[RequestOutcome]];
    expect(outcome.ok).toBe(false);
  });

  it('delivers every message that answers none of our requests, and the multicast copy of our own change, as notifications', () => {
    const protocol = new NetlinkProtocol({ portId: portOf(fixture.notifications) });
    const { bytes, requests, ends } = requestsOf(fixture.notifications, 'add address');
    protocol.submit(bytes, requests, ends);
    protocol.pollTransmit();
    for (const datagram of datagrams(fixture.notifications)) protocol.receive(datagram);
    const events = protocol.takeEvents();
    const ours = requests[0]!.sequence;
    const delivered = notifications(events);
    // Kernel events (sequence 0), `ip`'s address (its own sequence and port), our address (our sequence).
    expect(delivered.some((message) => message.sequence === 0 && message.type === MessageType.NEWLINK)).toBe(true);
    expect(delivered.some((message) => message.type === MessageType.NEWADDR && message.sequence !== ours)).toBe(true);
    expect(delivered.some((message) => message.type === MessageType.NEWADDR && message.sequence === ours)).toBe(true);
    const all = datagrams(fixture.notifications).flatMap((datagram) => splitMessages(datagram));
    expect(delivered).toHaveLength(all.filter((message) => message.type !== MessageType.ERROR).length);
    const [[outcome]] = completed(events) as [[RequestOutcome]];
    expect(outcome).toEqual({ ok: true, messages: [] });
  });

  it('takes a message with our sequence but another port for a notification, from the first message on', () => {
    const protocol = new NetlinkProtocol({ portId: OUR_PORT });
    const { bytes, requests, ends } = requestsOf(fixture.changes);
    protocol.submit(bytes, requests, ends);
    protocol.pollTransmit();
    // Before any answer of ours: an ack-shaped message from another port is not our ack.
    const [first, second] = datagrams(fixture.changes);
    const foreign = Buffer.from(first!);
    foreign.writeUInt32LE(OUR_PORT + 1, 12);
    protocol.receive(foreign);
    expect(notifications(protocol.takeEvents())).toHaveLength(1);
    expect(protocol.pending).toBe(3);
    protocol.receive(first!);
    protocol.receive(second!);
    expect(notifications(protocol.takeEvents())).toEqual([]);
    expect(protocol.pending).toBe(1);
  });

  it("does not count another process's notification that carries our dump's sequence into the dump", () => {
    // A socket subscribed to multicast whose first request is a dump: `ip addr add` (port 3576 in the
    // recording) or any other process whose sequence happens to equal the dump's causes a
    // notification that is queued before the dump's answers.
    const protocol = new NetlinkProtocol({ portId: OUR_PORT });
    const { bytes, requests, ends } = requestsOf(fixture.linkDump, 'list links');
    protocol.submit(bytes, requests, ends);
    protocol.pollTransmit();
    const ours = requests[0]!.sequence;
    const recorded = datagrams(fixture.notifications).flatMap((datagram) => splitMessages(datagram));
    const others = recorded.filter(
      (message) => message.type === MessageType.NEWADDR && message.portId !== portOf(fixture.notifications),
    );
    expect(others.length).toBeGreaterThan(0);
    const foreign = rewritten(others[0]!, ours, others[0]!.portId);
    // A link notification too (the kernel's own, rewritten to another process's port and our sequence):
    // the same type as the dump's messages.
    const kernelLink = recorded.find((message) => message.type === MessageType.NEWLINK)!;
    const foreignLink = rewritten(kernelLink, ours, OUR_PORT + 1);
    protocol.receive(foreign);
    protocol.receive(foreignLink);
    for (const datagram of datagrams(fixture.linkDump)) protocol.receive(datagram);
    const events = protocol.takeEvents();
    const delivered = notifications(events);
    expect(delivered.map((message) => [message.type, message.sequence])).toEqual([
      [MessageType.NEWADDR, ours],
      [MessageType.NEWLINK, ours],
    ]);
    const [[outcome]] = completed(events) as [[RequestOutcome]];
    if (!outcome.ok) throw outcome.error;
    expect(outcome.messages).toHaveLength(1 + 2 * fixture.vethPairs);
    expect(outcome.messages.every((message) => message.portId === OUR_PORT)).toBe(true);
  });

  it('turns an error carried by NLMSG_DONE into a refused dump', () => {
    const protocol = new NetlinkProtocol({ portId: OUR_PORT });
    const { bytes, requests, ends } = requestsOf(fixture.linkDump, 'list links');
    protocol.submit(bytes, requests, ends);
    protocol.pollTransmit();
    const received = datagrams(fixture.linkDump);
    const done = Buffer.from(received.at(-1)!);
    expect(done.readUInt16LE(4)).toBe(MessageType.DONE);
    done.writeInt32LE(-22, 16); // -EINVAL
    for (const datagram of [...received.slice(0, -1), done]) protocol.receive(datagram);
    const [[outcome]] = completed(protocol.takeEvents()) as [[RequestOutcome]];
    if (outcome.ok) throw new Error('expected the dump to fail');
    expect(outcome.error.errno).toBe('EINVAL');
    // The kernel answered: not a lost answer.
    expect(outcome.error.answerLost).toBe(false);
    // The dump no longer blocks the socket.
    expect(protocol.pending).toBe(0);
  });

  it('drains a dump during which a receive failed with ENOBUFS, sends it again under a new sequence and uses only that one', () => {
    const protocol = new NetlinkProtocol({ portId: OUR_PORT });
    const { bytes, requests, ends } = requestsOf(fixture.linkDump, 'list links');
    protocol.submit(bytes, requests, ends);
    protocol.pollTransmit();
    const received = datagrams(fixture.linkDump);
    protocol.receive(received[0]!);
    protocol.receiveFailed(enobufs());
    // The kernel goes on with the dump: it is read to its end before anything goes out again.
    expect(protocol.pollTransmit()).toBeUndefined();
    expect(protocol.pending).toBe(1);
    for (const datagram of received.slice(1)) protocol.receive(datagram);
    const events = protocol.takeEvents();
    expect(completed(events)).toEqual([]);
    expect(notifications(events)).toEqual([]);
    expect(events).toContainEqual(expect.objectContaining({ kind: 'dump-retried', attempt: 2, reason: 'overrun' }));
    const retry = protocol.pollTransmit();
    if (!retry) throw new Error('expected the dump to be sent again');
    const newSequence = sequenceOf(retry);
    expect(newSequence).not.toBe(requests[0]!.sequence);
    for (const datagram of withSequence(received, dumpOf(fixture.linkDump), newSequence)) protocol.receive(datagram);
    const [[outcome]] = completed(protocol.takeEvents()) as [[RequestOutcome]];
    if (!outcome.ok) throw outcome.error;
    expect(outcome.messages).toHaveLength(1 + 2 * fixture.vethPairs);
    expect(outcome.messages.every((message) => message.sequence === newSequence)).toBe(true);
  });

  it(`gives up on a dump overrun (ENOBUFS) on each of ${DEFAULT_MAX_DUMP_ATTEMPTS} attempts with a DumpOverrunError: try again later`, () => {
    const protocol = new NetlinkProtocol({ portId: OUR_PORT, namespacePath: '/run/netns/flooded' });
    const { bytes, requests, ends } = requestsOf(fixture.linkDump, 'list links');
    protocol.submit(bytes, requests, ends);
    let sent = protocol.pollTransmit();
    let transmissions = 0;
    while (sent) {
      transmissions++;
      protocol.receiveFailed(enobufs());
      for (const datagram of withSequence(datagrams(fixture.linkDump), dumpOf(fixture.linkDump), sequenceOf(sent)))
        protocol.receive(datagram);
      sent = protocol.pollTransmit();
    }
    expect(transmissions).toBe(DEFAULT_MAX_DUMP_ATTEMPTS);
    const [[outcome]] = completed(protocol.takeEvents()) as [[RequestOutcome]];
    if (outcome.ok) throw new Error('expected the dump to fail');
    expect(outcome.error).toBeInstanceOf(DumpOverrunError);
    expect(outcome.error.code).toBe('VCNET_NETLINK_DUMP_OVERRUN');
    expect(outcome.error.errno).toBe('ENOBUFS');
    expect(outcome.error.message).toBe(
      `list links failed: ENOBUFS (the socket's receive queue overflowed during each of ${DEFAULT_MAX_DUMP_ATTEMPTS} attempts)`,
    );
    expect(outcome.error.cause).toBeInstanceOf(SystemCallError);
    expect(classifyError(outcome.error)).toMatchObject({
      cni: 'TRY_AGAIN_LATER',
      exit: 'FAILED',
      agent: 'UNAVAILABLE',
    });
    expect(protocol.pending).toBe(0);
  });

  it('fails a change still waiting on ENOBUFS with ENOBUFS, and a dump at once on any other receive error', () => {
    const protocol = new NetlinkProtocol({ portId: OUR_PORT });
    const change = requestsOf(fixture.changes, 'add ingress qdisc');
    protocol.submit(change.bytes, change.requests, change.ends);
    protocol.pollTransmit();
    protocol.receive(datagrams(fixture.changes)[0]!);
    protocol.receiveFailed(enobufs());
    const [outcomes] = completed(protocol.takeEvents());
    expect(outcomes?.map((outcome) => (outcome.ok ? 'ok' : outcome.error.errno))).toEqual(['ok', 'ENOBUFS', 'ENOBUFS']);

    const dump = requestsOf(fixture.linkDump, 'list links');
    protocol.submit(dump.bytes, dump.requests, dump.ends);
    protocol.pollTransmit();
    protocol.receiveFailed(new SystemCallError('receive netlink replies', rawError('EIO', 'recv')));
    const [[outcome]] = completed(protocol.takeEvents()) as [[RequestOutcome]];
    if (outcome.ok) throw new Error('expected the dump to fail');
    expect(outcome.error.errno).toBe('EIO');
    expect(protocol.pending).toBe(0);
  });

  it('keeps reading a dump that went out with changes when a receive fails with ENOBUFS, and fails what was never sent as not sent', () => {
    const protocol = new NetlinkProtocol({ portId: OUR_PORT });
    const change = requestsOf(fixture.changes, 'add ingress qdisc');
    const dump = requestsOf(fixture.linkDump, 'list links');
    // One segment: the changes, then the dump that ends it.
    protocol.submit(
      Buffer.concat([change.bytes, dump.bytes]),
      [...change.requests, ...dump.requests],
      [...change.ends, ...dump.ends.map((end) => change.bytes.length + end)],
    );
    // Queued behind the dump, never sent.
    const later = change.requests.map((request) => ({ ...request, sequence: request.sequence + 1_000 }));
    protocol.submit(change.bytes, later, change.ends);
    expect(protocol.pollTransmit()).toBeDefined();
    const answers = datagrams(fixture.changes);
    protocol.receive(answers[0]!);
    protocol.receiveFailed(enobufs());
    // What was queued fails at once: not sent, so nothing of it was made (before: answer lost, as if sent).
    const [queued] = completed(protocol.takeEvents());
    expect(queued).toHaveLength(3);
    for (const outcome of queued ?? []) {
      if (outcome.ok) throw new Error('expected the queued requests to fail');
      expect(outcome.error.errno).toBe('ENOBUFS');
      expect(outcome.error.answerLost).toBe(false);
      expect(outcome.error.notSent).toBe(true);
      expect(outcome.error.message).toBe(
        'add ingress qdisc failed: ENOBUFS (not sent: the answer to an earlier request on this socket was lost, so this one was never sent and nothing of it was made)',
      );
    }
    // The kernel goes on with the dump: before, it was forgotten (its parts came out as notifications
    // and the socket took another dump, which the kernel refuses with EBUSY until this one ends).
    expect(protocol.pollTransmit()).toBeUndefined();
    const received = datagrams(fixture.linkDump);
    for (const datagram of received) protocol.receive(datagram);
    const drained = protocol.takeEvents();
    expect(notifications(drained)).toEqual([]);
    expect(drained).toContainEqual(expect.objectContaining({ kind: 'dump-retried', attempt: 2, reason: 'overrun' }));
    const retry = protocol.pollTransmit();
    if (!retry) throw new Error('expected the dump to be sent again');
    for (const datagram of withSequence(received, dumpOf(fixture.linkDump), sequenceOf(retry)))
      protocol.receive(datagram);
    const [outcomes] = completed(protocol.takeEvents());
    expect(outcomes?.map((outcome) => (outcome.ok ? 'ok' : outcome.error.errno))).toEqual([
      'ok',
      'ENOBUFS',
      'ENOBUFS',
      'ok',
    ]);
    expect(outcomes?.slice(1, 3).every((outcome) => !outcome.ok && outcome.error.answerLost)).toBe(true);
    expect(protocol.pending).toBe(0);
  });

  it('fails the requests of a send that did not go out, and everything on failAll', () => {
    const protocol = new NetlinkProtocol({ portId: OUR_PORT });
    const change = requestsOf(fixture.changes, 'add ingress qdisc');
    protocol.submit(change.bytes, change.requests, change.ends);
    protocol.pollTransmit();
    protocol.transmitFailed(Object.assign(new Error('sendto: no buffer space'), { errno: -105, code: 'ENOBUFS' }));
    const [outcomes] = completed(protocol.takeEvents());
    expect(outcomes?.map((outcome) => (outcome.ok ? 'ok' : outcome.error.errno))).toEqual([
      'ENOBUFS',
      'ENOBUFS',
      'ENOBUFS',
    ]);

    const dump = requestsOf(fixture.linkDump, 'list links');
    protocol.submit(dump.bytes, dump.requests, dump.ends);
    protocol.submit(change.bytes, change.requests, change.ends);
    protocol.pollTransmit();
    protocol.failAll(new Error('netlink socket closed'));
    expect(completed(protocol.takeEvents())).toHaveLength(2);
    expect(protocol.pending).toBe(0);
    expect(protocol.pollTransmit()).toBeUndefined();
  });

  it("fails what waits on a failed receive as answers lost, with the receive's errno", () => {
    const protocol = new NetlinkProtocol({ portId: OUR_PORT });
    const change = requestsOf(fixture.changes, 'add ingress qdisc');
    protocol.submit(change.bytes, change.requests, change.ends);
    protocol.pollTransmit();
    // As the socket throws it: the shim's raw error (numeric errno) wrapped, the name in `errno`.
    const raw = Object.assign(new Error('recvfrom netlink: No buffer space available'), {
      code: 'ENOBUFS',
      errno: 105,
      syscall: 'recvfrom',
    });
    protocol.failAll(new SystemCallError('receive netlink replies', raw));
    const [outcomes] = completed(protocol.takeEvents());
    for (const outcome of outcomes ?? []) {
      if (outcome.ok) throw new Error('expected every request to fail');
      expect(outcome.error.errno).toBe('ENOBUFS');
      expect(outcome.error.answerLost).toBe(true);
      expect(answerLost(outcome.error)).toBe(true);
      expect(outcome.error.message).toContain(
        'failed: ENOBUFS (no answer from the kernel: receive netlink replies failed',
      );
    }
    expect(outcomes).toHaveLength(3);
  });

  it('fails what waits on a malformed datagram and says where it broke', () => {
    const protocol = new NetlinkProtocol({ portId: OUR_PORT });
    const { bytes, requests, ends } = requestsOf(fixture.linkDump, 'list links');
    protocol.submit(bytes, requests, ends);
    protocol.pollTransmit();
    const truncated = datagrams(fixture.linkDump)[0]!.subarray(0, 1000);
    expect(() => protocol.receive(truncated)).toThrow(MalformedMessageError);
    const [[outcome]] = completed(protocol.takeEvents()) as [[RequestOutcome]];
    expect(outcome.ok).toBe(false);
  });

  it('answers an empty batch at once and never hands out sequence 0', () => {
    const protocol = new NetlinkProtocol({ portId: OUR_PORT, initialSequence: 0x7ffffffe });
    expect(protocol.nextSequence()).toBe(0x7fffffff);
    expect(protocol.nextSequence()).toBe(1);
    const batch = protocol.submit(Buffer.alloc(0), [], []);
    expect(protocol.takeEvents()).toEqual([{ kind: 'completed', batch, outcomes: [] }]);
  });
});

describe('NetlinkProtocol: how many requests go out unanswered', () => {
  /** `count` changes (RTM_NEWROUTE with no body: only their headers matter here) in one batch. */
  function changes(protocol: NetlinkProtocol, count: number) {
    const writer = new MessageWriter();
    const requests: ProtocolRequest[] = [];
    const ends: number[] = [];
    for (let i = 0; i < count; i++) {
      const sequence = protocol.nextSequence();
      writer.beginMessage(MessageType.NEWROUTE, MessageFlag.REQUEST | MessageFlag.ACK, sequence);
      writer.header(12);
      writer.endMessage();
      requests.push({ sequence, type: MessageType.NEWROUTE, dump: false, description: `route ${i}` });
      ends.push(writer.length);
    }
    return { bytes: writer.finish(), requests, ends };
  }
  /** The kernel's acks (NLMSG_ERROR, errno 0) for every message in `sent`, as one datagram. */
  function acks(sent: Buffer): Buffer {
    const writer = new MessageWriter();
    for (const message of splitMessages(sent)) {
      writer.beginMessage(MessageType.ERROR, 0, message.sequence);
      writer.header(4 + 16).writeUInt32LE(16, 4);
      writer.endMessage();
    }
    const datagram = Buffer.from(writer.finish());
    // Addressed to our socket, as the kernel's are.
    for (let offset = 0; offset < datagram.length; offset += datagram.readUInt32LE(offset)) {
      datagram.writeUInt32LE(OUR_PORT, offset + 12);
    }
    return datagram;
  }

  it(`sends a batch of 600 changes ${MAX_UNANSWERED} at a time, each part once the one before is answered`, () => {
    const protocol = new NetlinkProtocol({ portId: OUR_PORT, initialSequence: 100 });
    const { bytes, requests, ends } = changes(protocol, 600);
    protocol.submit(bytes, requests, ends);
    const sizes: number[] = [];
    for (let sent = protocol.pollTransmit(); sent; sent = protocol.pollTransmit()) {
      const messages = splitMessages(sent);
      sizes.push(messages.length);
      // Nothing more goes out until these are answered: their answers must fit the receive buffer.
      expect(protocol.canTransmit).toBe(false);
      expect(protocol.pollTransmit()).toBeUndefined();
      protocol.receive(acks(sent));
    }
    expect(sizes).toEqual([MAX_UNANSWERED, MAX_UNANSWERED, 600 - 2 * MAX_UNANSWERED]);
    const [outcomes] = completed(protocol.takeEvents());
    expect(outcomes).toHaveLength(600);
    expect(outcomes?.every((outcome) => outcome.ok)).toBe(true);
  });

  it('lets small batches follow one another unanswered while the total stays within the bound', () => {
    const protocol = new NetlinkProtocol({ portId: OUR_PORT, initialSequence: 100 });
    for (let i = 0; i < 3; i++) {
      const { bytes, requests, ends } = changes(protocol, 10);
      protocol.submit(bytes, requests, ends);
    }
    expect([protocol.pollTransmit(), protocol.pollTransmit(), protocol.pollTransmit()].every(Boolean)).toBe(true);
    expect(protocol.pending).toBe(30);
  });
});
