// The pool state machine against an in-memory runtime and cgroups (error
// injection, no kernel): filling, priority, back-off, the memory budget,
// resize, drain, template changes and restart recovery. The same behaviour
// against the real containerd and kernel is in test/integration/pools_test.

#include "daemon/pool_manager.h"

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <thread>

namespace warmpool {
namespace {

using namespace std::chrono_literals;

// containerd, as far as the pool manager uses it.
class FakeRuntime final : public RuntimeClient {
 public:
  std::atomic<bool> fail_run{false};
  std::atomic<int> run_calls{0};

  absl::Status RunPodSandbox(const v1::RunPodSandboxRequest& req,
                             v1::RunPodSandboxResponse* resp) override {
    run_calls++;
    if (fail_run) return absl::UnavailableError("injected RunPodSandbox failure");
    std::lock_guard<std::mutex> lock(mu_);
    const std::string id = "sb" + std::to_string(next_++);
    v1::PodSandbox sb;
    sb.set_id(id);
    sb.set_state(v1::SANDBOX_READY);
    *sb.mutable_labels() = req.config().labels();
    *sb.mutable_metadata() = req.config().metadata();
    sandboxes_[id] = sb;
    resp->set_pod_sandbox_id(id);
    return absl::OkStatus();
  }
  absl::Status StopPodSandbox(const std::string& id) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (!sandboxes_.count(id)) return absl::NotFoundError("no sandbox " + id);
    sandboxes_[id].set_state(v1::SANDBOX_NOTREADY);
    return absl::OkStatus();
  }
  absl::Status RemovePodSandbox(const std::string& id) override {
    std::lock_guard<std::mutex> lock(mu_);
    sandboxes_.erase(id);
    for (auto it = containers_.begin(); it != containers_.end();) {
      it = it->second.pod_sandbox_id() == id ? containers_.erase(it) : std::next(it);
    }
    return absl::OkStatus();
  }
  absl::Status PodSandboxStatus(const std::string& id,
                                v1::PodSandboxStatusResponse* resp) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (!sandboxes_.count(id)) return absl::NotFoundError("no sandbox " + id);
    resp->mutable_status()->set_id(id);
    resp->mutable_status()->mutable_network()->set_ip("10.0.0.1");
    return absl::OkStatus();
  }
  absl::Status ListPodSandbox(const v1::PodSandboxFilter& filter,
                              v1::ListPodSandboxResponse* resp) override {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [id, sb] : sandboxes_) {
      bool match = true;
      for (const auto& [k, v] : filter.label_selector()) {
        match &= sb.labels().count(k) && sb.labels().at(k) == v;
      }
      if (match) *resp->add_items() = sb;
    }
    return absl::OkStatus();
  }
  absl::Status CreateContainer(const v1::CreateContainerRequest& req,
                               v1::CreateContainerResponse* resp) override {
    std::lock_guard<std::mutex> lock(mu_);
    const std::string id = "c" + std::to_string(next_++);
    v1::Container c;
    c.set_id(id);
    c.set_pod_sandbox_id(req.pod_sandbox_id());
    *c.mutable_metadata() = req.config().metadata();
    c.set_state(v1::CONTAINER_CREATED);
    containers_[id] = c;
    resp->set_container_id(id);
    return absl::OkStatus();
  }
  absl::Status StartContainer(const std::string& id) override {
    std::lock_guard<std::mutex> lock(mu_);
    containers_[id].set_state(v1::CONTAINER_RUNNING);
    return absl::OkStatus();
  }
  absl::Status ContainerStatus(const std::string& id, v1::ContainerStatusResponse* resp) override {
    std::lock_guard<std::mutex> lock(mu_);
    resp->mutable_status()->set_state(containers_[id].state());
    return absl::OkStatus();
  }
  absl::Status ListContainers(const v1::ContainerFilter& filter,
                              v1::ListContainersResponse* resp) override {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [id, c] : containers_) {
      if (filter.pod_sandbox_id().empty() || c.pod_sandbox_id() == filter.pod_sandbox_id()) {
        *resp->add_containers() = c;
      }
    }
    return absl::OkStatus();
  }
  absl::Status ExecSync(const std::string&, const std::vector<std::string>&, std::chrono::seconds,
                        v1::ExecSyncResponse* resp) override {
    resp->set_exit_code(0);
    return absl::OkStatus();
  }
  absl::Status ImageStatus(const std::string& image, v1::ImageStatusResponse* resp) override {
    resp->mutable_image()->set_id("sha256:" + image);
    return absl::OkStatus();
  }
  absl::Status PullImage(const std::string& image, v1::PullImageResponse* resp) override {
    resp->set_image_ref("sha256:" + image);
    return absl::OkStatus();
  }

  size_t sandbox_count() {
    std::lock_guard<std::mutex> lock(mu_);
    return sandboxes_.size();
  }
  // A sandbox left by an earlier run (restart recovery).
  void AddExisting(const std::string& id, const std::map<std::string, std::string>& labels) {
    std::lock_guard<std::mutex> lock(mu_);
    v1::PodSandbox sb;
    sb.set_id(id);
    sb.set_state(v1::SANDBOX_READY);
    for (const auto& [k, v] : labels) (*sb.mutable_labels())[k] = v;
    sandboxes_[id] = sb;
  }
  bool HasSandbox(const std::string& id) {
    std::lock_guard<std::mutex> lock(mu_);
    return sandboxes_.count(id) != 0;
  }

 private:
  std::mutex mu_;
  int next_ = 0;
  std::map<std::string, v1::PodSandbox> sandboxes_;
  std::map<std::string, v1::Container> containers_;
};

