// The app-pool hand-off against a real containerd: kubelet's pod adopts a
// frozen entry AND its pre-started, already-initialised app container. The
// same pod made cold (no pool) and warm (pool hit) looks the same to kubelet
// field by field, except ids and times; the warm app answers at once, with
// kubelet's hostname, DNS and mounts; its log is at kubelet's path and
// survives a rotation; its processes are in kubelet's cgroups, with
// kubelet's limits, and stats and resource updates follow them; it survives
// a warmpoold kill -9; removal leaves nothing. A container the matcher
// refuses is created cold in the adopted sandbox and the pre-started one goes.

#include <gtest/gtest.h>
#include <signal.h>

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

constexpr int kInitSeconds = 5;  // the app's init: a warm pod must not pay it

class AppHandoffTest : public PoolBedTest {
 protected:
  AppHandoffTest() : PoolBedTest("wpa") {}

  void SetUp() override {
    PoolBedTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    TestPool pool;
    pool.name = "web";
    pool.size = 1;
    TestPool::Container app;
    app.image = env_.app_image;
    app.env = {{"INIT_SECONDS", std::to_string(kInitSeconds)}};
    pool.containers.push_back(app);
    StartDaemon(PoolsToml({pool}));
  }

  void TearDown() override {
    StopDaemon();
    // Whatever a failed test left of the pool, straight from containerd.
    if (!pool_parent_.empty()) {
      auto cleanup = ForceRemovePools(env_.containerd_sock, {"web"}, pool_parent_);
      EXPECT_TRUE(cleanup.problems.empty());
    }
    PoolBedTest::TearDown();
  }

  bool WaitFrozen() {
    return WaitFor(
        [&] {
          auto p = admin_->Pool("web");
          return p && p->frozen() == 1;
        },
        90s);
  }

  PodSpec Pod(const std::string& name, bool warm) {
    PodSpec spec;
    spec.name = name + "-" + token_;
    spec.labels["warmpool.test/run"] = token_;
    if (warm) spec.annotations["warmpool.io/pool"] = "web";
    spec.containers[0].env = {{"INIT_SECONDS", std::to_string(kInitSeconds)}};
    return spec;
  }

  // kubelet's sequence up to CreateContainer; the container's id in run.
  void CreatePod(const PodSpec& spec, PodRun* run) {
    run->spec = spec;
    run->sandbox_config = driver_->MakeSandboxConfig(spec);
    ASSERT_RPC_OK(driver_->RunPodSandbox(run->sandbox_config, "", &run->run_sandbox));
    run->sandbox_id = run->run_sandbox.pod_sandbox_id();
    ASSERT_RPC_OK(driver_->PodSandboxStatus(run->sandbox_id, false, &run->sandbox_status));
    run->pod_ip = run->sandbox_status.status().network().ip();
    std::string image_id;
    ASSERT_RPC_OK(driver_->EnsureImage(env_.app_image, run->sandbox_config, run, &image_id));
    cri::ContainerConfig config = driver_->MakeContainerConfig(*run, 0, image_id);
    cri::CreateContainerResponse created;
    ASSERT_RPC_OK(
        driver_->CreateContainer(run->sandbox_id, config, run->sandbox_config, &created));
    run->container_configs.push_back(config);
    run->container_ids.push_back(created.container_id());
  }

  std::set<std::string> ContainersUpstream(const std::string& sandbox_id) {
    KubeletDriver::Options d;
    d.endpoint = env_.containerd_sock;
    d.work_dir = dir_ / "direct";
    KubeletDriver direct(d);
    cri::ContainerFilter f;
    f.set_pod_sandbox_id(sandbox_id);
    cri::ListContainersResponse listed;
    std::set<std::string> out;
    if (!direct.ListContainers(&f, &listed).ok()) return out;
    for (const auto& c : listed.containers()) out.insert(c.id());
    return out;
  }

  std::string Log() { return daemon_->LogTail(size_t{1} << 24); }
};

