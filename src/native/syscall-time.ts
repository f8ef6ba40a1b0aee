/**
 * The native shim's accounting of attach syscalls (tun ioctls, netlink send/recv, namespace
 * switches), read by the benchmark to report the kernel floor beside the attach time.
 */
import { nativeShim } from './binding.js';

export const nativeSyscallTime = {
  /** Returns the time spent per syscall kind since the last call, and resets it (turns it on the first time). */
  read: (cpu?: boolean) => nativeShim().syscallTime(cpu),
  /** This thread's CPU time in nanoseconds. */
  threadCpuNs: (): number => nativeShim().threadCpuNs(),
} as const;
