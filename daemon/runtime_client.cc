#include "daemon/runtime_client.h"

#include <grpcpp/client_context.h>

namespace warmpool {
namespace {

constexpr auto kCallTimeout = std::chrono::seconds(60);
constexpr auto kPullTimeout = std::chrono::minutes(10);
// The containerd namespace of the CRI plugin's objects.
constexpr const char* kContainerdCriNamespace = "k8s.io";

std::unique_ptr<grpc::ClientContext> Context(std::chrono::seconds timeout = kCallTimeout) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + timeout);
  return ctx;
}

}  // namespace

// A call to containerd's own API, in the CRI plugin's namespace.
std::unique_ptr<grpc::ClientContext> ContainerdContext() {
  auto ctx = Context();
  ctx->AddMetadata("containerd-namespace", kContainerdCriNamespace);
  return ctx;
}

absl::Status FromGrpc(const grpc::Status& status, const std::string& what) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      what + ": " + status.error_message());
}

GrpcRuntimeClient::GrpcRuntimeClient(std::shared_ptr<grpc::Channel> channel)
    : runtime_(v1::RuntimeService::NewStub(channel)),
      images_(v1::ImageService::NewStub(channel)),
      containers_(containerd::services::containers::v1::Containers::NewStub(channel)) {}

absl::Status GrpcRuntimeClient::RunPodSandbox(const v1::RunPodSandboxRequest& req,
                                              v1::RunPodSandboxResponse* resp) {
  return FromGrpc(runtime_->RunPodSandbox(Context().get(), req, resp), "RunPodSandbox");
}

absl::Status GrpcRuntimeClient::StopPodSandbox(const std::string& sandbox_id) {
  v1::StopPodSandboxRequest req;
  req.set_pod_sandbox_id(sandbox_id);
  v1::StopPodSandboxResponse resp;
  return FromGrpc(runtime_->StopPodSandbox(Context().get(), req, &resp), "StopPodSandbox");
}

absl::Status GrpcRuntimeClient::RemovePodSandbox(const std::string& sandbox_id) {
  v1::RemovePodSandboxRequest req;
  req.set_pod_sandbox_id(sandbox_id);
  v1::RemovePodSandboxResponse resp;
  return FromGrpc(runtime_->RemovePodSandbox(Context().get(), req, &resp), "RemovePodSandbox");
}

absl::Status GrpcRuntimeClient::PodSandboxStatus(const std::string& sandbox_id,
                                                 v1::PodSandboxStatusResponse* resp) {
  v1::PodSandboxStatusRequest req;
  req.set_pod_sandbox_id(sandbox_id);
  return FromGrpc(runtime_->PodSandboxStatus(Context().get(), req, resp), "PodSandboxStatus");
}

absl::Status GrpcRuntimeClient::PodSandboxStatusVerbose(const std::string& sandbox_id,
                                                        v1::PodSandboxStatusResponse* resp) {
  v1::PodSandboxStatusRequest req;
  req.set_pod_sandbox_id(sandbox_id);
  req.set_verbose(true);
  return FromGrpc(runtime_->PodSandboxStatus(Context().get(), req, resp), "PodSandboxStatus");
}

absl::Status GrpcRuntimeClient::ListPodSandbox(const v1::PodSandboxFilter& filter,
                                               v1::ListPodSandboxResponse* resp) {
  v1::ListPodSandboxRequest req;
  *req.mutable_filter() = filter;
  return FromGrpc(runtime_->ListPodSandbox(Context().get(), req, resp), "ListPodSandbox");
}

absl::Status GrpcRuntimeClient::CreateContainer(const v1::CreateContainerRequest& req,
                                                v1::CreateContainerResponse* resp) {
  return FromGrpc(runtime_->CreateContainer(Context().get(), req, resp), "CreateContainer");
}

absl::Status GrpcRuntimeClient::StartContainer(const std::string& container_id) {
  v1::StartContainerRequest req;
  req.set_container_id(container_id);
  v1::StartContainerResponse resp;
  return FromGrpc(runtime_->StartContainer(Context().get(), req, &resp), "StartContainer");
}

