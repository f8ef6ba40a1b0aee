/**
 * vcnet's guest network agent: runs under node inside the VM (init starts `node /agent/main.js`), serves
 * the network calls of the Kata agent protocol (ttrpc, "grpc.AgentService") on the virtio-serial port
 * named agent.channel.0, and applies them with rtnetlink (GetIPTables/SetIPTables with iptables-save and
 * iptables-restore, when the guest has them).
 *
 *   node main.js [--port /dev/vportNpM] [--listen SOCKET] [--netns PATH] [--port-name NAME]
 *
 * --port (env VCNET_AGENT_PORT) skips the search for the port. --listen (env VCNET_AGENT_LISTEN) serves a
 * unix socket instead of a port, and --netns (env VCNET_AGENT_NETNS) applies in another namespace: both
 * are for running the agent on a host in tests.
 */

import { rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { NetlinkHandle } from '../../netlink/handle.js';
import { createAgentServer } from '../server.js';
import { AGENT_PORT_NAME, waitForAgentPort } from './agent-port.js';
import { GuestIpTables } from './iptables.js';
import { NetlinkApplier } from './netlink-applier.js';
import { openPortIo, servePortSessions } from './port-session.js';

const log = pino(
  // errWithCause: the default serializer appends the cause's message to one that already holds it.
  {
    name: 'vcnet-agent',
    level: process.env.VCNET_LOG_LEVEL ?? 'info',
    serializers: { err: pino.stdSerializers.errWithCause },
  },
  pino.destination({ dest: 2, sync: true }),
);

interface AgentSettings {
  port: string | undefined;
  portName: string;
  listen: string | undefined;
  netns: string | undefined;
}

function settings(argv: string[]): AgentSettings {
  const { values } = parseArgs({
    args: argv,
    options: {
      port: { type: 'string' },
      'port-name': { type: 'string' },
      listen: { type: 'string' },
      netns: { type: 'string' },
    },
    strict: true,
  });
  return {
    port: values.port ?? process.env.VCNET_AGENT_PORT,
    portName: values['port-name'] ?? AGENT_PORT_NAME,
    listen: values.listen ?? process.env.VCNET_AGENT_LISTEN,
    netns: values.netns ?? process.env.VCNET_AGENT_NETNS,
  };
}

function listen(path: string, onConnection: (socket: Socket) => void): Promise<Server> {
  rmSync(path, { force: true });
  const server = createServer(onConnection);
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolve(server));
  });
}

async function main(): Promise<void> {
  const options = settings(process.argv.slice(2));
  const handle = NetlinkHandle.open(options.netns);
  const agent = createAgentServer(new NetlinkApplier(handle), {
    // GetIPTables/SetIPTables run iptables-save/-restore in the namespace served (--netns), else the guest's.
    ipTables: new GuestIpTables(options.netns ? { namespacePath: options.netns } : {}),
    onCallFailed: (call, status, error) =>
      log.warn({ method: `${call.service}/${call.method}`, stream: call.streamId, status, err: error }, 'call failed'),
  });
  const stop = new AbortController();
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => {
      log.info({ signal }, 'stopping');
      stop.abort();
    });
  }

  if (options.listen) {
    const path = options.listen;
    const server = await listen(path, (socket) => {
      agent.serve(socket);
    });
    log.info({ socket: path, netns: options.netns }, 'VCNET-AGENT-READY serving grpc.AgentService');
    await new Promise<void>((resolve) => stop.signal.addEventListener('abort', () => resolve(), { once: true }));
    server.close();
    rmSync(path, { force: true });
  } else {
    const path = options.port ?? (await waitForAgentPort({ portName: options.portName }));
    const io = await openPortIo(path);
    log.info({ port: path }, 'VCNET-AGENT-READY serving grpc.AgentService');
    await servePortSessions(io, (session) => agent.serve(session).done, { signal: stop.signal });
    await io.close().catch(() => undefined);
  }
  handle.close();
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    log.fatal({ err: error }, 'the agent stopped');
    process.exit(1);
  },
);
