// The tcfilter attach of one endpoint written directly in C, as the benchmark's lower reference:
// the same syscalls vcnet's attach makes (enter the pod namespace, open /dev/net/tun, TUNSETIFF,
// SIOCGIFINDEX, leave, TUNSETOWNER/TUNSETGROUP, TUNSETPERSIST, close; then one netlink batch of the same six requests and
// their acks), with nothing around them but the encoding. It measures what an attach costs when no
// language runtime adds anything, and splits it like `vcnet bench attach` does: the floor (tun
// ioctls + netlink sendto/recv) and the syscalls outside it (open, close, namespace switches).
//
// Usage: tcfilter-attach <namespace path> <pod link> <iterations> [keep]
// Prints one JSON object of medians (µs). Each iteration is undone (ingress qdisc of the pod link,
// the tap) outside the timed part, like the benchmark's detach, so each attach starts as cold.
// With `keep`, the last attach stays (a test compares it with what vcnet's attach makes).
// Not part of vcnet: `npm run bench` compiles and runs it in the same run as vcnet's attach.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <linux/if.h>
#include <linux/if_ether.h>
#include <linux/if_tun.h>
#include <linux/netlink.h>
#include <linux/pkt_cls.h>
#include <linux/pkt_sched.h>
#include <linux/rtnetlink.h>
#include <linux/tc_act/tc_mirred.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define TAP_NAME "tap0_kata"
#define VCNET_LINK_GROUP 0x7663
#define FILTER_PRIORITY 49152
#define MAX_ITERATIONS 10000

enum kind { TUN_OPEN, TUN_IOCTL, TUN_CLOSE, NETNS_SWITCH, NETLINK_SEND, NETLINK_RECV, KINDS };
static const char *const kind_names[KINDS] = {"tunOpen", "tunIoctl", "tunClose", "netnsSwitch", "netlinkSend", "netlinkRecv"};
static uint64_t spent[KINDS];

static uint64_t now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

#define TIMED(kind, call)                                                                                  \
  ({                                                                                                       \
    uint64_t started_ = now_ns();                                                                          \
    __typeof__(call) result_ = (call);                                                                     \
    spent[kind] += now_ns() - started_;                                                                    \
    result_;                                                                                               \
  })

static void die(const char *what) {
  fprintf(stderr, "tcfilter-attach: %s: %s\n", what, strerror(errno));
  exit(1);
}

// ---- a minimal netlink message writer -------------------------------------------------------------

static char buffer[8192];
static size_t used;
static uint32_t sequence;

static void *put(const void *data, size_t length) {
  void *at = buffer + used;
  if (data) memcpy(at, data, length);
  else memset(at, 0, length);
  used += NLMSG_ALIGN(length);
  return at;
}

static struct nlmsghdr *begin(uint16_t type, uint16_t flags) {
  struct nlmsghdr *header = put(NULL, sizeof *header);
  header->nlmsg_type = type;
  header->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | flags;
  header->nlmsg_seq = ++sequence;
  return header;
}

static void end(struct nlmsghdr *header) { header->nlmsg_len = (uint32_t)(buffer + used - (char *)header); }

static struct rtattr *attribute(uint16_t type, const void *data, size_t length) {
  struct rtattr *attr = put(NULL, RTA_LENGTH(0));
  attr->rta_type = type;
  attr->rta_len = (uint16_t)RTA_LENGTH(length);
  if (length) put(data, length);
  return attr;
}

static void close_nest(struct rtattr *nest) { nest->rta_len = (uint16_t)(buffer + used - (char *)nest); }

static void set_link(int index, int group, int mtu) {
  struct nlmsghdr *header = begin(RTM_NEWLINK, 0);
  struct ifinfomsg *info = put(NULL, sizeof *info);
  info->ifi_index = index;
  if (group >= 0) attribute(IFLA_GROUP, &group, sizeof group);
  if (mtu > 0) {
    attribute(IFLA_MTU, &mtu, sizeof mtu);
    info->ifi_flags = IFF_UP;
    info->ifi_change = IFF_UP;
  }
  end(header);
}

static void ingress_qdisc(uint16_t type, uint16_t flags, int index) {
  struct nlmsghdr *header = begin(type, flags);
  struct tcmsg *tc = put(NULL, sizeof *tc);
  tc->tcm_ifindex = index;
  tc->tcm_handle = TC_H_MAKE(TC_H_INGRESS, 0);
  tc->tcm_parent = TC_H_INGRESS;
  if (type == RTM_NEWQDISC) attribute(TCA_KIND, "ingress", sizeof "ingress");
  end(header);
}

