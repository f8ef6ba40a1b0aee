/**
 * The bounds on kata-network input, in a module of their own: the CLI checks them while reading a
 * file, before it loads the protobuf code that the rest of kata-network-json.ts needs.
 */

/** Largest kata-network input accepted, in bytes: a few hundred interfaces or routes. */
export const MAX_KATA_JSON_BYTES = 1 << 20;
/** Deepest nesting accepted: the messages nest three levels; the margin is for wrappers. */
export const MAX_KATA_JSON_DEPTH = 16;
