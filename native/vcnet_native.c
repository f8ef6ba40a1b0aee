// vcnet native shim: only what Node cannot do by itself.
//
//  - open a NETLINK_ROUTE socket inside a network namespace (setns on the calling
//    thread, socket(), setns back: the socket stays bound to the target namespace);
//  - send/recv on it without blocking, and a uv_poll watcher so JavaScript learns
//    when a reply or a multicast event is waiting;
//  - tun/tap creation (multi-queue, vnet header, persist, owner/group) inside a namespace;
//  - writing and reading a file (a sysctl) inside a namespace;
//  - /dev/vhost-net, and fd hygiene (close, inheritable) for handing fds to a hypervisor;
//  - the namespace a socket or tap fd belongs to, and copies of other processes' fds (pidfd), for
//    finding what keeps a namespace alive from outside it;
//  - optional accounting of the time spent inside the syscalls that make an attach (the kernel's
//    share, which the benchmark reports as the floor JavaScript cannot go below).
//
// Every failure is thrown as an Error with `code` = errno name, `errno`, `syscall` and `path`/`detail`.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#ifndef IFF_TUN_EXCL
#define IFF_TUN_EXCL 0x8000
#endif
#include <linux/netlink.h>
#include <linux/sockios.h>
#include <node_api.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#ifndef NETLINK_EXT_ACK
#define NETLINK_EXT_ACK 11
#endif
#ifndef NETLINK_CAP_ACK
#define NETLINK_CAP_ACK 10
#endif
#ifndef NETLINK_GET_STRICT_CHK
#define NETLINK_GET_STRICT_CHK 12
#endif
#ifndef SOL_NETLINK
#define SOL_NETLINK 270
#endif

#define MAX_QUEUES 256

static const char *errno_name(int err) {
  switch (err) {
  case EPERM: return "EPERM";
  case ENOENT: return "ENOENT";
  case ESRCH: return "ESRCH";
  case EINTR: return "EINTR";
  case EIO: return "EIO";
  case ENXIO: return "ENXIO";
  case EBADF: return "EBADF";
  case EAGAIN: return "EAGAIN";
  case ENOMEM: return "ENOMEM";
  case EACCES: return "EACCES";
  case EBUSY: return "EBUSY";
  case EEXIST: return "EEXIST";
  case ENODEV: return "ENODEV";
  case ENOTDIR: return "ENOTDIR";
  case EINVAL: return "EINVAL";
  case ENFILE: return "ENFILE";
  case EMFILE: return "EMFILE";
  case ENOTTY: return "ENOTTY";
  case ENOSPC: return "ENOSPC";
  case ERANGE: return "ERANGE";
  case ENOSYS: return "ENOSYS";
  case EBADFD: return "EBADFD";
  case ENAMETOOLONG: return "ENAMETOOLONG";
  case ENOBUFS: return "ENOBUFS";
  case EOPNOTSUPP: return "EOPNOTSUPP";
  case EPROTONOSUPPORT: return "EPROTONOSUPPORT";
  case EAFNOSUPPORT: return "EAFNOSUPPORT";
  case ECONNREFUSED: return "ECONNREFUSED";
  default: return "EUNKNOWN";
  }
}

// Throws a JS Error shaped like Node's system errors, so callers can wrap it in a typed vcnet error.
static napi_value errno_error(napi_env env, int err, const char *syscall, const char *detail) {
  char message[512];
  // Without a detail, "setns: Operation not permitted", not "setns : ..." with an empty gap.
  if (detail)
    snprintf(message, sizeof message, "%s %s: %s", syscall, detail, strerror(err));
  else
    snprintf(message, sizeof message, "%s: %s", syscall, strerror(err));
  napi_value msg, error, value;
  napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &msg);
  napi_create_error(env, NULL, msg, &error);
  napi_create_string_utf8(env, errno_name(err), NAPI_AUTO_LENGTH, &value);
  napi_set_named_property(env, error, "code", value);
  napi_create_int32(env, err, &value);
  napi_set_named_property(env, error, "errno", value);
  napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &value);
  napi_set_named_property(env, error, "syscall", value);
  if (detail) {
    napi_create_string_utf8(env, detail, NAPI_AUTO_LENGTH, &value);
    napi_set_named_property(env, error, "detail", value);
  }
  return error;
}

static void throw_errno(napi_env env, int err, const char *syscall, const char *detail) {
  napi_throw(env, errno_error(env, err, syscall, detail));
}

static void throw_type(napi_env env, const char *message) { napi_throw_type_error(env, "EINVAL", message); }

// ---- argument helpers -----------------------------------------------------------------------

// Reads an optional string argument (null/undefined -> empty string). Returns 0 on failure (thrown).
static int get_string(napi_env env, napi_value value, char *out, size_t size, int optional) {
  napi_valuetype type;
  napi_typeof(env, value, &type);
  if (optional && (type == napi_null || type == napi_undefined)) {
    out[0] = 0;
    return 1;
  }
  if (type != napi_string) {
    throw_type(env, "expected a string argument");
    return 0;
  }
  size_t len;
  napi_get_value_string_utf8(env, value, NULL, 0, &len);
  if (len >= size) {
    throw_type(env, "string argument too long");
    return 0;
  }
  napi_get_value_string_utf8(env, value, out, size, &len);
  return 1;
}

static int get_int(napi_env env, napi_value value, int32_t *out) {
  if (napi_get_value_int32(env, value, out) != napi_ok) {
    throw_type(env, "expected an integer argument");
    return 0;
  }
  return 1;
}

static napi_value make_int(napi_env env, int32_t v) {
  napi_value out;
  napi_create_int32(env, v, &out);
  return out;
}

// ---- syscall time accounting ------------------------------------------------------------------

// Off until syscallTime() is first called, so a process that never asks pays one branch per call.
enum syscall_kind { SC_TUN_OPEN, SC_TUN_IOCTL, SC_TUN_CLOSE, SC_NETNS_SWITCH, SC_NETLINK_SEND, SC_NETLINK_RECV, SC_KINDS };
static const char *const syscall_kind_names[SC_KINDS] = {"tunOpen",     "tunIoctl",    "tunClose",
                                                         "netnsSwitch", "netlinkSend", "netlinkRecv"};
static int accounting_on = 0;
// The thread's CPU clock is a real syscall on some hosts (about 2 µs in a VM), so reading it around
// every call would itself slow the attach being measured: it is read only when asked for.
static int cpu_accounting_on = 0;
static uint64_t syscall_ns[SC_KINDS];
static uint64_t syscall_cpu_ns[SC_KINDS];
static uint64_t syscall_calls[SC_KINDS];
// The calling thread's CPU time at the start of the syscall being timed (one at a time: JS thread).
static uint64_t started_cpu_ns;

