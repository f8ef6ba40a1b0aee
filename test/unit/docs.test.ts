/** Every error code vcnet can raise is explained in docs/troubleshooting.md. */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

function sources(directory: string): string[] {
  return readdirSync(directory).flatMap((entry) => {
    const path = join(directory, entry);
    return statSync(path).isDirectory() ? sources(path) : path.endsWith('.ts') ? [path] : [];
  });
}

describe('docs/troubleshooting.md', () => {
  it('lists every VCNET_* error code used in src/', () => {
    const root = new URL('../../', import.meta.url).pathname;
    const codes = new Set<string>();
    for (const file of sources(join(root, 'src'))) {
      for (const match of readFileSync(file, 'utf8').matchAll(/'(VCNET_[A-Z0-9_]+)'/g)) codes.add(match[1]!);
    }
    const documentation = readFileSync(join(root, 'docs', 'troubleshooting.md'), 'utf8');
    const missing = [...codes].filter((code) => !documentation.includes(`\`${code}\``)).sort();
    expect(missing, 'codes missing from docs/troubleshooting.md').toEqual([]);
    expect(codes.size).toBeGreaterThan(10);
  });
});
