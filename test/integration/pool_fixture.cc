#include "test/integration/pool_fixture.h"

#include <signal.h>
#include <stdlib.h>

#include <system_error>

#include "test/integration/test_bed.h"

namespace warmpool::testing {

using namespace std::chrono_literals;

void PoolBedTest::SetUp() {
  WP_REQUIRE_TEST_BED(env_);
  std::string tmpl = "/tmp/" + prefix_ + "-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
  dir_ = tmpl;
  token_ = KubeletDriver::UniqueToken();
  pool_parent_ = env_.cgroup_parent + "/pools-" + token_;
}

KubeletDriver::Options BedDriverOptions(const TestBedEnv& env, const std::filesystem::path& socket,
                                        const std::filesystem::path& work_dir) {
  KubeletDriver::Options d;
  d.endpoint = socket.string();
  d.work_dir = work_dir;
  d.cgroup_parent = env.cgroup_parent;
  d.app_image = env.app_image;
  d.cleanup_endpoint = env.containerd_sock;
  return d;
}

KubeletDriver::Options PoolBedTest::DriverOptions() const {
  return BedDriverOptions(env_, daemon_->socket_path(), dir_ / "pods");
}

void PoolBedTest::StartDaemon(const std::string& pools, const std::string& daemon_config) {
  WarmpooldProcess::Options o;
  o.upstream = env_.containerd_sock;
  o.dir = dir_ / "wp";
  o.extra_daemon_config = PoolDaemonToml(pool_parent_, daemon_config);
  o.extra_config = pools;
  daemon_ = std::make_unique<WarmpooldProcess>(o);
  ASSERT_EQ(daemon_->Start(), "");
  driver_ = std::make_unique<KubeletDriver>(DriverOptions());
  admin_ = std::make_unique<AdminClient>(daemon_->admin_path().string());
}

void PoolBedTest::StopDaemon() {
  if (driver_) {
    EXPECT_EQ(driver_->Cleanup(), "");
  }
  driver_.reset();
  if (daemon_ && daemon_->running()) {
    // Drain the pools (reload with none), then stop.
    EXPECT_EQ(RewriteConfigTail(daemon_->config_path().string(), ""), "");
    ::kill(daemon_->pid(), SIGHUP);
    EXPECT_TRUE(WaitFor([&] { return EntryList().empty(); }, 60s)) << daemon_->LogTail();
    EXPECT_EQ(daemon_->Stop(), "");
  }
  daemon_.reset();
  admin_.reset();
}

void PoolBedTest::TearDown() {
  StopDaemon();
  std::error_code ec;
  if (!pool_parent_.empty() && pool_parent_.front() == '/') {
    // Empty by now; rmdir fails (and says nothing) if something was left,
    // which the bed's leak check then reports.
    for (const std::string& h : CgroupHierarchies()) {
      std::filesystem::remove(std::filesystem::path("/sys/fs/cgroup") / h / pool_parent_.substr(1),
                              ec);
    }
  }
  if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
}

std::vector<adminpb::Entry> PoolBedTest::EntryList() const {
  return admin_ ? admin_->Entries() : std::vector<adminpb::Entry>{};
}

std::vector<adminpb::Entry> PoolBedTest::Frozen() const {
  std::vector<adminpb::Entry> out;
  for (const auto& e : EntryList()) {
    if (e.state() == adminpb::ENTRY_STATE_FROZEN) out.push_back(e);
  }
  return out;
}

std::set<std::string> PoolBedTest::FrozenSandboxes() const {
  std::set<std::string> out;
  for (const auto& e : Frozen()) out.insert(e.sandbox_id());
  return out;
}

PodSpec PoolBedTest::Pod(const std::string& name) const {
  PodSpec spec;
  spec.name = name + "-" + token_;
  spec.labels["warmpool.test/run"] = token_;
  spec.containers[0].env = {{"INIT_SECONDS", "0"}};
  return spec;
}

}  // namespace warmpool::testing