static inline uint64_t clock_ns(clockid_t clock) {
  struct timespec now;
  clock_gettime(clock, &now);
  return (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
}

// Wall time (monotonic) and this thread's CPU time: on a loaded machine the wall time inside a
// syscall includes waiting for a CPU, the CPU time does not.
static inline uint64_t accounting_start(void) {
  if (!accounting_on) return 0;
  if (cpu_accounting_on) started_cpu_ns = clock_ns(CLOCK_THREAD_CPUTIME_ID);
  return clock_ns(CLOCK_MONOTONIC);
}

static inline void accounting_stop(enum syscall_kind kind, uint64_t started) {
  if (!accounting_on) return;
  syscall_ns[kind] += clock_ns(CLOCK_MONOTONIC) - started;
  if (cpu_accounting_on) syscall_cpu_ns[kind] += clock_ns(CLOCK_THREAD_CPUTIME_ID) - started_cpu_ns;
  syscall_calls[kind]++;
}

// syscallTime(cpu?: boolean) -> { tunIoctl: { ns, cpuNs, calls }, ... }: the time spent inside each
// kind of syscall since the previous call (then reset). The first call switches the accounting on;
// `cpu` says whether the next interval also counts CPU time (cpuNs stays 0 otherwise).
// threadCpuNs() -> the calling thread's CPU time in ns (CLOCK_THREAD_CPUTIME_ID), to measure the CPU an
// operation costs on a machine where wall time also counts waiting for a CPU.
static napi_value thread_cpu_ns(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value value;
  napi_create_double(env, (double)clock_ns(CLOCK_THREAD_CPUTIME_ID), &value);
  return value;
}

static napi_value syscall_time(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  bool cpu = false;
  if (argc > 0) napi_get_value_bool(env, argv[0], &cpu);
  napi_value result, entry, value;
  napi_create_object(env, &result);
  for (int kind = 0; kind < SC_KINDS; kind++) {
    napi_create_object(env, &entry);
    napi_create_double(env, (double)syscall_ns[kind], &value);
    napi_set_named_property(env, entry, "ns", value);
    napi_create_double(env, (double)syscall_cpu_ns[kind], &value);
    napi_set_named_property(env, entry, "cpuNs", value);
    napi_create_double(env, (double)syscall_calls[kind], &value);
    napi_set_named_property(env, entry, "calls", value);
    napi_set_named_property(env, result, syscall_kind_names[kind], entry);
    syscall_ns[kind] = 0;
    syscall_cpu_ns[kind] = 0;
    syscall_calls[kind] = 0;
  }
  accounting_on = 1;
  cpu_accounting_on = cpu;
  return result;
}

// ---- namespace switching ----------------------------------------------------------------------

// The namespace this thread goes back to, kept open for the thread's life: opening
// /proc/thread-self/ns/net costs a procfs lookup (tens of µs when its dentry is cold) on every switch.
// The thread is in it whenever no switch is in progress (every enter is paired with a leave).
// Checked by inode before each use, so an fd number someone else closed and reused is never taken
// for it.
static __thread int home_netns_fd = -1;
static __thread dev_t home_netns_dev;
static __thread ino_t home_netns_ino;

static int home_netns(const char **failed) {
  struct stat st;
  if (home_netns_fd >= 0 && fstat(home_netns_fd, &st) == 0 && st.st_dev == home_netns_dev &&
      st.st_ino == home_netns_ino)
    return home_netns_fd;
  int fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (fd < 0 || fstat(fd, &st) < 0) {
    int err = errno;
    if (fd >= 0) close(fd);
    *failed = "open(/proc/thread-self/ns/net)";
    errno = err;
    return -1;
  }
  // The old number is not closed: if it was reused, it belongs to someone else now.
  home_netns_fd = fd;
  home_netns_dev = st.st_dev;
  home_netns_ino = st.st_ino;
  return fd;
}

// Closes the thread's home fd when its Node environment goes (a worker thread that loaded the shim
// ends): runs on that thread.
static void close_home_netns(void *unused) {
  (void)unused;
  if (home_netns_fd >= 0) close(home_netns_fd);
  home_netns_fd = -1;
}

// Enters the namespace of target_fd (or, when it is < 0, the one at ns_path) on this thread.
// *saved receives the fd to go back to, or -1 when nothing was entered. Returns 0 or an errno; on
// error nothing changed.
static int enter_netns_untimed(const char *ns_path, int target_fd, int *saved, const char **failed) {
  *saved = -1;
  if (target_fd < 0 && (!ns_path || !ns_path[0])) return 0;
  int home = home_netns(failed);
  if (home < 0) return errno;
  int target = target_fd;
  if (target < 0) {
    target = open(ns_path, O_RDONLY | O_CLOEXEC);
    if (target < 0) {
      *failed = "open";
      return errno;
    }
  }
  int entered = setns(target, CLONE_NEWNET);
  int err = errno;
  if (target != target_fd) close(target);
  if (entered < 0) {
    *failed = "setns";
    return err;
  }
  *saved = home;
  return 0;
}

static int enter_netns_at(const char *ns_path, int target_fd, int *saved, const char **failed) {
  uint64_t started = accounting_start();
  int err = enter_netns_untimed(ns_path, target_fd, saved, failed);
  if (target_fd >= 0 || (ns_path && ns_path[0])) accounting_stop(SC_NETNS_SWITCH, started);
  return err;
}

static int enter_netns(const char *ns_path, int *saved, const char **failed) {
  return enter_netns_at(ns_path, -1, saved, failed);
}

// Goes back to the saved namespace. A thread stuck in the wrong namespace would make every later
// operation of this process act on the wrong network, so failing here is fatal.
static void leave_netns(int saved) {
  if (saved < 0) return;
  uint64_t started = accounting_start();
  if (setns(saved, CLONE_NEWNET) < 0) {
    fprintf(stderr, "vcnet: cannot return to the original network namespace: %s\n", strerror(errno));
    abort();
  }
  accounting_stop(SC_NETNS_SWITCH, started);
}

// ---- files inside a namespace --------------------------------------------------------------------

// A file opened inside the network namespace of nsFd (-1: this thread's): setns, open, setns back.
// On failure it has thrown, naming the step, and returns -1.
static int open_in_netns(napi_env env, int32_t ns_fd, const char *path, int flags) {
  int saved;
  const char *failed = NULL;
  int err = ns_fd >= 0 ? enter_netns_at(NULL, ns_fd, &saved, &failed) : (saved = -1, 0);
  if (err) {
    throw_errno(env, err, failed, NULL);
    return -1;
  }
  int fd = open(path, flags | O_CLOEXEC);
  err = fd < 0 ? errno : 0;
  leave_netns(saved);
  if (fd < 0) throw_errno(env, err, "open", path);
  return fd;
}

// writeFileInNetns(nsFd: number, path: string, text: string): writes text to a file opened inside
// the network namespace of nsFd (-1: this thread's). /proc/sys/net is the
// namespace of the thread that opens it: a sysctl of a pod's link is written from inside the pod.
static napi_value write_file_in_netns(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char path[4096], text[256];
  int32_t ns_fd;
  if (argc < 3 || !get_int(env, argv[0], &ns_fd) || !get_string(env, argv[1], path, sizeof path, 0) ||
      !get_string(env, argv[2], text, sizeof text, 0))
    return NULL;
  int fd = open_in_netns(env, ns_fd, path, O_WRONLY);
  if (fd < 0) return NULL;
  size_t length = strlen(text);
  ssize_t written = write(fd, text, length);
  int err = written < 0 ? errno : 0;
  close(fd);
  if (written < 0 || (size_t)written != length) {
    throw_errno(env, written < 0 ? err : EIO, "write", path);
    return NULL;
  }
  return NULL;
}

// readFileInNetns(nsFd: number, path: string) -> string: the start of a file (a sysctl: up to 255
// bytes) opened inside the network namespace of nsFd (-1: this thread's), as writeFileInNetns opens
// it: a namespace's net.ipv4.conf.all.* has no netlink attribute, only its file under /proc/sys/net.
static napi_value read_file_in_netns(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char path[4096], text[256];
  int32_t ns_fd;
  if (argc < 2 || !get_int(env, argv[0], &ns_fd) || !get_string(env, argv[1], path, sizeof path, 0)) return NULL;
  int fd = open_in_netns(env, ns_fd, path, O_RDONLY);
  if (fd < 0) return NULL;
  ssize_t length = read(fd, text, sizeof text - 1);
  int err = length < 0 ? errno : 0;
  close(fd);
  if (length < 0) {
    throw_errno(env, err, "read", path);
    return NULL;
  }
  napi_value out;
  napi_create_string_utf8(env, text, (size_t)length, &out);
  return out;
}

// ---- netlink sockets --------------------------------------------------------------------------

// openNetlink(nsPath: string|null, protocol: number, groups: number) -> fd
static napi_value open_netlink(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char ns_path[4096];
  int32_t protocol = NETLINK_ROUTE, groups = 0;
  if (argc < 1 || !get_string(env, argv[0], ns_path, sizeof ns_path, 1)) return NULL;
  if (argc > 1 && !get_int(env, argv[1], &protocol)) return NULL;
  if (argc > 2 && !get_int(env, argv[2], &groups)) return NULL;

  int saved;
  const char *failed = NULL;
  int err = enter_netns(ns_path, &saved, &failed);
  if (err) {
    throw_errno(env, err, failed, ns_path);
    return NULL;
  }
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, protocol);
  err = fd < 0 ? errno : 0;
  leave_netns(saved);
  if (fd < 0) {
    throw_errno(env, err, "socket", "AF_NETLINK");
    return NULL;
  }
  int one = 1;
  int bufsize = 4 * 1024 * 1024;
  // Large buffers: a dump of hundreds of links or a burst of events must not overflow (ENOBUFS).
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bufsize, sizeof bufsize) < 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bufsize, sizeof bufsize);
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &bufsize, sizeof bufsize) < 0)
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bufsize, sizeof bufsize);
  // Extended acks carry the kernel's own error text ("Unknown device type", ...).
  setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof one);
  // Errors need not echo the whole request back: vcnet keeps its own copy of what it sent.
  setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof one);
  struct sockaddr_nl addr = {.nl_family = AF_NETLINK, .nl_groups = (uint32_t)groups};
  if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
    err = errno;
    close(fd);
    throw_errno(env, err, "bind", "AF_NETLINK");
    return NULL;
  }
  return make_int(env, fd);
}

