#pragma once

// Which upstream objects belong to pools: what kubelet must never see (their
// sandboxes and containers) and what it must never garbage-collect (their
// images). Written by the pool manager, read by the CRI read filter on
// gRPC's callback threads: lookups take a shared lock and never block long.

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <shared_mutex>
#include <string>
#include <vector>

#include "cri_runtime_v1.pb.h"

namespace warmpool {

// Label keys warmpool puts on the upstream objects of pool entries.
inline constexpr const char* kLabelManaged = "warmpool.io/managed";      // "true"
inline constexpr const char* kLabelPool = "warmpool.io/pool";            // pool name
inline constexpr const char* kLabelEntry = "warmpool.io/entry";          // entry id
inline constexpr const char* kLabelTemplate = "warmpool.io/template";    // template hash
inline constexpr const char* kLabelContainer = "warmpool.io/container";  // template name

// An entry handed to a pod: how kubelet must see its sandbox.
struct AdoptedView {
  std::string sandbox_id;
  std::string pool;
  ::runtime::v1::PodSandboxConfig config;  // kubelet's RunPodSandbox config
  std::string runtime_handler;             // kubelet's runtime_handler
  int64_t created_at_ns = 0;               // the hand-off time
  // network = "late": the network was bound by warmpoold at hand-off, and
  // these are the pod's IPs reads report (containerd knows only the
  // placeholder's). IPv4 first.
  bool late_network = false;
  std::vector<std::string> pod_ips;
};

// A pre-started container handed to a pod at CreateContainer: how kubelet
// must see it.
struct AdoptedContainerView {
  std::string container_id;
  std::string sandbox_id;
  ::runtime::v1::ContainerConfig config;  // kubelet's CreateContainer config
  std::string log_path;                   // kubelet's: sandbox log_directory + config.log_path
  int64_t created_at_ns = 0;              // the hand-off time
  int64_t started_at_ns = 0;              // 0: kubelet has not started it (state CREATED)
};

// Answers stats of an adopted container from the cgroup its processes are
// in (containerd still measures the pool's old one). False: no stats.
using AdoptedStatsSource =
    std::function<bool(const AdoptedContainerView&, ::runtime::v1::ContainerStats*)>;

class PoolObjects {
 public:
  void AddSandbox(const std::string& id);
  void AddContainer(const std::string& id);
  void Remove(const std::string& id);  // a sandbox or container id
  bool Contains(const std::string& id) const;

  // Adopted sandboxes: shown to kubelet as it made them, never hidden.
  void AddAdopted(AdoptedView view);  // also drops the id from the hidden set
  void RemoveAdopted(const std::string& sandbox_id);
  std::shared_ptr<const AdoptedView> Adopted(const std::string& sandbox_id) const;
  bool AnyAdopted() const;
  int AdoptedCount(const std::string& pool) const;

  // Adopted pre-started containers (also drops the id from the hidden set).
  void AddAdoptedContainer(AdoptedContainerView view);
  void RemoveAdoptedContainer(const std::string& container_id);
  std::shared_ptr<const AdoptedContainerView> AdoptedContainer(const std::string& id) const;
  bool AnyAdoptedContainer() const;
  // Set once, before serving.
  void SetStatsSource(AdoptedStatsSource source) { stats_ = std::move(source); }
  bool AdoptedStats(const AdoptedContainerView& view, ::runtime::v1::ContainerStats* out) const {
    return stats_ && stats_(view, out);
  }

  // Whether there is anything to hide or show: pools configured, or pool or
  // adopted objects known. When not, reads pass untouched (no parsing).
  void SetPoolsConfigured(bool configured);
  bool Active() const;

  // Image ids (sha256:...) the configured pools run.
  void SetPinnedImages(std::set<std::string> image_ids);
  bool IsPinned(const std::string& image_id) const;

 private:
  mutable std::shared_mutex mu_;
  std::set<std::string> ids_;
  std::set<std::string> pinned_;
  std::map<std::string, std::shared_ptr<const AdoptedView>> adopted_;
  std::map<std::string, std::shared_ptr<const AdoptedContainerView>> adopted_containers_;
  AdoptedStatsSource stats_;
  bool pools_configured_ = false;
};

}  // namespace warmpool