absl::Status GrpcRuntimeClient::StopContainer(const std::string& container_id,
                                              int64_t timeout_seconds) {
  v1::StopContainerRequest req;
  req.set_container_id(container_id);
  req.set_timeout(timeout_seconds);
  v1::StopContainerResponse resp;
  return FromGrpc(runtime_->StopContainer(Context().get(), req, &resp), "StopContainer");
}

absl::Status GrpcRuntimeClient::RemoveContainer(const std::string& container_id) {
  v1::RemoveContainerRequest req;
  req.set_container_id(container_id);
  v1::RemoveContainerResponse resp;
  return FromGrpc(runtime_->RemoveContainer(Context().get(), req, &resp), "RemoveContainer");
}

absl::Status GrpcRuntimeClient::ContainerStatus(const std::string& container_id,
                                                v1::ContainerStatusResponse* resp) {
  v1::ContainerStatusRequest req;
  req.set_container_id(container_id);
  return FromGrpc(runtime_->ContainerStatus(Context().get(), req, resp), "ContainerStatus");
}

absl::Status GrpcRuntimeClient::ListContainers(const v1::ContainerFilter& filter,
                                               v1::ListContainersResponse* resp) {
  v1::ListContainersRequest req;
  *req.mutable_filter() = filter;
  return FromGrpc(runtime_->ListContainers(Context().get(), req, resp), "ListContainers");
}

absl::Status GrpcRuntimeClient::ExecSync(const std::string& container_id,
                                         const std::vector<std::string>& cmd,
                                         std::chrono::seconds timeout, v1::ExecSyncResponse* resp) {
  v1::ExecSyncRequest req;
  req.set_container_id(container_id);
  for (const auto& arg : cmd) req.add_cmd(arg);
  req.set_timeout(timeout.count());
  return FromGrpc(runtime_->ExecSync(Context(timeout + std::chrono::seconds(5)).get(), req, resp),
                  "ExecSync");
}

absl::Status GrpcRuntimeClient::ImageStatus(const std::string& image,
                                            v1::ImageStatusResponse* resp) {
  v1::ImageStatusRequest req;
  req.mutable_image()->set_image(image);
  return FromGrpc(images_->ImageStatus(Context().get(), req, resp), "ImageStatus");
}

absl::Status GrpcRuntimeClient::PullImage(const std::string& image, v1::PullImageResponse* resp) {
  v1::PullImageRequest req;
  req.mutable_image()->set_image(image);
  return FromGrpc(images_->PullImage(Context(kPullTimeout).get(), req, resp), "PullImage");
}

absl::Status GrpcRuntimeClient::Status(bool verbose, v1::StatusResponse* resp) {
  v1::StatusRequest req;
  req.set_verbose(verbose);
  return FromGrpc(runtime_->Status(Context().get(), req, resp), "Status");
}

absl::Status GrpcRuntimeClient::SetContainerdLabels(
    const std::string& id, const std::map<std::string, std::string>& labels) {
  namespace cd = containerd::services::containers::v1;
  if (labels.empty()) return absl::OkStatus();
  // Read first: an Update is a bolt commit in containerd (tens of ms under
  // load), and recovery asks again for every adopted pod at each start.
  cd::GetContainerRequest get;
  get.set_id(id);
  cd::GetContainerResponse current;
  if (absl::Status s = FromGrpc(containers_->Get(ContainerdContext().get(), get, &current),
                                "containerd Containers.Get");
      !s.ok()) {
    return s;
  }
  cd::UpdateContainerRequest req;
  req.mutable_container()->set_id(id);
  const auto& have = current.container().labels();
  for (const auto& [key, value] : labels) {
    auto it = have.find(key);
    if (it != have.end() && it->second == value) continue;
    (*req.mutable_container()->mutable_labels())[key] = value;
    req.mutable_update_mask()->add_paths("labels." + key);
  }
  if (req.update_mask().paths().empty()) return absl::OkStatus();
  cd::UpdateContainerResponse resp;
  return FromGrpc(containers_->Update(ContainerdContext().get(), req, &resp),
                  "containerd Containers.Update");
}

}  // namespace warmpool
