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
  /** Other names, by their folded form, that Kata once used for a field. */
  aliases?: Readonly<Record<string, string>>;
  /** Rules of nested messages (objects, or arrays of them) by field. */
  children?: Readonly<Record<string, KeyRules>>;
}

const IP_ADDRESS_KEYS: KeyRules = { fields: ['family', 'address', 'mask'] };
const INTERFACE_KEYS: KeyRules = {
  fields: ['device', 'name', 'IPAddresses', 'mtu', 'hwAddr', 'devicePath', 'pciPath', 'type', 'raw_flags'],
  // type_: Kata's Rust protocol crate names the field so (type is a Rust keyword), and its serde JSON with it.
  aliases: { rawflags: 'raw_flags', linktype: 'type', pciaddr: 'pciPath', type_: 'type' },
  children: { IPAddresses: IP_ADDRESS_KEYS },
};
const ROUTE_KEYS: KeyRules = { fields: ['dest', 'gateway', 'device', 'source', 'scope', 'family', 'flags', 'mtu'] };
const NEIGHBOUR_KEYS: KeyRules = {
  fields: ['toIPAddress', 'device', 'lladdr', 'state', 'flags'],
  children: { toIPAddress: IP_ADDRESS_KEYS },
};

/**
 * The field a key ignored at `path` (one of the `ignoredKeys` paths: "routes[0].gatway") most likely
 * meant, among the fields of the message it sits in; undefined when none is close. Go ignores such a
 * key, so a typo leaves the field at its zero value: the warning can say which field that was.
 */
export function kataFieldMeant(path: string): string | undefined {
  const match = /^(.*)\.([^.]+)$/.exec(path);
  if (!match) return undefined;
  const [, parent = '', key = ''] = match;
  const rules = /(?:^|\.)(?:IPAddresses\[\d+\]|toIPAddress)$/.test(parent)
    ? IP_ADDRESS_KEYS
    : /^routes?\b/i.test(parent)
      ? ROUTE_KEYS
      : /^neighbou?rs?\b/i.test(parent)
        ? NEIGHBOUR_KEYS
        : INTERFACE_KEYS;
  return closestName(key, rules.fields);
}

