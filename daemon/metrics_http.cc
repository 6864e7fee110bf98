#include "daemon/metrics_http.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "daemon/prometheus.h"

namespace warmpool {
namespace {

constexpr size_t kMaxRequestHead = 8192;
constexpr auto kIoTimeout = std::chrono::seconds(5);

std::string Errno(const std::string& what) { return what + ": " + std::strerror(errno); }

// "host:port" into a socket address; "localhost" is 127.0.0.1.
absl::Status ParseAddress(const std::string& address, sockaddr_storage* out, socklen_t* len) {
  std::string host, port;
  if (!address.empty() && address.front() == '[') {
    const size_t close = address.find("]:");
    if (close == std::string::npos) return absl::InvalidArgumentError("bad address " + address);
    host = address.substr(1, close - 1);
    port = address.substr(close + 2);
  } else {
    const size_t colon = address.rfind(':');
    if (colon == std::string::npos) return absl::InvalidArgumentError("bad address " + address);
    host = address.substr(0, colon);
    port = address.substr(colon + 1);
  }
  if (host == "localhost") host = "127.0.0.1";
  char* end = nullptr;
  const long port_number = std::strtol(port.c_str(), &end, 10);
  if (port.empty() || *end != '\0' || port_number < 0 || port_number > 65535) {
    return absl::InvalidArgumentError("bad port in " + address);
  }
  std::memset(out, 0, sizeof(*out));
  auto* v4 = reinterpret_cast<sockaddr_in*>(out);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(out);
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(port_number));
    *len = sizeof(sockaddr_in);
  } else if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(port_number));
    *len = sizeof(sockaddr_in6);
  } else {
    return absl::InvalidArgumentError("host of " + address + " is not an IP address");
  }
  return absl::OkStatus();
}

std::string FormatAddress(const sockaddr_storage& addr) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (addr.ss_family == AF_INET6) {
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&addr);
    inet_ntop(AF_INET6, &v6->sin6_addr, buf, sizeof(buf));
    return "[" + std::string(buf) + "]:" + std::to_string(ntohs(v6->sin6_port));
  }
  const auto* v4 = reinterpret_cast<const sockaddr_in*>(&addr);
  inet_ntop(AF_INET, &v4->sin_addr, buf, sizeof(buf));
  return std::string(buf) + ":" + std::to_string(ntohs(v4->sin_port));
}

bool WriteAll(int fd, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::send(fd, data.data() + done, data.size() - done, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;  // gone, or the send timeout passed
    }
    done += static_cast<size_t>(n);
  }
  return true;
}

std::string Response(int code, const char* reason, const std::string& content_type,
                     const std::string& body, bool head_only, const std::string& extra = "") {
  std::string out = "HTTP/1.1 " + std::to_string(code) + " " + reason + "\r\n";
  out += "Content-Type: " + content_type + "\r\n";
  out += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  out += extra;
  out += "Connection: close\r\n\r\n";
  if (!head_only) out += body;
  return out;
}

}  // namespace

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(
    const std::string& address, Render render) {
  sockaddr_storage addr{};
  socklen_t len = 0;
  if (absl::Status s = ParseAddress(address, &addr, &len); !s.ok()) return s;
  const int fd = ::socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return absl::InternalError(Errno("metrics: socket"));
  const int one = 1;
  (void)::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (addr.ss_family == AF_INET6) {
    (void)::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
  }
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0) {
    const int err = errno;
    ::close(fd);
    const std::string msg = "metrics: cannot listen on " + address + ": " + std::strerror(err);
    return err == EADDRINUSE ? absl::AlreadyExistsError(msg + " (another process has the port)")
                             : absl::UnavailableError(msg);
  }
  if (::listen(fd, 16) != 0) {
    const std::string msg = Errno("metrics: listen on " + address);
    ::close(fd);
    return absl::UnavailableError(msg);
  }
  sockaddr_storage bound{};
  socklen_t bound_len = sizeof(bound);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &bound_len);
  const int wake = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake < 0) {
    const std::string msg = Errno("metrics: eventfd");
    ::close(fd);
    return absl::InternalError(msg);
  }
  std::unique_ptr<MetricsHttpServer> server(
      new MetricsHttpServer(fd, wake, FormatAddress(bound), std::move(render)));
  server->thread_ = std::thread([s = server.get()] { s->Loop(); });
  return server;
}

