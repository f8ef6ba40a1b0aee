/**
 * Replies are told from notifications by port id from the socket's first message on: a socket
 * subscribed to address events, whose first request is an address dump, gets a notification caused
 * by another socket that used the dump's sequence number (as another process's small counter can)
 * just before the dump's answers. (Address notifications carry the sequence and port of the request
 * that caused them; link flag changes carry 0.) Real kernel, in a namespace of the test's own.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { nativeNetlink } from '../../src/native/netlink-socket.js';
import { decodeAddress, encodeAddress, encodeGetAddress } from '../../src/netlink/codec/address.js';
import { AddressFamily, MessageFlag, MessageType, NETLINK_ROUTE } from '../../src/netlink/codec/constants.js';
import type { RawMessage } from '../../src/netlink/codec/reader.js';
import { MessageWriter } from '../../src/netlink/codec/writer.js';
import { NetlinkSocket } from '../../src/netlink/transport.js';
import { cleanupNamespaces, makeNamespace } from '../helpers/namespace.js';

/** RTMGRP_IPV4_IFADDR: the bind() mask bit of RTNLGRP_IPV4_IFADDR. */
const IPV4_ADDRESS_GROUP = 0x10;

const opened: Array<() => void> = [];

afterEach(() => {
  for (const close of opened.splice(0)) close();
  cleanupNamespaces();
});

describe('netlink port id', () => {
  it("does not take another socket's notification with our first sequence number for our dump's answer", async () => {
    const namespace = makeNamespace('nlport');
    namespace.exec('ip', ['link', 'add', 'v0', 'type', 'veth', 'peer', 'name', 'w0']);
    const index = namespace.ipJson<Array<{ ifindex: number }>>('link', 'show', 'v0')[0]!.ifindex;

    const listener = NetlinkSocket.open(namespace.path, IPV4_ADDRESS_GROUP);
    opened.push(() => listener.close());
    const notified: RawMessage[] = [];
    listener.onNotification = (message) => notified.push(message);
    // The sequence number the listener's next request, the dump, will carry.
    const sequence = listener.nextSequence() + 1;

    // Another socket adds an address to v0 under that sequence number: the kernel queues the
    // RTM_NEWADDR notification on the listener (sequence = ours, port = the other socket's) before
    // the dump is sent.
    const other = nativeNetlink.openNetlink(namespace.path, NETLINK_ROUTE, 0);
    opened.push(() => nativeNetlink.closeFd(other));
    const writer = new MessageWriter();
    writer.beginMessage(
      MessageType.NEWADDR,
      MessageFlag.REQUEST | MessageFlag.ACK | MessageFlag.CREATE | MessageFlag.EXCL,
      sequence,
    );
    encodeAddress(writer, { index, address: '10.199.0.1', prefixLength: 24 });
    writer.endMessage();
    nativeNetlink.netlinkSend(other, writer.finish());
    expect(nativeNetlink.netlinkPortId(other)).not.toBe(nativeNetlink.netlinkPortId(listener.fd));

    const [outcome] = await listener
      .batch()
      .add(MessageType.GETADDR, MessageFlag.DUMP, 'list addresses', (w) => encodeGetAddress(w, AddressFamily.INET))
      .send();
    if (!outcome?.ok) throw outcome?.error ?? new Error('expected one outcome');
    const addresses = outcome.messages
      .filter((m) => m.type === MessageType.NEWADDR)
      .map((m) => decodeAddress(m).address);
    expect(addresses).toEqual(['10.199.0.1']);
    expect(outcome.messages.every((m) => m.portId === nativeNetlink.netlinkPortId(listener.fd))).toBe(true);
    const foreign = notified.filter((m) => m.sequence === sequence && m.type === MessageType.NEWADDR);
    expect(foreign.map((m) => decodeAddress(m).address)).toEqual(['10.199.0.1']);
  });
});
