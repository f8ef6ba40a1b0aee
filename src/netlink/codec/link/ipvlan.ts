/** ipvlan: a link on a parent sharing its MAC, with a mode (IFLA_IPVLAN_MODE, a u16). */
import { namesByValue } from '../constants.js';
import type { Attributes } from '../reader.js';
import type { MessageWriter } from '../writer.js';
import { LinkInfoAttribute } from './message.js';

/** IFLA_IPVLAN_* attribute types of an ipvlan link's data. */
export const IpvlanAttribute = { MODE: 1, FLAGS: 2 } as const;
/** The kernel's ipvlan modes by name. */
export const IpvlanMode = { l2: 0, l3: 1, l3s: 2 } as const;

/** An ipvlan mode by name: `l2`, `l3` or `l3s`. */
export type IpvlanModeName = keyof typeof IpvlanMode;

/** An ipvlan link's own data: its mode. */
export interface IpvlanLinkData {
  kind: 'ipvlan';
  mode?: IpvlanModeName;
}

const ipvlanModeByValue = namesByValue(IpvlanMode);

/** IFLA_INFO_DATA of a new ipvlan (nothing without a mode: the kernel's default, l3). */
export function encodeIpvlanData(writer: MessageWriter, data: IpvlanLinkData): void {
  if (!data.mode) return;
  writer.beginNested(LinkInfoAttribute.DATA);
  writer.u16(IpvlanAttribute.MODE, IpvlanMode[data.mode]);
  writer.endNested();
}

/** Reads an ipvlan link's mode from its IFLA_INFO_DATA attributes; undefined when absent or unknown. */
export function decodeIpvlanMode(data: Attributes): IpvlanModeName | undefined {
  const mode = data.u16(IpvlanAttribute.MODE);
  return mode === undefined ? undefined : ipvlanModeByValue.get(mode);
}
