#include "cri/server.h"

#include <fcntl.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>
#include <grpcpp/server_posix.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <filesystem>

#include "cri/upstream.h"

namespace warmpool::cri {
namespace {

bool SomeoneListens(const std::string& path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  const bool live = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return live;
}

// What every CRI server gets, whichever way it listens.
void ConfigureBuilder(grpc::ServerBuilder* builder, grpc::CallbackGenericService* service) {
  // No limit of our own: kubelet's and containerd's limits are the ones that
  // apply, as if kubelet talked to containerd directly.
  builder->SetMaxReceiveMessageSize(-1);
  builder->SetMaxSendMessageSize(-1);
  builder->RegisterCallbackGenericService(service);
}

}  // namespace

std::string BoundUnixPath(int fd) {
  sockaddr_un addr{};
  socklen_t len = sizeof(addr);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0 ||
      addr.sun_family != AF_UNIX || len <= offsetof(sockaddr_un, sun_path)) {
    return "";
  }
  const size_t n = len - offsetof(sockaddr_un, sun_path);
  if (addr.sun_path[0] == '\0') return "@" + std::string(addr.sun_path + 1, n - 1);
  return std::string(addr.sun_path, strnlen(addr.sun_path, n));
}

absl::Status PrepareSocketPath(const std::string& path) {
  if (path.empty() || path[0] != '/') {
    return absl::InvalidArgumentError("socket path must be absolute: '" + path + "'");
  }
  if (path.size() >= sizeof(sockaddr_un::sun_path)) {
    return absl::InvalidArgumentError("socket path is longer than a unix socket allows (" +
                                      std::to_string(sizeof(sockaddr_un::sun_path) - 1) +
                                      " bytes): " + path);
  }
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
  if (ec) {
    return absl::FailedPreconditionError("cannot create the directory of " + path + ": " +
                                         ec.message());
  }
  struct stat st {};
  if (lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return absl::OkStatus();
    return absl::FailedPreconditionError("cannot stat " + path + ": " + std::strerror(errno));
  }
  if (!S_ISSOCK(st.st_mode)) {
    return absl::FailedPreconditionError(path + " exists and is not a socket; remove it or " +
                                         "choose another path");
  }
  if (SomeoneListens(path)) {
    return absl::AlreadyExistsError("another process already serves " + path +
                                    " (is warmpoold running?)");
  }
  if (unlink(path.c_str()) != 0) {
    return absl::FailedPreconditionError("cannot remove the stale socket " + path + ": " +
                                         std::strerror(errno));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<grpc::Server>> StartOnUnixSocket(grpc::ServerBuilder* builder,
                                                                const std::string& path,
                                                                mode_t mode) {
  if (absl::Status s = PrepareSocketPath(path); !s.ok()) return s;
  int bound = 0;
  builder->AddListeningPort("unix:" + path, grpc::InsecureServerCredentials(), &bound);
  // BuildAndStart creates the socket: the umask keeps it from ever having
  // more than `mode`, chmod then sets exactly `mode`.
  const mode_t old_umask = umask(~mode & 0777);
  std::unique_ptr<grpc::Server> server = builder->BuildAndStart();
  umask(old_umask);
  if (!server || !bound) return absl::UnavailableError("cannot listen on " + path);
  if (chmod(path.c_str(), mode) != 0) {
    const int err = errno;
    server->Shutdown();
    server->Wait();
    unlink(path.c_str());
    return absl::FailedPreconditionError("cannot chmod " + path + ": " + std::strerror(err));
  }
  return server;
}

absl::StatusOr<std::unique_ptr<CriServer>> CriServer::Start(const std::string& listen,
                                                            grpc::CallbackGenericService* service) {
  const std::string path = UnixPath(listen);
  grpc::ServerBuilder builder;
  ConfigureBuilder(&builder, service);
  auto server = StartOnUnixSocket(&builder, path, 0660);
  if (!server.ok()) return server.status();
  return std::unique_ptr<CriServer>(new CriServer(path, std::move(*server)));
}

absl::StatusOr<std::unique_ptr<CriServer>> CriServer::StartOnListeningFd(
    int listen_fd, grpc::CallbackGenericService* service) {
  int type = 0;
  int listening = 0;
  socklen_t len = sizeof(type);
  const std::string path = BoundUnixPath(listen_fd);
  if (path.empty() || getsockopt(listen_fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 ||
      type != SOCK_STREAM) {
    return absl::InvalidArgumentError("fd " + std::to_string(listen_fd) +
                                      " is not a bound unix stream socket");
  }
  len = sizeof(listening);
  if (getsockopt(listen_fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 || !listening) {
    return absl::InvalidArgumentError("socket " + path + " (fd " + std::to_string(listen_fd) +
                                      ") is not listening");
  }
  // Non-blocking, so a connection that vanishes between poll and accept
  // cannot stall the accept thread; close-on-exec, so helpers do not keep it.
  if (fcntl(listen_fd, F_SETFL, fcntl(listen_fd, F_GETFL) | O_NONBLOCK) != 0 ||
      fcntl(listen_fd, F_SETFD, FD_CLOEXEC) != 0) {
    return absl::FailedPreconditionError("cannot set up fd " + std::to_string(listen_fd) + ": " +
                                         std::strerror(errno));
  }
  grpc::ServerBuilder builder;
  ConfigureBuilder(&builder, service);
  // No listening port: every connection arrives through AddInsecureChannelFromFd.
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server) return absl::UnavailableError("cannot start the CRI server on " + path);
  std::unique_ptr<CriServer> cri(new CriServer(path, std::move(server)));
  if (pipe2(cri->wake_fds_, O_CLOEXEC | O_NONBLOCK) != 0) {
    const int err = errno;
    cri->shut_down_ = true;  // nothing to unlink: the socket is not ours
    cri->server_->Shutdown();
    cri->server_->Wait();
    return absl::ResourceExhaustedError(std::string("pipe: ") + std::strerror(err));
  }
  cri->listen_fd_ = listen_fd;
  cri->acceptor_ = std::thread([raw = cri.get()] { raw->AcceptLoop(); });
  return cri;
}

void CriServer::AcceptLoop() {
  for (;;) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_fds_[0], POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      spdlog::error("CRI socket {}: poll: {}; no longer accepting", path_, std::strerror(errno));
      return;
    }
    if (fds[1].revents != 0) return;  // Shutdown
    const int conn = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (conn >= 0) {
      grpc::AddInsecureChannelFromFd(server_.get(), conn);  // gRPC owns conn from here
      continue;
    }
    switch (errno) {
      case EAGAIN:
      case EINTR:
      case ECONNABORTED:
      case EPROTO:
        continue;
      default:
        // Out of fds or memory: the connection waits in the backlog. Try
        // again shortly rather than spin (or stop and leave kubelet hanging).
        spdlog::warn("CRI socket {}: accept: {}; retrying", path_, std::strerror(errno));
        pollfd wake{wake_fds_[0], POLLIN, 0};
        if (poll(&wake, 1, 100) > 0) return;
    }
  }
}

void CriServer::Shutdown(std::chrono::milliseconds grace) {
  if (shut_down_) return;
  shut_down_ = true;
  if (activated()) {
    // Stop accepting first: connections arriving from now on wait in the
    // backlog for the next warmpoold that systemd starts on the same socket.
    if (write(wake_fds_[1], "x", 1) < 0) {
      spdlog::warn("cannot wake the CRI accept thread: {}", std::strerror(errno));
    }
    if (acceptor_.joinable()) acceptor_.join();
  }
  server_->Shutdown(std::chrono::system_clock::now() + grace);
  server_->Wait();
  if (activated()) {
    close(listen_fd_);  // our copy; the socket and its file stay systemd's
    close(wake_fds_[0]);
    close(wake_fds_[1]);
    return;
  }
  if (unlink(path_.c_str()) != 0 && errno != ENOENT) {
    spdlog::warn("cannot remove socket {}: {}", path_, std::strerror(errno));
  }
}

CriServer::~CriServer() { Shutdown(std::chrono::milliseconds(0)); }

}  // namespace warmpool::cri
