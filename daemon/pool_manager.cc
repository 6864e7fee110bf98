#include "daemon/pool_manager.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <sstream>

#include "daemon/late_network.h"
#include "daemon/log_format.h"
#include "daemon/readiness.h"
#include "daemon/systemd_cgroups.h"
#include "daemon/templates.h"

namespace warmpool {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

std::string RandomHex(int chars) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (int i = 0; i < chars; ++i) out += digits[rng() % 16];
  return out;
}

std::string HumanBytes(uint64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1fMiB", static_cast<double>(bytes) / (1 << 20));
  return buf;
}

long long Ms(Clock::duration d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

bool IgnorableNotFound(const absl::Status& s) { return s.ok() || absl::IsNotFound(s); }

// The pre-started containers of an entry, with what a hand-off needs of
// them, so that it need not ask containerd. image_ref comes from the list
// (the image id; ContainerStatus may give a repo digest), log_path from
// ContainerStatus (the list has none).
absl::StatusOr<std::vector<PrestartedContainer>> PrestartedOf(
    RuntimeClient* runtime, const v1::ListContainersResponse& listed) {
  std::vector<PrestartedContainer> out;
  for (const v1::Container& c : listed.containers()) {
    auto it = c.labels().find(kLabelContainer);
    if (it == c.labels().end()) continue;
    v1::ContainerStatusResponse status;
    if (absl::Status s = runtime->ContainerStatus(c.id(), &status); !s.ok()) return s;
    out.push_back({c.id(), it->second, c.image_ref(), status.status().log_path()});
  }
  return out;
}

}  // namespace

// ---------------------------------------------------------------- helpers --

std::string TemplateHash(const PoolConfig& pool) {
  // FNV-1a over a canonical text of the fields that shape an entry. Stable
  // across runs and builds (std::hash is not promised to be).
  std::ostringstream text;
  const SandboxTemplate& s = pool.sandbox;
  text << "v1|" << s.runtime_handler << '|' << int(s.namespaces.network) << int(s.namespaces.pid)
       << int(s.namespaces.ipc) << '|' << s.privileged << '|'
       << (s.run_as_user ? std::to_string(*s.run_as_user) : "-") << '|'
       << (s.run_as_group ? std::to_string(*s.run_as_group) : "-") << '|' << s.readonly_rootfs
       << '|';
  for (auto g : s.supplemental_groups) text << g << ',';
  text << '|' << int(s.seccomp.type) << s.seccomp.localhost_ref << '|' << int(s.apparmor.type)
       << s.apparmor.localhost_ref << '|';
  for (const auto& [k, v] : s.sysctls) text << k << '=' << v << ',';
  for (const auto& x : s.dns.servers) text << "ns:" << x << ',';
  for (const auto& x : s.dns.searches) text << "se:" << x << ',';
  for (const auto& x : s.dns.options) text << "op:" << x << ',';
  text << '|' << int(pool.network);
  for (const auto& c : pool.containers) {
    text << "|c:" << c.name << '\x1f' << c.image << '\x1f';
    for (const auto& a : c.command) text << a << '\x1e';
    text << '\x1f';
    for (const auto& a : c.args) text << a << '\x1e';
    text << '\x1f';
    for (const auto& [k, v] : c.env) text << k << '=' << v << '\x1e';
    text << '\x1f' << c.working_dir << '\x1f' << c.resources.cpu_shares << ','
         << c.resources.cpu_quota << ',' << c.resources.cpu_period << ','
         << c.resources.memory_limit_bytes << '\x1f' << int(c.ready.kind) << ',' << c.ready.port
         << ',' << c.ready.path << ',';
    for (const auto& a : c.ready.exec) text << a << '\x1e';
    // v2: containers carry their own security settings and kubelet's paths.
    text << "\x1fv2:" << int(c.seccomp.type) << c.seccomp.localhost_ref << ','
         << int(c.apparmor.type) << c.apparmor.localhost_ref << ',';
    for (const auto& p : c.masked_paths.value_or(KubeletDefaultMaskedPaths())) text << p << ',';
    text << ';';
    for (const auto& p : c.readonly_paths.value_or(KubeletDefaultReadonlyPaths())) text << p << ',';
  }
  uint64_t h = 1469598103934665603ull;
  for (unsigned char ch : text.str()) {
    h ^= ch;
    h *= 1099511628211ull;
  }
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016" PRIx64, h);
  return buf;
}

std::vector<std::string> KernelEntryCgroups::Children(const std::string& path) {
  std::set<std::string> names;
  for (const std::string& mount : cgroups_->layout().MountPoints()) {
    std::error_code ec;
    for (const auto& d : std::filesystem::directory_iterator(mount + path, ec)) {
      if (d.is_directory()) names.insert(d.path().filename().string());
    }
  }
  return {names.begin(), names.end()};
}

// ------------------------------------------------------------ life cycle --

PoolManager::PoolManager(RuntimeClient* runtime, EntryCgroups* cgroups, PoolObjects* objects,
                         PoolManagerOptions options)
    : runtime_(runtime), cgroups_(cgroups), objects_(objects), options_(options) {}

PoolManager::~PoolManager() { Stop(); }

void PoolManager::SetDaemonConfig(const DaemonConfig& daemon) {
  std::lock_guard<std::mutex> lock(mu_);
  daemon_ = daemon;
}

std::chrono::milliseconds PoolManager::refill_delay() {
  std::lock_guard<std::mutex> lock(mu_);
  return daemon_.refill_delay;
}

