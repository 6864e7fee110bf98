#pragma once

// The observable state of pools and their entries: what the admin API,
// warmpoolctl and metrics report. Plain values, copied out of the pool
// manager under its lock.

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace warmpool {

// The life of one pool entry. See daemon/pool_manager.h for the diagram.
enum class EntryState {
  kCreating,    // sandbox and containers being created through the upstream CRI
  kWarming,     // started; waiting for the readiness checks
  kFrozen,      // ready and frozen (cgroup freezer): no CPU, memory kept
  kAdopted,     // handed to a pod: owned by it forever
  kDestroying,  // being stopped and removed (failure, drain, shrink)
};

const char* EntryStateName(EntryState state);

// A pre-started container of an entry, as containerd lists it.
struct PrestartedContainer {
  std::string container_id;
  std::string template_name;  // its warmpool.io/container label
  std::string image_ref;      // the image id it runs
  std::string log_path;       // containerd's log file of it
};

struct EntryInfo {
  std::string id;    // warmpool's entry id (label warmpool.io/entry)
  std::string pool;  // pool name
  EntryState state = EntryState::kCreating;
  std::string sandbox_id;  // upstream sandbox id, once created
  std::vector<std::string> container_ids;
  // Listed once the containers are made (or recovered), so a hand-off need
  // not ask containerd for them (~1 ms of every sandbox hit).
  std::vector<PrestartedContainer> prestarted;
  std::string pod_ip;
  std::chrono::system_clock::time_point created_at{};
  std::chrono::system_clock::time_point state_since{};  // when it entered `state`
  uint64_t memory_bytes = 0;  // charged to the entry's cgroup (frozen entries)
  std::string last_error;     // why it was destroyed, when it failed
};

struct PoolStatus {
  std::string name;
  int target = 0;  // configured size
  int creating = 0;
  int warming = 0;
  int frozen = 0;
  int adopted = 0;                       // adopted entries that still exist
  uint64_t failures = 0;                 // entries that failed since start
  uint64_t hits = 0;                     // hand-offs since start
  uint64_t memory_bytes = 0;             // memory of its frozen entries
  std::string last_error;                // the most recent failure's reason
  std::chrono::milliseconds backoff{0};  // current retry delay after failures (0: none)
  bool draining = false;                 // removed from the config; entries being destroyed
  bool drained = false;  // `warmpoolctl drain`: no refills, frozen entries removed, until `fill`
};

}  // namespace warmpool
