/**
 * What a file that should be a namespace is instead. The namespace layer (opening a path as a
 * network namespace) and the netlink layer (a handle opened in a namespace by path) both refuse a
 * FIFO, a directory or a device before opening it (opening a FIFO blocks) and a regular file off nsfs,
 * with the same words; so this sits below both.
 */
import type { Stats } from 'node:fs';

/** NSFS_MAGIC (include/uapi/linux/magic.h): the file system of namespace files. */
export const NSFS_MAGIC = 0x6e736673;

/** A file that cannot be a namespace file at all, said plainly ("a FIFO"); undefined for a regular file. */
export function nonNamespaceFileKind(stats: Stats): string | undefined {
  if (stats.isFIFO()) return 'a FIFO';
  if (stats.isDirectory()) return 'a directory';
  if (stats.isSocket()) return 'a socket';
  if (stats.isCharacterDevice()) return 'a character device';
  if (stats.isBlockDevice()) return 'a block device';
  return undefined;
}
