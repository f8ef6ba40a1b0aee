/**
 * scripts/setup refuses a Node.js older than package.json's engines before it installs anything: npm
 * ci under Debian 12's own Node 18 only warned (EBADENGINE), and the tests then failed far from the
 * cause. The fake `node` programs below print a version and nothing else runs: setup stops first.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';

const setup = new URL('../../scripts/setup', import.meta.url).pathname;
const engines = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')).engines.node as string;
const directory = mkdtempSync(join(tmpdir(), 'vcnet-setup-node-'));
afterAll(() => rmSync(directory, { recursive: true, force: true }));

/** setup run with PATH holding only a `node` that prints `version` (none when undefined) and bash's own. */
function runSetupWithNode(version: string | undefined, ...args: string[]) {
  const bin = mkdtempSync(join(directory, 'bin-'));
  if (version !== undefined) {
    writeFileSync(join(bin, 'node'), `#!/bin/sh\necho ${version}\n`);
    chmodSync(join(bin, 'node'), 0o755);
  }
  // dirname is setup's first command: a PATH without coreutils would fail before the check.
  writeFileSync(join(bin, 'dirname'), '#!/bin/sh\nexec /usr/bin/dirname "$@"\n');
  chmodSync(join(bin, 'dirname'), 0o755);
  return spawnSync('/bin/bash', [setup, ...args], { env: { PATH: bin }, encoding: 'utf8' });
}

it('package.json asks for Node.js 20 or later, the major setup checks', () => {
  expect(engines).toBe('>=20');
});

it('refuses Debian 12 own Node 18 by its version, before installing anything', () => {
  const result = runSetupWithNode('v18.19.0');
  expect(result.status).toBe(1);
  expect(result.stderr).toContain('Node.js v18.19.0 is on PATH');
  expect(result.stderr).toContain('needs 20 or later');
  expect(result.stdout).not.toContain('installing');
});

it('says node is missing when PATH has none', () => {
  const result = runSetupWithNode(undefined);
  expect(result.status).toBe(1);
  expect(result.stderr).toContain('node was not found on PATH');
});

it('a version it cannot read is refused, not taken as new enough', () => {
  const result = runSetupWithNode('garbage');
  expect(result.status).toBe(1);
  expect(result.stderr).toContain('Node.js garbage is on PATH');
});

it('--no-npm (Debian packages only) does not need node', () => {
  // Stops later, at dpkg-query, which this PATH lacks: what matters is that no Node.js message came first.
  const result = runSetupWithNode('v18.19.0', '--no-npm');
  expect(result.stderr).not.toContain('Node.js');
});

it('takes Node 20 and goes on past the check', () => {
  const result = runSetupWithNode('v20.20.2');
  expect(result.stderr).not.toContain('Node.js');
  expect(result.stderr).not.toContain('node was not found');
});
