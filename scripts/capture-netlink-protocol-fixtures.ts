/**
 * Records whole exchanges with the kernel for the protocol's unit tests (test/unit/netlink/
 * protocol.test.ts): the bytes sent and every datagram received, as they were, in a throwaway
 * namespace. Scenarios: a change batch answered by acks and an error with extended-ack text; a link
 * dump spread over several datagrams; a link dump the kernel marked NLM_F_DUMP_INTR while another
 * process added and deleted links; multicast notifications, another process's and our own.
 * Run as root: `npx tsx scripts/capture-netlink-protocol-fixtures.ts`.
 */
import { execFileSync, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { release } from 'node:os';
import { encodeAddress } from '../src/netlink/codec/address.js';
import { MessageFlag, MessageType } from '../src/netlink/codec/constants.js';
import { encodeGetLink, encodeSetLink } from '../src/netlink/codec/link.js';
import { splitMessages } from '../src/netlink/codec/reader.js';
import { encodeQdisc, ingressQdisc } from '../src/netlink/codec/tc/qdisc.js';
import { MessageWriter } from '../src/netlink/codec/writer.js';
import { RouteSocket } from '../src/netlink/socket.js';
import { createNamespace, deleteNamespace } from '../src/netns/namespace.js';

/** RTNLGRP_LINK and RTNLGRP_IPV4_IFADDR as bind mask bits. */
const RTMGRP_LINK = 0x1;
const RTMGRP_IPV4_IFADDR = 0x10;
const VETH_PAIRS = 20;

interface Exchange {
  /** What was sent, hex; the requests' sequence numbers are in it. */
  sent: string;
  /** Each datagram received until the last answer, hex, in order. */
  received: string[];
}

const hex = (bytes: Buffer) => bytes.toString('hex');

/** Sends `bytes` and reads datagrams until every sequence in `awaited` has its ERROR or DONE. */
async function exchange(socket: RouteSocket, bytes: Buffer, awaited: number[]): Promise<Buffer[]> {
  socket.send(bytes);
  const open = new Set(awaited);
  const received: Buffer[] = [];
  const deadline = Date.now() + 5000;
  while (open.size > 0) {
    if (Date.now() > deadline) throw new Error(`no answer for sequences ${[...open].join(', ')}`);
    const datagram = socket.receive();
    if (!datagram) {
      await new Promise((resolve) => setTimeout(resolve, 1));
      continue;
    }
    received.push(datagram);
    for (const message of splitMessages(datagram)) {
      if (message.type === MessageType.ERROR || message.type === MessageType.DONE) open.delete(message.sequence);
    }
  }
  return received;
}

function linkDump(sequence: number): Buffer {
  const writer = new MessageWriter();
  writer.beginMessage(MessageType.GETLINK, MessageFlag.REQUEST | MessageFlag.DUMP, sequence);
  encodeGetLink(writer);
  writer.endMessage();
  return Buffer.from(writer.finish());
}

const name = `vcnet-capture-proto-${process.pid}`;
const path = createNamespace(name);
const socket = RouteSocket.open(path);
const listener = RouteSocket.open(path, RTMGRP_LINK | RTMGRP_IPV4_IFADDR);
let churn: ReturnType<typeof spawn> | undefined;
try {
  const commands: string[] = [];
  for (let i = 0; i < VETH_PAIRS; i++) commands.push(`link add v${i} type veth peer name w${i}`);
  execFileSync('ip', ['-n', name, '-batch', '-'], { input: `${commands.join('\n')}\n` });
  const v0 = Number(
    execFileSync('ip', ['netns', 'exec', name, 'cat', '/sys/class/net/v0/ifindex'], { encoding: 'utf8' }).trim(),
  );
  const fixture: Record<string, unknown> = {
    source: `captured from Linux ${release()} by scripts/capture-netlink-protocol-fixtures.ts`,
    vethPairs: VETH_PAIRS,
    v0Index: v0,
  };

  // 1. A change batch: link up (ack), ingress qdisc (ack), the same qdisc again (EEXIST + text).
  const changes = new MessageWriter();
  changes.beginMessage(MessageType.NEWLINK, MessageFlag.REQUEST | MessageFlag.ACK, 101);
  encodeSetLink(changes, v0, { up: true });
  changes.endMessage();
  for (const sequence of [102, 103]) {
    changes.beginMessage(
      MessageType.NEWQDISC,
      MessageFlag.REQUEST | MessageFlag.ACK | MessageFlag.CREATE | MessageFlag.EXCL,
      sequence,
    );
    encodeQdisc(changes, ingressQdisc(v0));
    changes.endMessage();
  }
  const changeBytes = Buffer.from(changes.finish());
  fixture.changes = {
    sent: hex(changeBytes),
    received: (await exchange(socket, changeBytes, [101, 102, 103])).map(hex),
  } satisfies Exchange;

  // 2. A link dump over several datagrams.
  fixture.linkDump = {
    sent: hex(linkDump(201)),
    received: (await exchange(socket, linkDump(201), [201])).map(hex),
  } satisfies Exchange;

  // 3. Notifications: another process's change (a kernel event with sequence 0 and one carrying
  // `ip`'s sequence and port), then our own (its multicast copy carries our sequence and port).
  while (listener.receive()); // what the setup above caused
  execFileSync('ip', ['-n', name, 'link', 'set', 'w0', 'up']);
  execFileSync('ip', ['-n', name, 'address', 'add', '10.1.0.1/24', 'dev', 'w0']);
  const own = new MessageWriter();
  own.beginMessage(
    MessageType.NEWADDR,
    MessageFlag.REQUEST | MessageFlag.ACK | MessageFlag.CREATE | MessageFlag.EXCL,
    301,
  );
  encodeAddress(own, { index: v0, address: '10.1.0.2', prefixLength: 24 });
  own.endMessage();
  const ownBytes = Buffer.from(own.finish());
  // The listener itself sends the change, so its ack and its own multicast copy arrive together.
  const ownReceived = await exchange(listener, ownBytes, [301]);
  await new Promise((resolve) => setTimeout(resolve, 50));
  for (let datagram = listener.receive(); datagram; datagram = listener.receive()) ownReceived.push(datagram);
  fixture.notifications = { sent: hex(ownBytes), received: ownReceived.map(hex) } satisfies Exchange;

  // 4. A link dump marked NLM_F_DUMP_INTR: dump again and again while another process adds and
  // deletes a link, until the kernel marks one (then record one clean dump after it too).
  churn = spawn(
    'sh',
    ['-c', `while true; do ip -n ${name} link add zz type veth peer name zy; ip -n ${name} link del zz; done`],
    { stdio: 'ignore' },
  );
  let interrupted: Exchange | undefined;
  let attempts = 0;
  for (let sequence = 1000; !interrupted && attempts < 20000; sequence++, attempts++) {
    const received = await exchange(socket, linkDump(sequence), [sequence]);
    const marked = received.some((datagram) =>
      splitMessages(datagram).some((message) => message.flags & MessageFlag.DUMP_INTR),
    );
    if (marked) interrupted = { sent: hex(linkDump(sequence)), received: received.map(hex) };
  }
  churn.kill();
  churn = undefined;
  if (!interrupted) throw new Error(`the kernel marked none of ${attempts} link dumps NLM_F_DUMP_INTR`);
  fixture.interruptedLinkDump = { ...interrupted, attemptsUntilMarked: attempts };
  await new Promise((resolve) => setTimeout(resolve, 100));
  fixture.cleanLinkDump = {
    sent: hex(linkDump(5001)),
    received: (await exchange(socket, linkDump(5001), [5001])).map(hex),
  } satisfies Exchange;

  const output = new URL('../test/fixtures/netlink/protocol-exchanges.json', import.meta.url);
  writeFileSync(output, `${JSON.stringify(fixture, null, 1)}\n`);
  console.log(`wrote ${output.pathname} (interrupted dump after ${attempts} attempts)`);
} finally {
  churn?.kill();
  socket.close();
  listener.close();
  deleteNamespace(path);
}
