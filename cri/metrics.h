#pragma once

#include <grpcpp/support/status.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace warmpool::cri {

// Per-method call counts by status code and a latency histogram, recorded
// once per finished call by the proxy (the one place every RPC passes).
// Thread-safe; recording takes one short mutex hold.
class RpcMetrics {
 public:
  // Upper bounds of the latency buckets, in seconds (Prometheus `le`).
  static constexpr std::array<double, 14> kBucketsSeconds = {
      0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0};

  struct MethodStats {
    std::map<grpc::StatusCode, uint64_t> calls_by_code;
    std::array<uint64_t, kBucketsSeconds.size() + 1> buckets{};  // last: +Inf
    double sum_seconds = 0;
    uint64_t count = 0;
  };

  void Record(const std::string& method, grpc::StatusCode code,
              std::chrono::steady_clock::duration elapsed);

  // A consistent copy of every method's stats, keyed by full method name.
  std::map<std::string, MethodStats> Snapshot() const;

 private:
  mutable std::mutex mu_;
  std::map<std::string, MethodStats> methods_;
};

// The canonical name of a gRPC status code ("NOT_FOUND").
const char* StatusCodeName(grpc::StatusCode code);

}  // namespace warmpool::cri
