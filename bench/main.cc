// warmpool-bench: pod cold start, measured, on this node.
//
// Drives kubelet's CRI call sequence (RunPodSandbox, PodSandboxStatus,
// ImageStatus, CreateContainer, StartContainer) against containerd directly
// and through a warmpoold it starts itself, and reports the time from
// RunPodSandbox to the app's first HTTP answer on the pod IP, by phase, per
// scenario (see bench/scenarios.h), as a Markdown table (stdout and
// results.md), CSV files and an SVG CDF plot in --out.
//
//   warmpool-bench [--scenarios testapp-5s,testapp-0s,python,burst,miss,memory]
//                  (testapp-<N>s: any init time, e.g. testapp-2s)
//                  [--pods 20] [--out DIR] ...      (--help for all)
//
// On the test bed (test/harness/containerd.sh start DIR; . DIR/env) every
// default comes from its environment. On a node: --endpoint
// /run/containerd/containerd.sock and --cgroup-parent of a cgroupfs parent
// the bench may create pods under; the images must be present.

#include <signal.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <sstream>
#include <thread>

#include "bench/daemon.h"
#include "bench/report.h"
#include "bench/scenarios.h"
#include "test/integration/kubelet_driver.h"

namespace wb = warmpool::bench;
namespace wt = warmpool::testing;
namespace fs = std::filesystem;

namespace {

std::string Getenv(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}

bool WriteText(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
  return static_cast<bool>(out);
}

std::string CpuModel() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  }
  return "?";
}

std::string MemTotal() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  uint64_t kb = 0;
  in >> key >> kb;
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f GiB", kb / 1024.0 / 1024.0);
  return buf;
}

// Whether a cgroup mount says favordynmods: without it (Linux 6.0+) each
// hand-off's first process move waits for an RCU grace period, which moves
// the app-pool numbers by ~6 ms (README, Node tuning).
const char* Favordynmods() {
  std::ifstream in("/proc/self/mounts");
  std::string dev, dir, type, options;
  while (in >> dev >> dir >> type >> options && in.ignore(1 << 10, '\n')) {
    const bool cgroup = type == "cgroup" || type == "cgroup2";
    if (cgroup && ("," + options + ",").find(",favordynmods,") != std::string::npos) return "on";
  }
  return "off";
}

// The image's id, or "" when containerd does not have it.
std::string ImageId(const std::string& endpoint, const std::string& image) {
  auto stub = runtime::v1::ImageService::NewStub(wt::ConnectCri(endpoint));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  runtime::v1::ImageStatusRequest req;
  req.mutable_image()->set_image(image);
  runtime::v1::ImageStatusResponse resp;
  if (!stub->ImageStatus(&ctx, req, &resp).ok()) return "";
  return resp.image().id();
}

std::vector<std::string> Split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

