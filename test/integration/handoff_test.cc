// The hand-off against a real containerd: kubelet's RunPodSandbox served by a
// frozen sandbox-pool entry, and the pod looks to kubelet as if created cold
// (identity in every read, hostname, resolv.conf, cgroup placement), its app
// serves, the record survives a warmpoold crash, and removal leaves nothing.

#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "test/integration/cri_compare.h"
#include "test/integration/kubelet_driver.h"
#include "test/integration/pool_fixture.h"
#include "test/integration/test_bed.h"
#include "test/integration/warmpoold_process.h"
#include "warmpool_admin.grpc.pb.h"

namespace warmpool::testing {
namespace {

using namespace std::chrono_literals;

class HandoffTest : public PoolBedTest {
 protected:
  HandoffTest() : PoolBedTest("wph") {}

  // One default sandbox pool "any" of `pool_size` entries.
  void StartDaemon(int pool_size) {
    PoolBedTest::StartDaemon("[[pool]]\nname = \"any\"\nsize = " + std::to_string(pool_size) +
                             "\nnetwork = \"early\"\ndefault = true\n[pool.sandbox]\n"
                             "dns = { servers = [\"127.0.0.1\"] }\n");
  }

  int Entries() { return static_cast<int>(EntryList().size()); }
};

TEST_F(HandoffTest, PodAdoptsAFrozenSandboxAndLooksCold) {
  StartDaemon(/*pool_size=*/1);
  ASSERT_TRUE(WaitFor([&] { return FrozenSandboxes().size() == 1; }, 30s)) << daemon_->LogTail();
  const std::string entry_sandbox = *FrozenSandboxes().begin();

  PodRun run;
  ASSERT_RPC_OK(driver_->StartPod(Pod("warm"), &run));
  EXPECT_EQ(run.sandbox_id, entry_sandbox) << "the pod did not get the frozen entry\n"
                                           << daemon_->LogTail();
  EXPECT_NE(daemon_->LogTail(size_t{1} << 24).find("hit: pod default/" + run.spec.name),
            std::string::npos)
      << daemon_->LogTail();

  // kubelet's identity in every read.
  const auto& want = run.sandbox_config;
  cri::PodSandboxStatusResponse status;
  ASSERT_RPC_OK(driver_->PodSandboxStatus(run.sandbox_id, false, &status));
  EXPECT_EQ(Diff(want.metadata(), status.status().metadata()), "");
  EXPECT_EQ(status.status().labels().size(), want.labels().size());
  for (const auto& [k, v] : want.labels()) EXPECT_EQ(status.status().labels().at(k), v) << k;
  for (const auto& [k, v] : want.annotations()) {
    EXPECT_EQ(status.status().annotations().at(k), v) << k;
  }
  EXPECT_EQ(status.status().state(), cri::SANDBOX_READY);
  cri::PodSandboxFilter filter;
  (*filter.mutable_label_selector())["io.kubernetes.pod.uid"] = want.metadata().uid();
  cri::ListPodSandboxResponse listed;
  ASSERT_RPC_OK(driver_->ListPodSandbox(&filter, &listed));
  ASSERT_EQ(listed.items_size(), 1) << "label selector on kubelet's labels must find it";
  EXPECT_EQ(listed.items(0).id(), run.sandbox_id);
  EXPECT_EQ(listed.items(0).metadata().name(), run.spec.name);
  // created_at is the hand-off time, not the entry's creation.
  const int64_t now_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
  EXPECT_LT(now_ns - listed.items(0).created_at(), int64_t{30} * 1000 * 1000 * 1000);

  // Inside: the app serves, with kubelet's hostname and DNS.
  auto root = WaitForHttp(run.pod_ip, 8080, "/", 30s);
  ASSERT_TRUE(root.has_value()) << "the app in the adopted sandbox does not answer";
  EXPECT_EQ(root->body, "hostname=" + run.spec.name + "\n");
  auto resolv = WaitForHttp(run.pod_ip, 8080, "/file?path=/etc/resolv.conf", 10s);
  ASSERT_TRUE(resolv.has_value());
  EXPECT_NE(resolv->body.find("search default.svc.cluster.local svc.cluster.local cluster.local"),
            std::string::npos)
      << resolv->body;
  EXPECT_NE(resolv->body.find("options ndots:5"), std::string::npos) << resolv->body;

  // Placement: the pause process is in kubelet's pod cgroup.
  const std::string pod_cgroup = want.linux().cgroup_parent() + "/" + run.sandbox_id;
  const std::string procs = ReadAll("/sys/fs/cgroup/memory" + pod_cgroup + "/cgroup.procs");
  EXPECT_FALSE(procs.empty()) << "nothing in " << pod_cgroup;

  // The record is on disk; the pool refills.
  EXPECT_TRUE(
      std::filesystem::exists(daemon_->state_dir() / "adopted" / (run.sandbox_id + ".rec")));
  EXPECT_TRUE(WaitFor([&] { return FrozenSandboxes().size() == 1; }, 30s));
  EXPECT_EQ(FrozenSandboxes().count(run.sandbox_id), 0u) << "an adopted entry went back";

  // kill -9, restart: the pod keeps kubelet's identity.
  daemon_->Kill();
  ASSERT_EQ(daemon_->Start(), "");
  cri::PodSandboxStatusResponse after;
  ASSERT_RPC_OK(driver_->PodSandboxStatus(run.sandbox_id, false, &after));
  EXPECT_EQ(after.status().metadata().name(), run.spec.name);
  EXPECT_EQ(after.status().labels().at("io.kubernetes.pod.uid"), want.metadata().uid());

  // Removal: the record and the moved cgroup go.
  ASSERT_RPC_OK(driver_->StopAndRemovePod(run));
  EXPECT_FALSE(
      std::filesystem::exists(daemon_->state_dir() / "adopted" / (run.sandbox_id + ".rec")));
  EXPECT_FALSE(std::filesystem::exists("/sys/fs/cgroup/memory" + pod_cgroup));
}

TEST_F(HandoffTest, MismatchStartsColdWithTheReason) {
  StartDaemon(/*pool_size=*/1);
  ASSERT_TRUE(WaitFor([&] { return FrozenSandboxes().size() == 1; }, 30s)) << daemon_->LogTail();
  const std::string entry_sandbox = *FrozenSandboxes().begin();
  PodSpec spec = Pod("cold");
  spec.runtime_handler = "runc";  // the pool serves the default handler only
  PodRun run;
  grpc::Status s = driver_->StartPod(spec, &run);
  // containerd may not know a "runc" handler name: either way, not the entry.
  EXPECT_NE(run.sandbox_id, entry_sandbox);
  EXPECT_NE(daemon_->LogTail(size_t{1} << 24).find("miss: pod default/" + spec.name),
            std::string::npos)
      << daemon_->LogTail();
  EXPECT_EQ(FrozenSandboxes().count(entry_sandbox), 1u) << "a miss must not consume an entry";
  (void)s;
}

}  // namespace
}  // namespace warmpool::testing

