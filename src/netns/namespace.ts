/**
 * Named network namespaces, compatible with `ip netns`: a namespace is kept alive by a bind mount
 * at /var/run/netns/NAME, so `ip netns exec NAME ...` sees the ones vcnet makes and vice versa.
 */
import { join } from 'node:path';
import { InvalidInputError, SystemCallError } from '../errors.js';
import { nativeNamespaces } from '../native/namespaces.js';
import { checkNetworkNamespace, NETNS_RUN_DIRECTORY } from './namespace-identity.js';

const NAME_PATTERN = /^[A-Za-z0-9_.-]{1,200}$/;

/** /var/run/netns/NAME for a namespace name `ip netns` accepts; refuses any other name. */
export function namespacePath(name: string): string {
  if (!NAME_PATTERN.test(name) || name === '.' || name === '..') {
    throw new InvalidInputError('namespace name', name, 'letters, digits, "_", "." and "-" (1-200 characters)');
  }
  return join(NETNS_RUN_DIRECTORY, name);
}

/** Creates a named namespace and returns its path. Fails with EEXIST when the name is taken. */
export function createNamespace(name: string): string {
  namespacePath(name);
  try {
    return nativeNamespaces.createNetns(NETNS_RUN_DIRECTORY, name);
  } catch (error) {
    throw new SystemCallError(`create network namespace ${name}`, error as NodeJS.ErrnoException);
  }
}

/** Deletes a named namespace (its path or name). A namespace that is already gone is fine. */
export function deleteNamespace(nameOrPath: string): void {
  const path = nameOrPath.includes('/') ? nameOrPath : namespacePath(nameOrPath);
  try {
    nativeNamespaces.deleteNetns(path);
  } catch (error) {
    throw new SystemCallError(`delete network namespace ${path}`, error as NodeJS.ErrnoException);
  }
}

/**
 * Checks that a path names a network namespace, without blocking on a FIFO; returns the path.
 * Refusals (missing, a FIFO, a regular file, a directory, another type of namespace, a process's
 * socket or tap fd: see HeldDevicePaths) name the path. Nothing is made inside it: the operation that follows opens it for its work, and checks it
 * by identity on its own one socket there.
 */
export function openNamespace(path: string, field = 'netns'): string {
  checkNetworkNamespace(path, field, 'refuse');
  return path;
}

// One definition of "the host's namespace" for the CLI and the CNI plugin alike.
