/**
 * Interface names as the kernel sees them (net/core/dev.c dev_valid_name and dev_alloc_name), and the
 * names vcnet keeps for itself. A name the kernel would refuse, or rewrite, must be refused before
 * anything is made: a tap asked for as `tap%d` comes back as `tap0`, and vcnet would then record a
 * name that does not exist and leak the real one on detach.
 */
import { InvalidInputError } from '../errors.js';

/** IFNAMSIZ is 16 bytes with the terminating NUL. */
export const MAX_LINK_NAME_BYTES = 15;

const ACCEPTED = `1-${MAX_LINK_NAME_BYTES} bytes, not "." or "..", without '/', ':', '%', whitespace or control characters`;

/** Why the kernel (or its name template expansion) would not take this name, or undefined. */
export function linkNameProblem(name: unknown): string | undefined {
  if (typeof name !== 'string' || name.length === 0) return 'it is empty';
  if (Buffer.byteLength(name) > MAX_LINK_NAME_BYTES)
    return `it is ${Buffer.byteLength(name)} bytes long (at most ${MAX_LINK_NAME_BYTES})`;
  if (name === '.' || name === '..') return 'it is a path component';
  if (name.includes('/')) return "it contains '/'";
  if (name.includes(':')) return "it contains ':' (alias syntax)";
  if (name.includes('%')) return "it contains '%' (the kernel expands %d into a number of its own)";
  // The kernel refuses isspace() characters; control characters (NUL first of all) truncate or hide it.
  for (const character of name) {
    const code = character.codePointAt(0) ?? 0;
    if (code <= 0x20 || code === 0x7f || /\s/u.test(character)) return 'it contains whitespace or a control character';
  }
  return undefined;
}

/** Throws an InvalidInputError naming `field` unless `name` is a valid interface name. */
export function checkLinkName(field: string, name: unknown): string {
  const problem = linkNameProblem(name);
  if (problem) throw new InvalidInputError(field, name, `an interface name of ${ACCEPTED}`, `${problem}`);
  return name as string;
}
