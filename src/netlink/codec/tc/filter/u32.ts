/**
 * u32: match on 32-bit words of the packet (struct tc_u32_sel with its keys), then classify or run
 * actions. vcnet's redirect is `u32 match u32 0 0`: one key that matches every frame.
 */
import type { Attributes } from '../../reader.js';
import type { MessageWriter } from '../../writer.js';
import { decodeActions, encodeActions, type TcAction } from '../action.js';

/** TCA_U32_* attribute types of a u32 filter. */
export const U32Attribute = {
  CLASSID: 1,
  HASH: 2,
  LINK: 3,
  DIVISOR: 4,
  SEL: 5,
  POLICE: 6,
  ACT: 7,
  INDEV: 8,
  PCNT: 9,
  MARK: 10,
  FLAGS: 11,
} as const;
/** The u32 selector flag that ends classification at this filter when it matches (TC_U32_TERMINAL). */
export const TC_U32_TERMINAL = 1;
const TC_U32_SEL_LENGTH = 16;
const TC_U32_KEY_LENGTH = 16;

/** One u32 match key: a 32-bit value and mask at a byte offset into the packet. */
export interface U32Key {
  mask: number;
  value: number;
  offset: number;
  offsetMask: number;
}

/** A u32 filter's options: its match keys (none matches every packet), a class and actions. */
export interface U32FilterOptions {
  kind: 'u32';
  keys: U32Key[];
  classId?: number;
  actions: TcAction[];
  terminal?: boolean;
}

/** A match-everything u32 selector, as `u32 match u32 0 0`. */
export const MATCH_ALL_U32_KEYS: U32Key[] = [{ mask: 0, value: 0, offset: 0, offsetMask: 0 }];

/** The attributes inside TCA_OPTIONS of a u32 filter. */
export function encodeU32Options(writer: MessageWriter, options: U32FilterOptions): void {
  const keys = options.keys;
  const selector = writer.struct(U32Attribute.SEL, TC_U32_SEL_LENGTH + keys.length * TC_U32_KEY_LENGTH);
  const terminal = options.terminal ?? (options.actions.length > 0 || options.classId !== undefined);
  selector.writeUInt8(terminal ? TC_U32_TERMINAL : 0, 0);
  selector.writeUInt8(keys.length, 2);
  keys.forEach((key, i) => {
    const at = TC_U32_SEL_LENGTH + i * TC_U32_KEY_LENGTH;
    selector.writeUInt32BE(key.mask >>> 0, at);
    selector.writeUInt32BE(key.value >>> 0, at + 4);
    selector.writeInt32LE(key.offset, at + 8);
    selector.writeInt32LE(key.offsetMask, at + 12);
  });
  if (options.classId !== undefined) writer.u32(U32Attribute.CLASSID, options.classId);
  if (options.actions.length > 0) encodeActions(writer, U32Attribute.ACT, options.actions);
}

/** Reads a u32 filter's options (selector keys, class, actions). */
export function decodeU32Options(options: Attributes): U32FilterOptions {
  const selector = options.raw(U32Attribute.SEL);
  const keys: U32Key[] = [];
  let terminal = false;
  if (selector && selector.length >= TC_U32_SEL_LENGTH) {
    terminal = (selector.readUInt8(0) & TC_U32_TERMINAL) !== 0;
    const count = selector.readUInt8(2);
    for (let i = 0; i < count && TC_U32_SEL_LENGTH + (i + 1) * TC_U32_KEY_LENGTH <= selector.length; i++) {
      const at = TC_U32_SEL_LENGTH + i * TC_U32_KEY_LENGTH;
      keys.push({
        mask: selector.readUInt32BE(at),
        value: selector.readUInt32BE(at + 4),
        offset: selector.readInt32LE(at + 8),
        offsetMask: selector.readInt32LE(at + 12),
      });
    }
  }
  const u32: U32FilterOptions = {
    kind: 'u32',
    keys,
    actions: decodeActions(options.nested(U32Attribute.ACT)),
    terminal,
  };
  const classId = options.u32(U32Attribute.CLASSID);
  if (classId !== undefined) u32.classId = classId;
  return u32;
}