class FakeCgroups final : public EntryCgroups {
 public:
  uint64_t memory_per_entry = 1000;

  absl::Status Freeze(const std::string& path) override {
    std::lock_guard<std::mutex> lock(mu_);
    frozen_.insert(path);
    return absl::OkStatus();
  }
  absl::Status Thaw(const std::string& path) override {
    std::lock_guard<std::mutex> lock(mu_);
    frozen_.erase(path);
    return absl::OkStatus();
  }
  absl::StatusOr<bool> IsFrozen(const std::string& path) override {
    std::lock_guard<std::mutex> lock(mu_);
    return frozen_.count(path) != 0;
  }
  absl::StatusOr<uint64_t> MemoryUsage(const std::string&) override { return memory_per_entry; }
  absl::Status RemoveTree(const std::string& path) override {
    std::lock_guard<std::mutex> lock(mu_);
    removed_.insert(path);
    return absl::OkStatus();
  }
  std::vector<std::string> Children(const std::string&) override { return {}; }

  size_t frozen_count() {
    std::lock_guard<std::mutex> lock(mu_);
    return frozen_.size();
  }
  void MarkFrozen(const std::string& path) {
    std::lock_guard<std::mutex> lock(mu_);
    frozen_.insert(path);
  }

 private:
  std::mutex mu_;
  std::set<std::string> frozen_;
  std::set<std::string> removed_;
};

PoolConfig SandboxPool(const std::string& name, int size) {
  PoolConfig p;
  p.name = name;
  p.size = size;
  return p;
}

class PoolManagerTest : public ::testing::Test {
 protected:
  PoolManagerTest() {
    options_.health_interval = 50ms;
    options_.backoff_initial = 20ms;
    options_.backoff_max = 160ms;
    config_.daemon.state_dir = ::testing::TempDir() + "/wp-pm-" + std::to_string(getpid());
    config_.daemon.pool_cgroup_parent = "/wp";
  }

  ~PoolManagerTest() override {
    manager_.reset();  // stops its threads before their state dir goes
    std::error_code ec;
    std::filesystem::remove_all(config_.daemon.state_dir, ec);
  }

