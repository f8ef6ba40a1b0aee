/**
 * The registry of state directories' own leftovers and failures: a registry write killed before its
 * rename leaves `.state-directories.<pid>.<hex>.tmp` beside it (`.state-directories.<pid>.tmp`
 * before session 17), which the next registry change (and gc) removes once its writer is gone and it
 * is older than a minute.
 */
import { spawnSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  registeredStateDirectories,
  registerStateDirectory,
  removeStaleRegistryTemporaries,
} from '../../../src/network/state/registry.js';

let directory: string;

beforeEach(() => {
  directory = mkdtempSync(join(tmpdir(), 'vcnet-registry-'));
});
afterEach(() => {
  rmSync(directory, { recursive: true, force: true });
});

/** A pid no process has: that of a child that has exited. */
function deadPid(): number {
  const child = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  return Number(child.stdout);
}

/** A temporary file of `pid`, `ageMs` old; `hex` null: of the form before session 17, which has no random part. */
function temporary(pid: number, ageMs: number, hex: string | null = '0123456789abcdef'): string {
  const path = join(directory, hex === null ? `.state-directories.${pid}.tmp` : `.state-directories.${pid}.${hex}.tmp`);
  writeFileSync(path, '/x\n');
  const when = (Date.now() - ageMs) / 1000;
  utimesSync(path, when, when);
  return path;
}

describe('registry temporary files', () => {
  it("a registry change removes a dead writer's temporary file older than a minute, and nothing else", async () => {
    const dead = deadPid();
    const stale = temporary(dead, 5 * 60_000);
    const fresh = temporary(dead, 0, 'fedcba9876543210');
    const live = temporary(process.pid, 5 * 60_000, '00000000000000aa');
    const other = join(directory, '.state-directories.tmp');
    writeFileSync(other, '');
    const state = mkdtempSync(join(directory, 'state-'));
    await registerStateDirectory(state, join(directory, 'registry'));
    expect(registeredStateDirectories(join(directory, 'registry'))).toEqual([state]);
    expect(existsSync(stale)).toBe(false);
    for (const kept of [fresh, live, other]) expect(existsSync(kept), kept).toBe(true);
  });

  it("a dead writer's temporary file of the form before session 17 (no random part) is removed as the new form is", async () => {
    const dead = deadPid();
    const stale = temporary(dead, 5 * 60_000, null);
    const live = temporary(process.pid, 5 * 60_000, null);
    const state = mkdtempSync(join(directory, 'state-'));
    await registerStateDirectory(state, join(directory, 'registry'));
    expect(existsSync(stale)).toBe(false);
    expect(existsSync(live)).toBe(true);
    const fresh = temporary(dead, 0, null);
    expect(removeStaleRegistryTemporaries(join(directory, 'registry'))).toEqual([]);
    expect(existsSync(fresh)).toBe(true);
  });

  it("removeStaleRegistryTemporaries (gc's) leaves another user's file of that name alone", () => {
    const dead = deadPid();
    const theirs = temporary(dead, 5 * 60_000);
    chownSync(theirs, 65534, 65534);
    const ours = temporary(dead, 5 * 60_000, 'aaaaaaaaaaaaaaaa');
    expect(removeStaleRegistryTemporaries(join(directory, 'registry'))).toEqual([ours]);
    expect(readdirSync(directory)).toEqual([theirs.slice(directory.length + 1)]);
  });
});
