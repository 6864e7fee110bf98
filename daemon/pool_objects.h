#pragma once

// Which upstream objects belong to pools: what kubelet must never see (their
// sandboxes and containers) and what it must never garbage-collect (their
// images). Written by the pool manager, read by the CRI read filter on
// gRPC's callback threads: lookups take a shared lock and never block long.

#include <set>
#include <shared_mutex>
#include <string>

namespace warmpool {

// Label keys warmpool puts on the upstream objects of pool entries.
inline constexpr const char* kLabelManaged = "warmpool.io/managed";      // "true"
inline constexpr const char* kLabelPool = "warmpool.io/pool";            // pool name
inline constexpr const char* kLabelEntry = "warmpool.io/entry";          // entry id
inline constexpr const char* kLabelTemplate = "warmpool.io/template";    // template hash
inline constexpr const char* kLabelContainer = "warmpool.io/container";  // template name

class PoolObjects {
 public:
  void AddSandbox(const std::string& id);
  void AddContainer(const std::string& id);
  void Remove(const std::string& id);  // a sandbox or container id
  bool Contains(const std::string& id) const;

  // Image ids (sha256:...) the configured pools run.
  void SetPinnedImages(std::set<std::string> image_ids);
  bool IsPinned(const std::string& image_id) const;

 private:
  mutable std::shared_mutex mu_;
  std::set<std::string> ids_;
  std::set<std::string> pinned_;
};

}  // namespace warmpool
