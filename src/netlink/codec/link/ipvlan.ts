/** ipvlan: a link on a parent sharing its MAC, with a mode (IFLA_IPVLAN_MODE, a u16). */
import { namesByValue } from '../constants.js';
import type { Attributes } from '../reader.js';
import type { MessageWriter } from '../writer.js';
import { LinkInfoAttribute } from './message.js';

export const IpvlanAttribute = { MODE: 1, FLAGS: 2 } as const;
export const IpvlanMode = { l2: 0, l3: 1, l3s: 2 } as const;

export type IpvlanModeName = keyof typeof IpvlanMode;

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

export function decodeIpvlanMode(data: Attributes): IpvlanModeName | undefined {
  const mode = data.u16(IpvlanAttribute.MODE);
  return mode === undefined ? undefined : ipvlanModeByValue.get(mode);
}
