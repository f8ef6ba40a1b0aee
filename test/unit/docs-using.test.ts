/**
 * docs/library.md on `using`: the declarations are syntax that Node parses only from 24 on (Node 20.4
 * brought the symbols alone). The page says so, and this Node agrees with what it says.
 */
import { readFileSync } from 'node:fs';
import { expect, it } from 'vitest';

const page = readFileSync(new URL('../../docs/library.md', import.meta.url), 'utf8');
const section = page.slice(page.indexOf('## Closing handles with `using`'), page.indexOf('## Inside a long-running'));

it('says which Node parses `await using` in plain JavaScript, and this Node agrees', () => {
  expect(section).toContain('Node ≥ 24');
  expect(section).not.toMatch(/Node ≥ 20\.4;/);
  const parses = (() => {
    try {
      // An async function's body: parsed, never run.
      new Function('return async () => { await using handle = null; };');
      return true;
    } catch (error) {
      expect(error).toBeInstanceOf(SyntaxError);
      return false;
    }
  })();
  const major = Number(process.versions.node.split('.')[0]);
  expect(parses).toBe(major >= 24);
  // What the page says Node ≥ 20.4 has: the symbols.
  expect(typeof Symbol.asyncDispose).toBe('symbol');
});
