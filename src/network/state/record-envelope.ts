/**
 * The envelope every state record shares, whatever it holds: format version, the id it belongs to,
 * the namespace it acts on (path and identity), and when it was made. Reading a record checks the
 * envelope first and then the content with the schema its owner gives (network-content-schema.ts
 * for today's sandbox and CNI records), so a damaged, foreign or future record is refused, naming
 * the file and the field, before anything acts on it.
 */
import * as z from 'zod';
import { VcnetError } from '../../errors.js';
import type { NamespaceIdentity } from '../../netns/namespace-identity.js';
import { PARSE_OPTIONS } from '../../parse-options.js';
import { escapedBytes, holdsBadBytes } from '../../terminal-text.js';
import { BOOT_ID_PATTERN } from './boot-id.js';
import { gcStateDirectoryFlag } from './default-directories.js';

/** Version 2: the namespace identity moved into the envelope (version 1 records had only a path). */
export const RECORD_VERSION = 2;

/** The largest namespace cookie: the kernel counts them in a u64. */
const LARGEST_COOKIE = 2n ** 64n - 1n;

/**
 * Whether `text` is a namespace cookie as vcnet writes it: a u64 in decimal, without leading zeros.
 * Anything else is damage, and tells no namespace (a salvage reads such a record as one without a cookie).
 */
function isNamespaceCookie(text: string): boolean {
  return /^(0|[1-9]\d{0,19})$/.test(text) && BigInt(text) <= LARGEST_COOKIE;
}

const namespaceIdentitySchema = z.strictObject({
  path: z.string({ error: 'an absolute namespace path' }).startsWith('/', { error: 'an absolute namespace path' }),
  dev: z.int({ error: 'the nsfs device number' }).nonnegative({ error: 'the nsfs device number' }),
  ino: z.int({ error: 'the nsfs inode number' }).positive({ error: 'the nsfs inode number' }),
  cookie: z
    .string({ error: 'the namespace cookie (a u64 in decimal)' })
    .refine(isNamespaceCookie, { error: 'the namespace cookie (a u64 in decimal)' })
    .optional(),
}) satisfies z.ZodType<NamespaceIdentity>;

/** The time a record was written, as vcnet writes it: the envelope's and a damaged record's salvaged one. */
const createdAtSchema = z.iso.datetime({ error: 'an ISO 8601 time' });

const recordEnvelopeSchema = z.looseObject({
  version: z.literal(RECORD_VERSION, { error: `${RECORD_VERSION}` }),
  id: z.string({ error: 'the id the record belongs to' }).min(1, { error: 'the id the record belongs to' }),
  namespace: namespaceIdentitySchema,
  createdAt: createdAtSchema,
  /**
   * The boot the record was written in (boot-id.ts): added without a new record version (an older
   * build refuses it as a field it does not know); absent in older records, which are judged as before.
   */
  bootId: z.string({ error: 'a boot id (a UUID)' }).regex(BOOT_ID_PATTERN, { error: 'a boot id (a UUID)' }).optional(),
});

/**
 * What every record holds, as its envelope's schema checks it. Written out rather than inferred from
 * the schema: this module's declarations are part of vcnet's public ones (StateInvalidError), and zod's
 * types, which do not compile in a project without esModuleInterop, stay out of those.
 */
export interface RecordEnvelope {
  version: typeof RECORD_VERSION;
  id: string;
  namespace: NamespaceIdentity;
  createdAt: string;
  bootId?: string;
  /** A loose object: the content's schema (RecordContentSchema) checks the other keys. */
  [key: string]: unknown;
}

/**
 * Compiles only while the envelope's schema yields RecordEnvelope and RecordEnvelope is what the
 * schema yields (each assignable to the other): the two cannot drift apart. Kept here, not in a test:
 * the schema is not exported (an exported one would bring zod's types back into the declarations).
 */
type Agrees<Actual, Expected> = [Actual] extends [Expected] ? ([Expected] extends [Actual] ? true : false) : false;
// biome-ignore lint/correctness/noUnusedVariables: a check tsc makes; no code uses it
type EnvelopeSchemaAgrees = Holds<Agrees<z.infer<typeof recordEnvelopeSchema>, RecordEnvelope>>;
type Holds<Condition extends true> = Condition;

/**
 * A version 1 record names its namespace by path only: this vcnet cannot tell that the path still
 * holds the namespace the record was made in, so it does not act on it (docs/troubleshooting.md,
 * "Records from an older vcnet", says what a removal leaves).
 */
