import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { iproute2Program, ProgramMissingError, searchDirectories } from '../../../src/benchmark/iproute2-program.js';
import { exitCodeFor } from '../../../src/cli/exit-codes.js';

const directories: string[] = [];
afterEach(() => {
  for (const directory of directories.splice(0)) rmSync(directory, { recursive: true, force: true });
});

describe('iproute2Program', () => {
  it('searches PATH first, then /usr/sbin, /sbin, /usr/bin and /bin (vcnet started without PATH)', () => {
    expect(searchDirectories('')).toEqual(['/usr/sbin', '/sbin', '/usr/bin', '/bin']);
    expect(searchDirectories('/opt/x:/usr/sbin')).toEqual(['/opt/x', '/usr/sbin', '/sbin', '/usr/bin', '/bin']);
    const directory = mkdtempSync(join(tmpdir(), 'vcnet-bin-'));
    directories.push(directory);
    writeFileSync(join(directory, 'tc'), '#!/bin/sh\n');
    chmodSync(join(directory, 'tc'), 0o755);
    expect(iproute2Program('tc', [directory])).toBe(join(directory, 'tc'));
  });

  it('an absent program is "missing" (exit 5), named with its package and a hint', () => {
    const directory = mkdtempSync(join(tmpdir(), 'vcnet-bin-'));
    directories.push(directory);
    const error = (() => {
      try {
        iproute2Program('tc', [directory]);
      } catch (thrown) {
        return thrown;
      }
      return undefined;
    })();
    expect(error).toBeInstanceOf(ProgramMissingError);
    expect((error as ProgramMissingError).code).toBe('VCNET_PROGRAM_MISSING');
    expect((error as Error).message).toMatch(/^tc \(iproute2\) was not found/);
    expect((error as ProgramMissingError).hint).toMatch(/install iproute2.*PATH/);
    expect(exitCodeFor(error)).toBe(5);
  });
});
