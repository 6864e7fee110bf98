#include "daemon/decisions.h"

#include <algorithm>
#include <cstdio>
#include <set>

#include "daemon/state_store.h"

namespace warmpool {
namespace {

// "namespace/name", a uid, or a bare name in "default".
bool Matches(const Decision& d, const std::string& pod) {
  const size_t slash = pod.find('/');
  if (slash != std::string::npos) {
    return d.pod_namespace == pod.substr(0, slash) && d.pod_name == pod.substr(slash + 1);
  }
  return d.pod_uid == pod || (d.pod_namespace == "default" && d.pod_name == pod);
}

}  // namespace

const std::vector<double>& DecisionLog::HandoffBuckets() {
  // A hit takes tens of milliseconds here (two fsynced record writes); the
  // cold path it replaces, 75-150 ms.
  static const std::vector<double> kBuckets = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                               0.075, 0.1,    0.25,  0.5,  1,     2.5};
  return kBuckets;
}

DecisionLog::DecisionLog(const StateStore* store, size_t capacity)
    : store_(store), capacity_(std::max<size_t>(capacity, 1)) {}

void DecisionLog::Record(Decision d) {
  if (d.at == std::chrono::system_clock::time_point{}) d.at = std::chrono::system_clock::now();
  if (d.hit && d.reason.empty()) {
    char ms[32];
    std::snprintf(ms, sizeof(ms), "%.1f", static_cast<double>(d.handoff.count()) / 1000);
    d.reason = "served by pool " + d.pool + ": frozen entry " + d.entry_id + " handed over in " +
               ms + " ms";
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (d.hit) {
    counters_.hits[d.pool]++;
    auto it = counters_.handoff_seconds.find(d.pool);
    if (it == counters_.handoff_seconds.end()) {
      it = counters_.handoff_seconds.emplace(d.pool, prom::Histogram(&HandoffBuckets())).first;
    }
    it->second.Observe(std::chrono::duration<double>(d.handoff).count());
  } else {
    counters_.misses[{d.pool, d.reason_code}]++;
  }
  log_.push_back(std::move(d));
  while (log_.size() > capacity_) log_.pop_front();
}

void DecisionLog::Record(const runtime::v1::PodSandboxConfig& pod, bool hit,
                         const std::string& pool, const std::string& reason_code,
                         const std::string& reason, const std::string& entry_id,
                         const std::string& sandbox_id,
                         std::chrono::steady_clock::duration handoff) {
  Decision d;
  d.pod_namespace = pod.metadata().namespace_();
  d.pod_name = pod.metadata().name();
  d.pod_uid = pod.metadata().uid();
  d.attempt = pod.metadata().attempt();
  d.hit = hit;
  d.pool = pool;
  d.reason_code = reason_code;
  d.reason = reason;
  d.entry_id = entry_id;
  d.sandbox_id = sandbox_id;
  d.handoff = std::chrono::duration_cast<std::chrono::microseconds>(handoff);
  Record(std::move(d));
}

std::vector<Decision> DecisionLog::Find(const std::string& pod) const {
  std::vector<Decision> out;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = log_.rbegin(); it != log_.rend(); ++it) {
      if (Matches(*it, pod)) out.push_back(*it);
    }
  }
  if (store_ == nullptr) return out;
  std::set<std::string> known;
  for (const Decision& d : out) {
    if (!d.sandbox_id.empty()) known.insert(d.sandbox_id);
  }
  std::vector<Decision> records;
  for (const AdoptionRecord& r : store_->All()) {
    if (r.phase != AdoptionRecord::Phase::kDone || known.count(r.sandbox_id)) continue;
    runtime::v1::RunPodSandboxRequest req;
    if (!req.ParseFromString(r.run_request)) continue;
    const auto& meta = req.config().metadata();
    Decision d;
    d.pod_namespace = meta.namespace_();
    d.pod_name = meta.name();
    d.pod_uid = meta.uid();
    d.attempt = meta.attempt();
    d.hit = true;
    d.pool = r.pool;
    d.reason_code = "hit";
    d.reason = "served by pool " + r.pool + " (entry " + r.entry_id +
               "); from its hand-off record, made before this warmpoold started";
    d.at = std::chrono::system_clock::time_point(std::chrono::nanoseconds(r.adopted_at_ns));
    d.entry_id = r.entry_id;
    d.sandbox_id = r.sandbox_id;
    d.source = "record";
    if (Matches(d, pod)) records.push_back(std::move(d));
  }
  out.insert(out.end(), records.begin(), records.end());
  std::stable_sort(out.begin(), out.end(),
                   [](const Decision& a, const Decision& b) { return a.at > b.at; });
  return out;
}

DecisionLog::Counters DecisionLog::Snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  return counters_;
}

}  // namespace warmpool
