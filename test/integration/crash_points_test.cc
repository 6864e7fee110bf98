// kill -9 at each step of the hand-off: warmpoold runs with one fail point
// armed (WARMPOOL_FAILPOINT, daemon/failpoint.h) and a pool of one entry, a
// pod is run through it as kubelet would, and warmpoold dies by SIGKILL at
// exactly that step. The restarted daemon (same state) must then let kubelet
// carry on as it does after a failed call: list the pod's sandboxes by its
// uid, keep a READY one or run the sandbox again. Whatever the step, the pod
// ends up with exactly one READY sandbox carrying kubelet's identity (metadata,
// labels, annotations, hostname, an IP), no pool object shows through
// warmpoold, and after the pod is removed and the pool refilled nothing of
// the hand-off is left: no sandbox or container of the pod in containerd, no
// cgroup or pool log directory but the live entry's, no hand-off record, no
// IP allocation.
//
// A crash before the "done" record is a hand-off kubelet never got: recovery
// must remove its sandbox (the entry is gone from the pool for good). A crash
// after it is an adopted pod: kubelet must find it. The app-pool points do the
// same for CreateContainer of a pre-started container.

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "test/integration/cri_compare.h"
#include "test/integration/kubelet_driver.h"
#include "test/integration/pool_fixture.h"
#include "test/integration/pool_support.h"
#include "test/integration/test_bed.h"
#include "test/integration/warmpoold_process.h"

namespace warmpool::testing {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

bool HasWarmpoolLabel(const google::protobuf::Map<std::string, std::string>& labels) {
  return std::any_of(labels.begin(), labels.end(),
                     [](const auto& kv) { return kv.first.rfind("warmpool.io/", 0) == 0; });
}

enum class Kind {
  kSandbox,      // sandbox pool, network = "early"
  kLateSandbox,  // sandbox pool, network = "late" (the bed's warmpool-late handler)
  kContainer,    // app pool: the crash is in CreateContainer of the pre-started app
};

struct CrashPoint {
  const char* point;
  Kind kind;
  // Whether kubelet must find the pod's sandbox (it was recorded as adopted
  // before the crash) or the hand-off is rolled back.
  bool sandbox_kept;
  // App pools: whether the pre-started container was recorded as kubelet's.
  bool container_kept = false;
};

std::string CaseName(const ::testing::TestParamInfo<CrashPoint>& info) {
  std::string name = info.param.point;
  std::replace(name.begin(), name.end(), '.', '_');
  if (info.param.kind == Kind::kLateSandbox) name += "_late";
  return name;
}

class CrashPointTest : public ::testing::TestWithParam<CrashPoint> {
 protected:
  void SetUp() override {
    WP_REQUIRE_TEST_BED(env_);
    if (GetParam().kind == Kind::kLateSandbox && Getenv("WP_TEST_LATE_RUNTIME_HANDLER").empty()) {
      GTEST_SKIP() << "the test bed has no late runtime handler";
    }
    char tmpl[] = "/tmp/wpk-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    token_ = KubeletDriver::UniqueToken();
    pool_parent_ = env_.cgroup_parent + "/pools-" + token_;
    pool_ = GetParam().kind == Kind::kContainer     ? "web"
            : GetParam().kind == Kind::kLateSandbox ? "late"
                                                    : "sb";
    ipam_dir_ = fs::path(Getenv("WP_TEST_DIR")) / "cni" / "ipam" / Getenv("WP_TEST_CNI_NETWORK");
    KubeletDriver::Options d;
    d.endpoint = env_.containerd_sock;
    d.work_dir = dir_ / "direct";
    direct_ = std::make_unique<KubeletDriver>(d);
  }

  void TearDown() override {
    if (driver_) {
      EXPECT_EQ(driver_->Cleanup(), "");
    }
    driver_.reset();
    // The pool's live entry stays after a stop, as it should: remove it (and
    // anything a failed test left) straight through containerd.
    if (daemon_) daemon_->Kill();
    daemon_.reset();
    if (!env_.containerd_sock.empty() && !pool_parent_.empty()) {
      ForcedCleanup left = ForceRemovePools(env_.containerd_sock, {pool_}, pool_parent_);
      EXPECT_TRUE(left.problems.empty()) << ::testing::PrintToString(left.problems);
    }
    direct_.reset();
    if (!dir_.empty() && !(HasFailure() && Getenv("WP_TEST_KEEP_ON_FAILURE") == "1")) {
      std::error_code ec;
      fs::remove_all(dir_, ec);
    }
  }

