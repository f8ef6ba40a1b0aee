/**
 * What a file that should be a namespace is instead. The namespace layer (opening a path as a
 * network namespace) and the netlink layer (a handle opened in a namespace by path) both refuse a
 * FIFO, a directory or a device before opening it (opening a FIFO blocks) and a regular file off nsfs,
 * with the same words; so this sits below both.
 */
import { type Stats, statSync } from 'node:fs';
import { NAMED_WITH_TRAILING_SLASH } from './errors.js';

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

/**
 * Why stat found no file at `path` (ENOENT or ENOTDIR): 'missing', or NAMED_WITH_TRAILING_SLASH when
 * the path is a file's with a "/" after it (/var/run/netns/pod/): the kernel reads the "/" as "a
 * directory" and answers ENOTDIR, though the namespace file is there; "no such file" would mislead.
 */
export function missingFileKind(path: string, code: string | undefined): string {
  if (code !== 'ENOTDIR' || !/[^/]\/+$/.test(path)) return 'missing';
  try {
    return statSync(path.replace(/\/+$/, '')).isDirectory() ? 'missing' : NAMED_WITH_TRAILING_SLASH;
  } catch {
    return 'missing';
  }
}
