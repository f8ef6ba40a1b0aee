/**
 * Cloud Hypervisor's HTTP API on its unix socket, for NIC hot-plug (`PUT /api/v1/vm.add-net`) and
 * removal (`PUT /api/v1/vm.remove-device`), and `GET /api/v1/vmm.ping`, which changes nothing: an
 * answer says the VMM serves requests now (its API thread takes one request at a time and waits for
 * the VMM's answer before it reads the next, so a VMM busy or hung on another request answers none).
 *
 * The tap queue fds must travel as SCM_RIGHTS ancillary data on the request itself (the API ignores
 * fd numbers in the body). Node's http client writes through libuv, which has no way to attach
 * ancillary data, so the request is written here: HTTP/1.1 head and body in one sendmsg carrying the
 * fds through the native shim, on a net.Socket's own descriptor (as the QMP client passes fds). The
 * reply is read back through the same socket and parsed below: Cloud Hypervisor's micro_http server
 * answers with a status line, headers and a Content-Length body, one request per connection here.
 * Kata's clh.go sends its add-net requests the same way (raw HTTP text plus fds).
 */
import { connect, type Socket } from 'node:net';
import { onAbort } from '../abort-listeners.js';
import { VcnetError } from '../errors.js';
import { nativeDevices, socketFileDescriptor } from '../native/devices.js';
import {
  type CloudHypervisorApiRequest,
  type CloudHypervisorNetOptions,
  cloudHypervisorAddNetRequest,
  cloudHypervisorRemoveDeviceRequest,
} from './cloud-hypervisor.js';
import type { HotplugTarget, NetworkDevice as VmNetworkDevice } from './device.js';

/** What a status of Cloud Hypervisor's API means (vmm/src/api/http/mod.rs api_error_status_code). */
function apiErrorHint(status: number): string {
  if (status === 409) {
    // IdentifierNotUnique: the id is in the VM's config, which keeps a removed NIC until the guest ejects it.
    return 'the VM already has a device with that id: one given at boot outside vcnet, or a removed NIC the guest has not released yet; check vm.info, or wait for the guest and try again';
  }
  return 'the text after the status is Cloud Hypervisor’s own: check the VM is booted and the device id is right';
}

/** Cloud Hypervisor answered with an error status: its own text is kept in the message. */
export class CloudHypervisorApiError extends VcnetError {
  static override readonly errorName: string = 'CloudHypervisorApiError';
  readonly status: number;
  constructor(request: string, status: number, reason: string, text: string) {
    super(
      'VCNET_HYPERVISOR_REFUSED',
      `Cloud Hypervisor refused ${request}: ${status} ${reason}${text ? `: ${text.trim()}` : ''}`,
      { value: { request, status, text }, hint: apiErrorHint(status) },
    );
    this.status = status;
  }
}

/**
 * How an exchange with the API socket failed: nothing listens there (`unreachable`), the socket
 * refused us otherwise (`refused`, e.g. EACCES), something answered but not as Cloud Hypervisor's
 * API (`answered`: the reply ended early, was not HTTP or too long), no answer in time (`timeout`).
 */
export type CloudHypervisorFailure = 'unreachable' | 'refused' | 'answered' | 'timeout';

const CONNECTION_HINTS: Record<CloudHypervisorFailure, string> = {
  unreachable: 'start cloud-hypervisor with --api-socket PATH and pass that path (vcnet attach --api-socket)',
  refused: 'vcnet could not use the socket: check its permissions (run as root) and that the path is a socket',
  answered:
    "something listens there but did not answer as Cloud Hypervisor's API: check that the path is the VM's --api-socket (not its vsock, serial or console socket) and that cloud-hypervisor did not crash mid-reply",
  timeout:
    'Cloud Hypervisor took the request but did not answer in time: it may be hung or busy (a guest slow to take the device); check the VM, then try again',
};

