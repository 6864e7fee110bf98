#pragma once

// Pools of pre-created pod sandboxes, kept full in the background.
//
// An entry's life (every transition goes through Transition(), under mu_):
//
//             worker: sandbox + containers      readiness         hand-off
//   (deficit) ──> creating ──────────────> warming ──────> frozen ──────> adopted
//                    │                        │               │
//                    │ any step fails         │ exits,        │ surplus, drained,
//                    │                        │ times out     │ template changed,
//                    ▼                        ▼               ▼ sandbox gone
//                 destroying ─────────────────────────────────────> (removed)
//
// - creating: RunPodSandbox, CreateContainer and StartContainer through the
//   upstream CRI, with warmpool labels, in the entry's own cgroup parent
//   (<pool_cgroup_parent>/<pool>/<entry>).
// - warming: started; the readiness check of every container is polled until
//   it passes or its timeout.
// - frozen: the entry's cgroup is frozen (v1 freezer or v2 cgroup.freeze) and
//   the state read back; no task runs; memory stays charged.
// - destroying: thawed, sandbox stopped and removed, cgroups removed. A failed
//   entry counts against its pool, which retries with exponential back-off.
//
// Threads: one reconciler (decides what to create or destroy, health checks),
// up to max_concurrent_creates creation workers, one destroyer. The upstream
// and cgroup calls run without mu_ held.
//
// Restart recovery (Start), in order:
//   1. list upstream sandboxes labelled warmpool.io/managed=true;
//   2. an entry of a configured pool, with the pool's current template hash,
//      READY, every container running and its cgroup frozen, is thawed,
//      probed, frozen again and kept; any other is destroyed (half-made, stale
//      or broken);
//   3. leftover entry cgroups with no sandbox are removed;
//   4. only then does filling start (and warmpoold reports READY).

#include <absl/status/status.h>
#include <absl/status/statusor.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "daemon/admin_server.h"
#include "daemon/cgroups.h"
#include "daemon/config.h"
#include "daemon/pool_objects.h"
#include "daemon/pool_types.h"
#include "daemon/runtime_client.h"

namespace warmpool {

// The cgroup side of an entry, behind an interface so the state machine can
// be tested without a kernel.
class EntryCgroups {
 public:
  virtual ~EntryCgroups() = default;
  virtual absl::Status Freeze(const std::string& path) = 0;
  virtual absl::Status Thaw(const std::string& path) = 0;
  virtual absl::StatusOr<bool> IsFrozen(const std::string& path) = 0;
  virtual absl::StatusOr<uint64_t> MemoryUsage(const std::string& path) = 0;
  virtual absl::Status RemoveTree(const std::string& path) = 0;
  // Names of the child cgroups of `path` in any hierarchy.
  virtual std::vector<std::string> Children(const std::string& path) = 0;
};

class KernelEntryCgroups final : public EntryCgroups {
 public:
  explicit KernelEntryCgroups(Cgroups* cgroups) : cgroups_(cgroups) {}
  absl::Status Freeze(const std::string& path) override { return cgroups_->Freeze(path); }
  absl::Status Thaw(const std::string& path) override { return cgroups_->Thaw(path); }
  absl::StatusOr<bool> IsFrozen(const std::string& path) override {
    return cgroups_->IsFrozen(path);
  }
  absl::StatusOr<uint64_t> MemoryUsage(const std::string& path) override {
    return cgroups_->MemoryUsage(path);
  }
  absl::Status RemoveTree(const std::string& path) override { return cgroups_->RemoveTree(path); }
  std::vector<std::string> Children(const std::string& path) override;

 private:
  Cgroups* cgroups_;
};

struct PoolManagerOptions {
  std::chrono::milliseconds health_interval{std::chrono::seconds(10)};
  std::chrono::milliseconds backoff_initial{std::chrono::seconds(1)};
  std::chrono::milliseconds backoff_max{std::chrono::minutes(5)};
  // Called when an entry of `pool` is frozen, with how long it took from the
  // start of its creation (metrics: refill durations). Runs with the
  // manager's lock held: it must only record, never call back.
  std::function<void(const std::string& pool, std::chrono::steady_clock::duration)> on_entry_frozen;
};

class PoolManager final : public AdminBackend {
 public:
  // `runtime`, `cgroups` and `objects` must outlive the manager.
  PoolManager(RuntimeClient* runtime, EntryCgroups* cgroups, PoolObjects* objects,
              PoolManagerOptions options = {});
  ~PoolManager() override;

  // The daemon settings (pool cgroup parent, state dir) ahead of Start:
  // Handoff::Recover, which runs first, derives the cgroup path and log
  // directory of a claimed entry it rolls back from them (EntryCgroupPath,
  // EntryLogDir, DestroyClaimed).
  void SetDaemonConfig(const DaemonConfig& daemon);
  // daemon.refill_delay: how long background work stays off a hand-off's CPU.
  std::chrono::milliseconds refill_delay();
  // Recovers existing entries (see the file comment), then starts filling.
  absl::Status Start(const Config& config);
  // A reloaded config: new pools fill, removed pools drain, resized pools grow
  // or shrink, pools whose template changed replace their entries.
  void ApplyConfig(const Config& config);
  // Stops filling and waits for the workers. Entries being made are
  // destroyed; frozen entries are kept for the next start.
  void Stop();
  // Destroys every entry of every pool and waits until they are gone (tests,
  // uninstall). Filling stays stopped afterwards.
  void DestroyAll();

