#pragma once

#include <absl/status/statusor.h>
#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>
#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>

namespace warmpool::cri {

// The unix-socket gRPC server kubelet talks to.
//
// Start creates the socket's parent directory, refuses to start when another
// process already serves the socket (a stale socket file is replaced), and
// leaves the socket with mode 0660. Shutdown finishes in-flight calls within
// `grace`, cancels the rest (endless streams such as GetContainerEvents), and
// removes the socket file. The service must outlive the server, and (a gRPC
// rule) serves only this one server.
class CriServer {
 public:
  static absl::StatusOr<std::unique_ptr<CriServer>> Start(const std::string& listen,
                                                          grpc::CallbackGenericService* service);
  ~CriServer();

  void Shutdown(std::chrono::milliseconds grace);
  const std::string& path() const { return path_; }

 private:
  CriServer(std::string path, std::unique_ptr<grpc::Server> server)
      : path_(std::move(path)), server_(std::move(server)) {}

  std::string path_;
  std::unique_ptr<grpc::Server> server_;
  bool shut_down_ = false;
};

// Builds and starts `builder`'s server on the unix socket `path` with exactly
// `mode` (never more, not even for a moment), after PrepareSocketPath.
absl::StatusOr<std::unique_ptr<grpc::Server>> StartOnUnixSocket(grpc::ServerBuilder* builder,
                                                                const std::string& path,
                                                                mode_t mode);

// Makes sure `path` can be bound: creates its parent directories, removes a
// stale socket file, and fails if a live process answers on it or the path is
// not a socket.
absl::Status PrepareSocketPath(const std::string& path);

}  // namespace warmpool::cri
