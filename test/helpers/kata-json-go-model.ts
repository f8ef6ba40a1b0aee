/**
 * A small model of Go's encoding/json decoding Kata's agent messages: the structs protoc generates
 * from types.proto and agent.proto, each field keyed by its JSON tag. It is plain Go; what vcnet
 * reads beyond it (its extensions: other names, integers as strings...) the caller states and passes
 * to decodeAs. The Kata JSON fuzz test checks vcnet's reading against it; it shares no code with
 * src/agent/kata-network-json.ts.
 *
 * Go's rules it follows (decode.go and fold.go), the same in every Go release Kata was built with for
 * these ASCII field names: Kata 1.x's runtime, whose kata-network read this JSON (Go 1.11 to 1.12 in
 * its versions.yaml), and today's (Go 1.24):
 * - a key matches a field's name exactly, else by Go's folding: ASCII case, and the two letters
 *   Unicode folds onto an ASCII one, the Kelvin sign U+212A (k) and the long s U+017F (s). Go up to
 *   1.20 compared with equalFoldRight (its special cases for k and s) or an ASCII fold, Go 1.21 and
 *   later fold the whole name (foldName, unicode.SimpleFold): for ASCII field names both match the
 *   same keys. No other non-ASCII letter folds onto ASCII (U+0130 and U+0131 fold onto nothing);
 * - a key that matches no field is ignored;
 * - every value given is decoded, in the order of the text, a key given twice included;
 * - null leaves a string or number as it was and makes a pointer or slice nil;
 * - an object is decoded into the struct a pointer already holds;
 * - a list is decoded into the slice already there, element by element (a pointer already there
 *   decoded into), its length then cut to the list's; the elements past it stay in the backing array
 *   and a later, longer list reaches them again. Every Go release does this (golang/go#21092, still
 *   open; its fix was merged for Go 1.15 and reverted before the release, golang/go#39427), and none
 *   loses them on growing: the slice only grows when full. [] makes a new, empty slice;
 * - a value of the wrong type (a number out of the field's range, or not an integer, included) is an
 *   error: the rest is decoded, and the whole refused.
 */

/** A JSON value as written: an object keeps every key, duplicates included, in the order given. */
export type JsonNode = { object: Array<[string, JsonNode]> } | { array: JsonNode[] } | { scalar: ScalarValue };
export type ScalarValue = null | boolean | number | string;

export function jsonText(node: JsonNode): string {
  if ('object' in node)
    return `{${node.object.map(([key, child]) => `${JSON.stringify(key)}:${jsonText(child)}`).join(',')}}`;
  if ('array' in node) return `[${node.array.map(jsonText).join(',')}]`;
  return JSON.stringify(node.scalar);
}

/** Go's scalar types of the fields; IPFamily is protoc's enum type, an int32. */
export type GoScalar = 'string' | 'int32' | 'uint32' | 'uint64' | 'IPFamily';
/** A field: a scalar, a pointer to a struct, or a slice of pointers to structs. */
export type GoField = GoScalar | { pointerTo: GoStruct } | { sliceOf: GoStruct };
export interface GoStruct {
  name: string;
  /** By JSON tag, in the struct's order. */
  fields: Readonly<Record<string, GoField>>;
}

export const IP_ADDRESS: GoStruct = {
  name: 'IPAddress',
  fields: { family: 'IPFamily', address: 'string', mask: 'string' },
};
/** types.Interface; field 6 is tagged devicePath since 2025 (pciPath before). */
export const INTERFACE: GoStruct = {
  name: 'Interface',
  fields: {
    device: 'string',
    name: 'string',
    IPAddresses: { sliceOf: IP_ADDRESS },
    mtu: 'uint64',
    hwAddr: 'string',
    devicePath: 'string',
    type: 'string',
    raw_flags: 'uint32',
  },
};
export const ROUTE: GoStruct = {
  name: 'Route',
  fields: {
    dest: 'string',
    gateway: 'string',
    device: 'string',
    source: 'string',
    scope: 'uint32',
    family: 'IPFamily',
    flags: 'uint32',
    mtu: 'uint32',
  },
};
export const ARP_NEIGHBOR: GoStruct = {
  name: 'ARPNeighbor',
  fields: {
    toIPAddress: { pointerTo: IP_ADDRESS },
    device: 'string',
    lladdr: 'string',
    state: 'int32',
    flags: 'int32',
  },
};
export const ROUTES: GoStruct = { name: 'Routes', fields: { Routes: { sliceOf: ROUTE } } };
export const UPDATE_INTERFACE_REQUEST: GoStruct = {
  name: 'UpdateInterfaceRequest',
  fields: { interface: { pointerTo: INTERFACE } },
};
export const UPDATE_ROUTES_REQUEST: GoStruct = {
  name: 'UpdateRoutesRequest',
  fields: { routes: { pointerTo: ROUTES } },
};

