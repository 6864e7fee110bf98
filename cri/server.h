#pragma once

#include <absl/status/statusor.h>
#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>
#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>

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

  // Serves on `listen_fd`, a unix stream socket already bound and listening
  // (systemd's socket activation passes it as fd 3). On success the server
  // owns the fd (on error it stays the caller's); the socket file belongs to whoever bound it
  // (systemd keeps listening while warmpoold is stopped or restarting), so it is never created,
  // chmod'ed or removed here. Connections are accepted on a thread of the
  // server's own and handed to gRPC; they queue in the socket's backlog
  // until then, so kubelet may connect before warmpoold runs.
  static absl::StatusOr<std::unique_ptr<CriServer>> StartOnListeningFd(
      int listen_fd, grpc::CallbackGenericService* service);
  ~CriServer();

  void Shutdown(std::chrono::milliseconds grace);
  // The socket's path (for a passed socket: as the kernel reports it).
  const std::string& path() const { return path_; }
  // True when serving a passed socket (StartOnListeningFd).
  bool activated() const { return listen_fd_ >= 0; }

 private:
  CriServer(std::string path, std::unique_ptr<grpc::Server> server)
      : path_(std::move(path)), server_(std::move(server)) {}
  void AcceptLoop();

  std::string path_;
  std::unique_ptr<grpc::Server> server_;
  bool shut_down_ = false;
  // Socket activation only: the passed listening socket, and a pipe whose
  // write end wakes the accept thread to stop.
  int listen_fd_ = -1;
  int wake_fds_[2] = {-1, -1};
  std::thread acceptor_;
};

// The path a unix socket is bound to ("@name" for an abstract one), or "" if
// `fd` is not a bound unix socket.
std::string BoundUnixPath(int fd);

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
