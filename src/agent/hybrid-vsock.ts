/**
 * Hybrid vsock: how the host reaches a guest's vsock port through Cloud Hypervisor or Firecracker.
 * Both VMMs expose the guest's vsock device as one unix socket on the host; a client connects to it,
 * writes `CONNECT <port>\n`, and the VMM answers `OK <host port>\n` once the guest accepted the
 * connection on that port (Kata's agent listens on port 1024). From then on the stream is the guest's.
 * When nothing listens on the port yet (the guest still boots) the VMM closes the stream instead, so a
 * close before the answer is retried until the deadline, as Kata's HybridVSockDialer does.
 *
 * The agent address names which: a plain path is a socket that carries the agent's stream itself
 * (QEMU's virtio-serial chardev); `hvsock://PATH:PORT` is a hybrid vsock socket and the guest port.
 */
import type { Socket } from 'node:net';
import { InvalidInputError } from '../errors.js';
import { connectUnixSocket, type UnixConnectOptions } from './unix-socket-connect.js';

/** The vsock port Kata's agent listens on. */
const KATA_AGENT_VSOCK_PORT = 1024;
const SCHEME = 'hvsock://';
/** A longer line than any `OK <u32>` answer: the peer is not a hybrid vsock socket. */
const MAX_REPLY_BYTES = 64;

export type AgentAddress = { kind: 'unix'; path: string } | { kind: 'hvsock'; path: string; port: number };

/**
 * Reads an agent address: a socket path, or `hvsock://PATH:PORT` (PORT defaults to 1024 when left
 * out). Refuses a malformed hvsock address, naming `field`.
 */
export function parseAgentAddress(address: string, field = 'agentSocket'): AgentAddress {
  if (!address.startsWith(SCHEME)) {
    if (address === '') throw new InvalidInputError(field, address, 'a socket path or hvsock://PATH:PORT');
    return { kind: 'unix', path: address };
  }
  const rest = address.slice(SCHEME.length);
  const colon = rest.lastIndexOf(':');
  const path = colon < 0 ? rest : rest.slice(0, colon);
  const portText = colon < 0 ? undefined : rest.slice(colon + 1);
  const port = portText === undefined ? KATA_AGENT_VSOCK_PORT : Number(portText);
  if (
    path === '' ||
    (portText !== undefined && !/^[0-9]+$/.test(portText)) ||
    !Number.isInteger(port) ||
    port < 1 ||
    port > 0xffff_ffff
  ) {
    throw new InvalidInputError(
      field,
      address,
      `hvsock://PATH:PORT with the VMM's vsock socket PATH and the agent's vsock PORT (1 to 4294967295; Kata's agent: ${KATA_AGENT_VSOCK_PORT})`,
    );
  }
  return { kind: 'hvsock', path, port };
}

/**
 * How to reach a guest agent through a Firecracker or Cloud Hypervisor hybrid vsock (a Unix socket plus a
 * `CONNECT <port>` handshake): the Unix socket's connect options and the handshake's bound.
 */
export interface HybridVsockOptions extends UnixConnectOptions {
  /** Bound of one handshake (the answer to CONNECT); default 10 s, as Kata's. */
  handshakeTimeoutMs?: number;
}

/** The handshake's outcome: the VMM closed the stream (no listener yet), or a fatal reason. */
class HandshakeFailure extends Error {
  constructor(
    message: string,
    readonly retryable: boolean,
    /** No answer in the time given (which the deadline may have cut short). */
    readonly timedOut = false,
  ) {
    super(`hybrid vsock handshake: ${message}`);
  }
}

/**
 * Writes CONNECT and reads the answer line; bytes after it are the guest's and stay in the socket,
 * which is left paused (a 'data' listener added later does not resume it: call resume()).
 */
function handshake(socket: Socket, port: number, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let received = Buffer.alloc(0);
    const finish = (failure?: HandshakeFailure) => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('close', onEnd);
      socket.off('error', onError);
      if (failure) {
        socket.on('error', () => {});
        socket.destroy();
        reject(failure);
      } else {
        socket.pause();
        resolve();
      }
    };
    const shown = () => JSON.stringify(received.toString('latin1'));
    const onData = (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      const newline = received.indexOf(0x0a);
      if (newline < 0) {
        if (received.length > MAX_REPLY_BYTES)
          finish(new HandshakeFailure(`expected "OK <port>\\n" after CONNECT ${port}, received ${shown()}`, false));
        return;
      }
      const line = received.subarray(0, newline).toString('latin1').replace(/\r$/, '');
      const rest = received.subarray(newline + 1);
      if (!/^OK(\s|$)/.test(line)) {
        finish(
          new HandshakeFailure(`expected "OK <port>" after CONNECT ${port}, received ${JSON.stringify(line)}`, false),
        );
        return;
      }
      finish();
      // Paused now, with our listener gone: the guest's first bytes wait for the ttrpc client.
      if (rest.length > 0) socket.unshift(rest);
    };
    const onEnd = () =>
      finish(
        new HandshakeFailure(
          received.length === 0
            ? `the VMM closed the stream after CONNECT ${port} (nothing listens on vsock port ${port} yet)`
            : `the VMM closed the stream after CONNECT ${port} having sent ${shown()}`,
          received.length === 0,
        ),
      );
    const onError = (error: Error) => finish(new HandshakeFailure(error.message, true));
    const timer = setTimeout(
      () => finish(new HandshakeFailure(`no answer to CONNECT ${port} in ${timeoutMs} ms`, false, true)),
      timeoutMs,
    );
    socket.on('data', onData);
    socket.once('end', onEnd);
    socket.once('close', onEnd);
    socket.once('error', onError);
    socket.write(`CONNECT ${port}\n`);
  });
}

const HVSOCK_HINT =
  'check that the VM runs with a vsock device on that socket (Cloud Hypervisor: --vsock cid=3,socket=PATH; Firecracker: PUT /vsock uds_path) and that its agent listens on the vsock port';

/**
 * Connects to `port` of the guest behind the hybrid vsock socket at `path`: retried while the socket
 * is missing or refusing, or while the VMM closes the stream (no listener on the port yet), until
 * the deadline; an answer other than OK, or none in time, fails at once.
 */
export function connectHybridVsock(path: string, port: number, options: HybridVsockOptions = {}): Promise<Socket> {
  const handshakeTimeoutMs = options.handshakeTimeoutMs ?? 10_000;
  return connectUnixSocket(path, options, {
    run: (socket, remainingMs) => handshake(socket, port, Math.min(handshakeTimeoutMs, remainingMs)),
    address: `${SCHEME}${path}:${port}`,
    hint: HVSOCK_HINT,
  });
}
