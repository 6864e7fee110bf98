#include "daemon/readiness.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "daemon/late_network.h"

namespace warmpool {
namespace {

using Clock = std::chrono::steady_clock;

int RemainingMs(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return left.count() > 0 ? static_cast<int>(left.count()) : 0;
}

// A connected non-blocking TCP socket, or an error.
absl::StatusOr<int> Connect(const std::string& ip, int port, Clock::time_point deadline,
                            const std::string& netns) {
  sockaddr_storage addr{};
  socklen_t len = 0;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&addr);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&addr);
  if (inet_pton(AF_INET, ip.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    len = sizeof(*v4);
  } else if (inet_pton(AF_INET6, ip.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    len = sizeof(*v6);
  } else {
    return absl::InvalidArgumentError("not an IP address: '" + ip + "'");
  }
  int fd = -1;
  if (netns.empty()) {
    fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return absl::InternalError(std::string("socket: ") + std::strerror(errno));
  } else {
    auto in_netns = SocketInNetns(netns, addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK);
    if (!in_netns.ok()) return in_netns.status();
    fd = *in_netns;
  }
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0 && errno != EINPROGRESS) {
    std::string err = std::strerror(errno);
    close(fd);
    return absl::UnavailableError("connect " + ip + ":" + std::to_string(port) + ": " + err);
  }
  pollfd p{fd, POLLOUT, 0};
  int n = poll(&p, 1, RemainingMs(deadline));
  int soerr = 0;
  socklen_t soerr_len = sizeof(soerr);
  if (n == 1) getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &soerr_len);
  if (n != 1 || soerr != 0) {
    close(fd);
    return absl::UnavailableError("connect " + ip + ":" + std::to_string(port) + ": " +
                                  (n == 1 ? std::strerror(soerr) : "timed out"));
  }
  return fd;
}

}  // namespace

absl::StatusOr<int> HttpGetStatus(const std::string& ip, int port, const std::string& path,
                                  std::chrono::milliseconds timeout, const std::string& netns) {
  const auto deadline = Clock::now() + timeout;
  auto fd = Connect(ip, port, deadline, netns);
  if (!fd.ok()) return fd.status();
  const std::string request =
      "GET " + path + " HTTP/1.0\r\nHost: " + ip + "\r\nUser-Agent: warmpoold-probe\r\n\r\n";
  size_t sent = 0;
  while (sent < request.size()) {
    pollfd p{*fd, POLLOUT, 0};
    if (poll(&p, 1, RemainingMs(deadline)) != 1) break;
    ssize_t n = send(*fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;
    sent += n;
  }
  std::string head;
  while (head.find("\r\n") == std::string::npos && head.size() < 4096) {
    pollfd p{*fd, POLLIN, 0};
    if (poll(&p, 1, RemainingMs(deadline)) != 1) break;
    char buf[512];
    ssize_t n = recv(*fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    head.append(buf, n);
  }
  close(*fd);
  // "HTTP/1.x NNN ..."
  if (head.rfind("HTTP/", 0) != 0 || head.find(' ') == std::string::npos) {
    return absl::UnavailableError("GET http://" + ip + ":" + std::to_string(port) + path +
                                  ": no HTTP answer");
  }
  return std::atoi(head.c_str() + head.find(' ') + 1);
}

absl::Status ProbeOnce(const ReadyCheck& check, const std::string& ip,
                       const std::string& container_id, RuntimeClient* runtime,
                       std::chrono::milliseconds attempt_timeout, const std::string& netns) {
  switch (check.kind) {
    case ReadyCheck::Kind::kNone:
      return absl::OkStatus();
    case ReadyCheck::Kind::kTcp: {
      auto fd = Connect(ip, check.port, Clock::now() + attempt_timeout, netns);
      if (!fd.ok()) return absl::UnavailableError(fd.status().message());
      close(*fd);
      return absl::OkStatus();
    }
    case ReadyCheck::Kind::kHttp: {
      auto code =
          HttpGetStatus(ip, check.port, check.path.empty() ? "/" : check.path, attempt_timeout,
                        netns);
      if (!code.ok()) return absl::UnavailableError(code.status().message());
      if (*code >= 200 && *code < 400) return absl::OkStatus();
      return absl::UnavailableError("GET " + check.path + " answered " + std::to_string(*code));
    }
    case ReadyCheck::Kind::kExec: {
      v1::ExecSyncResponse resp;
      const auto secs = std::max<std::chrono::seconds>(
          std::chrono::seconds(1),
          std::chrono::duration_cast<std::chrono::seconds>(attempt_timeout));
      absl::Status s = runtime->ExecSync(container_id, check.exec, secs, &resp);
      if (!s.ok()) return absl::UnavailableError(s.message());
      if (resp.exit_code() != 0) {
        return absl::UnavailableError("exec check exited " + std::to_string(resp.exit_code()));
      }
      return absl::OkStatus();
    }
  }
  return absl::InternalError("unknown readiness check kind");
}

}  // namespace warmpool
