// Pools against a real containerd: they fill to target with frozen entries
// that use no CPU and answer nothing; kubelet never sees a pool object through
// warmpoold; SIGHUP grows, shrinks and drains; a crashing app backs off; kill
// -9 while filling, a warmpoold restart and a containerd restart leave the
// pool at target with nothing leaked.
//
// Needs the harness's environment (test/harness/containerd.sh start DIR;
// source DIR/env). Without WP_TEST_CONTAINERD_SOCK the tests skip, or fail
// when WP_TEST_REQUIRE_CONTAINERD=1. Run serially: ContainerdRestart restarts
// the bed's containerd under everything else.
//
// Every test's pools live under their own cgroup parent,
// $WP_TEST_CGROUP_PARENT/wp-<token>, and have their own names; TearDown
// removes every pool through a reload (and checks the drain), then falls back
// to removing what is left straight through containerd.

#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <sstream>

#include "test/integration/kubelet_driver.h"
#include "test/integration/pool_support.h"
#include "test/integration/test_bed.h"
#include "test/integration/warmpoold_process.h"

namespace warmpool::testing {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

constexpr int kAppPort = 8080;
constexpr auto kFillTimeout = 90s;
constexpr auto kDrainTimeout = 60s;

std::string Replace(std::string s, const std::string& from, const std::string& to) {
  for (size_t p = s.find(from); !from.empty() && p != std::string::npos;
       p = s.find(from, p + to.size())) {
    s.replace(p, from.size(), to);
  }
  return s;
}

std::string RandomId64() {
  std::mt19937_64 rng{std::random_device{}()};
  std::string out;
  for (int i = 0; i < 64; ++i) out += "0123456789abcdef"[rng() % 16];
  return out;
}

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool Full(const adminpb::PoolStatus& p, int n) {
  return p.frozen() == n && p.creating() == 0 && p.warming() == 0;
}

std::string Describe(const std::optional<adminpb::PoolStatus>& p) {
  return p ? p->ShortDebugString() : "(pool not listed)";
}

std::set<std::string> EntryIds(const std::vector<adminpb::Entry>& entries) {
  std::set<std::string> ids;
  for (const auto& e : entries) ids.insert(e.id());
  return ids;
}

std::string Label(const cri::PodSandbox& sb, const std::string& key) {
  auto it = sb.labels().find(key);
  return it == sb.labels().end() ? "" : it->second;
}

class PoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    WP_REQUIRE_TEST_BED(env_);
    ASSERT_FALSE(env_.app_image.empty()) << "WP_TEST_APP_IMAGE is not set";
    ASSERT_FALSE(env_.cgroup_parent.empty()) << "WP_TEST_CGROUP_PARENT is not set";
    char tmpl[] = "/tmp/wpp-XXXXXX";  // short: socket paths live inside it
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    token_ = KubeletDriver::UniqueToken();
    parent_ = env_.cgroup_parent + "/wp-" + token_;
    direct_ = cri::RuntimeService::NewStub(ConnectCri(env_.containerd_sock));
    direct_images_ = cri::ImageService::NewStub(ConnectCri(env_.containerd_sock));
  }

  void TearDown() override {
    for (auto& d : drivers_) EXPECT_EQ(d->Cleanup(), "") << "cleanup left pods behind";
    drivers_.clear();
    // The daemon's own way out: reload with no pools, wait for the drain.
    if (daemon_ && daemon_->running()) {
      std::string err = RewriteConfigTail(daemon_->config_path().string(), "");
      EXPECT_EQ(err, "");
      ::kill(daemon_->pid(), SIGHUP);
      AdminClient admin(daemon_->admin_path().string());
      adminpb::ListPoolsResponse pools;
      bool drained = WaitFor(
          [&] {
            pools.Clear();
            return admin.ListPools(&pools).ok() && pools.pools().empty() &&
                   admin.Entries().empty() && !CgroupExistsAnywhere(parent_);
          },
          kDrainTimeout, 50ms);
      EXPECT_TRUE(drained) << "pools did not drain on a reload with no pools: "
                           << pools.ShortDebugString() << "; cgroups left: "
                           << ::testing::PrintToString(CgroupDirsBelow(parent_)) << "\nlog:\n"
                           << daemon_->LogTail();
      EXPECT_EQ(daemon_->Stop(), "") << "warmpoold did not shut down cleanly";
    }
    daemon_.reset();
    // The fallback: whatever is left, straight through containerd.
    if (!pool_names_.empty() && !env_.containerd_sock.empty()) {
      ForcedCleanup left = ForceRemovePools(env_.containerd_sock, pool_names_, parent_);
      EXPECT_TRUE(left.problems.empty()) << ::testing::PrintToString(left.problems);
      if (!HasFailure()) {
        EXPECT_TRUE(left.removed.empty())
            << "left behind after the drain: " << ::testing::PrintToString(left.removed);
      }
    }
    if (!dir_.empty()) {
      std::error_code ec;
      fs::remove_all(dir_, ec);
    }
  }

  // A pool name unique to this test run.
  std::string PoolName(const std::string& kind) {
    std::string name = kind + "-" + token_;
    pool_names_.insert(name);
    return name;
  }

  TestPool AppPool(const std::string& name, int size, std::map<std::string, std::string> env) {
    TestPool p;
    p.name = name;
    p.size = size;
    TestPool::Container c;
    c.image = env_.app_image;
    c.env = std::move(env);
    p.containers.push_back(c);
    return p;
  }

  TestPool SandboxPool(const std::string& name, int size) {
    TestPool p;
    p.name = name;
    p.size = size;
    return p;
  }

  // Starts this test's warmpoold with `pools`. Returns nullptr (and records
  // a failure) when it does not come up.
  WarmpooldProcess* StartDaemon(const std::vector<TestPool>& pools,
                                const std::string& more_daemon_toml = "") {
    WarmpooldProcess::Options o;
    o.upstream = env_.containerd_sock;
    o.dir = dir_ / "wp";
    o.extra_daemon_config = PoolDaemonToml(parent_, more_daemon_toml);
    o.extra_config = PoolsToml(pools);
    daemon_ = std::make_unique<WarmpooldProcess>(o);
    std::string err = daemon_->Start();
    if (!err.empty()) {
      ADD_FAILURE() << "warmpoold did not start: " << err;
      return nullptr;
    }
    admin_ = std::make_unique<AdminClient>(daemon_->admin_path().string());
    return daemon_.get();
  }

  // Writes `pools` as the daemon's pools and sends SIGHUP.
  void Reload(const std::string& tail) {
    ASSERT_EQ(RewriteConfigTail(daemon_->config_path().string(), tail), "");
    ASSERT_EQ(::kill(daemon_->pid(), SIGHUP), 0);
  }

  // Polls the admin API until `pred` holds for pool `name`.
  bool WaitPool(const std::string& name,
                const std::function<bool(const adminpb::PoolStatus&)>& pred,
                std::chrono::milliseconds timeout, std::optional<adminpb::PoolStatus>* last) {
    return WaitFor(
        [&] {
          *last = admin_->Pool(name);
          return *last && pred(**last);
        },
        timeout, 50ms);
  }

  void WaitFull(const std::string& name, int n) {
    std::optional<adminpb::PoolStatus> last;
    ASSERT_TRUE(WaitPool(
        name, [n](const auto& p) { return Full(p, n); }, kFillTimeout, &last))
        << "pool " << name << " not at " << n << " frozen: " << Describe(last) << "\nlog:\n"
        << daemon_->LogTail();
  }

  std::string EntryCgroup(const std::string& pool, const std::string& id) const {
    return parent_ + "/" + pool + "/" + id;
  }

  // Pool sandboxes straight from containerd (fails the test if it cannot).
  std::vector<cri::PodSandbox> Managed(const std::string& pool) {
    auto sbs = ManagedSandboxes(*direct_, pool);
    EXPECT_TRUE(sbs.has_value()) << "ListPodSandbox straight to containerd failed";
    return sbs.value_or(std::vector<cri::PodSandbox>{});
  }

  KubeletDriver& NewDriver(const std::string& endpoint, const std::string& name) {
    KubeletDriver::Options o;
    o.endpoint = endpoint;
    o.work_dir = dir_ / name;
    o.cgroup_parent = env_.cgroup_parent;
    o.app_image = env_.app_image;
    o.cleanup_endpoint = env_.containerd_sock;
    drivers_.push_back(std::make_unique<KubeletDriver>(o));
    return *drivers_.back();
  }

  std::unique_ptr<grpc::ClientContext> Ctx() {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->set_deadline(std::chrono::system_clock::now() + 30s);
    return ctx;
  }

  // The processes in the freezer cgroup subtree of `path`.
  size_t FrozenSubtreeProcs(const std::string& path) {
    size_t n = 0;
    std::set<std::string> dirs = CgroupDirsBelow(path);
    dirs.insert(path);
    for (const std::string& d : dirs) {
      auto procs = ReadCgroupFile("freezer", d, "cgroup.procs");
      if (!procs) continue;
      std::istringstream in(*procs);
      std::string line;
      while (std::getline(in, line)) n += !line.empty();
    }
    return n;
  }

  TestBedEnv env_;
  fs::path dir_;
  std::string token_;
  std::string parent_;  // this test's pool_cgroup_parent
  std::set<std::string> pool_names_;
  std::unique_ptr<cri::RuntimeService::Stub> direct_;
  std::unique_ptr<cri::ImageService::Stub> direct_images_;
  std::unique_ptr<WarmpooldProcess> daemon_;
  std::unique_ptr<AdminClient> admin_;
  std::vector<std::unique_ptr<KubeletDriver>> drivers_;
};

