#include "daemon/metrics.h"

#include <dirent.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <sstream>

namespace warmpool {
namespace {

using prom::Labels;

// Process metrics, named as every Prometheus client library names them.
void WriteProcessMetrics(prom::TextWriter& w) {
  std::ifstream stat_file("/proc/self/stat");
  std::string stat((std::istreambuf_iterator<char>(stat_file)), std::istreambuf_iterator<char>());
  const size_t paren = stat.rfind(')');
  if (paren == std::string::npos) return;
  std::istringstream fields(stat.substr(paren + 2));
  std::vector<std::string> f;  // f[0] is field 3 (state)
  for (std::string x; fields >> x;) f.push_back(x);
  if (f.size() < 22) return;
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  const double cpu = (std::stod(f[11]) + std::stod(f[12])) / ticks;  // utime + stime
  const double start_ticks = std::stod(f[19]);
  const double rss = std::stod(f[21]) * static_cast<double>(sysconf(_SC_PAGESIZE));
  double boot_time = 0;
  std::ifstream proc_stat("/proc/stat");
  for (std::string line; std::getline(proc_stat, line);) {
    if (line.rfind("btime ", 0) == 0) boot_time = std::stod(line.substr(6));
  }
  int fds = 0;
  if (DIR* d = opendir("/proc/self/fd")) {
    while (dirent* e = readdir(d)) {
      if (e->d_name[0] != '.') fds++;
    }
    closedir(d);
    fds--;  // the directory being read
  }
  w.Family("process_cpu_seconds_total", "counter", "User and system CPU time spent, in seconds.");
  w.Sample("process_cpu_seconds_total", {}, cpu);
  w.Family("process_resident_memory_bytes", "gauge", "Resident memory size, in bytes.");
  w.Sample("process_resident_memory_bytes", {}, rss);
  w.Family("process_start_time_seconds", "gauge",
           "Start time of the process since the unix epoch, in seconds.");
  w.Sample("process_start_time_seconds", {}, boot_time + start_ticks / ticks);
  w.Family("process_open_fds", "gauge", "Number of open file descriptors.");
  w.Sample("process_open_fds", {}, fds);
}

// "/runtime.v1.RuntimeService/RunPodSandbox" -> {service, method}.
std::pair<std::string, std::string> SplitMethod(const std::string& full) {
  const size_t slash = full.rfind('/');
  if (full.size() < 2 || full.front() != '/' || slash == 0 || slash == std::string::npos) {
    return {"", full};
  }
  return {full.substr(1, slash - 1), full.substr(slash + 1)};
}

void WritePools(prom::TextWriter& w, AdminBackend* backend) {
  const std::vector<PoolStatus> pools = backend->Pools();
  std::map<std::string, int> destroying;
  for (const EntryInfo& e : backend->Entries()) {
    if (e.state == EntryState::kDestroying) destroying[e.pool]++;
  }
  w.Family("warmpool_pool_target_entries", "gauge",
           "Frozen entries the pool is configured to keep ready (0 with passthrough).");
  for (const PoolStatus& p : pools)
    w.Sample("warmpool_pool_target_entries", {{"pool", p.name}}, p.target);
  w.Family("warmpool_pool_entries", "gauge",
           "Pool entries by state: creating, warming, frozen (ready to hand out), adopted (owned "
           "by a pod, still running), destroying.");
  for (const PoolStatus& p : pools) {
    const std::pair<const char*, int> states[] = {{"creating", p.creating},
                                                  {"warming", p.warming},
                                                  {"frozen", p.frozen},
                                                  {"adopted", p.adopted},
                                                  {"destroying", destroying[p.name]}};
    for (const auto& [state, n] : states) {
      w.Sample("warmpool_pool_entries", {{"pool", p.name}, {"state", state}}, n);
    }
  }
  w.Family("warmpool_pool_drained", "gauge",
           "1 while the pool is drained by warmpoolctl drain (no refills until warmpoolctl fill).");
  for (const PoolStatus& p : pools)
    w.Sample("warmpool_pool_drained", {{"pool", p.name}}, p.drained);
  w.Family("warmpool_pool_removed", "gauge",
           "1 while the pool, removed from the config, is having its entries destroyed.");
  for (const PoolStatus& p : pools)
    w.Sample("warmpool_pool_removed", {{"pool", p.name}}, p.draining);
  w.Family("warmpool_pool_frozen_memory_bytes", "gauge",
           "Memory charged to the pool's frozen entries, in bytes (what memory_budget counts).");
  for (const PoolStatus& p : pools) {
    w.Sample("warmpool_pool_frozen_memory_bytes", {{"pool", p.name}},
             static_cast<double>(p.memory_bytes));
  }
  w.Family("warmpool_pool_entry_failures_total", "counter",
           "Pool entries that failed while being made or while frozen, since start.");
  for (const PoolStatus& p : pools) {
    w.Sample("warmpool_pool_entry_failures_total", {{"pool", p.name}},
             static_cast<double>(p.failures));
  }
  w.Family("warmpool_pool_backoff_seconds", "gauge",
           "Current retry delay of the pool after failures, in seconds (0: none).");
  for (const PoolStatus& p : pools) {
    w.Sample("warmpool_pool_backoff_seconds", {{"pool", p.name}},
             std::chrono::duration<double>(p.backoff).count());
  }
}

}  // namespace

const std::vector<double>& EntryCreateBuckets() {
  static const std::vector<double> kBuckets = {0.1, 0.25, 0.5, 1,   2.5, 5,
                                               10,  30,   60,  120, 300, 600};
  return kBuckets;
}

std::string RenderMetrics(const MetricsSources& s) {
  prom::TextWriter w;
  w.Family("warmpool_build_info", "gauge", "Always 1; the label names warmpoold's version.");
  w.Sample("warmpool_build_info", {{"version", s.version}}, 1);
  if (s.slow_cgroup_moves.has_value()) {
    w.Family("warmpool_node_slow_cgroup_moves", "gauge",
             "1 when every hand-off's cgroup move waits for an RCU grace period (Linux 6.0+ with "
             "no cgroup mount that has favordynmods; README: Node tuning), else 0.");
    w.Sample("warmpool_node_slow_cgroup_moves", {}, *s.slow_cgroup_moves ? 1 : 0);
  }

  std::vector<std::string> pool_names;
  if (s.pools != nullptr) {
    WritePools(w, s.pools);
    for (const PoolStatus& p : s.pools->Pools()) pool_names.push_back(p.name);
  }

  if (s.entry_create != nullptr) {
    w.Family("warmpool_pool_entry_create_duration_seconds", "histogram",
             "Time from the start of an entry's creation to frozen (sandbox, containers, app "
             "init, readiness, freeze): how long a refill takes.");
    for (const auto& [pool, h] : s.entry_create->Snapshot()) {
      w.HistogramSamples("warmpool_pool_entry_create_duration_seconds", {{"pool", pool}}, h);
    }
  }

  if (s.decisions != nullptr) {
    DecisionLog::Counters c = s.decisions->Snapshot();
    for (const std::string& name : pool_names) c.hits.emplace(name, 0);  // 0, not absent
    w.Family("warmpool_handoff_hits_total", "counter",
             "RunPodSandbox calls served by a frozen pool entry, since start.");
    for (const auto& [pool, n] : c.hits) {
      w.Sample("warmpool_handoff_hits_total", {{"pool", pool}}, static_cast<double>(n));
    }
    w.Family("warmpool_handoff_misses_total", "counter",
             "RunPodSandbox calls that went to containerd (cold), by pool (\"\": none) and reason "
             "code, since start.");
    for (const auto& [key, n] : c.misses) {
      w.Sample("warmpool_handoff_misses_total", {{"pool", key.first}, {"reason", key.second}},
               static_cast<double>(n));
    }
    w.Family("warmpool_handoff_duration_seconds", "histogram",
             "Time to hand a frozen entry to a pod (claim, records, cgroup move, thaw, identity).");
    for (const auto& [pool, h] : c.handoff_seconds) {
      w.HistogramSamples("warmpool_handoff_duration_seconds", {{"pool", pool}}, h);
    }
  }

  if (s.rpc != nullptr) {
    const auto methods = s.rpc->Snapshot();
    w.Family("warmpool_cri_requests_total", "counter",
             "CRI calls kubelet made through warmpoold, by gRPC method and status code.");
    for (const auto& [full, stats] : methods) {
      const auto [service, method] = SplitMethod(full);
      for (const auto& [code, n] : stats.calls_by_code) {
        w.Sample("warmpool_cri_requests_total",
                 {{"service", service}, {"method", method}, {"code", cri::StatusCodeName(code)}},
                 static_cast<double>(n));
      }
    }
    w.Family("warmpool_cri_request_duration_seconds", "histogram",
             "Latency of CRI calls through warmpoold (containerd's time included), by method.");
    const std::vector<double> bounds(cri::RpcMetrics::kBucketsSeconds.begin(),
                                     cri::RpcMetrics::kBucketsSeconds.end());
    for (const auto& [full, stats] : methods) {
      const auto [service, method] = SplitMethod(full);
      w.HistogramSamples("warmpool_cri_request_duration_seconds",
                         {{"service", service}, {"method", method}}, bounds,
                         std::vector<uint64_t>(stats.buckets.begin(), stats.buckets.end()),
                         stats.sum_seconds, stats.count);
    }
  }

  WriteProcessMetrics(w);
  return w.text();
}

}  // namespace warmpool
