/** macvlan and macvtap: a link on a parent, with a mode (IFLA_MACVLAN_MODE). */
import { namesByValue } from '../constants.js';
import type { Attributes } from '../reader.js';
import type { MessageWriter } from '../writer.js';
import { LinkInfoAttribute } from './message.js';

/** IFLA_MACVLAN_* attribute types of a macvlan or macvtap link's data. */
export const MacvlanAttribute = { MODE: 1, FLAGS: 2 } as const;
/** The kernel's macvlan modes (bit values) by name. */
export const MacvlanMode = { private: 1, vepa: 2, bridge: 4, passthru: 8, source: 16 } as const;

/** A macvlan or macvtap mode by name: `private`, `vepa`, `bridge`, `passthru` or `source`. */
export type MacvlanModeName = keyof typeof MacvlanMode;

/** A macvlan or macvtap link's own data: its mode. */
export interface MacvlanLinkData {
  kind: 'macvlan' | 'macvtap';
  mode?: MacvlanModeName;
}

const macvlanModeByValue = namesByValue(MacvlanMode);

/** IFLA_INFO_DATA of a new macvlan or macvtap (nothing without a mode: the kernel's default, vepa). */
export function encodeMacvlanData(writer: MessageWriter, data: MacvlanLinkData): void {
  if (!data.mode) return;
  writer.beginNested(LinkInfoAttribute.DATA);
  writer.u32(MacvlanAttribute.MODE, MacvlanMode[data.mode]);
  writer.endNested();
}

/**
 * Reads a macvlan or macvtap link's mode from its IFLA_INFO_DATA attributes; undefined when absent or
 * unknown.
 */
export function decodeMacvlanMode(data: Attributes): MacvlanModeName | undefined {
  const mode = data.u32(MacvlanAttribute.MODE);
  return mode === undefined ? undefined : macvlanModeByValue.get(mode);
}