// ---------------------------------------------------------------------------
// 1. Fill: frozen, no CPU, no answers.

TEST_F(PoolTest, FillsToTargetWithFrozenEntries) {
  const std::string app = PoolName("app"), sb = PoolName("sb");
  ASSERT_NE(StartDaemon({AppPool(app, 2, {{"INIT_SECONDS", "2"}}), SandboxPool(sb, 1)}), nullptr);
  ASSERT_NO_FATAL_FAILURE(WaitFull(app, 2));
  ASSERT_NO_FATAL_FAILURE(WaitFull(sb, 1));

  auto app_status = admin_->Pool(app);
  ASSERT_TRUE(app_status);
  EXPECT_EQ(app_status->target(), 2);
  EXPECT_EQ(app_status->failures(), 0u) << app_status->last_error();
  EXPECT_GT(app_status->memory_bytes(), 0u);

  std::vector<adminpb::Entry> entries = admin_->Entries();
  ASSERT_EQ(entries.size(), 3u);
  uint64_t app_memory = 0;
  std::map<std::string, uint64_t> cpu_before;
  for (const adminpb::Entry& e : entries) {
    SCOPED_TRACE("entry " + e.id() + " of " + e.pool());
    EXPECT_EQ(e.state(), adminpb::ENTRY_STATE_FROZEN);
    EXPECT_FALSE(e.sandbox_id().empty());
    EXPECT_EQ(e.container_ids_size(), e.pool() == app ? 1 : 0);
    EXPECT_GT(e.memory_bytes(), 0u);
    if (e.pool() == app) app_memory += e.memory_bytes();
    const std::string cg = EntryCgroup(e.pool(), e.id());
    EXPECT_EQ(ReadCgroupFile("freezer", cg, "freezer.state").value_or("(unreadable)"), "FROZEN")
        << cg;
    // pause (+ testapp) are really in there, so "no CPU" means something.
    EXPECT_GE(FrozenSubtreeProcs(cg), e.pool() == app ? 2u : 1u) << cg;
    auto cpu = ReadCgroupNumber("cpuacct", cg, "cpuacct.usage");
    ASSERT_TRUE(cpu) << "no cpuacct.usage for " << cg;
    cpu_before[cg] = *cpu;
  }
  EXPECT_EQ(app_memory, app_status->memory_bytes());

  // No CPU while frozen: cpuacct.usage stays put for a second.
  std::string moved;
  EXPECT_FALSE(WaitFor(
      [&] {
        for (const auto& [cg, before] : cpu_before) {
          auto now = ReadCgroupNumber("cpuacct", cg, "cpuacct.usage");
          if (!now || *now != before) {
            moved = cg + ": " + std::to_string(before) + " -> " +
                    (now ? std::to_string(*now) : "unreadable");
            return true;
          }
        }
        return false;
      },
      1s, 100ms))
      << "a frozen entry used CPU: " << moved;

  // Frozen apps answer nothing (the kernel may accept the connection).
  for (const adminpb::Entry& e : entries) {
    if (e.pool() != app) continue;
    ASSERT_FALSE(e.pod_ip().empty());
    EXPECT_FALSE(HttpGet(e.pod_ip(), kAppPort, "/healthz", Clock::now() + 300ms))
        << "frozen entry " << e.id() << " answered HTTP on " << e.pod_ip();
  }

  // Control: the same check sees an answer once the entry is thawed by hand,
  // and nothing again once it is frozen again.
  const adminpb::Entry* probe = nullptr;
  for (const auto& e : entries) {
    if (e.pool() == app) probe = &e;
  }
  ASSERT_NE(probe, nullptr);
  const std::string state_file =
      "/sys/fs/cgroup/freezer" + EntryCgroup(app, probe->id()) + "/freezer.state";
  { std::ofstream(state_file) << "THAWED"; }
  auto answer = WaitForHttp(probe->pod_ip(), kAppPort, "/healthz", 5s);
  EXPECT_TRUE(answer && answer->status == 200) << "thawed entry did not answer";
  { std::ofstream(state_file) << "FROZEN"; }
  EXPECT_TRUE(WaitFor(
      [&] {
        return ReadCgroupFile("freezer", EntryCgroup(app, probe->id()), "freezer.state") ==
               "FROZEN";
      },
      5s))
      << "could not freeze " << probe->id() << " again";
  EXPECT_FALSE(HttpGet(probe->pod_ip(), kAppPort, "/healthz", Clock::now() + 300ms));
}

