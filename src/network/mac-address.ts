import { randomBytes } from 'node:crypto';

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
