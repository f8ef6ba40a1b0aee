/**
 * ajv validators for the hypervisor API schemas kept in test/fixtures/hypervisor. Each schema comes
 * in two flavours: as published, and "closed" (additionalProperties: false on every object), since
 * Firecracker rejects unknown fields and vcnet should not send fields either API does not define.
 */
import { readFileSync } from 'node:fs';
import { Ajv, type ValidateFunction } from 'ajv';
import addFormatsModule, { type FormatsPlugin } from 'ajv-formats';

// ajv-formats is CommonJS with `exports.default`; under NodeNext the default import is the whole module.
const addFormats = (addFormatsModule as unknown as { default: FormatsPlugin }).default;

/** An operation the description publishes: the schemas (names) of its request body and success reply. */
export interface PublishedOperation {
  requestBody: string | null;
  successReply: string | null;
}

type SchemaDocument = {
  source: { commit: string };
  definitions: Record<string, unknown>;
  /** By path under the API's base URL, then by method: the operations vcnet sends (Cloud Hypervisor's). */
  operations?: Record<string, Record<string, PublishedOperation>>;
};

function load(name: string): SchemaDocument {
  const url = new URL(`../../fixtures/hypervisor/${name}`, import.meta.url);
  return JSON.parse(readFileSync(url, 'utf8')) as SchemaDocument;
}

export const cloudHypervisorSchemas = load('cloud-hypervisor-schemas.json');
export const firecrackerSchemas = load('firecracker-schemas.json');

/** additionalProperties: false on every object schema that lists its properties. */
function closed(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(closed);
  if (node === null || typeof node !== 'object') return node;
  const copy: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(node))
    copy[key] = key === 'properties' ? mapValues(value, closed) : closed(value);
  if ('properties' in copy && copy.additionalProperties === undefined) copy.additionalProperties = false;
  return copy;
}

function mapValues(record: unknown, fn: (value: unknown) => unknown): Record<string, unknown> {
  return Object.fromEntries(Object.entries(record as Record<string, unknown>).map(([key, value]) => [key, fn(value)]));
}

function makeAjv(): Ajv {
  const ajv = new Ajv({ allErrors: true, strict: true });
  addFormats(ajv, ['int32', 'int64']);
  // OpenAPI integer formats ajv-formats does not know (Cloud Hypervisor's pci_segment, pci_device_id).
  ajv.addFormat('int16', { type: 'number', validate: (n: number) => Number.isInteger(n) && n >= -32768 && n <= 32767 });
  ajv.addFormat('uint8', { type: 'number', validate: (n: number) => Number.isInteger(n) && n >= 0 && n <= 255 });
  return ajv;
}

function compile(document: SchemaDocument, name: string, strict: boolean): ValidateFunction {
  const definitions = strict ? (closed(document.definitions) as Record<string, unknown>) : document.definitions;
  return makeAjv().compile({ $ref: `#/definitions/${name}`, definitions });
}

export interface SchemaValidator {
  /** Published schema. */
  published: ValidateFunction;
  /** Published schema, no unknown properties allowed. */
  closed: ValidateFunction;
}

export function validatorFor(document: SchemaDocument, name: string): SchemaValidator {
  return { published: compile(document, name, false), closed: compile(document, name, true) };
}

/** For assertion messages. */
export function errorsOf(validate: ValidateFunction): string {
  return JSON.stringify(validate.errors ?? []);
}