  void StartManager() {
    manager_ = std::make_unique<PoolManager>(&runtime_, &cgroups_, &objects_, options_);
    ASSERT_TRUE(manager_->Start(config_).ok());
  }

  int Count(const std::string& pool, EntryState state) {
    int n = 0;
    for (const auto& e : manager_->Entries()) n += e.pool == pool && e.state == state;
    return n;
  }

  bool Eventually(const std::function<bool()>& cond, std::chrono::milliseconds timeout = 5s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (cond()) return true;
      std::this_thread::sleep_for(5ms);
    }
    return cond();
  }

  PoolManagerOptions options_;
  Config config_;
  FakeRuntime runtime_;
  FakeCgroups cgroups_;
  PoolObjects objects_;
  std::unique_ptr<PoolManager> manager_;
};

TEST_F(PoolManagerTest, FillsToTargetAndFreezesEachEntry) {
  config_.pools = {SandboxPool("a", 3)};
  StartManager();
  ASSERT_TRUE(Eventually([&] { return Count("a", EntryState::kFrozen) == 3; }));
  EXPECT_EQ(cgroups_.frozen_count(), 3u);
  EXPECT_EQ(runtime_.sandbox_count(), 3u);
  for (const auto& e : manager_->Entries()) {
    EXPECT_TRUE(objects_.Contains(e.sandbox_id)) << "pool sandbox not hidden from kubelet";
  }
  // Full: no further creations.
  const int calls = runtime_.run_calls;
  std::this_thread::sleep_for(150ms);
  EXPECT_EQ(runtime_.run_calls, calls);
}

TEST_F(PoolManagerTest, RefillWaitsOutTheRefillDelayAfterAClaim) {
  config_.daemon.refill_delay = 400ms;
  config_.pools = {SandboxPool("a", 1)};
  StartManager();
  ASSERT_TRUE(Eventually([&] { return Count("a", EntryState::kFrozen) == 1; }));
  const int calls = runtime_.run_calls;
  const auto claimed_at = std::chrono::steady_clock::now();
  ASSERT_TRUE(manager_->Claim("a").has_value());
  // The hand-off has the node to itself for refill_delay.
  std::this_thread::sleep_for(250ms);
  EXPECT_EQ(runtime_.run_calls, calls) << "a replacement started during the hand-off";
  ASSERT_TRUE(Eventually([&] { return Count("a", EntryState::kFrozen) == 1; }));
  EXPECT_GE(std::chrono::steady_clock::now() - claimed_at, 400ms);
  EXPECT_EQ(runtime_.run_calls, calls + 1);
}

TEST_F(PoolManagerTest, PoolFurthestBelowTargetFillsFirst) {
  config_.daemon.max_concurrent_creates = 1;
  config_.pools = {SandboxPool("small", 1), SandboxPool("big", 3)};
  StartManager();
  ASSERT_TRUE(Eventually([&] {
    return Count("small", EntryState::kFrozen) == 1 && Count("big", EntryState::kFrozen) == 3;
  }));
  // Deficits 1 and 3: big goes first until both are 1 short, so big's first
  // two entries are older than small's.
  std::vector<EntryInfo> entries = manager_->Entries();
  std::sort(entries.begin(), entries.end(),
            [](const EntryInfo& a, const EntryInfo& b) { return a.created_at < b.created_at; });
  EXPECT_EQ(entries[0].pool, "big");
  EXPECT_EQ(entries[1].pool, "big");
}

