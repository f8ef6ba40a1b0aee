/**
 * A stand-in for Cloud Hypervisor's API socket (no cloud-hypervisor binary runs here): a unix socket
 * server that reads each HTTP request with the fds sent alongside it (SCM_RIGHTS, through the native
 * shim, since Node cannot receive them), validates its method, path and body against Cloud
 * Hypervisor's published OpenAPI description (test/fixtures/hypervisor: the operations vcnet sends and
 * their schemas), and reads back through each fd the name of the tap it is a queue of (TUNGETIFF).
 * The replies are the API's (vmm/src/api/http/mod.rs): 200 with a PciDeviceInfo after add-net, 204
 * after remove-device, 200 with a VmmPingResponse to vmm.ping, 404 for a path it does not serve, 400
 * for a method a path does not take, or an error status with a text body when a test asks for one.
 * Like Cloud Hypervisor, it keeps a removed NIC's id until the guest acks the eject, which no guest
 * here does: an add-net with an id it ever had is refused with 409 Conflict (IdentifierNotUnique), a
 * remove-device of such an id is taken again (204), and one of an id it never had is 404 Not Found
 * (UnknownDeviceId). NICs the VM booted with go into `heldIds` first. `hang()` plays a VMM stuck on a
 * request: Cloud Hypervisor's API thread serves one request at a time, so none is answered until it
 * is released.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ValidateFunction } from 'ajv';
import { nativeShim } from '../../src/native/binding.js';
import type { WatchHandle } from '../../src/native/shim-types.js';
import { cloudHypervisorSchemas, errorsOf, validatorFor } from '../unit/hypervisor/api-schemas.js';

/** Where Cloud Hypervisor's API is served (the description's server URL). */
const API_BASE = '/api/v1';

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
  /**
   * The full path of the request this reply is for. Without it, the reply is for the next request
   * other than vmm.ping, which changes nothing and which gc and watch send before their removal.
   */
  path?: string;
}

/** The operations the description publishes for the paths vcnet sends, by full path, then method. */
const operations = new Map(
  Object.entries(cloudHypervisorSchemas.operations ?? {}).map(([path, methods]) => [`${API_BASE}${path}`, methods]),
);
const validators = new Map<string, ValidateFunction>();
/** The closed validator of the schema `name` (no field the schema does not define), compiled once. */
function validatorOf(name: string): ValidateFunction {
  let validate = validators.get(name);
  if (!validate) {
    validate = validatorFor(cloudHypervisorSchemas, name).closed;
    validators.set(name, validate);
  }
  return validate;
}

/** The stand-in's answer to vmm.ping, as Cloud Hypervisor's VmmPingResponse (checked against it below). */
const PING_REPLY = JSON.stringify({
  build_version: 'v53.0-246-gae44c2971',
  version: '53.0.0',
  pid: process.pid,
  features: ['kvm'],
});
const pingReplyValid = validatorOf('VmmPingResponse');
if (!pingReplyValid(JSON.parse(PING_REPLY))) throw new Error(`PING_REPLY: ${errorsOf(pingReplyValid)}`);

/** A request read while the stand-in hangs: answered, in order, once it is released. */
interface HeldRequest {
  socket: Socket;
  request: { method: string; path: string; headers: Record<string, string>; body: string };
  fds: number[];
}

export class FakeCloudHypervisor {
  readonly requests: ReceivedRequest[] = [];
  /** The next replies to give, in order, each to the next request it is for (`path`); else the API's own reply. */
  readonly replies: FakeReply[] = [];
  private slot = 4;
  /**
   * Every device id the VM has (added, or given at boot by the test), removed or not: the ids Cloud
   * Hypervisor refuses for a new NIC until the guest lets go, and the ones remove-device finds.
   */
  readonly heldIds = new Set<string>();
  private readonly sockets = new Set<Socket>();
  /** Set while the stand-in hangs (`hang()`): the requests read meanwhile, not yet carried out. */
  private held: HeldRequest[] | undefined;

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

