/**
 * A stand-in for Cloud Hypervisor's API socket (no cloud-hypervisor binary runs here): a unix socket
 * server that reads each HTTP request with the fds sent alongside it (SCM_RIGHTS, through the native
 * shim, since Node cannot receive them), validates the body against Cloud Hypervisor's published
 * OpenAPI schema (test/fixtures/hypervisor), and reads back through each fd the name of the tap it is
 * a queue of (TUNGETIFF). The replies are the API's (vmm/src/api/http/mod.rs): 200 with a
 * PciDeviceInfo after add-net, 204 after remove-device, or an error status with a text body when a
 * test asks for one. Like Cloud Hypervisor, it keeps a removed NIC's id until the guest acks the
 * eject, which no guest here does: an add-net with an id it ever had is refused with 409 Conflict
 * (IdentifierNotUnique), a remove-device of such an id is taken again (204), and one of an id it never
 * had is 404 Not Found (UnknownDeviceId). NICs the VM booted with go into `heldIds` first.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { nativeShim } from '../../src/native/binding.js';
import type { WatchHandle } from '../../src/native/shim-types.js';
import { cloudHypervisorSchemas, errorsOf, validatorFor } from '../unit/hypervisor/api-schemas.js';

export interface ReceivedRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  body: unknown;
  /** The schema's verdict: undefined when valid, else ajv's errors. */
  schemaErrors?: string;
  /** Names of the tun devices the received fds are queues of, in order. */
  fdTaps: string[];
}

export interface FakeReply {
  status: number;
  reason: string;
  body?: string;
  /**
   * Carry the request out as Cloud Hypervisor would, then never answer (`hang`), close the
   * connection without a reply (`close`), or die (`die`: the VMM killed as the request arrives: no
   * reply, every connection closed and the API socket gone, so nothing connects any more): status
   * and reason are then not used.
   */
  answer?: 'hang' | 'close' | 'die';
}

const SCHEMA_BY_PATH: Record<string, string> = {
  '/api/v1/vm.add-net': 'NetConfig',
  '/api/v1/vm.remove-device': 'VmRemoveDevice',
};
const validators = Object.fromEntries(
  Object.entries(SCHEMA_BY_PATH).map(([path, name]) => [path, validatorFor(cloudHypervisorSchemas, name).closed]),
);

export class FakeCloudHypervisor {
  readonly requests: ReceivedRequest[] = [];
  /** The next replies to give, in order; when empty, the API's success reply. */
  readonly replies: FakeReply[] = [];
  private slot = 4;
  /**
   * Every device id the VM has (added, or given at boot by the test), removed or not: the ids Cloud
   * Hypervisor refuses for a new NIC until the guest lets go, and the ones remove-device finds.
   */
  readonly heldIds = new Set<string>();
  private readonly sockets = new Set<Socket>();

  private constructor(
    private readonly server: Server,
    readonly socketPath: string,
    private readonly directory: string,
  ) {}