  // Starts warmpoold on the test's directory (same state every time), with
  // `failpoint` armed unless empty.
  void StartDaemon(const std::string& failpoint) {
    WarmpooldProcess::Options o;
    o.upstream = env_.containerd_sock;
    o.dir = dir_ / "wp";
    std::string more;
    if (GetParam().kind == Kind::kLateSandbox) {
      more = "late_runtime_handler = \"" + Getenv("WP_TEST_LATE_RUNTIME_HANDLER") +
             "\"\ncni_conf_dir = \"" + Getenv("WP_TEST_CNI_CONF_DIR") + "\"\ncni_bin_dir = \"" +
             Getenv("WP_TEST_CNI_BIN_DIR") + "\"";
    }
    if (!failpoint.empty()) {
      // The armed daemon makes its one entry and no other: a budget below
      // one entry's measured memory stops the refill a claim starts. Killed
      // in the middle of a refill's RunPodSandbox, containerd 1.6 cancels
      // the shim's Create and leaks the shim process (containerd#7733), a
      // leak of containerd's that no warmpoold can see or remove, which the
      // harness's leak check would report.
      if (!more.empty()) more += "\n";
      more += "memory_budget = \"64Ki\"";
    }
    o.extra_daemon_config = PoolDaemonToml(pool_parent_, more);
    TestPool pool;
    pool.name = pool_;
    pool.size = 1;
    if (GetParam().kind == Kind::kLateSandbox) pool.network = "late";
    if (GetParam().kind == Kind::kContainer) {
      TestPool::Container app;
      app.image = env_.app_image;
      app.env = {{"INIT_SECONDS", "0"}};
      pool.containers.push_back(app);
    }
    o.extra_config = PoolsToml({pool});
    if (!failpoint.empty()) o.extra_env = {"WARMPOOL_FAILPOINT=" + failpoint};
    daemon_ = std::make_unique<WarmpooldProcess>(o);
    ASSERT_EQ(daemon_->Start(), "");
    admin_ = std::make_unique<AdminClient>(daemon_->admin_path().string());
    if (!driver_) {
      driver_ = std::make_unique<KubeletDriver>(
          BedDriverOptions(env_, daemon_->socket_path(), dir_ / "pods"));
    }
  }

  // The pool holds its one frozen entry and makes nothing.
  bool WaitFull() {
    return WaitFor(
        [&] {
          auto p = admin_->Pool(pool_);
          return p && p->frozen() == 1 && p->creating() == 0 && p->warming() == 0;
        },
        60s, 50ms);
  }

  PodSpec Pod() {
    PodSpec spec;
    spec.name = "crash-" + token_;
    spec.labels["warmpool.test/run"] = token_;
    spec.annotations["warmpool.io/pool"] = pool_;
    spec.annotations["warmpool.test/note"] = GetParam().point;
    spec.containers[0].env = {{"INIT_SECONDS", "0"}};
    return spec;
  }

  // The pod's sandboxes as kubelet lists them (by its uid), through warmpoold.
  std::vector<cri::PodSandbox> PodSandboxes(const std::string& uid) {
    cri::PodSandboxFilter filter;
    (*filter.mutable_label_selector())["io.kubernetes.pod.uid"] = uid;
    cri::ListPodSandboxResponse listed;
    grpc::Status s = driver_->ListPodSandbox(&filter, &listed);
    EXPECT_TRUE(s.ok()) << StatusString(s);
    return {listed.items().begin(), listed.items().end()};
  }

  // The containers of `sandbox_id`, through warmpoold (kubelet's view) or
  // straight from containerd.
  std::vector<cri::Container> Containers(KubeletDriver& via, const std::string& sandbox_id) {
    cri::ContainerFilter filter;
    filter.set_pod_sandbox_id(sandbox_id);
    cri::ListContainersResponse listed;
    if (!via.ListContainers(&filter, &listed).ok()) return {};
    return {listed.containers().begin(), listed.containers().end()};
  }

