/**
 * Watches a namespace's links, addresses and routes (rtnetlink multicast) and reports debounced
 * change sets. Every burst of events leads to one fresh snapshot diffed against the last one, which
 * stays right through bursts and through lost events (ENOBUFS just triggers the same resync).
 */
import { NetlinkHandle } from '../netlink/handle.js';
import { NetlinkSocket } from '../netlink/transport.js';
import type { NetworkInfo } from './network-info.js';
import { interfacesOf } from './scan.js';

/** RTNLGRP_LINK, IPV4_IFADDR, IPV4_ROUTE, IPV6_IFADDR, IPV6_ROUTE as a bind() group mask. */
const GROUPS = [1, 5, 7, 9, 11].reduce((mask, group) => mask | (1 << (group - 1)), 0);
const VCNET_LINK = /^(tap|ifb)\d+_kata$/;

export interface NamespaceChange {
  addedInterfaces: NetworkInfo[];
  removedInterfaces: string[];
  /** Interfaces whose addresses, routes, MTU or flags changed. */
  changedInterfaces: NetworkInfo[];
  snapshotAt: Date;
}

export interface NamespaceWatcherOptions {
  debounceMs?: number;
  /** Links to leave out; vcnet's own taps and ifbs by default. */
  ignore?: (linkName: string) => boolean;
  onChange: (change: NamespaceChange) => void | Promise<void>;
  onError?: (error: Error) => void;
}

/** What makes an interface "changed" for the guest. */
function signature(info: NetworkInfo): string {
  return JSON.stringify([
    info.link.mtu,
    info.link.flags & 0x1,
    info.addresses.map((address) => `${address.address}/${address.prefixLength}`).sort(),
    info.routes
      .map(
        (route) =>
          `${route.destination ?? 'default'}/${route.destinationLength} ${route.gateway ?? ''} ${route.mtu ?? ''}`,
      )
      .sort(),
  ]);
}

export class NamespaceWatcher {
  private previous = new Map<string, NetworkInfo>();
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private again = false;
  private stopped = false;

  private constructor(
    private readonly events: NetlinkSocket,
    private readonly handle: NetlinkHandle,
    private readonly options: Required<Pick<NamespaceWatcherOptions, 'debounceMs' | 'ignore'>> &
      NamespaceWatcherOptions,
  ) {}

  static async start(namespacePath: string, options: NamespaceWatcherOptions): Promise<NamespaceWatcher> {
    const events = NetlinkSocket.open(namespacePath, GROUPS);
    const handle = NetlinkHandle.open(namespacePath);
    const watcher = new NamespaceWatcher(events, handle, {
      debounceMs: 200,
      ignore: (name) => VCNET_LINK.test(name),
      ...options,
    });
    try {
      watcher.previous = await watcher.read();
    } catch (error) {
      watcher.stop();
      throw error;
    }
    events.onNotification = () => watcher.schedule();
    events.onReceiveError = () => watcher.schedule();
    events.startListening();
    return watcher;
  }

  private async read(): Promise<Map<string, NetworkInfo>> {
    const interfaces = interfacesOf(await this.handle.snapshot()).filter(
      (info) => !this.options.ignore(info.link.name),
    );
    return new Map(interfaces.map((info) => [info.link.name, info]));
  }

  private schedule(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.diff(), this.options.debounceMs);
  }

  private async diff(): Promise<void> {
    if (this.stopped) return;
    this.running = true;
    try {
      const current = await this.read();
      const change: NamespaceChange = {
        addedInterfaces: [],
        removedInterfaces: [],
        changedInterfaces: [],
        snapshotAt: new Date(),
      };
      for (const [name, info] of current) {
        const before = this.previous.get(name);
        if (!before) change.addedInterfaces.push(info);
        else if (signature(before) !== signature(info)) change.changedInterfaces.push(info);
      }
      for (const name of this.previous.keys()) if (!current.has(name)) change.removedInterfaces.push(name);
      this.previous = current;
      if (change.addedInterfaces.length + change.removedInterfaces.length + change.changedInterfaces.length > 0) {
        await this.options.onChange(change);
      }
    } catch (error) {
      this.options.onError?.(error as Error);
    } finally {
      this.running = false;
      if (this.again) {
        this.again = false;
        this.schedule();
      }
    }
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.timer);
    this.events.close();
    this.handle.close();
  }
}
