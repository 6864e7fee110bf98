#include "cri/server.h"

#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
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

}  // namespace

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
  // No limit of our own: kubelet's and containerd's limits are the ones that
  // apply, as if kubelet talked to containerd directly.
  builder.SetMaxReceiveMessageSize(-1);
  builder.SetMaxSendMessageSize(-1);
  builder.RegisterCallbackGenericService(service);
  auto server = StartOnUnixSocket(&builder, path, 0660);
  if (!server.ok()) return server.status();
  return std::unique_ptr<CriServer>(new CriServer(path, std::move(*server)));
}

void CriServer::Shutdown(std::chrono::milliseconds grace) {
  if (shut_down_) return;
  shut_down_ = true;
  server_->Shutdown(std::chrono::system_clock::now() + grace);
  server_->Wait();
  if (unlink(path_.c_str()) != 0 && errno != ENOENT) {
    spdlog::warn("cannot remove socket {}: {}", path_, std::strerror(errno));
  }
}

CriServer::~CriServer() { Shutdown(std::chrono::milliseconds(0)); }

}  // namespace warmpool::cri
