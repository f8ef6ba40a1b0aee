/**
 * An OTLP/HTTP trace receiver on 127.0.0.1 inside a test namespace (never on a root-namespace
 * address): a small Node HTTP server run with `ip netns exec`, which prints each request it got as
 * a JSON line. It answers as a healthy collector (200, keeping the JSON body: run the exporter with
 * OTEL_EXPORTER_OTLP_PROTOCOL=http/json), refuses the spans (400), or never answers (slow).
 * Programs that export to it run in the same namespace.
 */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import type { TestNamespace } from './namespace.js';

export type ReceiverBehaviour = 'ok' | 'refuse-400' | 'never-answer';

export interface ReceivedRequest {
  path: string;
  /** The request body, parsed (OTLP JSON), when it was JSON. */
  body: unknown;
}

export interface OtlpReceiver {
  /** The endpoint for OTEL_EXPORTER_OTLP_ENDPOINT. */
  endpoint: string;
  requests(): ReceivedRequest[];
  stop(): Promise<void>;
}

const SERVER = `
const http = require('node:http');
const behaviour = process.argv[1];
const server = http.createServer((request, response) => {
  const chunks = [];
  request.on('data', (chunk) => chunks.push(chunk));
  request.on('end', () => {
    const text = Buffer.concat(chunks).toString('utf8');
    let body;
    try { body = JSON.parse(text); } catch { body = text; }
    process.stdout.write(JSON.stringify({ path: request.url, body }) + '\\n');
    if (behaviour === 'never-answer') return;
    response.writeHead(behaviour === 'ok' ? 200 : 400, { 'content-type': 'application/json' });
    response.end(behaviour === 'ok' ? '{}' : '{"code":3,"message":"refused by the test receiver"}');
  });
});
server.listen(0, '127.0.0.1', () => process.stdout.write('ready ' + server.address().port + '\\n'));
`;

/** Starts a receiver in `namespace` (whose lo must be up); resolves once it listens. */
export async function startOtlpReceiver(namespace: TestNamespace, behaviour: ReceiverBehaviour): Promise<OtlpReceiver> {
  const child: ChildProcessWithoutNullStreams = spawn('ip', [
    'netns',
    'exec',
    namespace.name,
    process.execPath,
    '-e',
    SERVER,
    behaviour,
  ]);
  let output = '';
  child.stdout.on('data', (chunk) => {
    output += chunk;
  });
  const port = await new Promise<number>((resolve, reject) => {
    const check = () => {
      const ready = /^ready (\d+)$/m.exec(output);
      if (ready) resolve(Number(ready[1]));
    };
    child.stdout.on('data', check);
    child.on('exit', (code) => reject(new Error(`the OTLP receiver exited (${code}) before listening`)));
  });
  return {
    endpoint: `http://127.0.0.1:${port}`,
    requests: () =>
      output
        .split('\n')
        .filter((line) => line.startsWith('{'))
        .map((line) => JSON.parse(line) as ReceivedRequest),
    stop: async () => {
      if (child.exitCode !== null) return;
      const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
      child.kill();
      await exited;
    },
  };
}
