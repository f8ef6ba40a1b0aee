/**
 * Loads the N-API shim (native/vcnet_native.c) and gives it types. node-gyp-build picks it: a local
 * build (build/Release, made by `npm ci` in a checkout) first, then the prebuild the package ships
 * (prebuilds/<platform>-<arch>/, made by prebuildify at `npm pack`); `VCNET_PREBUILD=<dir>` makes it
 * look in <dir> instead (the installed package directory, for an application that bundled vcnet). It is imported statically so that esbuild bundles it into the guest agent.
 * Raw errors from the shim carry `code` (errno name), `errno`, `syscall` and `detail`; callers wrap them.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { arch, platform } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import loadAddon from 'node-gyp-build';
import { VcnetError } from '../errors.js';
import type { SyscallKind, SyscallTimeEntry, TunOptions, WatchHandle } from './shim-types.js';

export interface NativeShim {
  openNetlink(nsPath: string | null, protocol: number, groups: number): number;
  /** The port id the kernel gave the netlink socket at bind() (getsockname's nl_pid). */
  netlinkPortId(fd: number): number;
  addMembership(fd: number, group: number): void;
  netlinkSend(fd: number, data: Uint8Array): number;
  netlinkRecv(fd: number, into: Uint8Array): number;
  /**
   * The same sendto() on a thread of libuv's pool; `done` runs on the event loop. Optional: an addon
   * built before it existed lacks it, and callers send on the main thread instead.
   */
  netlinkSendInBackground?(
    fd: number,
    data: Uint8Array,
    done: (error: NodeJS.ErrnoException | null, sent: number | null) => void,
  ): void;
  watchReadable(fd: number, callback: (status: number) => void): WatchHandle;
  unwatch(handle: WatchHandle): void;
  createTun(nsPath: string | null, name: string, options: TunOptions): { name: string; index: number; fds: number[] };
  setTunPersist(fd: number, on: boolean): void;
  openDevice(path: string, count: number): number[];
  /**
   * Writes `text` to `path` opened inside the network namespace of `nsFd` (-1: this one), as a
   * sysctl under /proc/sys/net must be. Optional: an addon built before it existed lacks it.
   */
  writeFileInNetns?(nsFd: number, path: string, text: string): void;
  /** The start (up to 255 bytes) of `path` opened inside the network namespace of `nsFd` (-1: this one), as writeFileInNetns opens it. */
  readFileInNetns(nsFd: number, path: string): string;
  closeFd(fd: number): void;
  /** The network namespace of a socket (SIOCGSKNS): a new fd, closed by the caller. */
  socketNamespace(fd: number): number;
  setInheritable(fd: number, on: boolean): void;
  /** Sends data and fds (SCM_RIGHTS) in one message on a unix socket. */
  sendWithFds(socketFd: number, data: Uint8Array, fds: number[]): number;
  createNetns(directory: string, name: string): string;
  deleteNetns(path: string): void;
  /**
   * Time inside the attach syscalls since the last call, then reset; the first call turns the
   * accounting on. `cpu` makes the next interval count CPU time too (it costs a syscall per read).
   */
  syscallTime(cpu?: boolean): Record<SyscallKind, SyscallTimeEntry>;
  /** The calling thread's CPU time, ns. */
  threadCpuNs(): number;
  /** flock(fd, LOCK_EX or LOCK_SH | LOCK_NB): false when another holder has it. */
  lockFile(fd: number, exclusive: boolean): boolean;
  /**
   * The cookie (SO_NETNS_COOKIE) of the network namespace a socket was made in, as a decimal string:
   * never reused by another namespace.
   */
  socketNamespaceCookie(fd: number): string;
  /** Enters the network namespace of an nsfs fd on this thread and comes back at once (setns there and back). */
  enterNetnsAndBack(fd: number): void;
  /** One recvmsg on a non-blocking unix socket with its SCM_RIGHTS fds; null when nothing waits. */
  receiveWithFds(socketFd: number, maxBytes: number): { data: Buffer; fds: number[] } | null;
  /** The tun/tap device an open /dev/net/tun fd is attached to (TUNGETIFF). */
  tunInterfaceName(fd: number): string;
  /** The network namespace of the device an open /dev/net/tun fd is attached to (TUNGETDEVNETNS, Linux 5.2): a new fd, closed by the caller. */
  tunNamespace(fd: number): number;
  /** A pidfd of a process (pidfd_open, Linux 5.3): closed by the caller. */
  pidfdOpen(pid: number): number;
  /** A copy in this process of the fd `fd` of the process behind `pidfd` (pidfd_getfd, Linux 5.6; ptrace access): closed by the caller. */
  pidfdGetfd(pidfd: number, fd: number): number;
}

/** The shim's interface this JS expects: native/vcnet_native.c's VCNET_NATIVE_INTERFACE_VERSION (bump both). */
export const NATIVE_INTERFACE_VERSION = 5;

let cached: NativeShim | undefined;

// The shim is required by the path node-gyp-build resolves, through a require of this module's own:
// an application's bundler may leave node-gyp-build without a working `require`.
const requireNative = createRequire(import.meta.url);

