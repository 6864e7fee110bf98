// CgroupLayout::Detect on fake mountinfo files, and Cgroups' logic on a
// temporary directory tree standing in for the hierarchies (file I/O backend:
// libcgroup knows none of these mount points). Runs without root. The real
// kernel is exercised by cgroups_kernel_test.cc.
#include "daemon/cgroups.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace warmpool {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::Pair;
using ::testing::UnorderedElementsAre;

// A directory removed (recursively) when the test ends.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "wp-cgroups-test-XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

void WriteText(const std::string& file, const std::string& text) {
  fs::create_directories(fs::path(file).parent_path());
  std::ofstream(file) << text;
}

std::string ReadText(const std::string& file) {
  std::ifstream in(file);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// This CI machine's cgroup lines, verbatim, with other mounts around them.
constexpr char kHybrid[] =
    "22 1 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw\n"
    "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
    "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
    "33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct\n"
    "34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset\n"
    "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
    "36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices\n"
    "37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer\n"
    "38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio\n"
    "39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n"
    "40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd\n"
    "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";

// systemd's v1 ("legacy") layout: co-mounted controllers, optional fields,
// mount options that are not controllers.
constexpr char kV1[] =
    "25 18 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755\n"
    "26 25 0:23 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:10 - cgroup "
    "cgroup rw,xattr,release_agent=/lib/systemd/systemd-cgroups-agent,name=systemd\n"
    "29 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:13 - "
    "cgroup cgroup rw,cpu,cpuacct\n"
    "30 25 0:27 / /sys/fs/cgroup/freezer rw,nosuid,nodev,noexec,relatime shared:14 - cgroup "
    "cgroup rw,freezer\n"
    "31 25 0:28 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:15 - cgroup "
    "cgroup rw,memory\n"
    "32 25 0:29 / /sys/fs/cgroup/net_cls,net_prio rw,nosuid,nodev,noexec,relatime shared:16 - "
    "cgroup cgroup rw,net_cls,net_prio\n"
    "33 25 0:30 / /sys/fs/cgroup/cpuset rw,nosuid,nodev,noexec,relatime shared:17 - cgroup "
    "cgroup rw,cpuset,clone_children\n";

constexpr char kV2Only[] =
    "24 18 0:22 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 "
    "rw,nsdelegate,memory_recursiveprot\n";

absl::StatusOr<CgroupLayout> DetectText(const std::string& text) {
  TempDir dir;
  std::string file = dir.path() + "/mountinfo";
  WriteText(file, text);
  return CgroupLayout::Detect(file);
}

TEST(CgroupLayoutTest, DetectsHybrid) {
  absl::StatusOr<CgroupLayout> layout = DetectText(kHybrid);
  ASSERT_TRUE(layout.ok()) << layout.status();
  EXPECT_THAT(
      layout->v1,
      ElementsAre(
          Pair("blkio", "/sys/fs/cgroup/blkio"), Pair("cpu", "/sys/fs/cgroup/cpu"),
          Pair("cpuacct", "/sys/fs/cgroup/cpuacct"), Pair("cpuset", "/sys/fs/cgroup/cpuset"),
          Pair("devices", "/sys/fs/cgroup/devices"), Pair("freezer", "/sys/fs/cgroup/freezer"),
          Pair("memory", "/sys/fs/cgroup/memory"), Pair("name=systemd", "/sys/fs/cgroup/systemd"),
          Pair("pids", "/sys/fs/cgroup/pids")));
  EXPECT_EQ(layout->unified, "/sys/fs/cgroup/unified");
  EXPECT_FALSE(layout->v2_only());
  EXPECT_EQ(layout->MountPoints().size(), 10u);
  EXPECT_EQ(Cgroups(*layout).freezer_version(), CgroupVersion::kV1);
}

TEST(CgroupLayoutTest, DetectsV1WithCoMountedControllersAndOptions) {
  absl::StatusOr<CgroupLayout> layout = DetectText(kV1);
  ASSERT_TRUE(layout.ok()) << layout.status();
  EXPECT_THAT(layout->v1, ElementsAre(Pair("cpu", "/sys/fs/cgroup/cpu,cpuacct"),
                                      Pair("cpuacct", "/sys/fs/cgroup/cpu,cpuacct"),
                                      Pair("cpuset", "/sys/fs/cgroup/cpuset"),
                                      Pair("freezer", "/sys/fs/cgroup/freezer"),
                                      Pair("memory", "/sys/fs/cgroup/memory"),
                                      Pair("name=systemd", "/sys/fs/cgroup/systemd"),
                                      Pair("net_cls", "/sys/fs/cgroup/net_cls,net_prio"),
                                      Pair("net_prio", "/sys/fs/cgroup/net_cls,net_prio")));
  EXPECT_EQ(layout->unified, "");
  EXPECT_FALSE(layout->v2_only());
  // Co-mounted controllers are one hierarchy.
  EXPECT_EQ(layout->MountPoints().size(), 6u);
  EXPECT_EQ(Cgroups(*layout).freezer_version(), CgroupVersion::kV1);
}

TEST(CgroupLayoutTest, DetectsV2Only) {
  absl::StatusOr<CgroupLayout> layout = DetectText(kV2Only);
  ASSERT_TRUE(layout.ok()) << layout.status();
  EXPECT_THAT(layout->v1, IsEmpty());
  EXPECT_EQ(layout->unified, "/sys/fs/cgroup");
  EXPECT_TRUE(layout->v2_only());
  EXPECT_EQ(Cgroups(*layout).freezer_version(), CgroupVersion::kV2);
}

TEST(CgroupLayoutTest, FavordynmodsOnAnyMountIsSeenAndIsNotAController) {
  absl::StatusOr<CgroupLayout> plain = DetectText(kHybrid);
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_FALSE(plain->favordynmods);

  absl::StatusOr<CgroupLayout> v2 =
      DetectText("41 31 0:38 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate,favordynmods\n");
  ASSERT_TRUE(v2.ok()) << v2.status();
  EXPECT_TRUE(v2->favordynmods);

  // cgroup_favordynmods=true shows on v1 mounts too.
  absl::StatusOr<CgroupLayout> v1 =
      DetectText("32 31 0:29 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory,favordynmods\n");
  ASSERT_TRUE(v1.ok()) << v1.status();
  EXPECT_TRUE(v1->favordynmods);
  EXPECT_THAT(v1->v1, ElementsAre(Pair("memory", "/sys/fs/cgroup/memory")));
}

TEST(CgroupLayoutTest, SlowMoveAdviceOnlyWhereTheKernelWaitsForRcu) {
  absl::StatusOr<CgroupLayout> layout = DetectText(kHybrid);
  ASSERT_TRUE(layout.ok()) << layout.status();
  const std::string advice = SlowCgroupMoveAdvice(*layout, "6.1.0-18-amd64");
  EXPECT_THAT(advice, HasSubstr("RCU grace period"));
  EXPECT_THAT(advice, HasSubstr("cgroup_favordynmods=true"));
  EXPECT_THAT(advice,
              HasSubstr("remount,favordynmods,<its current options> /sys/fs/cgroup/unified"));
  // Before 6.0 the kernel kept moves cheap without being asked.
  EXPECT_EQ(SlowCgroupMoveAdvice(*layout, "5.10.0-28-amd64"), "");
  EXPECT_EQ(SlowCgroupMoveAdvice(*layout, "garbage"), "");
  layout->favordynmods = true;
  EXPECT_EQ(SlowCgroupMoveAdvice(*layout, "6.18.4"), "");

  absl::StatusOr<CgroupLayout> v1_only = DetectText(kV1);
  ASSERT_TRUE(v1_only.ok()) << v1_only.status();
  EXPECT_THAT(SlowCgroupMoveAdvice(*v1_only, "6.1.0"), Not(HasSubstr("remount")));
}

TEST(CgroupLayoutTest, HybridWithoutV1FreezerUsesV2) {
  absl::StatusOr<CgroupLayout> layout = DetectText(
      "32 31 0:29 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
      "41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n");
  ASSERT_TRUE(layout.ok()) << layout.status();
  EXPECT_FALSE(layout->v2_only());
  EXPECT_EQ(Cgroups(*layout).freezer_version(), CgroupVersion::kV2);
}

TEST(CgroupLayoutTest, UnescapesMountPointsAndPrefersRootMounts) {
  absl::StatusOr<CgroupLayout> layout = DetectText(
      // A container's view of a sub-cgroup first, then the real root.
      "50 1 0:34 /docker/abc /mnt/fr rw - cgroup cgroup rw,freezer\n"
      "51 1 0:34 / /mnt/my\\040cgroups/freezer rw - cgroup cgroup rw,freezer\n"
      "52 1 0:38 / /mnt/v2 rw - cgroup2 cgroup2 rw\n"
      "53 1 0:38 / /mnt/v2-again rw - cgroup2 cgroup2 rw\n");
  ASSERT_TRUE(layout.ok()) << layout.status();
  EXPECT_THAT(layout->v1, ElementsAre(Pair("freezer", "/mnt/my cgroups/freezer")));
  EXPECT_EQ(layout->unified, "/mnt/v2");
}

TEST(CgroupLayoutTest, NoCgroupMountIsNotFound) {
  absl::StatusOr<CgroupLayout> layout =
      DetectText("22 1 0:21 / /proc rw shared:12 - proc proc rw\n");
  EXPECT_EQ(layout.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(CgroupLayout::Detect("/nonexistent/mountinfo").status().code(),
            absl::StatusCode::kNotFound);
}

TEST(CgroupLayoutTest, DetectsThisMachine) {
  absl::StatusOr<CgroupLayout> layout = CgroupLayout::Detect();
  if (!layout.ok()) GTEST_SKIP() << "no cgroup mounts here: " << layout.status();
  // Whatever is mounted, every mount point is a directory.
  for (const std::string& mount : layout->MountPoints()) {
    EXPECT_TRUE(fs::is_directory(mount)) << mount;
  }
}

// A hybrid layout over a temporary tree: v1 freezer, memory, cpu+cpuacct
// co-mounted, name=systemd, and a cgroup2 hierarchy.
class FakeTreeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* dir : {"freezer", "memory", "cpu,cpuacct", "systemd", "unified"}) {
      fs::create_directories(Mount(dir));
    }
    layout_.v1 = {{"freezer", Mount("freezer")},
                  {"memory", Mount("memory")},
                  {"cpu", Mount("cpu,cpuacct")},
                  {"cpuacct", Mount("cpu,cpuacct")},
                  {"name=systemd", Mount("systemd")}};
    layout_.unified = Mount("unified");
  }

  std::string Mount(const std::string& name) const { return tmp_.path() + "/" + name; }

  TempDir tmp_;
  CgroupLayout layout_;
};

