#pragma once

// A tiny HTTP/1.1 server for Prometheus scrapes: GET (or HEAD) /metrics
// answers what `render` returns, in the text exposition format; any other
// path is 404, any other method 405. Every response closes the connection
// (HTTP/1.1 allows it; Prometheus reconnects per scrape).
//
// One thread accepts and answers connections one at a time: scrapes are a
// few per minute, and a render is a copy of in-memory counters. A client
// gets 5 s to send its request head (at most 8 KiB) and to read the answer,
// so a stuck client delays the next scrape by at most that, never forever.
// Nothing is read beyond the request head (a body is not expected).
//
// Lifetime: Start binds and listens before it returns (so an address in use
// is a start-up error with its reason), Stop (or the destructor) wakes and
// joins the thread and closes the socket. `render` is called on the server's
// thread and must outlive the server.

#include <absl/status/statusor.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>

namespace warmpool {

class MetricsHttpServer {
 public:
  using Render = std::function<std::string()>;

  // `address`: "host:port" as validated by the config ("127.0.0.1:9464",
  // "[::1]:9464", "localhost:9464", "0.0.0.0:9464"); port 0 picks a free
  // port (see bound_address()).
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(const std::string& address,
                                                                  Render render);
  ~MetricsHttpServer();
  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;

  // Stops serving: the thread is joined and the port closed. Idempotent.
  void Stop();
  // The address actually listened on, e.g. "127.0.0.1:41234".
  const std::string& bound_address() const { return bound_; }

 private:
  MetricsHttpServer(int listen_fd, int wake_fd, std::string bound, Render render);
  void Loop();
  void Serve(int fd);

  const int listen_fd_;
  const int wake_fd_;  // eventfd: Stop wakes the loop
  const std::string bound_;
  const Render render_;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace warmpool
