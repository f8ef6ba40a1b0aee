/**
 * Which batches the transport sends on a pool thread: those holding an RTM_DELLINK, found by walking
 * the message headers of the bytes it is about to send (the kernel waits for RCU inside that sendto).
 */
import { expect, it } from 'vitest';
import { MessageType } from '../../../src/netlink/codec/constants.js';
import { MessageWriter } from '../../../src/netlink/codec/writer.js';
import { deletesLinks } from '../../../src/netlink/transport.js';

function batchOf(types: number[]): Buffer {
  const writer = new MessageWriter();
  for (const [sequence, type] of types.entries()) {
    writer.beginMessage(type, 0x5, sequence + 1);
    writer.header(16); // an ifinfomsg's worth of zeros
    writer.endMessage();
  }
  return writer.finish();
}

it('finds a link deletion anywhere in a batch', () => {
  expect(deletesLinks(batchOf([MessageType.DELLINK]))).toBe(true);
  expect(deletesLinks(batchOf([MessageType.NEWLINK, MessageType.NEWLINK, MessageType.DELLINK]))).toBe(true);
});

it('leaves other batches on the calling thread', () => {
  expect(deletesLinks(batchOf([MessageType.NEWLINK, MessageType.NEWQDISC, MessageType.NEWTFILTER]))).toBe(false);
  expect(deletesLinks(batchOf([MessageType.DELQDISC, MessageType.DELADDR]))).toBe(false);
  expect(deletesLinks(Buffer.alloc(0))).toBe(false);
});

it('stops at a header whose length cannot be right', () => {
  const bytes = batchOf([MessageType.NEWLINK, MessageType.DELLINK]);
  bytes.writeUInt32LE(4, 0); // the first message claims 4 bytes: nothing after it is trusted
  expect(deletesLinks(bytes)).toBe(false);
});
