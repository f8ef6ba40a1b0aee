/** flock(2) for the state store's per-sandbox locks (src/network/state/lock.ts). */
import { nativeShim } from './binding.js';

export const nativeFileLock = {
  /** flock(fd, LOCK_EX or LOCK_SH | LOCK_NB): false when another holder has it. */
  lockFile: (fd: number, exclusive: boolean): boolean => nativeShim().lockFile(fd, exclusive),
} as const;