// ---------------------------------------------------------------------------
// 2. Reads through warmpoold never show a pool object.

TEST_F(PoolTest, ReadsThroughWarmpooldHidePoolObjects) {
  const std::string app = PoolName("app"), sb = PoolName("sb");
  ASSERT_NE(StartDaemon({AppPool(app, 1, {{"INIT_SECONDS", "1"}}), SandboxPool(sb, 1)}), nullptr);
  ASSERT_NO_FATAL_FAILURE(WaitFull(app, 1));
  ASSERT_NO_FATAL_FAILURE(WaitFull(sb, 1));

  std::set<std::string> pool_sandboxes, pool_containers;
  std::string app_sandbox, app_container;
  for (const auto& e : admin_->Entries()) {
    pool_sandboxes.insert(e.sandbox_id());
    for (const auto& c : e.container_ids()) {
      pool_containers.insert(c);
      app_sandbox = e.sandbox_id();
      app_container = c;
    }
  }
  ASSERT_EQ(pool_sandboxes.size(), 2u);
  ASSERT_EQ(pool_containers.size(), 1u);

  // A normal pod through warmpoold at the same time.
  KubeletDriver& kubelet = NewDriver(daemon_->socket_path().string(), "kubelet");
  PodSpec spec;
  spec.name = "plain-" + token_;
  spec.containers[0].env = {{"INIT_SECONDS", "0"}};
  PodRun pod;
  ASSERT_RPC_OK(kubelet.StartPod(spec, &pod));

  auto proxy = cri::RuntimeService::NewStub(ConnectCri(daemon_->socket_path().string()));
  auto proxy_images = cri::ImageService::NewStub(ConnectCri(daemon_->socket_path().string()));

  auto sandbox_ids = [&](cri::RuntimeService::Stub& stub, const cri::PodSandboxFilter* filter) {
    cri::ListPodSandboxRequest req;
    if (filter) *req.mutable_filter() = *filter;
    cri::ListPodSandboxResponse resp;
    grpc::Status s = stub.ListPodSandbox(Ctx().get(), req, &resp);
    EXPECT_TRUE(s.ok()) << StatusString(s);
    std::set<std::string> ids;
    for (const auto& i : resp.items()) ids.insert(i.id());
    return ids;
  };
  auto container_ids = [&](cri::RuntimeService::Stub& stub, const cri::ContainerFilter* filter) {
    cri::ListContainersRequest req;
    if (filter) *req.mutable_filter() = *filter;
    cri::ListContainersResponse resp;
    grpc::Status s = stub.ListContainers(Ctx().get(), req, &resp);
    EXPECT_TRUE(s.ok()) << StatusString(s);
    std::set<std::string> ids;
    for (const auto& c : resp.containers()) ids.insert(c.id());
    return ids;
  };
  auto has_any = [](const std::set<std::string>& ids, const std::set<std::string>& of) {
    return std::any_of(of.begin(), of.end(), [&](const auto& i) { return ids.count(i) > 0; });
  };
  auto has_all = [](const std::set<std::string>& ids, const std::set<std::string>& of) {
    return std::all_of(of.begin(), of.end(), [&](const auto& i) { return ids.count(i) > 0; });
  };

  // ListPodSandbox: unfiltered, by label, by id.
  {
    auto direct = sandbox_ids(*direct_, nullptr);
    auto proxied = sandbox_ids(*proxy, nullptr);
    EXPECT_TRUE(has_all(direct, pool_sandboxes)) << "containerd does not list the pool";
    EXPECT_FALSE(has_any(proxied, pool_sandboxes)) << "warmpoold lists a pool sandbox";
    EXPECT_EQ(proxied.count(pod.sandbox_id), 1u) << "warmpoold hides the normal pod";
    cri::PodSandboxFilter by_label;
    (*by_label.mutable_label_selector())["warmpool.io/managed"] = "true";
    EXPECT_EQ(sandbox_ids(*direct_, &by_label).size(), 2u);
    EXPECT_TRUE(sandbox_ids(*proxy, &by_label).empty());
    cri::PodSandboxFilter by_id;
    by_id.set_id(app_sandbox);
    EXPECT_EQ(sandbox_ids(*direct_, &by_id).size(), 1u);
    EXPECT_TRUE(sandbox_ids(*proxy, &by_id).empty());
  }
  // ListContainers: unfiltered, by sandbox, by id.
  {
    auto direct = container_ids(*direct_, nullptr);
    auto proxied = container_ids(*proxy, nullptr);
    EXPECT_TRUE(has_all(direct, pool_containers));
    EXPECT_FALSE(has_any(proxied, pool_containers)) << "warmpoold lists a pool container";
    EXPECT_EQ(proxied.count(pod.container_ids[0]), 1u) << "warmpoold hides the normal pod";
    cri::ContainerFilter by_sandbox;
    by_sandbox.set_pod_sandbox_id(app_sandbox);
    EXPECT_EQ(container_ids(*direct_, &by_sandbox).size(), 1u);
    EXPECT_TRUE(container_ids(*proxy, &by_sandbox).empty());
    cri::ContainerFilter by_id;
    by_id.set_id(app_container);
    EXPECT_EQ(container_ids(*direct_, &by_id).size(), 1u);
    EXPECT_TRUE(container_ids(*proxy, &by_id).empty());
  }
  // ListContainerStats.
  {
    auto stats_ids = [&](cri::RuntimeService::Stub& stub) {
      cri::ListContainerStatsResponse resp;
      grpc::Status s = stub.ListContainerStats(Ctx().get(), {}, &resp);
      EXPECT_TRUE(s.ok()) << StatusString(s);
      std::set<std::string> ids;
      for (const auto& st : resp.stats()) ids.insert(st.attributes().id());
      return ids;
    };
    auto direct = stats_ids(*direct_);
    auto proxied = stats_ids(*proxy);
    EXPECT_TRUE(has_all(direct, pool_containers));
    EXPECT_FALSE(has_any(proxied, pool_containers)) << "warmpoold shows stats of a pool container";
    EXPECT_EQ(proxied.count(pod.container_ids[0]), 1u);
  }
  // ListPodSandboxStats (containerd 1.6 may not implement it: then the same
  // answer both ways).
  {
    cri::ListPodSandboxStatsResponse d, p;
    grpc::Status ds = direct_->ListPodSandboxStats(Ctx().get(), {}, &d);
    grpc::Status ps = proxy->ListPodSandboxStats(Ctx().get(), {}, &p);
    EXPECT_EQ(ds.error_code(), ps.error_code())
        << "direct " << StatusString(ds) << " / through warmpoold " << StatusString(ps);
    if (ds.ok() && ps.ok()) {
      std::set<std::string> direct, proxied;
      for (const auto& st : d.stats()) direct.insert(st.attributes().id());
      for (const auto& st : p.stats()) proxied.insert(st.attributes().id());
      EXPECT_TRUE(has_all(direct, pool_sandboxes));
      EXPECT_FALSE(has_any(proxied, pool_sandboxes)) << "warmpoold shows stats of a pool sandbox";
      EXPECT_EQ(proxied.count(pod.sandbox_id), 1u);
    } else {
      EXPECT_EQ(ds.error_message(), ps.error_message());
    }
  }
  // Calls naming a pool object: the NOT_FOUND containerd gives for an id it
  // does not know, word for word.
  const std::string unknown = RandomId64();
  auto expect_same_not_found = [&](const std::string& what, const grpc::Status& direct_unknown,
                                   const grpc::Status& proxied_pool, const std::string& pool_id) {
    SCOPED_TRACE(what);
    EXPECT_EQ(direct_unknown.error_code(), grpc::StatusCode::NOT_FOUND)
        << StatusString(direct_unknown);
    EXPECT_EQ(proxied_pool.error_code(), direct_unknown.error_code())
        << "through warmpoold: " << StatusString(proxied_pool);
    EXPECT_EQ(proxied_pool.error_message(),
              Replace(direct_unknown.error_message(), unknown, pool_id));
  };
  for (const std::string& id : pool_sandboxes) {
    cri::PodSandboxStatusRequest pr, dr;
    pr.set_pod_sandbox_id(id);
    dr.set_pod_sandbox_id(unknown);
    cri::PodSandboxStatusResponse resp;
    grpc::Status d = direct_->PodSandboxStatus(Ctx().get(), dr, &resp);
    grpc::Status p = proxy->PodSandboxStatus(Ctx().get(), pr, &resp);
    expect_same_not_found("PodSandboxStatus", d, p, id);
    // And straight to containerd it exists.
    EXPECT_TRUE(direct_->PodSandboxStatus(Ctx().get(), pr, &resp).ok());

    cri::PodSandboxStatsRequest psr, dsr;
    psr.set_pod_sandbox_id(id);
    dsr.set_pod_sandbox_id(unknown);
    cri::PodSandboxStatsResponse stats;
    grpc::Status ds = direct_->PodSandboxStats(Ctx().get(), dsr, &stats);
    grpc::Status ps = proxy->PodSandboxStats(Ctx().get(), psr, &stats);
    if (ds.error_code() == grpc::StatusCode::NOT_FOUND) {
      expect_same_not_found("PodSandboxStats", ds, ps, id);
    } else {
      EXPECT_EQ(ds.error_code(), ps.error_code()) << "PodSandboxStats: direct " << StatusString(ds)
                                                  << " / through warmpoold " << StatusString(ps);
    }
  }
  {
    cri::ContainerStatusRequest pr, dr;
    pr.set_container_id(app_container);
    dr.set_container_id(unknown);
    cri::ContainerStatusResponse resp;
    grpc::Status d = direct_->ContainerStatus(Ctx().get(), dr, &resp);
    grpc::Status p = proxy->ContainerStatus(Ctx().get(), pr, &resp);
    expect_same_not_found("ContainerStatus", d, p, app_container);
    EXPECT_TRUE(direct_->ContainerStatus(Ctx().get(), pr, &resp).ok());

    cri::ContainerStatsRequest psr, dsr;
    psr.set_container_id(app_container);
    dsr.set_container_id(unknown);
    cri::ContainerStatsResponse stats;
    grpc::Status ds = direct_->ContainerStats(Ctx().get(), dsr, &stats);
    grpc::Status ps = proxy->ContainerStats(Ctx().get(), psr, &stats);
    expect_same_not_found("ContainerStats", ds, ps, app_container);
  }

  // RemovePodSandbox / RemoveContainer of a pool object through warmpoold:
  // OK at once (kubelet's GC of an id it does not know is idempotent), and
  // nothing is removed, or even touched: containerd must never see the call
  // (it would SIGKILL the frozen tasks, and the kill would land at thaw).
  auto short_ctx = [] {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->set_deadline(std::chrono::system_clock::now() + 5s);
    return ctx;
  };
  {
    cri::RemoveContainerRequest req;
    req.set_container_id(app_container);
    cri::RemoveContainerResponse resp;
    grpc::Status s = proxy->RemoveContainer(short_ctx().get(), req, &resp);
    EXPECT_TRUE(s.ok()) << "RemoveContainer of a pool container through warmpoold: "
                        << StatusString(s);
    cri::ContainerFilter by_id;
    by_id.set_id(app_container);
    EXPECT_EQ(container_ids(*direct_, &by_id).size(), 1u) << "the pool container was removed";
  }
  {
    cri::RemovePodSandboxRequest req;
    req.set_pod_sandbox_id(app_sandbox);
    cri::RemovePodSandboxResponse resp;
    grpc::Status s = proxy->RemovePodSandbox(short_ctx().get(), req, &resp);
    EXPECT_TRUE(s.ok()) << "RemovePodSandbox of a pool sandbox through warmpoold: "
                        << StatusString(s);
    cri::PodSandboxFilter by_id;
    by_id.set_id(app_sandbox);
    EXPECT_EQ(sandbox_ids(*direct_, &by_id).size(), 1u) << "the pool sandbox was removed";
    auto status = admin_->Pool(app);
    ASSERT_TRUE(status);
    EXPECT_TRUE(Full(*status, 1)) << status->ShortDebugString();
  }
  // containerd never got either call.
  {
    const std::string log =
        ReadFile(std::getenv("WP_TEST_CONTAINERD_LOG") ? std::getenv("WP_TEST_CONTAINERD_LOG")
                                                       : "/dev/null");
    EXPECT_EQ(log.find("RemovePodSandbox for \\\"" + app_sandbox), std::string::npos)
        << "RemovePodSandbox of a pool sandbox reached containerd";
    EXPECT_EQ(log.find("RemoveContainer for \\\"" + app_container), std::string::npos)
        << "RemoveContainer of a pool container reached containerd";
  }

  // The pool's image is pinned for kubelet only.
  {
    cri::ImageStatusRequest req;
    req.mutable_image()->set_image(env_.app_image);
    cri::ImageStatusResponse d, p;
    ASSERT_RPC_OK(direct_images_->ImageStatus(Ctx().get(), req, &d));
    ASSERT_RPC_OK(proxy_images->ImageStatus(Ctx().get(), req, &p));
    ASSERT_TRUE(d.has_image() && p.has_image());
    EXPECT_FALSE(d.image().pinned()) << "containerd itself pins the app image?";
    EXPECT_TRUE(p.image().pinned()) << "warmpoold does not report the pool's image pinned";
    // ListImages agrees.
    cri::ListImagesResponse list;
    ASSERT_RPC_OK(proxy_images->ListImages(Ctx().get(), {}, &list));
    bool listed_pinned = false;
    for (const auto& img : list.images()) {
      if (img.id() == p.image().id()) listed_pinned = img.pinned();
    }
    EXPECT_TRUE(listed_pinned) << "ListImages through warmpoold does not pin the pool's image";
  }

  ASSERT_RPC_OK(kubelet.StopAndRemovePod(pod));
}

