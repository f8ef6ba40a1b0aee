/**
 * The curated library entry: every error class a caller can receive is exported (so `instanceof` and
 * the brands work for users), kernel constants and codec encoders are not (they live in vcnet/netlink),
 * and the channel names are there to subscribe to.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as entry from '../../src/index.js';
import * as netlinkEntry from '../../src/netlink/index.js';

const source = new URL('../../src', import.meta.url).pathname;

function sourceFiles(directory: string): string[] {
  return readdirSync(directory).flatMap((entryName) => {
    const path = join(directory, entryName);
    return statSync(path).isDirectory() ? sourceFiles(path) : path.endsWith('.ts') ? [path] : [];
  });
}

/**
 * Errors only the programs raise and report themselves (as a CNI error object or a demo step): a
 * library caller never receives them.
 */
const PROGRAM_ONLY_ERRORS = [
  'CniError',
  'CniEnvironmentError',
  'CniConfigError',
  'DemoError',
  // The CLI's: a command line commander refused; ip or tc missing for `vcnet bench`.
  'UsageError',
  'ProgramMissingError',
];

/** Identifiers docs/library.md names that are fields or options, not exports. */
const LIBRARY_GUIDE_NON_EXPORTS = [
  // GarbageReport's field, and NetlinkHandle methods (the vcnet/netlink entry).
  'leftAlone',
  'delLink',
  'delLinkGroup',
  'namedInterfaces',
  'disableNewNetns',
  'namespaceCreatedByVcnet',
  'lockTimeoutMs',
  'stateDirectory',
  'errorName',
  'vmmRateLimiter',
  'vhostNet',
  'nicIommu',
  'tapOwner',
  'tapGroup',
  'endpointType',
  'namespaceGone',
  'namespaceHeldAt',
  'heldBy',
  // Node's own: the signal option takes an AbortSignal and rejects with its reason (an AbortError).
  'AbortSignal',
  'AbortError',
];

describe("the 'vcnet' entry", () => {
  const exported = new Set(Object.keys(entry));

  it('exports every error class the library throws', () => {
    const classes = sourceFiles(source).flatMap((file) =>
      [...readFileSync(file, 'utf8').matchAll(/^export class (\w+) extends (\w+Error)\b/gm)].map((match) => ({
        name: match[1]!,
        file: relative(source, file),
      })),
    );
    expect(classes.length).toBeGreaterThan(25);
    // The brands are keyed by errorName (Symbol.for('vcnet.error.<errorName>')): names must be unique.
    const names = classes.map(({ name }) => name);
    expect(names.filter((name, position) => names.indexOf(name) !== position)).toEqual([]);
    const missing = classes
      .filter(({ name }) => !exported.has(name) && !PROGRAM_ONLY_ERRORS.includes(name))
      .map(({ name, file }) => `${name} (${file})`);
    expect(missing).toEqual([]);
    for (const { name } of classes.filter(({ name }) => exported.has(name))) {
      const type = (entry as Record<string, unknown>)[name] as { prototype: unknown };
      expect(type.prototype instanceof entry.VcnetError, `${name} is a VcnetError`).toBe(true);
    }
    // Each class states its own errorName (a bundler renames classes; an inherited one would brand a
    // subclass as its parent), equal to the class's name in the source.
    for (const { name, file } of classes) {
      const text = readFileSync(join(source, file), 'utf8');
      expect(text, `${name} states errorName`).toContain(`export class ${name} extends`);
      expect(text.split(`export class ${name} extends`)[1]?.split('\n')[1]?.trim(), `${name} (${file})`).toBe(
        `static override readonly errorName: string = '${name}';`,
      );
    }
  });

  it('leaves kernel constants and codec encoders to vcnet/netlink', () => {
    const codecOnly = Object.keys(netlinkEntry).filter((name) => name !== 'NetlinkHandle' && exported.has(name));
    // What both entries share: the handle's errors and the codec's two error classes.
    expect(codecOnly.sort()).toEqual([
      'AddressFormatError',
      'LinkNotFoundError',
      'MalformedMessageError',
      'NetlinkError',
    ]);
    expect(Object.keys(netlinkEntry)).toEqual(
      expect.arrayContaining(['LinkAttribute', 'encodeNewLink', 'TC_H_INGRESS']),
    );
  });

  it('exports every function and class docs/library.md names', () => {
    const guide = readFileSync(new URL('../../docs/library.md', import.meta.url), 'utf8');
    // `name(...)`, `name` and `Name` in backticks that are identifiers (not fields such as `code`).
    const named = new Set(
      [...guide.matchAll(/`([A-Za-z][A-Za-z0-9]*)(?:\([^`]*\))?`/g)]
        .map((match) => match[1]!)
        .filter((name) => /^(?:[a-z]+[A-Z]\w*|[A-Z][a-z]+[A-Z]\w*)$/.test(name)),
    );
    expect(named.has('watchSandbox')).toBe(true);
    // Types leave no trace at run time: they are looked for among the entry's exported names.
    const typeExports = readFileSync(new URL('../../src/index.ts', import.meta.url), 'utf8')
      .split('\n')
      .filter((line) => !/^\s*(\/\/|\/?\*)/.test(line))
      .join('\n');
    const isTypeExport = (name: string) => new RegExp(`\\b${name}\\b`).test(typeExports);
    expect(
      [...named].filter(
        (name) => !exported.has(name) && !isTypeExport(name) && !LIBRARY_GUIDE_NON_EXPORTS.includes(name),
      ),
    ).toEqual([]);
  });

  it('names the diagnostics channels', () => {
    expect(entry.DiagnosticsChannel.attach).toBe('vcnet:attach');
    expect(entry.DiagnosticsChannel.netlinkBatch).toBe('vcnet:netlink:batch');
  });
});
