#pragma once

// What warmpool-bench measures, and the statistics of it.
//
// One PodSample is one pod started through kubelet's CRI call sequence; its
// phases add up to the time from RunPodSandbox to the app's first successful
// HTTP answer on the pod IP. A Series is every pod of one scenario and
// variant (e.g. "testapp-5s" / "app-pool").

#include <array>
#include <cstddef>
#include <string>
#include <vector>

namespace warmpool::bench {

enum Phase : size_t {
  kSandbox = 0,  // RunPodSandbox + PodSandboxStatus (kubelet needs the IP)
  kCreate,       // ImageStatus + CreateContainer
  kStart,        // StartContainer
  kAppReady,     // StartContainer's answer to the first HTTP 200 on the pod IP
  kTotal,        // RunPodSandbox sent to the first HTTP 200
  kPhaseCount,
};
const char* PhaseName(Phase phase);

struct PodSample {
  std::string pod;                           // namespace/name
  std::array<double, kPhaseCount> ms{};      // milliseconds per phase
  bool ok = false;                           // every call answered and the app served
  std::string error;                         // why not, when !ok
  std::string sandbox_outcome;               // "hit", a miss reason, or "" (direct)
  std::string container_outcome;             // "hit" (pre-started container adopted), or ""
  std::string body;                          // the app's first answer (first line)
  double idle_answer_ms = -1;                // a request after >1 s idle; -1 not measured
  int burst = 0;                             // burst index within the series (bursts only)
};

struct Series {
  std::string scenario;  // "testapp-5s", "python", "burst-20", "miss", ...
  std::string variant;   // "cold", "sandbox-pool", "app-pool", "pool-5", "via-warmpoold", ...
  bool baseline = false; // the cold series the others of its scenario are compared with
  std::vector<PodSample> samples;
  std::string note;      // one line shown under the table (e.g. a miss reason)

  size_t Ok() const;
  // Pods whose sandbox (and, for app pools, container) came from a pool.
  size_t SandboxHits() const;
  size_t ContainerHits() const;
  std::vector<double> Values(Phase phase) const;  // of the ok samples
};

// Nearest-rank percentiles of a sample set.
struct Summary {
  size_t n = 0;
  double min = 0, p50 = 0, p90 = 0, p99 = 0, max = 0, mean = 0;
};
Summary Summarize(std::vector<double> values);

// 1 - value/baseline in percent ("how much faster"); NaN when undefined.
double ReductionPercent(double value, double baseline);

}  // namespace warmpool::bench
