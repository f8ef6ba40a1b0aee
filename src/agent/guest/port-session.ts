/**
 * The agent's virtio-serial port as a series of byte-stream sessions. A port has no connections, but the
 * kernel reports the host side's state through read(): it returns 0 (end of file) while no host program
 * is connected to QEMU's chardev socket, and blocks for data while one is. So a session is "from the
 * first byte until read() says the host went away"; the next host connection gets a fresh ttrpc session
 * (its stream ids start at 1 again).
 *
 * Node cannot poll a character device (libuv treats it as a file), so reads run on the thread pool;
 * while nobody is connected they are retried after a short pause.
 */
import { open } from 'node:fs/promises';
import { Duplex } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';

/** Blocking byte I/O on one open file: the port device, or a fake in tests. */
export interface PortIo {
  /** Bytes read into `buffer`; 0 means the host side is not connected. */
  read(buffer: Buffer): Promise<number>;
  write(data: Uint8Array): Promise<void>;
  close(): Promise<void>;
}

/** Opens the port read-write once: virtio_console lets only one open file use a port at a time. */
export async function openPortIo(path: string): Promise<PortIo> {
  const file = await open(path, 'r+');
  return {
    read: async (buffer) => (await file.read(buffer, 0, buffer.length, null)).bytesRead,
    write: async (data) => {
      let written = 0;
      while (written < data.length) {
        const { bytesWritten } = await file.write(data, written, data.length - written, null);
        written += bytesWritten;
      }
    },
    close: () => file.close(),
  };
}

export class PortSession extends Duplex {
  private readonly buffer = Buffer.allocUnsafe(64 * 1024);
  private sawData = false;

  constructor(
    private readonly io: PortIo,
    private readonly idleMs = 100,
  ) {
    super();
  }

  override _read(): void {
    this.readOnce().catch((error: Error) => this.destroy(error));
  }

  private async readOnce(): Promise<void> {
    for (;;) {
      const count = await this.io.read(this.buffer);
      if (this.destroyed) return;
      if (count > 0) {
        this.sawData = true;
        this.push(Buffer.from(this.buffer.subarray(0, count)));
        return;
      }
      // End of file: the host is not connected. Before any data that means "not yet"; after, "gone".
      if (this.sawData) {
        this.push(null);
        return;
      }
      await sleep(this.idleMs);
      if (this.destroyed) return;
    }
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.io.write(chunk).then(() => callback(), callback);
  }
}

/**
 * Serves sessions one after another until `signal` aborts: `serve` gets each session and resolves when
 * it is over.
 */
export async function servePortSessions(
  io: PortIo,
  serve: (session: PortSession) => Promise<void>,
  options: { idleMs?: number; signal?: AbortSignal } = {},
): Promise<void> {
  while (!options.signal?.aborted) {
    const session = new PortSession(io, options.idleMs);
    const aborted = () => session.destroy();
    options.signal?.addEventListener('abort', aborted, { once: true });
    try {
      await serve(session);
    } finally {
      options.signal?.removeEventListener('abort', aborted);
      session.destroy();
    }
  }
}
