/**
 * A command's input: a file path, or - for standard input, read up to a cap, so that an endless source
 * (/dev/zero, a stuck pipe writer that never stops) is refused once it passes the cap.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { InvalidInputError, unreadableFileHint } from '../errors.js';

export interface SourceLimits {
  maxBytes: number;
  /** What the input is, for messages: "JSON file" gives "a JSON file of at most N bytes". */
  what: string;
  /** Said when the input passes maxBytes: what it normally holds. */
  tooLarge: string;
}

export function readSource(source: string, limits: SourceLimits): Buffer {
  const chunks: Buffer[] = [];
  let total = 0;
  let fd: number | undefined;
  try {
    fd = source === '-' ? 0 : openSync(source, 'r');
    const chunk = Buffer.alloc(64 * 1024);
    for (;;) {
      let count: number;
      try {
        count = readSync(fd, chunk, 0, chunk.length, null);
      } catch (error) {
        // A non-blocking stdin (a terminal or pipe Node set up) says "not yet": wait by polling again.
        if ((error as NodeJS.ErrnoException).code === 'EAGAIN') {
          Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10);
          continue;
        }
        throw error;
      }
      if (count === 0) break;
      total += count;
      if (total > limits.maxBytes) {
        throw new InvalidInputError(
          'FILE',
          source,
          `a ${limits.what} of at most ${limits.maxBytes} bytes`,
          limits.tooLarge,
        );
      }
      chunks.push(Buffer.from(chunk.subarray(0, count)));
    }
  } catch (error) {
    if (error instanceof InvalidInputError) throw error;
    throw new InvalidInputError(
      'FILE',
      source,
      `a readable ${limits.what}, or - for standard input`,
      unreadableFileHint(error, source, ', or give - and pipe it to standard input'),
    );
  } finally {
    if (fd !== undefined && fd !== 0) closeSync(fd);
  }
  return Buffer.concat(chunks);
}
