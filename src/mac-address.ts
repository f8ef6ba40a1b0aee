/**
 * The one check of an Ethernet MAC address's text, shared by every layer that takes one (the
 * hypervisor's device configs, the agent's requests, the state files, the netlink codec), and the
 * one description of what is accepted, so that all of them refuse alike.
 */
const MAC_PATTERN = /^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/;

/** What a MAC address field accepts, for InvalidInputError's `accepted` and schema messages. */
export const MAC_ADDRESS_ACCEPTED = 'a MAC address: six hex octets separated by colons, e.g. 02:42:ac:11:00:02';

/** Six hex octets separated by colons, either case. */
export function isMacAddress(text: unknown): text is string {
  return typeof text === 'string' && MAC_PATTERN.test(text);
}
