#pragma once

// Runs the warmpoold binary for a test: writes a config into a temporary
// directory (socket, state and admin socket all inside it), starts the
// daemon, and waits until it answers CRI Version through its socket.
//
// Ownership: one test thread owns the object and the child process. The
// destructor stops a still-running daemon with SIGTERM and records a gtest
// failure unless it exited 0 and removed its socket.

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace warmpool::testing {

class WarmpooldProcess {
 public:
  struct Options {
    std::string binary;         // empty: DefaultBinary()
    std::string upstream;       // containerd's CRI socket
    std::filesystem::path dir;  // private directory for config, sockets, state, log
    std::string log_level = "debug";
    // TOML key = value lines written inside the [daemon] table (after the
    // keys above), e.g. pool_cgroup_parent or max_concurrent_creates.
    std::string extra_daemon_config;
    std::string extra_config;  // TOML appended after the [daemon] table
    std::chrono::milliseconds ready_timeout{std::chrono::seconds(20)};
    // Start() waits until Version answers through the daemon (so the
    // upstream is reachable); false: only until its socket accepts
    // connections (tests of an upstream that is down).
    bool wait_for_upstream = true;
    // "KEY=VALUE" added to the daemon's environment (e.g. NOTIFY_SOCKET).
    std::vector<std::string> extra_env;
  };

  // $WP_TEST_WARMPOOLD if set, else the build tree's warmpoold (compile
  // definition WARMPOOLD_PATH), else empty.
  static std::string DefaultBinary();

  explicit WarmpooldProcess(Options options);
  ~WarmpooldProcess();
  WarmpooldProcess(const WarmpooldProcess&) = delete;
  WarmpooldProcess& operator=(const WarmpooldProcess&) = delete;

  // Writes the config, spawns the daemon, and polls until Version answers
  // through `socket_path()` (or, see Options::wait_for_upstream, until the
  // socket accepts connections). Returns "" when serving, else what went wrong
  // (with the end of the daemon's log).
  std::string Start();

  // SIGTERM, then waits up to `timeout`. Returns "" when the daemon exited 0
  // and removed its socket, else what went wrong (after SIGKILL on timeout).
  std::string Stop(std::chrono::milliseconds timeout = std::chrono::seconds(20));

  // SIGKILL and reap: a crash. The socket file stays behind, as after a real
  // crash.
  void Kill();

  // Waits up to `timeout` for the daemon to exit on its own and reaps it.
  // Returns its wait status (see waitpid(2): WIFSIGNALED, WTERMSIG), or
  // nullopt if it is still running (or was not running).
  std::optional<int> WaitForExit(std::chrono::milliseconds timeout);

  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  const std::filesystem::path& socket_path() const { return socket_path_; }
  const std::filesystem::path& admin_path() const { return admin_path_; }
  const std::filesystem::path& config_path() const { return config_path_; }
  const std::filesystem::path& log_path() const { return log_path_; }
  const std::filesystem::path& state_dir() const { return state_dir_; }

  // The last `bytes` of the daemon's stdout+stderr.
  std::string LogTail(size_t bytes = 4000) const;

 private:
  // Non-blocking reap; true (and `status` filled) once the child has exited.
  bool Reaped(int* status);

  Options options_;
  std::filesystem::path socket_path_, admin_path_, config_path_, log_path_, state_dir_;
  pid_t pid_ = -1;
};

}  // namespace warmpool::testing