// "testapp-5s" -> "5": the test app scenarios, one per init time. "" for
// anything else.
std::string TestappInitSeconds(const std::string& scenario) {
  const std::string prefix = "testapp-";
  if (scenario.size() < prefix.size() + 2 || scenario.compare(0, prefix.size(), prefix) != 0 ||
      scenario.back() != 's') {
    return "";
  }
  const std::string digits = scenario.substr(prefix.size(), scenario.size() - prefix.size() - 1);
  if (digits.size() > 3 || !std::all_of(digits.begin(), digits.end(), ::isdigit)) return "";
  return std::to_string(std::stoi(digits));
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App cli{"warmpool-bench: pod cold start, containerd direct vs through warmpoold"};
  wb::BenchOptions opt;
  opt.endpoint = Getenv("WP_TEST_CONTAINERD_SOCK", "/run/containerd/containerd.sock");
  opt.cgroup_parent = Getenv("WP_TEST_CGROUP_PARENT", "/warmpool-bench");
  opt.app_image = Getenv("WP_TEST_APP_IMAGE", "localhost/warmpool/testapp:test");
  opt.python_image = "localhost/warmpool/python-app:bench";
  std::string scenarios = "testapp-5s,testapp-0s,python,burst,miss,memory";
  std::string variants = "cold,sandbox-pool,app-pool";
  std::string burst_sizes = "1,5,20", pool_sizes = "0,1,5,20";
  std::string out_dir = "warmpool-bench-results";
  std::string warmpoold = wb::BenchDaemon::FindBinary();
  int max_creates = 2;
  cli.add_option("--scenarios", scenarios,
                 "comma-separated: testapp-<N>s (the test app with N s init: testapp-5s, "
                 "testapp-2s, testapp-0s, ...), python, burst, miss, memory")
      ->capture_default_str();
  cli.add_option("--variants", variants, "of the latency scenarios: cold, sandbox-pool, app-pool")
      ->capture_default_str();
  cli.add_option("--pods", opt.pods, "pods per variant of a latency scenario")->capture_default_str();
  cli.add_option("--warmup", opt.warmup, "unmeasured first pod per variant (1) or none (0)")
      ->check(CLI::Range(0, 1))
      ->capture_default_str();
  cli.add_option("--miss-pods", opt.miss_pods, "pods per side of the miss scenario")
      ->capture_default_str();
  cli.add_option("--burst-sizes", burst_sizes, "pods requested at once")->capture_default_str();
  cli.add_option("--pool-sizes", pool_sizes, "pool sizes the bursts meet")->capture_default_str();
  cli.add_option("--burst-repeats", opt.burst_repeats, "bursts per size and pool")
      ->capture_default_str();
  cli.add_option("--burst-pool", opt.burst_pool, "app (pre-started test app) or sandbox")
      ->check(CLI::IsMember({"app", "sandbox"}))
      ->capture_default_str();
  cli.add_option("--burst-init-seconds", opt.burst_init_seconds, "the burst app's INIT_SECONDS")
      ->capture_default_str();
  cli.add_option("--memory-entries", opt.memory_entries, "frozen entries of the test app pools")
      ->capture_default_str();
  cli.add_option("--memory-python-entries", opt.memory_python_entries,
                 "frozen entries of the Python app pool")
      ->capture_default_str();
  cli.add_option("--endpoint", opt.endpoint, "containerd's CRI socket")->capture_default_str();
  cli.add_option("--cgroup-parent", opt.cgroup_parent,
                 "cgroupfs parent of the pods and pools (default $WP_TEST_CGROUP_PARENT)")
      ->capture_default_str();
  cli.add_option("--app-image", opt.app_image, "the test app image")->capture_default_str();
  cli.add_option("--python-image", opt.python_image,
                 "the Python app image (test/fixtures/build-python-image.sh)")
      ->capture_default_str();
  cli.add_option("--warmpoold", warmpoold, "warmpoold binary")->capture_default_str();
  cli.add_option("--max-concurrent-creates", max_creates, "warmpoold's fill concurrency")
      ->capture_default_str();
  cli.add_option("--app-timeout", opt.app_timeout_seconds, "seconds a pod's app may take")
      ->capture_default_str();
  std::string given_socket, given_admin;
  cli.add_option("--warmpoold-socket", given_socket,
                 "use this running warmpoold (its CRI socket) instead of starting one; only the "
                 "latency scenarios run, cold vs its pool --pool");
  cli.add_option("--warmpoold-admin", given_admin, "the given warmpoold's admin socket");
  cli.add_option("--pool", opt.given_pool, "with --warmpoold-socket: the pool the pods name");
  cli.add_option("--out", out_dir, "results directory")->capture_default_str();
  cli.add_flag("--check", opt.check,
               "exit 1 if a pod fails or a sandbox-pool pod is not served by the pool (CI smoke)");
  CLI11_PARSE(cli, argc, argv);

  opt.variants = Split(variants);
  for (const auto& v : opt.variants) {
    if (v != "cold" && v != "sandbox-pool" && v != "app-pool") {
      std::fprintf(stderr, "warmpool-bench: unknown variant %s\n", v.c_str());
      return 2;
    }
  }
  opt.burst_sizes.clear();
  for (const auto& s : Split(burst_sizes)) opt.burst_sizes.push_back(std::atoi(s.c_str()));
  opt.pool_sizes.clear();
  for (const auto& s : Split(pool_sizes)) opt.pool_sizes.push_back(std::atoi(s.c_str()));
  const std::vector<std::string> wanted = Split(scenarios);
  for (const auto& s : wanted) {
    static const std::set<std::string> known = {"python", "burst", "miss", "memory"};
    if (!known.count(s) && TestappInitSeconds(s).empty()) {
      std::fprintf(stderr, "warmpool-bench: unknown scenario %s\n", s.c_str());
      return 2;
    }
  }
  auto want = [&](const std::string& s) {
    return std::find(wanted.begin(), wanted.end(), s) != wanted.end();
  };

  const bool given = !given_socket.empty();
  if (given && (given_admin.empty() || opt.given_pool.empty())) {
    std::fprintf(stderr, "warmpool-bench: --warmpoold-socket needs --warmpoold-admin and --pool\n");
    return 2;
  }
  if (given) {
    for (const auto& s : wanted) {
      if (s == "burst" || s == "miss" || s == "memory") {
        std::fprintf(stderr,
                     "warmpool-bench: scenario %s needs pools of its own; with a given warmpoold "
                     "run --scenarios testapp-5s,testapp-0s,python\n",
                     s.c_str());
        return 2;
      }
    }
  }

  // Images: fail early, with what to do.
  if (ImageId(opt.endpoint, opt.app_image).empty()) {
    std::fprintf(stderr, "warmpool-bench: %s has no image %s (the test bed imports it)\n",
                 opt.endpoint.c_str(), opt.app_image.c_str());
    return 2;
  }
  const bool python_present = !ImageId(opt.endpoint, opt.python_image).empty();
  if (want("python") && !python_present) {
    std::fprintf(stderr,
                 "warmpool-bench: %s has no image %s; build and import it with\n"
                 "  test/fixtures/build-python-image.sh --import %s\n",
                 opt.endpoint.c_str(), opt.python_image.c_str(), opt.endpoint.c_str());
    return 2;
  }
  if (!python_present) opt.python_image.clear();  // the memory scenario skips it

  // SIGINT/SIGTERM: finish the pod in flight, clean up, write what we have.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::atomic<bool> stop{false};
  std::thread([&] {
    int sig = 0;
    sigwait(&signals, &sig);
    std::fprintf(stderr, "\nwarmpool-bench: stopping after the current pod (signal %d)\n", sig);
    stop.store(true);
  }).detach();

  fs::create_directories(out_dir);
  char tmpl[] = "/tmp/wp-bench-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) {
    std::perror("mkdtemp");
    return 1;
  }
  const fs::path work = tmpl;

  wb::Context ctx;
  ctx.opt = opt;
  ctx.work_dir = work / "kubelet";
  ctx.token = wt::KubeletDriver::UniqueToken();
  ctx.stop = &stop;

  wb::BenchDaemon::Options dopt;
  dopt.binary = warmpoold;
  dopt.upstream = opt.endpoint;
  dopt.dir = work / "warmpoold";
  dopt.pool_cgroup_parent = opt.cgroup_parent + "/bench-pools-" + ctx.token;
  dopt.max_concurrent_creates = max_creates;
  wb::BenchDaemon daemon(dopt);
  if (given) {
    daemon.Attach(given_socket, given_admin);
  } else if (std::string err = daemon.Start(); !err.empty()) {
    std::fprintf(stderr, "warmpool-bench: warmpoold did not start: %s\n", err.c_str());
    fs::remove_all(work);
    return 1;
  }
  ctx.daemon = &daemon;
  const uint64_t rss_start = daemon.RssBytes().value_or(0);
  if (given) {
    std::fprintf(stderr, "warmpool-bench: using the warmpoold on %s, pool %s\n",
                 given_socket.c_str(), opt.given_pool.c_str());
  } else {
    std::fprintf(stderr, "warmpool-bench: warmpoold %s (pid %d), log %s\n", warmpoold.c_str(),
                 daemon.pid(), daemon.log_path().c_str());
  }
  const auto t_start = std::chrono::steady_clock::now();
  const std::time_t wall_start = std::time(nullptr);

  auto testapp = [&](const std::string& init) {
    wb::AppSpec a;
    a.image = opt.app_image;
    a.env = {{"INIT_SECONDS", init}};
    a.label = "the test app (static C, " + opt.app_image + "), INIT_SECONDS=" + init;
    return a;
  };
  for (const std::string& s : wanted) {
    if (const std::string init = TestappInitSeconds(s); !init.empty() && !stop) {
      wb::RunLatencyScenario(ctx, s, testapp(init));
    }
  }
  if (want("python") && !stop) {
    wb::AppSpec py;
    py.image = opt.python_image;
    py.label = "Python 3.11 + numpy, pandas, scikit-learn from Debian 12 (" + opt.python_image +
               "): imports them, fits a random forest on 2250 rows, then serves";
    wb::RunLatencyScenario(ctx, "python", py);
  }
  if (want("burst") && !stop) wb::RunBurstScenario(ctx);
  if (want("miss") && !stop) wb::RunMissScenario(ctx);
  if (want("memory") && !stop) wb::RunMemoryScenario(ctx);

  if (std::string err = daemon.Stop(); !err.empty()) {
    ctx.failures++;
    ctx.problems.push_back("warmpoold stop: " + err);
  }
  const double minutes =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count() / 60;

  // --- outputs ----------------------------------------------------------
  std::ostringstream md;
  utsname u{};
  ::uname(&u);
  char when[64];
  std::strftime(when, sizeof(when), "%Y-%m-%d %H:%M UTC", std::gmtime(&wall_start));
  md << "Run " << when << ", " << std::fixed;
  md.precision(1);
  md << minutes << " min. Machine: " << std::thread::hardware_concurrency() << " CPUs ("
     << CpuModel() << "), " << MemTotal() << ", Linux " << u.release << ", cgroup favordynmods "
     << Favordynmods()
     << ". Times: RunPodSandbox sent → first HTTP 200 from the app on the pod IP; p99 is "
        "nearest-rank (with 20 pods it is the maximum).\n\n";
  md << "Command: `";
  for (int i = 0; i < argc; ++i) md << (i ? " " : "") << argv[i];
  md << "`\n\n";
  md << wb::MarkdownTables(ctx.series, ctx.titles);
  if (!ctx.memory.empty()) {
    md << "#### memory\n\nwarmpoold RSS at start: "
       << (rss_start ? std::to_string(rss_start >> 10) + " KiB" : "?")
       << ". Memory per frozen entry: what its cgroup is charged (the admin API's figure, which "
          "the memory budget counts).\n\n"
       << wb::MemoryMarkdown(ctx.memory) << "\n";
  }
  if (!ctx.problems.empty()) {
    md << "#### problems\n\n";
    for (const auto& p : ctx.problems) md << "- " << p << "\n";
  }
  std::fputs(md.str().c_str(), stdout);

  const fs::path out = out_dir;
  bool written = WriteText(out / "results.md", md.str()) &&
                 WriteText(out / "samples.csv", wb::SamplesCsv(ctx.series)) &&
                 WriteText(out / "summary.csv", wb::SummaryCsv(ctx.series));
  if (!ctx.memory.empty()) written = WriteText(out / "memory.csv", wb::MemoryCsv(ctx.memory)) && written;
  std::vector<const wb::Series*> latency, bursts;
  for (const wb::Series& s : ctx.series) {
    if (s.scenario.rfind("burst-", 0) == 0) {
      bursts.push_back(&s);
    } else {
      latency.push_back(&s);
    }
  }
  if (!latency.empty()) {
    written = WriteText(out / "cdf.svg",
                        wb::CdfSvg(latency, "Pod start to first HTTP answer: cold vs warmpool")) &&
              written;
  }
  if (!bursts.empty()) {
    written = WriteText(out / "burst-cdf.svg",
                        wb::CdfSvg(bursts, "Bursts: pods requested at once, by pool size")) &&
              written;
  }
  if (!written) {
    std::fprintf(stderr, "warmpool-bench: could not write every file in %s\n", out_dir.c_str());
    ctx.failures++;
  }
  std::fprintf(stderr, "warmpool-bench: results in %s (results.md, samples.csv, summary.csv%s%s%s)\n",
               out_dir.c_str(), ctx.memory.empty() ? "" : ", memory.csv",
               latency.empty() ? "" : ", cdf.svg", bursts.empty() ? "" : ", burst-cdf.svg");
  std::error_code ec;
  fs::remove_all(work, ec);
  if (stop) return 130;
  return ctx.failures == 0 ? 0 : 1;
}