MetricsHttpServer::MetricsHttpServer(int listen_fd, int wake_fd, std::string bound, Render render)
    : listen_fd_(listen_fd),
      wake_fd_(wake_fd),
      bound_(std::move(bound)),
      render_(std::move(render)) {}

MetricsHttpServer::~MetricsHttpServer() {
  Stop();
  ::close(wake_fd_);
}

void MetricsHttpServer::Stop() {
  if (stopping_.exchange(true)) {
    return;
  }
  const uint64_t one = 1;
  (void)!::write(wake_fd_, &one, sizeof(one));
  if (thread_.joinable()) thread_.join();
  ::close(listen_fd_);  // from now on, connections are refused
}

void MetricsHttpServer::Loop() {
  while (!stopping_) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
    const int n = ::poll(fds, 2, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      spdlog::error("metrics: poll: {}; metrics are no longer served", std::strerror(errno));
      return;
    }
    if (fds[1].revents != 0 || stopping_) return;
    if ((fds[0].revents & POLLIN) == 0) continue;
    const int conn = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (conn < 0) continue;  // the client went away, or EAGAIN: poll again
    Serve(conn);
    ::close(conn);
  }
}

void MetricsHttpServer::Serve(int fd) {
  timeval tv{};
  tv.tv_sec = kIoTimeout.count();
  (void)::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  (void)::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));

  // The request head: up to the blank line, within the size and time limits.
  std::string head;
  const auto deadline = std::chrono::steady_clock::now() + kIoTimeout;
  while (head.find("\r\n\r\n") == std::string::npos && head.find("\n\n") == std::string::npos) {
    if (head.size() > kMaxRequestHead) {
      WriteAll(fd, Response(431, "Request Header Fields Too Large", "text/plain; charset=utf-8",
                            "request head too large\n", false));
      return;
    }
    if (std::chrono::steady_clock::now() >= deadline) return;
    char buf[2048];
    const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // closed, reset, or timed out before a whole head
    head.append(buf, static_cast<size_t>(n));
  }

  // Request line: METHOD SP TARGET SP HTTP/1.x
  const std::string line = head.substr(0, head.find_first_of("\r\n"));
  const size_t sp1 = line.find(' ');
  const size_t sp2 = sp1 == std::string::npos ? std::string::npos : line.find(' ', sp1 + 1);
  if (sp1 == std::string::npos || sp2 == std::string::npos ||
      line.compare(sp2 + 1, 7, "HTTP/1.") != 0) {
    WriteAll(fd, Response(400, "Bad Request", "text/plain; charset=utf-8",
                          "expected an HTTP/1.x request line\n", false));
    return;
  }
  const std::string method = line.substr(0, sp1);
  std::string target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  target = target.substr(0, target.find('?'));  // Prometheus sends no query; ignore one
  const bool head_only = method == "HEAD";
  if (target != "/metrics") {
    WriteAll(fd, Response(404, "Not Found", "text/plain; charset=utf-8",
                          "warmpoold serves metrics at /metrics only\n", head_only));
    return;
  }
  if (method != "GET" && method != "HEAD") {
    WriteAll(fd, Response(405, "Method Not Allowed", "text/plain; charset=utf-8",
                          "only GET and HEAD\n", false, "Allow: GET, HEAD\r\n"));
    return;
  }
  WriteAll(fd, Response(200, "OK", prom::kContentType, render_(), head_only));
}

}  // namespace warmpool
