#include "bench/scenarios.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <latch>
#include <map>
#include <memory>
#include <sstream>
#include <thread>

#include "bench/report.h"

namespace warmpool::bench {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

bool Has(const std::vector<std::string>& v, const std::string& x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

std::string PodName(Context& ctx) {
  static std::atomic<int> n{0};
  return "bench-" + ctx.token + "-" + std::to_string(n.fetch_add(1));
}

std::string Elapsed(Clock::time_point since) {
  const int s = static_cast<int>(std::chrono::duration<double>(Clock::now() - since).count());
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%dm%02ds", s / 60, s % 60);
  return buf;
}

std::string Mib(double bytes) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.2f MiB", bytes / (1 << 20));
  return buf;
}

PodRunOptions RunOptions(Context& ctx, const std::string& endpoint, const std::string& pool,
                         const AppSpec& app) {
  PodRunOptions o;
  o.endpoint = endpoint;
  o.cleanup_endpoint = ctx.opt.endpoint;
  o.work_dir = ctx.work_dir;
  o.cgroup_parent = ctx.opt.cgroup_parent;
  o.pool = pool;
  o.app = app;
  o.app_timeout = std::chrono::seconds(ctx.opt.app_timeout_seconds);
  return o;
}

PoolSpec AppPool(const std::string& name, int size, const AppSpec& app) {
  PoolSpec p;
  p.name = name;
  p.size = size;
  PoolSpec::Container c;
  c.image = app.image;
  for (const auto& [k, v] : app.env) c.env[k] = v;
  c.port = app.port;
  p.containers.push_back(c);
  return p;
}

PoolSpec SandboxPool(const std::string& name, int size) {
  PoolSpec p;
  p.name = name;
  p.size = size;
  return p;
}

// Hit or miss of a pod started through warmpoold with pool annotation `pool`:
// warmpoold logs one line per hand-off ("hit: pod NS/NAME ...") and per miss
// ("miss: pod NS/NAME pool P: ... [reason]"); a pod that names no pool is
// only logged at debug level ("no_pool" here). The admin API does not list
// adopted entries today (a claimed entry leaves the pool's table), so it is
// asked only as a cross-check: its per-pool hit counter (see CountHits).
// Should it list them, an adopted entry whose containers include the pod's
// marks the pre-started container as handed over.
void Classify(Context& ctx, const std::string& pool, const PodRunner& runner, PodSample* s) {
  if (ctx.daemon == nullptr) return;
  std::string logged = ctx.daemon->SandboxOutcome(s->pod);
  s->sandbox_outcome = logged.empty() ? (pool.empty() ? "no_pool" : "miss") : logged;
  s->container_outcome = ctx.daemon->ContainerOutcome(s->pod);
  if (runner.sandbox_id().empty()) return;
  for (const auto& e : ctx.daemon->Entries(pool)) {
    if (e.state() != adminpb::ENTRY_STATE_ADOPTED || e.sandbox_id() != runner.sandbox_id()) continue;
    s->sandbox_outcome = "hit";
    for (const auto& cid : runner.container_ids()) {
      if (std::find(e.container_ids().begin(), e.container_ids().end(), cid) !=
          e.container_ids().end()) {
        s->container_outcome = "hit";
      }
    }
  }
}

// The admin API's hand-off counter of `pool` (0 when it is not listed).
uint64_t CountHits(Context& ctx, const std::string& pool) {
  auto st = ctx.daemon->Pool(pool);
  return st ? st->hits() : 0;
}

// The log's hits must be what the admin API counted.
void CrossCheck(Context& ctx, const std::string& where, uint64_t before, uint64_t after,
                size_t logged_hits) {
  if (after - before == logged_hits) return;
  ctx.failures++;
  ctx.problems.push_back(where + ": warmpoold logged " + std::to_string(logged_hits) +
                         " hits but its admin API counted " + std::to_string(after - before));
}

// "20 x app_pool" for the misses of a series.
std::string MissReasons(const Series& s) {
  std::map<std::string, int> n;
  for (const PodSample& p : s.samples) {
    if (p.sandbox_outcome != "hit" && !p.sandbox_outcome.empty()) n[p.sandbox_outcome]++;
    if (p.container_outcome != "hit" && !p.container_outcome.empty()) {
      n["container " + p.container_outcome]++;
    }
  }
  std::string out;
  for (const auto& [reason, count] : n) {
    out += (out.empty() ? "" : ", ") + std::to_string(count) + " × " + reason;
  }
  return out;
}

void Record(Context& ctx, const PodSample& s, const std::string& where) {
  if (!s.ok) {
    ctx.failures++;
    ctx.problems.push_back(where + " " + s.pod + ": " + s.error);
  }
}

void RemovePod(Context& ctx, PodRunner& runner) {
  if (std::string left = runner.Remove(); !left.empty()) {
    ctx.failures++;
    ctx.problems.push_back("cleanup: " + left);
  }
}

std::string WaitPools(Context& ctx, const std::vector<PoolSpec>& pools) {
  for (const PoolSpec& p : pools) {
    if (p.size == 0) continue;
    std::string err = ctx.daemon->WaitFilled(p.name, p.size,
                                             std::chrono::seconds(ctx.opt.fill_timeout_seconds));
    if (!err.empty()) return err;
  }
  return "";
}

// Removes every pool and waits until its entries are gone, so nothing is
// torn down in the background of the next measurement.
void Drain(Context& ctx) {
  if (ctx.daemon == nullptr) return;
  if (std::string err = ctx.daemon->SetPools({}); !err.empty()) {
    ctx.problems.push_back("drain: " + err);
    return;
  }
  const auto deadline = Clock::now() + 120s;
  while (Clock::now() < deadline) {
    bool left = false;
    for (const auto& e : ctx.daemon->Entries()) {
      if (e.state() != adminpb::ENTRY_STATE_ADOPTED) left = true;
    }
    if (!left) return;
    std::this_thread::sleep_for(50ms);
  }
  ctx.problems.push_back("drain: pool entries still there after 120 s");
}

}  // namespace

