#pragma once

// The Prometheus text exposition format (version 0.0.4), written by hand:
// Debian has no prometheus-cpp, and warmpoold exports a few dozen series.
//
//   # HELP warmpool_handoff_hits_total Pods served by a pool entry.
//   # TYPE warmpool_handoff_hits_total counter
//   warmpool_handoff_hits_total{pool="any"} 3
//
// Contract of TextWriter: each family is written once, HELP and TYPE first,
// then its samples; label values are escaped (\\, \", \n), HELP text too
// (\\, \n); numbers are written in the shortest form that reads back to the
// same double ("+Inf", "-Inf", "NaN" for the special values). Names are the
// caller's to get right (checked by the tests, not at run time).

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace warmpool::prom {

using Labels = std::vector<std::pair<std::string, std::string>>;

// A histogram's buckets (cumulative when written), sum and count. A plain
// value: the owner guards it.
struct Histogram {
  explicit Histogram(const std::vector<double>* bounds = nullptr);
  void Observe(double value);

  const std::vector<double>* bounds;  // upper bounds, ascending; +Inf implied
  std::vector<uint64_t> counts;       // per bucket, not cumulative; last: +Inf
  double sum = 0;
  uint64_t count = 0;
};

// Histograms keyed by one label value (a pool name), thread-safe.
class LabeledHistograms {
 public:
  explicit LabeledHistograms(std::vector<double> bounds) : bounds_(std::move(bounds)) {}
  void Observe(const std::string& key, double value);
  void Observe(const std::string& key, std::chrono::steady_clock::duration d) {
    Observe(key, std::chrono::duration<double>(d).count());
  }
  std::map<std::string, Histogram> Snapshot() const;
  const std::vector<double>& bounds() const { return bounds_; }

 private:
  const std::vector<double> bounds_;
  mutable std::mutex mu_;
  std::map<std::string, Histogram> by_key_;  // guarded by mu_
};

class TextWriter {
 public:
  // `type`: "counter", "gauge" or "histogram".
  void Family(std::string_view name, std::string_view type, std::string_view help);
  // One sample line: `name{labels} value`.
  void Sample(std::string_view name, const Labels& labels, double value);
  // A histogram's _bucket (le appended to `labels`), _sum and _count lines.
  void HistogramSamples(std::string_view name, const Labels& labels, const Histogram& h);
  // Same, from bucket upper bounds and non-cumulative counts (last: +Inf).
  void HistogramSamples(std::string_view name, const Labels& labels,
                        const std::vector<double>& bounds, const std::vector<uint64_t>& counts,
                        double sum, uint64_t count);

  const std::string& text() const { return out_; }

 private:
  std::string out_;
};

// The shortest text that reads back to `v`; "+Inf", "-Inf", "NaN".
std::string FormatValue(double v);
// A label value with \\, \" and \n escaped.
std::string EscapeLabelValue(std::string_view v);

// The content type of the format.
inline constexpr const char* kContentType = "text/plain; version=0.0.4; charset=utf-8";

}  // namespace warmpool::prom
