#pragma once

// Where a hand-off's time goes, for its one log line: Lap("mounts") closes
// the step that ran since the previous lap (or construction).
// Format(): "log 1.2ms mounts 3.4ms record 9.8ms".

#include <chrono>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

namespace warmpool {

class StepTimer {
 public:
  using Clock = std::chrono::steady_clock;

  void Lap(const char* step) {
    const Clock::time_point now = Clock::now();
    laps_.emplace_back(step, now - last_);
    last_ = now;
  }

  std::string Format() const {
    std::string out;
    char buf[64];
    for (const auto& [step, took] : laps_) {
      const double ms = std::chrono::duration<double, std::milli>(took).count();
      std::snprintf(buf, sizeof buf, "%s%s %.1fms", out.empty() ? "" : " ", step, ms);
      out += buf;
    }
    return out;
  }

 private:
  Clock::time_point last_ = Clock::now();
  std::vector<std::pair<const char*, Clock::duration>> laps_;
};

}  // namespace warmpool
