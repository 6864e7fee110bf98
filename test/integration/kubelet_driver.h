#pragma once

// Test support shared by integration, end-to-end and benchmark code: a driver
// that talks CRI the way kubelet does for one pod at a time, the test bed's
// environment (exported by test/harness/containerd.sh), a plain HTTP GET to a
// pod IP, and polling with a deadline.
//
// Nothing here asserts: every step returns the gRPC status and fills the
// response, so a test can compare answers from two endpoints, or check an
// error, exactly as kubelet would see it.

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "cri_runtime_v1.grpc.pb.h"
#include "cri_runtime_v1.pb.h"

namespace warmpool::testing {

namespace cri = ::runtime::v1;
using Clock = std::chrono::steady_clock;

// The private containerd the harness started (test/harness/containerd.sh
// writes these as `export` lines to DIR/env; the test script sources it).
struct TestBedEnv {
  std::string containerd_sock;  // WP_TEST_CONTAINERD_SOCK
  std::string pause_image;      // WP_TEST_PAUSE_IMAGE
  std::string app_image;        // WP_TEST_APP_IMAGE
  std::string pod_cidr;         // WP_TEST_POD_CIDR
  std::string cgroup_parent;    // WP_TEST_CGROUP_PARENT: every test pod goes below it
  std::string test_dir;         // WP_TEST_DIR

  // nullopt when WP_TEST_CONTAINERD_SOCK is unset or empty.
  static std::optional<TestBedEnv> FromEnvironment();
  // True when WP_TEST_REQUIRE_CONTAINERD=1: a missing test bed is a failure,
  // not a skip (CI sets it so a broken harness cannot pass silently).
  static bool Required();
};

// The value of environment variable `name`, "" when unset.
std::string Getenv(const char* name);
// The whole content of file `path`, "" when it cannot be read.
std::string ReadAll(const std::filesystem::path& path);

// A gRPC channel to a CRI unix socket, with kubelet's 16 MiB message limit.
std::shared_ptr<grpc::Channel> ConnectCri(const std::string& socket_path);

// Polls `done` every `interval` until it returns true or `timeout` passes.
// Returns whether it became true. The only wait the tests use: no fixed sleeps.
bool WaitFor(const std::function<bool()>& done, std::chrono::milliseconds timeout,
             std::chrono::milliseconds interval = std::chrono::milliseconds(20));

struct HttpResponse {
  int status = 0;
  std::string body;
};

// One HTTP/1.0 GET to ip:port with an overall deadline. Returns nullopt on
// any connection or protocol failure. Only for pod IPs on the local test
// bridge (or loopback): the test bed never sends traffic elsewhere.
std::optional<HttpResponse> HttpGet(const std::string& ip, int port, const std::string& path,
                                    Clock::time_point deadline);

// Repeats HttpGet until it answers with `want_status` or the timeout passes.
std::optional<HttpResponse> WaitForHttp(const std::string& ip, int port, const std::string& path,
                                        std::chrono::milliseconds timeout, int want_status = 200);

// What a test says about one pod; the driver turns it into the requests
// kubelet would send (see MakeSandboxConfig / MakeContainerConfig).
struct PodSpec {
  std::string name;                                // pod name; also the hostname
  std::string ns = "default";                      // pod namespace
  std::string uid;                                 // pod UID; empty: generated
  uint32_t attempt = 0;                            // sandbox attempt
  std::map<std::string, std::string> labels;       // pod labels (added to kubelet's)
  std::map<std::string, std::string> annotations;  // pod annotations (added to kubelet's)
  std::vector<cri::PortMapping> port_mappings;
  std::string runtime_handler;  // RunPodSandboxRequest.runtime_handler

  struct Container {
    std::string name = "app";
    std::string image;  // empty: the test bed's app image
    std::vector<std::string> command;
    std::vector<std::string> args;
    std::vector<std::pair<std::string, std::string>> env;
    uint32_t attempt = 0;
    int64_t cpu_shares = 102;        // requests.cpu 100m
    int64_t cpu_quota = 0;           // 0: no CPU limit
    int64_t memory_limit_bytes = 0;  // 0: no memory limit
    int64_t oom_score_adj = 1000;    // BestEffort-like; raising is always allowed
  };
  std::vector<Container> containers{Container{}};
};

// The identity of one pod the driver started, and every answer on the way.
struct PodRun {
  PodSpec spec;
  cri::PodSandboxConfig sandbox_config;
  std::string sandbox_id;
  std::string pod_ip;
  std::vector<cri::ContainerConfig> container_configs;
  std::vector<std::string> container_ids;

  // Answers in the order kubelet gets them.
  cri::RunPodSandboxResponse run_sandbox;
  cri::PodSandboxStatusResponse sandbox_status;
  std::vector<cri::ImageStatusResponse> image_status;
  std::vector<cri::PullImageResponse> pulls;  // only for images that were missing
  std::vector<cri::CreateContainerResponse> create_container;
  std::vector<cri::StartContainerResponse> start_container;
  std::vector<cri::ContainerStatusResponse> container_status;
};

// Drives one CRI endpoint the way kubelet does. Every sandbox and container
// created through it is remembered; Cleanup() (also run by the destructor)
// stops and removes them and removes the pod cgroups kubelet would have
// removed, so a failing test leaves nothing behind. Not thread-safe: one test
// thread uses a driver.
class KubeletDriver {
 public:
  struct Options {
    std::string endpoint;            // CRI unix socket path
    std::filesystem::path work_dir;  // log dirs, etc-hosts, termination logs go below it
    std::string cgroup_parent;       // pods get cgroup_parent + "/pod<uid>"
    std::string app_image;           // default image for PodSpec::Container::image
    // Cleanup goes here instead of `endpoint` when set: tests that drive a
    // proxy clean up straight against containerd, so a broken or killed proxy
    // cannot leak pods.
    std::string cleanup_endpoint;
    std::chrono::milliseconds rpc_timeout{std::chrono::seconds(60)};
  };

