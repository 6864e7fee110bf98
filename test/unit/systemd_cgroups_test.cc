// Slice and scope naming, resource -> unit property mapping, and the order
// of systemd calls of a container move (against a recording SystemdManager
// and a temporary cgroup tree; the real systemd is exercised by
// test/integration/handoff_systemd_test.cc).
#include "daemon/systemd_cgroups.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace warmpool {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;

TEST(SystemdNaming, IsSystemdSliceFollowsContainerd) {
  EXPECT_TRUE(IsSystemdSlice("kubepods-burstable-pod1.slice"));
  EXPECT_TRUE(IsSystemdSlice("/kubepods.slice/kubepods-pod1.slice"));
  EXPECT_FALSE(IsSystemdSlice("/kubepods/burstable/pod1"));
  EXPECT_FALSE(IsSystemdSlice("/warmpool.slice/x"));
  EXPECT_FALSE(IsSystemdSlice(""));
  EXPECT_EQ(SliceUnitName("/kubepods.slice/kubepods-pod1.slice"), "kubepods-pod1.slice");
}

TEST(SystemdNaming, ExpandSliceAsSystemdAndRunc) {
  EXPECT_EQ(ExpandSlice("kubepods-burstable-pod1.slice").value(),
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice");
  EXPECT_EQ(ExpandSlice("kubepods.slice").value(), "/kubepods.slice");
  EXPECT_EQ(ExpandSlice("-.slice").value(), "/");
  EXPECT_EQ(ExpandSlice("a\\x2db-c.slice").value(), "/a\\x2db.slice/a\\x2db-c.slice");
  EXPECT_FALSE(ExpandSlice("kubepods--pod.slice").ok());
  EXPECT_FALSE(ExpandSlice("-kubepods.slice").ok());
  EXPECT_FALSE(ExpandSlice("kubepods.scope").ok());
  EXPECT_FALSE(ExpandSlice("a/b.slice").ok());
}

TEST(SystemdNaming, ScopesOfContainers) {
  EXPECT_EQ(ContainerScopeName("abc123"), "cri-containerd-abc123.scope");
  EXPECT_EQ(ContainerIdOfCgroup("cri-containerd-abc123.scope"), "abc123");
  EXPECT_EQ(ContainerIdOfCgroup("abc123"), "abc123");
  EXPECT_NE(MoveScopeName("abc123"), ContainerScopeName("abc123"));
}

TEST(SystemdNaming, PoolAndEntrySlicesNestUnderTheParent) {
  EXPECT_EQ(EscapeSliceComponent("py-api"), "py\\x2dapi");
  EXPECT_EQ(EscapeSliceComponent("a_b.c"), "a_b.c");
  EXPECT_EQ(PoolSlicePath("warmpool.slice", "py-api"), "/warmpool.slice/warmpool-py\\x2dapi.slice");
  const std::string entry = EntrySlicePath("warmpool.slice", "py-api", "0a1b2c3d4e5f");
  EXPECT_EQ(entry,
            "/warmpool.slice/warmpool-py\\x2dapi.slice/warmpool-py\\x2dapi-0a1b2c3d4e5f.slice");
  // What containerd hands runc (the last element) expands to the same path.
  EXPECT_EQ(ExpandSlice(SliceUnitName(entry)).value(), entry);
  EXPECT_EQ(EntryIdOfSlice("warmpool-py\\x2dapi-0a1b2c3d4e5f.slice"), "0a1b2c3d4e5f");
  EXPECT_EQ(PoolSlicePath("-.slice", "p"), "/p.slice");
  EXPECT_EQ(PoolSlicePath("a-b.slice", "p"), "/a.slice/a-b.slice/a-b-p.slice");
}

TEST(SystemdProperties, CpuSharesToWeightIsRuncsFormula) {
  EXPECT_EQ(CpuSharesToWeight(0), 0u);
  EXPECT_EQ(CpuSharesToWeight(2), 1u);
  EXPECT_EQ(CpuSharesToWeight(1024), 39u);
  EXPECT_EQ(CpuSharesToWeight(262144), 10000u);
}

TEST(SystemdProperties, ResourcesMapToUnitProperties) {
  v1::LinuxContainerResources r;
  r.set_cpu_shares(512);
  r.set_cpu_quota(25000);
  r.set_cpu_period(100000);
  r.set_memory_limit_in_bytes(64 << 20);
  r.set_memory_swap_limit_in_bytes(96 << 20);
  r.set_oom_score_adj(-997);  // not a cgroup resource
  auto props = ResourceProperties(r);
  ASSERT_TRUE(props.ok()) << props.status();
  EXPECT_THAT(*props, ElementsAre(UnitProperty{"CPUWeight", uint64_t{20}},
                                  UnitProperty{"CPUQuotaPerSecUSec", uint64_t{250000}},
                                  UnitProperty{"CPUQuotaPeriodUSec", uint64_t{100000}},
                                  UnitProperty{"MemoryMax", uint64_t{64 << 20}},
                                  UnitProperty{"MemorySwapMax", uint64_t{32 << 20}}));
}

TEST(SystemdProperties, QuotaRoundsUpToTenMilliseconds) {
  v1::LinuxContainerResources r;
  r.set_cpu_quota(12345);
  r.set_cpu_period(100000);
  auto props = ResourceProperties(r);
  ASSERT_TRUE(props.ok());
  EXPECT_EQ(props->at(0), (UnitProperty{"CPUQuotaPerSecUSec", uint64_t{130000}}));
}

TEST(SystemdProperties, UnsetFieldsGiveNothingAndUnsupportedOnesFail) {
  auto none = ResourceProperties(v1::LinuxContainerResources());
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
  v1::LinuxContainerResources unlimited;
  unlimited.set_cpu_quota(-1);
  unlimited.set_cpu_period(100000);
  EXPECT_TRUE(ResourceProperties(unlimited)->empty());

  v1::LinuxContainerResources cpuset;
  cpuset.set_cpuset_cpus("0-1");
  EXPECT_EQ(ResourceProperties(cpuset).status().code(), absl::StatusCode::kUnimplemented);
  v1::LinuxContainerResources huge;
  huge.add_hugepage_limits()->set_page_size("2MB");
  EXPECT_EQ(ResourceProperties(huge).status().code(), absl::StatusCode::kUnimplemented);
  v1::LinuxContainerResources unified;
  (*unified.mutable_unified())["memory.high"] = "1";
  EXPECT_EQ(ResourceProperties(unified).status().code(), absl::StatusCode::kUnimplemented);
  v1::LinuxContainerResources swap;
  swap.set_memory_limit_in_bytes(100);
  swap.set_memory_swap_limit_in_bytes(50);
  EXPECT_FALSE(ResourceProperties(swap).ok());
}

TEST(SystemdProperties, V1HostsGetRuncsV1Names) {
  v1::LinuxContainerResources r;
  r.set_cpu_shares(512);
  r.set_memory_limit_in_bytes(int64_t{256} << 20);
  r.set_memory_swap_limit_in_bytes(int64_t{256} << 20);  // kubelet: no swap beyond memory
  auto props = ResourceProperties(r, /*cgroup_v1=*/true);
  ASSERT_TRUE(props.ok()) << props.status();
  EXPECT_THAT(*props, ElementsAre(UnitProperty{"CPUShares", uint64_t{512}},
                                  UnitProperty{"MemoryLimit", uint64_t{256} << 20}));
  r.set_memory_swap_limit_in_bytes(int64_t{512} << 20);
  EXPECT_EQ(ResourceProperties(r, true).status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(*ResourceProperties(SandboxContainerResources(), true),
              ElementsAre(UnitProperty{"CPUShares", uint64_t{2}}));
}

TEST(SystemdProperties, SandboxGetsContainerdsShares) {
  auto props = ResourceProperties(SandboxContainerResources());
  ASSERT_TRUE(props.ok());
  EXPECT_THAT(*props, ElementsAre(UnitProperty{"CPUWeight", uint64_t{1}}));
}

// Records calls; units "exist" from StartTransientUnit until StopUnit.
class RecordingSystemd final : public SystemdManager {
 public:
  absl::Status StartTransientUnit(const std::string& name,
                                  const std::vector<UnitProperty>& props) override {
    calls.push_back("start " + name);
    if (units.count(name)) return absl::AlreadyExistsError(name);
    units[name] = props;
    return absl::OkStatus();
  }
  absl::Status StopUnit(const std::string& name) override {
    calls.push_back("stop " + name);
    units.erase(name);
    return absl::OkStatus();
  }
  absl::StatusOr<bool> HasUnit(const std::string& name) override { return units.count(name) > 0; }
  absl::Status SetUnitProperties(const std::string& name,
                                 const std::vector<UnitProperty>& props) override {
    calls.push_back("set " + name);
    if (!units.count(name)) return absl::NotFoundError(name);
    auto& have = units[name];
    have.insert(have.end(), props.begin(), props.end());
    return absl::OkStatus();
  }
  std::vector<std::string> calls;
  std::map<std::string, std::vector<UnitProperty>> units;
};

class ContainerCgroupsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("wp-sdcg-" + std::to_string(::getpid()));
    fs::create_directories(root_ / "freezer");
    layout_.v1["freezer"] = (root_ / "freezer").string();
  }
  void TearDown() override { fs::remove_all(root_); }
  void MakeCgroup(const std::string& path, const std::string& procs) {
    fs::create_directories(root_ / ("freezer" + path));
    std::ofstream(root_ / ("freezer" + path) / "cgroup.procs") << procs;
  }
  fs::path root_;
  CgroupLayout layout_;
};