absl::Status PoolManager::Start(const Config& config) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    ApplyConfigLocked(config);
    LoadHeldLocked();
  }
  HealthCheck(/*recovering=*/true);
  RefreshImages();
  reconciler_ = std::thread([this] { ReconcileLoop(); });
  destroyer_ = std::thread([this] { DestroyLoop(); });
  return absl::OkStatus();
}

void PoolManager::ApplyConfig(const Config& config) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    ApplyConfigLocked(config);
  }
  RefreshImages();
  cv_.notify_all();
}

void PoolManager::ApplyConfigLocked(const Config& config) {
  daemon_ = config.daemon;
  objects_->SetPoolsConfigured(!config.pools.empty());
  std::set<std::string> names;
  for (const PoolConfig& pc : config.pools) {
    names.insert(pc.name);
    Pool& pool = pools_[pc.name];
    const std::string hash = TemplateHash(pc);
    if (!pool.template_hash.empty() && pool.template_hash != hash) {
      spdlog::info("pool {}: template changed; replacing its entries", pc.name);
    }
    if (pool.draining) spdlog::info("pool {}: back in the config", pc.name);
    pool.config = pc;
    pool.template_hash = hash;
    pool.draining = false;
  }
  for (auto& [name, pool] : pools_) {
    if (names.count(name) == 0 && !pool.draining) {
      pool.draining = true;
      pool.config.size = 0;
      spdlog::info("pool {}: removed from the config; draining", name);
    }
  }
}

void PoolManager::Stop() {
  std::map<std::string, std::thread> workers;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (reconciler_.joinable()) reconciler_.join();
  {
    std::lock_guard<std::mutex> lock(mu_);
    workers.swap(workers_);
    finished_workers_.clear();
  }
  for (auto& [id, t] : workers) t.join();  // each queues what it was making for destruction
  cv_.notify_all();
  if (destroyer_.joinable()) destroyer_.join();
}

void PoolManager::DestroyAll() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [name, pool] : pools_) {
      pool.config.size = 0;
      pool.draining = true;
    }
  }
  Stop();
  std::vector<Entry> left;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [id, e] : entries_) left.push_back(e);
  }
  for (const Entry& e : left) DestroyNow(e);
  std::vector<std::string> dirs;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [name, pool] : pools_) dirs.push_back(PoolDirLocked(name));
  }
  for (const std::string& dir : dirs) {
    if (absl::Status s = cgroups_->RemoveTree(dir); !s.ok()) {
      spdlog::warn("removing pool cgroup {}: {}", dir, s.message());
    }
  }
}

// ------------------------------------------------------------- decisions --

void PoolManager::Transition(Entry& entry, EntryState to) {
  entry.info.state = to;
  entry.info.state_since = std::chrono::system_clock::now();
}

std::string PoolManager::PoolDirLocked(const std::string& pool) const {
  // A slice parent: one slice per pool and per entry (systemd_cgroups.h).
  if (IsSystemdSlice(daemon_.pool_cgroup_parent)) {
    return PoolSlicePath(daemon_.pool_cgroup_parent, pool);
  }
  return daemon_.pool_cgroup_parent + "/" + pool;
}

std::string PoolManager::EntryDirLocked(const std::string& pool, const std::string& id) const {
  if (IsSystemdSlice(daemon_.pool_cgroup_parent)) {
    return EntrySlicePath(daemon_.pool_cgroup_parent, pool, id);
  }
  return PoolDirLocked(pool) + "/" + id;
}

uint64_t PoolManager::BudgetUsedLocked() const {
  uint64_t used = 0;
  for (const auto& [id, e] : entries_) {
    if (e.info.state == EntryState::kAdopted || e.info.state == EntryState::kDestroying) continue;
    if (e.info.memory_bytes > 0) {
      used += e.info.memory_bytes;
    } else if (auto it = pools_.find(e.info.pool); it != pools_.end()) {
      used += it->second.memory_estimate;
    }
  }
  return used;
}

void PoolManager::QueueDestroyLocked(Entry& entry, const std::string& why) {
  if (entry.destroy_queued) return;
  entry.destroy_queued = true;
  if (!why.empty()) entry.info.last_error = why;
  Transition(entry, EntryState::kDestroying);
  destroy_queue_.push_back(entry.info.id);
  cv_.notify_all();
}

void PoolManager::FailLocked(const std::string& entry_id, const std::string& why) {
  auto it = entries_.find(entry_id);
  if (it == entries_.end()) return;
  Entry& e = it->second;
  auto pit = pools_.find(e.info.pool);
  if (pit != pools_.end() && !stopping_) {
    Pool& pool = pit->second;
    pool.failures++;
    pool.consecutive_failures++;
    pool.last_error = why;
    auto backoff = options_.backoff_initial;
    for (int i = 1; i < pool.consecutive_failures && backoff < options_.backoff_max; ++i) {
      backoff *= 2;
    }
    pool.backoff = std::min(backoff, options_.backoff_max);
    pool.retry_at = Clock::now() + pool.backoff;
    spdlog::warn("pool {}: entry {} failed: {}; next try in {}ms", pool.config.name, e.info.id, why,
                 pool.backoff.count());
  }
  QueueDestroyLocked(e, why);
}

