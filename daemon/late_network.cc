#include "daemon/late_network.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <thread>

namespace warmpool {
namespace {

using json = nlohmann::json;
using Net = AdoptionRecord::LateNetwork;

constexpr const char* kIfName = "eth0";
constexpr const char* kIngressBandwidth = "kubernetes.io/ingress-bandwidth";
constexpr const char* kEgressBandwidth = "kubernetes.io/egress-bandwidth";
constexpr const char* kPodAnnotationsCapability = "io.kubernetes.cri.pod-annotations";

std::string ProtocolName(v1::Protocol p) {
  switch (p) {
    case v1::TCP:
      return "tcp";
    case v1::UDP:
      return "udp";
    case v1::SCTP:
      return "sctp";
    default:
      return "tcp";
  }
}

// containerd's toCNIBandWidth: a Kubernetes quantity in bits per second,
// 1k..1P, burst unlimited (MaxUint32).
absl::StatusOr<uint64_t> Bandwidth(const std::string& key, const std::string& value) {
  auto bits = ParseByteSize(value);
  if (!bits.ok()) {
    return absl::InvalidArgumentError("annotation " + key + ": " + std::string(bits.status().message()));
  }
  constexpr uint64_t kMin = 1000, kMax = uint64_t{1000} * 1000 * 1000 * 1000 * 1000;
  if (*bits < kMin || *bits > kMax) {
    return absl::InvalidArgumentError("annotation " + key + " = " + value +
                                      ": must be between 1k and 1P");
  }
  return *bits;
}

// The placeholder network, as warmpoold runs its DEL (it needs no state).
std::string PlaceholderConfList() {
  return json{{"cniVersion", "1.0.0"},
              {"name", "warmpool-placeholder"},
              {"plugins", json::array({json{{"type", kPlaceholderCniType}}})}}
      .dump();
}

}  // namespace

void LateNetwork::Configure(const DaemonConfig& daemon) {
  std::lock_guard<std::mutex> lock(mu_);
  conf_dir_ = daemon.cni_conf_dir;
  bin_dirs_ = SplitCniPath(daemon.cni_bin_dir);
  handler_ = daemon.late_runtime_handler;
}

std::string LateNetwork::runtime_handler() const {
  std::lock_guard<std::mutex> lock(mu_);
  return handler_;
}

CniPaths LateNetwork::Paths() const {
  std::lock_guard<std::mutex> lock(mu_);
  CniPaths paths;
  paths.bin_dirs = bin_dirs_;
  return paths;
}

std::string LateNetwork::CniArgs(const v1::RunPodSandboxRequest& req,
                                 const std::string& sandbox_id) {
  const auto& m = req.config().metadata();
  return "IgnoreUnknown=1;K8S_POD_NAMESPACE=" + m.namespace_() + ";K8S_POD_NAME=" + m.name() +
         ";K8S_POD_INFRA_CONTAINER_ID=" + sandbox_id + ";K8S_POD_UID=" + m.uid();
}

absl::StatusOr<std::string> LateNetwork::CapabilityArgs(const v1::PodSandboxConfig& config) {
  json caps = json::object();
  json annotations = json::object();
  for (const auto& [k, v] : config.annotations()) annotations[k] = v;
  caps[kPodAnnotationsCapability] = annotations;
  json ports = json::array();
  for (const v1::PortMapping& p : config.port_mappings()) {
    if (p.host_port() <= 0) continue;  // containerd drops these before CNI
    ports.push_back({{"hostPort", p.host_port()},
                     {"containerPort", p.container_port()},
                     {"protocol", ProtocolName(p.protocol())},
                     {"hostIP", p.host_ip()}});
  }
  if (!ports.empty()) caps["portMappings"] = ports;
  json bandwidth = json::object();
  if (auto it = config.annotations().find(kIngressBandwidth); it != config.annotations().end()) {
    auto rate = Bandwidth(it->first, it->second);
    if (!rate.ok()) return rate.status();
    bandwidth["ingressRate"] = *rate;
    bandwidth["ingressBurst"] = uint64_t{4294967295};
  }
  if (auto it = config.annotations().find(kEgressBandwidth); it != config.annotations().end()) {
    auto rate = Bandwidth(it->first, it->second);
    if (!rate.ok()) return rate.status();
    bandwidth["egressRate"] = *rate;
    bandwidth["egressBurst"] = uint64_t{4294967295};
  }
  if (!bandwidth.empty()) caps["bandwidth"] = bandwidth;
  if (config.has_dns_config()) {
    const auto& d = config.dns_config();
    caps["dns"] = {{"servers", json(std::vector<std::string>(d.servers().begin(), d.servers().end()))},
                   {"searches", json(std::vector<std::string>(d.searches().begin(), d.searches().end()))},
                   {"options", json(std::vector<std::string>(d.options().begin(), d.options().end()))}};
  }
  return caps.dump();
}

absl::StatusOr<Net> LateNetwork::Prepare(const v1::RunPodSandboxRequest& req,
                                         const std::string& sandbox_id) {
  Net net;
  if (req.config().linux().security_context().namespace_options().network() == v1::NODE) {
    return net;  // host network: no CNI
  }
  std::string conf_dir;
  {
    std::lock_guard<std::mutex> lock(mu_);
    conf_dir = conf_dir_;
  }
  auto conflist = LoadCniConfList(conf_dir);
  if (!conflist.ok()) return conflist.status();
  auto netns = SandboxNetnsPath(runtime_, sandbox_id);
  if (!netns.ok()) return netns.status();
  auto caps = CapabilityArgs(req.config());
  if (!caps.ok()) return caps.status();
  net.state = Net::State::kAdding;
  net.netns_path = *netns;
  net.conflist = *conflist;
  net.cni_args = CniArgs(req, sandbox_id);
  net.capability_args = *caps;
  net.ifname = kIfName;
  return net;
}

absl::Status LateNetwork::Bind(const std::string& sandbox_id, Net* net) {
  const CniPaths paths = Paths();
  CniInvocation inv;
  inv.container_id = sandbox_id;
  inv.netns = net->netns_path;
  inv.ifname = net->ifname;
  // The placeholder's DEL gets containerd's arguments (it reads none of them).
  inv.args = net->cni_args;
  if (absl::Status s = CniDel(PlaceholderConfList(), inv, "", paths); !s.ok()) {
    return absl::Status(s.code(), "removing the placeholder network: " + std::string(s.message()));
  }
  inv.capability_args = net->capability_args;
  auto result = CniAdd(net->conflist, inv, paths);
  if (!result.ok()) return result.status();
  if (CniResultIps(*result, net->ifname).empty()) {
    return absl::FailedPreconditionError("CNI ADD result has no IP on " + net->ifname + ": " +
                                         *result);
  }
  net->result = *result;
  net->state = Net::State::kAdded;
  return absl::OkStatus();
}

absl::Status LateNetwork::Release(const std::string& sandbox_id, const Net& net) {
  if (net.state != Net::State::kAdding && net.state != Net::State::kAdded) {
    return absl::OkStatus();
  }
  CniInvocation inv;
  inv.container_id = sandbox_id;
  inv.netns = net.netns_path;
  inv.ifname = net.ifname;
  inv.args = net.cni_args;
  inv.capability_args = net.capability_args;
  return CniDel(net.conflist, inv, net.state == Net::State::kAdded ? net.result : "", Paths());
}

std::vector<std::string> LateNetwork::PodIps(const Net& net) {
  if (net.result.empty()) return {};
  return CniResultIps(net.result, net.ifname);
}

bool UsesLateNetwork(const PoolConfig& pool) {
  return pool.network == NetworkTiming::kLate && pool.sandbox.namespaces.network != NamespaceMode::kNode;
}

absl::StatusOr<ProbeAddress> ProbeTarget(const PoolConfig& pool, const std::string& sandbox_id,
                                         const std::string& ip, RuntimeClient* runtime) {
  bool needs_network = false;
  for (const ContainerTemplate& t : pool.containers) {
    needs_network |= t.ready.kind == ReadyCheck::Kind::kTcp || t.ready.kind == ReadyCheck::Kind::kHttp;
  }
  if (!UsesLateNetwork(pool) || !needs_network) return ProbeAddress{ip, ""};
  auto netns = SandboxNetnsPath(runtime, sandbox_id);
  if (!netns.ok()) return netns.status();
  return ProbeAddress{"127.0.0.1", *netns};
}

absl::StatusOr<std::string> SandboxNetnsPath(RuntimeClient* runtime,
                                             const std::string& sandbox_id) {
  v1::PodSandboxStatusResponse status;
  if (absl::Status s = runtime->PodSandboxStatusVerbose(sandbox_id, &status); !s.ok()) return s;
  auto it = status.info().find("info");
  if (it == status.info().end()) {
    return absl::FailedPreconditionError("the runtime's verbose sandbox status has no info");
  }
  json info = json::parse(it->second, nullptr, false);
  if (!info.is_object()) return absl::FailedPreconditionError("sandbox info is not JSON");
  const json spec = info.value("runtimeSpec", json::object());
  if (spec.is_object() && spec.contains("linux") && spec["linux"].contains("namespaces")) {
    for (const json& ns : spec["linux"]["namespaces"]) {
      if (ns.value("type", "") == "network") {
        const std::string path = ns.value("path", "");
        if (path.empty()) break;
        return path;
      }
    }
  }
  return absl::NotFoundError("sandbox " + sandbox_id.substr(0, 13) +
                             " has no network namespace of its own");
}

absl::StatusOr<int> SocketInNetns(const std::string& netns_path, int domain, int type) {
  int ns = open(netns_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (ns < 0) return absl::UnavailableError("open " + netns_path + ": " + strerror(errno));
  int fd = -1;
  int err = 0;
  // A thread of its own enters the netns (setns of a network namespace is
  // per thread), makes the socket (which stays in that netns) and ends.
  std::thread([&] {
    if (setns(ns, CLONE_NEWNET) != 0) {
      err = errno;
      return;
    }
    fd = socket(domain, type | SOCK_CLOEXEC, 0);
    if (fd < 0) err = errno;
  }).join();
  close(ns);
  if (fd < 0) {
    return absl::UnavailableError("socket in " + netns_path + ": " + strerror(err));
  }
  return fd;
}

}  // namespace warmpool