// netlinkPortId(fd) -> number: the port id the kernel gave the socket at bind() (getsockname's
// nl_pid). Replies to our requests carry it; multicast notifications carry their sender's.
static napi_value netlink_port_id(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fd;
  if (argc < 1 || !get_int(env, argv[0], &fd)) return NULL;
  struct sockaddr_nl addr;
  socklen_t length = sizeof addr;
  if (getsockname(fd, (struct sockaddr *)&addr, &length) < 0) {
    throw_errno(env, errno, "getsockname", "AF_NETLINK");
    return NULL;
  }
  napi_value result;
  napi_create_uint32(env, addr.nl_pid, &result);
  return result;
}

// addMembership(fd, group): joins a multicast group beyond the first 32 (NETLINK_ADD_MEMBERSHIP).
static napi_value add_membership(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fd, group;
  if (argc < 2 || !get_int(env, argv[0], &fd) || !get_int(env, argv[1], &group)) return NULL;
  if (setsockopt(fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &group, sizeof group) < 0) {
    throw_errno(env, errno, "setsockopt", "NETLINK_ADD_MEMBERSHIP");
    return NULL;
  }
  return NULL;
}

static int get_buffer(napi_env env, napi_value value, void **data, size_t *len) {
  bool is_buffer = false;
  napi_is_buffer(env, value, &is_buffer);
  if (is_buffer) {
    napi_get_buffer_info(env, value, data, len);
    return 1;
  }
  bool is_typed = false;
  napi_is_typedarray(env, value, &is_typed);
  if (is_typed) {
    napi_typedarray_type type;
    napi_value arraybuffer;
    size_t offset;
    napi_get_typedarray_info(env, value, &type, len, data, &arraybuffer, &offset);
    if (type != napi_uint8_array) {
      throw_type(env, "expected a Uint8Array");
      return 0;
    }
    return 1;
  }
  throw_type(env, "expected a Buffer");
  return 0;
}

// The (fd, buffer, ...) arguments the netlink calls share: `want` arguments into argv, the first two
// read as an fd and a byte buffer. Returns 0 when they are missing or wrong (a TypeError is thrown).
static int fd_and_buffer_arguments(napi_env env, napi_callback_info info, size_t want, napi_value *argv, int32_t *fd,
                                   void **data, size_t *len) {
  size_t argc = want;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  return argc >= want && get_int(env, argv[0], fd) && get_buffer(env, argv[1], data, len);
}

// Sends a buffer of netlink messages to the kernel, again when a signal interrupts it. Returns the
// bytes sent or -errno (errno itself is not kept: the main thread's accounting runs after it).
static ssize_t send_to_kernel(int fd, const void *data, size_t len) {
  struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
  ssize_t n;
  do {
    n = sendto(fd, data, len, 0, (struct sockaddr *)&kernel, sizeof kernel);
  } while (n < 0 && errno == EINTR);
  return n < 0 ? -errno : n;
}