Progress::Progress() : tty_(::isatty(STDERR_FILENO) == 1) {}

void Progress::Update(const std::string& text) {
  if (tty_) {
    std::string line = "\r" + text;
    if (text.size() < last_len_) line += std::string(last_len_ - text.size(), ' ');
    std::fputs(line.c_str(), stderr);
    last_len_ = text.size();
  } else {
    std::fprintf(stderr, "%s\n", text.c_str());
  }
  std::fflush(stderr);
}

void Progress::Done() {
  if (tty_ && last_len_ > 0) std::fputs("\n", stderr);
  last_len_ = 0;
}

void RunLatencyScenario(Context& ctx, const std::string& scenario, const AppSpec& app) {
  const BenchOptions& opt = ctx.opt;
  const auto started = Clock::now();
  const bool given = ctx.daemon->attached();
  std::vector<PoolSpec> pools;
  std::vector<std::string> variant_names = opt.variants;
  if (given) {
    // Someone else's warmpoold and pool: cold against it, its pool's size
    // unknown (each pod waits for one frozen entry).
    variant_names = {"cold", "given-pool"};
    pools.push_back(SandboxPool(opt.given_pool, 1));
  } else {
    if (Has(opt.variants, "sandbox-pool")) pools.push_back(SandboxPool("bench-sb", 1));
    if (Has(opt.variants, "app-pool")) pools.push_back(AppPool("bench-app", 1, app));
  }
  if (!pools.empty() && !given) {
    if (std::string err = ctx.daemon->SetPools(pools); !err.empty()) {
      ctx.failures++;
      ctx.problems.push_back(scenario + ": " + err);
      return;
    }
  }
  struct Variant {
    std::string name, pool;
    std::unique_ptr<PodRunner> runner;
    Series series;
  };
  std::vector<Variant> variants;
  for (const std::string& v : variant_names) {
    Variant x;
    x.name = v;
    std::string endpoint = ctx.opt.endpoint;
    if (v == "sandbox-pool") x.pool = "bench-sb";
    if (v == "app-pool") x.pool = "bench-app";
    if (v == "given-pool") x.pool = opt.given_pool;
    if (!x.pool.empty()) endpoint = ctx.daemon->socket();
    PodRunOptions o = RunOptions(ctx, endpoint, x.pool, app);
    o.measure_idle = v == "cold";
    x.runner = std::make_unique<PodRunner>(o);
    if (std::string err = x.runner->Connect(); !err.empty()) {
      ctx.failures++;
      ctx.problems.push_back(scenario + ": " + err);
      return;
    }
    x.series.scenario = scenario;
    x.series.variant = v;
    x.series.baseline = v == "cold";
    variants.push_back(std::move(x));
  }

  // One pod per variant first, not measured: the image's files come into the
  // page cache and every code path has run once, as on a node that has
  // started this app before.
  for (Variant& v : variants) {
    if (ctx.stop->load() || opt.warmup == 0) break;
    if (!v.pool.empty() && !WaitPools(ctx, pools).empty()) break;
    ctx.progress.Update("[" + scenario + "] warm-up pod: " + v.name);
    PodSample s = v.runner->Run(PodName(ctx));
    RemovePod(ctx, *v.runner);
    Record(ctx, s, scenario + " warm-up " + v.name);
  }

  // Round robin, one pod of each variant per round, every pool full before
  // each pod: drift and other load on the machine hit every variant alike.
  for (int i = 0; i < opt.pods && !ctx.stop->load(); ++i) {
    for (Variant& v : variants) {
      if (ctx.stop->load()) break;
      if (!v.pool.empty()) {
        if (std::string err = WaitPools(ctx, pools); !err.empty()) {
          ctx.failures++;
          ctx.problems.push_back(scenario + ": " + err);
          ctx.stop->store(true);
          break;
        }
      }
      const uint64_t hits0 = v.pool.empty() ? 0 : CountHits(ctx, v.pool);
      PodSample s = v.runner->Run(PodName(ctx));
      if (!v.pool.empty() && given) {
        // No log to read: the pool's hit counter tells (pods go one at a time).
        s.sandbox_outcome = CountHits(ctx, v.pool) == hits0 + 1 ? "hit" : "miss";
      } else if (!v.pool.empty()) {
        Classify(ctx, v.pool, *v.runner, &s);
        CrossCheck(ctx, scenario + " " + s.pod, hits0, CountHits(ctx, v.pool),
                   s.sandbox_outcome == "hit" ? 1 : 0);
      }
      RemovePod(ctx, *v.runner);
      Record(ctx, s, scenario + " " + v.name);
      if (opt.check && v.name == "sandbox-pool" && s.sandbox_outcome != "hit") {
        ctx.failures++;
        ctx.problems.push_back(scenario + " sandbox-pool " + s.pod + ": not a hit (" +
                               s.sandbox_outcome + ")");
      }
      ctx.progress.Update("[" + scenario + "] round " + std::to_string(i + 1) + "/" +
                          std::to_string(opt.pods) + "  " + v.name + ": " +
                          (s.ok ? FormatMs(s.ms[kTotal]) : "FAILED") +
                          (s.sandbox_outcome.empty() ? "" : " (" + s.sandbox_outcome + ")") +
                          (s.container_outcome.empty() ? "" : " (container " + s.container_outcome + ")") +
                          "  elapsed " + Elapsed(started));
      v.series.samples.push_back(std::move(s));
    }
  }
  ctx.progress.Done();

  for (Variant& v : variants) {
    std::vector<std::string> notes;
    if (v.name == "cold") {
      std::vector<double> idle;
      std::vector<double> init;
      for (const PodSample& s : v.series.samples) {
        if (s.idle_answer_ms >= 0) idle.push_back(s.idle_answer_ms);
        auto at = s.body.find("init_seconds=");
        if (at != std::string::npos) init.push_back(std::atof(s.body.c_str() + at + 13) * 1000);
      }
      if (!init.empty()) {
        Summary si = Summarize(init);
        notes.push_back("the app's own init time (it reports it): p50 " + FormatMs(si.p50) +
                        ", min " + FormatMs(si.min) + ", max " + FormatMs(si.max));
      }
      if (!idle.empty()) {
        Summary si = Summarize(idle);
        notes.push_back("idle-warm floor (one GET to a running pod after 1.5 s idle): p50 " +
                        FormatMs(si.p50) + ", p99 " + FormatMs(si.p99));
      }
    } else {
      std::string misses = MissReasons(v.series);
      if (!misses.empty()) notes.push_back("misses (cold path through warmpoold): " + misses);
    }
    for (size_t k = 0; k < notes.size(); ++k) v.series.note += (k ? "; " : "") + notes[k];
    ctx.series.push_back(std::move(v.series));
  }
  std::ostringstream title;
  title << "App: " << app.label << ". " << opt.pods
        << " pods per variant, one at a time, variants interleaved; pools of one entry, "
           "refilled before each pod. cold = containerd direct; sandbox-pool = through "
           "warmpoold, a frozen sandbox handed over, the container created and started cold in "
           "it; app-pool = through warmpoold, the pool's pre-started app container handed "
           "over.";
  ctx.titles.push_back({scenario, title.str()});
  if (!pools.empty() && !given) Drain(ctx);
}

