/**
 * Checks of the arguments a library caller passes. TypeScript callers are held to the types; plain
 * JavaScript callers are not, and a wrong argument must not change what a call does: an options
 * string where an object belongs would otherwise be read as "no options" (attach into the default
 * state directory, gc over every namespace), a misspelt key as "the default", a timeout of "soon" as
 * "wait for ever". Each check runs before anything is changed and throws InvalidInputError naming the
 * parameter, the value and what is accepted.
 */
import { InvalidInputError } from './errors.js';

/**
 * `given` as an options object with only the `known` keys; undefined is no options ({}). Refuses a
 * non-object (a string, an array, null) and any other key, naming the closest known one.
 */
export function optionsArgument<T extends object>(
  given: T | undefined,
  parameter: string,
  known: readonly (keyof T & string)[],
): T {
  if (given === undefined) return {} as T;
  if (typeof given !== 'object' || given === null || Array.isArray(given)) {
    throw new InvalidInputError(parameter, given, `an object with the keys ${known.join(', ')} (or nothing)`);
  }
  refuseUnknownKeys(given, parameter, known);
  return given;
}

/** Refuses a key of `given` that is not one of `known`, naming the key and listing the known ones. */
export function refuseUnknownKeys(given: object, parameter: string, known: readonly string[]): void {
  for (const key of Object.keys(given)) {
    if (known.includes(key)) continue;
    const close = closestName(key, known);
    throw new InvalidInputError(
      `${parameter} key`,
      key,
      `one of ${known.join(', ')}${close === undefined ? '' : ` (did you mean ${close}?)`}`,
      close === undefined ? `remove the key ${key}` : `rename the key ${key} to ${close}`,
    );
  }
}

/**
 * The known name a mistyped one most likely meant: within two edits (one for short names), or the
 * one it shortens (stateDir for stateDirectory); else undefined.
 */
export function closestName(word: string, known: readonly string[]): string | undefined {
  const lower = word.toLowerCase();
  const shortened = known.filter((name) => lower.length >= 4 && name.toLowerCase().startsWith(lower));
  if (shortened.length === 1) return shortened[0];
  let best: { name: string; distance: number } | undefined;
  for (const name of known) {
    const distance = editDistance(word.toLowerCase(), name.toLowerCase());
    if (best === undefined || distance < best.distance) best = { name, distance };
  }
  if (best === undefined) return undefined;
  return best.distance <= (word.length <= 4 ? 1 : 2) ? best.name : undefined;
}

/** Optimal string alignment distance: insertions, deletions, substitutions and swaps of neighbours. */
export function editDistance(a: string, b: string): number {
  const rows = a.length + 1;
  const columns = b.length + 1;
  const table: number[][] = Array.from({ length: rows }, (_, row) =>
    Array.from({ length: columns }, (_, column) => (row === 0 ? column : column === 0 ? row : 0)),
  );
  for (let row = 1; row < rows; row++) {
    for (let column = 1; column < columns; column++) {
      const cost = a[row - 1] === b[column - 1] ? 0 : 1;
      let distance = Math.min(
        table[row - 1]![column]! + 1,
        table[row]![column - 1]! + 1,
        table[row - 1]![column - 1]! + cost,
      );
      if (row > 1 && column > 1 && a[row - 1] === b[column - 2] && a[row - 2] === b[column - 1]) {
        distance = Math.min(distance, table[row - 2]![column - 2]! + 1);
      }
      table[row]![column] = distance;
    }
  }
  return table[a.length]![b.length]!;
}

/** A number option: undefined passes; else a finite number (an integer when asked) within [min, max]. */
export function numberOption(
  value: unknown,
  field: string,
  range: { min: number; max: number; integer?: boolean; unit?: string },
): number | undefined {
  if (value === undefined) return undefined;
  const integer = range.integer ?? true;
  if (
    typeof value !== 'number' ||
    !Number.isFinite(value) ||
    (integer && !Number.isInteger(value)) ||
    value < range.min ||
    value > range.max
  ) {
    throw new InvalidInputError(
      field,
      value,
      `${integer ? 'an integer' : 'a number'} from ${range.min} to ${range.max}${range.unit ? ` (${range.unit})` : ''}`,
    );
  }
  return value;
}

