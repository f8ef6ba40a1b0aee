/**
 * Logs go to stderr (stdout stays clean for --json), as JSON lines or pretty on a TTY.
 * Every line carries the operation context callers bind (sandbox, netns, endpoint, operation).
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

/**
 * The process's logger. A library stays quiet unless asked (VCNET_LOG_LEVEL, or configureLogger());
 * the CLI configures warn and up on stderr.
 */
export function logger(): Logger {
  return root ?? configureLogger({ format: 'json', level: process.env.VCNET_LOG_LEVEL ?? 'silent' });
}

/** The fields every line about a sandbox operation carries. */
export interface OperationFields {
  sandbox?: string;
  netns?: string;
  endpoint?: string;
  operation: string;
}

export function operationLogger(fields: OperationFields): Logger {
  return logger().child(fields);
}
