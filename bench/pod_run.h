#pragma once

// One pod started the way kubelet starts it, timed phase by phase, through
// any CRI endpoint: RunPodSandbox and PodSandboxStatus (sandbox),
// ImageStatus and CreateContainer (create), StartContainer (start), then
// HTTP GETs on the pod IP until the app answers 200 (app ready).
//
// A PodRunner belongs to one thread; bursts use one per pod, made before the
// burst starts (its gRPC connection is opened and used once beforehand, as
// kubelet's long-lived connection would be).

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "bench/samples.h"
#include "test/integration/kubelet_driver.h"

namespace warmpool::bench {

// The pod's single container and how to tell it serves.
struct AppSpec {
  std::string label;  // for titles: "testapp, INIT_SECONDS=5"
  std::string image;
  std::vector<std::pair<std::string, std::string>> env;
  int port = 8080;
  std::string path = "/";
};

struct PodRunOptions {
  std::string endpoint;          // the CRI socket the pod is started through
  std::string cleanup_endpoint;  // containerd itself: removal never depends on warmpoold
  std::filesystem::path work_dir;
  std::string cgroup_parent;     // pods go to <cgroup_parent>/pod<uid>
  std::string pool;              // annotation warmpool.io/pool ("" none)
  AppSpec app;
  std::chrono::seconds app_timeout{180};
  bool measure_idle = false;     // one more GET after 1.5 s idle (the idle-page floor)
};

class PodRunner {
 public:
  explicit PodRunner(PodRunOptions options);

  // Opens the connection (CRI Version). "" or the error.
  std::string Connect();
  // Starts pod `name` and waits for its app. The pod keeps running until
  // Remove(). The sample's outcomes are left empty (the caller asks warmpoold).
  PodSample Run(const std::string& name);
  // kubelet's teardown of the last pod (StopPodSandbox, RemovePodSandbox
  // through `endpoint`), then anything left straight against containerd.
  // "" or what could not be removed.
  std::string Remove();

  const std::string& sandbox_id() const { return run_.sandbox_id; }
  const std::vector<std::string>& container_ids() const { return run_.container_ids; }

 private:
  PodRunOptions options_;
  std::unique_ptr<testing::KubeletDriver> driver_;
  testing::PodRun run_;
};

}  // namespace warmpool::bench
