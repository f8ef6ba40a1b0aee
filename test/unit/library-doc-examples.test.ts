/**
 * docs/library.md's code blocks and the `@example` blocks of the source's doc comments (what typedoc
 * and editors show) type-check against the library's own types: each ```js and ```ts block is
 * compiled as a strict TypeScript module that imports 'vcnet' (mapped to src/index.ts), so a renamed
 * export, a changed signature or a misspelt field in an example fails here, not in a reader's
 * editor. A page block without an import goes on from the block before it (the page shows the
 * second half of an example on its own).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const root = new URL('../../', import.meta.url).pathname;
const PAGE = 'docs/library.md';

interface Block {
  /** Where the block is: its file and the 1-based line of its opening fence. */
  file: string;
  line: number;
  code: string;
}

/** The page's js/ts blocks, each joined to the ones before it when it imports nothing itself. */
function exampleBlocks(): Block[] {
  const lines = readFileSync(join(root, PAGE), 'utf8').split('\n');
  const blocks: Block[] = [];
  for (let index = 0; index < lines.length; index++) {
    if (!/^```(js|ts)$/.test(lines[index]!.trim())) continue;
    const end = lines.findIndex((line, after) => after > index && line.trim() === '```');
    const code = lines.slice(index + 1, end).join('\n');
    const previous = blocks.at(-1);
    if (!/^import\s/m.test(code) && previous) previous.code += `\n{\n${code}\n}\n`;
    else blocks.push({ file: PAGE, line: index + 1, code });
    index = end;
  }
  return blocks;
}

/** The ```ts blocks after `@example` in the doc comments of src/, without the comments' `*` margin. */
function sourceExampleBlocks(): Block[] {
  const blocks: Block[] = [];
  const files = readdirSync(join(root, 'src'), { recursive: true, encoding: 'utf8' }).filter((file) =>
    file.endsWith('.ts'),
  );
  for (const file of files) {
    const lines = readFileSync(join(root, 'src', file), 'utf8').split('\n');
    lines.forEach((line, index) => {
      if (!/^\s*\*\s*@example\s*$/.test(line) || !/^\s*\*\s*```ts\s*$/.test(lines[index + 1] ?? '')) return;
      const end = lines.findIndex((after, at) => at > index + 1 && /^\s*\*\s*```\s*$/.test(after));
      const code = lines
        .slice(index + 2, end)
        .map((text) => text.replace(/^\s*\* ?/, ''))
        .join('\n');
      blocks.push({ file: `src/${file}`, line: index + 2, code });
    });
  }
  return blocks;
}

/** Diagnostics of each block compiled as a module next to the sources, 'vcnet' being src/index.ts. */
function typeCheck(blocks: Block[]): string[] {
  const parsed = ts.getParsedCommandLineOfConfigFile(
    join(root, 'tsconfig.json'),
    {},
    {
      ...ts.sys,
      onUnRecoverableConfigFileDiagnostic: (diagnostic) => {
        throw new Error(ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n'));
      },
    },
  )!;
  const options: ts.CompilerOptions = {
    ...parsed.options,
    noEmit: true,
    // The examples run as top-level code with no import of their own to use; an unused binding there
    // is the page's choice.
    noUnusedLocals: false,
    paths: { vcnet: ['./src/index.ts'], 'vcnet/netlink': ['./src/netlink/index.ts'] },
    baseUrl: root,
  };
  const virtual = new Map(
    blocks.map((block) => [join(root, `${block.file.replaceAll(/[/.]/g, '-')}-line-${block.line}.ts`), block.code]),
  );
  const host = ts.createCompilerHost(options);
  const getSourceFile = host.getSourceFile.bind(host);
  host.getSourceFile = (fileName, language, onError, shouldCreate) => {
    const text = virtual.get(fileName);
    return text === undefined
      ? getSourceFile(fileName, language, onError, shouldCreate)
      : ts.createSourceFile(fileName, text, language);
  };
  const fileExists = host.fileExists.bind(host);
  host.fileExists = (fileName) => virtual.has(fileName) || fileExists(fileName);
  const readFile = host.readFile.bind(host);
  host.readFile = (fileName) => virtual.get(fileName) ?? readFile(fileName);
  const program = ts.createProgram([...virtual.keys()], options, host);
  return [...virtual.keys()].flatMap((fileName) =>
    ts.getPreEmitDiagnostics(program, program.getSourceFile(fileName)).map((diagnostic) => {
      const where =
        diagnostic.file && diagnostic.start !== undefined
          ? `:${diagnostic.file.getLineAndCharacterOfPosition(diagnostic.start).line + 1}`
          : '';
      return `${diagnostic.file?.fileName.slice(root.length) ?? ''}${where}: ${ts.flattenDiagnosticMessageText(diagnostic.messageText, ' ')}`;
    }),
  );
}

describe("the library's examples", () => {
  it(`in ${PAGE} type-check against the exported types`, () => {
    const blocks = exampleBlocks();
    expect(blocks.length).toBeGreaterThanOrEqual(3);
    expect(typeCheck(blocks)).toEqual([]);
  }, 180_000);

  it('in the doc comments (@example) type-check against the exported types', () => {
    const blocks = sourceExampleBlocks();
    expect(blocks.map(({ file }) => file)).toContain('src/sandbox/attach.ts');
    expect(typeCheck(blocks)).toEqual([]);
  }, 180_000);
});