/** A string argument that must be given and not be empty. */
export function stringArgument(value: unknown, parameter: string, accepted: string): string {
  if (typeof value !== 'string' || value === '') throw new InvalidInputError(parameter, value, accepted);
  return value;
}

/**
 * A label a function names its input by in errors (a field, a file): a non-empty string. A JavaScript
 * caller who puts an options object there (interfaceFromJson(json, { ignoredKeys })) would otherwise
 * see it printed as "[object Object]" in every message, or a TypeError for a null-prototype object.
 */
export function labelArgument(value: unknown, parameter: string, example: string): string {
  if (typeof value === 'string' && value !== '') return value;
  const options = typeof value === 'object' && value !== null && !Array.isArray(value);
  throw new InvalidInputError(
    parameter,
    value,
    `a non-empty string naming the input in error messages, such as ${JSON.stringify(example)}`,
    options
      ? `${parameter} is a string (undefined for the default); an options object goes in the argument after it`
      : undefined,
  );
}

/** An optional string option: undefined passes, else a non-empty string. */
export function stringOption(value: unknown, field: string, accepted: string): string | undefined {
  return value === undefined ? undefined : stringArgument(value, field, accepted);
}

/** An optional boolean option. */
export function booleanOption(value: unknown, field: string): boolean | undefined {
  if (value !== undefined && typeof value !== 'boolean') throw new InvalidInputError(field, value, 'true or false');
  return value;
}

/** An optional callback option. */
export function functionOption(value: unknown, field: string): void {
  if (value !== undefined && typeof value !== 'function') throw new InvalidInputError(field, value, 'a function');
}

/** An optional list of non-empty strings: `accepted` says what the list holds, `item` what one entry is. */
export function stringListOption(
  value: unknown,
  field: string,
  accepted: string,
  item = accepted,
): string[] | undefined {
  if (value === undefined) return undefined;
  if (!Array.isArray(value)) throw new InvalidInputError(field, value, `an array of ${accepted}`);
  value.forEach((entry, index) => {
    stringArgument(entry, `${field}[${index}]`, item);
  });
  return value as string[];
}

/** The lock wait a caller may give: from no wait to an hour, as VCNET_LOCK_TIMEOUT. */
export function lockTimeoutOption(value: unknown, field = 'lockTimeoutMs'): number | undefined {
  return numberOption(value, field, { min: 0, max: 3_600_000, unit: 'milliseconds' });
}

/** An optional AbortSignal (from an AbortController, AbortSignal.timeout()...). */
export function signalOption(value: unknown, field = 'signal'): AbortSignal | undefined {
  if (value !== undefined && !(value instanceof AbortSignal))
    throw new InvalidInputError(field, value, 'an AbortSignal (AbortController.signal, AbortSignal.timeout(ms))');
  return value;
}

/**
 * A whole number from `min` to `max` written as decimal digits, as a flag or variable a person types
 * it. `Number()` alone would take "0x10", "1e3", " 3" and "" (as 0), none of which a user means as
 * the number they read.
 */
export function decimalInteger(
  field: string,
  text: string | undefined,
  min: number,
  max: number,
  accepted: string,
): number {
  if (text === undefined || !/^[0-9]+$/.test(text)) throw new InvalidInputError(field, text, accepted);
  const value = Number(text);
  if (value < min || value > max) throw new InvalidInputError(field, text, accepted);
  return value;
}

/** Seconds from 0 to `max` written as decimal digits with an optional fraction ("30", "0.5", ".5"), in milliseconds. */
export function decimalSecondsAsMs(field: string, text: string | undefined, max: number, accepted: string): number {
  if (text === undefined || !/^([0-9]+(\.[0-9]*)?|\.[0-9]+)$/.test(text))
    throw new InvalidInputError(field, text, accepted);
  const seconds = Number(text);
  if (seconds > max) throw new InvalidInputError(field, text, accepted);
  return Math.round(seconds * 1000);
}