/** What a reader adds to Go's rules: the caller states its extensions here. */
export interface Extensions {
  /** Fields read beyond a struct's own, by the struct's name. */
  fields?: Readonly<Record<string, Readonly<Record<string, GoField>>>>;
  /**
   * Other names of a struct's scalar fields, by the struct's name, then by the name Go-folded (goFold):
   * read only when the field's own name is not given; of two given, the later.
   */
  aliases?: Readonly<Record<string, Readonly<Record<string, string>>>>;
  /** A non-null scalar as the reader takes it where that differs from Go; undefined: as Go does. */
  scalar?: (type: GoScalar, value: Exclude<ScalarValue, null>) => { value: unknown } | 'refused' | undefined;
  /** Structs whose keys are named by the struct's own path (a request around one message: "interface.name"). */
  unnamed?: ReadonlySet<string>;
}

/**
 * What was read: refused, or the value as plain data (a struct's fields absent from the JSON at their
 * zero value, a nil pointer or slice as null) with every ignored key's path (as written), once each.
 */
export type GoReading = { refused: true } | { refused: false; value: unknown; ignored: string[] };

interface StructValue {
  fields: Map<string, unknown>;
  /** Fields given under their own name (null included): an alias of theirs is ignored. */
  own: Set<string>;
  aliased: Map<string, { key: string; path: string; value: JsonNode }>;
}
interface SliceValue {
  items: Array<StructValue | null>;
  /** The elements the backing array keeps past the slice's length. */
  pastEnd: Array<StructValue | null>;
}

const INTEGER_RANGES: Record<Exclude<GoScalar, 'string'>, [bigint, bigint]> = {
  int32: [-(2n ** 31n), 2n ** 31n - 1n],
  IPFamily: [-(2n ** 31n), 2n ** 31n - 1n],
  uint32: [0n, 2n ** 32n - 1n],
  uint64: [0n, 2n ** 64n - 1n],
};

/** Go's folding of a key as it matches one to an ASCII field name: ASCII case, K (U+212A) and ſ (U+017F). */
export function goFold(key: string): string {
  return key
    .replace(/\u212a/g, 'k')
    .replace(/\u017f/g, 's')
    .replace(/[A-Z]/g, (letter) => letter.toLowerCase());
}

class Decoding {
  errors: string[] = [];
  ignored: string[] = [];

  constructor(private readonly extensions: Extensions) {}

  scalar(node: JsonNode, type: GoScalar, current: unknown, path: string): unknown {
    if (!('scalar' in node)) return this.refuse(path, current);
    const value = node.scalar;
    if (value === null) return current;
    const extended = this.extensions.scalar?.(type, value);
    if (extended === 'refused') return this.refuse(path, current);
    if (extended !== undefined) return extended.value;
    if (type === 'string') return typeof value === 'string' ? value : this.refuse(path, current);
    // Go parses the number's text with strconv.ParseInt/ParseUint: an integer literal in range.
    const text = typeof value === 'number' ? JSON.stringify(value) : '';
    if (!/^-?(0|[1-9][0-9]*)$/.test(text)) return this.refuse(path, current);
    const [min, max] = INTEGER_RANGES[type];
    const integer = BigInt(text);
    return integer >= min && integer <= max ? Number(integer) : this.refuse(path, current);
  }

  refuse(path: string, current: unknown): unknown {
    this.errors.push(path);
    return current;
  }