  explicit KubeletDriver(Options options);
  ~KubeletDriver();
  KubeletDriver(const KubeletDriver&) = delete;
  KubeletDriver& operator=(const KubeletDriver&) = delete;

  cri::RuntimeService::Stub& runtime() { return *runtime_; }
  cri::ImageService::Stub& images() { return *images_; }
  const Options& options() const { return options_; }

  // A unique lower-case token for names and uids of this process's pods.
  static std::string UniqueToken();

  // kubelet's PodSandboxConfig for `spec` (creates the pod log directory).
  cri::PodSandboxConfig MakeSandboxConfig(const PodSpec& spec);
  // kubelet's ContainerConfig for container `index` of `run.spec`, in the
  // sandbox `run` describes (uses its uid and pod IP; writes the etc-hosts
  // file, termination log and service account files it mounts). `image_id`
  // is what kubelet puts in ImageSpec.image: the id ImageStatus/PullImage
  // reported.
  cri::ContainerConfig MakeContainerConfig(const PodRun& run, size_t index,
                                           const std::string& image_id);

  // One RPC each; ids of created objects are recorded for Cleanup.
  grpc::Status RunPodSandbox(const cri::PodSandboxConfig& config,
                             const std::string& runtime_handler, cri::RunPodSandboxResponse* out);
  grpc::Status PodSandboxStatus(const std::string& sandbox_id, bool verbose,
                                cri::PodSandboxStatusResponse* out);
  grpc::Status ImageStatus(const std::string& image, cri::ImageStatusResponse* out);
  grpc::Status PullImage(const std::string& image, const cri::PodSandboxConfig& sandbox_config,
                         cri::PullImageResponse* out);
  grpc::Status CreateContainer(const std::string& sandbox_id, const cri::ContainerConfig& config,
                               const cri::PodSandboxConfig& sandbox_config,
                               cri::CreateContainerResponse* out);
  grpc::Status StartContainer(const std::string& container_id, cri::StartContainerResponse* out);
  grpc::Status ContainerStatus(const std::string& container_id, bool verbose,
                               cri::ContainerStatusResponse* out);
  grpc::Status ListPodSandbox(const cri::PodSandboxFilter* filter,
                              cri::ListPodSandboxResponse* out);
  grpc::Status ListContainers(const cri::ContainerFilter* filter, cri::ListContainersResponse* out);
  grpc::Status ExecSync(const std::string& container_id, const std::vector<std::string>& cmd,
                        int64_t timeout_seconds, cri::ExecSyncResponse* out);
  grpc::Status ContainerStats(const std::string& container_id, cri::ContainerStatsResponse* out);
  grpc::Status StopContainer(const std::string& container_id, int64_t timeout_seconds,
                             cri::StopContainerResponse* out);
  grpc::Status RemoveContainer(const std::string& container_id, cri::RemoveContainerResponse* out);
  grpc::Status StopPodSandbox(const std::string& sandbox_id, cri::StopPodSandboxResponse* out);
  grpc::Status RemovePodSandbox(const std::string& sandbox_id, cri::RemovePodSandboxResponse* out);
  grpc::Status Version(cri::VersionResponse* out);

  // ImageStatus, then PullImage only if the image is missing (kubelet's
  // IfNotPresent). `image_id` gets the id kubelet passes to CreateContainer.
  grpc::Status EnsureImage(const std::string& image, const cri::PodSandboxConfig& sandbox_config,
                           PodRun* run, std::string* image_id);

  // kubelet's whole start sequence for `spec`: RunPodSandbox,
  // PodSandboxStatus, then for each container ImageStatus (+ PullImage),
  // CreateContainer, StartContainer, ContainerStatus. Stops at the first
  // error and returns it; `run` holds everything up to there.
  grpc::Status StartPod(const PodSpec& spec, PodRun* run);

  // kubelet's teardown of one pod: StopPodSandbox then RemovePodSandbox
  // (containers go with the sandbox), then the pod cgroups.
  grpc::Status StopAndRemovePod(const PodRun& run);

  // Stops and removes everything this driver created that still exists, and
  // the pod cgroup directories. Idempotent; never throws; returns a
  // description of what could not be cleaned (empty: all clean).
  std::string Cleanup();

  // What kubelet's pod cgroup manager does before RunPodSandbox with the
  // cgroupfs driver: the pod's cgroup in every hierarchy, cpuset filled from
  // its parent. Removed with the pod (StopAndRemovePod, Cleanup). No-op
  // without a cgroupfs parent.
  void CreatePodCgroups(const std::string& uid);

  // Fresh context with the driver's RPC deadline.
  std::unique_ptr<grpc::ClientContext> NewContext() const;

 private:
  void RemovePodCgroups(const std::string& uid);

  Options options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<cri::RuntimeService::Stub> runtime_;
  std::unique_ptr<cri::ImageService::Stub> images_;
  std::vector<std::string> sandbox_ids_;    // created through this driver, in order
  std::vector<std::string> container_ids_;  // created through this driver, in order
  std::vector<std::string> pod_uids_;       // pods whose cgroups to remove
};

// "CODE: message" for failure output.
std::string StatusString(const grpc::Status& status);

}  // namespace warmpool::testing
