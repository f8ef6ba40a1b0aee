/**
 * A NETLINK_ROUTE socket as the native shim gives it, and nothing more: open in a namespace, send
 * one buffer, read one datagram without blocking, tell when readable, close. Failures become
 * SystemCallErrors. The protocol (sequence numbers, acks, dumps) is protocol.ts; transport.ts joins them.
 */
import { SystemCallError } from '../errors.js';
import { nativeNetlink } from '../native/netlink-socket.js';
import type { WatchHandle } from '../native/shim-types.js';
import { NETLINK_ROUTE } from './codec/constants.js';
import { NetlinkClosedError } from './errors.js';

/** Large enough for the biggest datagram the kernel sends a dump in (it sizes them to our buffer). */
const RECEIVE_BUFFER_SIZE = 1 << 20;

export class RouteSocket {
  /**
   * Allocated at the first receive: a socket opened only to check a namespace by its cookie
   * (openNetworkNamespace) and closed unused costs no megabyte.
   */
  private receiveBuffer: Buffer | undefined;
  private watcher: WatchHandle | undefined;
  private closed = false;
  private namespaceFd: number | undefined;
  /** Sends running on a pool thread: the fd stays open until the last one is back. */
  private backgroundSends = 0;
  /** Set by close(): settles once the fds are closed (at once, or when the last background send is back). */
  private fdsClosed: Promise<void> | undefined;
  private fdsClosedNow: (() => void) | undefined;

  private constructor(
    readonly fd: number,
    readonly namespacePath: string | undefined,
    /** The port id the kernel bound the socket to: replies to our requests carry it in nlmsg_pid. */
    readonly portId: number,
  ) {}

  /** Opens a socket bound inside the namespace at `namespacePath` (or this one), joined to `groups`. */
  static open(namespacePath?: string, groups = 0): RouteSocket {
    // Outside the try: a missing native shim is its own error (VCNET_NATIVE_MISSING), not a failed system call.
    nativeNetlink.load();
    let fd: number;
    try {
      fd = nativeNetlink.openNetlink(namespacePath ?? null, NETLINK_ROUTE, groups);
    } catch (error) {
      throw new SystemCallError(
        `open a netlink socket in ${namespacePath ?? 'the current namespace'}`,
        error as NodeJS.ErrnoException,
      );
    }
    // Known from the start, so that no notification that happens to carry the sequence number of
    // our first request (another process's change) is taken for its answer.
    let portId: number;
    try {
      portId = nativeNetlink.netlinkPortId(fd);
    } catch (error) {
      nativeNetlink.closeFd(fd);
      throw new SystemCallError(
        `find the port id of a netlink socket in ${namespacePath ?? 'the current namespace'}`,
        error as NodeJS.ErrnoException,
      );
    }
    return new RouteSocket(fd, namespacePath, portId);
  }

  /**
   * An fd of the namespace this socket talks to (SIOCGSKNS), taken the first time it is asked for
   * and closed with the socket: for what only an ioctl inside that namespace can make (a tap).
   */
  namespace(): number {
    if (this.closed) throw new NetlinkClosedError(this.namespacePath);
    if (this.namespaceFd === undefined) {
      try {
        this.namespaceFd = nativeNetlink.socketNamespace(this.fd);
      } catch (error) {
        throw new SystemCallError('find the namespace of a netlink socket', error as NodeJS.ErrnoException);
      }
    }
    return this.namespaceFd;
  }