// netlinkSend(fd, buffer) -> bytes sent. rtnetlink handles every message of the buffer inside this
// call, so a whole batch of requests costs one syscall.
static napi_value netlink_send(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int32_t fd;
  void *data;
  size_t len;
  if (!fd_and_buffer_arguments(env, info, 2, argv, &fd, &data, &len)) return NULL;
  uint64_t started = accounting_start();
  ssize_t n = send_to_kernel(fd, data, len);
  accounting_stop(SC_NETLINK_SEND, started);
  if (n < 0) {
    throw_errno(env, (int)-n, "sendto", "netlink");
    return NULL;
  }
  return make_int(env, (int32_t)n);
}

// netlinkSendInBackground(fd, buffer, callback(error | null, bytes)): the same sendto() on a thread of
// libuv's pool. Deleting a link makes rtnetlink wait for RCU grace periods inside sendto (~20 ms a
// link, all of them for a group delete); on the main thread that would stop the caller's event loop
// for as long. The buffer is referenced until the callback, and the caller sends nothing else on the
// socket (nor closes it) until then. Not counted by the syscall accounting (it is not an attach's).
typedef struct {
  napi_async_work work;
  napi_ref buffer;
  napi_ref callback;
  int fd;
  void *data;
  size_t len;
  // Bytes sent, or -errno.
  ssize_t sent;
} background_send_t;

static void background_send_execute(napi_env env, void *data) {
  (void)env;
  background_send_t *job = data;
  job->sent = send_to_kernel(job->fd, job->data, job->len);
}

static void background_send_complete(napi_env env, napi_status status, void *data) {
  background_send_t *job = data;
  napi_value callback, global, argv[2], result;
  napi_get_reference_value(env, job->callback, &callback);
  napi_get_global(env, &global);
  if (status != napi_ok) {
    argv[0] = errno_error(env, ECANCELED, "sendto", "netlink (background)");
    napi_get_null(env, &argv[1]);
  } else if (job->sent < 0) {
    argv[0] = errno_error(env, (int)-job->sent, "sendto", "netlink");
    napi_get_null(env, &argv[1]);
  } else {
    napi_get_null(env, &argv[0]);
    argv[1] = make_int(env, (int32_t)job->sent);
  }
  napi_delete_reference(env, job->buffer);
  napi_delete_reference(env, job->callback);
  napi_delete_async_work(env, job->work);
  free(job);
  napi_call_function(env, global, callback, 2, argv, &result);
}

static napi_value netlink_send_in_background(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  int32_t fd;
  void *data;
  size_t len;
  if (!fd_and_buffer_arguments(env, info, 3, argv, &fd, &data, &len)) return NULL;
  napi_valuetype type;
  napi_typeof(env, argv[2], &type);
  if (type != napi_function) {
    throw_type(env, "expected a callback");
    return NULL;
  }
  background_send_t *job = calloc(1, sizeof *job);
  if (!job) {
    throw_errno(env, ENOMEM, "calloc", "background send");
    return NULL;
  }
  job->fd = fd;
  job->data = data;
  job->len = len;
  napi_create_reference(env, argv[1], 1, &job->buffer);
  napi_create_reference(env, argv[2], 1, &job->callback);
  napi_value name;
  napi_create_string_utf8(env, "vcnet.netlinkSend", NAPI_AUTO_LENGTH, &name);
  if (napi_create_async_work(env, NULL, name, background_send_execute, background_send_complete, job, &job->work) !=
          napi_ok ||
      napi_queue_async_work(env, job->work) != napi_ok) {
    if (job->work) napi_delete_async_work(env, job->work);
    napi_delete_reference(env, job->buffer);
    napi_delete_reference(env, job->callback);
    free(job);
    throw_errno(env, EAGAIN, "queue", "background send");
    return NULL;
  }
  return NULL;
}

// netlinkRecv(fd, buffer) -> bytes read, or -1 when nothing is waiting (EAGAIN).
static napi_value netlink_recv(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int32_t fd;
  void *data;
  size_t len;
  if (!fd_and_buffer_arguments(env, info, 2, argv, &fd, &data, &len)) return NULL;
  ssize_t n;
  uint64_t started = accounting_start();
  do {
    n = recv(fd, data, len, MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  int err = errno;
  accounting_stop(SC_NETLINK_RECV, started);
  errno = err;
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return make_int(env, -1);
    throw_errno(env, errno, "recv", "netlink");
    return NULL;
  }
  return make_int(env, (int32_t)n);
}

// ---- readiness watcher (uv_poll) ----------------------------------------------------------------

typedef struct {
  uv_poll_t poll;
  napi_env env;
  napi_ref callback;
  int closing;
} watcher_t;

static void watcher_closed(uv_handle_t *handle) {
  watcher_t *w = (watcher_t *)handle->data;
  free(w);
}

static void watcher_fired(uv_poll_t *poll, int status, int events) {
  watcher_t *w = (watcher_t *)poll->data;
  if (w->closing) return;
  napi_env env = w->env;
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_value callback, global, result, argv[1];
  napi_get_reference_value(env, w->callback, &callback);
  napi_get_global(env, &global);
  argv[0] = make_int(env, status);
  napi_value resource_name;
  napi_create_string_utf8(env, "vcnet.netlink", NAPI_AUTO_LENGTH, &resource_name);
  napi_async_context context;
  napi_value resource;
  napi_create_object(env, &resource);
  napi_async_init(env, resource, resource_name, &context);
  napi_make_callback(env, context, global, callback, 1, argv, &result);
  napi_async_destroy(env, context);
  napi_close_handle_scope(env, scope);
  (void)events;
}

static void watcher_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  watcher_t *w = (watcher_t *)data;
  if (!w->closing) {
    w->closing = 1;
    uv_poll_stop(&w->poll);
    uv_close((uv_handle_t *)&w->poll, watcher_closed);
  }
}

// watchReadable(fd, callback) -> handle; the callback runs whenever fd becomes readable.
static napi_value watch_readable(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fd;
  if (argc < 2 || !get_int(env, argv[0], &fd)) return NULL;
  uv_loop_t *loop;
  napi_get_uv_event_loop(env, &loop);
  watcher_t *w = calloc(1, sizeof *w);
  if (!w) {
    throw_errno(env, ENOMEM, "calloc", "watcher");
    return NULL;
  }
  w->env = env;
  int rc = uv_poll_init(loop, &w->poll, fd);
  if (rc < 0) {
    free(w);
    throw_errno(env, -rc, "uv_poll_init", NULL);
    return NULL;
  }
  w->poll.data = w;
  napi_create_reference(env, argv[1], 1, &w->callback);
  uv_poll_start(&w->poll, UV_READABLE, watcher_fired);
  napi_value handle;
  napi_create_object(env, &handle);
  napi_wrap(env, handle, w, NULL, NULL, NULL);
  return handle;
}

