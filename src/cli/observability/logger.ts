/**
 * The CLI's and the CNI plugin's logger: lines go to stderr (stdout stays clean for --json and for
 * the CNI result), as JSON lines or pretty on a TTY. The library never logs; log-subscriber.ts turns
 * its diagnostics channel events into these lines.
 */
import { type Logger, pino } from 'pino';

export type LogFormat = 'json' | 'pretty';

let root: Logger | undefined;

export function configureLogger(options: { level?: string; format?: LogFormat } = {}): Logger {
  const format = options.format ?? (process.stderr.isTTY ? 'pretty' : 'json');
  const level = options.level ?? process.env.VCNET_LOG_LEVEL ?? 'warn';
  root =
    format === 'pretty'
      ? pino(
          { level, base: null },
          pino.transport({ target: 'pino-pretty', options: { destination: 2, colorize: true } }),
        )
      : pino({ level, base: null }, pino.destination(2));
  return root;
}

/** The process's logger: what configureLogger made, else a silent one (VCNET_LOG_LEVEL can raise it). */
export function logger(): Logger {
  return root ?? configureLogger({ format: 'json', level: process.env.VCNET_LOG_LEVEL ?? 'silent' });
}
