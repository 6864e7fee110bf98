// systemd socket activation (warmpool.socket): the test plays systemd. It
// binds and listens on the CRI socket itself, then starts the real warmpoold
// binary with the socket as fd 3 and LISTEN_FDS=1, LISTEN_PID=<its pid>,
// LISTEN_FDNAMES=cri, exactly as systemd's service manager does, and talks
// CRI to the bed's containerd through it.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <sstream>
#include <string>
#include <vector>

#include "cri_runtime_v1.grpc.pb.h"
#include "test/integration/kubelet_driver.h"
#include "test/integration/test_bed.h"
#include "test/integration/warmpoold_process.h"

extern char** environ;

namespace warmpool::testing {
namespace {

using namespace std::chrono_literals;

// A unix stream socket bound to `path` and listening, as systemd makes it
// for ListenStream=. -1 on failure.
int ListenUnix(const std::filesystem::path& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || ::listen(fd, 128) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

ino_t Inode(const std::filesystem::path& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? st.st_ino : 0;
}

grpc::Status Version(const std::filesystem::path& socket, std::chrono::seconds deadline,
                     cri::VersionResponse* out) {
  auto stub = cri::RuntimeService::NewStub(ConnectCri(socket.string()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + deadline);
  cri::VersionRequest req;
  req.set_version("v1");
  return stub->Version(&ctx, req, out);
}

// warmpoold started the way systemd starts an activated service.
class ActivatedDaemon {
 public:
  enum class ListenPid { kChild, kForeign };

  // Spawns `binary --config config` with `passed_fd` as fd 3; the log goes
  // to `log`.
  ActivatedDaemon(const std::filesystem::path& config, const std::filesystem::path& log,
                  int passed_fd, ListenPid listen_pid)
      : log_(log) {
    const std::string binary = WarmpooldProcess::DefaultBinary();
    const std::string config_arg = config.string();
    const std::string log_path = log.string();
    // Everything the child needs is allocated before fork: it may only exec.
    std::vector<std::string> env;
    for (char** e = environ; *e != nullptr; ++e) {
      if (std::strncmp(*e, "LISTEN_", 7) != 0 && std::strncmp(*e, "NOTIFY_SOCKET=", 14) != 0) {
        env.emplace_back(*e);
      }
    }
    env.push_back("LISTEN_FDS=1");
    env.push_back("LISTEN_FDNAMES=cri");
    // The child writes its own pid here (systemd sets it after fork too).
    env.push_back(listen_pid == ListenPid::kForeign ? "LISTEN_PID=1"
                                                    : "LISTEN_PID=" + std::string(20, '\0'));
    std::vector<char*> envp;
    for (std::string& e : env) envp.push_back(e.data());
    envp.push_back(nullptr);
    char* pid_slot = listen_pid == ListenPid::kChild ? env.back().data() + 11 : nullptr;
    const pid_t parent = ::getpid();
    pid_ = ::fork();
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(127);
      int out = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
      if (out >= 0) {
        ::dup2(out, STDOUT_FILENO);
        ::dup2(out, STDERR_FILENO);
      }
      if (passed_fd == 3) {
        ::fcntl(3, F_SETFD, 0);  // keep it across exec
      } else if (::dup2(passed_fd, 3) != 3) {
        ::_exit(126);
      }
      if (pid_slot != nullptr) {
        char digits[20];
        int n = 0;
        for (pid_t p = ::getpid(); p > 0; p /= 10) digits[n++] = static_cast<char>('0' + p % 10);
        for (int i = 0; i < n; ++i) pid_slot[i] = digits[n - 1 - i];
        pid_slot[n] = '\0';
      }
      sigset_t none;
      sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);
      const char* argv[] = {binary.c_str(), "--config", config_arg.c_str(), nullptr};
      ::execve(binary.c_str(), const_cast<char* const*>(argv), envp.data());
      ::_exit(127);
    }
  }

  ~ActivatedDaemon() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }

  // Has it exited (reaped, status in *status)?
  bool Exited(int* status) {
    if (pid_ <= 0) return true;
    if (::waitpid(pid_, status, WNOHANG) == pid_) {
      pid_ = -1;
      return true;
    }
    return false;
  }

  // Waits (generously) for the daemon to exit on its own; its wait status.
  int WaitExit() {
    int status = -1;
    if (!WaitFor([&] { return Exited(&status); }, 30s, 10ms)) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
      pid_ = -1;
    }
    return status;
  }

  // SIGTERM; the wait status.
  int Stop() {
    if (pid_ > 0) ::kill(pid_, SIGTERM);
    return WaitExit();
  }

  std::string Log() const {
    std::ifstream in(log_);
    std::stringstream all;
    all << in.rdbuf();
    return all.str();
  }

 private:
  std::filesystem::path log_;
  pid_t pid_ = -1;
};

class SocketActivationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    WP_REQUIRE_TEST_BED(env_);
    char tmpl[] = "/tmp/wpsa-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
  }
  void TearDown() override {
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  // A config whose daemon.listen is `listen`, all else inside dir_.
  std::filesystem::path WriteConfig(const std::filesystem::path& listen) {
    const auto path = dir_ / "warmpool.toml";
    std::ofstream out(path, std::ios::trunc);
    out << "[daemon]\n"
        << "listen = \"" << listen.string() << "\"\n"
        << "upstream = \"" << env_.containerd_sock << "\"\n"
        << "state_dir = \"" << (dir_ / "state").string() << "\"\n"
        << "admin = \"" << (dir_ / "admin.sock").string() << "\"\n"
        << "log_level = \"info\"\n";
    return path;
  }

  TestBedEnv env_;
  std::filesystem::path dir_;
};

TEST_F(SocketActivationTest, ServesThePassedSocketAndLeavesItToSystemd) {
  const auto socket = dir_ / "cri.sock";
  const int listen_fd = ListenUnix(socket);
  ASSERT_GE(listen_fd, 0) << std::strerror(errno);
  const ino_t inode = Inode(socket);
  const auto config = WriteConfig(socket);

  // kubelet connects before warmpoold runs: the connection waits in the
  // socket's backlog, and is answered once warmpoold is up.
  auto early = std::async(std::launch::async, [&] {
    cri::VersionResponse resp;
    grpc::Status s = Version(socket, 60s, &resp);
    return s.ok() ? resp.runtime_name() : "error: " + StatusString(s);
  });
  ASSERT_EQ(early.wait_for(300ms), std::future_status::timeout)
      << "answered before any warmpoold ran: " << early.get();

  {
    ActivatedDaemon daemon(config, dir_ / "log", listen_fd, ActivatedDaemon::ListenPid::kChild);
    EXPECT_EQ(early.get(), "containerd") << daemon.Log();
    cri::VersionResponse resp;
    ASSERT_RPC_OK(Version(socket, 20s, &resp));
    EXPECT_EQ(resp.runtime_name(), "containerd");
    EXPECT_NE(daemon.Log().find("(socket activation, fd 3)"), std::string::npos) << daemon.Log();
    const int status = daemon.Stop();
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "wait status " << status << "\n"
                                                               << daemon.Log();
  }
  // The socket is systemd's: warmpoold neither replaced nor removed it.
  EXPECT_EQ(Inode(socket), inode) << "socket file replaced or removed";

  // systemd starts warmpoold again on the same socket (a restart, or the
  // next connection after a stop): it serves again.
  {
    ActivatedDaemon daemon(config, dir_ / "log2", listen_fd, ActivatedDaemon::ListenPid::kChild);
    cri::VersionResponse resp;
    ASSERT_RPC_OK(Version(socket, 60s, &resp));
    EXPECT_EQ(resp.runtime_name(), "containerd");
    const int status = daemon.Stop();
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << daemon.Log();
  }
  EXPECT_EQ(Inode(socket), inode);
  ::close(listen_fd);
}

TEST_F(SocketActivationTest, SocketsPassedToAnotherProcessAreIgnored) {
  // LISTEN_PID names another process (the variables leaked from a parent):
  // the fds are not warmpoold's; it binds daemon.listen itself.
  const auto passed = dir_ / "passed.sock";
  const int listen_fd = ListenUnix(passed);
  ASSERT_GE(listen_fd, 0);
  const auto own = dir_ / "own.sock";
  ActivatedDaemon daemon(WriteConfig(own), dir_ / "log", listen_fd,
                         ActivatedDaemon::ListenPid::kForeign);
  cri::VersionResponse resp;
  ASSERT_TRUE(WaitFor([&] { return Version(own, 2s, &resp).ok(); }, 60s, 50ms)) << daemon.Log();
  EXPECT_EQ(daemon.Log().find("socket activation"), std::string::npos) << daemon.Log();
  const int status = daemon.Stop();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << daemon.Log();
  EXPECT_FALSE(std::filesystem::exists(own)) << "its own socket is removed on stop";
  ::close(listen_fd);
}

TEST_F(SocketActivationTest, APassedSocketThatCannotServeStopsStartUp) {
  // A unix stream socket that is not listening: fail closed, say why.
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  ActivatedDaemon daemon(WriteConfig(dir_ / "cri.sock"), dir_ / "log", fd,
                         ActivatedDaemon::ListenPid::kChild);
  const int status = daemon.WaitExit();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << "wait status " << status << "\n"
                                                             << daemon.Log();
  EXPECT_NE(daemon.Log().find("socket activation: none of the 1 sockets systemd passed"),
            std::string::npos)
      << daemon.Log();
  EXPECT_FALSE(std::filesystem::exists(dir_ / "cri.sock"));
  ::close(fd);
}

}  // namespace
}  // namespace warmpool::testing