  fieldsOf(type: GoStruct): Record<string, GoField> {
    return { ...type.fields, ...this.extensions.fields?.[type.name] };
  }

  struct(node: JsonNode, type: GoStruct, into: StructValue | null, path: string): StructValue | null {
    if ('scalar' in node && node.scalar === null) return null;
    if (!('object' in node)) return this.refuse(path, into) as StructValue | null;
    const value: StructValue = into ?? { fields: new Map(), own: new Set(), aliased: new Map() };
    const fields = this.fieldsOf(type);
    const names = Object.keys(fields);
    const aliases = this.extensions.aliases?.[type.name];
    const unnamed = this.extensions.unnamed?.has(type.name) ?? false;
    for (const [key, child] of node.object) {
      const field = names.find((name) => name === key) ?? names.find((name) => goFold(name) === goFold(key));
      if (field === undefined) {
        const target = aliases && Object.hasOwn(aliases, goFold(key)) ? aliases[goFold(key)] : undefined;
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
      const fieldType = fields[field]!;
      const current = value.fields.get(field);
      const keyPath = unnamed ? path : `${path}.${key}`;
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

  slice(node: JsonNode, type: GoStruct, into: SliceValue | undefined, path: string): SliceValue | undefined {
    if ('scalar' in node && node.scalar === null) return undefined;
    if (!('array' in node)) return this.refuse(path, into) as SliceValue | undefined;
    if (node.array.length === 0) return { items: [], pastEnd: [] };
    const backing = into === undefined ? [] : [...into.items, ...into.pastEnd];
    node.array.forEach((item, index) => {
      backing[index] = this.struct(item, type, backing[index] ?? null, `${path}[${index}]`);
    });
    return { items: backing.slice(0, node.array.length), pastEnd: backing.slice(node.array.length) };
  }

  /** A struct as plain data; an alias's value is decoded here, where it is known to be read. */
  plain(value: StructValue | null, type: GoStruct): Record<string, unknown> | null {
    if (value === null) return null;
    const result: Record<string, unknown> = {};
    given.set(result, new Set([...value.own, ...value.aliased.keys()]));
    for (const [name, fieldType] of Object.entries(this.fieldsOf(type))) {
      let field = value.fields.get(name);
      const alias = value.aliased.get(name);
      if (alias !== undefined && typeof fieldType === 'string') {
        field = this.scalar(alias.value, fieldType, undefined, alias.path);
      }
      if (typeof fieldType === 'string') {
        result[name] = field ?? (fieldType === 'string' ? '' : 0);
      } else if ('pointerTo' in fieldType) {
        result[name] = this.plain((field as StructValue | null | undefined) ?? null, fieldType.pointerTo);
      } else {
        result[name] = this.plainSlice(field as SliceValue | undefined, fieldType.sliceOf);
      }
    }
    return result;
  }

  plainSlice(value: SliceValue | undefined, type: GoStruct): Array<Record<string, unknown> | null> | null {
    return value === undefined ? null : value.items.map((item) => this.plain(item, type));
  }
}

const given = new WeakMap<object, ReadonlySet<string>>();

/** The fields a struct decodeAs returned was given (under any spelling, null included): Go cannot tell, a reader may. */
export function fieldsGiven(value: object): ReadonlySet<string> {
  return given.get(value) ?? new Set();
}

/**
 * `node` decoded as Go decodes it into a new value of `type` (a struct, through a pointer, or a
 * slice of pointers to one), read with `extensions`; `path` names the value in ignored keys' paths.
 */
export function decodeAs(
  node: JsonNode,
  type: GoStruct | { sliceOf: GoStruct },
  path: string,
  extensions: Extensions = {},
): GoReading {
  const decoding = new Decoding(extensions);
  const value =
    'sliceOf' in type
      ? decoding.plainSlice(decoding.slice(node, type.sliceOf, undefined, path), type.sliceOf)
      : decoding.plain(decoding.struct(node, type, null, path), type);
  if (decoding.errors.length > 0) return { refused: true };
  return { refused: false, value, ignored: [...new Set(decoding.ignored)] };
}
