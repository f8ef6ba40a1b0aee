/**
 * What the fuzz tests of vcnet's two programs share: running one as a process with bytes on stdin,
 * the texts a reply must never hold, a listing of a directory to compare before and after, the
 * damages of input bytes and of records, the foreign files put beside records, the loop of the
 * record-damage tests, and the seed and number of runs (VCNET_FUZZ_SEED and VCNET_FUZZ_RUNS replay a
 * failure or search longer).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import fc from 'fast-check';
import { expect } from 'vitest';

/** Another layer's words, a JavaScript value printed as JavaScript stringifies it, or a stack trace. */
export const LEAKED =
  /\[object \w+\]|\bundefined\b|\bNaN\b|Invalid input|Too (big|small)|expected \w+ to (be|have)|received \w+|is not a function|is not iterable|Cannot (read|convert|set)|Maximum call stack|\n\s+at \S|(Type|Range|Reference|Syntax)Error/;

/** fast-check's parameters: a fixed seed unless VCNET_FUZZ_SEED gives one, few runs unless VCNET_FUZZ_RUNS. */
export function fuzzParameters(defaultSeed: number, defaultRuns: number): { seed: number; numRuns: number } {
  const seed = Number(process.env.VCNET_FUZZ_SEED ?? defaultSeed);
  const numRuns = Number(process.env.VCNET_FUZZ_RUNS ?? defaultRuns);
  console.log(`fuzzing with seed ${seed}, ${numRuns} runs (VCNET_FUZZ_SEED, VCNET_FUZZ_RUNS)`);
  return { seed, numRuns };
}

export interface ProgramRun {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs `node PROGRAM ARGS` with exactly `env` (plus PATH, and the run's VCNET_STATE_REGISTRY unless
 * `env` names it: without it, every state directory a run makes lands in the host's registry) and
 * `input` on stdin.
 */
export function runProgram(
  program: string,
  args: string[],
  input: Buffer | string,
  env: Record<string, string | undefined>,
): ProgramRun {
  const given: Record<string, string> = { PATH: process.env.PATH ?? '/usr/bin:/bin' };
  if (process.env.VCNET_STATE_REGISTRY && !('VCNET_STATE_REGISTRY' in env))
    given.VCNET_STATE_REGISTRY = process.env.VCNET_STATE_REGISTRY;
  for (const [name, value] of Object.entries(env)) if (value !== undefined) given[name] = value;
  const run = spawnSync(process.execPath, [program, ...args], {
    input,
    env: given,
    encoding: 'utf8',
    timeout: 60_000,
    maxBuffer: 64 * 1024 * 1024,
  });
  return { status: run.status, signal: run.signal, stdout: run.stdout, stderr: run.stderr };
}

/** Every path under `directory` with its file's contents, sorted: equal before and after means untouched. */
export function directoryListing(directory: string): string[] {
  const entries: string[] = [];
  const walk = (current: string) => {
    for (const name of readdirSync(current).sort()) {
      const path = join(current, name);
      if (statSync(path).isDirectory()) {
        entries.push(`${path}/`);
        walk(path);
      } else entries.push(`${path} ${readFileSync(path, 'utf8')}`);
    }
  };
  try {
    walk(directory);
  } catch (error) {
    entries.push(`(${(error as NodeJS.ErrnoException).code ?? 'unreadable'})`);
  }
  return entries;
}

/** A copy of `value` with `change` applied at `path` (a key's value replaced, or the key removed). */
export function changedAt(
  value: unknown,
  path: readonly (string | number)[],
  change: { remove: boolean; to?: unknown },
) {
  const copy = structuredClone(value) as Record<string | number, unknown>;
  if (path.length === 0) return change.remove ? undefined : change.to;
  let parent = copy as Record<string | number, unknown>;
  for (const key of path.slice(0, -1)) parent = parent[key] as Record<string | number, unknown>;
  const last = path[path.length - 1]!;
  if (!change.remove) parent[last] = change.to;
  else if (Array.isArray(parent)) parent.splice(Number(last), 1);
  else delete parent[last];
  return copy;
}

/** Every path to a value inside `value` (the root's own, [], first). */
export function pathsIn(value: unknown, prefix: (string | number)[] = []): (string | number)[][] {
  const paths = [prefix];
  if (typeof value !== 'object' || value === null) return paths;
  for (const [key, inner] of Object.entries(value)) {
    paths.push(...pathsIn(inner, [...prefix, Array.isArray(value) ? Number(key) : key]));
  }
  return paths;
}

/** What a damage changes in a given input: the keys it repeats, and the text it puts a NUL into. */
export interface DamageTargets {
  /** Keys to put first in the top object, each given again later in it (`"name":"eth9","Name":"eth0"`). */
  duplicateKeys: string;
  /** A piece of the text and the same with an escaped NUL in it. */
  nul: [string, string];
}

/**
 * `text` as bytes damaged as `how` says (`at` picks where a cut or stray bytes go): a byte order mark
 * before it, keys given twice, cut short, bytes that are not UTF-8, empty, nested 5000 deep, a NUL in
 * a string, CRLF line ends; anything else leaves it whole.
 */
export function damagedBytes(text: string, how: string, at: number, targets: DamageTargets): Buffer {
  const bytes = Buffer.from(text);
  const position = at % (bytes.length + 1);
  switch (how) {
    case 'bom':
      return Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), bytes]);
    case 'duplicate keys':
      return Buffer.from(text.replace('{', `{${targets.duplicateKeys},`));
    case 'cut':
      return bytes.subarray(0, position);
    case 'non-UTF-8':
      return Buffer.concat([bytes.subarray(0, position), Buffer.from([0xff, 0xfe, 0xc3]), bytes.subarray(position)]);
    case 'empty':
      return Buffer.alloc(0);
    case 'deep':
      return Buffer.from(text.replace('{', `{"nested":${'['.repeat(5000)}${']'.repeat(5000)},`));
    case 'NUL':
      return Buffer.from(text.replace(targets.nul[0], targets.nul[1]));
    case 'CRLF':
      return Buffer.from(text.replaceAll(',', ',\r\n'));
    default:
      return bytes;
  }
}