/** The API socket could not be reached, did not answer in time, or answered something that is not HTTP. */
export class CloudHypervisorConnectionError extends VcnetError {
  static override readonly errorName: string = 'CloudHypervisorConnectionError';
  readonly failure: CloudHypervisorFailure;
  constructor(
    socketPath: string,
    detail: string,
    failure: CloudHypervisorFailure,
    cause?: unknown,
    /** In place of the failure's own hint, when the caller knows more (a VM gone part-way). */
    hint?: string,
  ) {
    super('VCNET_HYPERVISOR_UNREACHABLE', `Cloud Hypervisor API ${socketPath}: ${detail}`, {
      value: socketPath,
      hint: hint ?? CONNECTION_HINTS[failure],
      cause,
    });
    this.failure = failure;
  }

  /** Whether Cloud Hypervisor may have received (and carried out) the request. */
  get requestMayHaveArrived(): boolean {
    return this.failure === 'answered' || this.failure === 'timeout';
  }
}

function failureOfErrno(error: NodeJS.ErrnoException): CloudHypervisorFailure {
  if (error.code === 'ENOENT' || error.code === 'ECONNREFUSED') return 'unreachable';
  // The peer went away mid-exchange: it took the connection, so it may have read the request.
  if (error.code === 'ECONNRESET' || error.code === 'EPIPE') return 'answered';
  return 'refused';
}

export interface CloudHypervisorReply {
  status: number;
  reason: string;
  headers: Record<string, string>;
  body: string;
}

/** Cloud Hypervisor's PciDeviceInfo reply to vm.add-net after boot. */
export interface CloudHypervisorPciDeviceInfo {
  id: string;
  /** segment:bus:device.function, e.g. "0000:00:05.0". */
  bdf: string;
}

/** Cloud Hypervisor's VmmPingResponse: its version (required), and build, pid and features when it tells them. */
export interface CloudHypervisorPing {
  version: string;
  build_version?: string;
  pid?: number;
  features?: string[];
}

/** One request's own bounds, in place of the client's: its deadline, and a signal that ends it. */
export interface CloudHypervisorRequestOptions {
  timeoutMs?: number;
  /** Aborting ends the request at once (the connection closed); it rejects with the signal's reason. */
  signal?: AbortSignal;
}

const MAX_REPLY_BYTES = 1 << 20;

/** How long one API request may take by default, connect to reply (a hot-plug waits for the VMM). */
export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;

/** The PCI path the agent takes ("05") for a device on bus 0 of segment 0, from its BDF. */
export function pciPathOfBdf(bdf: string): string | undefined {
  // Only devices on bus 0 of segment 0 have a one-level path.
  const match = /^0000:00:([0-9a-f]{2})\.[0-7]$/i.exec(bdf);
  return match?.[1]?.toLowerCase();
}