TEST_F(PoolManagerTest, FailuresBackOffExponentiallyAndLeaveNothing) {
  runtime_.fail_run = true;
  config_.daemon.max_concurrent_creates = 1;
  config_.pools = {SandboxPool("a", 2)};
  StartManager();
  // Back-off 20, 40, 80, 160 ms: the fourth try cannot come before 140 ms
  // (20 + 40 + 80) have passed, however fast or loaded the machine is.
  const auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(Eventually([&] { return runtime_.run_calls >= 4; }));
  EXPECT_GE(std::chrono::steady_clock::now() - start, 140ms) << "no back-off between tries";
  runtime_.fail_run = false;  // stop failing before counting what is left
  const int tries = runtime_.run_calls;
  EXPECT_GE(tries, 4);
  auto pools = manager_->Pools();
  ASSERT_EQ(pools.size(), 1u);
  EXPECT_GE(pools[0].failures, static_cast<uint64_t>(tries) - 1);  // one may be in flight
  EXPECT_NE(pools[0].last_error.find("injected RunPodSandbox failure"), std::string::npos);
  // Recovery resets the back-off, and no failed try left a sandbox.
  ASSERT_TRUE(Eventually([&] { return Count("a", EntryState::kFrozen) == 2; }));
  EXPECT_EQ(manager_->Pools()[0].backoff, 0ms);
  EXPECT_EQ(runtime_.sandbox_count(), 2u);
}

TEST_F(PoolManagerTest, MemoryBudgetCapsFrozenEntries) {
  cgroups_.memory_per_entry = 100;
  config_.daemon.memory_budget_bytes = 250;
  config_.daemon.max_concurrent_creates = 1;
  config_.pools = {SandboxPool("a", 10)};
  StartManager();
  ASSERT_TRUE(Eventually([&] { return Count("a", EntryState::kFrozen) == 2; }));
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(Count("a", EntryState::kFrozen), 2) << "a third entry would pass the budget";
  EXPECT_EQ(manager_->Pools()[0].memory_bytes, 200u);
}

TEST_F(PoolManagerTest, ReloadGrowsShrinksAndDrains) {
  config_.pools = {SandboxPool("a", 2)};
  StartManager();
  ASSERT_TRUE(Eventually([&] { return Count("a", EntryState::kFrozen) == 2; }));
  config_.pools = {SandboxPool("a", 4)};
  manager_->ApplyConfig(config_);
  ASSERT_TRUE(Eventually([&] { return Count("a", EntryState::kFrozen) == 4; }));
  config_.pools = {SandboxPool("a", 1)};
  manager_->ApplyConfig(config_);
  ASSERT_TRUE(Eventually([&] { return manager_->Entries().size() == 1; }));
  EXPECT_EQ(runtime_.sandbox_count(), 1u);
  config_.pools = {};
  manager_->ApplyConfig(config_);
  ASSERT_TRUE(Eventually([&] { return manager_->Pools().empty(); }));
  EXPECT_EQ(runtime_.sandbox_count(), 0u);
  EXPECT_TRUE(manager_->Entries().empty());
}

TEST_F(PoolManagerTest, ChangedTemplateReplacesEntries) {
  config_.pools = {SandboxPool("a", 2)};
  StartManager();
  ASSERT_TRUE(Eventually([&] { return Count("a", EntryState::kFrozen) == 2; }));
  std::set<std::string> old_ids;
  for (const auto& e : manager_->Entries()) old_ids.insert(e.id);
  config_.pools[0].sandbox.sysctls["net.core.somaxconn"] = "1024";
  manager_->ApplyConfig(config_);
  ASSERT_TRUE(Eventually([&] {
    auto entries = manager_->Entries();
    return entries.size() == 2 && std::none_of(entries.begin(), entries.end(), [&](auto& e) {
             return old_ids.count(e.id) || e.state != EntryState::kFrozen;
           });
  }));
  EXPECT_EQ(runtime_.sandbox_count(), 2u);
}

TEST_F(PoolManagerTest, PassthroughDrainsAndStopsFilling) {
  config_.pools = {SandboxPool("a", 2)};
  StartManager();
  ASSERT_TRUE(Eventually([&] { return Count("a", EntryState::kFrozen) == 2; }));
  config_.daemon.passthrough = true;
  manager_->ApplyConfig(config_);
  ASSERT_TRUE(Eventually([&] { return manager_->Entries().empty(); }));
  std::this_thread::sleep_for(150ms);
  EXPECT_EQ(runtime_.sandbox_count(), 0u);
}