// unwatch(handle): stops the watcher and lets it be freed. Must be called before closing the fd.
static napi_value unwatch(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  watcher_t *w = NULL;
  if (argc < 1 || napi_remove_wrap(env, argv[0], (void **)&w) != napi_ok || !w) return NULL;
  napi_delete_reference(env, w->callback);
  watcher_finalize(env, w, NULL);
  return NULL;
}

// ---- tun/tap ----------------------------------------------------------------------------------

// createTun(nsPath, name, options) -> { name, fds }
// options: { tap: bool, vnetHdr: bool, multiQueue: bool, queues: n, persist: bool, keepFds: bool,
//            owner: uid|-1, group: gid|-1 }
// The device belongs to the namespace /dev/net/tun was opened in, so the opens happen inside nsPath.
// An absent property reads as undefined, which is no boolean (no int32) either: one lookup, not a
// has-then-get pair, gives the fallback for both (createTun reads 11 options this way).
static int get_bool_prop(napi_env env, napi_value obj, const char *name, int fallback) {
  napi_value v;
  if (napi_get_named_property(env, obj, name, &v) != napi_ok) return fallback;
  bool b;
  if (napi_get_value_bool(env, v, &b) != napi_ok) return fallback;
  return b;
}

static int32_t get_int_prop(napi_env env, napi_value obj, const char *name, int32_t fallback) {
  napi_value v;
  if (napi_get_named_property(env, obj, name, &v) != napi_ok) return fallback;
  int32_t i;
  if (napi_get_value_int32(env, v, &i) != napi_ok) return fallback;
  return i;
}

static napi_value create_tun(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char ns_path[4096], name[IFNAMSIZ + 1];
  if (argc < 3 || !get_string(env, argv[0], ns_path, sizeof ns_path, 1) ||
      !get_string(env, argv[1], name, sizeof name, 1))
    return NULL;
  if (strlen(name) >= IFNAMSIZ) {
    throw_type(env, "interface name longer than 15 bytes");
    return NULL;
  }
  int tap = get_bool_prop(env, argv[2], "tap", 1);
  int vnet_hdr = get_bool_prop(env, argv[2], "vnetHdr", 1);
  int multi_queue = get_bool_prop(env, argv[2], "multiQueue", 0);
  int persist = get_bool_prop(env, argv[2], "persist", 0);
  int keep_fds = get_bool_prop(env, argv[2], "keepFds", 1);
  int32_t queues = get_int_prop(env, argv[2], "queues", 1);
  int32_t owner = get_int_prop(env, argv[2], "owner", -1);
  int32_t group = get_int_prop(env, argv[2], "group", -1);
  // An fd of the namespace (the one a netlink handle was opened in) instead of its path: no lookup,
  // and the tap is made in exactly that namespace even if the path has been re-bound since.
  int32_t namespace_fd = get_int_prop(env, argv[2], "namespaceFd", -1);
  // A socket bound in that namespace (e.g. the handle's netlink socket): SIOCGIFINDEX on it finds
  // the tap's index without making a socket of our own.
  int32_t index_socket = get_int_prop(env, argv[2], "indexSocket", -1);
  // The ifindex to make the tap at (TUNSETIFINDEX before TUNSETIFF): the caller records it before the
  // tap exists, so the record names the tap by identity from the first moment. 0: the kernel picks.
  int32_t ifindex = get_int_prop(env, argv[2], "ifindex", 0);
  if (ifindex < 0) {
    throw_type(env, "ifindex must be a positive integer, or 0 for the kernel's choice");
    return NULL;
  }
  if (queues < 1 || queues > MAX_QUEUES || (!multi_queue && queues != 1)) {
    throw_type(env, "queues must be 1, or 1..256 with multiQueue");
    return NULL;
  }

  int fds[MAX_QUEUES];
  int opened = 0, err = 0;
  const char *failed = NULL;
  struct ifreq ifr;
  int saved;
  err = enter_netns_at(ns_path, namespace_fd, &saved, &failed);
  if (err) {
    throw_errno(env, err, failed, ns_path[0] ? ns_path : "the namespace fd");
    return NULL;
  }
  for (int i = 0; i < queues; i++) {
    uint64_t started = accounting_start();
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    accounting_stop(SC_TUN_OPEN, started);
    if (fd < 0) {
      err = errno;
      failed = "open(/dev/net/tun)";
      break;
    }
    fds[opened++] = fd;
    memset(&ifr, 0, sizeof ifr);
    ifr.ifr_flags = (tap ? IFF_TAP : IFF_TUN) | IFF_NO_PI | (vnet_hdr ? IFF_VNET_HDR : 0) |
                    (multi_queue ? IFF_MULTI_QUEUE : 0);
    // The first open must create the device: without IFF_TUN_EXCL it would silently attach to an
    // existing persistent tap of that name (someone else's, or a leak), and our detach would delete it.
    if (i == 0) ifr.ifr_flags |= IFF_TUN_EXCL;
    memcpy(ifr.ifr_name, name, strnlen(name, IFNAMSIZ - 1));
    if (i == 0 && ifindex > 0) {
      unsigned int at = (unsigned int)ifindex;
      if (ioctl(fd, TUNSETIFINDEX, &at) < 0) {
        err = errno;
        failed = "ioctl(TUNSETIFINDEX)";
        break;
      }
    }
    started = accounting_start();
    int set = ioctl(fd, TUNSETIFF, &ifr);
    err = errno;
    accounting_stop(SC_TUN_IOCTL, started);
    if (set < 0) {
      failed = "ioctl(TUNSETIFF)";
      break;
    }
    err = 0;
    // Later queues attach to the name the kernel chose for the first (it may expand "tap%d").
    strncpy(name, ifr.ifr_name, IFNAMSIZ);
  }
  // The index, looked up while still inside the namespace, saves the caller a netlink round trip.
  unsigned int index = 0;
  if (!err && index_socket >= 0) {
    struct ifreq lookup;
    memset(&lookup, 0, sizeof lookup);
    memcpy(lookup.ifr_name, name, strnlen(name, IFNAMSIZ - 1));
    if (ioctl(index_socket, SIOCGIFINDEX, &lookup) == 0) index = (unsigned int)lookup.ifr_ifindex;
  }
  if (!err && index == 0) index = if_nametoindex(name);
  leave_netns(saved);
  if (!err && owner >= 0 && ioctl(fds[0], TUNSETOWNER, owner) < 0) {
    err = errno;
    failed = "ioctl(TUNSETOWNER)";
  }
  if (!err && group >= 0 && ioctl(fds[0], TUNSETGROUP, group) < 0) {
    err = errno;
    failed = "ioctl(TUNSETGROUP)";
  }
  // Persist last, so that a failure above leaves no device behind once the fds are closed.
  if (!err && persist) {
    uint64_t started = accounting_start();
    int set = ioctl(fds[0], TUNSETPERSIST, 1);
    err = set < 0 ? errno : 0;
    accounting_stop(SC_TUN_IOCTL, started);
    if (err) failed = "ioctl(TUNSETPERSIST)";
  }
  if (err) {
    for (int i = 0; i < opened; i++) close(fds[i]);
    throw_errno(env, err, failed, name);
    return NULL;
  }
  napi_value result, array, value;
  napi_create_object(env, &result);
  napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &value);
  napi_set_named_property(env, result, "name", value);
  napi_set_named_property(env, result, "index", make_int(env, (int32_t)index));
  napi_create_array_with_length(env, keep_fds ? opened : 0, &array);
  for (int i = 0; i < opened; i++) {
    if (keep_fds) {
      napi_set_element(env, array, i, make_int(env, fds[i]));
    } else {
      uint64_t started = accounting_start();
      close(fds[i]);
      accounting_stop(SC_TUN_CLOSE, started);
    }
  }
  napi_set_named_property(env, result, "fds", array);
  return result;
}