TEST_F(ContainerCgroupsTest, ResolvesEitherDriver) {
  Cgroups cgroups(layout_);
  ContainerCgroups placement(&cgroups, nullptr);
  placement.set_systemd_root("");
  EXPECT_EQ(placement.ContainerCgroup("/kubepods/pod1", "c1").value(), "/kubepods/pod1/c1");
  EXPECT_EQ(placement.ContainerCgroup("kubepods-pod1.slice", "c1").value(),
            "/kubepods.slice/kubepods-pod1.slice/cri-containerd-c1.scope");
  placement.set_systemd_root("/node");
  EXPECT_EQ(placement.ContainerCgroup("-.slice", "c1").value(), "/node/cri-containerd-c1.scope");
}

TEST_F(ContainerCgroupsTest, SliceWithoutSystemdIsRefused) {
  Cgroups cgroups(layout_);
  ContainerCgroups placement(&cgroups, nullptr);
  MakeCgroup("/entry/c1", "4242\n");
  EXPECT_EQ(placement.MoveContainer("/entry/c1", "kubepods-pod1.slice", "c1", true, nullptr).code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(ContainerCgroupsTest, MoveStepsThroughATemporaryScopeWhenTheNameIsTaken) {
  Cgroups cgroups(layout_);
  RecordingSystemd systemd;
  ContainerCgroups placement(&cgroups, &systemd);
  placement.set_systemd_root("");
  // The pool entry's scope of container c1 (pids that do not exist: the
  // per-process join of other hierarchies skips them).
  systemd.units["cri-containerd-c1.scope"] = {};
  MakeCgroup("/warmpool.slice/e.slice/cri-containerd-c1.scope", "999999998\n999999999\n");
  v1::LinuxContainerResources r;
  r.set_memory_limit_in_bytes(1 << 20);
  ASSERT_TRUE(placement
                  .MoveContainer("/warmpool.slice/e.slice/cri-containerd-c1.scope",
                                 "kubepods-pod1.slice", "c1", false, &r)
                  .ok());
  EXPECT_THAT(systemd.calls,
              ElementsAre("start warmpool-move-c1.scope", "stop cri-containerd-c1.scope",
                          "start cri-containerd-c1.scope", "stop warmpool-move-c1.scope"));
  const auto& props = systemd.units.at("cri-containerd-c1.scope");
  EXPECT_THAT(props,
              ::testing::Contains(UnitProperty{"Slice", std::string("kubepods-pod1.slice")}));
  EXPECT_THAT(props, ::testing::Contains(UnitProperty{"Delegate", true}));
  EXPECT_THAT(props, ::testing::Contains(
                         UnitProperty{"PIDs", std::vector<uint32_t>{999999998, 999999999}}));
  EXPECT_THAT(props, ::testing::Contains(UnitProperty{"MemoryMax", uint64_t{1 << 20}}));

  systemd.calls.clear();
  ASSERT_TRUE(placement.RemoveMoved("kubepods-pod1.slice", "c1").ok());
  EXPECT_THAT(systemd.calls,
              ElementsAre("stop warmpool-move-c1.scope", "stop cri-containerd-c1.scope"));
  EXPECT_TRUE(systemd.units.empty());
}

TEST_F(ContainerCgroupsTest, FrozenMoveFreezesTheScopesFreezerCgroupFirst) {
  Cgroups cgroups(layout_);
  RecordingSystemd systemd;
  ContainerCgroups placement(&cgroups, &systemd);
  placement.set_systemd_root("");
  systemd.units["cri-containerd-c1.scope"] = {};
  MakeCgroup("/warmpool.slice/e.slice/cri-containerd-c1.scope", "999999999\n");
  // (A fake tree's mkdir makes no control files: the target's is made here.)
  const fs::path target = root_ / "freezer/kubepods.slice/kubepods-pod1.slice/cri-containerd-c1.scope";
  fs::create_directories(target);
  std::ofstream(target / "freezer.state") << "THAWED\n";
  absl::Status moved =
      placement.MoveContainer("/warmpool.slice/e.slice/cri-containerd-c1.scope",
                              "kubepods-pod1.slice", "c1", false, nullptr, /*frozen=*/true);
  ASSERT_TRUE(moved.ok()) << moved;
  // The freezer cgroup at the scope's path, frozen (systemd never makes it).
  std::ifstream state(target / "freezer.state");
  std::string word;
  state >> word;
  EXPECT_EQ(word, "FROZEN");

  // Resources of a scope are unit properties, set through systemd.
  systemd.calls.clear();
  v1::LinuxContainerResources r;
  r.set_memory_limit_in_bytes(64 << 20);
  r.set_cpu_shares(512);
  ASSERT_TRUE(placement.ApplyResources("kubepods-pod1.slice", "c1", r).ok());
  EXPECT_THAT(systemd.calls, ElementsAre("set cri-containerd-c1.scope"));
  EXPECT_THAT(systemd.units.at("cri-containerd-c1.scope"),
              ::testing::Contains(UnitProperty{"MemoryMax", uint64_t{64 << 20}}));
  // What systemd cannot express is refused, not dropped.
  r.set_cpuset_cpus("0");
  EXPECT_EQ(placement.ApplyResources("kubepods-pod1.slice", "c1", r).code(),
            absl::StatusCode::kUnimplemented);
}

TEST_F(ContainerCgroupsTest, FrozenMoveNeedsAV1Freezer) {
  CgroupLayout v2;
  v2.unified = (root_ / "unified").string();
  fs::create_directories(root_ / "unified/warmpool.slice/e.slice/cri-containerd-c1.scope");
  std::ofstream(root_ / "unified/warmpool.slice/e.slice/cri-containerd-c1.scope/cgroup.procs")
      << "999999999\n";
  Cgroups cgroups(v2);
  cgroups.set_freezer_version(CgroupVersion::kV2);
  RecordingSystemd systemd;
  ContainerCgroups placement(&cgroups, &systemd);
  placement.set_systemd_root("");
  EXPECT_EQ(placement
                .MoveContainer("/warmpool.slice/e.slice/cri-containerd-c1.scope",
                               "kubepods-pod1.slice", "c1", false, nullptr, /*frozen=*/true)
                .code(),
            absl::StatusCode::kUnimplemented);
  EXPECT_TRUE(systemd.calls.empty()) << "nothing may move before the freezer is ready";
}

TEST_F(ContainerCgroupsTest, UnsupportedResourcesFailBeforeAnyMove) {
  Cgroups cgroups(layout_);
  RecordingSystemd systemd;
  ContainerCgroups placement(&cgroups, &systemd);
  MakeCgroup("/e/c1", "999999999\n");
  v1::LinuxContainerResources r;
  r.set_cpuset_cpus("0");
  EXPECT_FALSE(placement.MoveContainer("/e/c1", "kubepods-pod1.slice", "c1", false, &r).ok());
  EXPECT_TRUE(systemd.calls.empty());
}

TEST_F(ContainerCgroupsTest, RemoveTreeStopsSlicesOnly) {
  Cgroups cgroups(layout_);
  RecordingSystemd systemd;
  ContainerCgroups placement(&cgroups, &systemd);
  // Bare directories (a real cgroup's files are not files rmdir sees).
  fs::create_directories(root_ / "freezer/warmpool.slice/warmpool-p.slice");
  fs::create_directories(root_ / "freezer/plain/dir");
  EXPECT_TRUE(placement.RemoveTree("/warmpool.slice/warmpool-p.slice").ok());
  EXPECT_TRUE(placement.RemoveTree("/plain/dir").ok());
  EXPECT_THAT(systemd.calls, ElementsAre("stop warmpool-p.slice"));
  EXPECT_FALSE(fs::exists(root_ / "freezer/warmpool.slice/warmpool-p.slice"));
  EXPECT_FALSE(fs::exists(root_ / "freezer/plain/dir"));
}

}  // namespace
}  // namespace warmpool