/** Parses one HTTP/1.x reply; undefined while it is incomplete. */
function parseHttpReply(data: Buffer, ended: boolean): CloudHypervisorReply | undefined {
  const headEnd = data.indexOf('\r\n\r\n');
  if (headEnd < 0) return undefined;
  const [statusLine = '', ...headerLines] = data.subarray(0, headEnd).toString('latin1').split('\r\n');
  const status = /^HTTP\/1\.[01] (\d{3})(?: (.*))?$/.exec(statusLine);
  if (!status) throw new Error(`not an HTTP reply: ${JSON.stringify(statusLine.slice(0, 80))}`);
  const headers: Record<string, string> = {};
  for (const line of headerLines) {
    const colon = line.indexOf(':');
    if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  const bodyStart = headEnd + 4;
  const length = headers['content-length'];
  let body: Buffer;
  if (length !== undefined) {
    const bytes = Number(length);
    if (!Number.isSafeInteger(bytes) || bytes < 0) throw new Error(`bad Content-Length ${JSON.stringify(length)}`);
    if (data.length < bodyStart + bytes) return undefined;
    body = data.subarray(bodyStart, bodyStart + bytes);
  } else {
    const code = Number(status[1]);
    // 204 and 1xx have no body; otherwise the body runs to the end of the connection.
    if (code !== 204 && code >= 200 && !ended) return undefined;
    body = data.subarray(bodyStart);
  }
  return { status: Number(status[1]), reason: status[2] ?? '', headers, body: body.toString('utf8') };
}

export class CloudHypervisorClient {
  constructor(
    readonly socketPath: string,
    private readonly options: { timeoutMs?: number } = {},
  ) {}

  /** Sends one API request (its fds as SCM_RIGHTS) and returns the reply; error statuses throw. */
  async send<Body>(
    request: CloudHypervisorApiRequest<Body>,
    options: CloudHypervisorRequestOptions = {},
  ): Promise<CloudHypervisorReply> {
    const body = Buffer.from(JSON.stringify(request.body));
    const head =
      `${request.method} ${request.path} HTTP/1.1\r\n` +
      'Host: localhost\r\nAccept: application/json\r\nContent-Type: application/json\r\n' +
      `Content-Length: ${body.length}\r\n\r\n`;
    return this.sendMessage(Buffer.concat([Buffer.from(head, 'latin1'), body]), request, options);
  }

  /**
   * `GET /api/v1/vmm.ping`, which changes nothing: answered only once the VMM is done with the
   * requests before it. Error statuses throw, as for every request.
   */
  async ping(options: CloudHypervisorRequestOptions = {}): Promise<CloudHypervisorPing> {
    const request = { method: 'GET', path: '/api/v1/vmm.ping', fds: [] };
    const head = `GET ${request.path} HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n\r\n`;
    const reply = await this.sendMessage(Buffer.from(head, 'latin1'), request, options);
    try {
      return JSON.parse(reply.body) as CloudHypervisorPing;
    } catch (error) {
      throw new CloudHypervisorConnectionError(
        this.socketPath,
        `GET ${request.path}: the reply is not JSON: ${JSON.stringify(reply.body.slice(0, 80))}`,
        'answered',
        error,
      );
    }
  }

  private async sendMessage(
    message: Buffer,
    request: { method: string; path: string; fds: number[] },
    options: CloudHypervisorRequestOptions,
  ): Promise<CloudHypervisorReply> {
    const label = `${request.method} ${request.path}`;
    const reply = await this.exchange(message, request.fds, label, options);
    if (reply.status !== 200 && reply.status !== 204) {
      throw new CloudHypervisorApiError(label, reply.status, reply.reason, reply.body);
    }
    return reply;
  }

  /** vm.add-net: the NIC with its tap fds; the PCI path when the VM is booted (Cloud Hypervisor answers 200 then). */
  async addNet(
    device: VmNetworkDevice,
    options: CloudHypervisorNetOptions = {},
  ): Promise<{ pciPath?: string; info?: CloudHypervisorPciDeviceInfo }> {
    const reply = await this.send(cloudHypervisorAddNetRequest(device, options));
    if (reply.status !== 200 || !reply.body) return {};
    let info: CloudHypervisorPciDeviceInfo;
    try {
      info = JSON.parse(reply.body) as CloudHypervisorPciDeviceInfo;
    } catch {
      return {};
    }
    const pciPath = typeof info.bdf === 'string' ? pciPathOfBdf(info.bdf) : undefined;
    return { ...(pciPath ? { pciPath } : {}), info };
  }

  /** vm.remove-device by the id the NIC was added with. */
  async removeDevice(id: string): Promise<void> {
    await this.send(cloudHypervisorRemoveDeviceRequest(id));
  }

  private exchange(
    message: Buffer,
    fds: number[],
    label: string,
    options: CloudHypervisorRequestOptions,
  ): Promise<CloudHypervisorReply> {
    const timeoutMs = options.timeoutMs ?? this.options.timeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    const { signal } = options;
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise((resolve, reject) => {
      const socket: Socket = connect(this.socketPath);
      const chunks: Buffer[] = [];
      let received = 0;
      let settled = false;
      let stopWaiting: (() => void) | undefined;
      const finish = (error: unknown, reply?: CloudHypervisorReply) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        stopWaiting?.();
        socket.destroy();
        if (error !== undefined) reject(error);
        else resolve(reply as CloudHypervisorReply);
      };
      const timer = setTimeout(
        () =>
          finish(
            new CloudHypervisorConnectionError(this.socketPath, `${label}: no reply within ${timeoutMs} ms`, 'timeout'),
          ),
        timeoutMs,
      );
      // One listener on a daemon's long-lived signal for all its waits (abort-listeners.ts).
      if (signal) stopWaiting = onAbort(signal, () => finish(signal.reason));
      const tryParse = (ended: boolean) => {
        try {
          const reply = parseHttpReply(Buffer.concat(chunks), ended);
          if (reply) finish(undefined, reply);
          else if (ended)
            finish(new CloudHypervisorConnectionError(this.socketPath, `${label}: the reply ended early`, 'answered'));
        } catch (error) {
          finish(
            new CloudHypervisorConnectionError(
              this.socketPath,
              `${label}: ${(error as Error).message}`,
              'answered',
              error,
            ),
          );
        }
      };
      socket.on('error', (error: NodeJS.ErrnoException) =>
        finish(
          new CloudHypervisorConnectionError(
            this.socketPath,
            `${label}: ${error.message}`,
            failureOfErrno(error),
            error,
          ),
        ),
      );
      socket.on('data', (chunk: Buffer) => {
        received += chunk.length;
        if (received > MAX_REPLY_BYTES) {
          finish(
            new CloudHypervisorConnectionError(
              this.socketPath,
              `${label}: reply over ${MAX_REPLY_BYTES} bytes`,
              'answered',
            ),
          );
          return;
        }
        chunks.push(chunk);
        tryParse(false);
      });
      socket.on('end', () => tryParse(true));
      socket.on('connect', () => {
        if (fds.length === 0) {
          socket.write(message);
          return;
        }
        try {
          const fd = socketFileDescriptor(socket);
          if (fd === undefined || fd < 0) throw new Error('the API socket has no file descriptor');
          // The fds ride on the first bytes; a short send (a full socket buffer) continues through Node.
          const sent = nativeDevices.sendWithFds(fd, message, fds);
          if (sent < message.length) socket.write(message.subarray(sent));
        } catch (error) {
          finish(
            new CloudHypervisorConnectionError(
              this.socketPath,
              `${label}: could not send the fds: ${(error as Error).message}`,
              'refused',
              error,
            ),
          );
        }
      });
    });
  }
}