TEST_F(AppHandoffTest, WarmPodIsTheColdPodWithItsAppAlreadyRunning) {
  ASSERT_TRUE(WaitFrozen()) << daemon_->LogTail();
  const std::string entry_sandbox = admin_->Entries("web").at(0).sandbox_id();

  // Cold: no pool named, no default pool.
  PodRun cold;
  ASSERT_NO_FATAL_FAILURE(CreatePod(Pod("cold", false), &cold));
  cri::StartContainerResponse started;
  ASSERT_RPC_OK(driver_->StartContainer(cold.container_ids[0], &started));
  ASSERT_TRUE(WaitForHttp(cold.pod_ip, 8080, "/healthz", 30s).has_value());

  // Warm.
  PodRun warm;
  ASSERT_NO_FATAL_FAILURE(CreatePod(Pod("warm", true), &warm));
  EXPECT_EQ(warm.sandbox_id, entry_sandbox) << Log();
  const std::string cid = warm.container_ids[0];
  EXPECT_NE(Log().find("hit: pod default/" + warm.spec.name + " container app pool web"),
            std::string::npos)
      << Log();
  EXPECT_EQ(ContainersUpstream(warm.sandbox_id).count(cid), 1u)
      << "kubelet must get the pre-started container";

  // Created, not started: kubelet sees CREATED, and filters see it so.
  cri::ContainerStatusResponse st;
  ASSERT_RPC_OK(driver_->ContainerStatus(cid, false, &st));
  EXPECT_EQ(st.status().state(), cri::CONTAINER_CREATED);
  cri::ContainerFilter filter;
  filter.mutable_state()->set_state(cri::CONTAINER_CREATED);
  (*filter.mutable_label_selector())["io.kubernetes.pod.uid"] =
      warm.sandbox_config.metadata().uid();
  cri::ListContainersResponse listed;
  ASSERT_RPC_OK(driver_->ListContainers(&filter, &listed));
  ASSERT_EQ(listed.containers_size(), 1) << listed.DebugString();
  EXPECT_EQ(listed.containers(0).id(), cid);
  EXPECT_EQ(listed.containers(0).metadata().name(), "app");

  // containerd's own records (what cAdvisor names stats by) get kubelet's
  // labels, as the cold pod's have them (set right after the answers).
  for (const auto& [id, want] :
       std::vector<std::pair<std::string, google::protobuf::Map<std::string, std::string>>>{
           {cid, warm.container_configs[0].labels()},
           {warm.sandbox_id, warm.sandbox_config.labels()}}) {
    std::map<std::string, std::string> labels;
    EXPECT_TRUE(WaitFor(
        [&] {
          labels = ContainerdRecordLabels(env_.containerd_sock, id).value_or(labels);
          return std::all_of(want.begin(), want.end(), [&](const auto& kv) {
            return labels.count(kv.first) && labels.at(kv.first) == kv.second;
          });
        },
        10s))
        << id << " has " << ::testing::PrintToString(labels);
  }
  EXPECT_EQ(ContainerdRecordLabels(env_.containerd_sock, cid)
                .value_or(std::map<std::string, std::string>{})["io.kubernetes.pod.name"],
            warm.spec.name);

  ASSERT_RPC_OK(driver_->StartContainer(cid, &started));
  // The app's init (kInitSeconds) was done in the pool: it answers at once.
  auto hello = HttpGet(warm.pod_ip, 8080, "/", Clock::now() + std::chrono::seconds(kInitSeconds - 2));
  ASSERT_TRUE(hello.has_value()) << "the adopted app did not answer before its init time";
  EXPECT_EQ(hello->body, "hostname=" + warm.spec.name + "\n");

  // Field by field against the cold pod: equal but for ids, times and what
  // names the pod.
  cri::ContainerStatusResponse cold_st, warm_st;
  ASSERT_RPC_OK(driver_->ContainerStatus(cold.container_ids[0], false, &cold_st));
  ASSERT_RPC_OK(driver_->ContainerStatus(cid, false, &warm_st));
  cri::ContainerStatus want = cold_st.status();
  const cri::ContainerConfig& wc = warm.container_configs[0];
  want.set_id(cid);
  want.set_created_at(warm_st.status().created_at());
  want.set_started_at(warm_st.status().started_at());
  *want.mutable_metadata() = wc.metadata();
  *want.mutable_labels() = wc.labels();
  *want.mutable_annotations() = wc.annotations();
  *want.mutable_mounts() = wc.mounts();
  want.set_log_path(warm.sandbox_config.log_directory() + "/" + wc.log_path());
  EXPECT_EQ(Diff(want, warm_st.status()), "");
  EXPECT_EQ(warm_st.status().state(), cri::CONTAINER_RUNNING);

  // Inside: kubelet's mounts, DNS.
  auto hosts = WaitForHttp(warm.pod_ip, 8080, "/file?path=/etc/hosts", 10s);
  ASSERT_TRUE(hosts.has_value());
  EXPECT_NE(hosts->body.find("Kubernetes-managed hosts file"), std::string::npos) << hosts->body;
  auto token = WaitForHttp(warm.pod_ip, 8080,
                           "/file?path=/var/run/secrets/kubernetes.io/serviceaccount/token", 10s);
  ASSERT_TRUE(token.has_value());
  EXPECT_EQ(token->body, "test-token\n");
  auto resolv = WaitForHttp(warm.pod_ip, 8080, "/file?path=/etc/resolv.conf", 10s);
  ASSERT_TRUE(resolv.has_value());
  EXPECT_NE(resolv->body.find("options ndots:5"), std::string::npos) << resolv->body;

  // Logs at kubelet's path; a rotation (rename + ReopenContainerLog) goes on
  // in a new file at kubelet's path.
  const std::filesystem::path log = want.log_path();
  ASSERT_TRUE(WaitFor([&] { return ReadAll(log).find("GET /file") != std::string::npos; }, 10s))
      << ReadAll(log);
  std::filesystem::rename(log, log.string() + ".rotated");
  {
    grpc::ClientContext ctx;
    cri::ReopenContainerLogRequest req;
    req.set_container_id(cid);
    cri::ReopenContainerLogResponse resp;
    ASSERT_RPC_OK(driver_->runtime().ReopenContainerLog(&ctx, req, &resp));
  }
  ASSERT_TRUE(WaitForHttp(warm.pod_ip, 8080, "/after-rotation", 10s, 404).has_value());
  EXPECT_TRUE(WaitFor(
      [&] { return ReadAll(log).find("GET /after-rotation") != std::string::npos; }, 10s))
      << "new file: " << ReadAll(log);
  EXPECT_EQ(ReadAll(log.string() + ".rotated").find("/after-rotation"), std::string::npos);

  // Cgroups: the app's processes in <cgroup_parent>/<id>, kubelet's shares.
  const std::string cg = warm.sandbox_config.linux().cgroup_parent() + "/" + cid;
  EXPECT_FALSE(ReadAll("/sys/fs/cgroup/memory" + cg + "/cgroup.procs").empty()) << cg;
  EXPECT_EQ(ReadCgroupNumber("cpu", cg, "cpu.shares"), std::optional<uint64_t>(102));

  // Stats from where the processes are.
  cri::ContainerStatsResponse stats;
  ASSERT_RPC_OK(driver_->ContainerStats(cid, &stats));
  EXPECT_EQ(stats.stats().attributes().metadata().name(), "app");
  EXPECT_EQ(stats.stats().attributes().labels().at("io.kubernetes.pod.uid"),
            warm.sandbox_config.metadata().uid());
  EXPECT_GT(stats.stats().cpu().usage_core_nano_seconds().value(), 0u);
  EXPECT_GT(stats.stats().memory().working_set_bytes().value(), 0u);
  {
    grpc::ClientContext ctx;
    cri::ListContainerStatsRequest req;
    cri::ListContainerStatsResponse resp;
    ASSERT_RPC_OK(driver_->runtime().ListContainerStats(&ctx, req, &resp));
    bool found = false;
    for (const auto& s : resp.stats()) {
      EXPECT_NE(s.attributes().labels().count("warmpool.io/managed"), 1u) << s.DebugString();
      if (s.attributes().id() != cid) continue;
      found = true;
      EXPECT_EQ(s.attributes().metadata().name(), "app");
      EXPECT_GT(s.memory().working_set_bytes().value(), 0u);
    }
    EXPECT_TRUE(found) << "ListContainerStats must list the adopted container";
  }

  // UpdateContainerResources lands on the cgroup the processes are in.
  {
    grpc::ClientContext ctx;
    cri::UpdateContainerResourcesRequest req;
    req.set_container_id(cid);
    req.mutable_linux()->set_cpu_shares(512);
    req.mutable_linux()->set_cpu_period(100000);
    req.mutable_linux()->set_memory_limit_in_bytes(int64_t{256} << 20);
    cri::UpdateContainerResourcesResponse resp;
    ASSERT_RPC_OK(driver_->runtime().UpdateContainerResources(&ctx, req, &resp));
  }
  EXPECT_EQ(ReadCgroupNumber("cpu", cg, "cpu.shares"), std::optional<uint64_t>(512));
  EXPECT_EQ(ReadCgroupNumber("memory", cg, "memory.limit_in_bytes"),
            std::optional<uint64_t>(uint64_t{256} << 20));
  ASSERT_RPC_OK(driver_->ContainerStatus(cid, false, &warm_st));
  EXPECT_EQ(warm_st.status().resources().linux().cpu_shares(), 512);

  // kill -9 and restart: kubelet's view of the container is unchanged. Not
  // while the pool's refill is in RunPodSandbox: containerd 1.6 leaks the
  // shim of a RunPodSandbox cancelled half way (containerd#7733).
  ASSERT_TRUE(WaitFrozen()) << "the pool did not refill\n" << Log();
  daemon_->Kill();
  ASSERT_EQ(daemon_->Start(), "");
  cri::ContainerStatusResponse after;
  ASSERT_RPC_OK(driver_->ContainerStatus(cid, false, &after));
  EXPECT_EQ(Diff(warm_st.status(), after.status()), "");
  ASSERT_TRUE(WaitForHttp(warm.pod_ip, 8080, "/healthz", 10s).has_value());

  // Removal: record, cgroups and the pool's log directory go.
  ASSERT_RPC_OK(driver_->StopAndRemovePod(warm));
  ASSERT_RPC_OK(driver_->StopAndRemovePod(cold));
  EXPECT_FALSE(
      std::filesystem::exists(daemon_->state_dir() / "adopted" / (warm.sandbox_id + ".rec")));
  EXPECT_FALSE(CgroupExistsAnywhere(cg));
  EXPECT_FALSE(CgroupExistsAnywhere(warm.sandbox_config.linux().cgroup_parent() + "/" +
                                    warm.sandbox_id));
}

