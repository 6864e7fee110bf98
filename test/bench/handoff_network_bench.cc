// The hand-off, by network mode, against the harness's containerd and the
// bed's bridge CNI: how long kubelet's RunPodSandbox takes, and how long from
// RunPodSandbox to the first HTTP answer of the pod's app (container created
// and started cold in the sandbox, as kubelet does after RunPodSandbox), for
//   cold   no pool: containerd makes the sandbox (its CNI ADD included);
//   early  a sandbox pool with network = "early" (CNI ran when it was made);
//   late   a sandbox pool with network = "late": at hand-off warmpoold
//          removes the placeholder and runs the bed's conflist ADD
//          (bridge + host-local + portmap) with the pod's identity.
//
//   handoff_network_bench [--runs N]     (default 10 pods per mode)
//
// One warmpoold with the two pools (size 1 each; every warm pod waits for a
// frozen entry first, so every warm pod is a hit). Pods are removed through
// warmpoold after each measurement. Needs the test bed
// (test/harness/containerd.sh start DIR; source DIR/env).

#include <signal.h>
#include <stdlib.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "daemon/readiness.h"
#include "test/integration/kubelet_driver.h"
#include "test/integration/pool_support.h"
#include "test/integration/warmpoold_process.h"

namespace wt = warmpool::testing;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(p * (v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

struct Sample {
  double run_ms = 0;    // RunPodSandbox
  double first_ms = 0;  // RunPodSandbox start -> first HTTP answer
};

}  // namespace

int main(int argc, char** argv) {
  int runs = 10;
  for (int i = 1; i < argc; ++i) {
    if (!strcmp(argv[i], "--runs") && i + 1 < argc) {
      runs = atoi(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: handoff_network_bench [--runs N]\n");
      return 2;
    }
  }
  auto env = wt::TestBedEnv::FromEnvironment();
  if (!env || wt::Getenv("WP_TEST_LATE_RUNTIME_HANDLER").empty()) {
    std::fprintf(stderr, "no test bed: test/harness/containerd.sh start DIR; source DIR/env\n");
    return 2;
  }
  char tmpl[] = "/tmp/wpnb-XXXXXX";
  if (!mkdtemp(tmpl)) return 1;
  const std::filesystem::path dir = tmpl;
  const std::string token = wt::KubeletDriver::UniqueToken();
  const std::string pool_parent = env->cgroup_parent + "/bench-" + token;

  wt::WarmpooldProcess::Options o;
  o.upstream = env->containerd_sock;
  o.dir = dir / "wp";
  o.log_level = "info";
  o.extra_daemon_config = "pool_cgroup_parent = \"" + pool_parent +
                          "\"\nlate_runtime_handler = \"" +
                          wt::Getenv("WP_TEST_LATE_RUNTIME_HANDLER") + "\"\ncni_conf_dir = \"" +
                          wt::Getenv("WP_TEST_CNI_CONF_DIR") + "\"\ncni_bin_dir = \"" +
                          wt::Getenv("WP_TEST_CNI_BIN_DIR") + "\"";
  const std::string pools =
      "[[pool]]\nname = \"early\"\nsize = 1\nnetwork = \"early\"\n[pool.sandbox]\n"
      "dns = { servers = [\"127.0.0.1\"] }\n\n"
      "[[pool]]\nname = \"late\"\nsize = 1\nnetwork = \"late\"\n[pool.sandbox]\n"
      "dns = { servers = [\"127.0.0.1\"] }\n";
  o.extra_config = pools;
  wt::WarmpooldProcess daemon(o);
  if (std::string err = daemon.Start(); !err.empty()) {
    std::fprintf(stderr, "warmpoold did not start: %s\n", err.c_str());
    return 1;
  }
  wt::AdminClient admin(daemon.admin_path().string());
  wt::KubeletDriver::Options d;
  d.endpoint = daemon.socket_path();
  d.work_dir = dir / "pods";
  d.cgroup_parent = env->cgroup_parent;
  d.app_image = env->app_image;
  d.cleanup_endpoint = env->containerd_sock;
  wt::KubeletDriver driver(d);

  int failures = 0;
  std::vector<std::pair<std::string, std::vector<Sample>>> results;
  for (const std::string mode : {"cold", "early", "late"}) {
    std::vector<Sample> samples;
    for (int i = 0; i < runs; ++i) {
      if (mode != "cold" && !wt::WaitFor(
                                [&] {
                                  auto p = admin.Pool(mode);
                                  return p && p->frozen() >= 1;
                                },
                                60s)) {
        std::fprintf(stderr, "pool %s did not refill\n", mode.c_str());
        ++failures;
        break;
      }
      wt::PodSpec spec;
      spec.name = mode + "-" + std::to_string(i) + "-" + token;
      if (mode != "cold") spec.annotations["warmpool.io/pool"] = mode;
      spec.containers[0].env = {{"INIT_SECONDS", "0"}};
      wt::PodRun run;
      run.spec = spec;
      run.sandbox_config = driver.MakeSandboxConfig(spec);
      run.spec.uid = run.sandbox_config.metadata().uid();
      const auto t0 = Clock::now();
      grpc::Status s = driver.RunPodSandbox(run.sandbox_config, "", &run.run_sandbox);
      const auto t1 = Clock::now();
      run.sandbox_id = run.run_sandbox.pod_sandbox_id();
      if (s.ok()) s = driver.PodSandboxStatus(run.sandbox_id, false, &run.sandbox_status);
      run.pod_ip = run.sandbox_status.status().network().ip();
      std::string image_id;
      if (s.ok()) s = driver.EnsureImage(env->app_image, run.sandbox_config, &run, &image_id);
      wt::cri::CreateContainerResponse created;
      if (s.ok()) {
        s = driver.CreateContainer(run.sandbox_id, driver.MakeContainerConfig(run, 0, image_id),
                                   run.sandbox_config, &created);
      }
      wt::cri::StartContainerResponse started;
      if (s.ok()) s = driver.StartContainer(created.container_id(), &started);
      // Polled every millisecond (the tests' WaitForHttp polls every 20).
      bool answer = s.ok() && wt::WaitFor(
                                  [&] {
                                    auto code = warmpool::HttpGetStatus(run.pod_ip, 8080, "/", 1s);
                                    return code.ok() && *code == 200;
                                  },
                                  30s, 1ms);
      const auto t2 = Clock::now();
      if (!s.ok() || !answer) {
        std::fprintf(stderr, "%s pod %d failed: %s\n", mode.c_str(), i,
                     s.ok() ? "no HTTP answer" : wt::StatusString(s).c_str());
        ++failures;
      } else {
        samples.push_back({Ms(t1 - t0), Ms(t2 - t0)});
      }
      run.container_ids.push_back(created.container_id());
      if (!run.sandbox_id.empty()) (void)driver.StopAndRemovePod(run);
    }
    results.emplace_back(mode, samples);
  }

  std::printf("\nhand-off by network mode (%d pods each; bridge + host-local + portmap CNI)\n",
              runs);
  std::printf("%-6s %6s %14s %14s %18s %18s\n", "mode", "pods", "run p50 ms", "run p99 ms",
              "first HTTP p50 ms", "first HTTP p99 ms");
  for (const auto& [mode, samples] : results) {
    std::vector<double> run, first;
    for (const Sample& s : samples) {
      run.push_back(s.run_ms);
      first.push_back(s.first_ms);
    }
    std::printf("%-6s %6zu %14.1f %14.1f %18.1f %18.1f\n", mode.c_str(), samples.size(),
                Percentile(run, 0.5), Percentile(run, 0.99), Percentile(first, 0.5),
                Percentile(first, 0.99));
  }

  // Drain, stop, clean.
  (void)wt::RewriteConfigTail(daemon.config_path().string(), "");
  kill(daemon.pid(), SIGHUP);
  if (!wt::WaitFor([&] { return admin.Entries().empty(); }, 60s)) ++failures;
  if (std::string err = daemon.Stop(); !err.empty()) {
    std::fprintf(stderr, "warmpoold stop: %s\n", err.c_str());
    ++failures;
  }
  (void)driver.Cleanup();
  auto left = wt::ForceRemovePools(env->containerd_sock, {"early", "late"}, pool_parent);
  for (const auto& p : left.problems) std::fprintf(stderr, "cleanup problem: %s\n", p.c_str());
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  return failures == 0 ? 0 : 1;
}