void PoolManager::Reconcile(std::unique_lock<std::mutex>& lock) {
  for (const std::string& id : finished_workers_) {
    auto it = workers_.find(id);
    if (it == workers_.end()) continue;
    it->second.join();  // it has left its last critical section: this is quick
    workers_.erase(it);
  }
  finished_workers_.clear();

  const bool off = daemon_.passthrough;
  // Surplus first: stale templates, drained pools, pools above target.
  for (auto& [name, pool] : pools_) {
    const int target = off || pool.held ? 0 : pool.config.size;
    int live = 0;
    std::vector<Entry*> frozen;
    for (auto& [id, e] : entries_) {
      if (e.info.pool != name) continue;
      const EntryState st = e.info.state;
      if (st == EntryState::kFrozen && e.template_hash != pool.template_hash) {
        QueueDestroyLocked(e, "");
        spdlog::info("pool {}: entry {} made from an old template; replacing it", name, id);
        continue;
      }
      if (st == EntryState::kCreating || st == EntryState::kWarming) live++;
      if (st == EntryState::kFrozen) {
        live++;
        frozen.push_back(&e);
      }
    }
    std::sort(frozen.begin(), frozen.end(),
              [](Entry* a, Entry* b) { return a->info.created_at < b->info.created_at; });
    for (size_t i = 0; live > target && i < frozen.size(); ++i, --live) {
      spdlog::info("pool {}: entry {} above target {}; removing it", name, frozen[i]->info.id,
                   target);
      QueueDestroyLocked(*frozen[i], "");
    }
  }
  // Drained pools with nothing left are forgotten, their cgroup removed.
  std::vector<std::string> drained;
  for (auto it = pools_.begin(); it != pools_.end();) {
    const std::string& name = it->first;
    const bool empty = std::none_of(entries_.begin(), entries_.end(),
                                    [&](const auto& kv) { return kv.second.info.pool == name; });
    if (it->second.draining && empty) {
      drained.push_back(name);
      it = pools_.erase(it);
    } else {
      ++it;
    }
  }
  if (!drained.empty()) {
    std::string parent = daemon_.pool_cgroup_parent;
    if (IsSystemdSlice(parent)) parent = ExpandSlice(parent).value_or("/" + parent);
    std::vector<std::string> dirs;
    for (const std::string& name : drained) dirs.push_back(PoolDirLocked(name));
    lock.unlock();
    for (size_t i = 0; i < drained.size(); ++i) {
      const std::string& name = drained[i];
      absl::Status s = cgroups_->RemoveTree(dirs[i]);
      spdlog::info("pool {}: drained{}", name, s.ok() ? "" : "; " + std::string(s.message()));
    }
    lock.lock();
    if (pools_.empty()) {
      // No pool left: warmpool's cgroup parent goes too (it made it).
      lock.unlock();
      (void)cgroups_->RemoveTree(parent);
      lock.lock();
    }
  }
  if (off || stopping_) return;

  // Creations: the pool furthest below its target first, within the node's
  // concurrency limit and memory budget.
  const auto now = Clock::now();
  if (now < refill_hold_until_) return;  // a hand-off is running: ReconcileLoop wakes at the end
  while (creating_now_ < daemon_.max_concurrent_creates) {
    Pool* best = nullptr;
    int best_deficit = 0;
    for (auto& [name, pool] : pools_) {
      if (pool.draining || pool.held || pool.retry_at > now) continue;
      int live = 0;
      for (const auto& [id, e] : entries_) {
        if (e.info.pool == name &&
            (e.info.state == EntryState::kCreating || e.info.state == EntryState::kWarming ||
             (e.info.state == EntryState::kFrozen && e.template_hash == pool.template_hash))) {
          live++;
        }
      }
      const int deficit = pool.config.size - live;
      if (deficit > best_deficit) {
        best = &pool;
        best_deficit = deficit;
      }
    }
    if (best == nullptr) return;
    if (BudgetUsedLocked() + best->memory_estimate > daemon_.memory_budget_bytes) {
      if (!budget_logged_) {
        spdlog::warn("memory budget {} reached ({} in use): pool {} stays below target",
                     HumanBytes(daemon_.memory_budget_bytes), HumanBytes(BudgetUsedLocked()),
                     best->config.name);
        budget_logged_ = true;
      }
      return;
    }
    budget_logged_ = false;
    Entry e;
    e.info.id = RandomHex(12);
    e.info.pool = best->config.name;
    e.info.created_at = std::chrono::system_clock::now();
    e.cgroup_path = EntryDirLocked(best->config.name, e.info.id);
    e.template_hash = best->template_hash;
    Transition(e, EntryState::kCreating);
    const std::string id = e.info.id;
    entries_[id] = std::move(e);
    creating_now_++;
    workers_[id] = std::thread([this, id] { CreateWorker(id); });
  }
}

void PoolManager::ReconcileLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  auto next_health = Clock::now() + options_.health_interval;
  while (!stopping_) {
    Reconcile(lock);
    // Wake for: a worker finishing, a config change, a back-off ending, the
    // next health check.
    auto wake = next_health;
    for (const auto& [name, pool] : pools_) {
      if (pool.retry_at > Clock::now()) wake = std::min(wake, pool.retry_at);
    }
    if (refill_hold_until_ > Clock::now()) wake = std::min(wake, refill_hold_until_);
    cv_.wait_until(lock, wake);
    if (stopping_) break;
    if (Clock::now() >= next_health || health_due_) {
      health_due_ = false;
      lock.unlock();
      HealthCheck(/*recovering=*/false);
      RefreshImages();
      lock.lock();
      next_health = Clock::now() + options_.health_interval;
    }
  }
}

// -------------------------------------------------------------- creation --

