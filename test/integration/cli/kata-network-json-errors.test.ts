/**
 * add-iface, del-iface, update-routes and watch take --json as the other commands do: a failure is
 * then the one-line `{"error": ...}` object on stdout (besides the text on stderr), so a program can
 * tell its causes apart by code; a success prints the same JSON as without it. They refused --json
 * as an unknown option (exit 2), leaving only stderr text and exit 1 for a dozen different causes.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { stateDirectoryPerTest, vcnet } from '../../helpers/cli.js';
import { makePod } from '../../helpers/pod.js';

const stateDirectory = stateDirectoryPerTest('vcnet-kata-json-');

function errorOf(stdout: string): { code: string; message: string } {
  const lines = stdout.trim().split('\n');
  expect(lines).toHaveLength(1);
  return JSON.parse(lines[0]!).error;
}

describe('--json of the commands whose result is JSON already', () => {
  it('prints the JSON error object on failure, each with its own code', () => {
    const { pod } = makePod();
    const file = join(stateDirectory(), 'input.json');
    writeFileSync(file, JSON.stringify({ name: 'eth0' }));
    for (const args of [
      ['add-iface', 'nope', file],
      ['del-iface', 'nope', file],
      ['watch', '--sandbox', 'nope'],
    ]) {
      const result = vcnet([...args, '--state-dir', stateDirectory(), '--json']);
      expect(result.status, `${args[0]}: ${result.stderr}`).toBe(1);
      expect(errorOf(result.stdout).code).toBe('VCNET_SANDBOX_NOT_FOUND');
      expect(result.stderr).toMatch(/^vcnet: sandbox nope is not attached/m);
    }
    const routes = join(stateDirectory(), 'routes.json');
    writeFileSync(routes, JSON.stringify([{ dest: '10.9.0.0/16', gateway: 'nonsense', device: 'eth0' }]));
    const attached = vcnet(['attach', '--sandbox', 'j1', '--netns', pod.path, '--state-dir', stateDirectory()]);
    expect(attached.status, attached.stderr).toBe(0);
    const refused = vcnet(['update-routes', 'j1', routes, '--state-dir', stateDirectory(), '--json']);
    expect(refused.status, refused.stderr).toBe(2);
    expect(errorOf(refused.stdout)).toMatchObject({ code: 'VCNET_INVALID_INPUT' });
    expect(errorOf(refused.stdout).message).toContain('nonsense');

    // A success prints what it prints without --json: the result as one JSON line.
    writeFileSync(routes, JSON.stringify([{ dest: '10.9.0.0/16', gateway: '10.200.0.1', device: 'eth0' }]));
    const plain = vcnet(['update-routes', 'j1', routes, '--state-dir', stateDirectory()]);
    const json = vcnet(['update-routes', 'j1', routes, '--state-dir', stateDirectory(), '--json']);
    expect(plain.status, plain.stderr).toBe(0);
    expect(json.status, json.stderr).toBe(0);
    expect(json.stdout).toBe(plain.stdout);
    expect(JSON.parse(json.stdout)).toContainEqual(expect.objectContaining({ dest: '10.9.0.0/16' }));
    expect(vcnet(['detach', '--sandbox', 'j1', '--state-dir', stateDirectory()]).status).toBe(0);
  });
});
