/**
 * Listing a directory that may not be there. gc's walks (/var/run/netns, each /proc/PID/fd, the
 * state directories' lock files and record directories) and the CNI plugin's GC all read a missing
 * or unreadable directory as one with nothing in it; so this sits below the layers that do.
 */
import { readdirSync } from 'node:fs';

/** The names in `directory`; none when it cannot be listed (missing, not a directory, refused). */
export function safeReaddir(directory: string): string[] {
  try {
    return readdirSync(directory);
  } catch {
    return [];
  }
}