  /**
   * From now on, as a VMM stuck on a request (a guest slow to take a device, a wedged VMM): connections
   * are taken and each request is read and recorded (in `requests`, so a test sees it came), but none
   * is carried out or answered. The returned function releases it: the requests held are carried out
   * and answered in the order they came (Cloud Hypervisor carries out a request whose client gave up
   * waiting all the same; only its answer goes nowhere), and later ones as usual.
   */
  hang(): () => void {
    this.held ??= [];
    return () => {
      const held = this.held ?? [];
      this.held = undefined;
      for (const { socket, request, fds } of held) this.answer(socket, request, fds);
    };
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
    // A client that gave up waiting (its timeout) closed its end: the answer to it goes nowhere.
    socket.on('error', () => {});
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
      if (this.held) {
        this.record(request, fds);
        this.held.push({ socket, request, fds });
        return;
      }
      this.record(request, fds);
      this.answer(socket, request, fds);
    });
  }

  /** Records `request` as it arrived, with the schema's verdict and the taps its fds are queues of. */
  private record(request: HeldRequest['request'], fds: number[]): void {
    const { body, schemaErrors } = checked(request);
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
      ...(schemaErrors === undefined ? {} : { schemaErrors }),
      fdTaps,
    });
  }

  /** Carries `request` out (or gives what a test queued in `replies`) and answers it on `socket`. */
  private answer(socket: Socket, request: HeldRequest['request'], fds: number[]): void {
    for (const received of fds) nativeShim().closeFd(received);
    const reply = this.replyTo(request);
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
        (body ? `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}` : '\r\n'),
    );
    // Our watcher is gone: let Node read the client's close, so the socket ends.
    socket.resume();
  }

  private replyTo(request: HeldRequest['request']): FakeReply {
    const position = this.replies.findIndex((reply) =>
      reply.path === undefined ? request.path !== `${API_BASE}/vmm.ping` : reply.path === request.path,
    );
    const queued = position < 0 ? undefined : this.replies.splice(position, 1)[0];
    if (queued && queued.answer === undefined) return queued;
    const carriedOut = this.carryOut(request);
    return queued ? { ...carriedOut, answer: queued.answer } : carriedOut;
  }

  private carryOut(request: HeldRequest['request']): FakeReply {
    const methods = operations.get(request.path);
    if (!methods) return { status: 404, reason: 'Not Found' };
    // Each endpoint's handler refuses a method it does not take with 400 (HttpError::BadRequest).
    if (!methods[request.method]) return { status: 400, reason: 'Bad Request' };
    const { body, schemaErrors } = checked(request);
    if (schemaErrors !== undefined) return { status: 400, reason: 'Bad Request', body: 'Error parsing request body' };
    if (request.path === `${API_BASE}/vmm.ping`) return { status: 200, reason: 'OK', body: PING_REPLY };
    if (request.path === `${API_BASE}/vm.add-net`) {
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

/**
 * `request`'s body (parsed JSON; undefined when empty) and what is wrong with it by the published
 * description: a path or method it does not publish, a body its schema refuses, a body where it
 * takes none. Undefined when nothing is.
 */
function checked(request: HeldRequest['request']): { body: unknown; schemaErrors?: string } {
  let body: unknown;
  try {
    body = request.body === '' ? undefined : JSON.parse(request.body);
  } catch {
    body = request.body;
  }
  const operation = operations.get(request.path)?.[request.method];
  if (!operation) return { body, schemaErrors: `no such API operation ${request.method} ${request.path}` };
  if (operation.requestBody === null)
    return body === undefined ? { body } : { body, schemaErrors: `${request.path} takes no body` };
  const validate = validatorOf(operation.requestBody);
  return validate(body) ? { body } : { body, schemaErrors: errorsOf(validate) };
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
