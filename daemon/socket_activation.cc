#include "daemon/socket_activation.h"

#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "absl/status/status.h"
#include "cri/server.h"
#include "cri/upstream.h"

namespace warmpool {

absl::StatusOr<std::optional<ActivationSocket>> TakeActivationSocket(const std::string& listen) {
  // sd_listen_fds checks LISTEN_PID against our pid (a variable inherited
  // from a parent that was activated is not ours) and unsets the variables.
  const int count = sd_listen_fds(/*unset_environment=*/1);
  if (count < 0) {
    return absl::FailedPreconditionError(std::string("socket activation: sd_listen_fds: ") +
                                         std::strerror(-count));
  }
  if (count == 0) return std::optional<ActivationSocket>();

  const std::string wanted = cri::UnixPath(listen);
  std::vector<ActivationSocket> usable;
  std::string passed;
  for (int fd = SD_LISTEN_FDS_START; fd < SD_LISTEN_FDS_START + count; ++fd) {
    const std::string path = cri::BoundUnixPath(fd);
    passed += (passed.empty() ? "" : ", ") + std::to_string(fd) + "=" +
              (path.empty() ? "not a unix socket" : path);
    if (sd_is_socket_unix(fd, SOCK_STREAM, /*listening=*/1, nullptr, 0) > 0) {
      usable.push_back({fd, path, ""});
    }
  }
  std::optional<ActivationSocket> chosen;
  for (const ActivationSocket& s : usable) {
    if (s.path == wanted) chosen = s;
  }
  if (!chosen && count == 1 && usable.size() == 1) {
    chosen = usable.front();
    chosen->warning = "the socket systemd passed (" + chosen->path + ") is not daemon.listen (" +
                      wanted +
                      "); serving the passed one: make them agree (warmpool.socket's "
                      "ListenStream= and daemon.listen)";
  }
  if (!chosen) {
    for (int fd = SD_LISTEN_FDS_START; fd < SD_LISTEN_FDS_START + count; ++fd) close(fd);
    return absl::InvalidArgumentError(
        "socket activation: none of the " + std::to_string(count) +
        " sockets systemd passed is a listening unix stream socket on daemon.listen (" + wanted +
        "): " + passed);
  }
  for (int fd = SD_LISTEN_FDS_START; fd < SD_LISTEN_FDS_START + count; ++fd) {
    if (fd != chosen->fd) close(fd);
  }
  return chosen;
}

}  // namespace warmpool