// u32 match-all (one key 0/0, terminal) with one action: mirred egress redirect to `target`, stolen.
static void redirect_filter(int index, int target) {
  struct nlmsghdr *header = begin(RTM_NEWTFILTER, NLM_F_CREATE | NLM_F_EXCL);
  struct tcmsg *tc = put(NULL, sizeof *tc);
  tc->tcm_ifindex = index;
  tc->tcm_parent = TC_H_MAKE(TC_H_INGRESS, 0);
  tc->tcm_info = TC_H_MAKE((uint32_t)FILTER_PRIORITY << 16, htons(ETH_P_ALL));
  attribute(TCA_KIND, "u32", sizeof "u32");
  struct rtattr *options = attribute(TCA_OPTIONS, NULL, 0);
  struct {
    struct tc_u32_sel sel;
    struct tc_u32_key key;
  } selector;
  memset(&selector, 0, sizeof selector);
  selector.sel.flags = TC_U32_TERMINAL;
  selector.sel.nkeys = 1;
  attribute(TCA_U32_SEL, &selector, sizeof selector);
  struct rtattr *actions = attribute(TCA_U32_ACT, NULL, 0);
  struct rtattr *first = attribute(1, NULL, 0);
  attribute(TCA_ACT_KIND, "mirred", sizeof "mirred");
  struct rtattr *action_options = attribute(TCA_ACT_OPTIONS, NULL, 0);
  struct tc_mirred parms;
  memset(&parms, 0, sizeof parms);
  parms.action = TC_ACT_STOLEN;
  parms.eaction = TCA_EGRESS_REDIR;
  parms.ifindex = (uint32_t)target;
  attribute(TCA_MIRRED_PARMS, &parms, sizeof parms);
  close_nest(action_options);
  close_nest(first);
  close_nest(actions);
  close_nest(options);
  end(header);
}

static void delete_link(int index) {
  struct nlmsghdr *header = begin(RTM_DELLINK, 0);
  struct ifinfomsg *info = put(NULL, sizeof *info);
  info->ifi_index = index;
  end(header);
}

// Sends the batch and reads acks until `expected` arrived; fails on any error ack.
static void exchange(int fd, int expected, int timed) {
  struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
  ssize_t sent = timed ? TIMED(NETLINK_SEND, sendto(fd, buffer, used, 0, (struct sockaddr *)&kernel, sizeof kernel))
                       : sendto(fd, buffer, used, 0, (struct sockaddr *)&kernel, sizeof kernel);
  if (sent < 0) die("sendto");
  used = 0;
  static char reply[65536];
  while (expected > 0) {
    ssize_t got = timed ? TIMED(NETLINK_RECV, recv(fd, reply, sizeof reply, 0)) : recv(fd, reply, sizeof reply, 0);
    if (got < 0) die("recv");
    for (struct nlmsghdr *message = (struct nlmsghdr *)reply; NLMSG_OK(message, (size_t)got);
         message = NLMSG_NEXT(message, got)) {
      if (message->nlmsg_type != NLMSG_ERROR) continue;
      struct nlmsgerr *error = NLMSG_DATA(message);
      if (error->error) {
        errno = -error->error;
        fprintf(stderr, "request %u: ", message->nlmsg_seq);
        die("refused");
      }
      expected--;
    }
  }
}

