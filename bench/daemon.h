#pragma once

// The warmpoold a benchmark run owns: started from the binary with a config
// generated into the run's directory (its own socket, admin socket, state
// directory and pool cgroup parent), pools changed by rewriting the config
// and SIGHUP, and drained and stopped at the end. Also reads what the run
// reports about it: pool and entry status from the admin API, per-pod hit or
// miss from its log, its RSS.
//
// One thread (the benchmark's main thread) owns the object; the admin and
// log reads are safe from any thread.

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "warmpool_admin.grpc.pb.h"

namespace warmpool::bench {

namespace adminpb = ::warmpool::admin::v1;

// One [[pool]] of the generated config. No containers: a sandbox pool.
struct PoolSpec {
  std::string name;
  int size = 0;
  struct Container {
    std::string name = "app";
    std::string image;
    std::map<std::string, std::string> env;
    int port = 8080;  // readiness: HTTP GET /healthz on this port
    std::string ready_timeout = "180s";
  };
  std::vector<Container> containers;
};

class BenchDaemon {
 public:
  struct Options {
    std::string binary;                  // warmpoold
    std::string upstream;                // containerd's CRI socket
    std::filesystem::path dir;           // config, sockets, state, log
    std::string pool_cgroup_parent;      // below the node's (or test bed's) parent
    int max_concurrent_creates = 2;
    std::string memory_budget = "16GiB";
    std::string log_level = "info";
  };

  // Where warmpoold is: next to this program (build tree or ../sbin of an
  // installed one), the build tree's path compiled in, or PATH.
  static std::string FindBinary();

  explicit BenchDaemon(Options options);
  ~BenchDaemon();  // Stop() if still running
  BenchDaemon(const BenchDaemon&) = delete;
  BenchDaemon& operator=(const BenchDaemon&) = delete;

  // Uses a warmpoold someone else runs (its CRI and admin sockets) instead of
  // starting one: pools are its own (SetPools fails), its log is not read,
  // Stop() leaves it running.
  void Attach(const std::string& socket, const std::string& admin_socket);
  bool attached() const { return !attached_socket_.empty(); }

  // Writes the config (no pools), spawns warmpoold, waits until CRI Version
  // answers through it. "" or what went wrong (with the log's end).
  std::string Start();
  // Replaces the pools (reload by SIGHUP). "" or the error.
  std::string SetPools(const std::vector<PoolSpec>& pools);
  // Waits until `pool` has `frozen` frozen entries and none being made.
  // "" or why not (the pool's status and last error).
  std::string WaitFilled(const std::string& pool, int frozen, std::chrono::seconds timeout);
  // Drains every pool (reload with none, wait until no entry is left), then
  // SIGTERM and wait. "" or what went wrong.
  std::string Stop();

  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  std::string socket() const {
    return attached() ? attached_socket_ : (options_.dir / "warmpool.sock").string();
  }
  std::string admin_socket() const {
    return attached() ? attached_admin_ : (options_.dir / "admin.sock").string();
  }
  std::string log_path() const { return (options_.dir / "warmpoold.log").string(); }
  std::string LogTail(size_t bytes = 3000) const;

  std::optional<adminpb::PoolStatus> Pool(const std::string& name);
  std::vector<adminpb::Entry> Entries(const std::string& pool = "");
  // VmRSS of the daemon, bytes.
  std::optional<uint64_t> RssBytes() const;

  // What warmpoold logged for pod "namespace/name": "hit", or the miss's
  // reason code ("app_pool", "pool_empty", ...), or "" (nothing: a pod that
  // names no pool is only logged at debug level).
  std::string SandboxOutcome(const std::string& pod);
  // The same for the pod's container (app pools): "hit" when warmpoold
  // handed it the pool's pre-started container ("hit: pod NS/NAME container
  // C ..."), a reason code when it logged a container miss, else "".
  std::string ContainerOutcome(const std::string& pod);

 private:
  std::string WriteConfig(const std::vector<PoolSpec>& pools);
  void ScanLog();  // reads new log lines into outcomes_; mu_ held

  Options options_;
  pid_t pid_ = -1;
  std::string attached_socket_, attached_admin_;  // Attach(): not ours
  std::unique_ptr<adminpb::Admin::Stub> admin_;
  std::mutex mu_;
  uint64_t log_offset_ = 0;                     // guarded by mu_
  std::string partial_line_;                    // guarded by mu_
  std::map<std::string, std::string> outcomes_;            // guarded by mu_
  std::map<std::string, std::string> container_outcomes_;  // guarded by mu_
};

}  // namespace warmpool::bench