/** Hot-plug into a running Cloud Hypervisor VM through its API (the add-iface, del-iface and watch target). */
export class CloudHypervisorHotplugTarget implements HotplugTarget {
  constructor(
    readonly client: CloudHypervisorClient,
    private readonly netOptions: CloudHypervisorNetOptions = {},
  ) {}

  async hotplugNetworkDevice(device: VmNetworkDevice): Promise<{ pciPath?: string }> {
    // Cloud Hypervisor runs virtio-net itself: vhost-net fds mean nothing to it (Kata forces them off).
    const { vhostFds: _unused, ...forCloudHypervisor } = device;
    try {
      const { pciPath } = await this.client.addNet(forCloudHypervisor, this.netOptions);
      return pciPath ? { pciPath } : {};
    } catch (error) {
      // No answer, or a broken one: Cloud Hypervisor may have added the NIC all the same, and the
      // caller is about to remove its tap. Take the NIC out too (best effort: 404 when it was not added).
      if (error instanceof CloudHypervisorConnectionError && error.requestMayHaveArrived)
        await this.client.removeDevice(device.id).catch(() => undefined);
      throw error;
    }
  }

  async unplugNetworkDevice(id: string): Promise<void> {
    try {
      await this.client.removeDevice(id);
    } catch (error) {
      // 404: Cloud Hypervisor has no device by that id, so the NIC is not in the VM: the contract's
      // "also when it was not there" (a del-iface retried after the VM let go, a VM rebooted without it).
      if (error instanceof CloudHypervisorApiError && error.status === 404) return;
      throw error;
    }
  }
}
