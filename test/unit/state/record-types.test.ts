/**
 * The records' public types are written out, their zod schemas internal (vcnet's declarations reach no
 * zod type: public-types.test.ts). These checks are tsc's (`npx tsc --noEmit -p .` compiles this file):
 * a schema that drifts from the type it stands behind fails the compile. RecordEnvelope is held to
 * the envelope's schema, both ways, beside that unexported schema (record-envelope.ts).
 */
import { describe, expect, expectTypeOf, it } from 'vitest';
import type * as z from 'zod';
import { cniContentSchema, sandboxContentSchema } from '../../../src/network/state/network-content-schema.js';
import {
  parseRecord,
  type RecordContentSchema,
  type RecordEnvelope,
  StateInvalidError,
} from '../../../src/network/state/record-envelope.js';
import type { SandboxStoreOptions } from '../../../src/network/state/store.js';

describe('the record types', () => {
  it('take the content schemas as RecordContentSchema, yielding what zod infers, with no cast', () => {
    expectTypeOf(sandboxContentSchema).toExtend<RecordContentSchema<z.output<typeof sandboxContentSchema>>>();
    expectTypeOf(cniContentSchema).toExtend<RecordContentSchema<z.output<typeof cniContentSchema>>>();
    // A refined schema (vcnet-cni's interface record) is a store's content option as it is.
    const refined = cniContentSchema.refine((record) => record.interfaceName === 'eth0');
    expectTypeOf(refined).toExtend<NonNullable<SandboxStoreOptions['content']>>();
    // What parseRecord returns: the written-out envelope with the schema's content.
    expectTypeOf(parseRecord<z.output<typeof sandboxContentSchema>>).returns.toExtend<RecordEnvelope>();
    expectTypeOf<RecordEnvelope['namespace']>().toEqualTypeOf<{
      path: string;
      dev: number;
      ino: number;
      cookie?: string;
    }>();
    // And at run time the schema's issues still read through RecordContentSchema: a missing field is
    // named with the unknown key beside it (the unrecognized_keys issue's `keys`).
    const text = JSON.stringify({
      version: 2,
      id: 'a',
      namespace: { path: '/var/run/netns/pod', dev: 4, ino: 4026532300 },
      createdAt: '2026-11-30T12:00:00.000Z',
      strange: 1,
    });
    expect(() => parseRecord(text, '/state.json', { content: sandboxContentSchema })).toThrow(StateInvalidError);
    expect(() => parseRecord(text, '/state.json', { content: sandboxContentSchema })).toThrow(
      /^state file \/state\.json: field network is missing \(expected .*\); the same object has "strange", which this vcnet never writes/,
    );
  });
});