void RunBurstScenario(Context& ctx) {
  const BenchOptions& opt = ctx.opt;
  const auto started = Clock::now();
  AppSpec app;
  app.image = opt.app_image;
  app.env = {{"INIT_SECONDS", opt.burst_init_seconds}};
  app.label = "testapp, INIT_SECONDS=" + opt.burst_init_seconds;
  // Every pool size at once (one pool each), all full before each burst.
  std::vector<PoolSpec> pools;
  for (int size : opt.pool_sizes) {
    const std::string name = "bench-p" + std::to_string(size);
    pools.push_back(opt.burst_pool == "sandbox" ? SandboxPool(name, size)
                                                : AppPool(name, size, app));
  }
  if (std::string err = ctx.daemon->SetPools(pools); !err.empty()) {
    ctx.failures++;
    ctx.problems.push_back("burst: " + err);
    return;
  }

  for (int b : opt.burst_sizes) {
    const std::string scenario = "burst-" + std::to_string(b);
    std::vector<Series> series;
    Series cold;
    cold.scenario = scenario;
    cold.variant = "cold";
    cold.baseline = true;
    series.push_back(cold);
    for (int size : opt.pool_sizes) {
      Series s;
      s.scenario = scenario;
      s.variant = "pool-" + std::to_string(size);
      series.push_back(s);
    }
    for (int r = 0; r < opt.burst_repeats && !ctx.stop->load(); ++r) {
      for (size_t k = 0; k < series.size() && !ctx.stop->load(); ++k) {
        const bool warm = k > 0;
        const std::string pool = warm ? pools[k - 1].name : "";
        if (std::string err = WaitPools(ctx, pools); !err.empty()) {
          ctx.failures++;
          ctx.problems.push_back(scenario + ": " + err);
          ctx.stop->store(true);
          break;
        }
        std::vector<std::unique_ptr<PodRunner>> runners;
        bool connected = true;
        for (int i = 0; i < b; ++i) {
          runners.push_back(std::make_unique<PodRunner>(
              RunOptions(ctx, warm ? ctx.daemon->socket() : opt.endpoint, pool, app)));
          if (std::string err = runners.back()->Connect(); !err.empty()) {
            ctx.problems.push_back(scenario + ": " + err);
            connected = false;
          }
        }
        if (!connected) {
          ctx.failures++;
          ctx.stop->store(true);
          break;
        }
        std::vector<PodSample> samples(b);
        std::vector<std::string> names;
        for (int i = 0; i < b; ++i) names.push_back(PodName(ctx));
        const uint64_t hits0 = warm ? CountHits(ctx, pool) : 0;
        std::latch go(1);
        std::vector<std::thread> threads;
        for (int i = 0; i < b; ++i) {
          threads.emplace_back([&, i] {
            go.wait();
            samples[i] = runners[i]->Run(names[i]);
          });
        }
        go.count_down();
        for (auto& t : threads) t.join();
        size_t logged_hits = 0;
        for (int i = 0; i < b; ++i) {
          if (warm) Classify(ctx, pool, *runners[i], &samples[i]);
          logged_hits += samples[i].sandbox_outcome == "hit";
          samples[i].burst = r;
        }
        if (warm) CrossCheck(ctx, scenario + " " + pool, hits0, CountHits(ctx, pool), logged_hits);
        for (auto& runner : runners) RemovePod(ctx, *runner);
        size_t hits = 0;
        double worst = 0;
        for (PodSample& s : samples) {
          Record(ctx, s, scenario + " " + series[k].variant);
          hits += s.sandbox_outcome == "hit";
          if (s.ok) worst = std::max(worst, s.ms[kTotal]);
          series[k].samples.push_back(std::move(s));
        }
        ctx.progress.Update("[" + scenario + "] repeat " + std::to_string(r + 1) + "/" +
                            std::to_string(opt.burst_repeats) + "  " + series[k].variant +
                            ": slowest " + FormatMs(worst) + ", " + std::to_string(hits) +
                            " hits  elapsed " + Elapsed(started));
      }
    }
    ctx.progress.Done();
    for (Series& s : series) {
      if (!s.baseline) {
        std::string misses = MissReasons(s);
        if (!misses.empty()) s.note = "misses: " + misses;
      }
      ctx.series.push_back(std::move(s));
    }
    std::ostringstream title;
    title << b << " pod" << (b > 1 ? "s" : "") << " requested at once (" << app.label << "), "
          << opt.burst_repeats << " bursts per variant. cold = containerd direct; pool-N = "
          << "through warmpoold with a" << (opt.burst_pool == "sandbox" ? " sandbox" : "n app")
          << " pool of N entries, full when the burst starts and refilling (max_concurrent_creates "
             "2) while it runs.";
    ctx.titles.push_back({scenario, title.str()});
  }
  Drain(ctx);
}