static int compare(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double median(double *values, int count) {
  qsort(values, (size_t)count, sizeof *values, compare);
  return count % 2 ? values[count / 2] : (values[count / 2 - 1] + values[count / 2]) / 2;
}

int main(int argc, char **argv) {
  if (argc != 4 && !(argc == 5 && strcmp(argv[4], "keep") == 0)) {
    fprintf(stderr, "usage: tcfilter-attach <namespace path> <pod link> <iterations> [keep]\n");
    return 2;
  }
  int iterations = atoi(argv[3]);
  if (iterations < 1 || iterations > MAX_ITERATIONS) {
    fprintf(stderr, "iterations: 1..%d\n", MAX_ITERATIONS);
    return 2;
  }
  int home = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  int target = open(argv[1], O_RDONLY | O_CLOEXEC);
  if (home < 0 || target < 0) die("open namespace");
  if (setns(target, CLONE_NEWNET) < 0) die("setns");
  int route = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  struct ifreq lookup;
  memset(&lookup, 0, sizeof lookup);
  strncpy(lookup.ifr_name, argv[2], IFNAMSIZ - 1);
  if (route < 0 || ioctl(route, SIOCGIFINDEX, &lookup) < 0) die(argv[2]);
  int pod_index = lookup.ifr_ifindex;
  if (setns(home, CLONE_NEWNET) < 0) die("setns home");
  struct sockaddr_nl local = {.nl_family = AF_NETLINK};
  if (bind(route, (struct sockaddr *)&local, sizeof local) < 0) die("bind");

  double *attach = calloc((size_t)iterations, sizeof *attach);
  double *floor = calloc((size_t)iterations, sizeof *floor);
  double *per_kind[KINDS];
  for (int kind = 0; kind < KINDS; kind++) per_kind[kind] = calloc((size_t)iterations, sizeof(double));
  for (int iteration = 0; iteration < iterations; iteration++) {
    memset(spent, 0, sizeof spent);
    uint64_t started = now_ns();
    if (TIMED(NETNS_SWITCH, setns(target, CLONE_NEWNET)) < 0) die("setns");
    int tun = TIMED(TUN_OPEN, open("/dev/net/tun", O_RDWR | O_CLOEXEC));
    if (tun < 0) die("open /dev/net/tun");
    struct ifreq request;
    memset(&request, 0, sizeof request);
    request.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | IFF_TUN_EXCL;
    strncpy(request.ifr_name, TAP_NAME, IFNAMSIZ - 1);
    if (TIMED(TUN_IOCTL, ioctl(tun, TUNSETIFF, &request)) < 0) die("TUNSETIFF");
    memset(&lookup, 0, sizeof lookup);
    strncpy(lookup.ifr_name, TAP_NAME, IFNAMSIZ - 1);
    if (ioctl(route, SIOCGIFINDEX, &lookup) < 0) die("SIOCGIFINDEX");
    int tap_index = lookup.ifr_ifindex;
    if (TIMED(NETNS_SWITCH, setns(home, CLONE_NEWNET)) < 0) die("setns home");
    // Owner and group as vcnet gives its taps (the creating process's euid/egid); untimed, as in vcnet.
    if (ioctl(tun, TUNSETOWNER, geteuid()) < 0) die("TUNSETOWNER");
    if (ioctl(tun, TUNSETGROUP, getegid()) < 0) die("TUNSETGROUP");
    if (TIMED(TUN_IOCTL, ioctl(tun, TUNSETPERSIST, 1)) < 0) die("TUNSETPERSIST");
    TIMED(TUN_CLOSE, close(tun));
    set_link(tap_index, VCNET_LINK_GROUP, 0);
    set_link(tap_index, -1, 1500);
    ingress_qdisc(RTM_NEWQDISC, NLM_F_CREATE | NLM_F_EXCL, tap_index);
    ingress_qdisc(RTM_NEWQDISC, NLM_F_CREATE | NLM_F_EXCL, pod_index);
    redirect_filter(pod_index, tap_index);
    redirect_filter(tap_index, pod_index);
    exchange(route, 6, 1);
    attach[iteration] = (double)(now_ns() - started) / 1000;
    floor[iteration] = (double)(spent[TUN_IOCTL] + spent[NETLINK_SEND] + spent[NETLINK_RECV]) / 1000;
    for (int kind = 0; kind < KINDS; kind++) per_kind[kind][iteration] = (double)spent[kind] / 1000;
    // Undone outside the timed part, as the benchmark's detach.
    if (argc == 5 && iteration == iterations - 1) break;
    ingress_qdisc(RTM_DELQDISC, 0, pod_index);
    delete_link(tap_index);
    exchange(route, 2, 0);
  }
  double attach_us = median(attach, iterations), floor_us = median(floor, iterations);
  double outside = 0;
  printf("{\"iterations\":%d,\"attach_us\":%.0f,\"floor_us\":%.0f,\"floor_ratio\":%.2f,\"syscalls_us\":{", iterations,
         attach_us, floor_us, attach_us / (floor_us > 1 ? floor_us : 1));
  for (int kind = 0; kind < KINDS; kind++) {
    double value = median(per_kind[kind], iterations);
    if (kind == TUN_OPEN || kind == TUN_CLOSE || kind == NETNS_SWITCH) outside += value;
    printf("%s\"%s\":%.0f", kind ? "," : "", kind_names[kind], value);
  }
  printf("},\"outside_floor_us\":{\"syscalls\":%.0f,\"other\":%.0f}}\n", outside,
         attach_us - floor_us - outside > 0 ? attach_us - floor_us - outside : 0);
  return 0;
}
