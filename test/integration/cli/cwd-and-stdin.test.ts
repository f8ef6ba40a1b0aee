/** Input a service manager can hand vcnet by accident: a deleted working directory, an empty stdin. */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CLI, stateDirectoryPerTest } from '../../helpers/cli.js';

const stateDirectory = stateDirectoryPerTest('vcnet-input-');

/**
 * `vcnet ARGS --json` started in a directory removed before vcnet resolves anything (the child
 * starts there, then removes it): the bad-input error it prints.
 */
function inDeletedDirectory(args: string): { code: string; message: string; hint: string } {
  const gone = mkdtempSync(join(tmpdir(), 'vcnet-gone-'));
  const result = spawnSync(
    'sh',
    ['-c', `cd "$1" && rmdir "$1" && exec "$2" "$3" ${args} --json`, 'sh', gone, process.execPath, CLI],
    { encoding: 'utf8' },
  );
  try {
    rmdirSync(gone);
  } catch {
    // removed by the child, as it should be
  }
  expect(result.status, result.stderr).toBe(2);
  return (JSON.parse(result.stdout) as { error: { code: string; message: string; hint: string } }).error;
}

describe('a deleted working directory', () => {
  it('a relative --state-dir is bad input naming --state-dir (exit 2), not VCNET_ERROR', () => {
    const error = inDeletedDirectory('list-ifaces x --state-dir state');
    expect(error.code).toBe('VCNET_INVALID_INPUT');
    expect(error.message).toContain('invalid --state-dir: "state"');
    expect(error.hint).toContain('working directory was deleted');
  });

  it('a relative FILE that is not there: bad input naming it (exit 2), the hint saying the directory was deleted', () => {
    const error = inDeletedDirectory('add-iface x eth1.json');
    expect(error.code).toBe('VCNET_INVALID_INPUT');
    expect(error.message).toContain('invalid FILE: "eth1.json"');
    expect(error.hint).toBe(
      'ENOENT: eth1.json does not exist: check the path (read from the current directory, which was deleted: give an absolute path), or give - and pipe it to standard input',
    );
  });
});

describe('an empty standard input', () => {
  for (const command of ['add-iface', 'del-iface', 'update-routes']) {
    it(`${command} ID - says stdin was empty`, () => {
      const result = spawnSync(process.execPath, [CLI, command, 'x', '-', '--state-dir', stateDirectory()], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      expect(result.status).toBe(2);
      expect(result.stderr).toContain('standard input was empty');
      expect(result.stderr).not.toContain('Unexpected end of JSON input');
    });
  }
});

describe('VCNET_STATE_REGISTRY that cannot be a file', () => {
  it('a directory, or a path under a file: exit 2 naming VCNET_STATE_REGISTRY, not VCNET_SYSCALL EISDIR', () => {
    const base = mkdtempSync(join(tmpdir(), 'vcnet-registry-'));
    try {
      writeFileSync(join(base, 'file'), '');
      for (const registry of [base, join(base, 'file', 'registry')]) {
        const result = spawnSync(process.execPath, [CLI, 'gc', '--state-dir', stateDirectory(), '--json'], {
          encoding: 'utf8',
          env: { ...process.env, VCNET_STATE_REGISTRY: registry },
        });
        expect(result.status, result.stderr).toBe(2);
        const { error } = JSON.parse(result.stdout) as { error: { code: string; message: string } };
        expect(error.code).toBe('VCNET_INVALID_INPUT');
        expect(error.message).toContain(`invalid VCNET_STATE_REGISTRY: "${registry}"`);
      }
    } finally {
      rmSync(base, { recursive: true, force: true });
    }
  });
});

describe('add-iface with a family its address does not have', () => {
  it('family v6 with an IPv4 address: exit 2 naming the family field, before any sandbox is looked up (as update-routes)', () => {
    const input = JSON.stringify({ name: 'x', IPAddresses: [{ family: 1, address: '10.232.90.9', mask: '24' }] });
    const result = spawnSync(process.execPath, [CLI, 'add-iface', 'x', '-', '--state-dir', stateDirectory()], {
      encoding: 'utf8',
      input,
    });
    expect(result.status, result.stderr).toBe(2);
    expect(result.stderr).toContain('invalid interface.IPAddresses[0].family: 1');
  });
});