  // host-local's allocations of the bed's network owned by `sandbox_id`.
  std::vector<std::string> IpsOf(const std::string& sandbox_id) {
    std::vector<std::string> out;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(ipam_dir_, ec)) {
      const std::string name = e.path().filename().string();
      if (name == "lock" || name.rfind("last_reserved_ip", 0) == 0) continue;
      std::string owner = ReadAll(e.path());
      if (owner.substr(0, owner.find_first_of("\r\n")) == sandbox_id) out.push_back(name);
    }
    return out;
  }

  // Creates (or, `existing` non-empty, reuses) the pod's app container and
  // starts it, as kubelet does; fills run's container fields.
  void CreateAndStartApp(PodRun* run, const std::string& existing) {
    std::string id = existing;
    if (id.empty()) {
      std::string image_id;
      ASSERT_RPC_OK(driver_->EnsureImage(env_.app_image, run->sandbox_config, run, &image_id));
      cri::ContainerConfig config = driver_->MakeContainerConfig(*run, 0, image_id);
      cri::CreateContainerResponse created;
      ASSERT_RPC_OK(
          driver_->CreateContainer(run->sandbox_id, config, run->sandbox_config, &created));
      id = created.container_id();
      run->container_configs.push_back(config);
    }
    run->container_ids.push_back(id);
    cri::StartContainerResponse started;
    ASSERT_RPC_OK(driver_->StartContainer(id, &started));
  }

  // Leaks once the pod is gone, the pool refilled and warmpoold stopped: only
  // the live entry's objects may remain.
  void ExpectOnlyTheLiveEntry(const std::set<std::string>& live_entries,
                              const std::set<std::string>& live_sandboxes,
                              const std::string& pod_uid) {
    auto managed = ManagedSandboxes(direct_->runtime(), pool_);
    ASSERT_TRUE(managed.has_value());
    std::set<std::string> in_containerd;
    for (const auto& sb : *managed) in_containerd.insert(sb.id());
    EXPECT_EQ(in_containerd, live_sandboxes) << "pool sandboxes in containerd";
    {
      cri::ListContainersResponse all;
      ASSERT_RPC_OK(direct_->ListContainers(nullptr, &all));
      for (const auto& c : all.containers()) {
        auto pool = c.labels().find("warmpool.io/pool");
        if (pool != c.labels().end() && pool->second == pool_) {
          EXPECT_EQ(live_sandboxes.count(c.pod_sandbox_id()), 1u) << "leaked container " << c.id();
        }
        auto uid = c.labels().find("io.kubernetes.pod.uid");
        EXPECT_FALSE(uid != c.labels().end() && uid->second == pod_uid)
            << "container " << c.id() << " of the removed pod is still in containerd";
      }
    }
    {
      cri::PodSandboxFilter filter;
      (*filter.mutable_label_selector())["warmpool.test/run"] = token_;
      cri::ListPodSandboxResponse listed;
      ASSERT_RPC_OK(direct_->ListPodSandbox(&filter, &listed));
      EXPECT_EQ(listed.items_size(), 0) << "the removed pod's sandbox is still in containerd";
    }
    const std::string pool_dir = pool_parent_ + "/" + pool_;
    for (const std::string& dir : CgroupDirsBelow(pool_parent_)) {
      if (dir == pool_dir) continue;
      bool owned = false;
      for (const auto& id : live_entries) {
        const std::string entry_dir = pool_dir + "/" + id;
        if (dir == entry_dir || dir.rfind(entry_dir + "/", 0) == 0) owned = true;
      }
      EXPECT_TRUE(owned) << "leaked cgroup " << dir << "\n" << LogOf(fs::path(dir).filename());
    }
    std::error_code ec;
    for (const auto& d : fs::directory_iterator(daemon_->state_dir() / "pool-logs", ec)) {
      EXPECT_EQ(live_entries.count(d.path().filename().string()), 1u)
          << "leaked " << d.path() << "\n"
          << LogOf(d.path().filename().string());
    }
    for (const auto& f : fs::directory_iterator(daemon_->state_dir() / "adopted", ec)) {
      ADD_FAILURE() << "hand-off record left: " << f.path();
    }
  }

