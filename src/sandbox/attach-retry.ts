/**
 * The watch's tries at new links it could not attach. Each try that fails after it made something
 * (a tap, a qdisc, a hot-plugged NIC) undoes it, and those undos are namespace changes the watcher
 * reads like any other: a link tried again with every change was tried again by its own rollback,
 * a tap made and deleted every debounce for as long as it failed (a VM out of hot-plug slots: a
 * netdev_add and device_add each time). So a link that failed is tried again after the watch's one
 * growing wait (namespace-watcher.ts retryDelayMs, doubling, at most MAX_RETRY_DELAY_MS apart), on a
 * timer that asks the watcher for a read; and at once when a change is about the link itself (its
 * addresses, MTU, flags: what may make the attach work). Unbounded, as the watcher's retry of a
 * change: the link stays wanted until it is attached or deleted. `stop()` clears the timer.
 */
import { type NamespaceChange, retryDelayMs } from '../network/namespace-watcher.js';
import type { NetworkInfo } from '../network/network-info.js';

interface FailedLink {
  info: NetworkInfo;
  /** Failed tries in a row. */
  attempts: number;
  /** Not tried again before this (Date.now() ms), but for a change about the link. */
  notBefore: number;
}

export class AttachRetries {
  private readonly failed = new Map<string, FailedLink>();
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  /**
   * `debounceMs`: the watch's; `read` asks the watcher for a read that reaches onChange even when
   * nothing changed (its resync with trafficControl, which a watch has on).
   */
  constructor(
    private readonly debounceMs: number,
    private readonly read: () => void,
  ) {}

  /** The links still wanted (failed, neither attached nor deleted since), as last seen. */
  links(): NetworkInfo[] {
    return [...this.failed.values()].map((entry) => entry.info);
  }

  /**
   * `change` with the failed links whose wait is over added as added interfaces; a link the change is
   * about (added, changed or removed) comes as the change has it.
   */
  due(change: NamespaceChange, now = Date.now()): NamespaceChange {
    const mentioned = new Set([
      ...change.removedInterfaces,
      ...change.addedInterfaces.map((info) => info.link.name),
      ...change.changedInterfaces.map((info) => info.link.name),
    ]);
    const retries = [...this.failed.values()]
      .filter((entry) => !mentioned.has(entry.info.link.name) && entry.notBefore <= now)
      .map((entry) => entry.info);
    return retries.length === 0 ? change : { ...change, addedInterfaces: [...change.addedInterfaces, ...retries] };
  }

  /**
   * After a change set was applied: `tried` the change as applied (due's), `failures` the links of it
   * that could not be attached and may be tried again (not those vcnet refuses for what they are).
   * A link tried that did not fail, and one removed, is no longer wanted; one not tried (its wait not
   * over) keeps its wait.
   */
  settle(tried: NamespaceChange, failures: readonly string[], now = Date.now()): void {
    const triedNames = new Set([
      ...tried.addedInterfaces.map((info) => info.link.name),
      ...tried.changedInterfaces.map((info) => info.link.name),
    ]);
    for (const name of [...this.failed.keys()]) {
      if (tried.removedInterfaces.includes(name) || (triedNames.has(name) && !failures.includes(name)))
        this.failed.delete(name);
    }
    for (const name of failures) {
      const info = [...tried.addedInterfaces, ...tried.changedInterfaces].find((entry) => entry.link.name === name);
      if (!info) continue;
      const attempts = (this.failed.get(name)?.attempts ?? 0) + 1;
      this.failed.set(name, { info, attempts, notBefore: now + retryDelayMs(this.debounceMs, attempts) });
    }
    this.arm(now);
  }

  /** No read is asked for after this. */
  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** One timer, for the earliest wait to end: the read it asks for tries every link due by then. */
  private arm(now: number): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.stopped || this.failed.size === 0) return;
    const next = Math.min(...[...this.failed.values()].map((entry) => entry.notBefore));
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        if (!this.stopped) this.read();
      },
      Math.max(0, next - now),
    );
  }
}
