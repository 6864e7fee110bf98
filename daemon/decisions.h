#pragma once

// The decision log: for every RunPodSandbox warmpoold decided on, which pod
// it was, whether a pool served it, and if not, why. What `warmpoolctl
// explain POD` answers from, and where the hit/miss metrics are counted.
//
// Kept in memory, bounded: the last `capacity` decisions (4096 by default)
// since warmpoold started. Hits also live on in the durable hand-off records
// of the state store (daemon/state_store.h) for as long as their pod exists,
// so a hit is still explained after a restart; a miss is not (nothing of it
// is written to disk: a miss is a pod containerd made as usual).
//
// The counters and the hand-off latency histogram cover every decision since
// start (not only those still in the log).
//
// Thread-safe: Record is called from gRPC and hand-off worker threads, the
// readers from the admin and metrics threads. Each call holds one mutex for a
// short copy; Find also reads the state store (its own lock, in memory).

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "cri_runtime_v1.pb.h"
#include "daemon/prometheus.h"

namespace warmpool {

class StateStore;

struct Decision {
  // The pod, as kubelet named it in RunPodSandbox.
  std::string pod_namespace;
  std::string pod_name;
  std::string pod_uid;
  uint32_t attempt = 0;

  bool hit = false;
  std::string pool;         // the pool that served it or was asked; "" none
  std::string reason_code;  // "hit", or the miss reason: "no_pool", "security_context", ...
  std::string reason;       // one line for people
  std::chrono::system_clock::time_point at{};
  // Hits: what the pod got and how long the hand-off took.
  std::string entry_id;
  std::string sandbox_id;
  std::chrono::microseconds handoff{0};
  // "log" (recorded by this run) or "record" (a durable hand-off record).
  std::string source = "log";
};

class DecisionLog {
 public:
  static constexpr size_t kDefaultCapacity = 4096;
  // Upper bounds of the hand-off latency buckets, in seconds.
  static const std::vector<double>& HandoffBuckets();

  // `store` (may be null) is read by Find for hits older than the log; it
  // must outlive this object.
  explicit DecisionLog(const StateStore* store = nullptr, size_t capacity = kDefaultCapacity);

  // One decision; `at` is set to now when unset.
  void Record(Decision d);
  // The hook the hand-off calls: the pod's identity from kubelet's config.
  void Record(const runtime::v1::PodSandboxConfig& pod, bool hit, const std::string& pool,
              const std::string& reason_code, const std::string& reason,
              const std::string& entry_id = "", const std::string& sandbox_id = "",
              std::chrono::steady_clock::duration handoff = {});

  // The decisions about `pod`, newest first: "namespace/name", a uid, or a
  // bare name (namespace "default"). Log entries first; durable hand-off
  // records of the pod that the log no longer has are added. Empty: nothing
  // known.
  std::vector<Decision> Find(const std::string& pod) const;

  struct Counters {
    std::map<std::string, uint64_t> hits;                            // by pool
    std::map<std::pair<std::string, std::string>, uint64_t> misses;  // by (pool, reason)
    std::map<std::string, prom::Histogram> handoff_seconds;          // by pool
  };
  Counters Snapshot() const;

  size_t capacity() const { return capacity_; }
  std::chrono::system_clock::time_point since() const { return since_; }

 private:
  const StateStore* const store_;
  const size_t capacity_;
  const std::chrono::system_clock::time_point since_ = std::chrono::system_clock::now();

  mutable std::mutex mu_;
  std::deque<Decision> log_;  // oldest first; guarded by mu_
  Counters counters_;         // guarded by mu_
};

}  // namespace warmpool