void PoolManager::CreateWorker(std::string entry_id) {
  PoolConfig pool;
  std::string hash;
  {
    std::lock_guard<std::mutex> lock(mu_);
    const Entry& e = entries_.at(entry_id);
    pool = pools_.at(e.info.pool).config;
    hash = e.template_hash;
  }
  const auto started = Clock::now();
  absl::Status s = CreateSteps(entry_id, pool, hash);
  std::lock_guard<std::mutex> lock(mu_);
  creating_now_--;
  finished_workers_.push_back(entry_id);
  if (s.ok()) {
    Entry& e = entries_.at(entry_id);
    Pool& p = pools_.at(e.info.pool);
    p.consecutive_failures = 0;
    p.backoff = 0ms;
    p.retry_at = {};
    if (e.info.memory_bytes > 0) p.memory_estimate = e.info.memory_bytes;
    if (options_.on_entry_frozen) options_.on_entry_frozen(e.info.pool, Clock::now() - started);
    spdlog::info("pool {}: entry {} frozen after {}ms (sandbox {}, {} held)", e.info.pool, entry_id,
                 Ms(Clock::now() - started), e.info.sandbox_id.substr(0, 13),
                 HumanBytes(e.info.memory_bytes));
  } else if (stopping_) {
    QueueDestroyLocked(entries_.at(entry_id), "warmpoold stopped while it was being made");
  } else {
    FailLocked(entry_id, std::string(s.message()));
  }
  cv_.notify_all();
}

absl::Status PoolManager::CreateSteps(const std::string& entry_id, const PoolConfig& pool,
                                      const std::string& template_hash) {
  std::string cgroup_path, state_dir, late_handler;
  {
    std::lock_guard<std::mutex> lock(mu_);
    cgroup_path = entries_.at(entry_id).cgroup_path;
    state_dir = daemon_.state_dir;
    late_handler = daemon_.late_runtime_handler;
  }
  auto stopping = [this] {
    std::lock_guard<std::mutex> lock(mu_);
    return stopping_;
  };
  auto aborted = [] { return absl::CancelledError("warmpoold is stopping"); };

  // Images first, as kubelet does: ImageStatus, pull only when missing.
  std::vector<std::string> image_refs;
  for (const ContainerTemplate& t : pool.containers) {
    v1::ImageStatusResponse st;
    absl::Status s = runtime_->ImageStatus(t.image, &st);
    if (!s.ok()) return s;
    if (!st.has_image()) {
      v1::PullImageResponse pulled;
      if (s = runtime_->PullImage(t.image, &pulled); !s.ok()) return s;
      image_refs.push_back(pulled.image_ref());
    } else {
      image_refs.push_back(st.image().id());
    }
  }
  if (stopping()) return aborted();

  const std::string log_dir = EntryLogDir(entry_id);
  std::error_code ec;
  std::filesystem::create_directories(log_dir, ec);
  if (ec) return absl::InternalError("cannot create " + log_dir + ": " + ec.message());

  v1::RunPodSandboxRequest sandbox_req =
      SandboxRequest(pool, entry_id, template_hash, cgroup_path, log_dir);
  // network = "late": through the handler with the placeholder network.
  if (UsesLateNetwork(pool)) sandbox_req.set_runtime_handler(late_handler);
  v1::RunPodSandboxResponse sandbox;
  if (absl::Status s = runtime_->RunPodSandbox(sandbox_req, &sandbox); !s.ok()) return s;
  objects_->AddSandbox(sandbox.pod_sandbox_id());
  {
    std::lock_guard<std::mutex> lock(mu_);
    entries_.at(entry_id).info.sandbox_id = sandbox.pod_sandbox_id();
  }

  v1::PodSandboxStatusResponse status;
  if (absl::Status s = runtime_->PodSandboxStatus(sandbox.pod_sandbox_id(), &status); !s.ok()) {
    return s;
  }
  std::string ip = status.status().network().ip();
  if (pool.sandbox.namespaces.network == NamespaceMode::kNode || ip.empty()) ip = "127.0.0.1";
  {
    std::lock_guard<std::mutex> lock(mu_);
    entries_.at(entry_id).info.pod_ip = ip;
  }
  // A late-network entry is reachable only on its own loopback.
  auto probe_at = ProbeTarget(pool, sandbox.pod_sandbox_id(), ip, runtime_);
  if (!probe_at.ok()) return probe_at.status();

  std::vector<std::string> container_ids;
  for (size_t i = 0; i < pool.containers.size(); ++i) {
    if (stopping()) return aborted();
    v1::CreateContainerResponse created;
    absl::Status s = runtime_->CreateContainer(
        ContainerRequest(pool, pool.containers[i], entry_id, sandbox.pod_sandbox_id(),
                         image_refs[i], sandbox_req.config()),
        &created);
    if (!s.ok()) return s;
    objects_->AddContainer(created.container_id());
    container_ids.push_back(created.container_id());
    {
      std::lock_guard<std::mutex> lock(mu_);
      entries_.at(entry_id).info.container_ids = container_ids;
    }
    if (s = runtime_->StartContainer(created.container_id()); !s.ok()) return s;
  }
  if (!container_ids.empty()) {
    v1::ContainerFilter filter;
    filter.set_pod_sandbox_id(sandbox.pod_sandbox_id());
    v1::ListContainersResponse listed;
    if (absl::Status s = runtime_->ListContainers(filter, &listed); !s.ok()) return s;
    auto prestarted = PrestartedOf(runtime_, listed);
    if (!prestarted.ok()) return prestarted.status();
    std::lock_guard<std::mutex> lock(mu_);
    entries_.at(entry_id).info.prestarted = std::move(*prestarted);
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    Transition(entries_.at(entry_id), EntryState::kWarming);
  }

  // Readiness: poll every container's check until it passes; a container that
  // exits during init fails the entry at once (no waiting out the timeout).
  for (size_t i = 0; i < pool.containers.size(); ++i) {
    const ContainerTemplate& t = pool.containers[i];
    const auto deadline = Clock::now() + t.ready.timeout;
    auto interval = 20ms;
    absl::Status last;
    for (;;) {
      if (stopping()) return aborted();
      last = ProbeOnce(t.ready, probe_at->ip, container_ids[i], runtime_, 1s, probe_at->netns);
      if (last.ok()) break;
      v1::ContainerStatusResponse cs;
      if (runtime_->ContainerStatus(container_ids[i], &cs).ok() &&
          cs.status().state() == v1::CONTAINER_EXITED) {
        return absl::FailedPreconditionError(
            "container " + t.name + " exited with code " + std::to_string(cs.status().exit_code()) +
            " during init" +
            (cs.status().reason().empty() ? "" : " (" + cs.status().reason() + ")"));
      }
      if (Clock::now() >= deadline) {
        return absl::DeadlineExceededError("container " + t.name + " not ready after " +
                                           std::to_string(t.ready.timeout.count()) +
                                           "ms: " + std::string(last.message()));
      }
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_for(lock, interval, [this] { return stopping_; });
      interval = std::min<std::chrono::milliseconds>(interval * 2, 250ms);
    }
  }

  if (absl::Status s = cgroups_->Freeze(cgroup_path); !s.ok()) return s;
  auto frozen = cgroups_->IsFrozen(cgroup_path);
  if (!frozen.ok() || !*frozen) {
    return absl::InternalError("freeze of " + cgroup_path + " did not hold");
  }
  auto memory = cgroups_->MemoryUsage(cgroup_path);
  std::lock_guard<std::mutex> lock(mu_);
  Entry& e = entries_.at(entry_id);
  if (memory.ok()) e.info.memory_bytes = *memory;
  Transition(e, EntryState::kFrozen);
  return absl::OkStatus();
}

