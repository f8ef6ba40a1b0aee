/**
 * README's Requirements paragraph names every Debian package scripts/setup installs (it once left
 * out iptables and strace).
 */
import { readFileSync } from 'node:fs';
import { expect, it } from 'vitest';

const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
const setup = readFileSync(new URL('../../scripts/setup', import.meta.url), 'utf8');

/** setup's `packages=( ... )` list: one package a line, with a comment saying what needs it. */
function setupPackages(): string[] {
  const list = /^packages=\(\n([\s\S]*?)^\)/m.exec(setup)?.[1];
  if (list === undefined) throw new Error('scripts/setup has no packages=( ... ) list');
  return list
    .split('\n')
    .map((line) => line.replace(/#.*/, '').trim())
    .filter((line) => line !== '');
}

it("README's Requirements name every package scripts/setup installs", () => {
  const start = readme.indexOf('**Requirements:**');
  expect(start).toBeGreaterThanOrEqual(0);
  const paragraph = readme.slice(start, readme.indexOf('\n\n', start)).replace(/\s+/g, ' ');
  const packages = setupPackages();
  expect(packages.length).toBeGreaterThan(20);
  const named = (name: string) =>
    new RegExp(`(^|[\\s,:])${name.replace(/[.+]/g, '\\$&')}(?=[\\s,.]|$)`).test(paragraph);
  expect(packages.filter((name) => !named(name))).toEqual([]);
});
