/**
 * The shell examples of the documentation, run for real: every ```sh block of README.md and
 * docs/*.md marked `<!-- example: NAME [after=OTHER] [needs=TOOL,...] [restores] -->` on the line
 * before it runs in a fresh pod namespace (makePod) with a temporary state directory, and what it
 * prints must match the ```text block that follows. The format is described at the end of
 * docs/examples.md.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CLI } from '../helpers/cli.js';
import { cleanupNamespaces, type TestNamespace } from '../helpers/namespace.js';
import { fingerprint, makePod } from '../helpers/pod.js';

const ROOT = new URL('../../', import.meta.url).pathname;
/** What the documentation writes, and what each example gets instead. */
const POD_PLACEHOLDER = /\/var\/run\/netns\/pod(?![\w.-])/g;
const STATE_PLACEHOLDER = /\/run\/vcnet\/sandboxes(?![\w.-])/g;
const ELLIPSIS = '…';

interface Example {
  file: string;
  name: string;
  /** Line of the marker, 1-based. */
  line: number;
  script: string;
  expected: string[];
  after?: string;
  needs: string[];
  restores: boolean;
}

interface ParsedDocument {
  examples: Example[];
  /** 1-based lines of ```sh blocks with neither an example nor a not-run marker. */
  unmarkedShellBlocks: number[];
  errors: string[];
}

const MARKER = /^<!--\s*example:\s*(.*?)\s*-->\s*$/;
const NOT_RUN = /^<!--\s*not-run:\s*\S.*-->\s*$/;

function readFence(lines: string[], start: number, language: string): { body: string[]; end: number } | undefined {
  if (lines[start]?.trim() !== `\`\`\`${language}`) return undefined;
  const end = lines.findIndex((line, index) => index > start && line.trim() === '```');
  if (end < 0) return undefined;
  return { body: lines.slice(start + 1, end), end };
}

function parseExamples(file: string, text: string): ParsedDocument {
  const lines = text.split('\n');
  const parsed: ParsedDocument = { examples: [], unmarkedShellBlocks: [], errors: [] };
  let insideFence = false;
  lines.forEach((line, index) => {
    const fence = /^```(\S*)$/.exec(line.trim());
    if (fence) {
      if (insideFence) {
        insideFence = fence[1] !== '';
      } else {
        insideFence = true;
        const marker = lines[index - 1] ?? '';
        if (fence[1] === 'sh' && !MARKER.test(marker) && !NOT_RUN.test(marker))
          parsed.unmarkedShellBlocks.push(index + 1);
      }
      return;
    }
    if (insideFence) return;
    const match = MARKER.exec(line);
    if (!match) return;
    const where = `${file}:${index + 1}`;
    const [name, ...options] = (match[1] ?? '').split(/\s+/);
    if (!name || !/^[a-z0-9-]+$/.test(name)) {
      parsed.errors.push(`${where}: the example needs a name of lowercase letters, digits and "-"`);
      return;
    }
    const example: Example = { file, name, line: index + 1, script: '', expected: [], needs: [], restores: false };
    for (const option of options) {
      const [key, value] = option.split('=');
      if (key === 'after' && value) example.after = value;
      else if (key === 'needs' && value) example.needs = value.split(',');
      else if (key === 'restores' && value === undefined) example.restores = true;
      else
        parsed.errors.push(`${where}: unknown option ${JSON.stringify(option)} (after=NAME, needs=TOOL,..., restores)`);
    }
    const shell = readFence(lines, index + 1, 'sh');
    if (!shell) {
      parsed.errors.push(`${where}: the line after an example marker must open a \`\`\`sh block`);
      return;
    }
    let next = shell.end + 1;
    while (lines[next]?.trim() === '') next++;
    const output = readFence(lines, next, 'text');
    if (!output) {
      parsed.errors.push(`${where}: the \`\`\`sh block must be followed by a \`\`\`text block of expected output`);
      return;
    }
    example.script = shell.body.join('\n');
    example.expected = trimTrailingEmpty(output.body.map((text) => text.trimEnd()));
    parsed.examples.push(example);
  });
  return parsed;
}

function trimTrailingEmpty(lines: string[]): string[] {
  const copy = [...lines];
  while (copy.length > 0 && copy.at(-1) === '') copy.pop();
  return copy;
}