// ----------------------------------------------------------- destruction --

void PoolManager::DestroyLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait(lock, [this] { return !destroy_queue_.empty() || (stopping_ && creating_now_ == 0); });
    if (destroy_queue_.empty()) return;  // stopping and nothing left to destroy
    const std::string id = destroy_queue_.front();
    destroy_queue_.pop_front();
    auto it = entries_.find(id);
    if (it == entries_.end()) continue;
    Entry copy = it->second;
    lock.unlock();
    DestroyNow(copy);
    lock.lock();
    cv_.notify_all();
  }
}

void PoolManager::DestroyNow(const Entry& entry) {
  // Frozen tasks cannot die (v1 keeps a SIGKILL pending until thawed).
  absl::Status thawed = cgroups_->Thaw(entry.cgroup_path);
  if (!IgnorableNotFound(thawed)) {
    spdlog::warn("entry {}: thaw before removal: {}", entry.info.id, thawed.message());
  }
  bool ok = true;
  if (!entry.info.sandbox_id.empty()) {
    absl::Status s = runtime_->StopPodSandbox(entry.info.sandbox_id);
    if (s.ok() || absl::IsNotFound(s)) s = runtime_->RemovePodSandbox(entry.info.sandbox_id);
    if (!IgnorableNotFound(s)) {
      ok = false;
      spdlog::warn("entry {}: removing sandbox {}: {}", entry.info.id,
                   entry.info.sandbox_id.substr(0, 13), s.message());
    }
  }
  // The shim may take a moment to leave the cgroup after RemovePodSandbox.
  absl::Status removed;
  const auto deadline = Clock::now() + 10s;
  for (auto wait = 10ms;; wait = std::min<std::chrono::milliseconds>(wait * 2, 200ms)) {
    removed = cgroups_->RemoveTree(entry.cgroup_path);
    if (removed.ok() || Clock::now() >= deadline) break;
    std::this_thread::sleep_for(wait);
  }
  if (!removed.ok()) {
    ok = false;
    spdlog::warn("entry {}: removing cgroup {}: {}", entry.info.id, entry.cgroup_path,
                 removed.message());
  }
  std::string state_dir;
  {
    std::lock_guard<std::mutex> lock(mu_);
    state_dir = daemon_.state_dir;
  }
  std::error_code ec;
  std::filesystem::remove_all(state_dir + "/pool-logs/" + entry.info.id, ec);

  std::lock_guard<std::mutex> lock(mu_);
  if (!ok) {
    // Keep the record: the next health check finds the sandbox again by its
    // labels and retries; nothing is forgotten while it still exists.
    auto it = entries_.find(entry.info.id);
    if (it != entries_.end()) it->second.destroy_queued = false;
    return;
  }
  objects_->Remove(entry.info.sandbox_id);
  for (const auto& c : entry.info.container_ids) objects_->Remove(c);
  entries_.erase(entry.info.id);
  spdlog::debug("pool {}: entry {} removed", entry.info.pool, entry.info.id);
}

// ------------------------------------------------- health and recovery --