void RunMissScenario(Context& ctx) {
  const BenchOptions& opt = ctx.opt;
  const auto started = Clock::now();
  AppSpec app;
  app.image = opt.app_image;
  app.env = {{"INIT_SECONDS", "0"}};
  app.label = "testapp, INIT_SECONDS=0";
  // A pool exists (so warmpoold parses and matches every RunPodSandbox), but
  // these pods name none and there is no default pool: every one is forwarded.
  const std::vector<PoolSpec> pools = {SandboxPool("bench-sb", 1)};
  if (std::string err = ctx.daemon->SetPools(pools); !err.empty()) {
    ctx.failures++;
    ctx.problems.push_back("miss: " + err);
    return;
  }
  if (std::string err = WaitPools(ctx, pools); !err.empty()) {
    ctx.failures++;
    ctx.problems.push_back("miss: " + err);
    return;
  }
  PodRunner direct(RunOptions(ctx, opt.endpoint, "", app));
  PodRunner via(RunOptions(ctx, ctx.daemon->socket(), "", app));
  for (PodRunner* r : {&direct, &via}) {
    if (std::string err = r->Connect(); !err.empty()) {
      ctx.failures++;
      ctx.problems.push_back("miss: " + err);
      return;
    }
  }
  Series d, w;
  d.scenario = w.scenario = "miss";
  d.variant = "direct";
  d.baseline = true;
  w.variant = "via-warmpoold";
  for (int i = 0; i < opt.miss_pods && !ctx.stop->load(); ++i) {
    // Alternate which goes first: neither side always follows a teardown.
    for (int k = 0; k < 2; ++k) {
      const bool through = (i + k) % 2 == 1;
      PodRunner& r = through ? via : direct;
      PodSample s = r.Run(PodName(ctx));
      s.burst = i;  // the pair this pod belongs to
      if (through) Classify(ctx, "", r, &s);
      RemovePod(ctx, r);
      Record(ctx, s, std::string("miss ") + (through ? "via" : "direct"));
      ctx.progress.Update("[miss] pair " + std::to_string(i + 1) + "/" +
                          std::to_string(opt.miss_pods) + "  " +
                          (through ? "via warmpoold: " : "direct: ") +
                          (s.ok ? FormatMs(s.ms[kTotal]) : "FAILED") + "  elapsed " +
                          Elapsed(started));
      (through ? w : d).samples.push_back(std::move(s));
    }
  }
  ctx.progress.Done();
  // Paired differences (same round): mean and a 95% interval, per phase.
  std::ostringstream note;
  note << "added by warmpoold (pairs of pods started one after the other, mean of via − direct "
          "± 95% interval):";
  for (Phase ph : {kSandbox, kCreate, kStart, kTotal}) {
    std::vector<double> diff;
    for (size_t i = 0; i < std::min(d.samples.size(), w.samples.size()); ++i) {
      if (d.samples[i].ok && w.samples[i].ok) {
        diff.push_back(w.samples[i].ms[ph] - d.samples[i].ms[ph]);
      }
    }
    if (diff.size() < 2) continue;
    double mean = 0;
    for (double x : diff) mean += x;
    mean /= diff.size();
    double var = 0;
    for (double x : diff) var += (x - mean) * (x - mean);
    var /= diff.size() - 1;
    const double half = 1.96 * std::sqrt(var / diff.size());
    char buf[96];
    std::snprintf(buf, sizeof(buf), " %s %+.2f ± %.2f ms;", PhaseName(ph), mean, half);
    note << buf;
  }
  w.note = note.str();
  const std::string misses = MissReasons(w);
  if (!misses.empty()) w.note += " outcomes: " + misses;
  ctx.series.push_back(std::move(d));
  ctx.series.push_back(std::move(w));
  ctx.titles.push_back(
      {"miss",
       "A pod no pool serves (" + app.label + "; warmpoold has a pool, the pod names none): " +
           std::to_string(opt.miss_pods) +
           " pods each way, alternating. direct = containerd; via-warmpoold = the same calls "
           "through warmpoold, which parses RunPodSandbox, finds no pool and forwards it."});
  Drain(ctx);
}

