#pragma once

// The upstream CRI runtime as warmpool's own code uses it (pool entries are
// created, checked and removed through it). An interface so the pool logic
// can be tested against a fake with injected errors; GrpcRuntimeClient talks
// to containerd. Errors keep the upstream's code: absl and gRPC codes are the
// same numbers.

#include <absl/status/status.h>
#include <grpcpp/channel.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>

#include "containerd_containers.grpc.pb.h"
#include "cri_runtime_v1.grpc.pb.h"

namespace warmpool {

namespace v1 = ::runtime::v1;

class RuntimeClient {
 public:
  virtual ~RuntimeClient() = default;
  virtual absl::Status RunPodSandbox(const v1::RunPodSandboxRequest& req,
                                     v1::RunPodSandboxResponse* resp) = 0;
  virtual absl::Status StopPodSandbox(const std::string& sandbox_id) = 0;
  virtual absl::Status RemovePodSandbox(const std::string& sandbox_id) = 0;
  virtual absl::Status PodSandboxStatus(const std::string& sandbox_id,
                                        v1::PodSandboxStatusResponse* resp) = 0;
  virtual absl::Status ListPodSandbox(const v1::PodSandboxFilter& filter,
                                      v1::ListPodSandboxResponse* resp) = 0;
  virtual absl::Status CreateContainer(const v1::CreateContainerRequest& req,
                                       v1::CreateContainerResponse* resp) = 0;
  virtual absl::Status StartContainer(const std::string& container_id) = 0;
  virtual absl::Status ContainerStatus(const std::string& container_id,
                                       v1::ContainerStatusResponse* resp) = 0;
  virtual absl::Status ListContainers(const v1::ContainerFilter& filter,
                                      v1::ListContainersResponse* resp) = 0;
  virtual absl::Status ExecSync(const std::string& container_id,
                                const std::vector<std::string>& cmd, std::chrono::seconds timeout,
                                v1::ExecSyncResponse* resp) = 0;
  virtual absl::Status ImageStatus(const std::string& image, v1::ImageStatusResponse* resp) = 0;
  virtual absl::Status PullImage(const std::string& image, v1::PullImageResponse* resp) = 0;
  // The runtime's Status; verbose adds its config (the sandbox image).
  virtual absl::Status Status(bool verbose, v1::StatusResponse* resp) {
    return absl::UnimplementedError("Status");
  }
  virtual absl::Status StopContainer(const std::string& container_id, int64_t timeout_seconds) {
    return absl::UnimplementedError("StopContainer");
  }
  virtual absl::Status RemoveContainer(const std::string& container_id) {
    return absl::UnimplementedError("RemoveContainer");
  }
  // PodSandboxStatus with verbose = true (info: the runtime's JSON, with the
  // sandbox's OCI spec; daemon/late_network.h reads its netns path there).
  virtual absl::Status PodSandboxStatusVerbose(const std::string& sandbox_id,
                                               v1::PodSandboxStatusResponse* resp) {
    return absl::UnimplementedError("PodSandboxStatusVerbose");
  }
  // Sets `labels` on containerd's own record of container or sandbox `id`
  // (its native API, not the CRI: cAdvisor names stats by these labels; see
  // proto/containerd_containers.proto), leaving its other labels alone.
  // Writes only the labels that differ, nothing when none do.
  virtual absl::Status SetContainerdLabels(const std::string& id,
                                           const std::map<std::string, std::string>& labels) {
    return absl::UnimplementedError("SetContainerdLabels");
  }
};

// Over gRPC, with a deadline per call (creation steps can be slow: image
// pulls get a long one).
class GrpcRuntimeClient final : public RuntimeClient {
 public:
  explicit GrpcRuntimeClient(std::shared_ptr<grpc::Channel> channel);

  absl::Status RunPodSandbox(const v1::RunPodSandboxRequest& req,
                             v1::RunPodSandboxResponse* resp) override;
  absl::Status StopPodSandbox(const std::string& sandbox_id) override;
  absl::Status RemovePodSandbox(const std::string& sandbox_id) override;
  absl::Status PodSandboxStatus(const std::string& sandbox_id,
                                v1::PodSandboxStatusResponse* resp) override;
  absl::Status ListPodSandbox(const v1::PodSandboxFilter& filter,
                              v1::ListPodSandboxResponse* resp) override;
  absl::Status CreateContainer(const v1::CreateContainerRequest& req,
                               v1::CreateContainerResponse* resp) override;
  absl::Status StartContainer(const std::string& container_id) override;
  absl::Status ContainerStatus(const std::string& container_id,
                               v1::ContainerStatusResponse* resp) override;
  absl::Status ListContainers(const v1::ContainerFilter& filter,
                              v1::ListContainersResponse* resp) override;
  absl::Status ExecSync(const std::string& container_id, const std::vector<std::string>& cmd,
                        std::chrono::seconds timeout, v1::ExecSyncResponse* resp) override;
  absl::Status ImageStatus(const std::string& image, v1::ImageStatusResponse* resp) override;
  absl::Status PullImage(const std::string& image, v1::PullImageResponse* resp) override;
  absl::Status Status(bool verbose, v1::StatusResponse* resp) override;
  absl::Status StopContainer(const std::string& container_id, int64_t timeout_seconds) override;
  absl::Status RemoveContainer(const std::string& container_id) override;
  absl::Status PodSandboxStatusVerbose(const std::string& sandbox_id,
                                       v1::PodSandboxStatusResponse* resp) override;
  absl::Status SetContainerdLabels(const std::string& id,
                                   const std::map<std::string, std::string>& labels) override;

 private:
  std::unique_ptr<v1::RuntimeService::Stub> runtime_;
  std::unique_ptr<v1::ImageService::Stub> images_;
  std::unique_ptr<containerd::services::containers::v1::Containers::Stub> containers_;
};

// gRPC status -> absl status, same code, the message prefixed with `what`.
absl::Status FromGrpc(const grpc::Status& status, const std::string& what);

}  // namespace warmpool
