/**
 * A request whose encoder throws must not spoil its batch: the half-written message is dropped and
 * the next add() works, leaving only whole messages in the bytes that go out.
 */
import { expect, it } from 'vitest';
import { MessageType } from '../../../src/netlink/codec/constants.js';
import { type NetlinkSocket, RequestBatch } from '../../../src/netlink/transport.js';

function batch(): RequestBatch {
  let sequence = 0;
  const socket = { nextSequence: () => ++sequence } as unknown as NetlinkSocket;
  return new RequestBatch(socket);
}

it('drops the message of an encoder that threw, and the next add() works', () => {
  const requests = batch();
  expect(() =>
    requests.add(MessageType.NEWLINK, 0, 'bad', (writer) => {
      writer.header(16);
      writer.beginNested(18);
      writer.u32(1, 7);
      throw new Error('encoder refused');
    }),
  ).toThrow('encoder refused');
  expect(requests.size).toBe(0);
  expect(requests.writer.length).toBe(0);

  requests.add(MessageType.DELLINK, 0, 'good', (writer) => {
    writer.header(16);
    writer.u32(3, 9);
  });
  expect(requests.size).toBe(1);
  expect(requests.requests[0]!.description).toBe('good');
  expect(requests.requests[0]!.sequence).toBe(2); // the failed add's number stays used

  const bytes = requests.writer.finish();
  expect(requests.ends).toEqual([bytes.length]);
  expect(bytes.readUInt32LE(0)).toBe(bytes.length); // one message: 16 header + 16 ifinfomsg + 8 attribute
  expect(bytes.length).toBe(40);
  expect(bytes.readUInt16LE(4)).toBe(MessageType.DELLINK);
  expect(bytes.readUInt32LE(8)).toBe(2);
});
