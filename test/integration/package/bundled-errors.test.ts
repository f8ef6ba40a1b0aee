/**
 * Error names and brands survive bundling: a program that bundles vcnet with esbuild (which renames
 * classes, and minifies names when asked) gets the same `error.name`, and `instanceof` holds between
 * its copy and the unbundled dist/ in both directions. The `vcnet` CLI, itself a bundle, prints the
 * stable name in --json output.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { build } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { vcnet } from '../../helpers/cli.js';

const DIST_ENTRY = new URL('../../../dist/index.js', import.meta.url).pathname;

type Library = typeof import('../../../src/index.js');

let scratch: string;
let bundled: Library;
let unbundled: Library;

beforeAll(async () => {
  scratch = mkdtempSync(join(tmpdir(), 'vcnet-bundle-'));
  const outfile = join(scratch, 'bundle.mjs');
  await build({
    entryPoints: [DIST_ENTRY],
    outfile,
    bundle: true,
    minify: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    logLevel: 'silent',
    // Bundled CommonJS dependencies call require; an ES module has none of its own.
    banner: { js: "import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);" },
  });
  bundled = (await import(pathToFileURL(outfile).href)) as Library;
  unbundled = (await import(pathToFileURL(DIST_ENTRY).href)) as Library;
}, 60_000);

afterAll(() => {
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

describe('errors bundled by a program', () => {
  it('keep their names although the bundler renamed the classes', () => {
    // The check means something only if minification did rename them.
    expect(bundled.InvalidInputError.name).not.toBe('InvalidInputError');
    const error = new bundled.InvalidInputError('queues', 0, 'a positive integer');
    expect(error.name).toBe('InvalidInputError');
    expect(error.toJSON()).toMatchObject({ name: 'InvalidInputError', code: 'VCNET_INVALID_INPUT' });
    expect(new bundled.SandboxExistsError('sb1', '/tmp/x').name).toBe('SandboxExistsError');
  });

  it('are instanceof the unbundled classes, and the other way round', () => {
    const fromBundle = new bundled.AttachError('eth0', new Error('boom'), true);
    expect(fromBundle instanceof unbundled.AttachError).toBe(true);
    expect(fromBundle instanceof unbundled.VcnetError).toBe(true);
    expect(fromBundle instanceof unbundled.InvalidInputError).toBe(false);
    const fromDist = new unbundled.IncorrectLinkTypeError('eth0', 'virtual', 'veth', 'macvlan');
    expect(fromDist instanceof bundled.IncorrectLinkTypeError).toBe(true);
    expect(fromDist instanceof bundled.InvalidInputError).toBe(true);
    expect(fromDist instanceof bundled.SystemCallError).toBe(false);
  });

  it("do not take a caller's class for vcnet's because it has the same name", () => {
    class AttachError extends unbundled.VcnetError {
      constructor() {
        super('VCNET_ERROR', 'my own');
      }
    }
    const mine = new AttachError();
    expect(mine.name).toBe('AttachError');
    expect(mine instanceof unbundled.VcnetError).toBe(true);
    expect(mine instanceof bundled.VcnetError).toBe(true);
    expect(mine instanceof unbundled.AttachError).toBe(false);
    expect(mine instanceof bundled.AttachError).toBe(false);
  });
});

describe('the vcnet CLI (a bundle)', () => {
  it('prints the stable error name with --json', () => {
    const result = vcnet(['attach', '--sandbox', 'sb1', '--model', 'bogus', '--json'], {
      VCNET_STATE_DIR: join(scratch, 'state'),
    });
    expect(result.status).not.toBe(0);
    const printed = JSON.parse(result.stdout || result.stderr) as { error?: { name?: string }; name?: string };
    expect(printed.error?.name ?? printed.name).toBe('InvalidInputError');
  });
});
