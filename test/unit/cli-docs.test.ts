import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { renderCliReference } from '../../scripts/generate-cli-docs.js';

describe('docs/cli.md', () => {
  it('is what the commander definitions generate (run `npx tsx scripts/generate-cli-docs.ts` after changing the CLI)', () => {
    expect(readFileSync(new URL('../../docs/cli.md', import.meta.url), 'utf8')).toBe(renderCliReference());
  });
});