/** How many directories above this module the package root (with binding.gyp) may be. */
const ROOT_SEARCH_DEPTH = 4;

/**
 * The vcnet package root: the first directory from `moduleDirectory` up with a binding.gyp.
 * src/native/binding.ts and dist/native/binding.js sit two levels below it; the test guest
 * (scripts/guest-image) marks its root with an empty binding.gyp. Undefined when there is none near
 * (vcnet bundled into an application: the module is then the application's file).
 */
export function packageRoot(moduleDirectory: string): string | undefined {
  let directory = moduleDirectory;
  for (let i = 0; i <= ROOT_SEARCH_DEPTH; i++) {
    if (existsSync(join(directory, 'binding.gyp'))) return directory;
    const parent = dirname(directory);
    if (parent === directory) break;
    directory = parent;
  }
  return undefined;
}

/** What a prebuild has to match here, named the way prebuildify tags its files. */
function nativeTarget(): string {
  const header = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header;
  const libc = header?.glibcVersionRuntime ? `glibc ${header.glibcVersionRuntime}` : 'not glibc (musl?)';
  return `platform ${platform()}, arch ${arch()}, libc ${libc}, node ${process.versions.node} (ABI ${process.versions.modules}, N-API ${process.versions.napi})`;
}

const BUNDLING_HINT =
  'an application that bundles vcnet must leave it outside the bundle (esbuild `--external:vcnet`, ' +
  "webpack `externals: { vcnet: 'module vcnet' }`, rollup `external: ['vcnet']`) and install the vcnet " +
  'package next to it, or set VCNET_PREBUILD to the installed vcnet package directory (the one holding ' +
  'prebuilds/ or build/Release/)';

/**
 * Loads the shim for a module in `moduleDirectory` (this one's, for nativeShim): from VCNET_PREBUILD
 * when `env` sets it, else from the package root above. Each failure says where it looked and why.
 */
export function loadNativeShim(moduleDirectory: string, env: NodeJS.ProcessEnv = process.env): NativeShim {
  const override = env.VCNET_PREBUILD || undefined;
  const root = override ?? packageRoot(moduleDirectory);
  if (root === undefined) {
    throw new VcnetError(
      'VCNET_NATIVE_MISSING',
      `vcnet's native shim cannot be found: vcnet's code runs from ${moduleDirectory}, which is not inside ` +
        `the vcnet package (no binding.gyp there or in the ${ROOT_SEARCH_DEPTH} directories above it), as ` +
        'when vcnet is bundled into an application, and VCNET_PREBUILD is not set',
      { value: moduleDirectory, hint: BUNDLING_HINT },
    );
  }
  const where = override === undefined ? root : `VCNET_PREBUILD=${override}`;
  let file: string;
  try {
    // Given the directory itself, node-gyp-build needs no package.json there to honour the variable.
    file = loadAddon.resolve(root);
  } catch (error) {
    throw new VcnetError(
      'VCNET_NATIVE_MISSING',
      `no native shim fits this machine (${nativeTarget()}) in ${where}: neither ${join(root, 'build', 'Release')} ` +
        `nor ${join(root, 'prebuilds', `${platform()}-${arch()}`)} holds one built for it`,
      {
        value: root,
        hint:
          (override === undefined
            ? ''
            : `VCNET_PREBUILD must name a directory holding prebuilds/${platform()}-${arch()}/ or build/Release/ (the installed vcnet package directory); `) +
          'vcnet ships a prebuild for linux-x64 with glibc 2.33 or later; elsewhere build it from source with ' +
          '`npm rebuild vcnet` (in a checkout: `npm run build:native`), which needs python3, make and a C compiler',
        cause: error,
      },
    );
  }
  let loaded: NativeShim & { interfaceVersion?: number };
  try {
    loaded = requireNative(file) as NativeShim & { interfaceVersion?: number };
  } catch (error) {
    throw new VcnetError(
      'VCNET_NATIVE_MISSING',
      `the native shim ${file} (found in ${where}) does not load on this machine (${nativeTarget()}): ${String(error)}`,
      {
        value: file,
        hint:
          'the prebuild needs glibc 2.33 or later (a "GLIBC_2.33 not found" above says so); ' +
          'build the shim from source with `npm rebuild vcnet` (in a checkout: `npm run build:native`), ' +
          'which needs python3, make and a C compiler',
        cause: error,
      },
    );
  }
  if (loaded.interfaceVersion !== NATIVE_INTERFACE_VERSION) {
    const found = loaded.interfaceVersion;
    throw new VcnetError(
      'VCNET_NATIVE_MISSING',
      `the native shim ${file} (found in ${where}) is from another build than this JS: it has interface version ${found ?? 'none (older than versioned shims)'}, this JS needs ${NATIVE_INTERFACE_VERSION}`,
      {
        value: found ?? null,
        hint: 'rebuild the shim (in a checkout: `npm run build:native`; as a dependency: `npm rebuild vcnet` or reinstall vcnet); on a node where pods come and go, build elsewhere and move build/ and dist/ into place together',
      },
    );
  }
  return loaded;
}

export function nativeShim(): NativeShim {
  cached ??= loadNativeShim(dirname(fileURLToPath(import.meta.url)));
  return cached;
}