absl::Status PoolManager::Recover(const v1::PodSandbox& sandbox) {
  const auto& labels = sandbox.labels();
  const std::string id = labels.count(kLabelEntry) ? labels.at(kLabelEntry) : "";
  const std::string pool_name = labels.count(kLabelPool) ? labels.at(kLabelPool) : "";
  PoolConfig pool;
  std::string cgroup_path;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = pools_.find(pool_name);
    if (it == pools_.end() || it->second.draining) {
      return absl::NotFoundError("its pool is not configured");
    }
    if (labels.count(kLabelTemplate) == 0 ||
        labels.at(kLabelTemplate) != it->second.template_hash) {
      return absl::FailedPreconditionError("made from an older template");
    }
    pool = it->second.config;
    cgroup_path = EntryDirLocked(pool_name, id);
  }
  if (sandbox.state() != v1::SANDBOX_READY) return absl::UnavailableError("sandbox not ready");
  auto frozen = cgroups_->IsFrozen(cgroup_path);
  if (!frozen.ok() || !*frozen) {
    return absl::FailedPreconditionError("not frozen (it was still being made)");
  }
  v1::ContainerFilter filter;
  filter.set_pod_sandbox_id(sandbox.id());
  v1::ListContainersResponse containers;
  if (absl::Status s = runtime_->ListContainers(filter, &containers); !s.ok()) return s;
  std::map<std::string, std::string> by_name;  // template name -> container id
  for (const auto& c : containers.containers()) {
    if (c.state() != v1::CONTAINER_RUNNING) {
      return absl::FailedPreconditionError("container " + c.metadata().name() + " not running");
    }
    by_name[c.metadata().name()] = c.id();
  }
  if (by_name.size() != pool.containers.size()) {
    return absl::FailedPreconditionError("has " + std::to_string(by_name.size()) +
                                         " containers, its template " +
                                         std::to_string(pool.containers.size()));
  }
  v1::PodSandboxStatusResponse status;
  if (absl::Status s = runtime_->PodSandboxStatus(sandbox.id(), &status); !s.ok()) return s;
  std::string ip = status.status().network().ip();
  if (pool.sandbox.namespaces.network == NamespaceMode::kNode || ip.empty()) ip = "127.0.0.1";
  auto probe_at = ProbeTarget(pool, sandbox.id(), ip, runtime_);
  if (!probe_at.ok()) return probe_at.status();

  // Still healthy? Thaw, probe, freeze again.
  if (absl::Status s = cgroups_->Thaw(cgroup_path); !s.ok()) return s;
  std::vector<std::string> ids;
  for (const ContainerTemplate& t : pool.containers) {
    const std::string& cid = by_name[t.name];
    ids.push_back(cid);
    absl::Status probe;
    const auto deadline = Clock::now() + 5s;
    do {
      probe = ProbeOnce(t.ready, probe_at->ip, cid, runtime_, 1s, probe_at->netns);
      if (!probe.ok()) std::this_thread::sleep_for(50ms);
    } while (!probe.ok() && Clock::now() < deadline);
    if (!probe.ok())
      return absl::UnavailableError("fails readiness: " + std::string(probe.message()));
  }
  if (absl::Status s = cgroups_->Freeze(cgroup_path); !s.ok()) return s;

  objects_->AddSandbox(sandbox.id());
  for (const auto& c : ids) objects_->AddContainer(c);
  auto prestarted = PrestartedOf(runtime_, containers);
  if (!prestarted.ok()) return prestarted.status();
  auto memory = cgroups_->MemoryUsage(cgroup_path);
  std::lock_guard<std::mutex> lock(mu_);
  Entry e;
  e.info.id = id;
  e.info.pool = pool_name;
  e.info.sandbox_id = sandbox.id();
  e.info.container_ids = ids;
  e.info.prestarted = std::move(*prestarted);
  e.info.pod_ip = ip;
  e.info.created_at =
      std::chrono::system_clock::time_point(std::chrono::nanoseconds(sandbox.created_at()));
  e.info.memory_bytes = memory.ok() ? *memory : 0;
  e.cgroup_path = cgroup_path;
  e.template_hash = labels.at(kLabelTemplate);
  Transition(e, EntryState::kFrozen);
  entries_[id] = e;
  return absl::OkStatus();
}

void PoolManager::HealthCheck(bool recovering) {
  v1::PodSandboxFilter filter;
  (*filter.mutable_label_selector())[kLabelManaged] = "true";
  v1::ListPodSandboxResponse listed;
  if (absl::Status s = runtime_->ListPodSandbox(filter, &listed); !s.ok()) {
    spdlog::warn("pool health check: cannot list sandboxes: {}", s.message());
    return;
  }
  std::set<std::string> seen_entries;
  for (const v1::PodSandbox& sb : listed.items()) {
    const auto& labels = sb.labels();
    if (labels.count(kLabelEntry) == 0 || labels.count(kLabelPool) == 0) continue;
    const std::string id = labels.at(kLabelEntry);
    seen_entries.insert(id);
    if (objects_->Adopted(sb.id()) != nullptr) continue;  // a pod's now, not the pool's
    bool known = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = entries_.find(id);
      if (it != entries_.end()) {
        known = true;
        Entry& e = it->second;
        if (e.info.sandbox_id.empty()) e.info.sandbox_id = sb.id();
        if (e.info.state == EntryState::kFrozen && sb.state() != v1::SANDBOX_READY) {
          FailLocked(id, "its sandbox stopped while frozen");
        }
      }
    }
    if (known) continue;
    absl::Status kept = recovering ? Recover(sb) : absl::NotFoundError("not made by this run");
    if (kept.ok()) {
      spdlog::info("pool {}: recovered frozen entry {} (sandbox {})", labels.at(kLabelPool), id,
                   sb.id().substr(0, 13));
      continue;
    }
    // Half-made, stale, broken, or left by a crash: remove it.
    spdlog::info("pool {}: removing leftover entry {} (sandbox {}): {}", labels.at(kLabelPool), id,
                 sb.id().substr(0, 13), kept.message());
    Entry e;
    e.info.id = id;
    e.info.pool = labels.at(kLabelPool);
    e.info.sandbox_id = sb.id();
    {
      std::lock_guard<std::mutex> lock(mu_);
      e.cgroup_path = EntryDirLocked(e.info.pool, id);
    }
    objects_->AddSandbox(sb.id());
    DestroyNow(e);
  }

  std::lock_guard<std::mutex> lock(mu_);
  // Entries whose sandbox vanished (removed behind warmpool's back, or lost
  // in a containerd restart that did not keep it).
  for (auto& [id, e] : entries_) {
    if (e.info.state == EntryState::kFrozen && !e.info.sandbox_id.empty() &&
        seen_entries.count(id) == 0) {
      FailLocked(id, "its sandbox disappeared");
    }
  }
  if (recovering) {
    // Entry cgroups with no sandbox: left by a crash between removal steps.
    std::vector<std::pair<std::string, std::string>> orphans;
    for (const auto& [name, pool] : pools_) {
      (void)pool;
      const std::string dir = PoolDirLocked(name);
      for (const std::string& child : cgroups_->Children(dir)) {
        const std::string id = IsSystemdSlice(child) ? EntryIdOfSlice(child) : child;
        if (entries_.count(id) == 0 && seen_entries.count(id) == 0) {
          orphans.emplace_back(name, dir + "/" + child);
        }
      }
    }
    for (const auto& [name, path] : orphans) {
      absl::Status s = cgroups_->RemoveTree(path);
      spdlog::info("pool {}: removed leftover cgroup {}{}", name, path,
                   s.ok() ? "" : ": " + std::string(s.message()));
    }
    // Log directories of entries with no sandbox: made by a creation that a
    // crash cut short before its RunPodSandbox (or whose sandbox is gone).
    // An adopted pod's entry is in seen_entries: its logs are kubelet's now.
    std::error_code ec;
    const std::filesystem::path logs = std::filesystem::path(daemon_.state_dir) / "pool-logs";
    std::vector<std::filesystem::path> stale;
    for (const auto& d : std::filesystem::directory_iterator(logs, ec)) {
      const std::string id = d.path().filename().string();
      if (entries_.count(id) == 0 && seen_entries.count(id) == 0) stale.push_back(d.path());
    }
    for (const auto& path : stale) {
      std::filesystem::remove_all(path, ec);
      spdlog::info("pools: removed leftover log directory {}{}", path.string(),
                   ec ? ": " + ec.message() : "");
    }
  }
}