TEST_F(PoolManagerTest, RestartKeepsFrozenEntriesAndRemovesTheRest) {
  config_.pools = {SandboxPool("a", 2)};
  const std::string hash = TemplateHash(config_.pools[0]);
  auto labels = [&](const std::string& entry, const std::string& h) {
    return std::map<std::string, std::string>{
        {kLabelManaged, "true"}, {kLabelPool, "a"}, {kLabelEntry, entry}, {kLabelTemplate, h}};
  };
  runtime_.AddExisting("keep", labels("e1", hash));
  cgroups_.MarkFrozen("/wp/a/e1");
  runtime_.AddExisting("halfmade", labels("e2", hash));  // never frozen
  runtime_.AddExisting("stale", labels("e3", "0000000000000000"));
  cgroups_.MarkFrozen("/wp/a/e3");
  StartManager();
  EXPECT_TRUE(runtime_.HasSandbox("keep"));
  EXPECT_FALSE(runtime_.HasSandbox("halfmade"));
  EXPECT_FALSE(runtime_.HasSandbox("stale"));
  ASSERT_TRUE(Eventually([&] { return Count("a", EntryState::kFrozen) == 2; }));
  bool kept = false;
  for (const auto& e : manager_->Entries()) kept |= e.id == "e1";
  EXPECT_TRUE(kept) << "the healthy frozen entry was recreated instead of recovered";
}

// A crash between an entry's log directory and its RunPodSandbox leaves
// the directory with no sandbox: recovery removes it, and keeps those of
// live entries and of adopted pods (their containers' logs are linked there).
TEST_F(PoolManagerTest, RestartRemovesLogDirectoriesOfEntriesWithoutSandbox) {
  config_.pools = {SandboxPool("a", 1)};
  const std::string hash = TemplateHash(config_.pools[0]);
  auto labels = [&](const std::string& entry) {
    return std::map<std::string, std::string>{
        {kLabelManaged, "true"}, {kLabelPool, "a"}, {kLabelEntry, entry}, {kLabelTemplate, hash}};
  };
  runtime_.AddExisting("keep", labels("e1"));
  cgroups_.MarkFrozen("/wp/a/e1");
  runtime_.AddExisting("adopted", labels("e2"));
  AdoptedView adopted;
  adopted.sandbox_id = "adopted";
  adopted.pool = "a";
  objects_.AddAdopted(adopted);
  const std::filesystem::path logs = std::filesystem::path(config_.daemon.state_dir) / "pool-logs";
  for (const char* id : {"e1", "e2", "cut-short"}) std::filesystem::create_directories(logs / id);
  StartManager();
  EXPECT_TRUE(std::filesystem::exists(logs / "e1"));
  EXPECT_TRUE(std::filesystem::exists(logs / "e2")) << "an adopted pod's logs went";
  EXPECT_FALSE(std::filesystem::exists(logs / "cut-short"));
}

TEST(TemplateHashTest, StableAndSensitive) {
  PoolConfig a = SandboxPool("a", 1);
  PoolConfig b = a;
  b.size = 7;  // size does not shape an entry
  EXPECT_EQ(TemplateHash(a), TemplateHash(b));
  b.sandbox.privileged = true;
  EXPECT_NE(TemplateHash(a), TemplateHash(b));
  ContainerTemplate c;
  c.name = "app";
  c.image = "img:1";
  a.containers = {c};
  PoolConfig d = a;
  d.containers[0].env["X"] = "1";
  EXPECT_NE(TemplateHash(a), TemplateHash(d));
  EXPECT_EQ(TemplateHash(a).size(), 16u);
}

}  // namespace
}  // namespace warmpool