  std::string Log() { return daemon_ ? daemon_->LogTail(size_t{1} << 24) : ""; }
  // The daemon's log lines that mention `what` (an entry or sandbox id).
  std::string LogOf(const std::string& what) {
    std::stringstream all(Log());
    std::string out;
    for (std::string line; std::getline(all, line);) {
      if (line.find(what) != std::string::npos) out += line + "\n";
    }
    return out;
  }

  TestBedEnv env_;
  fs::path dir_;
  fs::path ipam_dir_;
  std::string token_;
  std::string pool_parent_;
  std::string pool_;
  std::unique_ptr<WarmpooldProcess> daemon_;
  std::unique_ptr<AdminClient> admin_;
  std::unique_ptr<KubeletDriver> driver_;
  std::unique_ptr<KubeletDriver> direct_;  // straight to containerd
};

TEST_P(CrashPointTest, KilledHandOffRecoversWithoutLosingThePodOrLeaking) {
  const CrashPoint& param = GetParam();
  ASSERT_NO_FATAL_FAILURE(StartDaemon(param.point));
  ASSERT_TRUE(WaitFull()) << Log();
  const auto entry = admin_->Entries(pool_).at(0);

  // kubelet's pod, up to the call warmpoold dies in.
  PodRun run;
  run.spec = Pod();
  run.sandbox_config = driver_->MakeSandboxConfig(run.spec);
  const std::string uid = run.sandbox_config.metadata().uid();
  const std::string kubelet_cgroup = run.sandbox_config.linux().cgroup_parent();
  grpc::Status died;
  if (param.kind != Kind::kContainer) {
    died = driver_->RunPodSandbox(run.sandbox_config, "", &run.run_sandbox);
  } else {
    ASSERT_RPC_OK(driver_->RunPodSandbox(run.sandbox_config, "", &run.run_sandbox));
    run.sandbox_id = run.run_sandbox.pod_sandbox_id();
    ASSERT_EQ(run.sandbox_id, entry.sandbox_id()) << "not a hit\n" << Log();
    ASSERT_RPC_OK(driver_->PodSandboxStatus(run.sandbox_id, false, &run.sandbox_status));
    run.pod_ip = run.sandbox_status.status().network().ip();
    std::string image_id;
    ASSERT_RPC_OK(driver_->EnsureImage(env_.app_image, run.sandbox_config, &run, &image_id));
    cri::ContainerConfig config = driver_->MakeContainerConfig(run, 0, image_id);
    run.container_configs.push_back(config);
    cri::CreateContainerResponse created;
    died = driver_->CreateContainer(run.sandbox_id, config, run.sandbox_config, &created);
  }
  EXPECT_TRUE(died.error_code() == grpc::StatusCode::UNAVAILABLE ||
              died.error_code() == grpc::StatusCode::CANCELLED)
      << "the call warmpoold died in answered " << StatusString(died) << "\n"
      << Log();
  const std::optional<int> exit = daemon_->WaitForExit(15s);
  ASSERT_TRUE(exit.has_value()) << "warmpoold still runs after the call\n" << Log();
  EXPECT_TRUE(WIFSIGNALED(*exit) && WTERMSIG(*exit) == SIGKILL) << "wait status " << *exit << "\n"
                                                                << Log();
  EXPECT_NE(Log().find(std::string("fail point ") + param.point + " reached"), std::string::npos)
      << Log();

  // Restarted on the same state, no fail point.
  ASSERT_NO_FATAL_FAILURE(StartDaemon(""));

  // A hand-off cut short is undone by recovery, before anything is served:
  // the entry's sandbox, its cgroups (the pool's and those moved into
  // kubelet's pod cgroup), its pod network.
  if (!param.sandbox_kept) {
    cri::PodSandboxStatusResponse gone;
    EXPECT_EQ(direct_->PodSandboxStatus(entry.sandbox_id(), false, &gone).error_code(),
              grpc::StatusCode::NOT_FOUND)
        << "the sandbox of a hand-off cut short is still in containerd\n"
        << Log();
    EXPECT_FALSE(CgroupExistsAnywhere(pool_parent_ + "/" + pool_ + "/" + entry.id()))
        << "the claimed entry's cgroup is left\n"
        << Log();
    EXPECT_FALSE(CgroupExistsAnywhere(kubelet_cgroup + "/" + entry.sandbox_id()))
        << "a cgroup moved into kubelet's pod cgroup is left\n"
        << Log();
    EXPECT_FALSE(fs::exists(daemon_->state_dir() / "pool-logs" / entry.id()));
    EXPECT_FALSE(fs::exists(daemon_->state_dir() / "adopted" / (entry.sandbox_id() + ".rec")));
    if (param.kind == Kind::kLateSandbox) {
      EXPECT_TRUE(IpsOf(entry.sandbox_id()).empty())
          << "the pod network of a hand-off cut short is still allocated";
    }
  }

  // kubelet's next sync: a READY sandbox of the pod is kept, else it is run again.
  std::vector<cri::PodSandbox> listed = PodSandboxes(uid);
  auto ready = std::find_if(listed.begin(), listed.end(), [](const cri::PodSandbox& sb) {
    return sb.state() == cri::SANDBOX_READY;
  });
  if (param.sandbox_kept) {
    ASSERT_NE(ready, listed.end()) << "the adopted pod lost its sandbox\n" << Log();
    EXPECT_EQ(ready->id(), entry.sandbox_id());
    run.sandbox_id = ready->id();
  } else {
    EXPECT_TRUE(listed.empty()) << "a sandbox kubelet never got is listed for the pod";
    ASSERT_RPC_OK(driver_->RunPodSandbox(run.sandbox_config, "", &run.run_sandbox));
    run.sandbox_id = run.run_sandbox.pod_sandbox_id();
    EXPECT_NE(run.sandbox_id, entry.sandbox_id());
  }

  // Exactly one sandbox, READY, with kubelet's identity.
  listed = PodSandboxes(uid);
  ASSERT_EQ(listed.size(), 1u) << Log();
  EXPECT_EQ(listed[0].id(), run.sandbox_id);
  EXPECT_EQ(listed[0].state(), cri::SANDBOX_READY);
  const auto& want = run.sandbox_config;
  ASSERT_RPC_OK(driver_->PodSandboxStatus(run.sandbox_id, false, &run.sandbox_status));
  const auto& status = run.sandbox_status.status();
  EXPECT_EQ(Diff(want.metadata(), status.metadata()), "");
  EXPECT_EQ(Diff(want.metadata(), listed[0].metadata()), "");
  EXPECT_EQ(status.labels().size(), want.labels().size()) << status.DebugString();
  for (const auto& [k, v] : want.labels()) {
    auto it = status.labels().find(k);
    EXPECT_TRUE(it != status.labels().end() && it->second == v) << "label " << k;
  }
  for (const auto& [k, v] : want.annotations()) {
    auto it = status.annotations().find(k);
    EXPECT_TRUE(it != status.annotations().end() && it->second == v) << "annotation " << k;
  }
  EXPECT_FALSE(HasWarmpoolLabel(status.labels()));
  run.pod_ip = status.network().ip();
  ASSERT_FALSE(run.pod_ip.empty()) << "the pod's sandbox has no IP";
  if (param.kind == Kind::kLateSandbox && param.sandbox_kept) {
    EXPECT_EQ(IpsOf(run.sandbox_id), std::vector<std::string>{run.pod_ip})
        << "the pod's bound network must survive the restart";
  }

  // The app container: kubelet keeps one it was answered about after all
  // (a recorded adoption lists under kubelet's name), else creates it.
  std::string existing;
  if (param.kind == Kind::kContainer) {
    std::vector<cri::Container> containers = Containers(*driver_, run.sandbox_id);
    if (param.container_kept) {
      ASSERT_EQ(containers.size(), 1u) << "the adopted container is not listed\n" << Log();
      EXPECT_EQ(Diff(run.container_configs[0].metadata(), containers[0].metadata()), "");
      EXPECT_EQ(containers[0].state(), cri::CONTAINER_CREATED);
      EXPECT_FALSE(HasWarmpoolLabel(containers[0].labels()));
      existing = containers[0].id();
    } else {
      EXPECT_TRUE(containers.empty()) << "a pre-started container kubelet never got is listed";
    }
  }
  ASSERT_NO_FATAL_FAILURE(CreateAndStartApp(&run, existing));
  auto hello = WaitForHttp(run.pod_ip, 8080, "/", 30s);
  ASSERT_TRUE(hello.has_value()) << "the pod's app does not answer on " << run.pod_ip;
  EXPECT_EQ(hello->body, "hostname=" + run.spec.name + "\n");
  auto resolv = WaitForHttp(run.pod_ip, 8080, "/file?path=/etc/resolv.conf", 10s);
  ASSERT_TRUE(resolv.has_value());
  EXPECT_NE(resolv->body.find("options ndots:5"), std::string::npos) << resolv->body;
  if (param.kind == Kind::kContainer) {
    // In containerd, only kubelet's container is left in the sandbox: an
    // unclaimed pre-started one is removed.
    std::set<std::string> upstream;
    EXPECT_TRUE(WaitFor(
        [&] {
          upstream.clear();
          for (const auto& c : Containers(*direct_, run.sandbox_id)) upstream.insert(c.id());
          return upstream == std::set<std::string>{run.container_ids[0]};
        },
        30s))
        << ::testing::PrintToString(upstream);
  }

  // Nothing of a pool shows through warmpoold.
  {
    cri::ListPodSandboxResponse all;
    ASSERT_RPC_OK(driver_->ListPodSandbox(nullptr, &all));
    for (const auto& sb : all.items()) {
      EXPECT_FALSE(HasWarmpoolLabel(sb.labels())) << "pool sandbox visible: " << sb.id();
    }
    cri::ListContainersResponse containers;
    ASSERT_RPC_OK(driver_->ListContainers(nullptr, &containers));
    for (const auto& c : containers.containers()) {
      EXPECT_FALSE(HasWarmpoolLabel(c.labels())) << "pool container visible: " << c.id();
    }
  }

  // kubelet removes the pod; the pool refills; warmpoold stops.
  ASSERT_RPC_OK(driver_->StopAndRemovePod(run));
  EXPECT_FALSE(CgroupExistsAnywhere(kubelet_cgroup + "/" + run.sandbox_id));
  ASSERT_TRUE(WaitFull()) << Log();
  std::set<std::string> live_entries, live_sandboxes;
  for (const auto& e : admin_->Entries(pool_)) {
    live_entries.insert(e.id());
    live_sandboxes.insert(e.sandbox_id());
  }
  ASSERT_EQ(live_entries.size(), 1u);
  EXPECT_EQ(live_entries.count(entry.id()), 0u) << "a claimed entry went back to the pool";
  EXPECT_EQ(daemon_->Stop(), "");
  ExpectOnlyTheLiveEntry(live_entries, live_sandboxes, uid);
  EXPECT_TRUE(IpsOf(entry.sandbox_id()).empty());
  EXPECT_TRUE(IpsOf(run.sandbox_id).empty());
}

INSTANTIATE_TEST_SUITE_P(
    Sandbox, CrashPointTest,
    ::testing::Values(CrashPoint{"handoff.claimed", Kind::kSandbox, false},
                      CrashPoint{"handoff.moved", Kind::kSandbox, false},
                      CrashPoint{"handoff.identity", Kind::kSandbox, false},
                      CrashPoint{"handoff.recorded", Kind::kSandbox, true},
                      CrashPoint{"handoff.identity", Kind::kLateSandbox, false},
                      CrashPoint{"handoff.recorded", Kind::kLateSandbox, true}),
    CaseName);

INSTANTIATE_TEST_SUITE_P(
    Container, CrashPointTest,
    ::testing::Values(CrashPoint{"container.linked", Kind::kContainer, true, false},
                      CrashPoint{"container.mounted", Kind::kContainer, true, false},
                      CrashPoint{"container.recorded", Kind::kContainer, true, true}),
    CaseName);

}  // namespace
}  // namespace warmpool::testing
