/**
 * What a test leaves running and made, undone after each test in one order: first what it started
 * (last first, so a watch stops before what it watches goes), then the namespaces it made, then its
 * directories. For tests that start watches and agents over a pod, as until() is for their waits.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach } from 'vitest';
import { cleanupNamespaces } from './namespace.js';

export interface TestCleanup {
  /** Runs `stop` after the test, before what was deferred earlier. */
  defer(stop: () => unknown): void;
  /** A new directory under the system's temporary one (a state directory, scratch files), removed after the test. */
  directory(prefix: string): string;
}

/** Registers the afterEach that undoes what each test of the file deferred and made. */
export function cleanupAfterEach(): TestCleanup {
  const stops: Array<() => unknown> = [];
  const directories: string[] = [];
  afterEach(async () => {
    for (const stop of stops.splice(0).reverse()) await stop();
    cleanupNamespaces();
    for (const directory of directories.splice(0)) rmSync(directory, { recursive: true, force: true });
  });
  return {
    defer: (stop) => {
      stops.push(stop);
    },
    directory: (prefix) => {
      const directory = mkdtempSync(join(tmpdir(), prefix));
      directories.push(directory);
      return directory;
    },
  };
}
