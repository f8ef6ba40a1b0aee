/**
 * The options every zod parse in vcnet passes: without zod's compiled validators. By default zod
 * compiles an object schema's validator with `new Function` at its first parse, which a `vcnet` or
 * `vcnet-cni` process (a few parses, then exit) pays and never wins back: the first parse of a
 * sandbox record took a median of 17 ms compiled against 8 ms without, and later parses took the
 * same time either way (docs/performance.md). The checks and their errors are the same. Given per
 * parse, not with `z.config()`: that setting is global to every copy of zod in the process (an
 * application's too), and zod reads it as a schema is made, which in the bundled programs happens
 * before any of their code runs.
 */
export const PARSE_OPTIONS = { jitless: true } as const;
