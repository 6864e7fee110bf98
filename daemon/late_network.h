#pragma once

// Late network binding: a pool sandbox gets its pod's real network, under the
// pod's own identity, when it is handed to the pod (pools with
// network = "late", the default).
//
// Why: CNIs such as Calico and Cilium look the pod up by K8S_POD_NAMESPACE /
// K8S_POD_NAME at CNI ADD to give it its policy identity; a sandbox networked
// ahead of time under a placeholder name gets the wrong one (or none).
//
// How:
//  - Pool entries of a late pool are made through containerd's runtime
//    handler daemon.late_runtime_handler ("warmpool-late"), configured in
//    containerd with its own cni_conf_dir holding warmpool's placeholder
//    network (daemon/cni_placeholder/): an eth0 with an unrouted link-local
//    address, which containerd requires of every sandbox. The app of an app
//    pool initialises with loopback and that eth0: it reaches nothing and
//    nothing reaches it; readiness checks connect to 127.0.0.1 from inside
//    the sandbox's netns (SocketInNetns).
//  - At hand-off (daemon/handoff.h), before the answer to kubelet:
//      Prepare  everything a later DEL needs (the netns path containerd made,
//               the node's conflist from daemon.cni_conf_dir as read now,
//               CNI_ARGS, capability args) -- written to the hand-off record
//               BEFORE any ADD runs, state kAdding;
//      Bind     the placeholder's DEL, then the conflist's ADD (daemon/cni.h)
//               with CNI_CONTAINERID = the sandbox id, CNI_NETNS = that path,
//               CNI_IFNAME = eth0, CNI_ARGS = IgnoreUnknown=1;
//               K8S_POD_NAMESPACE;K8S_POD_NAME;K8S_POD_INFRA_CONTAINER_ID;
//               K8S_POD_UID, and the capability args portMappings (host
//               ports), bandwidth (kubernetes.io/{in,e}gress-bandwidth
//               annotations), dns (dns_config) and
//               io.kubernetes.cri.pod-annotations, exactly as containerd 1.6
//               builds them; result recorded, state kAdded.
//  - Reads report the ADD result's IPs (PodIps), not the placeholder's.
//  - StopPodSandbox / RemovePodSandbox of the adopted sandbox, and recovery
//    of a record whose sandbox is gone or whose hand-off was cut short:
//    Release (the conflist's DEL with the recorded arguments and result;
//    idempotent) before containerd's own teardown (which DELs only the
//    placeholder config: the placeholder plugin leaves a real eth0 alone).
//
// Thread-safe; the settings can be replaced on reload (a hand-off keeps the
// conflist it recorded).

#include <absl/status/status.h>
#include <absl/status/statusor.h>

#include <mutex>
#include <string>
#include <vector>

#include "cri_runtime_v1.pb.h"
#include "daemon/cni.h"
#include "daemon/config.h"
#include "daemon/runtime_client.h"
#include "daemon/state_store.h"

namespace warmpool {

// The CNI type (binary name in cni_bin_dir) of warmpool's placeholder plugin.
inline constexpr const char* kPlaceholderCniType = "warmpool-placeholder";

class LateNetwork {
 public:
  explicit LateNetwork(RuntimeClient* runtime) : runtime_(runtime) {}

  // daemon.cni_conf_dir, cni_bin_dir, late_runtime_handler; at start and reload.
  void Configure(const DaemonConfig& daemon);
  std::string runtime_handler() const;

  // The record part for binding sandbox `sandbox_id` to kubelet's `req`:
  // state kAdding, nothing run yet. A pod in the node's network namespace
  // gets state kNone (there is nothing to bind).
  absl::StatusOr<AdoptionRecord::LateNetwork> Prepare(const v1::RunPodSandboxRequest& req,
                                                      const std::string& sandbox_id);
  // Placeholder DEL, then the recorded conflist's ADD. On success `net`
  // becomes kAdded with the result. On an error the caller must Release.
  absl::Status Bind(const std::string& sandbox_id, AdoptionRecord::LateNetwork* net);
  // The recorded conflist's DEL (kAdding or kAdded; others: nothing to do).
  absl::Status Release(const std::string& sandbox_id, const AdoptionRecord::LateNetwork& net);

  // The pod IPs reads report: IPv4 first (containerd's order), from the ADD
  // result (kept once released: a stopped sandbox's reads show no IP anyway).
  static std::vector<std::string> PodIps(const AdoptionRecord::LateNetwork& net);

  // CNI_ARGS and the capability args containerd 1.6 would pass for `req`
  // (exposed for tests).
  static std::string CniArgs(const v1::RunPodSandboxRequest& req, const std::string& sandbox_id);
  static absl::StatusOr<std::string> CapabilityArgs(const v1::PodSandboxConfig& config);

 private:
  CniPaths Paths() const;

  RuntimeClient* runtime_;
  mutable std::mutex mu_;
  std::string conf_dir_;               // guarded by mu_
  std::vector<std::string> bin_dirs_;  // guarded by mu_
  std::string handler_;                // guarded by mu_
};

// Whether entries of `pool` are made with the placeholder network and bound
// at hand-off: network = "late" and a network namespace of their own.
bool UsesLateNetwork(const PoolConfig& pool);

// Where the readiness checks of an entry of `pool` (sandbox `sandbox_id`,
// containerd's IP `ip`) connect: `ip` from the host, or for a late-network
// entry 127.0.0.1 inside its netns (`netns` set; looked up only when a
// tcp/http check needs it).
struct ProbeAddress {
  std::string ip;
  std::string netns;  // "": the host's
};
absl::StatusOr<ProbeAddress> ProbeTarget(const PoolConfig& pool, const std::string& sandbox_id,
                                         const std::string& ip, RuntimeClient* runtime);

// The network namespace path containerd made for a sandbox (from its verbose
// status: the OCI spec's network namespace), e.g.
// /var/run/netns/cni-<uuid>. NotFound when the sandbox has none (host
// network).
absl::StatusOr<std::string> SandboxNetnsPath(RuntimeClient* runtime,
                                             const std::string& sandbox_id);

// A socket (socket(2) arguments) created inside the network namespace at
// `netns_path`; the caller owns the fd. For probes of late-network entries,
// whose only reachable address is their own loopback.
absl::StatusOr<int> SocketInNetns(const std::string& netns_path, int domain, int type);

}  // namespace warmpool