const OLDER_RECORD_HINT =
  'nothing was changed; the record was written by an older vcnet (record version 1, before namespace identities): detach it with the vcnet that attached it, or remove the record and run `vcnet gc --netns <its namespace>` (an ingress qdisc stays on each pod link, and a macvtap pod link keeps its spare MAC without its addresses: see "Records from an older vcnet" in docs/troubleshooting.md)';

/** A record that cannot be trusted: names the file, the field and what was expected. Nothing was changed. */
export class StateInvalidError extends VcnetError {
  static override readonly errorName: string = 'StateInvalidError';
  constructor(
    readonly file: string,
    readonly field: string,
    problem: string,
    value?: unknown,
    hint = `nothing was changed; the file was damaged, edited or copied from another sandbox: restore it while its sandbox runs; gc drops it by itself once the namespace it still names is gone (\`vcnet list${gcStateDirectoryFlag(file)}\` says whether it names one, and how to settle it if not; \`vcnet gc --dry-run${gcStateDirectoryFlag(file)}\` lists unreadable records)`,
  ) {
    super('VCNET_STATE_INVALID', `state file ${file}: ${field === '' ? '' : `field ${field} `}${problem}`, {
      value,
      hint,
    });
  }
}

// ignoreBOM: a byte order mark stays in the text (JSON.parse then refuses it), as readFileSync left it.
const STRICT_UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** What a record whose bytes are not UTF-8 holds, each bad byte kept (textKeepingBadBytes): see damagedRecordText. */
const textOfNotUtf8 = new WeakMap<StateInvalidError, string>();

/**
 * The offset of the first byte of `bytes` that starts no well-formed UTF-8 sequence (WHATWG's rules:
 * no overlong form, no surrogate, nothing above U+10FFFF), or of the sequence it cuts short.
 */
function firstNonUtf8Offset(bytes: Uint8Array): number {
  let offset = 0;
  while (offset < bytes.length) {
    const lead = bytes[offset]!;
    if (lead < 0x80) {
      offset++;
      continue;
    }
    const length =
      lead >= 0xc2 && lead <= 0xdf ? 2 : lead >= 0xe0 && lead <= 0xef ? 3 : lead >= 0xf0 && lead <= 0xf4 ? 4 : 0;
    if (length === 0) return offset;
    // The second byte's range is narrower after E0, ED, F0 and F4.
    const low = lead === 0xe0 ? 0xa0 : lead === 0xf0 ? 0x90 : 0x80;
    const high = lead === 0xed ? 0x9f : lead === 0xf4 ? 0x8f : 0xbf;
    for (let index = 1; index < length; index++) {
      const next = bytes[offset + index];
      if (next === undefined || next < (index === 1 ? low : 0x80) || next > (index === 1 ? high : 0xbf)) return offset;
    }
    offset += length;
  }
  return offset;
}

/**
 * Bytes as text, each byte that is no part of a UTF-8 character kept as the lone surrogate U+DC00
 * plus its value (U+DC80 to U+DCFF, as Python's surrogateescape): a damaged path is then shown as
 * its bytes were (escapedBytes: `\xNN`), where U+FFFD would tell nothing of them.
 */
function textKeepingBadBytes(bytes: Uint8Array): string {
  let text = '';
  let start = 0;
  while (start < bytes.length) {
    const bad = start + firstNonUtf8Offset(bytes.subarray(start));
    text += STRICT_UTF8.decode(bytes.subarray(start, bad));
    if (bad < bytes.length) text += String.fromCharCode(0xdc00 + bytes[bad]!);
    start = bad + 1;
  }
  return text;
}

/**
 * A record file's bytes as text. vcnet writes its records in UTF-8 only, so bytes that are not are
 * damage: a StateInvalidError naming the file and the offset of the first bad byte (decoding them
 * as U+FFFD could read a damaged record as a valid one). gc and vcnet-cni's DEL still salvage what
 * the text says (damagedRecordText). Another file vcnet writes (the registry) gives its own `hint`.
 */
export function recordText(bytes: Buffer, file: string, hint?: string): string {
  try {
    return STRICT_UTF8.decode(bytes);
  } catch {
    const offset = firstNonUtf8Offset(bytes);
    const byte = bytes[offset] ?? 0;
    const error = new StateInvalidError(
      file,
      '',
      `is not UTF-8 text: the byte at offset ${offset} (0x${byte.toString(16).padStart(2, '0')}) is no part of a UTF-8 character`,
      offset,
      hint,
    );
    textOfNotUtf8.set(error, textKeepingBadBytes(bytes));
    throw error;
  }
}