void RunMemoryScenario(Context& ctx) {
  const BenchOptions& opt = ctx.opt;
  Drain(ctx);
  std::this_thread::sleep_for(2s);
  MemoryRow base;
  base.what = "no pool (after the other scenarios)";
  base.rss_bytes = ctx.daemon->RssBytes().value_or(0);
  ctx.memory.push_back(base);

  struct Kind {
    std::string what;
    PoolSpec pool;
  };
  AppSpec testapp;
  testapp.image = opt.app_image;
  testapp.env = {{"INIT_SECONDS", "0"}};
  std::vector<Kind> kinds = {
      {"sandbox pool (pause only)", SandboxPool("bench-mem", opt.memory_entries)},
      {"app pool: testapp", AppPool("bench-mem", opt.memory_entries, testapp)},
  };
  if (!opt.python_image.empty() && opt.memory_python_entries > 0) {
    AppSpec py;
    py.image = opt.python_image;
    kinds.push_back({"app pool: Python (pandas, scikit-learn)",
                     AppPool("bench-mem", opt.memory_python_entries, py)});
  }
  for (Kind& k : kinds) {
    if (ctx.stop->load()) break;
    ctx.progress.Update("[memory] filling " + k.what + " to " + std::to_string(k.pool.size) +
                        " frozen entries");
    std::string err = ctx.daemon->SetPools({k.pool});
    if (err.empty()) err = WaitPools(ctx, {k.pool});
    if (!err.empty()) {
      ctx.failures++;
      ctx.problems.push_back("memory: " + err);
      Drain(ctx);
      continue;
    }
    std::this_thread::sleep_for(2s);
    MemoryRow row;
    row.what = k.what;
    std::vector<double> per;
    for (const auto& e : ctx.daemon->Entries(k.pool.name)) {
      if (e.state() == adminpb::ENTRY_STATE_FROZEN) per.push_back(double(e.memory_bytes()));
    }
    row.frozen = static_cast<int>(per.size());
    row.rss_bytes = ctx.daemon->RssBytes().value_or(0);
    if (!per.empty()) {
      Summary s = Summarize(per);
      row.entry_mean = s.mean;
      row.entry_min = s.min;
      row.entry_max = s.max;
    }
    if (row.frozen > 0 && base.rss_bytes > 0) {
      row.note = "warmpoold RSS per frozen entry: " +
                 Mib((double(row.rss_bytes) - double(base.rss_bytes)) / row.frozen);
    }
    ctx.memory.push_back(row);
    Drain(ctx);
  }
  ctx.progress.Done();
}

