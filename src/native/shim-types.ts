/**
 * The types the native shim's functions take and return (binding.ts declares the functions): here,
 * apart from the loader, so that a layer outside src/native/ can name them without importing it.
 */
export interface TunOptions {
  tap?: boolean;
  vnetHdr?: boolean;
  multiQueue?: boolean;
  queues?: number;
  persist?: boolean;
  keepFds?: boolean;
  owner?: number;
  group?: number;
  /** An fd of the namespace to make the tap in (instead of the path argument). */
  namespaceFd?: number;
  /** A socket bound in that namespace: the tap's index is looked up on it (SIOCGIFINDEX). */
  indexSocket?: number;
  /**
   * The ifindex to make the tap at (TUNSETIFINDEX), so that it can be recorded before the tap exists;
   * the kernel picks one when absent. Taken: EBUSY, as for a taken name.
   */
  ifindex?: number;
}

export interface WatchHandle {
  readonly __watch: unique symbol;
}

/** Time spent inside one kind of syscall (wall and this thread's CPU), and how many calls. */
export interface SyscallTimeEntry {
  ns: number;
  cpuNs: number;
  calls: number;
}

export type SyscallKind = 'tunOpen' | 'tunIoctl' | 'tunClose' | 'netnsSwitch' | 'netlinkSend' | 'netlinkRecv';
