/**
 * The one check of an Ethernet MAC address's text, shared by every layer that takes one (the
 * hypervisor's device configs, the agent's requests, the state files, the netlink codec), and the
 * one description of what is accepted, so that all of them refuse alike; and the private MACs vcnet
 * makes.
 */
import { randomBytes } from 'node:crypto';

const MAC_PATTERN = /^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/;

/** What a MAC address field accepts, for InvalidInputError's `accepted` and schema messages. */
export const MAC_ADDRESS_ACCEPTED = 'a MAC address: six hex octets separated by colons, e.g. 02:42:ac:11:00:02';

/** Six hex octets separated by colons, either case. */
export function isMacAddress(text: unknown): text is string {
  return typeof text === 'string' && MAC_PATTERN.test(text);
}

/**
 * A random locally administered unicast MAC (bit 1 of the first byte set, bit 0 cleared), from the
 * CSPRNG, as Kata makes for the pair side it does not hand to the guest.
 */
export function randomPrivateMacAddress(): string {
  const bytes = randomBytes(6);
  bytes[0] = (bytes[0]! | 0x02) & 0xfe;
  return [...bytes].map((byte) => byte.toString(16).padStart(2, '0')).join(':');
}

export function isLocallyAdministeredUnicast(mac: string): boolean {
  const first = Number.parseInt(mac.slice(0, 2), 16);
  return (first & 0x02) === 0x02 && (first & 0x01) === 0;
}
