// warmpoold and its service manager: READY=1 once it serves and the upstream
// answered, WATCHDOG=1 while alive when WatchdogSec is set, STOPPING=1 on
// SIGTERM, observed on a NOTIFY_SOCKET this test owns (systemd is not PID 1
// on the test machines, so the test plays its part).

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "test/integration/kubelet_driver.h"
#include "test/integration/test_bed.h"
#include "test/integration/warmpoold_process.h"

namespace warmpool::testing {
namespace {

using namespace std::chrono_literals;

// A datagram socket as systemd's notify socket; collects what arrives.
class NotifySocket {
 public:
  explicit NotifySocket(const std::filesystem::path& path) : path_(path) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
    bound_ = ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  }
  ~NotifySocket() { ::close(fd_); }
  bool bound() const { return bound_; }

  // Waits until a message containing `line` (a whole line) arrives.
  bool WaitFor(const std::string& line, std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      for (const std::string& m : messages_) {
        if (("\n" + m + "\n").find("\n" + line + "\n") != std::string::npos) return true;
      }
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) return false;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) == 1) {
        char buf[4096];
        ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
        if (n > 0) messages_.emplace_back(buf, n);
      }
    }
  }
  std::string All() const {
    std::string out;
    for (const auto& m : messages_) out += "[" + m + "] ";
    return out;
  }

 private:
  std::filesystem::path path_;
  int fd_ = -1;
  bool bound_ = false;
  std::vector<std::string> messages_;
};

class NotifyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    WP_REQUIRE_TEST_BED(env_);
    char tmpl[] = "/tmp/wpn-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
  }
  void TearDown() override {
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }
  TestBedEnv env_;
  std::filesystem::path dir_;
};

TEST_F(NotifyTest, ReadyWatchdogAndStopping) {
  NotifySocket notify(dir_ / "notify.sock");
  ASSERT_TRUE(notify.bound());
  WarmpooldProcess::Options opts;
  opts.upstream = env_.containerd_sock;
  opts.dir = dir_ / "wp";
  opts.log_level = "info";
  opts.extra_env = {"NOTIFY_SOCKET=" + (dir_ / "notify.sock").string(),
                    "WATCHDOG_USEC=400000"};  // WatchdogSec=0.4: pings every 0.2 s
  WarmpooldProcess daemon(opts);
  ASSERT_EQ(daemon.Start(), "");
  EXPECT_TRUE(notify.WaitFor("READY=1", 10s)) << notify.All() << daemon.LogTail();
  EXPECT_TRUE(notify.WaitFor("WATCHDOG=1", 5s)) << notify.All();
  EXPECT_EQ(daemon.Stop(), "");
  EXPECT_TRUE(notify.WaitFor("STOPPING=1", 1s)) << notify.All();
}

TEST_F(NotifyTest, NotReadyWhileUpstreamIsDown) {
  NotifySocket notify(dir_ / "notify.sock");
  ASSERT_TRUE(notify.bound());
  WarmpooldProcess::Options opts;
  opts.upstream = (dir_ / "no-containerd.sock").string();
  opts.dir = dir_ / "wp";
  opts.wait_for_upstream = false;
  opts.extra_env = {"NOTIFY_SOCKET=" + (dir_ / "notify.sock").string()};
  WarmpooldProcess daemon(opts);
  ASSERT_EQ(daemon.Start(), "");
  // It serves (calls get UNAVAILABLE) but does not claim to be ready.
  EXPECT_FALSE(notify.WaitFor("READY=1", 1500ms)) << notify.All();
  EXPECT_EQ(daemon.Stop(), "");
}

}  // namespace
}  // namespace warmpool::testing
