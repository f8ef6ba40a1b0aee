/**
 * Loads the N-API shim (native/vcnet_native.c, built by node-gyp at `npm install`) and gives it types.
 * Raw errors from it carry `code` (errno name), `errno`, `syscall` and `detail`; callers wrap them.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { VcnetError } from '../errors.js';

export interface TunOptions {
  tap?: boolean;
  vnetHdr?: boolean;
  multiQueue?: boolean;
  queues?: number;
  persist?: boolean;
  keepFds?: boolean;
  owner?: number;
  group?: number;
}

export interface WatchHandle {
  readonly __watch: unique symbol;
}

export interface NativeShim {
  openNetlink(nsPath: string | null, protocol: number, groups: number): number;
  addMembership(fd: number, group: number): void;
  netlinkSend(fd: number, data: Uint8Array): number;
  netlinkRecv(fd: number, into: Uint8Array): number;
  watchReadable(fd: number, callback: (status: number) => void): WatchHandle;
  unwatch(handle: WatchHandle): void;
  createTun(nsPath: string | null, name: string, options: TunOptions): { name: string; index: number; fds: number[] };
  setTunPersist(fd: number, on: boolean): void;
  openDevice(path: string, count: number): number[];
  closeFd(fd: number): void;
  setInheritable(fd: number, on: boolean): void;
  /** Sends data and fds (SCM_RIGHTS) in one message on a unix socket. */
  sendWithFds(socketFd: number, data: Uint8Array, fds: number[]): number;
  createNetns(directory: string, name: string): string;
  deleteNetns(path: string): void;
  /** One recvmsg on a non-blocking unix socket with its SCM_RIGHTS fds; null when nothing waits. */
  receiveWithFds(socketFd: number, maxBytes: number): { data: Buffer; fds: number[] } | null;
  /** The tun/tap device an open /dev/net/tun fd is attached to (TUNGETIFF). */
  tunInterfaceName(fd: number): string;
}

let cached: NativeShim | undefined;

function packageRoot(): string {
  // src/native/binding.ts and dist/native/binding.js both sit two levels below the package root.
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i++) {
    if (existsSync(join(dir, 'binding.gyp'))) return dir;
    dir = dirname(dir);
  }
  return dir;
}

export function nativeShim(): NativeShim {
  if (cached) return cached;
  const root = packageRoot();
  const candidates = [
    join(root, 'build', 'Release', 'vcnet_native.node'),
    join(root, 'build', 'Debug', 'vcnet_native.node'),
  ];
  const found = candidates.find((path) => existsSync(path));
  if (!found) {
    throw new VcnetError('VCNET_NATIVE_MISSING', `the native shim is not built (looked for ${candidates[0]})`, {
      value: candidates[0],
      hint: 'run `npm ci` (or `npx node-gyp rebuild`) in the vcnet package; it needs python3, make and a C compiler',
    });
  }
  cached = createRequire(import.meta.url)(found) as NativeShim;
  return cached;
}
