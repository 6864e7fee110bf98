// The hand-off with the systemd cgroup driver, against a real systemd and a
// real containerd using runc's systemd driver (SystemdCgroup = true), both
// in the systemd node of test/harness/systemd.sh: pool entries live in
// warmpool's slices, kubelet's pod gets a slice cgroup_parent, and the
// adopted sandbox must end up in `cri-containerd-<id>.scope` in the pod's
// slice — as systemd itself reports it — with its resources, and no unit
// may remain after the pod is removed.
//
// Runs inside the node: with WP_TEST_SYSTEMD_ENTER set (the node's `enter`
// script), main() re-executes this binary through it. Without a node the
// tests skip, saying why, unless WP_TEST_REQUIRE_SYSTEMD=1.

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "daemon/systemd_cgroups.h"
#include "test/integration/kubelet_driver.h"
#include "test/integration/pool_fixture.h"
#include "test/integration/pool_support.h"
#include "test/integration/test_bed.h"
#include "test/integration/warmpoold_process.h"
#include "warmpool_admin.grpc.pb.h"

namespace warmpool::testing {
namespace {

using namespace std::chrono_literals;

// `systemctl show UNIT -p PROP --value`: what systemd itself says.
std::string Show(const std::string& unit, const std::string& property) {
  std::string cmd = "systemctl show '" + unit + "' -p " + property + " --value 2>&1";
  std::string out;
  if (FILE* p = ::popen(cmd.c_str(), "r")) {
    char buf[512];
    while (size_t n = ::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
    ::pclose(p);
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

// Units systemd has loaded whose names match `pattern`.
std::string ListUnits(const std::string& pattern) {
  std::string cmd =
      "systemctl list-units --all --plain --no-legend --no-pager '" + pattern + "' 2>&1";
  std::string out;
  if (FILE* p = ::popen(cmd.c_str(), "r")) {
    char buf[512];
    while (size_t n = ::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
    ::pclose(p);
  }
  return out;
}

std::string Procs(const std::string& hierarchy, const std::string& cgroup) {
  return ReadAll("/sys/fs/cgroup/" + hierarchy + cgroup + "/cgroup.procs");
}

class HandoffSystemdTest : public PoolBedTest {
 protected:
  HandoffSystemdTest() : PoolBedTest("wpsdh") {}

  void SetUp() override {
    const char* inside = ::getenv("WP_TEST_IN_SYSTEMD_NODE");
    const bool in_node = inside != nullptr && std::string(inside) == "1" &&
                         std::filesystem::exists("/run/systemd/private") &&
                         ReadAll("/proc/1/comm") == "systemd\n";
    if (!in_node) {
      const char* req = ::getenv("WP_TEST_REQUIRE_SYSTEMD");
      const std::string why =
          "no systemd node: PID 1 is not systemd here; start one with "
          "test/harness/systemd.sh start DIR and export WP_TEST_SYSTEMD_ENTER=DIR.sd/enter";
      if (req != nullptr && std::string(req) == "1")
        FAIL() << why << " (WP_TEST_REQUIRE_SYSTEMD=1)";
      GTEST_SKIP() << why;
    }
    in_node_ = true;
    PoolBedTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    pool_parent_ = "warmpool" + token_ + ".slice";  // a slice: the systemd driver
  }

  bool in_node_ = false;

  void TearDown() override {
    if (!in_node_) return;  // skipped before the bed was made: nothing to check
    StopDaemon();
    for (const std::string& slice : pod_slices_) (void)systemd_.StopUnit(slice);
    // The QoS slices systemd made as the pod slice's parents (kubelet keeps
    // them for the node's life; the test node is not kept).
    if (!pod_slices_.empty()) {
      EXPECT_TRUE(systemd_.StopUnit("kubepods-besteffort.slice").ok());
      EXPECT_TRUE(systemd_.StopUnit("kubepods.slice").ok());
    }
    EXPECT_EQ(ListUnits("warmpool" + token_ + "*"), "") << "pool slices left behind";
    PoolBedTest::TearDown();
  }

  // Pods get the slices MakePodSlice makes, not the bed's cgroupfs parent.
  KubeletDriver::Options DriverOptions() const override {
    KubeletDriver::Options d = PoolBedTest::DriverOptions();
    d.cgroup_parent.clear();
    return d;
  }

  void StartDaemon(int pool_size) {
    PoolBedTest::StartDaemon("[[pool]]\nname = \"sd-any\"\nsize = " + std::to_string(pool_size) +
                             "\nnetwork = \"early\"\ndefault = true\n[pool.sandbox]\n"
                             "dns = { servers = [\"127.0.0.1\"] }\n");
  }

  // kubelet's pod slice (systemd driver), made as kubelet makes it: a
  // transient slice with the pod's resources, before RunPodSandbox.
  std::string MakePodSlice(const std::string& uid) {
    std::string u = uid;
    for (char& c : u) {
      if (c == '-') c = '_';
    }
    const std::string slice = "kubepods-besteffort-pod" + u + ".slice";
    absl::Status s =
        systemd_.StartTransientUnit(slice, {{"Description", std::string("test pod ") + uid},
                                            {"MemoryMax", uint64_t{512} << 20},
                                            {"CPUWeight", uint64_t{4}}});
    EXPECT_TRUE(s.ok()) << s;
    pod_slices_.push_back(slice);
    return slice;
  }

  std::vector<std::string> pod_slices_;
  SdBusSystemd systemd_;
};

TEST_F(HandoffSystemdTest, SandboxMovesIntoAScopeInThePodSliceAndRemoveLeavesNoUnit) {
  StartDaemon(/*pool_size=*/1);
  ASSERT_TRUE(WaitFor([&] { return Frozen().size() == 1; }, 60s)) << daemon_->LogTail();
  const auto entry = Frozen().front();
  const std::string sandbox = entry.sandbox_id();
  const std::string scope = ContainerScopeName(sandbox);

  // The entry really is in warmpool's slices, through runc's systemd driver.
  const std::string entry_slice = SliceUnitName(EntrySlicePath(pool_parent_, "sd-any", entry.id()));
  EXPECT_EQ(Show(scope, "Slice"), entry_slice);
  EXPECT_EQ(Show(entry_slice, "ActiveState"), "active");

  PodSpec spec;
  spec.name = "sd-" + token_;
  spec.uid = "u-" + token_;
  cri::PodSandboxConfig config = driver_->MakeSandboxConfig(spec);
  const std::string pod_slice = MakePodSlice(spec.uid);
  config.mutable_linux()->set_cgroup_parent(pod_slice);
  cri::RunPodSandboxResponse resp;
  ASSERT_RPC_OK(driver_->RunPodSandbox(config, "", &resp));
  EXPECT_EQ(resp.pod_sandbox_id(), sandbox) << "no hit\n" << daemon_->LogTail();
  const std::string log = daemon_->LogTail(size_t{1} << 24);
  const size_t hit = log.find("hit: pod default/" + spec.name);
  ASSERT_NE(hit, std::string::npos) << daemon_->LogTail();
  std::cout << "warmpoold: " << log.substr(hit, log.find('\n', hit) - hit) << "\n";

  // systemd's view: the sandbox's scope is active in the pod's slice, with
  // containerd's sandbox resources (cpu shares 2, as runc's v1 driver sets
  // them), delegated.
  EXPECT_EQ(Show(scope, "ActiveState"), "active");
  EXPECT_EQ(Show(scope, "Slice"), pod_slice);
  EXPECT_EQ(Show(scope, "CPUShares"), "2");
  EXPECT_EQ(Show(scope, "Delegate"), "yes");
  const std::string cgroup = Show(scope, "ControlGroup");
  EXPECT_EQ(cgroup, ExpandSlice(pod_slice).value() + "/" + scope);
  EXPECT_EQ(ListUnits(MoveScopeName(sandbox)), "") << "the temporary scope stayed";
  // The entry's slice goes once refill_delay (500ms) is over: that cleanup
  // stays off the hand-off's CPU.
  EXPECT_TRUE(WaitFor([&] { return Show(entry_slice, "ActiveState") != "active"; }, 10s))
      << "the entry's slice was not stopped";

  // The kernel's view: the pause process is in that cgroup in every
  // hierarchy (systemd's and the ones joined by hand), thawed.
  const std::string pause = Procs("systemd", cgroup);
  ASSERT_FALSE(pause.empty()) << "nothing in " << cgroup;
  for (const char* h : {"memory", "cpu", "pids", "freezer", "unified"}) {
    EXPECT_EQ(Procs(h, cgroup), pause) << h;
  }
  EXPECT_EQ(ReadAll("/sys/fs/cgroup/freezer" + cgroup + "/freezer.state"), "THAWED\n");
  // The pod slice's limit is over it (kubelet's pod-level resources).
  EXPECT_EQ(
      ReadAll("/sys/fs/cgroup/memory" + ExpandSlice(pod_slice).value() + "/memory.limit_in_bytes"),
      std::to_string(uint64_t{512} << 20) + "\n");

  // The sandbox works: containerd still serves it.
  cri::PodSandboxStatusResponse status;
  ASSERT_RPC_OK(driver_->PodSandboxStatus(sandbox, false, &status));
  EXPECT_EQ(status.status().state(), cri::SANDBOX_READY);
  EXPECT_EQ(status.status().metadata().name(), spec.name);

  // kill -9 and restart: the record brings the adopted pod back, and the
  // scope is left alone.
  daemon_->Kill();
  ASSERT_EQ(daemon_->Start(), "");
  // (Recovery runs before warmpoold serves when containerd is up; the wait
  // only keeps this test about the systemd side.)
  EXPECT_TRUE(WaitFor(
      [&] {
        return driver_->PodSandboxStatus(sandbox, false, &status).ok() &&
               status.status().metadata().name() == spec.name;
      },
      30s))
      << daemon_->LogTail();
  EXPECT_EQ(Show(scope, "ActiveState"), "active");
  EXPECT_EQ(Procs("systemd", cgroup), pause);

  // kubelet's teardown: nothing of the pod stays in systemd or cgroupfs.
  cri::StopPodSandboxResponse stopped;
  ASSERT_RPC_OK(driver_->StopPodSandbox(sandbox, &stopped));
  cri::RemovePodSandboxResponse removed;
  ASSERT_RPC_OK(driver_->RemovePodSandbox(sandbox, &removed));
  EXPECT_TRUE(WaitFor([&] { return Show(scope, "LoadState") == "not-found"; }, 10s))
      << Show(scope, "ActiveState");
  for (const char* h : {"systemd", "memory", "cpu", "freezer", "cpuset", "unified"}) {
    EXPECT_FALSE(std::filesystem::exists("/sys/fs/cgroup/" + std::string(h) + cgroup)) << h;
  }
}

TEST_F(HandoffSystemdTest, UnsupportedParentOrFailedMoveFallsBackColdAndCleansUp) {
  StartDaemon(/*pool_size=*/1);
  ASSERT_TRUE(WaitFor([&] { return Frozen().size() == 1; }, 60s)) << daemon_->LogTail();
  const std::string sandbox = Frozen().front().sandbox_id();

  // A slice name systemd refuses ("a--b"): the move fails inside systemd's
  // naming, the entry is rolled back and the pod starts cold, and the
  // request reaches containerd unchanged (which refuses it the same way).
  PodSpec spec;
  spec.name = "sdbad-" + token_;
  cri::PodSandboxConfig config = driver_->MakeSandboxConfig(spec);
  config.mutable_linux()->set_cgroup_parent("kubepods--bad.slice");
  cri::RunPodSandboxResponse resp;
  (void)driver_->RunPodSandbox(config, "", &resp);
  EXPECT_NE(resp.pod_sandbox_id(), sandbox);
  EXPECT_TRUE(WaitFor(
      [&] {
        return daemon_->LogTail(size_t{1} << 24).find("[handoff_failed]") != std::string::npos;
      },
      10s))
      << daemon_->LogTail();
  EXPECT_TRUE(
      WaitFor([&] { return Show(ContainerScopeName(sandbox), "LoadState") == "not-found"; }, 30s));
  EXPECT_EQ(ListUnits(MoveScopeName(sandbox)), "");
}

// An app pool under the systemd driver: the pre-started container goes,
// still frozen, into its own scope in the pod's slice; CreateContainer gives
// the scope kubelet's resources as unit properties; StartContainer thaws it
// and the app answers at once; UpdateContainerResources and stats follow
// the scope; teardown leaves no unit.
TEST_F(HandoffSystemdTest, AppContainerIsAdoptedIntoItsOwnScopeFrozenUntilStarted) {
  TestPool pool;
  pool.name = "sd-app";
  TestPool::Container app;
  app.image = env_.app_image;
  app.env = {{"INIT_SECONDS", "3"}};
  pool.containers.push_back(app);
  PoolBedTest::StartDaemon(PoolsToml({pool}));
  ASSERT_TRUE(WaitFor([&] { return Frozen().size() == 1; }, 90s)) << daemon_->LogTail();
  const std::string sandbox = Frozen().front().sandbox_id();

  PodSpec spec;
  spec.name = "sdapp-" + token_;
  spec.uid = "ua-" + token_;
  spec.annotations["warmpool.io/pool"] = "sd-app";
  spec.containers[0].env = {{"INIT_SECONDS", "3"}};
  spec.containers[0].cpu_shares = 256;
  spec.containers[0].memory_limit_bytes = int64_t{200} << 20;
  PodRun run;
  run.spec = spec;
  run.sandbox_config = driver_->MakeSandboxConfig(spec);
  const std::string pod_slice = MakePodSlice(spec.uid);
  run.sandbox_config.mutable_linux()->set_cgroup_parent(pod_slice);
  ASSERT_RPC_OK(driver_->RunPodSandbox(run.sandbox_config, "", &run.run_sandbox));
  ASSERT_EQ(run.run_sandbox.pod_sandbox_id(), sandbox) << "no hit\n" << daemon_->LogTail();
  run.sandbox_id = sandbox;
  ASSERT_RPC_OK(driver_->PodSandboxStatus(sandbox, false, &run.sandbox_status));
  run.pod_ip = run.sandbox_status.status().network().ip();
  std::string image_id;
  ASSERT_RPC_OK(driver_->EnsureImage(env_.app_image, run.sandbox_config, &run, &image_id));
  cri::ContainerConfig config = driver_->MakeContainerConfig(run, 0, image_id);
  cri::CreateContainerResponse created;
  ASSERT_RPC_OK(driver_->CreateContainer(sandbox, config, run.sandbox_config, &created));
  const std::string cid = created.container_id();
  const std::string log = daemon_->LogTail(size_t{1} << 24);
  const size_t hit = log.find("hit: pod default/" + spec.name + " container app pool sd-app");
  ASSERT_NE(hit, std::string::npos) << "the pre-started container was not adopted\n" << log;
  std::cout << "warmpoold: " << log.substr(hit, log.find('\n', hit) - hit) << "\n";

  // Its own scope in the pod's slice, with kubelet's resources as systemd
  // properties (runc's v1 names), delegated; its processes frozen there.
  const std::string scope = ContainerScopeName(cid);
  EXPECT_EQ(Show(scope, "ActiveState"), "active");
  EXPECT_EQ(Show(scope, "Slice"), pod_slice);
  EXPECT_EQ(Show(scope, "Delegate"), "yes");
  EXPECT_EQ(Show(scope, "CPUShares"), "256");
  EXPECT_EQ(Show(scope, "MemoryLimit"), std::to_string(uint64_t{200} << 20));
  const std::string cgroup = Show(scope, "ControlGroup");
  ASSERT_EQ(cgroup, ExpandSlice(pod_slice).value() + "/" + scope);
  const std::string procs = Procs("systemd", cgroup);
  ASSERT_FALSE(procs.empty()) << "nothing in " << cgroup;
  for (const char* h : {"memory", "cpu", "pids", "freezer"}) EXPECT_EQ(Procs(h, cgroup), procs) << h;
  EXPECT_EQ(ReadCgroupNumber("cpu", cgroup, "cpu.shares"), std::optional<uint64_t>(256));
  EXPECT_EQ(ReadAll("/sys/fs/cgroup/freezer" + cgroup + "/freezer.state"), "FROZEN\n")
      << "kubelet has not started it yet";
  EXPECT_EQ(ListUnits(MoveScopeName(cid)), "") << "the temporary scope stayed";

  // StartContainer thaws it; the app's init was done in the pool.
  cri::StartContainerResponse started;
  ASSERT_RPC_OK(driver_->StartContainer(cid, &started));
  EXPECT_EQ(ReadAll("/sys/fs/cgroup/freezer" + cgroup + "/freezer.state"), "THAWED\n");
  auto hello = HttpGet(run.pod_ip, 8080, "/", std::chrono::steady_clock::now() + 2s);
  ASSERT_TRUE(hello.has_value()) << "the adopted app did not answer before its init time";
  EXPECT_EQ(hello->body, "hostname=" + spec.name + "\n");

  // Stats from the scope; UpdateContainerResources through systemd.
  cri::ContainerStatsResponse stats;
  ASSERT_RPC_OK(driver_->ContainerStats(cid, &stats));
  EXPECT_GT(stats.stats().memory().working_set_bytes().value(), 0u);
  EXPECT_GT(stats.stats().cpu().usage_core_nano_seconds().value(), 0u);
  {
    grpc::ClientContext ctx;
    cri::UpdateContainerResourcesRequest req;
    req.set_container_id(cid);
    req.mutable_linux()->set_cpu_shares(512);
    req.mutable_linux()->set_memory_limit_in_bytes(int64_t{300} << 20);
    cri::UpdateContainerResourcesResponse resp;
    ASSERT_RPC_OK(driver_->runtime().UpdateContainerResources(&ctx, req, &resp));
  }
  EXPECT_EQ(Show(scope, "CPUShares"), "512");
  EXPECT_EQ(Show(scope, "MemoryLimit"), std::to_string(uint64_t{300} << 20));
  EXPECT_EQ(ReadCgroupNumber("memory", cgroup, "memory.limit_in_bytes"),
            std::optional<uint64_t>(uint64_t{300} << 20));

  // kill -9 and restart: the adopted container is still kubelet's, in its
  // scope, and its stats and updates still follow the scope. Not while the
  // pool's refill is in RunPodSandbox: containerd 1.6 leaks what a
  // RunPodSandbox cancelled half way made (containerd#7733).
  ASSERT_TRUE(WaitFor(
      [&] {
        auto p = admin_->Pool("sd-app");
        return p && p->frozen() == 1 && p->creating() == 0 && p->warming() == 0;
      },
      90s))
      << "the pool did not refill\n" << daemon_->LogTail();
  daemon_->Kill();
  ASSERT_EQ(daemon_->Start(), "");
  cri::ContainerStatusResponse st;
  EXPECT_TRUE(WaitFor(
      [&] {
        return driver_->ContainerStatus(cid, false, &st).ok() &&
               st.status().metadata().name() == "app";
      },
      30s))
      << daemon_->LogTail();
  EXPECT_EQ(st.status().state(), cri::CONTAINER_RUNNING);
  EXPECT_EQ(Show(scope, "ActiveState"), "active");
  // The app's process is still in its scope (a helper process it ran while
  // thawed may have ended meanwhile: compare the one that was first).
  const std::string app_pid = procs.substr(0, procs.find('\n') + 1);
  for (const char* h : {"systemd", "memory", "freezer"}) {
    EXPECT_NE(("\n" + Procs(h, cgroup)).find("\n" + app_pid), std::string::npos)
        << h << ": " << Procs(h, cgroup);
  }
  ASSERT_RPC_OK(driver_->ContainerStats(cid, &stats));
  EXPECT_GT(stats.stats().memory().working_set_bytes().value(), 0u);
  {
    grpc::ClientContext ctx;
    cri::UpdateContainerResourcesRequest req;
    req.set_container_id(cid);
    req.mutable_linux()->set_cpu_shares(300);
    cri::UpdateContainerResourcesResponse resp;
    ASSERT_RPC_OK(driver_->runtime().UpdateContainerResources(&ctx, req, &resp));
  }
  EXPECT_EQ(Show(scope, "CPUShares"), "300");

  // kubelet's teardown: no unit, no cgroup.
  cri::StopContainerResponse stopped;
  ASSERT_RPC_OK(driver_->StopContainer(cid, 5, &stopped));
  cri::RemoveContainerResponse removed;
  ASSERT_RPC_OK(driver_->RemoveContainer(cid, &removed));
  ASSERT_RPC_OK(driver_->StopAndRemovePod(run));
  EXPECT_TRUE(WaitFor([&] { return Show(scope, "LoadState") == "not-found"; }, 10s))
      << Show(scope, "ActiveState");
  for (const char* h : {"systemd", "memory", "cpu", "freezer"}) {
    EXPECT_FALSE(std::filesystem::exists("/sys/fs/cgroup/" + std::string(h) + cgroup)) << h;
  }
}

}  // namespace
}  // namespace warmpool::testing

// Inside the systemd node or not at all: re-executes through the node's
// `enter` script when one is given and this process is not in it yet.
int main(int argc, char** argv) {
  const char* enter = ::getenv("WP_TEST_SYSTEMD_ENTER");
  const bool listing = argc > 1 && std::string(argv[1]).rfind("--gtest_list_tests", 0) == 0;
  if (enter != nullptr && *enter != '\0' && ::getenv("WP_TEST_IN_SYSTEMD_NODE") == nullptr &&
      !listing) {
    std::vector<char*> args;
    args.push_back(const_cast<char*>(enter));
    std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
    args.push_back(self.data());
    for (int i = 1; i < argc; ++i) args.push_back(argv[i]);
    args.push_back(nullptr);
    ::execv(enter, args.data());
    std::perror("exec WP_TEST_SYSTEMD_ENTER");
    return 1;
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
