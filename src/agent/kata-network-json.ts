/**
 * vcnet's JSON shape of the agent's network messages, which is the one `kata-runtime kata-network`
 * reads and prints (Go's encoding/json over the generated structs): IPAddresses, hwAddr, raw_flags,
 * family as Kata's IPFamily number (0 = v4, 1 = v6; "v4"/"v6" and Kata 1.x's netlink numbers 2
 * (AF_INET) and 10 (AF_INET6) also read). Go omits empty fields, so every field is optional here and
 * defaults to its zero value.
 *
 * The family is made true to the addresses as the JSON is read: a v4 (or omitted) family with an
 * IPv6 address reads as v6, so every message sent from the JSON (and every record kept of it) carries
 * the family Kata's agent picks its parser by. A route's dest "default" (iproute2's word) becomes the
 * family's default, "0.0.0.0/0" or "::/0", as Kata's runtime sends it.
 *
 * Keys are matched as Go's encoding/json matches them: an exact match, else a case-insensitive one
 * (so the 1.x forms `Device`, `Mtu`, `HwAddr` and the DAN-style `Neighbors` work), plus the 1.x names
 * `LinkType` (type) and `PciAddr` (devicePath), protobuf-JSON's `rawFlags`, and `type_` (type), as the serde
 * JSON of Kata's Rust protocol crate (kata-agent-ctl's requests, genpolicy) names it; an integer may be a
 * decimal string, as protobuf JSON writes a 64-bit one (agentRequestMessage reads the request around a
 * message, as Kata's runtime logs it). Unknown keys are
 * ignored as Go ignores them, but reported to the caller (`ignoredKeys`) so a typo is still seen.
 * Input text is bounded in size and nesting before it is parsed (parseKataJsonText).
 *
 * Converts to and from the protobuf messages the AgentClient sends.
 */
import { randomUUID } from 'node:crypto';
import { isIPv4, isIPv6 } from 'node:net';
import { create } from '@bufbuild/protobuf';
import * as z from 'zod';
import { closestName, labelArgument, optionsArgument } from '../arguments.js';
import { type FieldIssue, InvalidFieldsError, InvalidInputError, jsonParseProblem } from '../errors.js';
import { goFoldedKey } from '../go-key-fold.js';
import { PARSE_OPTIONS } from '../parse-options.js';
import { DEVICE_PATH_ACCEPTED, isDevicePath, sentDevicePath } from './device-path.js';
import {
  type ARPNeighbor,
  ARPNeighborSchema,
  type Interface,
  InterfaceSchema,
  type IPAddress,
  IPAddressSchema,
  type IPFamily,
  type Route,
  RouteSchema,
} from './generated/types_pb.js';
import { MAX_KATA_JSON_BYTES, MAX_KATA_JSON_DEPTH } from './kata-json-limits.js';
import { INTERFACE_MTU_ACCEPTED } from './network-request.js';

/** Kata's IPFamily as the JSON carries it. */
export type KataFamilyJson = 0 | 1;

/** An address in Kata's JSON form: `family` 0 for IPv4, 1 for IPv6, and the prefix length as a string. */
export interface KataIpAddressJson {
  family: KataFamilyJson;
  address: string;
  /** Prefix length as a decimal string. */
  mask: string;
}

/**
 * A guest interface in Kata's JSON form, as `kata-runtime` and `vcnet kata-network list-interfaces` print it.
 */
export interface KataInterfaceJson {
  device: string;
  name: string;
  IPAddresses: KataIpAddressJson[];
  mtu: number;
  hwAddr: string;
  /** Field 6 on the wire; Kata named it pciPath before 2025. Both names are written, either is read. */
  devicePath: string;
  pciPath: string;
  type: string;
  raw_flags: number;
}

/**
 * A guest route in Kata's JSON form (`dest` empty for the default route; `scope` the kernel's RT_SCOPE_*
 * number).
 */
export interface KataRouteJson {
  dest: string;
  gateway: string;
  device: string;
  source: string;
  scope: number;
  family: KataFamilyJson;
  flags: number;
  mtu: number;
}

/**
 * A guest neighbour (ARP/NDP entry) in Kata's JSON form; `state` and `flags` are the kernel's NUD_* and NTF_*
 * numbers.
 */
export interface KataNeighbourJson {
  toIPAddress: KataIpAddressJson;
  device: string;
  lladdr: string;
  state: number;
  flags: number;
}

/** One refused field of a JSON value: where it is (`path`) and why; `KataJsonError.issues` lists them. */
export type JsonIssue = FieldIssue;

/** The JSON did not fit the shape: names the first bad field; `issues` lists all of them. */
export class KataJsonError extends InvalidFieldsError {
  static override readonly errorName: string = 'KataJsonError';
}

// Each schema's error text is what the field accepts: the issue then says it directly.
const UINT32 = 'an integer 0-4294967295';
const INT32 = 'an integer -2147483648..2147483647';
const FAMILY = '0, "v4" or 2 (AF_INET) for IPv4; 1, "v6" or 10 (AF_INET6) for IPv6';

/**
 * JSON null in a field is its zero value, as Go's encoding/json (null leaves the field as it was) and
 * protobuf JSON (null is the field's default) read it: jq writes null for a key its input lacks.
 */
const text = (accepted = 'a string') =>
  z
    .string({ error: accepted })
    .nullish()
    .transform((value) => value ?? '');
/**
 * An integer field as protobuf-JSON carries it: a number, or a decimal string. protojson writes a 64-bit
 * integer as a string (an Interface's mtu: `"mtu":"1500"`, as Kata's runtime logs every agent request)
 * and reads any integer from one; Go's encoding/json and serde write numbers, read as before.
 */
const integer = (schema: z.ZodNumber) =>
  z.preprocess(
    (value) =>
      value === null
        ? undefined
        : typeof value === 'string' && /^-?(0|[1-9][0-9]{0,19})$/.test(value)
          ? Number(value)
          : value,
    schema.optional(),
  );
const uint32 = (accepted = UINT32) =>
  integer(
    z
      .number({ error: accepted })
      .int({ error: accepted })
      .min(0, { error: accepted })
      .max(0xffffffff, { error: accepted }),
  ).transform((value) => value ?? 0);
