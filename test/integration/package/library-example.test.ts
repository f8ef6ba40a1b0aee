/**
 * docs/library.md's example, run as a user runs it: `import ... from 'vcnet'` from a project of its
 * own (the package linked into its node_modules), against a pod namespace this test makes. What it
 * prints must be what the page says it prints ("…" stands for anything), and the pod must be left
 * as it was.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { cleanupNamespaces } from '../../helpers/namespace.js';
import { fingerprint, makePod } from '../../helpers/pod.js';

const ROOT = new URL('../../../', import.meta.url).pathname;

/** The code block after the library-example marker and the text block after it. */
function example(): { code: string; output: string[] } {
  const page = readFileSync(join(ROOT, 'docs/library.md'), 'utf8');
  const marker = page.indexOf('<!-- library-example');
  const code = /```js\n([\s\S]*?)```/.exec(page.slice(marker))?.[1];
  const output = /```text\n([\s\S]*?)```/.exec(page.slice(marker))?.[1];
  if (code === undefined || output === undefined) throw new Error('docs/library.md: no example after its marker');
  return { code, output: output.trimEnd().split('\n') };
}

const directories: string[] = [];
afterEach(() => {
  for (const directory of directories.splice(0)) rmSync(directory, { recursive: true, force: true });
  cleanupNamespaces();
});

describe('docs/library.md', () => {
  it('runs as printed from a project that imports vcnet, and leaves the pod as it was', () => {
    const { pod } = makePod();
    const before = fingerprint(pod);
    const project = mkdtempSync(join(tmpdir(), 'vcnet-library-'));
    directories.push(project);
    mkdirSync(join(project, 'node_modules'));
    symlinkSync(ROOT, join(project, 'node_modules', 'vcnet'));
    const { code, output } = example();
    writeFileSync(join(project, 'example.mjs'), code);
    const run = spawnSync(process.execPath, ['example.mjs'], {
      cwd: project,
      encoding: 'utf8',
      env: { ...process.env, NETNS: pod.path, STATE_DIR: join(project, 'state') },
    });
    expect(run.status, run.stderr).toBe(0);
    expect(run.stderr).toBe('');
    const printed = run.stdout.trimEnd().split('\n');
    expect(printed).toHaveLength(output.length);
    output.forEach((expected, index) => {
      const pattern = new RegExp(`^${expected.replace(/[.*+?^${}()|[\]\\]/g, '\\$&').replaceAll('…', '.*')}$`);
      expect(printed[index]).toMatch(pattern);
    });
    expect(fingerprint(pod)).toEqual(before);
  });
});
