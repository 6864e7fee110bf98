#include "bench/pod_run.h"

#include <algorithm>
#include <thread>

namespace warmpool::bench {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

std::string FirstLine(const std::string& s) {
  std::string line = s.substr(0, s.find('\n'));
  return line.size() > 120 ? line.substr(0, 120) : line;
}

}  // namespace

PodRunner::PodRunner(PodRunOptions options) : options_(std::move(options)) {
  testing::KubeletDriver::Options o;
  o.endpoint = options_.endpoint;
  o.work_dir = options_.work_dir;
  o.cgroup_parent = options_.cgroup_parent;
  o.app_image = options_.app.image;
  o.cleanup_endpoint = options_.cleanup_endpoint;
  o.rpc_timeout = std::chrono::seconds(120);
  driver_ = std::make_unique<testing::KubeletDriver>(o);
}

std::string PodRunner::Connect() {
  ::runtime::v1::VersionResponse v;
  grpc::Status s = driver_->Version(&v);
  return s.ok() ? "" : "CRI Version on " + options_.endpoint + ": " + testing::StatusString(s);
}

PodSample PodRunner::Run(const std::string& name) {
  PodSample sample;
  run_ = testing::PodRun();
  testing::PodSpec spec;
  spec.name = name;
  if (!options_.pool.empty()) spec.annotations["warmpool.io/pool"] = options_.pool;
  spec.containers[0].image = options_.app.image;
  spec.containers[0].env = options_.app.env;
  sample.pod = spec.ns + "/" + name;
  run_.spec = spec;
  run_.sandbox_config = driver_->MakeSandboxConfig(spec);
  run_.spec.uid = run_.sandbox_config.metadata().uid();
  auto fail = [&](const std::string& what, const grpc::Status& s) {
    sample.error = what + ": " + testing::StatusString(s);
    return sample;
  };

  // kubelet makes the pod's cgroup before it asks for the sandbox.
  driver_->CreatePodCgroups(run_.spec.uid);

  // Phase 1: the sandbox, and its IP (kubelet asks PodSandboxStatus next).
  const auto t0 = Clock::now();
  grpc::Status s = driver_->RunPodSandbox(run_.sandbox_config, "", &run_.run_sandbox);
  if (!s.ok()) return fail("RunPodSandbox", s);
  run_.sandbox_id = run_.run_sandbox.pod_sandbox_id();
  s = driver_->PodSandboxStatus(run_.sandbox_id, false, &run_.sandbox_status);
  if (!s.ok()) return fail("PodSandboxStatus", s);
  run_.pod_ip = run_.sandbox_status.status().network().ip();
  const auto t1 = Clock::now();

  // Phase 2: the image (IfNotPresent) and the container.
  std::string image_id;
  s = driver_->EnsureImage(options_.app.image, run_.sandbox_config, &run_, &image_id);
  if (!s.ok()) return fail("ImageStatus/PullImage", s);
  ::runtime::v1::ContainerConfig config = driver_->MakeContainerConfig(run_, 0, image_id);
  ::runtime::v1::CreateContainerResponse created;
  s = driver_->CreateContainer(run_.sandbox_id, config, run_.sandbox_config, &created);
  if (!s.ok()) return fail("CreateContainer", s);
  run_.container_ids.push_back(created.container_id());
  const auto t2 = Clock::now();

  // Phase 3: start.
  ::runtime::v1::StartContainerResponse started;
  s = driver_->StartContainer(created.container_id(), &started);
  if (!s.ok()) return fail("StartContainer", s);
  const auto t3 = Clock::now();

  // Phase 4: the app's first 200. Polls at ~1% of the time waited so far
  // (0.5 ms to 10 ms): millisecond resolution for a warm pod, little load
  // from the poller while a cold one initialises.
  if (run_.pod_ip.empty()) {
    sample.error = "the sandbox has no IP";
    return sample;
  }
  const auto deadline = t0 + options_.app_timeout;
  std::optional<testing::HttpResponse> answer;
  while (true) {
    const auto now = Clock::now();
    if (now >= deadline) break;
    answer = testing::HttpGet(run_.pod_ip, options_.app.port, options_.app.path,
                              std::min(now + 5s, deadline));
    if (answer && answer->status == 200) break;
    answer.reset();
    const auto waited = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t3);
    std::this_thread::sleep_for(std::clamp<std::chrono::microseconds>(waited / 100, 500us, 10ms));
  }
  const auto t4 = Clock::now();
  if (!answer) {
    sample.error = "no HTTP 200 from " + run_.pod_ip + ":" + std::to_string(options_.app.port) +
                   " within " + std::to_string(options_.app_timeout.count()) + " s";
    return sample;
  }
  sample.ms[kSandbox] = Ms(t1 - t0);
  sample.ms[kCreate] = Ms(t2 - t1);
  sample.ms[kStart] = Ms(t3 - t2);
  sample.ms[kAppReady] = Ms(t4 - t3);
  sample.ms[kTotal] = Ms(t4 - t0);
  sample.body = FirstLine(answer->body);
  sample.ok = true;

  if (options_.measure_idle) {
    std::this_thread::sleep_for(1500ms);
    const auto i0 = Clock::now();
    auto again = testing::HttpGet(run_.pod_ip, options_.app.port, options_.app.path, i0 + 10s);
    if (again && again->status == 200) sample.idle_answer_ms = Ms(Clock::now() - i0);
  }
  return sample;
}

std::string PodRunner::Remove() {
  std::string problems;
  if (!run_.sandbox_id.empty()) {
    grpc::Status s = driver_->StopAndRemovePod(run_);
    if (!s.ok()) problems = "removing pod " + run_.spec.name + ": " + testing::StatusString(s) + "\n";
  }
  // Whatever is left (a half-started pod), straight against containerd.
  std::string left = driver_->Cleanup();
  run_ = testing::PodRun();
  return problems + left;
}

}  // namespace warmpool::bench