const int32 = () =>
  integer(
    z
      .number({ error: INT32 })
      .int({ error: INT32 })
      .min(-0x80000000, { error: INT32 })
      .max(0x7fffffff, { error: INT32 }),
  ).transform((value) => value ?? 0);
/** Kata 1.x printed netlink's family numbers (netlink.FAMILY_V4 = AF_INET = 2, AF_INET6 = 10). */
const AF_INET = 2;
const AF_INET6 = 10;
const family = z
  .union([z.literal(0), z.literal(1), z.literal(AF_INET), z.literal(AF_INET6), z.literal('v4'), z.literal('v6')], {
    error: FAMILY,
  })
  .nullish()
  .transform((value): KataFamilyJson => (value === 1 || value === AF_INET6 || value === 'v6' ? 1 : 0));

/**
 * The family the addresses give: v4 is protobuf's zero value, so a v4 family may be an omitted one
 * (Kata 1.x routes have none); the first address given then decides, as the agent's own check reads
 * it (network-request.ts versionOf). A v6 family stays as given: the check refuses an IPv4 address with it.
 */
function familyOf(given: KataFamilyJson, addresses: readonly string[]): KataFamilyJson {
  if (given === 1) return 1;
  const first = addresses.find((address) => address !== '' && address !== 'default');
  return first !== undefined && isIPv6(first.split('/')[0] ?? '') ? 1 : 0;
}

function strictObject<Shape extends z.ZodRawShape>(shape: Shape) {
  const keys = Object.keys(shape).join(', ');
  return z.strictObject(shape, {
    error: (issue) => (issue.code === 'unrecognized_keys' ? `one of the known fields: ${keys}` : 'an object'),
  });
}

const ipAddressSchema = strictObject({
  family,
  address: text('an IPv4 or IPv6 address'),
  mask: text('a prefix length as a decimal string, such as "24"'),
});

/** Go writes a nil slice as null; both mean "none". */
const list = <Item extends z.ZodType>(item: Item) =>
  z
    .array(item, { error: 'an array' })
    .nullable()
    .default([])
    .transform((items) => items ?? []);

const interfaceSchema = strictObject({
  device: text(),
  name: text('a link name'),
  IPAddresses: list(ipAddressSchema),
  mtu: integer(
    z
      .number({ error: INTERFACE_MTU_ACCEPTED })
      .int({ error: INTERFACE_MTU_ACCEPTED })
      .min(0, { error: INTERFACE_MTU_ACCEPTED })
      .max(Number.MAX_SAFE_INTEGER, { error: INTERFACE_MTU_ACCEPTED }),
  ).transform((value) => value ?? 0),
  hwAddr: text('a MAC address such as "02:00:ca:fe:00:01"'),
  devicePath: text('a PCI path such as "02/00"'),
  pciPath: text('a PCI path such as "02/00"'),
  type: text('a link type such as "veth"'),
  raw_flags: uint32(),
});

const routeSchema = strictObject({
  dest: text('"" (default route) or ADDRESS/PREFIX'),
  gateway: text('"" or an address'),
  device: text('a link name'),
  source: text('"" or an address'),
  scope: uint32('a route scope 0-255 (0 universe, 253 link, 254 host)'),
  family,
  flags: uint32(),
  mtu: uint32('a route MTU (0 = none)'),
});

const neighbourSchema = strictObject({
  toIPAddress: ipAddressSchema.nullable().default({ family: 0, address: '', mask: '' }),
  device: text('a link name'),
  lladdr: text('a MAC address or ""'),
  state: int32(),
  flags: int32(),
});

/** Where the keys of one message live, for Go-style matching (see the file comment). */
interface KeyRules {
  fields: readonly string[];
  /** Each field's schema: a value a later key overwrites is checked by it (see checkOverwritten). */
  shape: Readonly<Record<string, z.ZodType>>;
  /** Other names, by their folded form, that Kata once used for a field. */
  aliases?: Readonly<Record<string, string>>;
  /** Rules of nested messages (objects, or arrays of them) by field. */
  children?: Readonly<Record<string, KeyRules>>;
  /**
   * A request around one message (`{"interface": {...}}`): its field is named by the request's own
   * path, as the message given alone is ("interface.name").
   */
  unnamed?: boolean;
}

const IP_ADDRESS_KEYS: KeyRules = { fields: ['family', 'address', 'mask'], shape: ipAddressSchema.shape };
const INTERFACE_KEYS: KeyRules = {
  fields: ['device', 'name', 'IPAddresses', 'mtu', 'hwAddr', 'devicePath', 'pciPath', 'type', 'raw_flags'],
  shape: interfaceSchema.shape,
  // type_: Kata's Rust protocol crate names the field so (type is a Rust keyword), and its serde JSON with it.
  aliases: { rawflags: 'raw_flags', linktype: 'type', pciaddr: 'pciPath', type_: 'type' },
  children: { IPAddresses: IP_ADDRESS_KEYS },
};
const ROUTE_KEYS: KeyRules = {
  fields: ['dest', 'gateway', 'device', 'source', 'scope', 'family', 'flags', 'mtu'],
  shape: routeSchema.shape,
};
const NEIGHBOUR_KEYS: KeyRules = {
  fields: ['toIPAddress', 'device', 'lladdr', 'state', 'flags'],
  shape: neighbourSchema.shape,
  children: { toIPAddress: IP_ADDRESS_KEYS },
};

/**
 * The rules of the message a path's last key sits in ("routes[0].gatway": a route's), by the path as
 * the JSON spelled it. The `u` flag makes `i` fold keys as Go does (Unicode simple folding: the long
 * s U+017F and the Kelvin sign U+212A match s and k): without it, "IPAddre\u017f\u017fes", which Go
 * reads as IPAddresses, was taken for no list of addresses.
 */
function rulesAt(parent: string): KeyRules {
  return /(?:^|\.)(?:IPAddresses\[\d+\]|toIPAddress)$/iu.test(parent)
    ? IP_ADDRESS_KEYS
    : /^routes?\b/iu.test(parent)
      ? ROUTE_KEYS
      : /^neighbou?rs?\b/iu.test(parent)
        ? NEIGHBOUR_KEYS
        : INTERFACE_KEYS;
}