/**
 * How a record of `length` bytes is damaged: cut short, a byte flipped, a field given a value of
 * another type or removed, a format version from the future, or left whole with foreign files beside it.
 */
export function recordDamage(length: number) {
  return fc.oneof(
    fc.record({ kind: fc.constant('cut' as const), at: fc.nat({ max: length - 1 }) }),
    fc.record({
      kind: fc.constant('flip' as const),
      at: fc.nat({ max: length - 1 }),
      bits: fc.integer({ min: 1, max: 255 }),
    }),
    fc.record({
      kind: fc.constant('field' as const),
      pick: fc.nat(),
      to: fc.constantFrom(null, 'x', 1.5, -1, 2 ** 64, [], {}, true, '\u0000'),
      remove: fc.boolean(),
    }),
    fc.record({ kind: fc.constant('version' as const), to: fc.constantFrom(3, 99, 2 ** 31, '3') }),
    fc.record({ kind: fc.constant('foreign' as const) }),
  );
}

export type RecordDamage = ReturnType<typeof recordDamage> extends fc.Arbitrary<infer T> ? T : never;

/**
 * `text` (a record as vcnet wrote it) damaged as `damage` says, and the dotted path of the field it
 * changed (one of `text`'s, picked by `damage.pick`). A 'foreign' damage leaves the bytes whole.
 */
export function damagedRecord(text: string, damage: RecordDamage): { bytes: Buffer; field?: string } {
  const bytes = Buffer.from(text);
  switch (damage.kind) {
    case 'cut':
      return { bytes: bytes.subarray(0, damage.at) };
    case 'flip':
      bytes[damage.at % bytes.length]! ^= damage.bits;
      return { bytes };
    case 'field': {
      const record = JSON.parse(text);
      const fieldPaths = pathsIn(record).filter((path) => path.length > 0);
      const path = fieldPaths[damage.pick % fieldPaths.length]!;
      return { bytes: Buffer.from(JSON.stringify(changedAt(record, path, damage))), field: path.join('.') };
    }
    case 'version':
      return { bytes: Buffer.from(JSON.stringify({ ...JSON.parse(text), version: damage.to })) };
    default:
      return { bytes };
  }
}