// The sandbox (pause) image every pool entry runs must not be garbage
// collected by kubelet either: pool sandboxes are hidden, so kubelet sees no
// user of it unless a normal pod runs.
TEST_F(PoolTest, PoolSandboxImageIsPinned) {
  const std::string sb = PoolName("sb");
  ASSERT_NE(StartDaemon({SandboxPool(sb, 1)}), nullptr);
  ASSERT_NO_FATAL_FAILURE(WaitFull(sb, 1));
  auto proxy_images = cri::ImageService::NewStub(ConnectCri(daemon_->socket_path().string()));
  cri::ImageStatusRequest req;
  req.mutable_image()->set_image(env_.pause_image);
  cri::ImageStatusResponse d, p;
  ASSERT_RPC_OK(direct_images_->ImageStatus(Ctx().get(), req, &d));
  ASSERT_RPC_OK(proxy_images->ImageStatus(Ctx().get(), req, &p));
  ASSERT_TRUE(p.has_image());
  EXPECT_TRUE(p.image().pinned()) << "the sandbox image " << env_.pause_image
                                  << " is not pinned through warmpoold (direct: "
                                  << d.image().pinned() << ")";
}

// ---------------------------------------------------------------------------
// 3. Reload.

TEST_F(PoolTest, ReloadGrowsShrinksDrainsAndRejectsInvalidConfig) {
  const std::string app = PoolName("app");
  const std::map<std::string, std::string> env = {{"INIT_SECONDS", "1"}};
  ASSERT_NE(StartDaemon({AppPool(app, 2, env)}), nullptr);
  ASSERT_NO_FATAL_FAILURE(WaitFull(app, 2));
  const std::set<std::string> first = EntryIds(admin_->Entries(app));

  // Grow 2 -> 4: the two stay, two more come.
  ASSERT_NO_FATAL_FAILURE(Reload(PoolsToml({AppPool(app, 4, env)})));
  ASSERT_NO_FATAL_FAILURE(WaitFull(app, 4));
  std::vector<adminpb::Entry> four = admin_->Entries(app);
  std::set<std::string> four_ids = EntryIds(four);
  ASSERT_EQ(four_ids.size(), 4u);
  for (const auto& id : first) EXPECT_EQ(four_ids.count(id), 1u) << "grow replaced " << id;
  EXPECT_EQ(admin_->Pool(app)->target(), 4);

  // Shrink 4 -> 1: three frozen entries destroyed, sandboxes and cgroups gone.
  ASSERT_NO_FATAL_FAILURE(Reload(PoolsToml({AppPool(app, 1, env)})));
  std::vector<adminpb::Entry> left;
  ASSERT_TRUE(WaitFor(
      [&] {
        left = admin_->Entries(app);
        auto p = admin_->Pool(app);
        return left.size() == 1 && p && Full(*p, 1);
      },
      kDrainTimeout, 50ms))
      << "pool did not shrink to 1: " << Describe(admin_->Pool(app));
  ASSERT_EQ(four_ids.count(left[0].id()), 1u) << "shrinking made a new entry";
  for (const adminpb::Entry& e : four) {
    if (e.id() == left[0].id()) continue;
    SCOPED_TRACE("removed entry " + e.id());
    std::vector<cri::PodSandbox> sbs;
    EXPECT_TRUE(WaitFor(
        [&] {
          sbs = Managed(app);
          return std::none_of(sbs.begin(), sbs.end(),
                              [&](const auto& sb) { return sb.id() == e.sandbox_id(); });
        },
        10s))
        << "sandbox " << e.sandbox_id() << " still in containerd";
    EXPECT_FALSE(CgroupExistsAnywhere(EntryCgroup(app, e.id())));
  }
  EXPECT_EQ(Managed(app).size(), 1u);

  // An invalid config is rejected with file:line, the pool keeps running. It
  // would grow the pool to 3 if it were (even partly) applied.
  std::string bad = PoolsToml({AppPool(app, 3, env)});
  const std::string bad_key = "colour = \"red\"\n";
  bad.insert(bad.find("[pool.sandbox]"), bad_key);
  ASSERT_NO_FATAL_FAILURE(Reload(bad));
  std::string config_text = ReadFile(daemon_->config_path());
  const size_t at = config_text.find(bad_key);
  ASSERT_NE(at, std::string::npos);
  const int bad_line =
      1 + static_cast<int>(std::count(config_text.begin(), config_text.begin() + at, '\n'));
  ASSERT_TRUE(WaitFor(
      [&] { return daemon_->LogTail(100000).find("reload rejected") != std::string::npos; }, 10s))
      << daemon_->LogTail();
  const std::string log = daemon_->LogTail(100000);
  const std::string where = daemon_->config_path().string() + ":" + std::to_string(bad_line) + ":";
  EXPECT_NE(log.find(where), std::string::npos) << "no " << where << " in the log:\n" << log;
  std::optional<adminpb::PoolStatus> status;
  EXPECT_FALSE(WaitPool(
      app, [](const auto& p) { return p.target() != 1 || !Full(p, 1) || p.draining(); }, 1500ms,
      &status))
      << "the rejected config changed the pool: " << Describe(status);
  EXPECT_EQ(EntryIds(admin_->Entries(app)), std::set<std::string>{left[0].id()});

  // Removing the pool drains it: no entry, no sandbox, no cgroup.
  ASSERT_NO_FATAL_FAILURE(Reload(""));
  adminpb::ListPoolsResponse pools;
  EXPECT_TRUE(WaitFor(
      [&] {
        pools.Clear();
        return admin_->ListPools(&pools).ok() && pools.pools().empty() && admin_->Entries().empty();
      },
      kDrainTimeout, 50ms))
      << pools.ShortDebugString();
  EXPECT_TRUE(WaitFor([&] { return Managed(app).empty(); }, 10s)) << "sandboxes left";
  EXPECT_TRUE(WaitFor([&] { return !CgroupExistsAnywhere(parent_); }, 10s))
      << "cgroups left: " << ::testing::PrintToString(CgroupDirsBelow(parent_));
}

