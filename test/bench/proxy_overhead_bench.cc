// What warmpoold adds to a CRI call it only forwards: the same calls made
// straight to containerd and through warmpoold, interleaved one by one so
// both paths see the same machine state, against the harness's containerd.
//
//   proxy_overhead_bench [--sandboxes N] [--iterations N]
//
// Prints a table: p50 and p99 of each path and the difference. Needs the test
// bed (test/harness/containerd.sh start DIR; source DIR/env).

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "test/integration/kubelet_driver.h"
#include "test/integration/warmpoold_process.h"

namespace wt = warmpool::testing;
namespace cri = runtime::v1;
using Clock = std::chrono::steady_clock;

namespace {

struct Row {
  std::string name;
  std::vector<double> direct_us, proxied_us;
};

double Percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  size_t idx = static_cast<size_t>(p * (v.size() - 1) + 0.5);
  return v[idx];
}

// Times `call(stub)` `iterations` times on each path, alternating.
Row Measure(const std::string& name, int iterations, cri::RuntimeService::Stub& direct,
            cri::RuntimeService::Stub& proxied,
            const std::function<grpc::Status(cri::RuntimeService::Stub&)>& call) {
  Row row{name, {}, {}};
  for (int i = 0; i < iterations / 10 + 10; ++i) {  // warm both connections
    (void)call(direct);
    (void)call(proxied);
  }
  for (int i = 0; i < iterations; ++i) {
    for (int side = 0; side < 2; ++side) {
      // Alternate which path goes first so neither always follows the other.
      const bool use_direct = (side == 0) == (i % 2 == 0);
      auto t0 = Clock::now();
      grpc::Status s = call(use_direct ? direct : proxied);
      double us = std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
      if (!s.ok()) {
        std::fprintf(stderr, "%s failed: %s\n", name.c_str(), wt::StatusString(s).c_str());
        std::exit(1);
      }
      (use_direct ? row.direct_us : row.proxied_us).push_back(us);
    }
  }
  return row;
}

}  // namespace

int main(int argc, char** argv) {
  int sandboxes = 100, iterations = 2000;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--sandboxes"))
      sandboxes = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--iterations"))
      iterations = std::atoi(argv[i + 1]);
    else {
      std::fprintf(stderr, "usage: %s [--sandboxes N] [--iterations N]\n", argv[0]);
      return 2;
    }
  }
  auto env = wt::TestBedEnv::FromEnvironment();
  if (!env) {
    std::fprintf(stderr, "no test bed: run test/harness/containerd.sh start DIR; source DIR/env\n");
    return 2;
  }
  char tmpl[] = "/tmp/wp-bench-XXXXXX";
  std::filesystem::path dir = mkdtemp(tmpl);

  wt::WarmpooldProcess::Options wopts;
  wopts.upstream = env->containerd_sock;
  wopts.dir = dir / "warmpoold";
  wopts.log_level = "info";  // per-call debug lines would be measured too
  wt::WarmpooldProcess daemon(wopts);
  if (std::string err = daemon.Start(); !err.empty()) {
    std::fprintf(stderr, "warmpoold did not start: %s\n", err.c_str());
    return 1;
  }

  wt::KubeletDriver::Options dopts;
  dopts.endpoint = env->containerd_sock;
  dopts.work_dir = dir / "pods";
  dopts.cgroup_parent = env->cgroup_parent;
  dopts.app_image = env->app_image;
  wt::KubeletDriver driver(dopts);

  std::fprintf(stderr, "creating %d sandboxes and one app container...\n", sandboxes);
  std::string container_id;
  for (int i = 0; i < sandboxes; ++i) {
    wt::PodSpec spec;
    spec.name = "bench-" + wt::KubeletDriver::UniqueToken();
    if (i > 0) spec.containers.clear();
    wt::PodRun run;
    grpc::Status s = driver.StartPod(spec, &run);
    if (!s.ok()) {
      std::fprintf(stderr, "pod %d: %s\n", i, wt::StatusString(s).c_str());
      return 1;
    }
    if (i == 0) container_id = run.container_ids.at(0);
  }

  auto direct = cri::RuntimeService::NewStub(wt::ConnectCri(env->containerd_sock));
  auto proxied = cri::RuntimeService::NewStub(wt::ConnectCri(daemon.socket_path()));
  auto deadline = [] { return std::chrono::system_clock::now() + std::chrono::seconds(10); };

  std::vector<Row> rows;
  rows.push_back(Measure("Version", iterations, *direct, *proxied, [&](auto& stub) {
    grpc::ClientContext ctx;
    ctx.set_deadline(deadline());
    cri::VersionRequest req;
    cri::VersionResponse resp;
    return stub.Version(&ctx, req, &resp);
  }));
  rows.push_back(Measure("ListPodSandbox (" + std::to_string(sandboxes) + " sandboxes)",
                         iterations / 2, *direct, *proxied, [&](auto& stub) {
                           grpc::ClientContext ctx;
                           ctx.set_deadline(deadline());
                           cri::ListPodSandboxRequest req;
                           cri::ListPodSandboxResponse resp;
                           grpc::Status s = stub.ListPodSandbox(&ctx, req, &resp);
                           if (s.ok() && resp.items_size() < sandboxes) {
                             return grpc::Status(grpc::StatusCode::INTERNAL, "short list");
                           }
                           return s;
                         }));
  rows.push_back(Measure("ContainerStatus", iterations, *direct, *proxied, [&](auto& stub) {
    grpc::ClientContext ctx;
    ctx.set_deadline(deadline());
    cri::ContainerStatusRequest req;
    req.set_container_id(container_id);
    cri::ContainerStatusResponse resp;
    return stub.ContainerStatus(&ctx, req, &resp);
  }));

  std::printf(
      "\n| RPC | calls | direct p50 | direct p99 | via warmpoold p50 | via warmpoold p99 "
      "| added p50 | added p99 |\n|---|---:|---:|---:|---:|---:|---:|---:|\n");
  for (const Row& r : rows) {
    double d50 = Percentile(r.direct_us, 0.5), d99 = Percentile(r.direct_us, 0.99);
    double p50 = Percentile(r.proxied_us, 0.5), p99 = Percentile(r.proxied_us, 0.99);
    std::printf("| %s | %zu | %.0f µs | %.0f µs | %.0f µs | %.0f µs | %+.0f µs | %+.0f µs |\n",
                r.name.c_str(), r.direct_us.size(), d50, d99, p50, p99, p50 - d50, p99 - d99);
  }
  std::fflush(stdout);

  std::fprintf(stderr, "cleaning up...\n");
  std::string leftover = driver.Cleanup();
  std::string stop = daemon.Stop();
  std::filesystem::remove_all(dir);
  if (!leftover.empty() || !stop.empty()) {
    std::fprintf(stderr, "cleanup: %s %s\n", leftover.c_str(), stop.c_str());
    return 1;
  }
  return 0;
}