TEST_F(AppHandoffTest, MismatchedContainerStartsColdAndThePreStartedOneGoes) {
  ASSERT_TRUE(WaitFrozen()) << daemon_->LogTail();
  const auto entry = admin_->Entries("web").at(0);
  PodSpec spec = Pod("other", true);
  spec.containers[0].env = {{"INIT_SECONDS", "0"}};  // the template says kInitSeconds
  PodRun run;
  ASSERT_NO_FATAL_FAILURE(CreatePod(spec, &run));
  EXPECT_EQ(run.sandbox_id, entry.sandbox_id()) << "the sandbox is still served warm";
  EXPECT_NE(Log().find("miss: pod default/" + spec.name + " container app pool web"),
            std::string::npos)
      << Log();
  EXPECT_NE(Log().find("[env]"), std::string::npos) << Log();
  const std::string cid = run.container_ids[0];
  // Only kubelet's cold container is left in the sandbox.
  EXPECT_TRUE(WaitFor([&] { return ContainersUpstream(run.sandbox_id) == std::set{cid}; }, 30s));
  cri::StartContainerResponse started;
  ASSERT_RPC_OK(driver_->StartContainer(cid, &started));
  auto hello = WaitForHttp(run.pod_ip, 8080, "/", 30s);
  ASSERT_TRUE(hello.has_value());
  EXPECT_EQ(hello->body, "hostname=" + spec.name + "\n");
  ASSERT_RPC_OK(driver_->StopAndRemovePod(run));
}

}  // namespace
}  // namespace warmpool::testing