  static async start(): Promise<FakeCloudHypervisor> {
    const directory = mkdtempSync(join(tmpdir(), 'vcnet-clh-'));
    const socketPath = join(directory, 'api.sock');
    let fake: FakeCloudHypervisor | undefined;
    const server = createServer({ pauseOnConnect: true }, (socket) => fake?.serve(socket));
    fake = new FakeCloudHypervisor(server, socketPath, directory);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(socketPath, resolve);
    });
    return fake;
  }

  /** Set once the stand-in died (a `die` reply): its server is closed, its socket file gone. */
  private died?: Promise<void>;

  async stop(): Promise<void> {
    await this.die();
    rmSync(this.directory, { recursive: true, force: true });
  }

  /** As a killed VMM: every connection dropped unanswered, the API socket closed and unlinked. */
  private die(): Promise<void> {
    this.died ??= new Promise<void>((resolve) => {
      // close() unlinks the unix socket's file: a later connect finds nothing (ENOENT), as after a kill.
      this.server.close(() => resolve());
      for (const socket of this.sockets) socket.destroy();
    });
    return this.died;
  }

  private serve(socket: Socket): void {
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    const shim = nativeShim();
    const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
    if (fd === undefined) {
      socket.destroy();
      return;
    }
    const chunks: Buffer[] = [];
    const fds: number[] = [];
    let watch: WatchHandle | undefined;
    const stop = () => {
      if (watch) shim.unwatch(watch);
      watch = undefined;
    };
    watch = shim.watchReadable(fd, () => {
      for (;;) {
        const received = shim.receiveWithFds(fd, 65536);
        if (received === null) break;
        if (received.data.length === 0 && received.fds.length === 0) {
          stop();
          socket.destroy();
          return;
        }
        chunks.push(received.data);
        fds.push(...received.fds);
      }
      const request = completeRequest(Buffer.concat(chunks));
      if (!request) return;
      stop();
      const reply = this.handle(request, fds);
      for (const received of fds) shim.closeFd(received);
      if (reply.answer === 'hang') return;
      if (reply.answer === 'die') {
        void this.die();
        return;
      }
      if (reply.answer === 'close') {
        socket.end();
        socket.resume();
        return;
      }
      const body = reply.body ?? '';
      socket.end(
        `HTTP/1.1 ${reply.status} ${reply.reason}\r\nServer: Cloud Hypervisor API\r\nConnection: keep-alive\r\n` +
          (body
            ? `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`
            : '\r\n'),
      );
      // Our watcher is gone: let Node read the client's close, so the socket ends.
      socket.resume();
    });
  }

  private handle(
    request: { method: string; path: string; headers: Record<string, string>; body: string },
    fds: number[],
  ): FakeReply {
    let body: unknown;
    try {
      body = JSON.parse(request.body);
    } catch {
      body = request.body;
    }
    const validate = validators[request.path];
    const valid = validate ? validate(body) : false;
    const fdTaps = fds.map((fd) => {
      try {
        return nativeShim().tunInterfaceName(fd);
      } catch (error) {
        return `(not a tap: ${(error as Error).message})`;
      }
    });
    this.requests.push({
      method: request.method,
      path: request.path,
      headers: request.headers,
      body,
      ...(valid ? {} : { schemaErrors: validate ? errorsOf(validate) : `no such API path ${request.path}` }),
      fdTaps,
    });
    const queued = this.replies.shift();
    if (queued && queued.answer === undefined) return queued;
    const carriedOut = this.carryOut(request.method, request.path, body, validate !== undefined, valid);
    return queued ? { ...carriedOut, answer: queued.answer } : carriedOut;
  }

  private carryOut(method: string, path: string, body: unknown, known: boolean, valid: boolean): FakeReply {
    if (method !== 'PUT' || !known) return { status: 404, reason: 'Not Found' };
    if (!valid) return { status: 400, reason: 'Bad Request', body: 'Error parsing request body' };
    if (path === '/api/v1/vm.add-net') {
      const id = (body as { id?: string }).id ?? `_net${this.slot}`;
      if (this.heldIds.has(id))
        return {
          status: 409,
          reason: 'Conflict',
          body: JSON.stringify([
            'Error from API',
            'The network device could not be added to the VM',
            'Failed to validate config',
            `Identifier ${id} is not unique`,
          ]),
        };
      this.heldIds.add(id);
      const bdf = `0000:00:${(this.slot++).toString(16).padStart(2, '0')}.0`;
      return { status: 200, reason: 'OK', body: JSON.stringify({ id, bdf }) };
    }
    const id = (body as { id: string }).id;
    if (!this.heldIds.has(id))
      return {
        status: 404,
        reason: 'Not Found',
        body: JSON.stringify([
          'Error from API',
          'The device could not be removed from the VM',
          'Error from device manager',
          `Failed to find device corresponding to the given identifier: ${id}`,
        ]),
      };
    return { status: 204, reason: 'No Content' };
  }
}

/** The request once its head and Content-Length body have all arrived. */
function completeRequest(
  data: Buffer,
): { method: string; path: string; headers: Record<string, string>; body: string } | undefined {
  const headEnd = data.indexOf('\r\n\r\n');
  if (headEnd < 0) return undefined;
  const [requestLine = '', ...lines] = data.subarray(0, headEnd).toString('latin1').split('\r\n');
  const [method = '', path = ''] = requestLine.split(' ');
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  const length = Number(headers['content-length'] ?? 0);
  if (data.length < headEnd + 4 + length) return undefined;
  return { method, path, headers, body: data.subarray(headEnd + 4, headEnd + 4 + length).toString('utf8') };
}