/**
 * The text of a record `error` (from recordText) refused as not UTF-8, each bad byte kept as a lone
 * surrogate (textKeepingBadBytes):
 * what a salvage of a damaged record reads (the namespace it names); undefined for any other error.
 */
export function damagedRecordText(error: unknown): string | undefined {
  return error instanceof StateInvalidError ? textOfNotUtf8.get(error) : undefined;
}

function fieldPath(path: ReadonlyArray<PropertyKey>): string {
  return path.map((key) => String(key)).join('.');
}

function valueAt(data: unknown, path: ReadonlyArray<PropertyKey>): unknown {
  let current = data;
  for (const key of path) {
    if (current === null || typeof current !== 'object') return undefined;
    current = (current as Record<PropertyKey, unknown>)[key];
  }
  return current;
}

function describe(value: unknown): string {
  if (value === undefined) return 'missing';
  const text = JSON.stringify(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

const NEWER_RECORD_HINT =
  'nothing was changed; a newer vcnet wrote this record: run that version to detach it, and keep the file until then';

/**
 * A key this vcnet does not know: a newer build adds fields without a new record version (an older
 * one, rolled back to, meets them: `partial`, `unconfirmed`, `madeAfter` were each added so), and a
 * bit flip or an edit looks the same. Either way the file is the only account of what is in the
 * namespace: removing it leaves all of that, so the hint says to keep it first. (Records do not say
 * which build wrote them: that would be one more key, and every older build refuses any key it does
 * not know, so it would make every record unreadable to builds that read today's.)
 */
function unknownFieldHint(file: string): string {
  return `nothing was changed; keep the file: if a newer vcnet wrote it, detach it (or run gc, or the runtime's CNI DEL) with that vcnet; if it was edited, restore it. Removing it undoes nothing: a tcfilter tap with its qdiscs and filters, or a macvtap with the pod link's spare MAC (its addresses, routes and neighbours gone to the guest), stays in the namespace (see "Records from a newer vcnet" in docs/troubleshooting.md; \`vcnet gc --dry-run${gcStateDirectoryFlag(file)}\` lists unreadable records)`;
}

/**
 * What a field accepts, said plainly: a schema without its own text for a type mismatch gets zod's
 * ("Invalid input: expected object, received null"), which repeats the value and reads oddly after "expected".
 */
function acceptedText(issue: SchemaIssue): string {
  if (issue.code === 'invalid_type' && issue.message.startsWith('Invalid input')) {
    const expected = String(issue.expected);
    return `${/^[aeiou]/.test(expected) ? 'an' : 'a'} ${expected}`;
  }
  return issue.message;
}

/** A `version` field holding a number above every one this vcnet reads: a newer vcnet's record. */
function isNewerVersion(issue: SchemaIssue, found: unknown): boolean {
  if (issue.code !== 'invalid_value' || issue.path[issue.path.length - 1] !== 'version') return false;
  return typeof found === 'number' && issue.values!.every((known) => typeof known === 'number' && known < found);
}

/** Keys a strict part of the record does not know, found in the object at `path` (a bit flip, an edit). */
function unknownKeysAt(issues: readonly SchemaIssue[], path: ReadonlyArray<PropertyKey>): string[] {
  const at = fieldPath(path);
  return issues.flatMap((issue) =>
    issue.code === 'unrecognized_keys' && fieldPath(issue.path) === at ? issue.keys! : [],
  );
}

/**
 * One problem a record's schema found: the part of a zod issue check reads (`keys` in an
 * unrecognized_keys issue, `expected` in an invalid_type one, `values` in an invalid_value one).
 */
interface SchemaIssue {
  readonly code: string;
  readonly path: readonly PropertyKey[];
  readonly message: string;
  readonly keys?: readonly string[];
  readonly expected?: unknown;
  readonly values?: readonly unknown[];
}

/**
 * The schema of a record's content beside its envelope (network-content-schema.ts's, or one a store
 * is given): a zod schema, declared by the one call parseRecord makes of it. Not zod's own type: this
 * module's declarations are part of vcnet's public ones (StateInvalidError), and zod's types do not
 * compile in a project without esModuleInterop.
 */
export interface RecordContentSchema<T> {
  safeParse(
    data: unknown,
    options: typeof PARSE_OPTIONS,
  ): { success: true; data: T } | { success: false; error: { issues: readonly SchemaIssue[] } };
}

/** Throws StateInvalidError for the first problem zod found. */
function check<T>(schema: RecordContentSchema<T>, data: unknown, file: string, prefix: PropertyKey[] = []): T {
  const result = schema.safeParse(data, PARSE_OPTIONS);
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  if (issue.code === 'unrecognized_keys') {
    // Named by the key itself: this version never writes it, so a newer one did, or it was damaged or edited.
    const key = issue.keys![0]!;
    const found = valueAt(data, [...issue.path, key]);
    throw new StateInvalidError(
      file,
      fieldPath([...prefix, ...issue.path, key]),
      `is not a field this vcnet knows here (holding ${describe(found)}): a newer vcnet may have written it, or the key was damaged or edited`,
      found,
      unknownFieldHint(file),
    );
  }
  const path = [...prefix, ...issue.path];
  const found = valueAt(data, issue.path);
  // A missing field beside a key the record does not know is most likely that field, renamed.
  const strangers = found === undefined ? unknownKeysAt(result.error.issues, issue.path.slice(0, -1)) : [];
  const beside =
    strangers.length > 0
      ? `; the same object has ${strangers.map((key) => JSON.stringify(key)).join(', ')}, which this vcnet never writes: a damaged key?`
      : '';
  throw new StateInvalidError(
    file,
    fieldPath(path) || '(top level)',
    `is ${describe(found)} (expected ${acceptedText(issue)})${beside}`,
    found,
    isNewerVersion(issue, found) ? NEWER_RECORD_HINT : strangers.length > 0 ? unknownFieldHint(file) : undefined,
  );
}

/**
 * Where JSON.parse stopped, without the text around it: V8's message quotes the start of the input
 * (`Unexpected token 'r', "root:$y$j9"... is not valid JSON`), and a file that is not vcnet's record
 * (another user's, a link's target) must not have its content printed by a command run as root.
 */
function jsonSyntaxProblem(error: unknown): string {
  const message = (error as Error)?.message ?? '';
  if (/Unexpected end of JSON input/.test(message)) return 'it ends before the JSON does';
  const position = /at position (\d+)(?: \(line (\d+) column (\d+)\))?/.exec(message);
  if (position?.[2] !== undefined) return `a syntax error at line ${position[2]}, column ${position[3]}`;
  if (position) return `a syntax error at byte ${position[1]}`;
  return 'a syntax error';
}

/**
 * Parses and validates a record's text. `expectedId` is the id the caller asked for: a record of
 * another sandbox copied into this one's place is refused. `content` validates the rest.
 */
export function parseRecord<T>(
  text: string,
  file: string,
  options: { expectedId?: string; content: RecordContentSchema<T> },
): RecordEnvelope & T {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (error) {
    throw new StateInvalidError(file, '', `is not valid JSON (truncated?): ${jsonSyntaxProblem(error)}`);
  }
  if (data === null || typeof data !== 'object' || Array.isArray(data)) {
    throw new StateInvalidError(file, '(top level)', `is ${describe(data)} (expected an object)`, data);
  }
  const version = (data as { version?: unknown }).version;
  if (version !== RECORD_VERSION) {
    const why = version === 1 ? ' (version 1 records, from before namespace identities, are not trusted)' : '';
    // Neither a newer nor an older vcnet's record is damaged: the vcnet that wrote it can still detach
    // it, so the hint says that first, not "restore or remove it".
    const newer = typeof version === 'number' && version > RECORD_VERSION;
    throw new StateInvalidError(
      file,
      'version',
      `is ${describe(version)} (expected ${RECORD_VERSION}${why})`,
      version,
      newer ? NEWER_RECORD_HINT : version === 1 ? OLDER_RECORD_HINT : undefined,
    );
  }
  const envelope = check(recordEnvelopeSchema, data, file);
  if (options.expectedId !== undefined && envelope.id !== options.expectedId) {
    throw new StateInvalidError(
      file,
      'id',
      `is ${describe(envelope.id)}, but this is the record of ${JSON.stringify(options.expectedId)}`,
      envelope.id,
    );
  }
  const content = check(options.content, data, file);
  return { ...envelope, ...content };
}

/**
 * What can still be learned from a record that failed validation: the namespace it names, if that
 * part is readable. gc keeps its hands off such a namespace instead of guessing. The cookie is kept
 * when the record has one: a later namespace may have the same device and inode, and only the
 * cookie tells it from the recorded one (vcnet-cni DEL must not clean up in it). A cookie that is
 * not one (not a u64 in decimal) is left out: the identity is then device and inode, as on a kernel
 * without cookies.
 */
export function salvageNamespace(text: string): Pick<NamespaceIdentity, 'dev' | 'ino' | 'cookie'> | undefined {
  const identity = (value: unknown): Pick<NamespaceIdentity, 'dev' | 'ino' | 'cookie'> | undefined => {
    const parsed = namespaceIdentitySchema.safeParse(value, PARSE_OPTIONS);
    if (!parsed.success) {
      // A cookie that is no u64 in decimal tells nothing, not even "another namespace" (any digits
      // would): read as none, so the device and inode beside it still say which namespace it was.
      if (value === null || typeof value !== 'object' || !('cookie' in value)) return undefined;
      const { cookie: _, ...withoutCookie } = value;
      return identity(withoutCookie);
    }
    const { dev, ino, cookie } = parsed.data;
    return cookie === undefined ? { dev, ino } : { dev, ino, cookie };
  };
  try {
    return identity((JSON.parse(text) as { namespace?: unknown })?.namespace);
  } catch {
    // Not JSON as a whole: a record cut short (a full disk, a crash of an older vcnet) still has its
    // namespace near the start, a flat object, which protects that namespace's plumbing from gc.
    const flat = /"namespace"\s*:\s*(\{[^{}]*\})/.exec(text)?.[1];
    if (flat === undefined) return undefined;
    try {
      return identity(JSON.parse(flat));
    } catch {
      return undefined;
    }
  }
}

/**
 * The path of the namespace a damaged record names, for when its identity cannot be read (the
 * record cut inside its namespace object, before `dev` and `ino` are whole; `dev` edited away).
 * Only a whole JSON string counts: a path cut short may be the start of another namespace's. A
 * record that parses but lost its namespace object still names the path in its network's config.
 */
export function salvageNamespacePath(text: string): string | undefined {
  return salvageNamespacePathTold(text)?.path;
}

/**
 * salvageNamespacePath, and whether its bytes were not all UTF-8 (`notUtf8`): such a path is told as
 * `ls -b` shows it (escapedBytes: `\xNN`, a backslash `\\`), the one text of it in `vcnet list`, its
 * JSON and gc's words, and the text `gc --netns` matches when given it.
 */
export function salvageNamespacePathTold(text: string): { path: string; notUtf8: boolean } | undefined {
  const path = salvagedPathText(text);
  if (path === undefined) return undefined;
  return holdsBadBytes(path) ? { path: escapedBytes(path), notUtf8: true } : { path, notUtf8: false };
}

function salvagedPathText(text: string): string | undefined {
  const absolute = (value: unknown) => (typeof value === 'string' && value.startsWith('/') ? value : undefined);
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    // Cut short: the namespace object's text up to its end or the cut, and a whole "path" string in it.
    const inside = /"namespace"\s*:\s*\{([^{}]*)/.exec(text)?.[1];
    const quoted = inside === undefined ? undefined : /"path"\s*:\s*("(?:[^"\\\u0000-\u001f]|\\.)*")/.exec(inside)?.[1];
    if (quoted === undefined) return undefined;
    try {
      return absolute(JSON.parse(quoted));
    } catch {
      return undefined;
    }
  }
  const record = data as { namespace?: { path?: unknown }; network?: { config?: { namespacePath?: unknown } } } | null;
  return absolute(record?.namespace?.path) ?? absolute(record?.network?.config?.namespacePath);
}

/**
 * The boot id and creation time a damaged record still tells, each only when whole (a boot id as
 * the kernel writes one, a time as vcnet writes it): with earlierBootOfDamaged, whether it is an
 * earlier boot's. Read from the JSON when it parses, else from a record cut short (both come right
 * after its namespace).
 */
export function salvageBoot(text: string): { bootId?: string; createdAt?: string } {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    const field = (name: string) => new RegExp(`"${name}"\\s*:\\s*"([^"\\\\]*)"`).exec(text)?.[1];
    data = { bootId: field('bootId'), createdAt: field('createdAt') };
  }
  const { bootId, createdAt } = (data ?? {}) as { bootId?: unknown; createdAt?: unknown };
  const wholeBootId = typeof bootId === 'string' && BOOT_ID_PATTERN.test(bootId) ? bootId : undefined;
  const wholeTime =
    typeof createdAt === 'string' && createdAtSchema.safeParse(createdAt, PARSE_OPTIONS).success
      ? createdAt
      : undefined;
  return { ...(wholeBootId ? { bootId: wholeBootId } : {}), ...(wholeTime ? { createdAt: wholeTime } : {}) };
}