// setTunPersist(fd, on)
static napi_value set_tun_persist(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fd;
  bool on = false;
  if (argc < 2 || !get_int(env, argv[0], &fd)) return NULL;
  napi_get_value_bool(env, argv[1], &on);
  if (ioctl(fd, TUNSETPERSIST, on ? 1 : 0) < 0) {
    throw_errno(env, errno, "ioctl(TUNSETPERSIST)", NULL);
    return NULL;
  }
  return NULL;
}

// ---- files ------------------------------------------------------------------------------------

// openInNetns(nsPath, path, count) -> fds: opens a device node count times (vhost-net, /dev/tapN).
static napi_value open_device(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char path[4096];
  int32_t count = 1;
  if (argc < 1 || !get_string(env, argv[0], path, sizeof path, 0)) return NULL;
  if (argc > 1 && !get_int(env, argv[1], &count)) return NULL;
  if (count < 1 || count > MAX_QUEUES) {
    throw_type(env, "count must be 1..256");
    return NULL;
  }
  int fds[MAX_QUEUES];
  for (int i = 0; i < count; i++) {
    fds[i] = open(path, O_RDWR | O_CLOEXEC);
    if (fds[i] < 0) {
      int err = errno;
      for (int j = 0; j < i; j++) close(fds[j]);
      throw_errno(env, err, "open", path);
      return NULL;
    }
  }
  napi_value array;
  napi_create_array_with_length(env, count, &array);
  for (int i = 0; i < count; i++) napi_set_element(env, array, i, make_int(env, fds[i]));
  return array;
}

static napi_value close_fd(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fd;
  if (argc < 1 || !get_int(env, argv[0], &fd)) return NULL;
  if (close(fd) < 0 && errno != EINTR) {
    throw_errno(env, errno, "close", NULL);
    return NULL;
  }
  return NULL;
}

#ifndef SIOCGSKNS
#define SIOCGSKNS 0x894C  // linux/sockios.h since 4.9
#endif

// The namespace fd an ioctl of `request` on the fd in the call's first argument returns (the
// kernel makes it O_CLOEXEC); `name` is the call the error names.
static napi_value namespace_by_ioctl(napi_env env, napi_callback_info info, unsigned long request, const char *name) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fd;
  if (argc < 1 || !get_int(env, argv[0], &fd)) return NULL;
  int ns = ioctl(fd, request);
  if (ns < 0) {
    throw_errno(env, errno, name, NULL);
    return NULL;
  }
  return make_int(env, ns);
}

// socketNamespace(fd) -> fd: the network namespace a socket was made in (SIOCGSKNS), as a new
// O_CLOEXEC fd. A tap made through it lands exactly where that socket talks, with no path to look up.
static napi_value socket_namespace(napi_env env, napi_callback_info info) {
  return namespace_by_ioctl(env, info, SIOCGSKNS, "ioctl(SIOCGSKNS)");
}

// setInheritable(fd, on): clears FD_CLOEXEC so a spawned hypervisor keeps the fd.
static napi_value set_inheritable(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fd;
  bool on = true;
  if (argc < 1 || !get_int(env, argv[0], &fd)) return NULL;
  if (argc > 1) napi_get_value_bool(env, argv[1], &on);
  int flags = fcntl(fd, F_GETFD);
  if (flags < 0 || fcntl(fd, F_SETFD, on ? (flags & ~FD_CLOEXEC) : (flags | FD_CLOEXEC)) < 0) {
    throw_errno(env, errno, "fcntl(F_SETFD)", NULL);
    return NULL;
  }
  return NULL;
}

// sendWithFds(socketFd, data, fds) -> bytes sent: one message carrying fds (SCM_RIGHTS), as QEMU's
// QMP `getfd` and Cloud Hypervisor's API expect them. The socket is Node's own (non-blocking).
static napi_value send_with_fds(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t socket_fd;
  void *data;
  size_t len;
  if (argc < 3 || !get_int(env, argv[0], &socket_fd) || !get_buffer(env, argv[1], &data, &len)) return NULL;
  uint32_t count = 0;
  napi_get_array_length(env, argv[2], &count);
  if (count < 1 || count > 64) {
    throw_type(env, "fds must hold 1..64 descriptors");
    return NULL;
  }
  int fds[64];
  for (uint32_t i = 0; i < count; i++) {
    napi_value element;
    napi_get_element(env, argv[2], i, &element);
    if (!get_int(env, element, &fds[i])) return NULL;
  }
  char control[CMSG_SPACE(sizeof(int) * 64)];
  memset(control, 0, sizeof control);
  struct iovec iov = {.iov_base = data, .iov_len = len};
  struct msghdr message = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control,
                           .msg_controllen = CMSG_SPACE(sizeof(int) * count)};
  struct cmsghdr *header = CMSG_FIRSTHDR(&message);
  header->cmsg_level = SOL_SOCKET;
  header->cmsg_type = SCM_RIGHTS;
  header->cmsg_len = CMSG_LEN(sizeof(int) * count);
  memcpy(CMSG_DATA(header), fds, sizeof(int) * count);
  ssize_t sent;
  do {
    sent = sendmsg(socket_fd, &message, MSG_NOSIGNAL);
  } while (sent < 0 && errno == EINTR);
  if (sent < 0) {
    throw_errno(env, errno, "sendmsg(SCM_RIGHTS)", NULL);
    return NULL;
  }
  return make_int(env, (int32_t)sent);
}

// ---- named namespaces -------------------------------------------------------------------------