TEST_F(FakeTreeTest, FakeTreeIsServedByFileIo) {
  Cgroups cg(layout_);
  for (const char* h : {"freezer", "memory", "cpu", "cpuacct", "name=systemd", "unified"}) {
    EXPECT_FALSE(cg.UsesLibcgroup(h)) << h;
  }
  EXPECT_THAT(cg.DescribeBackends(), HasSubstr("cpu,cpuacct@"));
  EXPECT_THAT(cg.DescribeBackends(), HasSubstr("file-io"));
}

TEST_F(FakeTreeTest, CreateMakesEveryLevelInEveryHierarchyOnce) {
  Cgroups cg(layout_);
  ASSERT_TRUE(cg.Create("/warmpool/pool/e1").ok());
  for (const char* dir : {"freezer", "memory", "cpu,cpuacct", "systemd", "unified"}) {
    EXPECT_TRUE(fs::is_directory(Mount(dir) + "/warmpool/pool/e1")) << dir;
  }
  // Idempotent.
  EXPECT_TRUE(cg.Create("/warmpool/pool/e1").ok());
}

TEST_F(FakeTreeTest, RejectsBadPaths) {
  Cgroups cg(layout_);
  for (const char* bad : {"", "relative", "/a/../b", "/a//b", "/a/./b"}) {
    EXPECT_EQ(cg.Create(bad).code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_EQ(cg.Freeze(bad).code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_EQ(cg.RemoveTree(bad).code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  // Never remove or freeze a whole hierarchy.
  EXPECT_EQ(cg.RemoveTree("/").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(cg.Freeze("/").code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(FakeTreeTest, V1FreezeWritesFreezerStateAndReadsItBack) {
  WriteText(Mount("freezer") + "/e1/freezer.state", "THAWED\n");
  Cgroups cg(layout_);
  ASSERT_EQ(cg.freezer_version(), CgroupVersion::kV1);
  EXPECT_EQ(cg.IsFrozen("/e1").value(), false);
  ASSERT_TRUE(cg.Freeze("/e1").ok());
  EXPECT_EQ(ReadText(Mount("freezer") + "/e1/freezer.state"), "FROZEN");
  EXPECT_EQ(cg.IsFrozen("/e1").value(), true);
  ASSERT_TRUE(cg.Thaw("/e1").ok());
  EXPECT_EQ(ReadText(Mount("freezer") + "/e1/freezer.state"), "THAWED");
  EXPECT_EQ(cg.IsFrozen("/e1").value(), false);
}

TEST_F(FakeTreeTest, FreezingStateIsNotFrozen) {
  WriteText(Mount("freezer") + "/e1/freezer.state", "FREEZING\n");
  Cgroups cg(layout_);
  EXPECT_EQ(cg.IsFrozen("/e1").value(), false);
}

TEST_F(FakeTreeTest, V2FreezeWaitsForCgroupEvents) {
  // The fake kernel already reports frozen: Freeze writes and returns.
  WriteText(Mount("unified") + "/e1/cgroup.events", "populated 1\nfrozen 1\n");
  WriteText(Mount("unified") + "/e1/cgroup.freeze", "0\n");
  Cgroups cg(layout_);
  cg.set_freezer_version(CgroupVersion::kV2);
  ASSERT_TRUE(cg.Freeze("/e1").ok());
  EXPECT_EQ(ReadText(Mount("unified") + "/e1/cgroup.freeze"), "1");
  EXPECT_EQ(cg.IsFrozen("/e1").value(), true);
  // It never reports thawed: Thaw times out and says what it saw.
  cg.set_state_timeout(std::chrono::milliseconds(30));
  absl::Status thaw = cg.Thaw("/e1");
  EXPECT_EQ(thaw.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(thaw.message(), HasSubstr("frozen 1"));
  EXPECT_EQ(ReadText(Mount("unified") + "/e1/cgroup.freeze"), "0");
}

TEST_F(FakeTreeTest, V2FreezeTimesOutAndRollsBack) {
  WriteText(Mount("unified") + "/e1/cgroup.events", "populated 1\nfrozen 0\n");
  WriteText(Mount("unified") + "/e1/cgroup.freeze", "0\n");
  Cgroups cg(layout_);
  cg.set_freezer_version(CgroupVersion::kV2);
  cg.set_state_timeout(std::chrono::milliseconds(50));
  auto start = std::chrono::steady_clock::now();
  absl::Status st = cg.Freeze("/e1");
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(st.code(), absl::StatusCode::kDeadlineExceeded) << st;
  EXPECT_THAT(st.message(), HasSubstr("/e1"));
  EXPECT_THAT(st.message(), HasSubstr("thawed it again"));
  EXPECT_GE(took, std::chrono::milliseconds(50));
  EXPECT_LT(took, std::chrono::seconds(2));
  // Rolled back: no half-frozen entry left.
  EXPECT_EQ(ReadText(Mount("unified") + "/e1/cgroup.freeze"), "0");
  EXPECT_EQ(cg.IsFrozen("/e1").value(), false);
}

TEST_F(FakeTreeTest, MissingCgroupIsNotFound) {
  Cgroups cg(layout_);
  absl::Status st = cg.Freeze("/nope");
  EXPECT_EQ(st.code(), absl::StatusCode::kNotFound) << st;
  EXPECT_THAT(st.message(), HasSubstr("/nope"));
  EXPECT_EQ(cg.IsFrozen("/nope").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(cg.Pids("/nope").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(cg.MemoryUsage("/nope").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(FakeTreeTest, PidsCoverTheSubtreeOfTheFreezerHierarchy) {
  WriteText(Mount("freezer") + "/e1/cgroup.procs", "10\n11\n");
  WriteText(Mount("freezer") + "/e1/c1/cgroup.procs", "12\n");
  WriteText(Mount("freezer") + "/e1/c1/deeper/cgroup.procs", "13\n11\n");
  WriteText(Mount("freezer") + "/e1/c2/cgroup.procs", "");
  WriteText(Mount("unified") + "/e1/cgroup.procs", "20\n");
  WriteText(Mount("unified") + "/e1/c1/cgroup.procs", "21\n");
  Cgroups cg(layout_);
  EXPECT_THAT(cg.Pids("/e1").value(), ElementsAre(10, 11, 12, 13));
  EXPECT_THAT(cg.Pids("/e1/c1").value(), ElementsAre(11, 12, 13));
  cg.set_freezer_version(CgroupVersion::kV2);
  EXPECT_THAT(cg.Pids("/e1").value(), ElementsAre(20, 21));
}

TEST_F(FakeTreeTest, UsageFromV1Files) {
  WriteText(Mount("memory") + "/e1/memory.usage_in_bytes", "12345678\n");
  WriteText(Mount("cpu,cpuacct") + "/e1/cpuacct.usage", "987654321\n");
  Cgroups cg(layout_);
  EXPECT_EQ(cg.MemoryUsage("/e1").value(), 12345678u);
  EXPECT_EQ(cg.CpuUsageNanos("/e1").value(), 987654321u);
}

TEST_F(FakeTreeTest, UsageFromV2FilesOnV2Only) {
  WriteText(Mount("unified") + "/e1/memory.current", "4096\n");
  WriteText(Mount("unified") + "/e1/cpu.stat",
            "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n");
  CgroupLayout v2;
  v2.unified = Mount("unified");
  Cgroups cg(v2);
  EXPECT_EQ(cg.MemoryUsage("/e1").value(), 4096u);
  EXPECT_EQ(cg.CpuUsageNanos("/e1").value(), 1500000u);
}

TEST_F(FakeTreeTest, GarbageInAUsageFileIsAnError) {
  WriteText(Mount("memory") + "/e1/memory.usage_in_bytes", "lots\n");
  Cgroups cg(layout_);
  absl::StatusOr<uint64_t> usage = cg.MemoryUsage("/e1");
  EXPECT_FALSE(usage.ok());
  EXPECT_THAT(usage.status().message(), HasSubstr("lots"));
}

TEST_F(FakeTreeTest, RemoveTreeRemovesLeavesFirstEverywhereAndIsIdempotent) {
  Cgroups cg(layout_);
  ASSERT_TRUE(cg.Create("/warmpool/pool/e1/c1").ok());
  ASSERT_TRUE(cg.Create("/warmpool/pool/e1/c2/deeper").ok());
  // Only in one hierarchy: still removed.
  fs::create_directories(Mount("systemd") + "/warmpool/pool/e1/extra");
  ASSERT_TRUE(cg.RemoveTree("/warmpool/pool/e1").ok());
  for (const char* dir : {"freezer", "memory", "cpu,cpuacct", "systemd", "unified"}) {
    EXPECT_FALSE(fs::exists(Mount(dir) + "/warmpool/pool/e1")) << dir;
    EXPECT_TRUE(fs::is_directory(Mount(dir) + "/warmpool/pool")) << dir;
  }
  EXPECT_TRUE(cg.RemoveTree("/warmpool/pool/e1").ok());
  EXPECT_TRUE(cg.RemoveTree("/never/existed").ok());
}

TEST_F(FakeTreeTest, RemoveTreeReportsWhatItCouldNotRemoveAndContinues) {
  Cgroups cg(layout_);
  ASSERT_TRUE(cg.Create("/e1").ok());
  // A plain file makes the fake directory non-removable (ENOTEMPTY).
  WriteText(Mount("memory") + "/e1/stuck", "x");
  absl::Status st = cg.RemoveTree("/e1");
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
  EXPECT_THAT(st.message(), HasSubstr(Mount("memory") + "/e1"));
  // The other hierarchies were still cleaned.
  EXPECT_FALSE(fs::exists(Mount("freezer") + "/e1"));
  EXPECT_FALSE(fs::exists(Mount("unified") + "/e1"));
}

}  // namespace
}  // namespace warmpool
