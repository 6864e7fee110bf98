// warmpool-placeholder: the CNI plugin of late-network pool sandboxes.
//
// containerd (1.6) refuses a sandbox whose CNI result has no CNI_IFNAME
// (eth0) with an IP ("failed to find network info"), so a pool sandbox made
// before its pod is known needs *some* network. This plugin gives it one that
// reaches nothing and costs nothing to undo:
//
//   ADD   in CNI_NETNS: a veth pair whose both ends stay in the pod's netns
//         (CNI_IFNAME and "wpph0"), CNI_IFNAME marked with the interface alias
//         "warmpool-placeholder" and given 169.254.A.B/32 (link-local, no
//         route, no host side; A.B from a hash of CNI_CONTAINERID). Prints
//         the result containerd needs.
//   DEL   deletes CNI_IFNAME only if it carries the placeholder alias (so a
//         real pod interface set up later by warmpoold is never touched); a
//         missing netns or interface is success (DEL is idempotent).
//   CHECK, STATUS, GC: success.  VERSION: the versions below.
//
// At hand-off warmpoold runs this plugin's DEL, then the node's real CNI
// conflist ADD with the real pod's identity (daemon/late_network.h).
// Plain C, static, no dependencies: it runs once per pool sandbox.

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_addr.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <arpa/inet.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define PLACEHOLDER_ALIAS "warmpool-placeholder"
#define PEER_NAME "wpph0"

// CNI error codes (spec: 4 invalid config, 7 invalid env, 11 try again later).
static void fail(int code, const char* msg, const char* details) {
  const char* version = "1.0.0";
  printf("{\"cniVersion\":\"%s\",\"code\":%d,\"msg\":\"%s\",\"details\":\"%s\"}\n", version, code,
         msg, details ? details : "");
  exit(1);
}

// ------------------------------------------------------------- netlink --

struct req {
  struct nlmsghdr nh;
  char buf[1024];
};

static struct rtattr* add_attr(struct nlmsghdr* nh, size_t cap, int type, const void* data,
                               size_t len) {
  size_t rta_len = RTA_LENGTH(len);
  if (NLMSG_ALIGN(nh->nlmsg_len) + RTA_ALIGN(rta_len) > cap) fail(11, "netlink message too long", "");
  struct rtattr* rta = (struct rtattr*)((char*)nh + NLMSG_ALIGN(nh->nlmsg_len));
  rta->rta_type = type;
  rta->rta_len = rta_len;
  if (len) memcpy(RTA_DATA(rta), data, len);
  nh->nlmsg_len = NLMSG_ALIGN(nh->nlmsg_len) + RTA_ALIGN(rta_len);
  return rta;
}

static void end_nest(struct nlmsghdr* nh, struct rtattr* nest) {
  nest->rta_len = (char*)nh + nh->nlmsg_len - (char*)nest;
}

// Sends one request and waits for its ack. Returns 0 or -errno. With `reply`
// (RTM_GETLINK), the first answer message is copied there instead.
static int talk(struct nlmsghdr* nh, char* reply, size_t reply_cap) {
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (fd < 0) return -errno;
  struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
  nh->nlmsg_seq = 1;
  if (!reply) nh->nlmsg_flags |= NLM_F_ACK;
  if (sendto(fd, nh, nh->nlmsg_len, 0, (struct sockaddr*)&sa, sizeof(sa)) < 0) {
    int e = errno;
    close(fd);
    return -e;
  }
  char buf[8192];
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      close(fd);
      return -e;
    }
    for (struct nlmsghdr* h = (struct nlmsghdr*)buf; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
      if (h->nlmsg_type == NLMSG_ERROR) {
        struct nlmsgerr* err = NLMSG_DATA(h);
        close(fd);
        return err->error;
      }
      if (reply && h->nlmsg_len <= reply_cap) {
        memcpy(reply, h, h->nlmsg_len);
        close(fd);
        return 0;
      }
    }
  }
}

static int link_index(const char* name) {
  struct req r;
  memset(&r, 0, sizeof(r));
  r.nh.nlmsg_len = NLMSG_LENGTH(sizeof(struct ifinfomsg));
  r.nh.nlmsg_type = RTM_GETLINK;
  r.nh.nlmsg_flags = NLM_F_REQUEST;
  add_attr(&r.nh, sizeof(r), IFLA_IFNAME, name, strlen(name) + 1);
  char reply[8192];
  int rc = talk(&r.nh, reply, sizeof(reply));
  if (rc < 0) return rc;
  struct ifinfomsg* ifi = NLMSG_DATA((struct nlmsghdr*)reply);
  return ifi->ifi_index;
}