// ---------------------------------------------------------------------------
// 4. A crashing app backs off.

TEST_F(PoolTest, CrashingAppBacksOffWithoutBusyLoop) {
  const std::string crash = PoolName("crash");
  ASSERT_NE(StartDaemon({AppPool(crash, 1, {{"INIT_SECONDS", "0"}, {"EXIT_DURING_INIT", "1"}})}),
            nullptr);
  const auto start = Clock::now();
  std::optional<adminpb::PoolStatus> last;
  std::set<std::string> sandboxes_seen;
  std::map<std::string, Clock::time_point> orphan_since;  // entry gone, sandbox not
  std::string leaked;
  int64_t max_backoff = 0;
  // Watch for 6 s: failures, back-off, and sandboxes of failed entries.
  EXPECT_FALSE(WaitFor(
      [&] {
        last = admin_->Pool(crash);
        if (last) max_backoff = std::max(max_backoff, last->backoff_ms());
        const std::set<std::string> live = EntryIds(admin_->Entries(crash));
        for (const cri::PodSandbox& sb : Managed(crash)) {
          sandboxes_seen.insert(sb.id());
          const std::string entry = Label(sb, "warmpool.io/entry");
          if (live.count(entry)) {
            orphan_since.erase(entry);
            continue;
          }
          auto [it, fresh] = orphan_since.emplace(entry, Clock::now());
          if (Clock::now() - it->second > 5s) {
            leaked = "sandbox " + sb.id() + " of entry " + entry + " outlived its entry by 5 s";
            return true;
          }
        }
        return false;
      },
      6s, 50ms))
      << leaked;
  ASSERT_TRUE(last) << "pool not listed";
  const uint64_t failures = last->failures();
  EXPECT_GE(failures, 2u) << "the crash was not noticed/retried: " << last->ShortDebugString();
  EXPECT_LE(failures, 5u)
      << "no back-off: " << failures << " failures in "
      << std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count()
      << " ms";
  EXPECT_LE(sandboxes_seen.size(), failures + 1) << "more sandboxes than attempts";
  EXPECT_GE(max_backoff, 1000) << "no back-off reported";
  EXPECT_NE(last->last_error().find("exited with code 1"), std::string::npos) << last->last_error();
  EXPECT_EQ(last->frozen(), 0);
  // Every failed attempt's sandbox is gone (only the current attempt's may
  // exist).
  std::vector<cri::PodSandbox> left;
  EXPECT_TRUE(WaitFor(
      [&] {
        const std::set<std::string> live = EntryIds(admin_->Entries(crash));
        left = Managed(crash);
        return std::all_of(left.begin(), left.end(), [&](const cri::PodSandbox& sb) {
          return live.count(Label(sb, "warmpool.io/entry")) > 0;
        });
      },
      10s))
      << left.size() << " sandboxes of failed entries left";
  EXPECT_LE(left.size(), 1u);
}

