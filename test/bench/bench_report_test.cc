// warmpool-bench's statistics and outputs, without containerd: percentiles,
// reductions against the baseline, the CSV rows and the SVG plot's shape.

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "bench/daemon.h"
#include "bench/report.h"
#include "bench/samples.h"

namespace warmpool::bench {
namespace {

PodSample Pod(double total, const std::string& outcome = "") {
  PodSample p;
  p.pod = "default/p";
  p.ok = true;
  p.ms = {total * 0.5, total * 0.1, total * 0.1, total * 0.3, total};
  p.sandbox_outcome = outcome;
  return p;
}

size_t Count(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

TEST(BenchStats, NearestRankPercentiles) {
  std::vector<double> v;
  for (int i = 100; i >= 1; --i) v.push_back(i);  // unsorted on purpose
  Summary s = Summarize(v);
  EXPECT_EQ(s.n, 100u);
  EXPECT_EQ(s.min, 1);
  EXPECT_EQ(s.p50, 50);
  EXPECT_EQ(s.p90, 90);
  EXPECT_EQ(s.p99, 99);
  EXPECT_EQ(s.max, 100);
  EXPECT_DOUBLE_EQ(s.mean, 50.5);
  // 20 samples: p99 is the maximum, never interpolated beyond the data.
  Summary t = Summarize({5, 1, 3, 2, 4, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20});
  EXPECT_EQ(t.p50, 10);
  EXPECT_EQ(t.p90, 18);
  EXPECT_EQ(t.p99, 20);
  EXPECT_EQ(Summarize({}).n, 0u);
}

TEST(BenchStats, ReductionAgainstBaseline) {
  EXPECT_DOUBLE_EQ(ReductionPercent(15, 100), 85);
  EXPECT_DOUBLE_EQ(ReductionPercent(200, 100), -100);
  EXPECT_TRUE(std::isnan(ReductionPercent(1, 0)));
}

TEST(BenchReport, FailedPodsAreCountedButNotInTheStatistics) {
  Series s;
  s.samples = {Pod(10, "hit"), Pod(20, "app_pool")};
  PodSample failed;
  failed.error = "RunPodSandbox: UNAVAILABLE";
  s.samples.push_back(failed);
  EXPECT_EQ(s.Ok(), 2u);
  EXPECT_EQ(s.SandboxHits(), 1u);
  EXPECT_EQ(s.Values(kTotal), (std::vector<double>{10, 20}));
}

TEST(BenchReport, TablesCsvAndPlot) {
  Series cold, warm;
  cold.scenario = warm.scenario = "app";
  cold.variant = "cold";
  cold.baseline = true;
  warm.variant = "app-pool";
  for (int i = 1; i <= 10; ++i) {
    cold.samples.push_back(Pod(1000 * i));
    warm.samples.push_back(Pod(10 * i, "hit"));
  }
  warm.note = "a note";
  std::vector<Series> all = {cold, warm};

  const std::string md = MarkdownTables(all, {{"app", "the title"}});
  EXPECT_NE(md.find("#### app"), std::string::npos);
  EXPECT_NE(md.find("the title"), std::string::npos);
  EXPECT_NE(md.find("| app-pool | 10/10 | 10/10 | sandbox |"), std::string::npos) << md;
  // total p50: 50 ms against 5 s: 99% less.
  EXPECT_NE(md.find("−99.0%"), std::string::npos) << md;
  EXPECT_NE(md.find("- app-pool: a note"), std::string::npos);

  const std::string samples = SamplesCsv(all);
  EXPECT_EQ(Count(samples, "\n"), 21u);  // header + 20 pods
  const std::string summary = SummaryCsv(all);
  EXPECT_EQ(Count(summary, "\n"), 1u + 2 * kPhaseCount);
  EXPECT_NE(summary.find("app,app-pool,total,10,10,10,0,10.000,50.000,90.000,100.000,100.000,"
                         "55.000,99.000,99.000"),
            std::string::npos)
      << summary;

  const std::string svg = CdfSvg({&all[0], &all[1]}, "t <&>");
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
  EXPECT_EQ(Count(svg, "<polyline"), 2u);
  EXPECT_NE(svg.find("t &lt;&amp;&gt;"), std::string::npos);
  EXPECT_NE(svg.find("app app-pool (p50 50.0 ms)"), std::string::npos);
}

TEST(BenchReport, FormatMs) {
  EXPECT_EQ(FormatMs(3.214), "3.21 ms");
  EXPECT_EQ(FormatMs(412.04), "412.0 ms");
  EXPECT_EQ(FormatMs(5013), "5.013 s");
}

// Hits and misses per pod come from warmpoold's log lines (handoff.cc and the
// container hand-off), read as the log grows.
TEST(BenchDaemonLog, OutcomesPerPodFromTheLog) {
  char tmpl[] = "/tmp/wp-bench-log-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  BenchDaemon::Options o;
  o.dir = tmpl;
  BenchDaemon daemon(o);
  {
    std::ofstream log(daemon.log_path());
    log << "[2026-12-04 13:00:00.000] [info] hit: pod default/a pool sb entry 71e7e116b564 "
           "sandbox cd0c2f4e4371d in 37492us\n"
        << "[2026-12-04 13:00:00.100] [info] miss: pod default/b pool app: pool \"app\" has "
           "pre-started containers; not implemented yet [app_pool]\n"
        << "[2026-12-04 13:00:00.200] [info] hit: pod default/c pool app entry 1 sandbox 2 in 9us\n"
        << "[2026-12-04 13:00:00.300] [info] hit: pod default/c container app pool app "
           "pre-started 3 in 5us\n"
        << "[2026-12-04 13:00:00.400] [info] miss: pod default/d pool p1: no frozen entry left "
           "[pool_empty]\n"
        << "[2026-12-04 13:00:00.500] [info] hit: pod default/e pool app entry 4 sandbox 5 i";
  }
  EXPECT_EQ(daemon.SandboxOutcome("default/a"), "hit");
  EXPECT_EQ(daemon.ContainerOutcome("default/a"), "");
  EXPECT_EQ(daemon.SandboxOutcome("default/b"), "app_pool");
  EXPECT_EQ(daemon.SandboxOutcome("default/c"), "hit");
  EXPECT_EQ(daemon.ContainerOutcome("default/c"), "hit");
  EXPECT_EQ(daemon.SandboxOutcome("default/d"), "pool_empty");
  EXPECT_EQ(daemon.SandboxOutcome("default/e"), "");  // its line is not complete yet
  {
    std::ofstream log(daemon.log_path(), std::ios::app);
    log << "n 8us\n[2026-12-04 13:00:00.600] [info] miss: pod default/e container app pool app: "
           "command differs [template_mismatch]; the pre-started one is removed\n";
  }
  EXPECT_EQ(daemon.SandboxOutcome("default/e"), "hit");
  EXPECT_EQ(daemon.ContainerOutcome("default/e"), "template_mismatch");
  EXPECT_EQ(daemon.SandboxOutcome("default/zzz"), "");
  std::filesystem::remove_all(tmpl);
}

}  // namespace
}  // namespace warmpool::bench
