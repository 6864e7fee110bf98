#pragma once

// warmpoold's Prometheus metrics: gathered at scrape time from where the
// numbers already live (pool manager, decision log, the proxy's per-RPC
// counters, the refill histogram), rendered in the text format. Every metric
// is listed, with its labels, in README.md "Metrics".
//
// Thread-safety: Render may run on any thread; each source copies its
// numbers under its own lock, so one scrape is consistent per source, not
// across sources.

#include <optional>
#include <string>

#include "cri/metrics.h"
#include "daemon/admin_server.h"
#include "daemon/decisions.h"
#include "daemon/prometheus.h"

namespace warmpool {

struct MetricsSources {
  AdminBackend* pools = nullptr;                          // pools and entries
  const DecisionLog* decisions = nullptr;                 // hits, misses, hand-off latency
  const cri::RpcMetrics* rpc = nullptr;                   // per-RPC counts and latencies
  const prom::LabeledHistograms* entry_create = nullptr;  // refill durations, by pool
  std::string version;
  // Whether each hand-off's cgroup move waits for an RCU grace period
  // (SlowCgroupMoveAdvice says so); left out of the exposition when unknown.
  std::optional<bool> slow_cgroup_moves;
};

// Bucket bounds of the entry creation (refill) histogram, in seconds: from a
// bare sandbox (~0.1 s) to an app with a long init (minutes).
const std::vector<double>& EntryCreateBuckets();

// The whole exposition. Null sources are left out.
std::string RenderMetrics(const MetricsSources& sources);

}  // namespace warmpool
