/**
 * The tc codec refuses what it cannot encode as bad input (VCNET_INVALID_INPUT, exit 2 in the CLI), naming the
 * field, the value and what it accepts, instead of a plain Error that classifies as VCNET_ERROR.
 */
import { expect, it } from 'vitest';
import { classifyError, InvalidInputError } from '../../../src/errors.js';
import { encodeActions } from '../../../src/netlink/codec/tc/action.js';
import { encodeFilter } from '../../../src/netlink/codec/tc/filter.js';
import { parseHandle, TC_H_ROOT } from '../../../src/netlink/codec/tc/message.js';
import { encodeHtbClass } from '../../../src/netlink/codec/tc/qdisc/htb.js';
import { encodeQdisc } from '../../../src/netlink/codec/tc/qdisc.js';
import { MessageWriter } from '../../../src/netlink/codec/writer.js';

function refusal(encode: (writer: MessageWriter) => void): InvalidInputError {
  const writer = new MessageWriter();
  writer.beginMessage(36, 0, 1);
  try {
    encode(writer);
  } catch (error) {
    expect(error).toBeInstanceOf(InvalidInputError);
    const classified = classifyError(error);
    expect(classified.code).toBe('VCNET_INVALID_INPUT');
    expect(classified.exit).toBe('BAD_INPUT');
    return error as InvalidInputError;
  }
  throw new Error('expected a refusal');
}

it('refuses a tc action it cannot encode', () => {
  const error = refusal((writer) => encodeActions(writer, 1, [{ kind: 'police' }]));
  expect(error.field).toBe('tc action 1 kind');
  expect(error.message).toContain('"police"');
  expect(error.accepted).toContain('mirred');
});

it('refuses a tc filter it cannot encode', () => {
  const error = refusal((writer) =>
    encodeFilter(writer, { index: 2, parent: TC_H_ROOT, priority: 1, options: { kind: 'flower' } }),
  );
  expect(error.field).toBe('tc filter kind');
  expect(error.message).toContain('"flower"');
  expect(error.accepted).toContain('u32');
});

it('refuses an unknown qdisc kind as it refuses filters, and still encodes ingress and clsact', () => {
  const error = refusal((writer) =>
    encodeQdisc(writer, { index: 2, handle: 0x10000, parent: TC_H_ROOT, options: { kind: 'fq_codel' } }),
  );
  expect(error.field).toBe('qdisc kind');
  expect(error.message).toContain('"fq_codel"');
  for (const kind of ['ingress', 'clsact'] as const) {
    const writer = new MessageWriter();
    writer.beginMessage(36, 0, 1);
    encodeQdisc(writer, { index: 2, handle: 0xffff0000, parent: 0xfffffff1, options: { kind } });
    writer.endMessage();
  }
});

it('refuses an htb class without a positive rate', () => {
  const error = refusal((writer) =>
    encodeHtbClass(writer, { index: 2, handle: 0x10001, parent: 0x10000, rateBitsPerSecond: 0 }),
  );
  expect(error.field).toBe('htb class rateBitsPerSecond');
  expect(error.message).toContain('0');
});

it('refuses a tc handle it cannot parse', () => {
  expect(parseHandle('1:2')).toBe(0x10002);
  let caught: unknown;
  try {
    parseHandle('12345:');
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(InvalidInputError);
  expect((caught as InvalidInputError).field).toBe('tc handle');
  expect((caught as InvalidInputError).message).toContain('"12345:"');
  expect(classifyError(caught).exit).toBe('BAD_INPUT');
});