// ---------------------------------------------------------------------------
// 5. kill -9 while filling.

TEST_F(PoolTest, KillDuringFillThenRestartEndsAtTargetWithoutLeaks) {
  const std::string app = PoolName("app");
  ASSERT_NE(StartDaemon({AppPool(app, 3, {{"INIT_SECONDS", "2"}})}), nullptr);
  // Kill once entries are half made (started, warming), but not while one is
  // being created: killed in the middle of RunPodSandbox, containerd 1.6
  // cancels the shim's Create and leaks the shim process (containerd#7733),
  // which no warmpoold can see and the bed's leak check reports.
  std::vector<adminpb::Entry> entries;
  ASSERT_TRUE(WaitFor(
      [&] {
        entries = admin_->Entries(app);
        auto in = [&](adminpb::EntryState state) {
          return std::any_of(entries.begin(), entries.end(),
                             [&](const adminpb::Entry& e) { return e.state() == state; });
        };
        return in(adminpb::ENTRY_STATE_WARMING) && !in(adminpb::ENTRY_STATE_CREATING);
      },
      30s, 10ms))
      << "no entry reached warming:\n"
      << daemon_->LogTail();
  daemon_->Kill();
  std::set<std::string> half_made;
  for (const auto& e : entries) {
    if (e.state() != adminpb::ENTRY_STATE_FROZEN) half_made.insert(e.id());
  }
  std::vector<cri::PodSandbox> leftovers = Managed(app);
  ASSERT_FALSE(leftovers.empty()) << "the kill left nothing to recover from";

  ASSERT_EQ(daemon_->Start(), "");
  ASSERT_NO_FATAL_FAILURE(WaitFull(app, 3));
  std::set<std::string> live = EntryIds(admin_->Entries(app));
  ASSERT_EQ(live.size(), 3u);
  for (const auto& id : half_made) {
    EXPECT_EQ(live.count(id), 0u) << "half-made entry " << id << " was kept";
  }
  // Exactly the live entries' sandboxes in containerd.
  std::set<std::string> in_containerd;
  EXPECT_TRUE(WaitFor(
      [&] {
        in_containerd.clear();
        for (const auto& sb : Managed(app)) in_containerd.insert(Label(sb, "warmpool.io/entry"));
        return in_containerd == live && Managed(app).size() == 3;
      },
      30s))
      << "containerd has " << ::testing::PrintToString(in_containerd) << ", live "
      << ::testing::PrintToString(live);
  // And every container in containerd belongs to a live sandbox.
  {
    cri::ListContainersRequest req;
    (*req.mutable_filter()->mutable_label_selector())["warmpool.io/pool"] = app;
    cri::ListContainersResponse resp;
    ASSERT_RPC_OK(direct_->ListContainers(Ctx().get(), req, &resp));
    EXPECT_EQ(resp.containers_size(), 3);
    for (const auto& c : resp.containers()) {
      EXPECT_EQ(live.count(c.labels().at("warmpool.io/entry")), 1u)
          << "leaked container " << c.id();
    }
  }
  // Every cgroup below the pool parent belongs to a live entry.
  for (const std::string& dir : CgroupDirsBelow(parent_)) {
    const std::string pool_dir = parent_ + "/" + app;
    if (dir == pool_dir) continue;
    bool owned = false;
    for (const auto& id : live) {
      const std::string entry_dir = pool_dir + "/" + id;
      if (dir == entry_dir || dir.rfind(entry_dir + "/", 0) == 0) owned = true;
    }
    EXPECT_TRUE(owned) << "leaked cgroup " << dir;
  }
  // And no pool-log directory of a dead entry.
  std::error_code ec;
  for (const auto& d : fs::directory_iterator(daemon_->state_dir() / "pool-logs", ec)) {
    EXPECT_EQ(live.count(d.path().filename().string()), 1u) << "leaked " << d.path();
  }
}

