#pragma once

// The scenarios of issue 5, each measuring cold (containerd direct) against
// warm (through the run's warmpoold) in one run:
//
//   testapp-<N>s            the test app with N s init (testapp-5s, -2s, -0s): variants
//                           cold, sandbox-pool, app-pool, interleaved pod by
//                           pod so machine noise hits all alike
//   python                  the same for the Python app (numpy, pandas,
//                           scikit-learn from Debian; fits a model at start)
//   burst                   1, 5, 20 pods at once, cold and through pools of
//                           0, 1, 5, 20 entries (which refill as they go)
//   miss                    a pod no pool serves: direct vs through warmpoold
//   memory                  warmpoold's RSS with 0 and 20 frozen entries, and
//                           memory per frozen entry for each app
//
// Results go to Context::series (latency) and Context::memory.

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "bench/daemon.h"
#include "bench/pod_run.h"
#include "bench/samples.h"

namespace warmpool::bench {

struct BenchOptions {
  std::string endpoint;        // containerd's CRI socket
  std::string cgroup_parent;   // pods and pools go below it
  std::string app_image;       // the test app
  std::string python_image;    // the Python app
  std::vector<std::string> variants{"cold", "sandbox-pool", "app-pool"};
  int pods = 20;               // per variant of a latency scenario
  int warmup = 1;              // unmeasured pods per variant before them (0 or 1)
  int miss_pods = 40;          // per side of the miss scenario
  std::vector<int> burst_sizes{1, 5, 20};
  std::vector<int> pool_sizes{0, 1, 5, 20};
  int burst_repeats = 2;
  std::string burst_pool = "app";  // "app" or "sandbox"
  std::string burst_init_seconds = "5";
  int memory_entries = 20;         // frozen entries of the test app pools
  int memory_python_entries = 5;   // frozen entries of the Python app pool
  int app_timeout_seconds = 180;
  int fill_timeout_seconds = 300;
  std::string given_pool;  // with a given warmpoold: the pool its pods name
  bool check = false;  // fail when a pod fails or a sandbox-pool pod misses
};

struct MemoryRow {
  std::string what;        // "no pool", "sandbox pool (testapp)", ...
  int frozen = 0;
  uint64_t rss_bytes = 0;  // warmpoold VmRSS
  double entry_mean = 0, entry_min = 0, entry_max = 0;  // bytes per frozen entry (admin API)
  std::string note;
};

// Progress on stderr: one line rewritten in place on a terminal, else one
// line per update.
class Progress {
 public:
  Progress();
  void Update(const std::string& text);
  void Done();  // ends the in-place line
 private:
  bool tty_;
  size_t last_len_ = 0;
};

struct Context {
  BenchOptions opt;
  BenchDaemon* daemon = nullptr;
  std::filesystem::path work_dir;  // pod log dirs, kubelet files
  std::string token;               // unique per run: pod names, pool cgroups
  std::atomic<bool>* stop = nullptr;
  Progress progress;
  int failures = 0;                // pods that failed, check violations
  std::vector<std::string> problems;

  std::vector<Series> series;
  std::vector<std::pair<std::string, std::string>> titles;  // scenario -> heading text
  std::vector<MemoryRow> memory;
};

void RunLatencyScenario(Context& ctx, const std::string& scenario, const AppSpec& app);
void RunBurstScenario(Context& ctx);
void RunMissScenario(Context& ctx);
void RunMemoryScenario(Context& ctx);

std::string MemoryMarkdown(const std::vector<MemoryRow>& rows);
std::string MemoryCsv(const std::vector<MemoryRow>& rows);

}  // namespace warmpool::bench