/** Why a block must not run unattended, or undefined when it is safe. */
function unsafeReason(script: string): string | undefined {
  for (const raw of script.split('\n')) {
    const line = raw.replace(/(^|\s)#.*$/, '');
    if (/\bip\s+(-\S+\s+)*netns\b/.test(line)) return `uses ip netns: ${raw.trim()}`;
    if (/(^|[;&|(]\s*)\s*npm\s/.test(line)) return `runs npm: ${raw.trim()}`;
    if (/\bvcnet\s+demo\b/.test(line)) return `runs vcnet demo: ${raw.trim()}`;
    if (/(^|[;&|(`]\s*)\s*(ip|tc)\s/.test(line)) return `runs ip/tc outside nsenter --net=…: ${raw.trim()}`;
    if (/\bvcnet\s+gc\b/.test(line) && !/--netns\s/.test(line)) return `vcnet gc without --netns: ${raw.trim()}`;
    const namespaces = line.match(/\/(var\/)?run\/netns\/[\w.-]+/g) ?? [];
    const other = namespaces.find((path) => path !== '/var/run/netns/pod');
    if (other) return `names a namespace other than /var/run/netns/pod: ${other}`;
    if (/\/run\/vcnet(?!\/sandboxes(?![\w.-]))/.test(line)) return `names a vcnet path other than /run/vcnet/sandboxes`;
    if (/--state-dir/.test(line))
      return 'passes --state-dir (write /run/vcnet/sandboxes paths, the test replaces them)';
  }
  return undefined;
}

function patternOf(line: string): RegExp | typeof ELLIPSIS {
  if (line.trim() === ELLIPSIS) return ELLIPSIS;
  const source = line
    .split(/(\s+|…)/)
    .filter((piece) => piece !== '')
    .map((piece) =>
      piece === ELLIPSIS ? '.*' : /^\s+$/.test(piece) ? '\\s+' : piece.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'),
    )
    .join('');
  return new RegExp(`^${source}$`);
}

/** Whole-line match of the output against the expected lines (`…` lines match any number of lines). */
function outputMatches(expected: string[], output: string[]): boolean {
  const patterns = expected.map(patternOf);
  const memo = new Map<string, boolean>();
  const match = (p: number, o: number): boolean => {
    const key = `${p}:${o}`;
    const known = memo.get(key);
    if (known !== undefined) return known;
    let result: boolean;
    const pattern = patterns[p];
    if (pattern === undefined) result = o === output.length;
    else if (pattern === ELLIPSIS) result = match(p + 1, o) || (o < output.length && match(p, o + 1));
    else result = o < output.length && pattern.test(output[o]!) && match(p + 1, o + 1);
    memo.set(key, result);
    return result;
  };
  return match(0, 0);
}

const documents = [
  'README.md',
  ...readdirSync(join(ROOT, 'docs'))
    .filter((name) => name.endsWith('.md'))
    .map((name) => `docs/${name}`),
].sort();
const parsedDocuments = new Map(
  documents.map((file) => [file, parseExamples(file, readFileSync(join(ROOT, file), 'utf8'))] as const),
);
const examples = [...parsedDocuments.values()].flatMap((document) => document.examples);

function toolMissing(tool: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${JSON.stringify(tool)}`], { stdio: 'ignore' }).status !== 0;
}

describe('documentation example markers', () => {
  it('are well formed, uniquely named, safe, and cover every sh block of docs/examples.md', () => {
    const errors = [...parsedDocuments.values()].flatMap((document) => document.errors);
    expect(errors).toEqual([]);
    const names = examples.map((example) => example.name);
    expect(names.filter((name, index) => names.indexOf(name) !== index)).toEqual([]);
    for (const example of examples) {
      expect(unsafeReason(example.script), `${example.file}:${example.line} ${example.name}`).toBeUndefined();
      if (example.after) {
        expect(
          examples.some((other) => other.name === example.after && other.file === example.file),
          `${example.name}: after=${example.after}`,
        ).toBe(true);
      }
    }
    expect(parsedDocuments.get('docs/examples.md')?.unmarkedShellBlocks).toEqual([]);
    expect(examples.filter((example) => example.file === 'docs/examples.md').length).toBeGreaterThanOrEqual(8);
  });

  it("never runs the README's npm run demo / npm test block", () => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    expect(readme).toContain('npm run demo');
    expect(examples.filter((example) => /\bnpm\s|vcnet\s+demo/.test(example.script))).toEqual([]);
  });

  it('the safety check refuses what must not run unattended', () => {
    expect(unsafeReason('npm run demo')).toMatch(/npm/);
    expect(unsafeReason('ip netns add pod')).toMatch(/ip netns/);
    expect(unsafeReason('ip -n pod link add eth0 type veth')).toMatch(/nsenter/);
    expect(unsafeReason('vcnet gc --dry-run')).toMatch(/--netns/);
    expect(unsafeReason('vcnet scan --netns /var/run/netns/other')).toMatch(/other/);
    expect(unsafeReason('rm -r /run/vcnet/lock')).toMatch(/vcnet path/);
    expect(unsafeReason('nsenter --net=/var/run/netns/pod ip -br link # list')).toBeUndefined();
  });

  it('the parser reports unmarked sh blocks and markers without a text block', () => {
    const parsed = parseExamples(
      'x.md',
      ['```sh', 'echo unmarked', '```', '<!-- example: lonely -->', '```sh', 'echo hi', '```', 'prose'].join('\n'),
    );
    expect(parsed.unmarkedShellBlocks).toEqual([1]);
    expect(parsed.examples).toEqual([]);
    expect(parsed.errors).toEqual([
      expect.stringContaining('x.md:4: the ```sh block must be followed by a ```text block'),
    ]);
  });

  it('the output matcher compares whole lines, with … for variable text and lines', () => {
    expect(outputMatches(['a  …  c'], ['a b   c'])).toBe(true);
    expect(outputMatches(['a  …  c'], ['a b   c d'])).toBe(false);
    expect(outputMatches(['x', '…', 'z'], ['x', '1', '2', 'z'])).toBe(true);
    expect(outputMatches(['x', 'z'], ['x', '1', 'z'])).toBe(false);
    expect(outputMatches(['x'], ['x', 'extra'])).toBe(false);
    expect(outputMatches(['(1.5)'], ['(135)'])).toBe(false);
  });
});

describe('documentation examples', () => {
  let workDirectory: string;
  let stateDirectory: string;
  let binDirectory: string;

  beforeEach(() => {
    workDirectory = mkdtempSync(join(tmpdir(), 'vcnet-docs-'));
    stateDirectory = join(workDirectory, 'state');
    binDirectory = join(workDirectory, 'bin');
    mkdirSync(join(workDirectory, 'cwd'));
    mkdirSync(binDirectory);
    const shim = join(binDirectory, 'vcnet');
    writeFileSync(shim, `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(CLI)} "$@"\n`);
    chmodSync(shim, 0o755);
  });

  afterEach(() => {
    cleanupNamespaces();
    rmSync(workDirectory, { recursive: true, force: true });
  });

  const substitute = (text: string, pod: TestNamespace) =>
    text.replace(POD_PLACEHOLDER, pod.path).replace(STATE_PLACEHOLDER, stateDirectory);

  function run(example: Example, pod: TestNamespace) {
    const result = spawnSync('bash', ['-euo', 'pipefail', '-c', substitute(example.script, pod)], {
      cwd: join(workDirectory, 'cwd'),
      // stdin not a socket (Node's pipes are socketpairs): bash then takes itself for a remote shell
      // and reads /etc/bash.bashrc whenever SHLVL is unset, whose $PS1 fails under -u.
      stdio: ['ignore', 'pipe', 'pipe'],
      encoding: 'utf8',
      timeout: 50_000,
      env: {
        ...process.env,
        PATH: `${binDirectory}:${process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin'}`,
        VCNET_STATE_DIR: stateDirectory,
        VCNET_LOG_LEVEL: 'warn',
      },
    });
    return {
      status: result.status,
      stdout: result.stdout ?? '',
      stderr: `${result.stderr ?? ''}${result.error ?? ''}`,
    };
  }

  function prerequisites(example: Example): Example[] {
    const chain: Example[] = [];
    let current = example;
    while (current.after) {
      const previous = examples.find((other) => other.name === current.after && other.file === current.file);
      if (!previous || chain.includes(previous) || chain.length > 10)
        throw new Error(`bad after= chain at ${example.name}`);
      chain.unshift(previous);
      current = previous;
    }
    return chain;
  }

  for (const example of examples) {
    const missing = example.needs.filter(toolMissing);
    if (missing.length > 0)
      console.log(`skip ${example.file} example ${example.name}: ${missing.join(', ')} not installed`);
    it.skipIf(missing.length > 0)(`${example.file}:${example.line} ${example.name}`, () => {
      const { pod } = makePod();
      const before = fingerprint(pod);
      for (const previous of prerequisites(example)) {
        const result = run(previous, pod);
        expect(result, `prerequisite ${previous.name}`).toMatchObject({ status: 0, stderr: '' });
      }
      const result = run(example, pod);
      expect(result.stderr, 'stderr').toBe('');
      expect(result.status, `exit status; stdout:\n${result.stdout}`).toBe(0);
      const output = trimTrailingEmpty(result.stdout.split('\n').map((line) => line.trimEnd()));
      const expected = example.expected.map((line) => substitute(line, pod));
      if (!outputMatches(expected, output)) {
        // Fails, with a diff of the expected block against what was printed.
        expect(output.join('\n'), 'output does not match the ```text block').toBe(expected.join('\n'));
      }
      if (example.restores) expect(fingerprint(pod), 'namespace after the example').toEqual(before);
    });
  }
});