void PoolManager::RefreshImages() {
  std::set<std::string> images;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [name, pool] : pools_) {
      if (pool.draining) continue;
      for (const auto& c : pool.config.containers) images.insert(c.image);
    }
  }
  // The sandbox (pause) image too: pool sandboxes are hidden, so kubelet may
  // see no user of it. containerd names it in its verbose status config.
  if (!images.empty() || !PoolConfigs().empty()) {
    v1::StatusResponse status;
    if (runtime_->Status(/*verbose=*/true, &status).ok() && status.info().count("config")) {
      auto config = nlohmann::json::parse(status.info().at("config"), nullptr, false);
      if (config.is_object() && config.contains("sandboxImage") &&
          config["sandboxImage"].is_string()) {
        images.insert(config["sandboxImage"].get<std::string>());
      }
    }
  }
  std::set<std::string> ids;
  for (const std::string& image : images) {
    v1::ImageStatusResponse st;
    absl::Status s = runtime_->ImageStatus(image, &st);
    if (s.ok() && !st.has_image()) {
      // Gone (removed by hand, or by a GC that did not see the pin): pull it
      // again so the pool can refill.
      v1::PullImageResponse pulled;
      s = runtime_->PullImage(image, &pulled);
      if (s.ok()) {
        spdlog::info("pool image {} was missing; pulled it again", image);
        s = runtime_->ImageStatus(image, &st);
      } else {
        spdlog::warn("pool image {} is missing and cannot be pulled: {}", image, s.message());
      }
    }
    if (s.ok() && st.has_image()) ids.insert(st.image().id());
  }
  objects_->SetPinnedImages(std::move(ids));
}

// ------------------------------------------------------------- hand-off --

std::optional<PoolManager::Claimed> PoolManager::Claim(const std::string& pool_name) {
  std::lock_guard<std::mutex> lock(mu_);
  auto pit = pools_.find(pool_name);
  if (pit == pools_.end() || pit->second.draining || pit->second.held || daemon_.passthrough) {
    return std::nullopt;
  }
  Entry* best = nullptr;
  for (auto& [id, e] : entries_) {
    if (e.info.pool != pool_name || e.info.state != EntryState::kFrozen ||
        e.template_hash != pit->second.template_hash || e.destroy_queued) {
      continue;
    }
    if (best == nullptr || e.info.created_at < best->info.created_at) best = &e;
  }
  if (best == nullptr) return std::nullopt;
  Claimed claimed{best->info, best->cgroup_path, best->template_hash};
  claimed.info.state = EntryState::kAdopted;
  entries_.erase(best->info.id);
  pit->second.hits++;
  // The refill waits out daemon.refill_delay, counted from the first claim
  // of a run of claims, so a stream of pods cannot postpone it for good.
  const auto now = Clock::now();
  if (now >= refill_hold_until_) refill_hold_until_ = now + daemon_.refill_delay;
  cv_.notify_all();  // refill
  return claimed;
}

void PoolManager::DestroyClaimed(const Claimed& claimed) {
  Entry e;
  e.info = claimed.info;
  e.cgroup_path = claimed.cgroup_path;
  DestroyNow(e);
}

std::string PoolManager::EntryLogDir(const std::string& entry_id) {
  std::string state_dir;
  {
    std::lock_guard<std::mutex> lock(mu_);
    state_dir = daemon_.state_dir;
  }
  return state_dir + "/pool-logs/" + entry_id;
}

std::string PoolManager::EntryCgroupPath(const std::string& pool, const std::string& entry_id) {
  std::lock_guard<std::mutex> lock(mu_);
  return EntryDirLocked(pool, entry_id);
}

std::vector<PoolConfig> PoolManager::PoolConfigs() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<PoolConfig> out;
  for (const auto& [name, pool] : pools_) {
    if (!pool.draining) out.push_back(pool.config);
  }
  return out;
}

bool PoolManager::passthrough() {
  std::lock_guard<std::mutex> lock(mu_);
  return daemon_.passthrough;
}

