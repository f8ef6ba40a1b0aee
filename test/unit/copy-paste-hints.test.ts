/**
 * The commands vcnet prints for the reader to paste quote what the shell would split or run: a
 * namespace or state directory path with a space and a quote comes back as one word.
 */
import { execFileSync } from 'node:child_process';
import { expect, it } from 'vitest';
import { RecordedIdentityDamagedError } from '../../src/netns/namespace-identity.js';
import { stateDirectoryFlag } from '../../src/network/state/store.js';

const AWKWARD = "/tmp/s16qa/it's a pod";

/** The words `sh` splits `command` into. */
function wordsOf(command: string): string[] {
  const out = execFileSync('sh', ['-c', `printf '%s\\n' ${command}`], { encoding: 'utf8' });
  return out.split('\n').slice(0, -1);
}

it('quotes the namespace path in the gc hint of a damaged record', () => {
  const error = new RecordedIdentityDamagedError(
    '/tmp/s16qa/state/a.json',
    'namespace.ino',
    { path: AWKWARD, dev: 4, ino: 100, cookie: '9' },
    { dev: 4, ino: 101, cookie: '9' },
  );
  const command = /`vcnet gc --netns ([^`]*)`/.exec(error.hint ?? '')?.[1];
  expect(command).toBeDefined();
  expect(wordsOf(command!)).toEqual([AWKWARD]);
});

it('quotes the state directory in --state-dir', () => {
  const flag = stateDirectoryFlag(AWKWARD);
  expect(wordsOf(flag)).toEqual(['--state-dir', AWKWARD]);
});
