// Pools, measured against the harness's containerd: how long a pool of app
// entries takes to fill, what a frozen entry costs in CPU and memory.
//
//   pool_fill_bench [--entries N] [--init-seconds S] [--concurrency 2,5]
//                   [--frozen-seconds 60] [--runs R]
//
// For each max_concurrent_creates value: a warmpoold with no pools, then a
// reload that adds one pool of N testapp entries (INIT_SECONDS=S); the fill
// time runs from the SIGHUP to the admin API reporting N frozen. After the
// first fill, the CPU of each frozen entry (cpuacct.usage of its cgroup) is
// read over --frozen-seconds, and its memory (the admin API's memory_bytes,
// memory.usage_in_bytes and memory.stat total_rss). Every pool is drained
// afterwards. Needs the test bed (test/harness/containerd.sh start DIR;
// source DIR/env).

#include <signal.h>
#include <stdlib.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "test/integration/kubelet_driver.h"
#include "test/integration/pool_support.h"
#include "test/integration/warmpoold_process.h"

namespace wt = warmpool::testing;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {

struct Options {
  int entries = 5;
  std::string init_seconds = "2";
  std::vector<int> concurrency = {2, 5};
  int frozen_seconds = 60;
  int runs = 1;
};

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

std::optional<uint64_t> MemoryStat(const std::string& cgroup, const std::string& key) {
  auto text = wt::ReadCgroupFile("memory", cgroup, "memory.stat");
  if (!text) return std::nullopt;
  std::istringstream in(*text);
  std::string k;
  uint64_t v;
  while (in >> k >> v) {
    if (k == key) return v;
  }
  return std::nullopt;
}

// One warmpoold, one pool fill; optionally the frozen measurements.
// Returns false when something failed (after cleaning up).
bool RunOnce(const wt::TestBedEnv& env, const Options& opt, int concurrency, bool measure_frozen,
             const std::filesystem::path& dir) {
  const std::string token = wt::KubeletDriver::UniqueToken();
  const std::string parent = env.cgroup_parent + "/bench-" + token;
  const std::string pool = "bench-" + token;
  wt::WarmpooldProcess::Options o;
  o.upstream = env.containerd_sock;
  o.dir = dir / ("c" + std::to_string(concurrency) + "-" + token);
  o.log_level = "info";
  o.extra_daemon_config =
      wt::PoolDaemonToml(parent, "max_concurrent_creates = " + std::to_string(concurrency));
  wt::WarmpooldProcess daemon(o);
  if (std::string err = daemon.Start(); !err.empty()) {
    std::fprintf(stderr, "warmpoold did not start: %s\n", err.c_str());
    return false;
  }
  wt::AdminClient admin(daemon.admin_path().string());
  bool ok = true;

  wt::TestPool p;
  p.name = pool;
  p.size = opt.entries;
  wt::TestPool::Container c;
  c.image = env.app_image;
  c.env = {{"INIT_SECONDS", opt.init_seconds}};
  p.containers.push_back(c);
  if (std::string err = wt::RewriteConfigTail(daemon.config_path().string(), wt::PoolsToml({p}));
      !err.empty()) {
    std::fprintf(stderr, "%s\n", err.c_str());
    return false;
  }
  const auto t0 = Clock::now();
  ::kill(daemon.pid(), SIGHUP);
  std::optional<wt::adminpb::PoolStatus> status;
  Clock::time_point first_frozen{};
  const bool filled = wt::WaitFor(
      [&] {
        status = admin.Pool(pool);
        if (status && status->frozen() > 0 && first_frozen == Clock::time_point{}) {
          first_frozen = Clock::now();
        }
        return status && status->frozen() == opt.entries && status->creating() == 0 &&
               status->warming() == 0;
      },
      180s, 5ms);
  const auto t1 = Clock::now();
  if (!filled) {
    std::fprintf(stderr, "pool did not fill: %s\n%s\n",
                 status ? status->ShortDebugString().c_str() : "(not listed)",
                 daemon.LogTail().c_str());
    ok = false;
  } else {
    std::printf(
        "fill  max_concurrent_creates=%d  entries=%d  INIT_SECONDS=%s  first frozen %.2f s"
        "  all frozen %.2f s  (failures %llu)\n",
        concurrency, opt.entries, opt.init_seconds.c_str(), Seconds(first_frozen - t0),
        Seconds(t1 - t0), static_cast<unsigned long long>(status->failures()));
    // Per entry: creation to frozen, as the daemon saw it.
    std::vector<double> per_entry;
    for (const auto& e : admin.Entries(pool)) {
      per_entry.push_back((e.state_since_unix_nanos() - e.created_at_unix_nanos()) / 1e9);
    }
    std::sort(per_entry.begin(), per_entry.end());
    std::printf("      per entry, created -> frozen (s):");
    for (double s : per_entry) std::printf(" %.2f", s);
    std::printf("\n");
  }

  if (ok && measure_frozen) {
    struct Sample {
      std::string id, cgroup;
      uint64_t cpu0 = 0;
      uint64_t admin_memory = 0;
    };
    std::vector<Sample> samples;
    for (const auto& e : admin.Entries(pool)) {
      Sample s;
      s.id = e.id();
      s.cgroup = parent + "/" + pool + "/" + e.id();
      s.cpu0 = wt::ReadCgroupNumber("cpuacct", s.cgroup, "cpuacct.usage").value_or(0);
      s.admin_memory = e.memory_bytes();
      samples.push_back(s);
    }
    std::printf("frozen: measuring CPU over %d s ...\n", opt.frozen_seconds);
    std::fflush(stdout);
    std::this_thread::sleep_for(std::chrono::seconds(opt.frozen_seconds));
    std::printf("%-14s %14s %14s %16s %14s %12s\n", "entry", "cpu delta ns", "admin mem",
                "usage_in_bytes", "total_rss", "freezer");
    uint64_t max_cpu = 0, sum_mem = 0, sum_usage = 0;
    for (const Sample& s : samples) {
      const uint64_t cpu1 = wt::ReadCgroupNumber("cpuacct", s.cgroup, "cpuacct.usage").value_or(0);
      const uint64_t usage =
          wt::ReadCgroupNumber("memory", s.cgroup, "memory.usage_in_bytes").value_or(0);
      const uint64_t rss = MemoryStat(s.cgroup, "total_rss").value_or(0);
      const std::string state =
          wt::ReadCgroupFile("freezer", s.cgroup, "freezer.state").value_or("?");
      std::printf("%-14s %14llu %14llu %16llu %14llu %12s\n", s.id.c_str(),
                  static_cast<unsigned long long>(cpu1 - s.cpu0),
                  static_cast<unsigned long long>(s.admin_memory),
                  static_cast<unsigned long long>(usage), static_cast<unsigned long long>(rss),
                  state.c_str());
      max_cpu = std::max(max_cpu, cpu1 - s.cpu0);
      sum_mem += s.admin_memory;
      sum_usage += usage;
    }
    if (!samples.empty()) {
      std::printf(
          "frozen summary: max CPU %llu ns over %d s; memory per entry: admin %.2f MiB, "
          "memory.usage_in_bytes %.2f MiB (mean)\n",
          static_cast<unsigned long long>(max_cpu), opt.frozen_seconds,
          sum_mem / double(samples.size()) / (1 << 20),
          sum_usage / double(samples.size()) / (1 << 20));
    }
  }

  // Drain: a reload with no pools, then stop.
  wt::RewriteConfigTail(daemon.config_path().string(), "");
  ::kill(daemon.pid(), SIGHUP);
  const bool drained = wt::WaitFor(
      [&] {
        wt::adminpb::ListPoolsResponse pools;
        return admin.ListPools(&pools).ok() && pools.pools().empty() &&
               !wt::CgroupExistsAnywhere(parent);
      },
      60s, 50ms);
  if (!drained) {
    std::fprintf(stderr, "pool did not drain\n");
    ok = false;
  }
  if (std::string err = daemon.Stop(); !err.empty()) {
    std::fprintf(stderr, "warmpoold stop: %s\n", err.c_str());
    ok = false;
  }
  wt::ForcedCleanup left = wt::ForceRemovePools(env.containerd_sock, {pool}, parent);
  for (const auto& r : left.removed) std::fprintf(stderr, "fallback removed %s\n", r.c_str());
  for (const auto& r : left.problems) std::fprintf(stderr, "cleanup problem: %s\n", r.c_str());
  return ok && left.removed.empty() && left.problems.empty();
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--entries") {
      opt.entries = std::atoi(value.c_str());
    } else if (flag == "--init-seconds") {
      opt.init_seconds = value;
    } else if (flag == "--frozen-seconds") {
      opt.frozen_seconds = std::atoi(value.c_str());
    } else if (flag == "--runs") {
      opt.runs = std::atoi(value.c_str());
    } else if (flag == "--concurrency") {
      opt.concurrency.clear();
      std::stringstream ss(value);
      std::string item;
      while (std::getline(ss, item, ',')) opt.concurrency.push_back(std::atoi(item.c_str()));
    } else {
      i = argc;  // falls through to usage
      opt.entries = 0;
    }
  }
  if (argc % 2 == 0 || opt.entries <= 0 || opt.concurrency.empty() || opt.runs <= 0) {
    std::fprintf(stderr,
                 "usage: %s [--entries N] [--init-seconds S] [--concurrency 2,5] "
                 "[--frozen-seconds 60] [--runs R]\n",
                 argv[0]);
    return 2;
  }
  auto env = wt::TestBedEnv::FromEnvironment();
  if (!env) {
    std::fprintf(stderr, "no test bed: test/harness/containerd.sh start DIR; source DIR/env\n");
    return 2;
  }
  char tmpl[] = "/tmp/wpb-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) return 1;
  const std::filesystem::path dir = tmpl;
  bool ok = true;
  bool frozen_done = false;
  for (int run = 0; run < opt.runs && ok; ++run) {
    for (int c : opt.concurrency) {
      ok = RunOnce(*env, opt, c, !frozen_done && opt.frozen_seconds > 0, dir) && ok;
      frozen_done = true;
      if (!ok) break;
    }
  }
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  return ok ? 0 : 1;
}