// ---------------------------------------------------------------------------
// 6. A warmpoold restart keeps the frozen entries.

TEST_F(PoolTest, RestartRecoversTheSameFrozenEntries) {
  const std::string app = PoolName("app");
  ASSERT_NE(StartDaemon({AppPool(app, 2, {{"INIT_SECONDS", "1"}})}), nullptr);
  ASSERT_NO_FATAL_FAILURE(WaitFull(app, 2));
  std::map<std::string, std::string> before;  // entry -> sandbox
  for (const auto& e : admin_->Entries(app)) before[e.id()] = e.sandbox_id();

  ASSERT_EQ(daemon_->Stop(), "");
  // Stopped: the entries stay, frozen.
  EXPECT_EQ(Managed(app).size(), 2u);
  for (const auto& [id, sandbox] : before) {
    EXPECT_EQ(ReadCgroupFile("freezer", EntryCgroup(app, id), "freezer.state"), "FROZEN") << id;
  }

  ASSERT_EQ(daemon_->Start(), "");
  ASSERT_NO_FATAL_FAILURE(WaitFull(app, 2));
  std::map<std::string, std::string> after;
  for (const auto& e : admin_->Entries(app)) after[e.id()] = e.sandbox_id();
  EXPECT_EQ(after, before) << "entries were recreated, not recovered";
  EXPECT_EQ(admin_->Pool(app)->failures(), 0u);
  for (const auto& [id, sandbox] : before) {
    EXPECT_EQ(ReadCgroupFile("freezer", EntryCgroup(app, id), "freezer.state"), "FROZEN") << id;
    EXPECT_NE(daemon_->LogTail(200000).find("recovered frozen entry " + id), std::string::npos);
  }
  EXPECT_EQ(Managed(app).size(), 2u);
}