// The alias of link `name` into `out` ("" if none). 0 or -errno.
static int link_alias(const char* name, char* out, size_t cap) {
  struct req r;
  memset(&r, 0, sizeof(r));
  r.nh.nlmsg_len = NLMSG_LENGTH(sizeof(struct ifinfomsg));
  r.nh.nlmsg_type = RTM_GETLINK;
  r.nh.nlmsg_flags = NLM_F_REQUEST;
  add_attr(&r.nh, sizeof(r), IFLA_IFNAME, name, strlen(name) + 1);
  char reply[8192];
  int rc = talk(&r.nh, reply, sizeof(reply));
  if (rc < 0) return rc;
  struct nlmsghdr* h = (struct nlmsghdr*)reply;
  out[0] = 0;
  int len = h->nlmsg_len - NLMSG_LENGTH(sizeof(struct ifinfomsg));
  for (struct rtattr* a = IFLA_RTA(NLMSG_DATA(h)); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
    if (a->rta_type == IFLA_IFALIAS) {
      snprintf(out, cap, "%.*s", (int)RTA_PAYLOAD(a), (const char*)RTA_DATA(a));
    }
  }
  return 0;
}

static int create_veth(const char* name, const char* peer) {
  struct req r;
  memset(&r, 0, sizeof(r));
  r.nh.nlmsg_len = NLMSG_LENGTH(sizeof(struct ifinfomsg));
  r.nh.nlmsg_type = RTM_NEWLINK;
  r.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL;
  add_attr(&r.nh, sizeof(r), IFLA_IFNAME, name, strlen(name) + 1);
  struct rtattr* info = add_attr(&r.nh, sizeof(r), IFLA_LINKINFO, NULL, 0);
  add_attr(&r.nh, sizeof(r), IFLA_INFO_KIND, "veth", 4);
  struct rtattr* data = add_attr(&r.nh, sizeof(r), IFLA_INFO_DATA, NULL, 0);
  struct rtattr* peer_info = add_attr(&r.nh, sizeof(r), VETH_INFO_PEER, NULL, 0);
  struct ifinfomsg peer_ifi = {.ifi_family = AF_UNSPEC};
  // The peer's ifinfomsg sits right after the attribute header.
  if (NLMSG_ALIGN(r.nh.nlmsg_len) + sizeof(peer_ifi) > sizeof(r)) fail(11, "netlink message too long", "");
  memcpy((char*)&r.nh + r.nh.nlmsg_len, &peer_ifi, sizeof(peer_ifi));
  r.nh.nlmsg_len += NLMSG_ALIGN(sizeof(peer_ifi));
  add_attr(&r.nh, sizeof(r), IFLA_IFNAME, peer, strlen(peer) + 1);
  end_nest(&r.nh, peer_info);
  end_nest(&r.nh, data);
  end_nest(&r.nh, info);
  return talk(&r.nh, NULL, 0);
}

// Brings link `index` up, with `alias` when non-null (the kernel takes an
// alias on an existing link only, not at creation).
static int set_up(int index, const char* alias) {
  struct req r;
  memset(&r, 0, sizeof(r));
  r.nh.nlmsg_len = NLMSG_LENGTH(sizeof(struct ifinfomsg));
  r.nh.nlmsg_type = RTM_NEWLINK;
  r.nh.nlmsg_flags = NLM_F_REQUEST;
  struct ifinfomsg* ifi = NLMSG_DATA(&r.nh);
  ifi->ifi_index = index;
  ifi->ifi_flags = IFF_UP;
  ifi->ifi_change = IFF_UP;
  if (alias) add_attr(&r.nh, sizeof(r), IFLA_IFALIAS, alias, strlen(alias));
  return talk(&r.nh, NULL, 0);
}

static int add_address(int index, uint32_t addr_be) {
  struct req r;
  memset(&r, 0, sizeof(r));
  r.nh.nlmsg_len = NLMSG_LENGTH(sizeof(struct ifaddrmsg));
  r.nh.nlmsg_type = RTM_NEWADDR;
  r.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL;
  struct ifaddrmsg* ifa = NLMSG_DATA(&r.nh);
  ifa->ifa_family = AF_INET;
  ifa->ifa_prefixlen = 32;
  ifa->ifa_scope = RT_SCOPE_LINK;
  ifa->ifa_index = index;
  add_attr(&r.nh, sizeof(r), IFA_LOCAL, &addr_be, 4);
  add_attr(&r.nh, sizeof(r), IFA_ADDRESS, &addr_be, 4);
  return talk(&r.nh, NULL, 0);
}

static int delete_link(int index) {
  struct req r;
  memset(&r, 0, sizeof(r));
  r.nh.nlmsg_len = NLMSG_LENGTH(sizeof(struct ifinfomsg));
  r.nh.nlmsg_type = RTM_DELLINK;
  r.nh.nlmsg_flags = NLM_F_REQUEST;
  struct ifinfomsg* ifi = NLMSG_DATA(&r.nh);
  ifi->ifi_index = index;
  return talk(&r.nh, NULL, 0);
}

// ---------------------------------------------------------------- main --

static const char* env(const char* name, int required) {
  const char* v = getenv(name);
  if ((!v || !*v) && required) {
    char msg[128];
    snprintf(msg, sizeof(msg), "%s is not set", name);
    fail(7, msg, "");
  }
  return v ? v : "";
}