  /**
   * The cookie (SO_NETNS_COOKIE) of the namespace the socket was made in, as a decimal string: read
   * on this socket, so that the namespace checked is the one its requests reach. A SystemCallError
   * with errno ENOPROTOOPT on a kernel before 5.14, which has no cookies.
   */
  namespaceCookie(): string {
    if (this.closed) throw new NetlinkClosedError(this.namespacePath);
    try {
      return nativeNetlink.socketNamespaceCookie(this.fd);
    } catch (error) {
      throw new SystemCallError(
        `read the namespace cookie of a netlink socket in ${this.namespacePath ?? 'the current namespace'}`,
        error as NodeJS.ErrnoException,
      );
    }
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** One sendto(): rtnetlink handles every request in it before the call returns. */
  send(bytes: Buffer): void {
    try {
      nativeNetlink.netlinkSend(this.fd, bytes);
    } catch (error) {
      throw new SystemCallError('send a netlink request', error as NodeJS.ErrnoException);
    }
  }

  /** Whether sendInBackground() can run on a pool thread (an older addon cannot). */
  get canSendInBackground(): boolean {
    return nativeNetlink.canSendInBackground();
  }

  /**
   * The same sendto() on a thread of libuv's pool, for requests the kernel takes long over (deleting
   * links waits for RCU grace periods inside the call): the event loop runs meanwhile. `done` runs
   * on the event loop. The fd is not closed while a send is out, even if close() is called: the
   * thread would otherwise write to whatever file took the fd's number.
   */
  sendInBackground(bytes: Buffer, done: (error?: SystemCallError) => void): void {
    this.backgroundSends++;
    try {
      nativeNetlink.netlinkSendInBackground(this.fd, bytes, (error) => {
        this.backgroundSends--;
        if (this.closed && this.backgroundSends === 0) this.closeFds();
        done(error ? new SystemCallError('send a netlink request', error) : undefined);
      });
    } catch (error) {
      this.backgroundSends--;
      throw new SystemCallError('send a netlink request', error as NodeJS.ErrnoException);
    }
  }

  /** One datagram (a copy: the read buffer is reused), or undefined when nothing is waiting. */
  receive(): Buffer | undefined {
    let length: number;
    this.receiveBuffer ??= Buffer.allocUnsafe(RECEIVE_BUFFER_SIZE);
    try {
      length = nativeNetlink.netlinkRecv(this.fd, this.receiveBuffer);
    } catch (error) {
      throw new SystemCallError('receive netlink replies', error as NodeJS.ErrnoException);
    }
    return length < 0 ? undefined : Buffer.from(this.receiveBuffer.subarray(0, length));
  }

  /** Joins one more multicast group (RTNLGRP_* number, beyond the 32 of the bind mask too). */
  addMembership(group: number): void {
    try {
      nativeNetlink.addMembership(this.fd, group);
    } catch (error) {
      throw new SystemCallError(`join netlink multicast group ${group}`, error as NodeJS.ErrnoException);
    }
  }

  /**
   * Calls `readable` from the event loop whenever data waits, until stopWatching(). When the socket
   * has an error pending (sk_err: ENOBUFS after the kernel dropped events for an overrun receive
   * queue), epoll reports POLLERR, and libuv stops the poll handle for good before the callback
   * (status UV_EBADF): the handle is let go here, so that the watch() the caller makes after reading
   * (receive() then takes the error) starts a fresh one. Kept, the dead handle would make watch() a
   * no-op: a listener that nothing wakes again, and a process whose event loop empties (`vcnet watch`
   * exited 13, "unsettled top-level await", after a notification flood).
   */
  watch(readable: () => void): void {
    if (this.watcher || this.closed) return;
    const watcher = nativeNetlink.watchReadable(this.fd, (status) => {
      if (status < 0 && this.watcher === watcher) this.stopWatching();
      readable();
    });
    this.watcher = watcher;
  }

  get watching(): boolean {
    return this.watcher !== undefined;
  }

  stopWatching(): void {
    if (!this.watcher) return;
    nativeNetlink.unwatch(this.watcher);
    this.watcher = undefined;
  }

  /**
   * Closes the socket: nothing is sent or read after this. The promise settles once its fds (and the
   * namespace fd namespace() took) are closed: at once, or, with a send still out on a pool thread,
   * when that send is back. The reply to a request is read on the event loop before libuv reports the
   * thread done, so an operation that settled without awaiting this left the pod namespace open in
   * the process for a moment (a caller deleting the namespace, or checking /proc/self/fd, still saw it).
   */
  close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      this.stopWatching();
      if (this.backgroundSends === 0) this.closeFds();
      else
        this.fdsClosed = new Promise((resolve) => {
          this.fdsClosedNow = resolve;
        });
    }
    return this.fdsClosed ?? Promise.resolve();
  }

  private closeFds(): void {
    try {
      nativeNetlink.closeFd(this.fd);
      if (this.namespaceFd !== undefined) nativeNetlink.closeFd(this.namespaceFd);
    } finally {
      this.fdsClosedNow?.();
    }
  }
}
