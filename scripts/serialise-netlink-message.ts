/** A reply message as the fixture files hold it: the 16-byte nlmsghdr and the payload, in hex. */
import type { RawMessage } from '../src/netlink/codec/reader.js';

export function serialise(message: RawMessage): string {
  const header = Buffer.alloc(16);
  header.writeUInt32LE(16 + message.payload.length, 0);
  header.writeUInt16LE(message.type, 4);
  header.writeUInt16LE(message.flags, 6);
  header.writeUInt32LE(message.sequence, 8);
  header.writeUInt32LE(message.portId, 12);
  return Buffer.concat([header, message.payload]).toString('hex');
}