  // An entry taken out of its pool for a hand-off.
  struct Claimed {
    EntryInfo info;
    std::string cgroup_path;    // where its processes still are
    std::string template_hash;  // the pool template it was made from
  };
  // Takes the oldest frozen entry of `pool` (made from the pool's current
  // template) for a hand-off: it leaves the pool at once (which refills) and
  // can never be given to anyone else. nullopt: none is frozen right now.
  std::optional<Claimed> Claim(const std::string& pool);
  // A claimed entry whose hand-off failed: removed like any failed entry.
  void DestroyClaimed(const Claimed& claimed);
  // The cgroup path entry `entry_id` of `pool` was made in.
  std::string EntryCgroupPath(const std::string& pool, const std::string& entry_id);
  // Where the pool's own container logs of entry `entry_id` are written.
  std::string EntryLogDir(const std::string& entry_id);
  // The pools as configured now, and whether pools are switched off.
  std::vector<PoolConfig> PoolConfigs();
  bool passthrough();

  std::vector<PoolStatus> Pools() override;
  std::vector<EntryInfo> Entries() override;

  // `warmpoolctl drain POOL`: the pool stops refilling and its frozen entries
  // are destroyed (entries being made are destroyed once made); it serves no
  // pod until Fill. Kept across reloads and restarts (state_dir/drained-pools).
  // NotFound: no such pool.
  absl::StatusOr<PoolStatus> Drain(const std::string& pool) override;
  // `warmpoolctl fill POOL`: undoes a drain and refills now (a failure
  // back-off is cleared). NotFound: no such pool; FailedPrecondition: the
  // pool was removed from the config.
  absl::StatusOr<PoolStatus> Fill(const std::string& pool) override;
  // One line for people: why `pool` has no frozen entry to hand out now.
  std::string EmptyReason(const std::string& pool);

 private:
  struct Pool {
    PoolConfig config;
    std::string template_hash;
    bool draining = false;  // removed from the config
    bool held = false;      // drained by warmpoolctl (see Drain)
    uint64_t failures = 0;
    uint64_t hits = 0;
    int consecutive_failures = 0;
    std::chrono::milliseconds backoff{0};
    std::chrono::steady_clock::time_point retry_at{};
    std::string last_error;
    uint64_t memory_estimate = 0;  // last measured memory of one of its entries
  };
  struct Entry {
    EntryInfo info;
    std::string cgroup_path;
    std::string template_hash;
    bool destroy_queued = false;
  };

  void ReconcileLoop();
  void Reconcile(std::unique_lock<std::mutex>& lock);  // decides creations and surplus
  void CreateWorker(std::string entry_id);
  absl::Status CreateSteps(const std::string& entry_id, const PoolConfig& pool,
                           const std::string& template_hash);
  void DestroyLoop();
  void DestroyNow(const Entry& entry);
  void HealthCheck(bool recovering);
  absl::Status Recover(const v1::PodSandbox& sandbox);
  void RefreshImages();

  void Transition(Entry& entry, EntryState to);                          // mu_ held
  void FailLocked(const std::string& entry_id, const std::string& why);  // mu_ held
  void QueueDestroyLocked(Entry& entry, const std::string& why);         // mu_ held
  uint64_t BudgetUsedLocked() const;
  // Where a pool's entries live: <pool_cgroup_parent>/<pool>[/<entry>].
  std::string PoolDirLocked(const std::string& pool) const;                          // mu_ held
  std::string EntryDirLocked(const std::string& pool, const std::string& id) const;  // mu_ held
  bool StoppingLocked() const { return stopping_; }
  void ApplyConfigLocked(const Config& config);
  PoolStatus StatusLocked(const std::string& name, const Pool& pool) const;  // mu_ held
  // state_dir/drained-pools: the pools drained by warmpoolctl, one a line.
  void SaveHeldLocked() const;  // mu_ held
  void LoadHeldLocked();        // mu_ held

  RuntimeClient* runtime_;
  EntryCgroups* cgroups_;
  PoolObjects* objects_;
  const PoolManagerOptions options_;

  std::mutex mu_;
  std::condition_variable cv_;
  DaemonConfig daemon_;                         // guarded by mu_
  std::map<std::string, Pool> pools_;           // guarded by mu_
  std::map<std::string, Entry> entries_;        // guarded by mu_
  int creating_now_ = 0;                        // guarded by mu_
  bool stopping_ = false;                       // guarded by mu_
  bool health_due_ = false;                     // guarded by mu_
  // No creation starts before this (daemon.refill_delay after a claim).
  std::chrono::steady_clock::time_point refill_hold_until_{};  // guarded by mu_
  bool budget_logged_ = false;                  // guarded by mu_
  std::deque<std::string> destroy_queue_;       // guarded by mu_
  std::map<std::string, std::thread> workers_;  // by entry id; guarded by mu_
  std::vector<std::string> finished_workers_;   // to join; guarded by mu_
  std::thread reconciler_;
  std::thread destroyer_;
};

// A stable hash of everything in a pool's config that shapes its entries
// (sandbox and container templates, network timing): entries made from
// another template are replaced.
std::string TemplateHash(const PoolConfig& pool);

}  // namespace warmpool
