/**
 * A small model of how Go's encoding/json decodes Kata's Interface and Route JSON (decode.go: a key
 * matches a field exactly, else case-insensitively; unknown keys are ignored; every value given is
 * decoded in the order of the text, a key given twice included; null leaves a string or number as it
 * was and makes a pointer or slice nil; an object is decoded into the struct a pointer already holds;
 * a list into the slice already there, element by element, its length cut to the list's but the
 * elements past it kept for a later, longer list; [] makes a new slice; a value of the wrong type is
 * an error, the object refused), plus the extensions vcnet documents (the aliases, integers as
 * decimal strings, the request around one message). The fuzz test checks vcnet's reading against it;
 * it shares no code with src/agent/kata-network-json.ts.
 */

/** A JSON value as written: an object keeps every key, duplicates included, in the order given. */
export type JsonNode =
  | { object: Array<[string, JsonNode]> }
  | { array: JsonNode[] }
  | { scalar: null | boolean | number | string };

export function jsonText(node: JsonNode): string {
  if ('object' in node)
    return `{${node.object.map(([key, child]) => `${JSON.stringify(key)}:${jsonText(child)}`).join(',')}}`;
  if ('array' in node) return `[${node.array.map(jsonText).join(',')}]`;
  return JSON.stringify(node.scalar);
}

type Scalar = 'string' | 'uint32' | 'mtu' | 'family';
interface StructType {
  fields: Record<string, Scalar | { pointerTo: StructType } | { sliceOf: StructType }>;
  /** vcnet's old names of a field, by lower-case spelling: read when the field's own name is not given. */
  aliases?: Record<string, string>;
  /** A message around one field (the agent's Routes): its field is named by the message's own path. */
  unnamed?: boolean;
}

const ADDRESS: StructType = { fields: { family: 'family', address: 'string', mask: 'string' } };
export const INTERFACE: StructType = {
  fields: {
    device: 'string',
    name: 'string',
    IPAddresses: { sliceOf: ADDRESS },
    mtu: 'mtu',
    hwAddr: 'string',
    type: 'string',
    raw_flags: 'uint32',
  },
  aliases: { linktype: 'type', type_: 'type', rawflags: 'raw_flags' },
};
export const ROUTE: StructType = {
  fields: {
    dest: 'string',
    gateway: 'string',
    device: 'string',
    source: 'string',
    scope: 'uint32',
    family: 'family',
    flags: 'uint32',
    mtu: 'uint32',
  },
};
const ROUTES: StructType = { fields: { Routes: { sliceOf: ROUTE } }, unnamed: true };

interface StructValue {
  fields: Map<string, unknown>;
  /** Fields given under their own name (null included): an alias of theirs is ignored. */
  own: Set<string>;
  aliased: Map<string, { key: string; path: string; value: JsonNode }>;
}
interface SliceValue {
  items: Array<StructValue | null>;
  pastEnd: Array<StructValue | null>;
}

class Decoding {
  errors: string[] = [];
  ignored: string[] = [];

  scalar(node: JsonNode, type: Scalar, current: unknown, path: string): unknown {
    if (!('scalar' in node)) return this.refuse(path, current);
    const value = node.scalar;
    if (value === null) return current;
    if (type === 'string') return typeof value === 'string' ? value : this.refuse(path, current);
    if (type === 'family') {
      if (value === 0 || value === 2 || value === 'v4') return 0;
      if (value === 1 || value === 10 || value === 'v6') return 1;
      return this.refuse(path, current);
    }
    // vcnet also reads an integer from a decimal string, as protobuf JSON writes a 64-bit one.
    const number = typeof value === 'string' && /^-?(0|[1-9][0-9]*)$/.test(value) ? Number(value) : value;
    const max = type === 'mtu' ? Number.MAX_SAFE_INTEGER : 0xffffffff;
    return typeof number === 'number' && Number.isInteger(number) && number >= 0 && number <= max
      ? number
      : this.refuse(path, current);
  }

  refuse(path: string, current: unknown): unknown {
    this.errors.push(path);
    return current;
  }

  struct(node: JsonNode, type: StructType, into: StructValue | null, path: string): StructValue | null {
    if ('scalar' in node && node.scalar === null) return null;
    if (!('object' in node)) return this.refuse(path, into) as StructValue | null;
    const value: StructValue = into ?? { fields: new Map(), own: new Set(), aliased: new Map() };
    const names = Object.keys(type.fields);
    for (const [key, child] of node.object) {
      const field = names.find((name) => name === key) ?? names.find((name) => fold(name) === fold(key));
      if (field === undefined) {
        const target = type.aliases?.[key.toLowerCase()];
        if (target === undefined || value.own.has(target)) {
          this.ignored.push(`${path}.${key}`);
        } else {
          const earlier = value.aliased.get(target);
          if (earlier !== undefined) this.ignored.push(earlier.path);
          value.aliased.set(target, { key, path: `${path}.${key}`, value: child });
        }
        continue;
      }
      const earlierAlias = value.aliased.get(field);
      if (earlierAlias !== undefined) this.ignored.push(earlierAlias.path);
      value.aliased.delete(field);
      value.own.add(field);
      const fieldType = type.fields[field]!;
      const current = value.fields.get(field);
      const keyPath = type.unnamed ? path : `${path}.${key}`;
      value.fields.set(
        field,
        typeof fieldType === 'string'
          ? this.scalar(child, fieldType, current, keyPath)
          : 'pointerTo' in fieldType
            ? this.struct(child, fieldType.pointerTo, (current as StructValue | null) ?? null, keyPath)
            : this.slice(child, fieldType.sliceOf, current as SliceValue | undefined, keyPath),
      );
    }
    return value;
  }