// ------------------------------------------------------------ reporting --

std::vector<PoolStatus> PoolManager::Pools() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<PoolStatus> out;
  for (const auto& [name, pool] : pools_) out.push_back(StatusLocked(name, pool));
  return out;
}

PoolStatus PoolManager::StatusLocked(const std::string& name, const Pool& pool) const {
  PoolStatus ps;
  ps.name = name;
  ps.target = daemon_.passthrough ? 0 : pool.config.size;
  ps.failures = pool.failures;
  ps.hits = pool.hits;
  ps.last_error = pool.last_error;
  ps.backoff = pool.retry_at > Clock::now() ? pool.backoff : 0ms;
  ps.draining = pool.draining;
  ps.drained = pool.held;
  ps.adopted = objects_->AdoptedCount(name);
  for (const auto& [id, e] : entries_) {
    if (e.info.pool != name) continue;
    switch (e.info.state) {
      case EntryState::kCreating:
        ps.creating++;
        break;
      case EntryState::kWarming:
        ps.warming++;
        break;
      case EntryState::kFrozen:
        ps.frozen++;
        ps.memory_bytes += e.info.memory_bytes;
        break;
      case EntryState::kAdopted:  // counted from the adopted records above
      case EntryState::kDestroying:
        break;
    }
  }
  return ps;
}

std::vector<EntryInfo> PoolManager::Entries() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<EntryInfo> out;
  for (const auto& [id, e] : entries_) out.push_back(e.info);
  return out;
}

// ------------------------------------------------------- drain and fill --

absl::StatusOr<PoolStatus> PoolManager::Drain(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = pools_.find(name);
  if (it == pools_.end()) return absl::NotFoundError("no pool named '" + name + "'");
  Pool& pool = it->second;
  if (!pool.held) {
    pool.held = true;
    SaveHeldLocked();
    int frozen = 0;
    for (const auto& [id, e] : entries_) {
      if (e.info.pool == name && e.info.state == EntryState::kFrozen) frozen++;
    }
    spdlog::info(
        "pool {}: drained by warmpoolctl: removing its {} frozen entries; no refills until "
        "warmpoolctl fill {}",
        name, frozen, name);
  }
  cv_.notify_all();  // the reconciler destroys the frozen entries as surplus
  return StatusLocked(name, pool);
}

absl::StatusOr<PoolStatus> PoolManager::Fill(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = pools_.find(name);
  if (it == pools_.end()) return absl::NotFoundError("no pool named '" + name + "'");
  Pool& pool = it->second;
  if (pool.draining) {
    return absl::FailedPreconditionError("pool '" + name +
                                         "' was removed from the config and is being drained; "
                                         "add it back to the config and reload to fill it");
  }
  const bool was_held = pool.held;
  pool.held = false;
  pool.consecutive_failures = 0;
  pool.backoff = 0ms;
  pool.retry_at = {};
  if (was_held) SaveHeldLocked();
  spdlog::info("pool {}: fill requested by warmpoolctl{}; refilling to {}", name,
               was_held ? " (drain undone)" : "", pool.config.size);
  cv_.notify_all();
  return StatusLocked(name, pool);
}

std::string PoolManager::EmptyReason(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = pools_.find(name);
  if (it == pools_.end()) return "pool " + name + " is not configured";
  const Pool& pool = it->second;
  if (daemon_.passthrough) return "pools are off (daemon.passthrough = true)";
  if (pool.held) {
    return "pool " + name + " is drained (warmpoolctl drain); warmpoolctl fill " + name +
           " refills it";
  }
  if (pool.draining) return "pool " + name + " was removed from the config";
  const PoolStatus ps = StatusLocked(name, pool);
  std::string why = "no frozen entry left (target " + std::to_string(ps.target) + ", " +
                    std::to_string(ps.warming) + " warming, " + std::to_string(ps.creating) +
                    " creating)";
  if (ps.backoff.count() > 0) {
    why += "; retrying in " + std::to_string(ps.backoff.count()) +
           "ms after a failure: " + pool.last_error;
  } else if (BudgetUsedLocked() + pool.memory_estimate > daemon_.memory_budget_bytes) {
    why += "; the memory budget (" + HumanBytes(daemon_.memory_budget_bytes) + ") is reached";
  }
  return why;
}

void PoolManager::SaveHeldLocked() const {
  std::string text;
  for (const auto& [name, pool] : pools_) {
    if (pool.held) text += name + "\n";
  }
  const std::string path = daemon_.state_dir + "/drained-pools";
  std::error_code ec;
  std::filesystem::create_directories(daemon_.state_dir, ec);
  const std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "w");
  bool ok = f != nullptr && std::fwrite(text.data(), 1, text.size(), f) == text.size();
  if (f != nullptr) ok = std::fclose(f) == 0 && ok;
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    spdlog::warn("cannot save {}: {}; a restart forgets which pools are drained", path,
                 std::strerror(errno));
  }
}

void PoolManager::LoadHeldLocked() {
  FILE* f = std::fopen((daemon_.state_dir + "/drained-pools").c_str(), "r");
  if (f == nullptr) return;
  char line[256];
  while (std::fgets(line, sizeof(line), f) != nullptr) {
    std::string name(line);
    while (!name.empty() && (name.back() == '\n' || name.back() == '\r')) name.pop_back();
    auto it = pools_.find(name);
    if (it == pools_.end() || it->second.held) continue;
    it->second.held = true;
    spdlog::info(
        "pool {}: stays drained (warmpoolctl drain before the restart); warmpoolctl "
        "fill {} refills it",
        name, name);
  }
  std::fclose(f);
}

}  // namespace warmpool
