#pragma once

// Test support for pools against the real containerd: the admin API client,
// pool config text, reading the cgroups of pool entries, finding pool objects
// straight in containerd, the fallback cleanup for a test that failed half
// way, and a restart of the harness's containerd.
//
// Like kubelet_driver.h, nothing here asserts: calls return what they saw.

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "test/integration/kubelet_driver.h"
#include "warmpool_admin.grpc.pb.h"
#include "warmpool_admin.pb.h"

namespace warmpool::testing {

namespace adminpb = ::warmpool::admin::v1;

// warmpoold's admin API (proto/warmpool_admin.proto) on its admin socket.
class AdminClient {
 public:
  explicit AdminClient(const std::string& socket_path);

  grpc::Status ListPools(adminpb::ListPoolsResponse* out);
  grpc::Status ListEntries(const std::string& pool, adminpb::ListEntriesResponse* out);

  // Conveniences for polling: nullopt when the call fails or the pool is
  // not listed; an empty vector when the call fails.
  std::optional<adminpb::PoolStatus> Pool(const std::string& name);
  std::vector<adminpb::Entry> Entries(const std::string& pool = "");

 private:
  std::unique_ptr<adminpb::Admin::Stub> stub_;
};

// One `[[pool]]` of a test config. An empty `containers` is a sandbox pool.
// Every pool gets loopback DNS (the test bed sends nothing off the machine).
struct TestPool {
  std::string name;
  int size = 1;
  // "early": CNI when the entry is made (the bed's bridge network); "late"
  // needs the daemon's late network keys (late_network_test).
  std::string network = "early";
  struct Container {
    std::string name = "app";
    std::string image;  // required
    std::map<std::string, std::string> env;
    int http_port = 8080;  // ready = { http = { port, path = "/healthz" } }
    std::string ready_timeout = "30s";
  };
  std::vector<Container> containers;
};

// The TOML of `pools`, to append after the [daemon] table.
std::string PoolsToml(const std::vector<TestPool>& pools);

// Lines of the [daemon] table every pool test uses: the pool cgroup parent
// (below the harness's parent, so its leak check sees leftovers) and
// whatever `more` adds ("max_concurrent_creates = 5").
std::string PoolDaemonToml(const std::string& pool_cgroup_parent, const std::string& more = "");

// Replaces everything after the [daemon] table of the config file at `path`
// with `tail` (pool tables, or "" for none). The file must have been written
// by WarmpooldProcess: its [daemon] table ends before the first blank line.
// Returns "" or the error.
std::string RewriteConfigTail(const std::string& path, const std::string& tail);

// ------------------------------------------------------------ cgroups --

// The hierarchies under /sys/fs/cgroup (freezer, memory, ..., unified).
std::vector<std::string> CgroupHierarchies();

// The contents of /sys/fs/cgroup/HIERARCHY/PATH/FILE without trailing
// whitespace; nullopt when unreadable.
std::optional<std::string> ReadCgroupFile(const std::string& hierarchy, const std::string& path,
                                          const std::string& file);
std::optional<uint64_t> ReadCgroupNumber(const std::string& hierarchy, const std::string& path,
                                         const std::string& file);

// Every cgroup directory strictly below `path`, as cgroup paths, in any
// hierarchy (union), sorted.
std::set<std::string> CgroupDirsBelow(const std::string& path);
// Whether `path` exists in any hierarchy.
bool CgroupExistsAnywhere(const std::string& path);

// ---------------------------------------------------- containerd side --

// Sandboxes labelled warmpool.io/managed=true, straight from `runtime`,
// optionally only those of pool `pool`. nullopt when the call fails.
std::optional<std::vector<cri::PodSandbox>> ManagedSandboxes(cri::RuntimeService::Stub& runtime,
                                                             const std::string& pool = "");

// The labels on containerd's own record of container (or sandbox) `id`, read
// over containerd's native Containers API in the CRI namespace (what
// cAdvisor reads), not the CRI. nullopt when the call fails.
std::optional<std::map<std::string, std::string>> ContainerdRecordLabels(
    const std::string& containerd_sock, const std::string& id);

// The fallback cleanup for a test that failed (or whose daemon did not
// drain): straight against containerd, for the sandboxes labelled
// warmpool.io/managed=true whose pool is in `pools`: thaws every cgroup below
// `pool_cgroup_parent` (v1 freezer and cgroup2), stops and removes those
// sandboxes, then removes the cgroup directories leaf first in every
// hierarchy, `pool_cgroup_parent` itself included. Returns what it found
// and removed (`removed`), and what it could not (`problems`).
struct ForcedCleanup {
  std::vector<std::string> removed;
  std::vector<std::string> problems;
};
ForcedCleanup ForceRemovePools(const std::string& containerd_sock,
                               const std::set<std::string>& pools,
                               const std::string& pool_cgroup_parent);

// Restarts the harness's containerd exactly as test/harness/containerd.sh
// starts it (setsid containerd --config $WP_TEST_CONTAINERD_CONFIG, output
// appended to $WP_TEST_CONTAINERD_LOG, pid in $WP_TEST_DIR/containerd.pid):
// SIGTERM to the pid in the pid file, waits for it to exit, starts the new
// one (not a child of this process: the harness's stop finds it by the pid
// file), and waits until its CRI answers Version. Shims and their tasks
// survive. Returns "" or what went wrong.
std::string RestartContainerd(std::chrono::milliseconds timeout = std::chrono::seconds(30));

}  // namespace warmpool::testing