/**
 * The field a key ignored at `path` (one of the `ignoredKeys` paths: "routes[0].gatway") most likely
 * meant, among the fields of the message it sits in; undefined when none is close. Go ignores such a
 * key, so a typo leaves the field at its zero value: the warning can say which field that was.
 */
export function kataFieldMeant(path: string): string | undefined {
  const at = ignoredKeyAt(path);
  return at && closestName(at.key, at.rules.fields);
}

/**
 * What a warning says of the key ignored at `path`, beside it: that it is another name of a field
 * given again (under its own name, or a later other name, which is read), or the field a near miss
 * most likely meant (kataFieldMeant); undefined for a key far from every field.
 */
export function kataIgnoredKeyNote(path: string): string | undefined {
  const at = ignoredKeyAt(path);
  if (!at) return undefined;
  const { aliases, fields } = at.rules;
  const folded = goFoldedKey(at.key);
  const aliasOf = aliases && Object.hasOwn(aliases, folded) ? aliases[folded] : undefined;
  if (aliasOf !== undefined) return `another name of ${aliasOf}, given again`;
  const meant = closestName(at.key, fields);
  return meant === undefined ? undefined : `did you mean ${meant}?`;
}

/** The last key of an ignored key's path, and the rules of the message it sits in; undefined for a bare key. */
function ignoredKeyAt(path: string): { key: string; rules: KeyRules } | undefined {
  const match = /^(.*)\.([^.]+)$/.exec(path);
  if (!match) return undefined;
  const [, parent = '', key = ''] = match;
  return { key, rules: rulesAt(parent) };
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * The key paths the JSON spelled otherwise than the schema (an alias, another case), by the schema's
 * path ("interface.pciPath" → "interface.PciAddr"): an error names the key the JSON used, not one the
 * user never wrote.
 */
type Spellings = Map<string, string>;

/** `field` (a schema path, "interface.IPAddresses[0].family") as the JSON spelled it (spelledAs). */
function spelledAs(field: string, spelled: Spellings): string {
  let longest = '';
  for (const schemaPath of spelled.keys()) {
    const within = field === schemaPath || field.startsWith(`${schemaPath}.`) || field.startsWith(`${schemaPath}[`);
    if (within && schemaPath.length > longest.length) longest = schemaPath;
  }
  return longest ? `${spelled.get(longest)}${field.slice(longest.length)}` : field;
}

/** Forgets what `spelled` holds of `schemaPath` and below: a later key for the field replaces it. */
function forgetSpelling(spelled: Spellings, schemaPath: string): void {
  for (const known of [...spelled.keys()]) {
    if (known === schemaPath || known.startsWith(`${schemaPath}.`) || known.startsWith(`${schemaPath}[`)) {
      spelled.delete(known);
    }
  }
}

/** What foldKeys gathers besides the folded value. */
interface FoldContext {
  /** Paths of keys that matched no field (ignored, as Go ignores them): the caller's list, each path once. */
  ignored: string[];
  ignoredPaths: Set<string>;
  spelled: Spellings;
  /** Values a later key overwrote that do not fit their field: Go refuses the object for them. */
  refused: JsonIssue[];
}

function foldContext(ignored: string[]): FoldContext {
  return { ignored, ignoredPaths: new Set(), spelled: new Map(), refused: [] };
}

/** Notes a key read as no field, by its path as the JSON spelled it: once, however often it is given. */
function ignoreKey(context: FoldContext, path: string): void {
  if (context.ignoredPaths.has(path)) return;
  context.ignoredPaths.add(path);
  context.ignored.push(path);
}

/**
 * Where parseKataJsonText found the keys of an object it returned (positions as JSON.parse counts
 * them, UTF-16 units from 0), and the values of the keys given again later in it, which the object
 * does not hold. A value from elsewhere (a library caller's object) has none.
 */
interface KeyPlaces {
  text: string;
  positions: ReadonlyMap<string, number>;
  overwritten: ReadonlyArray<{ key: string; position: number; value: unknown }>;
}

const keyPlaces = new WeakMap<object, KeyPlaces>();

/** `position` in `text` as Node's JSON.parse says one: "position 8 (line 1 column 9)". */
function placeIn(text: string, position: number): string {
  const before = text.slice(0, position);
  const line = before.split('\n').length;
  return `position ${position} (line ${line} column ${position - before.lastIndexOf('\n')})`;
}

/** A value of `field` read and then overwritten by a later key: Go's encoding/json decoded it all the same. */
interface DecodedValue {
  key: string;
  position: number | undefined;
  value: unknown;
  schemaPath: string;
}

/**
 * Checks a value a later key overwrites against its field's schema. Go's encoding/json decodes every
 * occurrence of a key into the struct in turn and, on a type error, reads on and then refuses the
 * whole object: `{"name":0,"name":"eth0"}` is refused by Kata, so it is by vcnet.
 */
function checkOverwritten(
  earlier: DecodedValue,
  laterKey: string,
  rules: KeyRules,
  field: string,
  context: FoldContext,
  text: string | undefined,
  elements?: (index: number) => boolean,
): void {
  const schema = rules.shape[field];
  if (schema === undefined) return;
  const result = schema.safeParse(goFieldsOf(earlier.value), { ...PARSE_OPTIONS, reportInput: true });
  if (result.success) return;
  // A null list element is a nil pointer to Go's decoder, no error: only a message sent with one is refused.
  const faults = result.error.issues.filter(
    (issue) => !(issue.input === null && typeof issue.path.at(-1) === 'number'),
  );
  if (faults.length === 0) return;
  const where = earlier.position === undefined || text === undefined ? '' : ` at ${placeIn(text, earlier.position)}`;
  const which = `the ${JSON.stringify(earlier.key)}${where}, which a later ${JSON.stringify(laterKey)} overwrites`;
  const issues = issuesOf(
    new z.ZodError(
      elements ? faults.filter((issue) => typeof issue.path[0] === 'number' && elements(issue.path[0])) : faults,
    ),
    earlier.schemaPath,
  );
  for (const issue of issues) {
    const issueField = spelledAs(issue.field, context.spelled);
    // Once: an element past a list's end that a later list reaches again is checked again when it leaves.
    if (context.refused.some((known) => known.field.startsWith(`${issueField} (`))) continue;
    context.refused.push({ ...issue, field: `${issueField} (${which})` });
  }
}

/**
 * A folded value without what was read under an alias: an alias is no field of Go's, its value never
 * decoded by Go, so one a later value replaces is not checked.
 */
function goFieldsOf(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(goFieldsOf);
  if (!isPlainObject(value)) return value;
  const aliased = aliasesRead.get(value);
  return Object.fromEntries(
    Object.entries(value)
      .filter(([field]) => !aliased?.has(field))
      .map(([field, child]) => [field, goFieldsOf(child)]),
  );
}

/**
 * The value with its keys renamed to the schema's own spelling and unknown keys dropped (their paths
 * pushed onto `context.ignored`), decoded as Go's encoding/json decodes it: every value given is read
 * in the order of the text, a key given again included, into what was decoded before (`into`, the
 * message an earlier value of the same field gave). A later scalar wins over an earlier one, whose
 * value must still fit (checkOverwritten); a later null leaves a scalar as it was and empties a
 * message or list; a later message is decoded into the earlier one (decodedList for lists); an alias
 * never wins over the field's own name. Each key read under another spelling goes into
 * `context.spelled` (`jsonPath`: `path` as the JSON spelled it).
 */
function foldKeys(
  value: unknown,
  rules: KeyRules,
  path: string,
  context: FoldContext,
  jsonPath = path,
  into?: Record<string, unknown>,
): unknown {
  if (!isPlainObject(value)) return value;
  const { spelled } = context;
  const places = keyPlaces.get(value);
  const entries: Array<{ key: string; child: unknown; position: number | undefined }> = Object.entries(value).map(
    ([key, child]) => ({ key, child, position: places?.positions.get(key) }),
  );
  if (places !== undefined) {
    for (const { key, value: child, position } of places.overwritten) entries.push({ key, child, position });
    entries.sort((a, b) => (a.position ?? 0) - (b.position ?? 0));
  }
  const folded: Record<string, unknown> = { ...into };
  // The alias each field was last read under (its path), in this object or the one it is decoded into.
  const byAlias = new Map<string, string>(into === undefined ? [] : aliasesRead.get(into));
  // The value Go last decoded into each field, in this object or the one it is decoded into (an
  // alias is no field of Go's): a field given under its own name there is Go's, whatever an alias says.
  const decoded = new Map<string, DecodedValue>(into === undefined ? [] : decodedFields.get(into));
  for (const { key, child, position } of entries) {
    // An own alias only: a key such as "constructor" or "__proto__" would otherwise find Object.prototype's.
    const alias =
      rules.aliases && Object.hasOwn(rules.aliases, goFoldedKey(key)) ? rules.aliases[goFoldedKey(key)] : undefined;
    const field =
      rules.fields.find((candidate) => candidate === key) ??
      rules.fields.find((candidate) => goFoldedKey(candidate) === goFoldedKey(key));
    const target = field ?? alias;
    if (target === undefined || (field === undefined && decoded.has(target))) {
      ignoreKey(context, `${jsonPath}.${key}`);
      continue;
    }
    // A request's message is named as when given alone ("interface.name", not "interface.interface.name").
    const schemaPath = rules.unnamed ? path : `${path}.${target}`;
    const keyPath = rules.unnamed ? jsonPath : `${jsonPath}.${key}`;
    const childRules = rules.children?.[target];
    // Go leaves a string or number field as it was for a null: an earlier value stands.
    if (child === null && !childRules && field !== undefined && decoded.has(field)) continue;
    const earlier = field === undefined ? undefined : decoded.get(field);
    // What a later value is decoded into: the message (or list) the earlier one left.
    const previous = childRules && earlier !== undefined ? folded[target] : undefined;
    const decodesInto =
      childRules !== undefined &&
      ((Array.isArray(child) && Array.isArray(previous)) || (isPlainObject(child) && isPlainObject(previous)));
    if (field !== undefined) {
      const aliasPath = byAlias.get(field);
      if (aliasPath !== undefined) ignoreKey(context, aliasPath);
      byAlias.delete(field);
      // A scalar, or a message a null (or a value of another type) replaces, leaves for good: it must
      // have fit. A message decoded into keeps its fields, each checked when it is replaced in turn.
      if (earlier !== undefined && !decodesInto) checkOverwritten(earlier, key, rules, field, context, places?.text);
    } else {
      // Two old names for one field (linkType, then type_): the later one is read, the earlier one is not.
      const earlierAlias = byAlias.get(target);
      if (earlierAlias !== undefined) ignoreKey(context, earlierAlias);
      byAlias.set(target, `${jsonPath}.${key}`);
    }
    // The spellings of a message decoded into stay for the fields the later one leaves out.
    if (!decodesInto) forgetSpelling(spelled, schemaPath);
    if (keyPath !== schemaPath) spelled.set(schemaPath, keyPath);
    const foldedChild = !childRules
      ? child
      : Array.isArray(child)
        ? decodedList(child, decodesInto ? (previous as unknown[]) : [], childRules, context, {
            field,
            rules,
            schemaPath,
            keyPath,
            key,
            text: places?.text,
            earlier,
          })
        : foldKeys(
            child,
            childRules,
            schemaPath,
            context,
            keyPath,
            decodesInto ? (previous as Record<string, unknown>) : undefined,
          );
    folded[target] = foldedChild;
    if (field !== undefined) decoded.set(field, { key, position, value: foldedChild, schemaPath });
  }
  decodedFields.set(folded, decoded);
  aliasesRead.set(folded, byAlias);
  return folded;
}

/** Where each field of a folded message was decoded from, for a later value decoded into the message. */
const decodedFields = new WeakMap<object, ReadonlyMap<string, DecodedValue>>();
/** The alias paths a folded message's fields were read under: a later own name ignores them. */
const aliasesRead = new WeakMap<object, ReadonlyMap<string, string>>();

/**
 * Each list foldKeys returned, with the elements Go keeps past its end: Go's encoding/json decodes
 * a list into the slice already there, element by element (each a pointer to a message, decoded
 * into as foldKeys decodes a message), then cuts the slice's length to the new list's, keeping the
 * elements past it in the backing array. A later, longer list reaches them again, so
 * `"IPAddresses":[a,b],"IPAddresses":[c],"IPAddresses":[d,e]` decodes e into b. An empty list
 * makes a new slice (decode.go `array`: `if i == 0 ... MakeSlice(0, 0)`), and null a nil one: both
 * drop what the backing array held. Every Go release decodes so, Kata 1.x's and today's alike
 * (golang/go#21092 is open; its fix, merged for Go 1.15, was reverted before that release,
 * golang/go#39427), and none loses the elements past the end as the slice grows: it only grows full.
 */
const keptPastEnd = new WeakMap<object, readonly unknown[]>();

/**
 * A list decoded into the one an earlier value of its field left (`previous`, [] for none), as
 * foldKeys describes; the elements it leaves past its end, no longer the message's, must have fit.
 */
function decodedList(
  items: readonly unknown[],
  previous: readonly unknown[],
  rules: KeyRules,
  context: FoldContext,
  field: {
    field: string | undefined;
    rules: KeyRules;
    schemaPath: string;
    keyPath: string;
    key: string;
    text: string | undefined;
    earlier: DecodedValue | undefined;
  },
): unknown[] {
  const backing = items.length === 0 ? [] : [...previous, ...(keptPastEnd.get(previous) ?? [])];
  const list = items.map((item, index) => {
    const kept = backing[index];
    return foldKeys(
      item,
      rules,
      `${field.schemaPath}[${index}]`,
      context,
      `${field.keyPath}[${index}]`,
      isPlainObject(kept) ? kept : undefined,
    );
  });
  const { earlier } = field;
  // The elements now past the end, and those a null (or a scalar) replaces: the others are decoded
  // into, their fields checked then.
  const replaced = (index: number) => index >= list.length || !isPlainObject(items[index]);
  if (field.field !== undefined && earlier !== undefined && previous.some((_, index) => replaced(index))) {
    checkOverwritten(
      { ...earlier, value: previous },
      field.key,
      field.rules,
      field.field,
      context,
      field.text,
      replaced,
    );
  }
  keptPastEnd.set(list, backing.slice(list.length));
  return list;
}

function foldList(value: unknown, rules: KeyRules, path: string, context: FoldContext): unknown {
  return Array.isArray(value) ? value.map((item, index) => foldKeys(item, rules, `${path}[${index}]`, context)) : value;
}

/** What a parse reports besides its result. */
export interface KataJsonReadOptions {
  /** Receives the path of each key ignored (no field, or an alias beside its field), once, as the JSON spelled it. */
  ignoredKeys?: string[];
}

/**
 * The label and options of a *FromJson call, checked: a JavaScript caller who passes the options as
 * the second argument (the label) would otherwise read "invalid [object Object].mtu".
 */
function readArguments(field: unknown, options: unknown, example: string): { label: string; ignored: string[] } {
  const label = labelArgument(field, 'field', example);
  const { ignoredKeys } = optionsArgument(options as KataJsonReadOptions | undefined, 'options', ['ignoredKeys']);
  if (ignoredKeys !== undefined && !Array.isArray(ignoredKeys)) {
    throw new InvalidInputError('options.ignoredKeys', ignoredKeys, 'an array (the ignored keys are pushed onto it)');
  }
  return { label, ignored: ignoredKeys ?? [] };
}

/**
 * Whether `json` is an agent request around one message, as Kata's runtime logs every request it
 * sends (protojson, `"sending request"`: `{"interface":{...}}` for UpdateInterfaceRequest,
 * `{"routes":{"Routes":[...]}}` for UpdateRoutesRequest) and as genpolicy's test cases and the
 * agent's policy log write them (serde): an object whose every key is `field` as Go's encoding/json
 * matches it (goFoldedKey: `Interface`, `ROUTES`, `Route\u017f`), one value of which at least is an
 * object. Kata writes the key in lower case only, and its protojson and serde readers take only that;
 * vcnet reads it as every other key of this JSON, as Go decodes the request (its field is tagged
 * "interface", "routes"): by its exact spelling `{"Interface":{...}}` was an Interface with one
 * unknown key, read as an empty one. An Interface has no field of that name and a route list is no
 * object, so nothing else is taken for a request. Each value given for the key is then read in turn
 * (foldKeys), as Go decodes each into the request: an earlier one that is no object is refused, a
 * later one is decoded into the earlier.
 */
function isAgentRequest(json: unknown, field: 'interface' | 'routes'): json is Record<string, unknown> {
  if (!isPlainObject(json)) return false;
  const keys = Object.keys(json);
  const earlier = keyPlaces.get(json)?.overwritten ?? [];
  const isField = (key: string) => goFoldedKey(key) === field;
  if (keys.length === 0 || !keys.every(isField) || !earlier.every(({ key }) => isField(key))) return false;
  return keys.some((key) => isPlainObject(json[key])) || earlier.some(({ value }) => isPlainObject(value));
}

const UPDATE_INTERFACE_REQUEST_KEYS: KeyRules = {
  fields: ['interface'],
  shape: { interface: interfaceSchema.nullable() },
  children: { interface: INTERFACE_KEYS },
  unnamed: true,
};
/** The agent's Routes message, `{"Routes": [...]}`, its key matched as Go folds it (`routes`, `Route\u017f`). */
const ROUTES_KEYS: KeyRules = {
  fields: ['Routes'],
  shape: { Routes: list(routeSchema) },
  children: { Routes: ROUTE_KEYS },
  unnamed: true,
};
const UPDATE_ROUTES_REQUEST_KEYS: KeyRules = {
  fields: ['routes'],
  shape: { routes: z.object({ Routes: list(routeSchema) }, { error: 'an object' }).nullable() },
  children: { routes: ROUTES_KEYS },
  unnamed: true,
};

/**
 * The Interface of add-iface's or del-iface's JSON: an Interface, or the UpdateInterfaceRequest
 * around one (isAgentRequest). Errors name its fields `interface.<field>` either way.
 */
export function interfaceRequestFromJson(json: unknown, options: KataJsonReadOptions = {}): Interface {
  if (!isAgentRequest(json, 'interface')) return interfaceFromJson(json, 'interface', options);
  const { label, ignored } = readArguments('interface', options, 'interface');
  const context = foldContext(ignored);
  const request = foldKeys(json, UPDATE_INTERFACE_REQUEST_KEYS, label, context) as Record<string, unknown>;
  return interfaceMessage(request.interface, label, context);
}

/**
 * The route list of update-routes' JSON: a list, the agent's Routes message (`{"Routes": [...]}`),
 * or the UpdateRoutesRequest around one (isAgentRequest). undefined for a nil list (JSON `null`,
 * `{"Routes": null}`), which changes nothing. A logged UpdateRoutesRequest with no routes is
 * `{"routes":{}}` (protojson leaves an empty list out): the empty set, which Kata sent; a Routes
 * message with no Routes but other keys is refused, not taken for the empty set (a misspelt
 * `Routes` would remove every route).
 */
export function routesRequestFromJson(json: unknown, options: KataJsonReadOptions = {}): Route[] | undefined {
  if (json === null) return undefined;
  const { label, ignored } = readArguments('routes', options, 'routes');
  const context = foldContext(ignored);
  const routes = foldedRouteList(json, label, context);
  // An earlier value that did not fit refuses the input, as Go refuses it, even when the list is nil.
  if (context.refused.length > 0) throw new KataJsonError(context.refused, OVERWRITTEN_HINT);
  if (routes === null) return undefined;
  return parse(list(routeSchema), routes, label, context).map(routeMessage);
}

/** The route list of update-routes' JSON in any of its forms, folded by foldKeys; null for a nil list. */
function foldedRouteList(json: unknown, label: string, context: FoldContext): unknown {
  if (isAgentRequest(json, 'routes')) {
    const ignoredBefore = context.ignoredPaths.size;
    const message = (foldKeys(json, UPDATE_ROUTES_REQUEST_KEYS, label, context) as Record<string, unknown>).routes;
    if (message === null) return null;
    // An array or a scalar where Go wants the Routes message: refused, as Go refuses it.
    if (!isPlainObject(message))
      return parse(z.object({}, { error: 'an object: {"Routes": [...]}' }), message, label, context);
    if (Object.hasOwn(message, 'Routes')) return message.Routes;
    // No Routes: the empty set, unless a key was ignored (a misspelt Routes would remove every route):
    // then the message as given (under the request's key as spelled), refused as no list.
    if (context.ignoredPaths.size === ignoredBefore) return [];
    return Object.entries(json).findLast(([key]) => goFoldedKey(key) === 'routes')?.[1];
  }
  // The agent's Routes message is Kata's (agent.proto; Go's grpc.Routes, field tagged "Routes"): its
  // key is matched as Go folds it, as inside a request, so "routes" and "Route\u017f" are it too.
  if (isPlainObject(json) && Object.keys(json).some((key) => goFoldedKey(key) === 'routes')) {
    return (foldKeys(json, ROUTES_KEYS, label, context) as Record<string, unknown>).Routes;
  }
  return foldList(json, ROUTE_KEYS, label, context);
}

/**
 * JSON.parse of kata-network input, bounded first: a text over MAX_KATA_JSON_BYTES or nested deeper
 * than MAX_KATA_JSON_DEPTH is refused by name instead of exhausting memory or the stack. A key given
 * twice in one object is read as Go reads it: the later one wins, at its own place among the keys.
 * JSON.parse keeps the value of the later one at the place of the first, so
 * `{"name":"eth9","Name":"eth0","name":0}` read as name "eth0" (Name, now after name, won) and
 * del-iface removed eth0, where Go reads name 0 last and refuses it. The earlier values are kept
 * beside each object returned (keyPlaces), with where each key was, for foldKeys to check.
 */
export function parseKataJsonText(text: string, field: string): unknown {
  const bytes = Buffer.byteLength(text);
  if (bytes > MAX_KATA_JSON_BYTES) {
    throw new InvalidInputError(field, `${bytes} bytes`, `JSON of at most ${MAX_KATA_JSON_BYTES} bytes`);
  }
  // Each object's keys in the order of the text, objects in the order they open (the order
  // withKeyPlaces walks the parsed value in).
  const objects: KeyOccurrence[][] = [];
  // Per open object, its keys so far (the last occurrence of each); undefined for an array.
  const open: Array<{ occurrences: KeyOccurrence[]; last: Map<string, KeyOccurrence> } | undefined> = [];
  let duplicates = false;
  let inString = false;
  let stringStart = 0;
  for (let position = 0; position < text.length; position++) {
    const character = text[position];
    if (inString) {
      if (character === '\\') position++;
      else if (character === '"') {
        inString = false;
        const keys = open.at(-1);
        if (keys !== undefined && text[nextNonBlank(text, position + 1)] === ':') {
          const key = decodedKey(text.slice(stringStart, position + 1));
          if (key !== undefined) {
            const earlier = keys.last.get(key);
            if (earlier !== undefined) {
              earlier.overwritten = true;
              duplicates = true;
            }
            const occurrence: KeyOccurrence = { key, start: stringStart, end: position + 1, overwritten: false };
            keys.occurrences.push(occurrence);
            keys.last.set(key, occurrence);
          }
        }
      }
    } else if (character === '"') {
      inString = true;
      stringStart = position;
    } else if (character === '{' || character === '[') {
      if (character === '{') {
        const occurrences: KeyOccurrence[] = [];
        objects.push(occurrences);
        open.push({ occurrences, last: new Map() });
      } else {
        open.push(undefined);
      }
      if (open.length > MAX_KATA_JSON_DEPTH) {
        throw new InvalidInputError(
          field,
          text.slice(0, 40),
          `JSON nested at most ${MAX_KATA_JSON_DEPTH} levels deep (an Interface nests 3)`,
        );
      }
    } else if (character === '}' || character === ']') {
      open.pop();
    }
  }
  // Each earlier duplicate gets a key no input can hold, taken out again by withKeyPlaces.
  const placeholder = `\u0000vcnet-duplicate-${randomUUID()}`;
  let rewritten = text;
  if (duplicates) {
    const renamed = objects.flat().filter((occurrence) => occurrence.overwritten);
    for (const occurrence of renamed.sort((a, b) => b.start - a.start)) {
      const name = JSON.stringify(`${placeholder}-${occurrence.start}`);
      rewritten = `${rewritten.slice(0, occurrence.start)}${name}${rewritten.slice(occurrence.end)}`;
    }
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(rewritten);
  } catch (rewrittenError) {
    // Renaming a key keeps the text valid or not as it was, but moves JSON.parse's positions and may
    // quote the placeholder: the refusal says what JSON.parse says of the text as written.
    let error = rewrittenError;
    try {
      JSON.parse(text);
    } catch (writtenError) {
      error = writtenError;
    }
    throw new InvalidInputError(
      field,
      text.slice(0, 80),
      'valid JSON',
      jsonParseProblem(text, error, 'save it without one'),
    );
  }
  return withKeyPlaces(parsed, { text, objects, next: 0, placeholder });
}

/** One key of an object as the text gives it; `overwritten` when the object gives it again later. */
interface KeyOccurrence {
  key: string;
  start: number;
  end: number;
  overwritten: boolean;
}

/**
 * The parsed value rebuilt without the placeholders of earlier duplicates, each object noted in
 * keyPlaces with where its keys were and the earlier values. Objects are met in the order they open
 * in the text, their keys in the order written: the order the scan recorded them in.
 */
function withKeyPlaces(
  value: unknown,
  walk: { text: string; objects: KeyOccurrence[][]; next: number; placeholder: string },
): unknown {
  if (Array.isArray(value)) return value.map((item) => withKeyPlaces(item, walk));
  if (!isPlainObject(value)) return value;
  const occurrences = walk.objects[walk.next++] ?? [];
  const entries: Array<[string, unknown]> = [];
  const positions = new Map<string, number>();
  const overwritten: Array<{ key: string; position: number; value: unknown }> = [];
  for (const occurrence of occurrences) {
    const name = occurrence.overwritten ? `${walk.placeholder}-${occurrence.start}` : occurrence.key;
    const child = withKeyPlaces(value[name], walk);
    if (occurrence.overwritten) {
      overwritten.push({ key: occurrence.key, position: occurrence.start, value: child });
    } else {
      entries.push([occurrence.key, child]);
      positions.set(occurrence.key, occurrence.start);
    }
  }
  // fromEntries, not assignment: a "__proto__" key stays a key, as JSON.parse makes it.
  const rebuilt = Object.fromEntries(entries);
  keyPlaces.set(rebuilt, { text: walk.text, positions, overwritten });
  return rebuilt;
}

/** The position of the first character at or after `from` that is not JSON whitespace. */
function nextNonBlank(text: string, from: number): number {
  let position = from;
  while (position < text.length && ' \t\n\r'.includes(text[position]!)) position++;
  return position;
}

/** A key's text (with its quotes) as JSON reads it; undefined when it is no valid JSON string. */
function decodedKey(quoted: string): string | undefined {
  try {
    return JSON.parse(quoted) as string;
  } catch {
    return undefined;
  }
}

/** Each refused field once: a value such as 1e21 fails both .int() and .max(), with the same words. */
function issuesOf(error: z.ZodError, prefix: string): JsonIssue[] {
  const issues: JsonIssue[] = [];
  const push = (issue: JsonIssue) => {
    if (!issues.some((known) => known.field === issue.field)) issues.push(issue);
  };
  for (const issue of error.issues) {
    const path =
      prefix + issue.path.map((part) => (typeof part === 'number' ? `[${part}]` : `.${String(part)}`)).join('');
    if (issue.code === 'unrecognized_keys') {
      const input = (issue.input ?? {}) as Record<string, unknown>;
      for (const key of issue.keys) push({ field: `${path}.${key}`, value: input[key], accepted: issue.message });
    } else {
      push({ field: path, value: issue.input, accepted: issue.message });
    }
  }
  return issues;
}

/**
 * `json` (folded by foldKeys) read by `schema`; its errors name each key as the JSON spelled it
 * (`context.spelled`). A value a later key overwrote that did not fit refuses the input first, as
 * Go's encoding/json refuses it.
 */
function parse<Schema extends z.ZodType>(
  schema: Schema,
  json: unknown,
  field: string,
  context: FoldContext,
): z.output<Schema> {
  if (context.refused.length > 0) throw new KataJsonError(context.refused, OVERWRITTEN_HINT);
  const result = schema.safeParse(json, { ...PARSE_OPTIONS, reportInput: true });
  if (!result.success) {
    const issues = issuesOf(result.error, field).map((issue) => ({
      ...issue,
      field: spelledAs(issue.field, context.spelled),
    }));
    throw new KataJsonError(issues);
  }
  return result.data;
}

const OVERWRITTEN_HINT =
  "Kata's runtime (Go's encoding/json) reads every value given for a field, in turn, and refuses the object when one does not fit, even if a later one does: remove the earlier one or make it fit";

const toFamily = (value: KataFamilyJson): IPFamily => value as IPFamily;
const fromFamily = (value: IPFamily): KataFamilyJson => (value === 1 ? 1 : 0);

function ipAddressMessage(json: z.output<typeof ipAddressSchema>): IPAddress {
  return create(IPAddressSchema, {
    family: toFamily(familyOf(json.family, [json.address])),
    address: json.address,
    mask: json.mask,
  });
}

function ipAddressJson(message: IPAddress | undefined): KataIpAddressJson {
  return { family: fromFamily(message?.family ?? 0), address: message?.address ?? '', mask: message?.mask ?? '' };
}

/** One Interface from its JSON. `field` names it in errors ("interfaces[2]"). */
export function interfaceFromJson(json: unknown, field = 'interface', options: KataJsonReadOptions = {}): Interface {
  const { label, ignored } = readArguments(field, options, 'interface');
  const context = foldContext(ignored);
  return interfaceMessage(foldKeys(json, INTERFACE_KEYS, label, context), label, context);
}

/** An Interface folded by foldKeys, read by its schema and checked; `label` names it in errors. */
function interfaceMessage(folded: unknown, label: string, context: FoldContext): Interface {
  const { spelled } = context;
  const value = parse(interfaceSchema, folded, label, context);
  // A v6 family with an IPv4 address is refused, as for routes (familyOf keeps the v6 claim, and the
  // message would otherwise go out with the family the address gives, the caller's v6 silently lost).
  const mismatched = value.IPAddresses.findIndex((address) => address.family === 1 && isIPv4(address.address));
  if (mismatched >= 0) {
    const address = value.IPAddresses[mismatched];
    throw new KataJsonError([
      {
        field: spelledAs(`${label}.IPAddresses[${mismatched}].family`, spelled),
        value: 1,
        accepted: `0 or "v4" for the IPv4 address ${JSON.stringify(address?.address)} (1 or "v6" only with an IPv6 address)`,
      },
    ]);
  }
  // Compared as the paths they name: "02.0/00.0" is "02/00" to Kata's agent.
  if (value.devicePath && value.pciPath && sentDevicePath(value.devicePath) !== sentDevicePath(value.pciPath)) {
    throw new KataJsonError([
      {
        field: spelledAs(`${label}.pciPath`, spelled),
        value: value.pciPath,
        accepted: `the same value as devicePath (${JSON.stringify(value.devicePath)}), or leave it out`,
      },
    ]);
  }
  // Checked here, under the key the JSON used: read into devicePath, a bad pciPath (or PciAddr) was
  // refused later as "interface.devicePath", a key the user never wrote.
  const pathKey = value.devicePath ? 'devicePath' : 'pciPath';
  const path = value[pathKey];
  if (!isDevicePath(path)) {
    const pathField = spelledAs(`${label}.${pathKey}`, spelled);
    throw new KataJsonError([{ field: pathField, value: path, accepted: DEVICE_PATH_ACCEPTED }]);
  }
  return create(InterfaceSchema, {
    device: value.device,
    name: value.name,
    IPAddresses: value.IPAddresses.map(ipAddressMessage),
    mtu: BigInt(value.mtu),
    hwAddr: value.hwAddr,
    devicePath: sentDevicePath(path),
    type: value.type,
    rawFlags: value.raw_flags,
  });
}

/**
 * Turns an agent Interface message into the JSON `kata-network` prints and `interfaceFromJson` reads back
 * (the mtu as a number, addresses as `{ family, address, mask }`).
 */
export function interfaceToJson(message: Interface): KataInterfaceJson {
  return {
    device: message.device,
    name: message.name,
    IPAddresses: message.IPAddresses.map(ipAddressJson),
    mtu: Number(message.mtu),
    hwAddr: message.hwAddr,
    devicePath: message.devicePath,
    pciPath: message.devicePath,
    type: message.type,
    raw_flags: message.rawFlags,
  };
}

function routeMessage(value: z.output<typeof routeSchema>): Route {
  const family = familyOf(value.family, [value.dest, value.gateway, value.source]);
  // Kata's agent parses dest as a network: "default" would fail there.
  const dest = value.dest === 'default' ? (family === 1 ? '::/0' : '0.0.0.0/0') : value.dest;
  return create(RouteSchema, { ...value, dest, family: toFamily(family) });
}

/**
 * Reads one route in Kata's JSON form (as `kata-runtime` and `kata-network update-routes` give it) into an
 * agent Route message. `field` names the value in error messages. Throws `KataJsonError` (an
 * `InvalidFieldsError`) naming every field that does not fit.
 */
export function routeFromJson(json: unknown, field = 'route', options: KataJsonReadOptions = {}): Route {
  const { label, ignored } = readArguments(field, options, 'route');
  const context = foldContext(ignored);
  return routeMessage(parse(routeSchema, foldKeys(json, ROUTE_KEYS, label, context), label, context));
}

/** A JSON array of routes, as `kata-network update-routes` takes. */
export function routesFromJson(json: unknown, field = 'routes', options: KataJsonReadOptions = {}): Route[] {
  const { label, ignored } = readArguments(field, options, 'routes');
  const context = foldContext(ignored);
  return parse(list(routeSchema), foldList(json, ROUTE_KEYS, label, context), label, context).map(routeMessage);
}

/** Turns an agent Route message into Kata's JSON form, the inverse of `routeFromJson`. */
export function routeToJson(message: Route): KataRouteJson {
  return {
    dest: message.dest,
    gateway: message.gateway,
    device: message.device,
    source: message.source,
    scope: message.scope,
    family: fromFamily(message.family),
    flags: message.flags,
    mtu: message.mtu,
  };
}

function neighbourMessage(value: z.output<typeof neighbourSchema>): ARPNeighbor {
  return create(ARPNeighborSchema, {
    toIPAddress: ipAddressMessage(value.toIPAddress ?? { family: 0, address: '', mask: '' }),
    device: value.device,
    lladdr: value.lladdr,
    state: value.state,
    flags: value.flags,
  });
}

/**
 * Reads one neighbour (ARP/NDP entry) in Kata's JSON form into an agent ARPNeighbor message. `field` names
 * the value in error messages. Throws `KataJsonError` naming every field that does not fit.
 */
export function neighbourFromJson(json: unknown, field = 'neighbour', options: KataJsonReadOptions = {}): ARPNeighbor {
  const { label, ignored } = readArguments(field, options, 'neighbour');
  const context = foldContext(ignored);
  const folded = foldKeys(json, NEIGHBOUR_KEYS, label, context);
  return neighbourMessage(parse(neighbourSchema, folded, label, context));
}

/**
 * Reads a JSON array of neighbours, as `kata-network add-neighbours` takes, into agent ARPNeighbor messages.
 * Throws `KataJsonError` when the value is not an array or an entry does not fit.
 */
export function neighboursFromJson(
  json: unknown,
  field = 'neighbours',
  options: KataJsonReadOptions = {},
): ARPNeighbor[] {
  const { label, ignored } = readArguments(field, options, 'neighbours');
  const context = foldContext(ignored);
  const folded = foldList(json, NEIGHBOUR_KEYS, label, context);
  return parse(list(neighbourSchema), folded, label, context).map(neighbourMessage);
}

/** Turns an agent ARPNeighbor message into Kata's JSON form, the inverse of `neighbourFromJson`. */
export function neighbourToJson(message: ARPNeighbor): KataNeighbourJson {
  return {
    toIPAddress: ipAddressJson(message.toIPAddress),
    device: message.device,
    lladdr: message.lladdr,
    state: message.state,
    flags: message.flags,
  };
}