// Makes /var/run/netns (or the given directory) a shared mount point, as `ip netns add` does, so a
// namespace mounted there is seen by other mount namespaces that run `ip netns exec`.
static int make_shared_mount_dir(const char *dir) {
  if (mkdir(dir, 0755) < 0 && errno != EEXIST) return errno;
  if (mount("", dir, "none", MS_SHARED | MS_REC, NULL) == 0) return 0;
  if (errno != EINVAL) return errno;
  // Not a mount point yet: bind it onto itself, then make it shared.
  if (mount(dir, dir, "none", MS_BIND | MS_REC, NULL) < 0) return errno;
  if (mount("", dir, "none", MS_SHARED | MS_REC, NULL) < 0) return errno;
  return 0;
}

// createNetns(dir, name) -> path: a new network namespace kept alive by a bind mount at dir/name.
// The calling thread unshares into the new namespace only long enough to mount it, then goes back.
static napi_value create_netns(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char dir[2048], name[256], path[2400];
  if (argc < 2 || !get_string(env, argv[0], dir, sizeof dir, 0) || !get_string(env, argv[1], name, sizeof name, 0))
    return NULL;
  if (!name[0] || strchr(name, '/') || !strcmp(name, ".") || !strcmp(name, "..")) {
    throw_type(env, "namespace name must be a plain file name");
    return NULL;
  }
  snprintf(path, sizeof path, "%s/%s", dir, name);
  int err = make_shared_mount_dir(dir);
  if (err) {
    throw_errno(env, err, "mount(--make-shared)", dir);
    return NULL;
  }
  int fd = open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0);
  if (fd < 0) {
    throw_errno(env, errno, "create", path);
    return NULL;
  }
  close(fd);
  const char *failed = NULL;
  int home = home_netns(&failed);
  if (home < 0) {
    err = errno;
    unlink(path);
    throw_errno(env, err, "open", "/proc/thread-self/ns/net");
    return NULL;
  }
  if (unshare(CLONE_NEWNET) < 0) {
    err = errno;
    failed = "unshare(CLONE_NEWNET)";
  } else {
    if (mount("/proc/thread-self/ns/net", path, "none", MS_BIND, NULL) < 0) {
      err = errno;
      failed = "mount(bind)";
    }
    leave_netns(home);
  }
  if (failed) {
    unlink(path);
    throw_errno(env, err, failed, path);
    return NULL;
  }
  napi_value out;
  napi_create_string_utf8(env, path, NAPI_AUTO_LENGTH, &out);
  return out;
}

// deleteNetns(path): lazy unmount and remove, as `ip netns delete`. Missing is not an error.
static napi_value delete_netns(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char path[4096];
  if (argc < 1 || !get_string(env, argv[0], path, sizeof path, 0)) return NULL;
  if (umount2(path, MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT) {
    throw_errno(env, errno, "umount2", path);
    return NULL;
  }
  if (unlink(path) < 0 && errno != ENOENT) {
    throw_errno(env, errno, "unlink", path);
    return NULL;
  }
  return NULL;
}

// Defined at the end of the file.
static napi_value lock_file(napi_env env, napi_callback_info info);
static napi_value socket_namespace_cookie(napi_env env, napi_callback_info info);
static napi_value enter_netns_and_back(napi_env env, napi_callback_info info);
// ---- fd passing, receive side; tap name behind an fd ------------------------------------------

// receiveWithFds(socketFd, maxBytes) -> { data, fds } | null: one recvmsg on a non-blocking unix
// socket, with any SCM_RIGHTS fds it carries (CLOEXEC); null when nothing is waiting (EAGAIN). Used
// by the test server that stands in for Cloud Hypervisor's API socket.
static napi_value receive_with_fds(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t socket_fd, max_bytes;
  if (argc < 2 || !get_int(env, argv[0], &socket_fd) || !get_int(env, argv[1], &max_bytes)) return NULL;
  if (max_bytes < 1 || max_bytes > (1 << 20)) {
    throw_type(env, "maxBytes must be 1..1048576");
    return NULL;
  }
  void *data;
  napi_value buffer;
  napi_create_buffer(env, (size_t)max_bytes, &data, &buffer);
  char control[CMSG_SPACE(sizeof(int) * 64)];
  struct iovec iov = {.iov_base = data, .iov_len = (size_t)max_bytes};
  struct msghdr message = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control, .msg_controllen = sizeof control};
  ssize_t received;
  do {
    received = recvmsg(socket_fd, &message, MSG_CMSG_CLOEXEC);
  } while (received < 0 && errno == EINTR);
  if (received < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      napi_value nothing;
      napi_get_null(env, &nothing);
      return nothing;
    }
    throw_errno(env, errno, "recvmsg", NULL);
    return NULL;
  }
  napi_value fds, out, slice;
  napi_create_array(env, &fds);
  uint32_t count = 0;
  for (struct cmsghdr *header = CMSG_FIRSTHDR(&message); header; header = CMSG_NXTHDR(&message, header)) {
    if (header->cmsg_level != SOL_SOCKET || header->cmsg_type != SCM_RIGHTS) continue;
    size_t n = (header->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    int *passed = (int *)CMSG_DATA(header);
    for (size_t i = 0; i < n; i++) napi_set_element(env, fds, count++, make_int(env, passed[i]));
  }
  napi_create_buffer_copy(env, (size_t)received, data, NULL, &slice);
  napi_create_object(env, &out);
  napi_set_named_property(env, out, "data", slice);
  napi_set_named_property(env, out, "fds", fds);
  return out;
}

// tunInterfaceName(fd) -> the name of the tun/tap device an open /dev/net/tun fd is attached to
// (TUNGETIFF), so a receiver can tell which tap's queue it was given.
static napi_value tun_interface_name(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fd;
  if (argc < 1 || !get_int(env, argv[0], &fd)) return NULL;
  struct ifreq request;
  memset(&request, 0, sizeof request);
  if (ioctl(fd, TUNGETIFF, &request) < 0) {
    throw_errno(env, errno, "ioctl(TUNGETIFF)", NULL);
    return NULL;
  }
  napi_value out;
  napi_create_string_utf8(env, request.ifr_name, strnlen(request.ifr_name, IFNAMSIZ), &out);
  return out;
}

#ifndef TUNGETDEVNETNS
#define TUNGETDEVNETNS _IO('T', 227)  // linux/if_tun.h since 5.2
#endif

// tunNamespace(fd) -> fd: the network namespace of the tun/tap device an open /dev/net/tun fd is
// attached to (TUNGETDEVNETNS), as a new O_CLOEXEC fd: a tap's fd held by a process outside that
// namespace (a VMM handed it) keeps the namespace alive, and this is the way back into it.
static napi_value tun_namespace(napi_env env, napi_callback_info info) {
  return namespace_by_ioctl(env, info, TUNGETDEVNETNS, "ioctl(TUNGETDEVNETNS)");
}

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434  // Linux 5.3; the same number on every architecture
#endif
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438  // Linux 5.6
#endif