std::string MemoryMarkdown(const std::vector<MemoryRow>& rows) {
  std::ostringstream out;
  out << "| pool | frozen entries | warmpoold RSS | memory per frozen entry (mean) | min | max "
         "| note |\n|---|---:|---:|---:|---:|---:|---|\n";
  for (const MemoryRow& r : rows) {
    out << "| " << r.what << " | " << r.frozen << " | " << Mib(double(r.rss_bytes)) << " | "
        << (r.frozen ? Mib(r.entry_mean) : "–") << " | " << (r.frozen ? Mib(r.entry_min) : "–")
        << " | " << (r.frozen ? Mib(r.entry_max) : "–") << " | " << r.note << " |\n";
  }
  return out.str();
}

std::string MemoryCsv(const std::vector<MemoryRow>& rows) {
  std::ostringstream out;
  out << "pool,frozen_entries,warmpoold_rss_bytes,entry_mean_bytes,entry_min_bytes,"
         "entry_max_bytes\n";
  for (const MemoryRow& r : rows) {
    out << "\"" << r.what << "\"," << r.frozen << "," << r.rss_bytes << ","
        << static_cast<uint64_t>(r.entry_mean) << "," << static_cast<uint64_t>(r.entry_min) << ","
        << static_cast<uint64_t>(r.entry_max) << "\n";
  }
  return out.str();
}

}  // namespace warmpool::bench