namespace warmpool::testing {
namespace {

// Fifty pods at once against a pool of five: every pod gets a working
// sandbox with its own identity, no entry is handed out twice, and at least
// the five frozen entries are used (the pool refills during the burst, so a
// few more hits are possible).
TEST_F(HandoffTest, FiftyConcurrentPodsFiveFrozenEntries) {
  StartDaemon(/*pool_size=*/5);
  ASSERT_TRUE(WaitFor([&] { return FrozenSandboxes().size() == 5; }, 60s)) << daemon_->LogTail();
  const std::set<std::string> frozen = FrozenSandboxes();

  constexpr int kPods = 50;
  std::vector<std::unique_ptr<KubeletDriver>> drivers;
  std::vector<cri::PodSandboxConfig> configs(kPods);
  std::vector<std::string> ids(kPods);
  std::vector<grpc::Status> results(kPods);
  for (int i = 0; i < kPods; ++i) {
    KubeletDriver::Options d;
    d.endpoint = daemon_->socket_path();
    d.work_dir = dir_ / ("burst" + std::to_string(i));
    d.cgroup_parent = env_.cgroup_parent;
    d.app_image = env_.app_image;
    d.cleanup_endpoint = env_.containerd_sock;
    drivers.push_back(std::make_unique<KubeletDriver>(d));
    configs[i] = drivers[i]->MakeSandboxConfig(Pod("b" + std::to_string(i)));
  }
  std::vector<std::thread> threads;
  for (int i = 0; i < kPods; ++i) {
    threads.emplace_back([&, i] {
      cri::RunPodSandboxResponse resp;
      results[i] = drivers[i]->RunPodSandbox(configs[i], "", &resp);
      ids[i] = resp.pod_sandbox_id();
    });
  }
  for (auto& t : threads) t.join();

  std::set<std::string> distinct;
  int hits = 0;
  for (int i = 0; i < kPods; ++i) {
    ASSERT_TRUE(results[i].ok()) << "pod " << i << ": " << StatusString(results[i]);
    distinct.insert(ids[i]);
    hits += frozen.count(ids[i]);
    cri::PodSandboxStatusResponse st;
    ASSERT_RPC_OK(drivers[i]->PodSandboxStatus(ids[i], false, &st));
    EXPECT_EQ(st.status().metadata().name(), configs[i].metadata().name())
        << "pod " << i << " sees another pod's identity";
    EXPECT_EQ(st.status().state(), cri::SANDBOX_READY);
  }
  EXPECT_EQ(distinct.size(), static_cast<size_t>(kPods)) << "a sandbox was handed out twice";
  EXPECT_EQ(hits, 5) << "all five frozen entries, each once, should serve pods";

  for (int i = 0; i < kPods; ++i) {
    cri::StopPodSandboxResponse stop;
    cri::RemovePodSandboxResponse rm;
    EXPECT_TRUE(drivers[i]->StopPodSandbox(ids[i], &stop).ok());
    EXPECT_TRUE(drivers[i]->RemovePodSandbox(ids[i], &rm).ok());
    EXPECT_EQ(drivers[i]->Cleanup(), "");
  }
}

}  // namespace
}  // namespace warmpool::testing
