#include "bench/samples.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

namespace warmpool::bench {

const char* PhaseName(Phase phase) {
  switch (phase) {
    case kSandbox: return "sandbox";
    case kCreate: return "create";
    case kStart: return "start";
    case kAppReady: return "app ready";
    case kTotal: return "total";
    default: return "?";
  }
}

size_t Series::Ok() const {
  return std::count_if(samples.begin(), samples.end(), [](const PodSample& s) { return s.ok; });
}

size_t Series::SandboxHits() const {
  return std::count_if(samples.begin(), samples.end(),
                       [](const PodSample& s) { return s.sandbox_outcome == "hit"; });
}

size_t Series::ContainerHits() const {
  return std::count_if(samples.begin(), samples.end(),
                       [](const PodSample& s) { return s.container_outcome == "hit"; });
}

std::vector<double> Series::Values(Phase phase) const {
  std::vector<double> out;
  for (const PodSample& s : samples) {
    if (s.ok) out.push_back(s.ms[phase]);
  }
  return out;
}

Summary Summarize(std::vector<double> values) {
  Summary s;
  s.n = values.size();
  if (values.empty()) return s;
  std::sort(values.begin(), values.end());
  // Nearest rank: the smallest value with at least p% of the samples at or
  // below it. With 20 samples, p99 is the maximum: say so, do not interpolate.
  auto rank = [&](double p) {
    size_t k = static_cast<size_t>(std::ceil(p / 100.0 * values.size()));
    return values[std::clamp<size_t>(k, 1, values.size()) - 1];
  };
  s.min = values.front();
  s.max = values.back();
  s.p50 = rank(50);
  s.p90 = rank(90);
  s.p99 = rank(99);
  s.mean = std::accumulate(values.begin(), values.end(), 0.0) / values.size();
  return s;
}

double ReductionPercent(double value, double baseline) {
  if (!(baseline > 0)) return std::numeric_limits<double>::quiet_NaN();
  return 100.0 * (1.0 - value / baseline);
}

}  // namespace warmpool::bench