// pidfdOpen(pid) -> fd: a pidfd of a process (pidfd_open, O_CLOEXEC by the kernel), for pidfdGetfd.
// Called through syscall(): glibc has had a wrapper only since 2.36, and the prebuild runs on 2.33.
static napi_value pidfd_open_call(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t pid;
  if (argc < 1 || !get_int(env, argv[0], &pid)) return NULL;
  long fd = syscall(SYS_pidfd_open, (pid_t)pid, 0);
  if (fd < 0) {
    char detail[32];
    snprintf(detail, sizeof detail, "pid %d", pid);
    throw_errno(env, errno, "pidfd_open", detail);
    return NULL;
  }
  return make_int(env, (int32_t)fd);
}

// pidfdGetfd(pidfd, fd) -> fd: a copy in this process of another process's open fd (pidfd_getfd,
// O_CLOEXEC by the kernel; needs ptrace access to it: EPERM without), so the namespace of a socket
// or tap it holds can be asked of the kernel.
static napi_value pidfd_getfd_call(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t pidfd, target;
  if (argc < 2 || !get_int(env, argv[0], &pidfd) || !get_int(env, argv[1], &target)) return NULL;
  long fd = syscall(SYS_pidfd_getfd, pidfd, target, 0);
  if (fd < 0) {
    char detail[32];
    snprintf(detail, sizeof detail, "fd %d", target);
    throw_errno(env, errno, "pidfd_getfd", detail);
    return NULL;
  }
  return make_int(env, (int32_t)fd);
}

// The interface this shim gives the JS (src/native/binding.ts NATIVE_INTERFACE_VERSION): bumped with
// every change of its functions' set or signatures, so JS and a .node from different builds refuse
// each other with one clear error instead of a missing function in the middle of an attach.
#define VCNET_NATIVE_INTERFACE_VERSION 5

#define EXPORT(name, fn)                                                                           \
  do {                                                                                             \
    napi_value f;                                                                                  \
    napi_create_function(env, name, NAPI_AUTO_LENGTH, fn, NULL, &f);                               \
    napi_set_named_property(env, exports, name, f);                                                \
  } while (0)

static napi_value init(napi_env env, napi_value exports) {
  // The loading thread's home namespace fd is opened now, with the module, rather than at the first
  // switch: it is there for the life of the thread, and a count of open fds taken before and after
  // some work must not see it appear in between. A failure here is retried at the first switch.
  const char *not_yet = NULL;
  (void)home_netns(&not_yet);
  napi_add_env_cleanup_hook(env, close_home_netns, NULL);
  EXPORT("openNetlink", open_netlink);
  EXPORT("netlinkPortId", netlink_port_id);
  EXPORT("addMembership", add_membership);
  EXPORT("netlinkSend", netlink_send);
  EXPORT("netlinkRecv", netlink_recv);
  EXPORT("netlinkSendInBackground", netlink_send_in_background);
  EXPORT("watchReadable", watch_readable);
  EXPORT("unwatch", unwatch);
  EXPORT("createTun", create_tun);
  EXPORT("setTunPersist", set_tun_persist);
  EXPORT("openDevice", open_device);
  EXPORT("closeFd", close_fd);
  EXPORT("socketNamespace", socket_namespace);
  EXPORT("setInheritable", set_inheritable);
  EXPORT("sendWithFds", send_with_fds);
  EXPORT("createNetns", create_netns);
  EXPORT("deleteNetns", delete_netns);
  EXPORT("syscallTime", syscall_time);
  EXPORT("threadCpuNs", thread_cpu_ns);
  EXPORT("lockFile", lock_file);
  EXPORT("socketNamespaceCookie", socket_namespace_cookie);
  EXPORT("enterNetnsAndBack", enter_netns_and_back);
  EXPORT("receiveWithFds", receive_with_fds);
  EXPORT("tunInterfaceName", tun_interface_name);
  EXPORT("writeFileInNetns", write_file_in_netns);
  EXPORT("readFileInNetns", read_file_in_netns);
  EXPORT("tunNamespace", tun_namespace);
  EXPORT("pidfdOpen", pidfd_open_call);
  EXPORT("pidfdGetfd", pidfd_getfd_call);
  napi_value version;
  napi_create_uint32(env, VCNET_NATIVE_INTERFACE_VERSION, &version);
  napi_set_named_property(env, exports, "interfaceVersion", version);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)

// ---- advisory file locks ----------------------------------------------------------------------

// lockFile(fd, exclusive) -> boolean: flock(LOCK_EX or LOCK_SH | LOCK_NB). False when another open
// file description holds it (the caller polls); the kernel drops the lock when the fd is closed or
// the process dies, so a lock is never left held by a dead process.
static napi_value lock_file(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fd;
  bool exclusive = true;
  if (argc < 1 || !get_int(env, argv[0], &fd)) return NULL;
  if (argc > 1) napi_get_value_bool(env, argv[1], &exclusive);
  int result;
  do {
    result = flock(fd, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB);
  } while (result < 0 && errno == EINTR);
  napi_value out;
  if (result == 0) {
    napi_get_boolean(env, true, &out);
    return out;
  }
  if (errno == EWOULDBLOCK) {
    napi_get_boolean(env, false, &out);
    return out;
  }
  throw_errno(env, errno, "flock", NULL);
  return NULL;
}

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif

// socketNamespaceCookie(fd) -> string: the cookie (SO_NETNS_COOKIE, Linux 5.14) of the network
// namespace a socket was made in: a 64-bit number the kernel never gives to another namespace, unlike
// the nsfs inode number, which is reused once the namespace is freed. Read on the netlink socket an
// operation then works through, so checking a namespace costs no socket of its own.
static napi_value socket_namespace_cookie(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fd;
  if (argc < 1 || !get_int(env, argv[0], &fd)) return NULL;
  uint64_t cookie = 0;
  socklen_t len = sizeof cookie;
  if (getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &len) < 0) {
    throw_errno(env, errno, "getsockopt(SO_NETNS_COOKIE)", NULL);
    return NULL;
  }
  char text[32];
  snprintf(text, sizeof text, "%llu", (unsigned long long)cookie);
  napi_value out;
  napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &out);
  return out;
}

// enterNetnsAndBack(fd): enters the network namespace of an nsfs fd on this thread and returns at once
// (setns there and back), making nothing inside it: the check that vcnet may work there (EPERM
// without CAP_SYS_ADMIN) and that it is a network namespace (EINVAL for another type), before the
// operation opens its one socket there.
static napi_value enter_netns_and_back(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fd;
  if (argc < 1 || !get_int(env, argv[0], &fd)) return NULL;
  int saved;
  const char *failed = NULL;
  int err = enter_netns_at(NULL, fd, &saved, &failed);
  if (err) {
    throw_errno(env, err, failed, NULL);
    return NULL;
  }
  leave_netns(saved);
  return NULL;
}
