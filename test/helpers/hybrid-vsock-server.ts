/**
 * A stand-in for the hybrid vsock socket of Cloud Hypervisor or Firecracker: reads `CONNECT <port>\n`,
 * and, when the port is the guest's listening one, answers `OK <n>\n` and from then on forwards the
 * stream to a unix socket (vcnet's own agent serving a namespace). Like the VMMs, it closes the stream
 * when nothing listens on the port (or the line is not a CONNECT). A test can make the next
 * connections close unanswered (a guest still booting) or answer something else than OK.
 */
import { createConnection, createServer, type Server, type Socket } from 'node:net';

export interface HybridVsockStandIn {
  /** Each first line received, as sent (without the newline). */
  readonly lines: string[];
  /** The next connections to close without an answer, as the VMM does before the guest listens. */
  closeNext: number;
  /** Sent instead of `OK <n>\n` when set. */
  reply: string | undefined;
  stop(): Promise<void>;
}

export async function serveHybridVsock(
  path: string,
  forwardTo: string,
  options: { port?: number } = {},
): Promise<HybridVsockStandIn> {
  const port = options.port ?? 1024;
  const sockets = new Set<Socket>();
  const standIn: HybridVsockStandIn = {
    lines: [],
    closeNext: 0,
    reply: undefined,
    stop: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  const track = (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
  };
  const server: Server = createServer((client) => {
    track(client);
    let head = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      head = Buffer.concat([head, chunk]);
      const newline = head.indexOf(0x0a);
      if (newline < 0) return;
      client.off('data', onData);
      client.pause();
      const line = head.subarray(0, newline).toString('latin1');
      const rest = head.subarray(newline + 1);
      standIn.lines.push(line);
      if (standIn.closeNext > 0 || line !== `CONNECT ${port}`) {
        standIn.closeNext = Math.max(0, standIn.closeNext - 1);
        client.destroy();
        return;
      }
      if (standIn.reply !== undefined) {
        client.end(standIn.reply);
        return;
      }
      const guest = createConnection({ path: forwardTo }, () => {
        client.write('OK 1073741824\n');
        if (rest.length > 0) guest.write(rest);
        client.pipe(guest);
        guest.pipe(client);
        client.resume();
      });
      track(guest);
      guest.on('close', () => client.destroy());
      client.on('close', () => guest.destroy());
    };
    client.on('data', onData);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, resolve);
  });
  return standIn;
}
