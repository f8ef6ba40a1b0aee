/**
 * What a kill -9 during attach can leave in a state directory besides plumbing: a lock file with no
 * record (killed before the record directory existed), a record directory holding only the temporary
 * file of the first record write. `gc --netns NS --state-dir S` removes both (--dry-run lists them);
 * a lock a live process holds, and a temporary file of a live writer, are left alone.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tryLockFile } from '../../../src/network/state/lock.js';
import { stateDirectoryPerTest, vcnet } from '../../helpers/cli.js';
import { makeNamespace } from '../../helpers/namespace.js';

const stateDirectory = stateDirectoryPerTest();

/** The pid of a process that has exited. */
function deadPid(): number {
  const child = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  return Number(child.stdout);
}

interface Report {
  removed: Array<{ kind: string; name: string; file: string; detail: string }>;
}

describe('gc and what a killed attach left in the state directory', () => {
  it('removes a lock file without a record and a record directory holding only a dead write, not live ones', () => {
    const pod = makeNamespace('leftover');
    const root = stateDirectory();
    const locks = join(root, '.locks');
    mkdirSync(locks, { recursive: true, mode: 0o700 });
    const dead = deadPid();
    // Killed after taking its lock, before its record directory existed.
    writeFileSync(join(locks, 'killed-early'), String(dead));
    // Killed while writing its first record.
    writeFileSync(join(locks, 'killed-writing'), String(dead));
    mkdirSync(join(root, 'killed-writing'), { mode: 0o700 });
    writeFileSync(join(root, 'killed-writing', `.state.${dead}.tmp`), '{"version":2,"id":"kil');
    // An attach under way: this process holds its lock, before its first write.
    const live = tryLockFile(join(locks, 'attaching'));
    if (!('release' in live)) throw new Error('the test could not take its own lock');
    try {
      const args = ['gc', '--netns', pod.path, '--state-dir', root, '--json'];
      const dry = vcnet([...args, '--dry-run']);
      expect(dry.status, dry.stderr).toBe(0);
      const listed = (JSON.parse(dry.stdout) as Report).removed.map((item) => `${item.kind}:${item.name}`).sort();
      expect(listed).toEqual(['state:killed-early', 'state:killed-writing']);
      // The reason fits the attach killed here too, not only a DEL or detach.
      const emptyDirectory = (JSON.parse(dry.stdout) as Report).removed.find((item) => item.name === 'killed-writing');
      expect(emptyDirectory?.detail).toBe(
        'a record directory without a record (an attach, DEL or detach was interrupted)',
      );
      expect(existsSync(join(locks, 'killed-early'))).toBe(true);
      expect(existsSync(join(root, 'killed-writing'))).toBe(true);

      const collected = vcnet(args);
      expect(collected.status, collected.stderr).toBe(0);
      const removed = (JSON.parse(collected.stdout) as Report).removed.map((item) => `${item.kind}:${item.name}`);
      expect(removed.sort()).toEqual(['state:killed-early', 'state:killed-writing']);
      expect(existsSync(join(locks, 'killed-early'))).toBe(false);
      expect(existsSync(join(locks, 'killed-writing'))).toBe(false);
      expect(existsSync(join(root, 'killed-writing'))).toBe(false);
      expect(existsSync(join(locks, 'attaching'))).toBe(true);

      // A first record being written right now (its writer runs): left alone, dry run or not.
      mkdirSync(join(root, 'writing'), { mode: 0o700 });
      writeFileSync(join(root, 'writing', `.state.${process.pid}.tmp`), '{');
      const again = vcnet([...args, '--dry-run']);
      expect((JSON.parse(again.stdout) as Report).removed).toEqual([]);
    } finally {
      live.release();
    }
  });
});
