#include "test/integration/warmpoold_process.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "test/integration/kubelet_driver.h"

namespace warmpool::testing {
namespace {

// TOML basic string: the paths here are plain, but escape what TOML needs.
std::string TomlString(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  return out + "\"";
}

std::string DescribeExit(int status) {
  if (WIFEXITED(status)) return "exited " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status));
  return "status " + std::to_string(status);
}

bool AcceptsConnections(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(fd);
  return ok;
}

}  // namespace

std::string WarmpooldProcess::DefaultBinary() {
  if (const char* env = std::getenv("WP_TEST_WARMPOOLD"); env && *env) return env;
#ifdef WARMPOOLD_PATH
  return WARMPOOLD_PATH;
#else
  return "";
#endif
}

WarmpooldProcess::WarmpooldProcess(Options options) : options_(std::move(options)) {
  if (options_.binary.empty()) options_.binary = DefaultBinary();
  socket_path_ = options_.dir / "warmpool.sock";
  admin_path_ = options_.dir / "admin.sock";
  config_path_ = options_.dir / "warmpool.toml";
  log_path_ = options_.dir / "warmpoold.log";
  state_dir_ = options_.dir / "state";
}

WarmpooldProcess::~WarmpooldProcess() {
  if (!running()) return;
  std::string problem = Stop();
  if (!problem.empty()) ADD_FAILURE() << "warmpoold shutdown: " << problem;
}

std::string WarmpooldProcess::LogTail(size_t bytes) const {
  std::ifstream in(log_path_, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string all = ss.str();
  return all.size() > bytes ? "..." + all.substr(all.size() - bytes) : all;
}

bool WarmpooldProcess::Reaped(int* status) {
  if (pid_ <= 0) return true;
  pid_t r = ::waitpid(pid_, status, WNOHANG);
  if (r == pid_) {
    pid_ = -1;
    return true;
  }
  return false;
}

std::string WarmpooldProcess::Start() {
  if (running()) return "already running";
  if (options_.binary.empty() || ::access(options_.binary.c_str(), X_OK) != 0) {
    return "no warmpoold binary at '" + options_.binary + "'";
  }
  std::filesystem::create_directories(options_.dir);
  {
    std::ofstream config(config_path_, std::ios::trunc);
    config << "[daemon]\n"
           << "listen = " << TomlString(socket_path_.string()) << "\n"
           << "upstream = " << TomlString(options_.upstream) << "\n"
           << "state_dir = " << TomlString(state_dir_.string()) << "\n"
           << "admin = " << TomlString(admin_path_.string()) << "\n"
           << "log_level = " << TomlString(options_.log_level) << "\n";
    if (!options_.extra_daemon_config.empty()) config << options_.extra_daemon_config << "\n";
    if (!options_.extra_config.empty()) config << "\n" << options_.extra_config << "\n";
  }

  const std::string binary = options_.binary;
  const std::string config_arg = config_path_.string();
  const std::string log = log_path_.string();
  const pid_t parent = ::getpid();
  // The environment is built before fork: the child may only exec.
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) env_strings.emplace_back(*e);
  for (const std::string& extra : options_.extra_env) env_strings.push_back(extra);
  std::vector<char*> envp;
  for (std::string& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) return std::string("fork: ") + std::strerror(errno);
  if (pid == 0) {
    // Child: only async-signal-safe calls until exec.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive a crashed test binary
    if (::getppid() != parent) ::_exit(127);
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd >= 0) {
      ::dup2(fd, STDOUT_FILENO);
      ::dup2(fd, STDERR_FILENO);
    }
    int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, STDIN_FILENO);
    // Signals the test process blocks would stay blocked across exec.
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    const char* argv[] = {binary.c_str(), "--config", config_arg.c_str(), nullptr};
    ::execve(binary.c_str(), const_cast<char* const*>(argv), envp.data());
    ::_exit(127);
  }
  pid_ = pid;

  // Ready when Version answers through the proxy's socket.
  std::string last_error = "socket never appeared";
  int status = 0;
  bool exited = false;
  bool ready = WaitFor(
      [&] {
        if (Reaped(&status)) {
          exited = true;
          return true;
        }
        if (!std::filesystem::exists(socket_path_)) return false;
        if (!options_.wait_for_upstream) {
          last_error = "socket does not accept connections";
          return AcceptsConnections(socket_path_.string());
        }
        auto channel = ConnectCri(socket_path_.string());
        auto stub = ::runtime::v1::RuntimeService::NewStub(channel);
        grpc::ClientContext ctx;
        ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(500));
        ::runtime::v1::VersionRequest req;
        req.set_version("v1");
        ::runtime::v1::VersionResponse resp;
        grpc::Status s = stub->Version(&ctx, req, &resp);
        if (s.ok()) return true;
        last_error = "Version: " + StatusString(s);
        return false;
      },
      options_.ready_timeout, std::chrono::milliseconds(10));
  if (exited) return "warmpoold " + DescribeExit(status) + " during start-up; log:\n" + LogTail();
  if (!ready) {
    Kill();
    return "warmpoold not serving after " + std::to_string(options_.ready_timeout.count()) +
           " ms (" + last_error + "); log:\n" + LogTail();
  }
  return "";
}

std::string WarmpooldProcess::Stop(std::chrono::milliseconds timeout) {
  if (!running()) return "not running";
  ::kill(pid_, SIGTERM);
  int status = 0;
  std::string problems;
  if (!WaitFor([&] { return Reaped(&status); }, timeout, std::chrono::milliseconds(5))) {
    Kill();
    return "did not exit within " + std::to_string(timeout.count()) +
           " ms of SIGTERM (killed); log:\n" + LogTail();
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    problems += "warmpoold " + DescribeExit(status) + " after SIGTERM (want exit 0). ";
  }
  if (std::filesystem::exists(socket_path_)) {
    problems += "socket " + socket_path_.string() + " left behind. ";
  }
  if (!problems.empty()) problems += "log:\n" + LogTail();
  return problems;
}

std::optional<int> WarmpooldProcess::WaitForExit(std::chrono::milliseconds timeout) {
  if (!running()) return std::nullopt;
  int status = 0;
  if (!WaitFor([&] { return Reaped(&status); }, timeout, std::chrono::milliseconds(5))) {
    return std::nullopt;
  }
  return status;
}

void WarmpooldProcess::Kill() {
  if (!running()) return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
}

}  // namespace warmpool::testing