/** Go's case folding for key matching (bytes.EqualFold-like, with the Kelvin sign and long s Go folds too). */
function foldKey(key: string): string {
  return key
    .replace(/\u212a/g, 'k')
    .replace(/\u017f/g, 's')
    .toLowerCase();
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

/**
 * The value with its keys renamed to the schema's own spelling and unknown keys dropped (their paths
 * pushed onto `ignored`). A later key wins over an earlier one for the same field, as in Go; an
 * alias never wins over the field's own name. Each key read under another spelling goes into
 * `spelled` (`jsonPath`: `path` as the JSON spelled it).
 */
function foldKeys(
  value: unknown,
  rules: KeyRules,
  path: string,
  ignored: string[],
  spelled: Spellings,
  jsonPath = path,
): unknown {
  if (!isPlainObject(value)) return value;
  const folded: Record<string, unknown> = {};
  // Fields given under their own name: an alias beside one (`type_` with `type`) is not Go's field,
  // so Go reads the field whatever the order; the alias is reported as ignored.
  const named = new Set<string>();
  const byAlias = new Map<string, string>();
  for (const [key, child] of Object.entries(value)) {
    // An own alias only: a key such as "constructor" or "__proto__" would otherwise find Object.prototype's.
    const alias = rules.aliases && Object.hasOwn(rules.aliases, foldKey(key)) ? rules.aliases[foldKey(key)] : undefined;
    const field =
      rules.fields.find((candidate) => candidate === key) ??
      rules.fields.find((candidate) => foldKey(candidate) === foldKey(key));
    const target = field ?? alias;
    if (target === undefined || (field === undefined && named.has(target))) {
      ignored.push(`${path}.${key}`);
      continue;
    }
    if (field !== undefined) {
      named.add(field);
      const aliasKey = byAlias.get(field);
      if (aliasKey !== undefined) ignored.push(`${path}.${aliasKey}`);
      byAlias.delete(field);
    } else {
      // Two old names for one field (linkType, then type_): the later one is read, the earlier one is not.
      const earlier = byAlias.get(target);
      if (earlier !== undefined) ignored.push(`${path}.${earlier}`);
      byAlias.set(target, key);
    }
    const schemaPath = `${path}.${target}`;
    const keyPath = `${jsonPath}.${key}`;
    forgetSpelling(spelled, schemaPath);
    if (keyPath !== schemaPath) spelled.set(schemaPath, keyPath);
    const childRules = rules.children?.[target];
    folded[target] = !childRules
      ? child
      : Array.isArray(child)
        ? child.map((item, index) =>
            foldKeys(item, childRules, `${schemaPath}[${index}]`, ignored, spelled, `${keyPath}[${index}]`),
          )
        : foldKeys(child, childRules, schemaPath, ignored, spelled, keyPath);
  }
  return folded;
}

function foldList(value: unknown, rules: KeyRules, path: string, ignored: string[], spelled: Spellings): unknown {
  return Array.isArray(value)
    ? value.map((item, index) => foldKeys(item, rules, `${path}[${index}]`, ignored, spelled))
    : value;
}

/** What a parse reports besides its result. */
export interface KataJsonReadOptions {
  /** Receives the paths of keys that matched no field (ignored, as Go ignores them). */
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
 * The message of an agent request in JSON, as Kata's runtime logs every request it sends (protojson,
 * `"sending request"`: `{"interface":{...}}` for UpdateInterfaceRequest, `{"routes":{"Routes":[...]}}`
 * for UpdateRoutesRequest) and as genpolicy's test cases write them: the object under `field` when that
 * is the request's one key; any other JSON as given. An Interface has no field of that name and a route
 * list is no object, so nothing else is taken for a request. A logged UpdateRoutesRequest with no routes
 * is `{"routes":{}}` (protojson leaves an empty list out): the empty set, which Kata sent.
 */
export function agentRequestMessage(json: unknown, field: 'interface' | 'routes'): unknown {
  if (!isPlainObject(json)) return json;
  const [key, ...others] = Object.keys(json);
  const message = json[field];
  if (key !== field || others.length > 0 || !isPlainObject(message)) return json;
  return field === 'routes' && Object.keys(message).length === 0 ? { Routes: [] } : message;
}

/**
 * JSON.parse of kata-network input, bounded first: a text over MAX_KATA_JSON_BYTES or nested deeper
 * than MAX_KATA_JSON_DEPTH is refused by name instead of exhausting memory or the stack. A key given
 * twice in one object is read as Go reads it: the later one wins, at its own place among the keys.
 * JSON.parse keeps the value of the later one at the place of the first, so
 * `{"name":"eth9","Name":"eth0","name":0}` read as name "eth0" (Name, now after name, won) and
 * del-iface removed eth0, where Go reads name 0 last and refuses it.
 */
export function parseKataJsonText(text: string, field: string): unknown {
  const bytes = Buffer.byteLength(text);
  if (bytes > MAX_KATA_JSON_BYTES) {
    throw new InvalidInputError(field, `${bytes} bytes`, `JSON of at most ${MAX_KATA_JSON_BYTES} bytes`);
  }
  // Per open object, its keys so far (with where each was last written); undefined for an array.
  const open: Array<Map<string, { start: number; end: number }> | undefined> = [];
  const earlierDuplicates: Array<{ start: number; end: number }> = [];
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
          const span = { start: stringStart, end: position + 1 };
          const key = decodedKey(text.slice(span.start, span.end));
          const earlier = key === undefined ? undefined : keys.get(key);
          if (earlier !== undefined) earlierDuplicates.push(earlier);
          if (key !== undefined) keys.set(key, span);
        }
      }
    } else if (character === '"') {
      inString = true;
      stringStart = position;
    } else if (character === '{' || character === '[') {
      open.push(character === '{' ? new Map() : undefined);
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
  // Each earlier duplicate gets a key no input can hold, dropped once parsed.
  const placeholder = `\u0000vcnet-duplicate-${randomUUID()}`;
  let rewritten = text;
  for (const span of earlierDuplicates.sort((a, b) => b.start - a.start)) {
    rewritten = `${rewritten.slice(0, span.start)}${JSON.stringify(`${placeholder}-${span.start}`)}${rewritten.slice(span.end)}`;
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
  return earlierDuplicates.length === 0 ? parsed : withoutKeysStartingWith(parsed, placeholder);
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

function withoutKeysStartingWith(value: unknown, prefix: string): unknown {
  if (Array.isArray(value)) return value.map((item) => withoutKeysStartingWith(item, prefix));
  if (!isPlainObject(value)) return value;
  return Object.fromEntries(
    Object.entries(value)
      .filter(([key]) => !key.startsWith(prefix))
      .map(([key, inner]) => [key, withoutKeysStartingWith(inner, prefix)]),
  );
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

/** `json` read by `schema`; its errors name each key as the JSON spelled it (`spelled`, from foldKeys). */
function parse<Schema extends z.ZodType>(
  schema: Schema,
  json: unknown,
  field: string,
  spelled: Spellings,
): z.output<Schema> {
  const result = schema.safeParse(json, { ...PARSE_OPTIONS, reportInput: true });
  if (!result.success) {
    const issues = issuesOf(result.error, field).map((issue) => ({ ...issue, field: spelledAs(issue.field, spelled) }));
    throw new KataJsonError(issues);
  }
  return result.data;
}

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
  const spelled: Spellings = new Map();
  const value = parse(interfaceSchema, foldKeys(json, INTERFACE_KEYS, label, ignored, spelled), label, spelled);
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
  const spelled: Spellings = new Map();
  return routeMessage(parse(routeSchema, foldKeys(json, ROUTE_KEYS, label, ignored, spelled), label, spelled));
}

/** A JSON array of routes, as `kata-network update-routes` takes. */
export function routesFromJson(json: unknown, field = 'routes', options: KataJsonReadOptions = {}): Route[] {
  const { label, ignored } = readArguments(field, options, 'routes');
  const spelled: Spellings = new Map();
  return parse(list(routeSchema), foldList(json, ROUTE_KEYS, label, ignored, spelled), label, spelled).map(
    routeMessage,
  );
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
  const spelled: Spellings = new Map();
  const folded = foldKeys(json, NEIGHBOUR_KEYS, label, ignored, spelled);
  return neighbourMessage(parse(neighbourSchema, folded, label, spelled));
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
  const spelled: Spellings = new Map();
  const folded = foldList(json, NEIGHBOUR_KEYS, label, ignored, spelled);
  return parse(list(neighbourSchema), folded, label, spelled).map(neighbourMessage);
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
