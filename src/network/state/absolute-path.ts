/**
 * Paths users give for state (--state-dir, VCNET_STATE_DIR, VCNET_STATE_REGISTRY) made absolute
 * once, so a record, the registry and gc all name the same place whatever directory a later vcnet
 * runs from.
 */
import { resolve } from 'node:path';
import { errnoOf, InvalidInputError } from '../../errors.js';

/** Whether `path` names the filesystem's root ("/", "//", "/a/.."): never a state directory. */
export function namesFilesystemRoot(path: string): boolean {
  return resolve(path) === '/';
}

/**
 * `path` made absolute. A relative one needs the working directory, which may have been deleted:
 * `resolve()` then throws ENOENT from `process.cwd()`, refused here naming `field`.
 */
export function absolutePath(field: string, path: string, kind: 'file' | 'directory'): string {
  let absolute: string;
  try {
    absolute = resolve(path);
  } catch (error) {
    if (errnoOf(error) !== 'ENOENT') throw error;
    throw new InvalidInputError(
      field,
      path,
      `an absolute ${kind} path, or a relative one from a working directory that exists`,
      `the current working directory was deleted, so the relative path ${JSON.stringify(path)} means nothing: give an absolute path, or run vcnet from a directory that exists`,
    );
  }
  // "/" as a state directory would put .locks and every sandbox's directory at the filesystem's root.
  if (kind === 'directory' && namesFilesystemRoot(absolute)) {
    throw new InvalidInputError(field, path, 'a directory path other than "/", such as /run/vcnet/sandboxes');
  }
  return absolute;
}