/** Files that are not vcnet's, as an operator or another program may leave them in a state directory. */
const FOREIGN_STATE_FILES: Record<string, string> = {
  'notes.txt': 'an operator keeps notes here\n',
  'backup.json': '{"id":"s1"}',
  'other/README': 'not a sandbox\n',
  'other2/interfaces/eth0/notes': 'nor this\n',
  '.locks/foreign': "another program's lock\n",
};

/** Writes the foreign files into `directory`. */
export function writeForeignFiles(directory: string): void {
  for (const [name, content] of Object.entries(FOREIGN_STATE_FILES)) {
    mkdirSync(dirname(join(directory, name)), { recursive: true });
    writeFileSync(join(directory, name), content);
  }
}

/** What each foreign file in `directory` holds now ('(absent)' for one not there): equal before and after means untouched. */
export function foreignFiles(directory: string): string[] {
  return Object.keys(FOREIGN_STATE_FILES).map((name) => {
    const path = join(directory, name);
    return existsSync(path) ? readFileSync(path, 'utf8') : '(absent)';
  });
}

/**
 * Damages the record at `recordPath` as `damage` says (made again first by `remake`, which returns
 * its text, when an earlier run removed it), a 'foreign' damage writing the foreign files into
 * `stateDirectory`. Returns the record's text before, the bytes written, the field changed, and
 * what the foreign files hold then.
 */
export function damageRecordFile(
  recordPath: string,
  stateDirectory: string,
  damage: RecordDamage,
  remake: () => string,
): { before: string; bytes: Buffer; field?: string; foreign: string[] } {
  const before = existsSync(recordPath) ? readFileSync(recordPath, 'utf8') : remake();
  const { bytes, field } = damagedRecord(before, damage);
  if (damage.kind === 'foreign') writeForeignFiles(stateDirectory);
  writeFileSync(recordPath, bytes);
  return { before, bytes, field, foreign: foreignFiles(stateDirectory) };
}

/** One damaged record as a record-damage fuzz run sees it (damageRecordFile's answer, and the damage). */
export interface DamagedRun {
  damage: RecordDamage;
  /** The record's text before the damage. */
  before: string;
  bytes: Buffer;
  field?: string;
  /** What the foreign files held once the record was damaged. */
  foreign: string[];
}

/**
 * The loop every record-damage fuzz test runs: for each generated damage, the record at `recordPath`
 * is damaged (made again by `remake` when an earlier run removed it), `check` lists what went wrong,
 * a foreign file changed since is one more problem, the sandbox's directory and its lock in
 * `stateDirectory` go (the next run starts from `remake`), and a run with problems fails naming its
 * damage. `seed` and `runs` as fuzzParameters takes them.
 */
export function fuzzRecordDamage(
  options: { recordPath: string; stateDirectory: string; sandbox: string; seed: number; runs: number },
  remake: () => string,
  check: (run: DamagedRun) => string[],
): void {
  const { recordPath, stateDirectory, sandbox } = options;
  const original = existsSync(recordPath) ? readFileSync(recordPath, 'utf8') : remake();
  fc.assert(
    fc.property(recordDamage(original.length), (damage) => {
      const damaged = damageRecordFile(recordPath, stateDirectory, damage, remake);
      const problems = check({ damage, ...damaged });
      if (JSON.stringify(foreignFiles(stateDirectory)) !== JSON.stringify(damaged.foreign))
        problems.push('a foreign file changed');
      rmSync(join(stateDirectory, sandbox), { recursive: true, force: true });
      rmSync(join(stateDirectory, '.locks', sandbox), { force: true });
      expect({ damage: damage.kind, problems }).toEqual({ damage: damage.kind, problems: [] });
    }),
    fuzzParameters(options.seed, options.runs),
  );
}

/**
 * Whether `words` (a refusal's) name the field `damage` changed, as `field ${path}` (for an object, a
 * field inside it may be named instead, which the path then starts); true when no one field was
 * changed, or when an array element was removed: the rest shift, and another index may be named.
 */
export function namesDamagedField(damage: RecordDamage, field: string | undefined, words: string): boolean {
  if (!field) return true;
  if (damage.kind === 'field' && damage.remove && /\.\d+$/.test(field)) return true;
  return words.includes(`field ${field}`);
}
