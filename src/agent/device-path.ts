/**
 * An Interface's devicePath as Kata's agent reads it (kata-containers 7c6ba40c54ea, src/agent:
 * rpc.rs update_interface, linux_abi.rs pcipath_from_dev_tree_path, pci.rs Path and SlotFn), so that
 * vcnet takes and refuses the same values, and its guest agent finds the same device:
 * - a PCI path: one element or more joined by "/", from the root bus down, each a slot in hex (at
 *   most 1f, any number of digits, a sign as Rust's isize::from_str_radix takes it) with an optional
 *   ".function" in hex (at most 7); Kata's runtime writes slots only, two digits each ("02/00");
 * - under a NUMA root bus (a pxb-pcie expander): three elements or more whose first, read as a u8 in
 *   hex, is 20 or above: that bus's number, then the PCI path below it ("20/00/02");
 * - on s390x, a CCW device ("0.0.0001"), which vcnet's guest does not use.
 */

/** One step of a PCI path: a device number on its bus, and the function of that device. */
export interface PciPathElement {
  slot: number;
  function: number;
}

export interface PciPath {
  /** The root bus the path starts from: 0, or a NUMA expander's bus number (0x20 and above). */
  rootBus: number;
  elements: PciPathElement[];
}

const SLOT_MAX = 0x1f;
const FUNCTION_MAX = 0x7;
/** The lowest bus number Kata's runtime gives a pxb-pcie expander (linux_abi.rs PXB_PCIE_ROOT_BUS_MIN). */
const NUMA_ROOT_BUS_MIN = 0x20;

/** An s390x CCW device ("0.0.0001"): valid for Kata, unused by vcnet's guest. */
const CCW_PATTERN = /^[0-9a-f]\.[0-9a-f]\.[0-9a-f]{4}$/i;

/** What an Interface's devicePath (pciPath) may be, said the same by the JSON reader and by the agent's check. */
export const DEVICE_PATH_ACCEPTED =
  '"", a PCI path of slots in hex (00-1f) from the root bus down, each with an optional .function (0-7), such as "02/00" or "02.0/01.1" (after a NUMA root bus of 20 or above: "20/00/02"), or an s390x CCW device such as "0.0.0001"';

/** A hex number as Rust's from_str_radix(text, 16) reads it (a "+", or "-" when `signed`), else undefined. */
function hexNumber(text: string, signed: boolean): number | undefined {
  const match = (signed ? /^([+-]?)([0-9a-f]+)$/i : /^(\+?)([0-9a-f]+)$/i).exec(text);
  if (!match) return undefined;
  const magnitude = Number.parseInt(match[2] ?? '', 16);
  return match[1] === '-' ? -magnitude : magnitude;
}

/** "SS" or "SS.F" (pci.rs SlotFn::from_str), else undefined. */
function slotFunction(text: string): PciPathElement | undefined {
  const [slotText = '', functionText, extra] = text.split('.');
  if (extra !== undefined) return undefined;
  const slot = hexNumber(slotText, true);
  const functionNumber = functionText === undefined ? 0 : hexNumber(functionText, true);
  if (slot === undefined || slot < 0 || slot > SLOT_MAX) return undefined;
  if (functionNumber === undefined || functionNumber < 0 || functionNumber > FUNCTION_MAX) return undefined;
  // Math.abs: "-0", which Rust reads as 0, is -0 here.
  return { slot: Math.abs(slot), function: Math.abs(functionNumber) };
}

/** The PCI path `text` names, as Kata's agent reads it; undefined for anything else ("" and CCW ids too). */
export function parsePciPath(text: string): PciPath | undefined {
  const parts = text.split('/');
  let rootBus = 0;
  const first = hexNumber(parts[0] ?? '', false);
  if (parts.length >= 3 && first !== undefined && first >= NUMA_ROOT_BUS_MIN && first <= 0xff) {
    rootBus = first;
    parts.shift();
  }
  const elements: PciPathElement[] = [];
  for (const part of parts) {
    const element = slotFunction(part);
    if (!element) return undefined;
    elements.push(element);
  }
  return { rootBus, elements };
}

/**
 * A PCI path written as Kata's runtime writes one: two hex digits per slot, "/" between them (types
 * PciPath.String), and a function only where it is not 0 (the runtime has none; the agent reads
 * "SS.F"), so "02.0/01.1" is "02/01.1" and "2/1" is "02/01".
 */
export function pciPathText(path: PciPath): string {
  const hex = (value: number) => value.toString(16).padStart(2, '0');
  const elements = path.elements.map(
    (element) => `${hex(element.slot)}${element.function === 0 ? '' : `.${element.function.toString(16)}`}`,
  );
  return [...(path.rootBus === 0 ? [] : [hex(path.rootBus)]), ...elements].join('/');
}

/** Whether `path` is a device path Kata's agent takes: "", a PCI path or an s390x CCW device. */
export function isDevicePath(path: string): boolean {
  return path === '' || parsePciPath(path) !== undefined || CCW_PATTERN.test(path);
}

/** `path` as Kata's runtime would send it: a PCI path in its written form (pciPathText), anything else as given. */
export function sentDevicePath(path: string): string {
  const pciPath = parsePciPath(path);
  return pciPath ? pciPathText(pciPath) : path;
}