  slice(node: JsonNode, type: StructType, into: SliceValue | undefined, path: string): SliceValue | undefined {
    if ('scalar' in node && node.scalar === null) return undefined;
    if (!('array' in node)) return this.refuse(path, into) as SliceValue | undefined;
    if (node.array.length === 0) return { items: [], pastEnd: [] };
    const backing = into === undefined ? [] : [...into.items, ...into.pastEnd];
    node.array.forEach((item, index) => {
      backing[index] = this.struct(item, type, backing[index] ?? null, `${path}[${index}]`);
    });
    return { items: backing.slice(0, node.array.length), pastEnd: backing.slice(node.array.length) };
  }
}

/** Go's key folding: ASCII case, and the two non-ASCII letters that fold onto an ASCII one. */
function fold(key: string): string {
  return key
    .replace(/\u212a/g, 'k')
    .replace(/\u017f/g, 's')
    .toLowerCase();
}

/** What vcnet must read: refused, or the values with every ignored key's path (as written). */
export type ModelReading = { refused: true } | { refused: false; value: unknown; ignored: string[] };

/** A struct as plain data, fields absent at their zero value; undefined when something does not fit. */
function plain(value: StructValue | null, type: StructType, decoding: Decoding): Record<string, unknown> | undefined {
  if (value === null) return undefined;
  const result: Record<string, unknown> = {};
  for (const [name, fieldType] of Object.entries(type.fields)) {
    let field = value.fields.get(name);
    const alias = value.aliased.get(name);
    if (alias !== undefined && typeof fieldType === 'string') {
      field = decoding.scalar(alias.value, fieldType, undefined, alias.path);
    }
    if (typeof fieldType === 'string') {
      result[name] = field ?? (fieldType === 'string' ? '' : 0);
    } else if ('sliceOf' in fieldType) {
      const items = ((field as SliceValue | undefined)?.items ?? []).map((item) =>
        plain(item, fieldType.sliceOf, decoding),
      );
      if (items.includes(undefined)) decoding.errors.push(`${name}: a null element`);
      result[name] = items;
    }
  }
  return result;
}

function outcome(decoding: Decoding, value: unknown): ModelReading {
  if (decoding.errors.length > 0) return { refused: true };
  return { refused: false, value, ignored: [...new Set(decoding.ignored)] };
}

/** add-iface's and del-iface's JSON: an Interface, or `{"interface": ...}` with every key so spelled. */
export function modelInterface(node: JsonNode): ModelReading {
  const decoding = new Decoding();
  let value: StructValue | null;
  if (isRequest(node, 'interface')) {
    value = null;
    for (const [, child] of entriesOf(node)) value = decoding.struct(child, INTERFACE, value, 'interface');
  } else {
    value = decoding.struct(node, INTERFACE, null, 'interface');
  }
  const result = plain(value, INTERFACE, decoding);
  if (result === undefined) return { refused: true };
  return outcome(decoding, result);
}

/** update-routes' JSON: a list, `{"Routes": [...]}`, or `{"routes": {"Routes": [...]}}`; undefined value: no change. */
export function modelRoutes(node: JsonNode): ModelReading {
  const decoding = new Decoding();
  let routes: SliceValue | undefined;
  if ('scalar' in node && node.scalar === null) return outcome(decoding, undefined);
  if (isRequest(node, 'routes')) {
    let message: StructValue | null = null;
    for (const [, child] of entriesOf(node)) message = decoding.struct(child, ROUTES, message, 'routes');
    if (message === null) return outcome(decoding, undefined);
    // vcnet's own rule: a message without Routes is the empty set only when nothing in it was ignored.
    if (!message.own.has('Routes')) return decoding.ignored.length > 0 ? { refused: true } : outcome(decoding, []);
    routes = message.fields.get('Routes') as SliceValue | undefined;
    if (routes === undefined) return outcome(decoding, undefined);
  } else if (entriesOf(node).some(([key]) => key === 'Routes')) {
    const message = decoding.struct(node, ROUTES, null, 'routes');
    routes = message?.fields.get('Routes') as SliceValue | undefined;
    if (routes === undefined) return outcome(decoding, undefined);
  } else if ('array' in node) {
    routes = {
      items: node.array.map((item, index) => decoding.struct(item, ROUTE, null, `routes[${index}]`)),
      pastEnd: [],
    };
  } else {
    return { refused: true };
  }
  const items = routes.items.map((item) => plain(item, ROUTE, decoding));
  if (items.includes(undefined)) return { refused: true };
  return outcome(decoding, items);
}

function entriesOf(node: JsonNode): Array<[string, JsonNode]> {
  return 'object' in node ? node.object : [];
}

/** vcnet's test for the request around one message: every key is `field`, one value at least an object. */
function isRequest(node: JsonNode, field: string): boolean {
  return (
    'object' in node &&
    node.object.length > 0 &&
    node.object.every(([key]) => key === field) &&
    node.object.some(([, child]) => 'object' in child)
  );
}