// ---------------------------------------------------------------------------
// 7. A containerd restart under a full pool.

TEST_F(PoolTest, ContainerdRestartKeepsThePoolFull) {
  if (std::getenv("WP_TEST_CONTAINERD_CONFIG") == nullptr) {
    GTEST_SKIP() << "WP_TEST_CONTAINERD_CONFIG unset: cannot restart the harness's containerd";
  }
  const std::string app = PoolName("app");
  ASSERT_NE(StartDaemon({AppPool(app, 2, {{"INIT_SECONDS", "1"}})}), nullptr);
  ASSERT_NO_FATAL_FAILURE(WaitFull(app, 2));
  std::map<std::string, std::string> before;
  for (const auto& e : admin_->Entries(app)) before[e.id()] = e.sandbox_id();

  ASSERT_EQ(RestartContainerd(), "");

  // warmpoold serves again.
  auto proxy = cri::RuntimeService::NewStub(ConnectCri(daemon_->socket_path().string()));
  grpc::Status version;
  EXPECT_TRUE(WaitFor(
      [&] {
        cri::VersionRequest req;
        req.set_version("v1");
        cri::VersionResponse resp;
        grpc::ClientContext ctx;
        ctx.set_deadline(std::chrono::system_clock::now() + 2s);
        version = proxy->Version(&ctx, req, &resp);
        return version.ok();
      },
      30s, 100ms))
      << "Version through warmpoold: " << StatusString(version);

  // containerd still has both entries, ready and running, still frozen.
  std::vector<cri::PodSandbox> sbs;
  EXPECT_TRUE(WaitFor(
      [&] {
        sbs = Managed(app);
        return sbs.size() == 2 && std::all_of(sbs.begin(), sbs.end(), [](const auto& sb) {
                 return sb.state() == cri::SANDBOX_READY;
               });
      },
      30s))
      << "containerd lost or stopped pool sandboxes: " << sbs.size();
  {
    cri::ListContainersRequest req;
    (*req.mutable_filter()->mutable_label_selector())["warmpool.io/pool"] = app;
    cri::ListContainersResponse resp;
    ASSERT_RPC_OK(direct_->ListContainers(Ctx().get(), req, &resp));
    EXPECT_EQ(resp.containers_size(), 2);
    for (const auto& c : resp.containers()) {
      EXPECT_EQ(c.state(), cri::CONTAINER_RUNNING) << c.id();
    }
  }
  for (const auto& [id, sandbox] : before) {
    EXPECT_EQ(ReadCgroupFile("freezer", EntryCgroup(app, id), "freezer.state"), "FROZEN") << id;
  }

  // The pool stays full with the same entries across warmpoold's next health
  // check (every 10 s).
  std::map<std::string, std::string> now;
  auto changed = [&] {
    now.clear();
    for (const auto& e : admin_->Entries(app)) {
      if (e.state() == adminpb::ENTRY_STATE_FROZEN) now[e.id()] = e.sandbox_id();
    }
    return now != before;
  };
  EXPECT_FALSE(WaitFor(changed, 12s, 100ms))
      << "pool changed after the containerd restart: " << ::testing::PrintToString(now)
      << "\nlog:\n"
      << daemon_->LogTail();

  // And a warmpoold restart still recovers them (containerd's view is sound).
  ASSERT_EQ(daemon_->Stop(), "");
  ASSERT_EQ(daemon_->Start(), "");
  ASSERT_NO_FATAL_FAILURE(WaitFull(app, 2));
  EXPECT_FALSE(changed()) << "not recovered after containerd + warmpoold restarts: "
                          << ::testing::PrintToString(now);
}

}  // namespace
}  // namespace warmpool::testing