// The config's cniVersion (results must carry it), "1.0.0" when absent.
static void config_version(char* out, size_t cap) {
  static char config[65536];
  size_t n = fread(config, 1, sizeof(config) - 1, stdin);
  config[n] = 0;
  snprintf(out, cap, "1.0.0");
  const char* k = strstr(config, "\"cniVersion\"");
  if (!k) return;
  k = strchr(k + 12, '"');
  if (!k) return;
  const char* end = strchr(k + 1, '"');
  if (!end || end - k - 1 <= 0 || (size_t)(end - k) >= cap) return;
  snprintf(out, cap, "%.*s", (int)(end - k - 1), k + 1);
}

// 0: entered; 1: the netns is gone.
static int enter_netns(const char* path) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return 1;
    fail(11, "cannot open CNI_NETNS", strerror(errno));
  }
  if (setns(fd, CLONE_NEWNET) != 0) {
    // An unmounted netns bind-mount point is a plain file: the netns is gone.
    if (errno == EINVAL) return 1;
    fail(11, "cannot enter CNI_NETNS", strerror(errno));
  }
  close(fd);
  return 0;
}

static uint32_t fnv1a(const char* s) {
  uint32_t h = 2166136261u;
  for (; *s; ++s) h = (h ^ (unsigned char)*s) * 16777619u;
  return h;
}

static int cmd_add(void) {
  char version[32];
  config_version(version, sizeof(version));
  const char* netns = env("CNI_NETNS", 1);
  const char* ifname = env("CNI_IFNAME", 1);
  const char* id = env("CNI_CONTAINERID", 1);
  if (strlen(ifname) >= IFNAMSIZ) fail(4, "CNI_IFNAME too long", ifname);
  if (enter_netns(netns) != 0) fail(11, "CNI_NETNS does not exist", netns);
  int rc = create_veth(ifname, PEER_NAME);
  if (rc < 0) fail(11, "creating the placeholder interface failed", strerror(-rc));
  int index = link_index(ifname);
  int peer = link_index(PEER_NAME);
  if (index < 0 || peer < 0) fail(11, "placeholder interface vanished", "");
  // 169.254.1.1 .. 169.254.254.254: never .0 or .255 in either byte.
  uint32_t h = fnv1a(id);
  unsigned a = 1 + (h >> 8) % 254, b = 1 + (h & 0xff) % 254;
  char address[32];
  snprintf(address, sizeof(address), "169.254.%u.%u", a, b);
  struct in_addr in;
  inet_pton(AF_INET, address, &in);
  if ((rc = add_address(index, in.s_addr)) < 0) fail(11, "adding the placeholder address failed", strerror(-rc));
  if ((rc = set_up(peer, NULL)) < 0 || (rc = set_up(index, PLACEHOLDER_ALIAS)) < 0) fail(11, "setting the placeholder up failed", strerror(-rc));
  const int legacy = strncmp(version, "0.", 2) == 0;
  printf("{\"cniVersion\":\"%s\",\"interfaces\":[{\"name\":\"%s\",\"sandbox\":\"%s\"}],"
         "\"ips\":[{%s\"address\":\"%s/32\",\"interface\":0}],\"dns\":{}}\n",
         version, ifname, netns, legacy ? "\"version\":\"4\"," : "", address);
  return 0;
}

static int cmd_del(void) {
  char version[32];
  config_version(version, sizeof(version));
  const char* netns = env("CNI_NETNS", 0);
  const char* ifname = env("CNI_IFNAME", 1);
  if (!*netns || enter_netns(netns) != 0) return 0;
  char alias[128];
  if (link_alias(ifname, alias, sizeof(alias)) < 0) return 0;  // no such interface
  if (strcmp(alias, PLACEHOLDER_ALIAS) != 0) return 0;         // not ours: leave it
  int index = link_index(ifname);
  if (index < 0) return 0;
  int rc = delete_link(index);
  if (rc < 0 && rc != -ENODEV) fail(11, "deleting the placeholder interface failed", strerror(-rc));
  return 0;
}

int main(void) {
  const char* command = getenv("CNI_COMMAND");
  if (!command) fail(7, "CNI_COMMAND is not set", "");
  if (strcmp(command, "VERSION") == 0) {
    printf("{\"cniVersion\":\"1.0.0\",\"supportedVersions\":[\"0.3.0\",\"0.3.1\",\"0.4.0\",\"1.0.0\"]}\n");
    return 0;
  }
  if (strcmp(command, "ADD") == 0) return cmd_add();
  if (strcmp(command, "DEL") == 0) return cmd_del();
  if (strcmp(command, "CHECK") == 0 || strcmp(command, "STATUS") == 0 ||
      strcmp(command, "GC") == 0) {
    return 0;
  }
  fail(4, "unknown CNI_COMMAND", command);
  return 1;
}
