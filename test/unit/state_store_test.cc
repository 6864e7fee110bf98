#include "daemon/state_store.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "spdlog/spdlog.h"

namespace warmpool {

// Readable failure messages: ids and sizes, not the bytes of every field.
void PrintTo(const AdoptionRecord& r, std::ostream* os) {
  *os << "{" << r.sandbox_id << " entry=" << r.entry_id << " pool=" << r.pool
      << " phase=" << PhaseName(r.phase) << " adopted_at_ns=" << r.adopted_at_ns
      << " run_request=" << r.run_request.size() << "B containers=" << r.containers.size()
      << " unclaimed=" << r.unclaimed_containers.size() << "}";
}

void PrintTo(const StateLoadProblem& p, std::ostream* os) {
  *os << "{file=" << p.file << " sandbox_id=" << p.sandbox_id << " moved_to=" << p.moved_to
      << " reason=" << p.reason << "}";
}

namespace {

namespace fs = std::filesystem;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

// A temporary directory removed at the end of the test. On the disk the
// system's temp directory lives on (not tmpfs here), so fsync costs are real.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "state_store_test.XXXXXX").string();
    path_ = mkdtemp(pattern.data());
  }
  ~TempDir() { fs::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

class StateStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { spdlog::set_level(spdlog::level::off); }
  void TearDown() override { spdlog::set_level(spdlog::level::info); }

  std::string dir() const { return (fs::path(tmp_.path()) / "adopted").string(); }

  std::unique_ptr<StateStore> MustOpen() {
    absl::StatusOr<std::unique_ptr<StateStore>> store = StateStore::Open(dir());
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? *std::move(store) : nullptr;
  }

  std::vector<std::string> Files() const {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir())) names.push_back(e.path().filename());
    std::sort(names.begin(), names.end());
    return names;
  }

  std::string ReadFile(const std::string& name) const {
    std::ifstream in(fs::path(dir()) / name, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

  void WriteFile(const std::string& name, const std::string& data) const {
    std::ofstream out(fs::path(dir()) / name, std::ios::binary | std::ios::trunc);
    out << data;
  }

  TempDir tmp_;
};

// Bytes that are not text: NULs, 0xff, invalid UTF-8.
std::string Binary(int seed, size_t size) {
  std::string s(size, '\0');
  for (size_t i = 0; i < size; ++i) s[i] = static_cast<char>((i * 131 + seed * 7) & 0xff);
  return s;
}

// A record in which every field differs from its default.
AdoptionRecord FullRecord(const std::string& id, int seed = 1) {
  AdoptionRecord r;
  r.sandbox_id = id;
  r.entry_id = "entry-" + std::to_string(seed);
  r.pool = "web";
  r.run_request = Binary(seed, 300);
  r.adopted_at_ns = 1'700'000'000'123'456'789 + seed;
  r.cgroup_parent = "/kubepods/burstable/pod\xff\xfe" + std::to_string(seed);  // not UTF-8
  r.pod_ip = "10.88.0." + std::to_string(seed % 250);
  r.phase = AdoptionRecord::Phase::kMoved;
  r.containers.push_back({.container_id = "c1" + std::to_string(seed),
                          .template_name = "app",
                          .create_request = Binary(seed + 1, 200),
                          .created_at_ns = 11 + seed,
                          .started_at_ns = 12 + seed});
  r.containers.push_back({.container_id = "c2",
                          .template_name = "sidecar",
                          .create_request = std::string("\0\x01", 2),
                          .created_at_ns = -1,
                          .started_at_ns = 0});
  r.unclaimed_containers = {"u1", "u2"};
  r.late_network.state = AdoptionRecord::LateNetwork::State::kAdded;
  r.late_network.netns_path = "/run/netns/cni-" + std::to_string(seed);
  r.late_network.conflist = R"({"cniVersion":"1.0.0","plugins":[{"type":"bridge"}]})";
  r.late_network.cni_args = "K8S_POD_NAME=p" + std::to_string(seed);
  r.late_network.capability_args = R"({"portMappings":[]})";
  r.late_network.ifname = "eth0";
  r.late_network.result = Binary(seed + 2, 50);
  return r;
}

TEST(Crc32cTest, KnownVectors) {
  EXPECT_EQ(Crc32c("123456789"), 0xE3069283u);
  EXPECT_EQ(Crc32c(""), 0u);
  EXPECT_EQ(Crc32c(std::string(32, '\0')), 0x8A9136AAu);  // RFC 3720 B.4
  EXPECT_EQ(Crc32c("56789", Crc32c("1234")), Crc32c("123456789"));
}

TEST(ValidateSandboxIdTest, AcceptsContainerdIdsRejectsPaths) {
  EXPECT_TRUE(ValidateSandboxId(std::string(64, 'a')).ok());
  EXPECT_TRUE(ValidateSandboxId("0123456789abcdefABCDEF").ok());
  EXPECT_TRUE(ValidateSandboxId("sandbox-1_x").ok());
  EXPECT_TRUE(ValidateSandboxId(std::string(128, 'f')).ok());
  for (const std::string& bad :
       {std::string(), std::string("."), std::string(".."), std::string("../x"), std::string("a/b"),
        std::string("/abs"), std::string("a.b"), std::string("a.rec"), std::string("-a"),
        std::string("_a"), std::string(" a"), std::string("a b"), std::string("a\nb"),
        std::string("a\0b", 3), std::string(129, 'f'), std::string("é")}) {
    absl::Status st = ValidateSandboxId(bad);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << "id '" << bad << "'";
  }
}

TEST_F(StateStoreTest, OpenCreatesPrivateDirectory) {
  auto store = MustOpen();
  ASSERT_TRUE(store);
  EXPECT_EQ(fs::status(dir()).permissions(), fs::perms::owner_all);
  EXPECT_THAT(store->All(), IsEmpty());
  EXPECT_THAT(store->load_problems(), IsEmpty());
}

TEST_F(StateStoreTest, PutGetAllRoundTripEveryField) {
  auto store = MustOpen();
  ASSERT_TRUE(store);
  AdoptionRecord a = FullRecord("aaaa", 1);
  AdoptionRecord b = FullRecord("bbbb", 2);
  b.phase = AdoptionRecord::Phase::kDone;
  AdoptionRecord c;  // every field at its default except the key
  c.sandbox_id = "cccc";
  ASSERT_TRUE(store->Put(b).ok());
  ASSERT_TRUE(store->Put(a).ok());
  ASSERT_TRUE(store->Put(c).ok());

  EXPECT_EQ(store->Get("aaaa"), a);
  EXPECT_EQ(store->Get("bbbb"), b);
  EXPECT_EQ(store->Get("cccc"), c);
  EXPECT_EQ(store->Get("dddd"), std::nullopt);
  EXPECT_THAT(store->All(), ElementsAre(a, b, c));  // ordered by id
  EXPECT_THAT(Files(), ElementsAre("aaaa.rec", "bbbb.rec", "cccc.rec"));
  EXPECT_EQ(fs::status(fs::path(dir()) / "aaaa.rec").permissions(),
            fs::perms::owner_read | fs::perms::owner_write);

  // The same records come back from disk, every field and every phase.
  store.reset();
  store = MustOpen();
  ASSERT_TRUE(store);
  EXPECT_THAT(store->All(), ElementsAre(a, b, c));
  for (AdoptionRecord::Phase phase :
       {AdoptionRecord::Phase::kClaimed, AdoptionRecord::Phase::kMoved,
        AdoptionRecord::Phase::kDone}) {
    a.phase = phase;
    ASSERT_TRUE(store->Put(a).ok());
    store.reset();
    store = MustOpen();
    ASSERT_TRUE(store);
    EXPECT_EQ(store->Get("aaaa"), a) << PhaseName(phase);
  }
  using NetState = AdoptionRecord::LateNetwork::State;
  for (NetState state : {NetState::kAdding, NetState::kAdded, NetState::kReleased}) {
    a.late_network.state = state;
    ASSERT_TRUE(store->Put(a).ok());
    store.reset();
    store = MustOpen();
    ASSERT_TRUE(store);
    EXPECT_EQ(store->Get("aaaa"), a) << int(state);
  }
  EXPECT_THAT(store->load_problems(), IsEmpty());
}

TEST_F(StateStoreTest, PutReplaces) {
  auto store = MustOpen();
  ASSERT_TRUE(store);
  AdoptionRecord r = FullRecord("abc", 1);
  ASSERT_TRUE(store->Put(r).ok());
  r.phase = AdoptionRecord::Phase::kDone;
  r.pod_ip = "10.1.2.3";
  r.containers.pop_back();
  r.unclaimed_containers.clear();
  ASSERT_TRUE(store->Put(r).ok());
  EXPECT_EQ(store->Get("abc"), r);
  EXPECT_THAT(store->All(), SizeIs(1));
  EXPECT_THAT(Files(), ElementsAre("abc.rec"));
  store.reset();
  store = MustOpen();
  ASSERT_TRUE(store);
  EXPECT_THAT(store->All(), ElementsAre(r));
}

TEST_F(StateStoreTest, Remove) {
  auto store = MustOpen();
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->Put(FullRecord("one", 1)).ok());
  ASSERT_TRUE(store->Put(FullRecord("two", 2)).ok());
  ASSERT_TRUE(store->Remove("one").ok());
  EXPECT_EQ(store->Get("one"), std::nullopt);
  EXPECT_TRUE(store->Remove("one").ok());    // again: unknown is OK
  EXPECT_TRUE(store->Remove("never").ok());  // never known
  EXPECT_THAT(Files(), ElementsAre("two.rec"));
  store.reset();
  store = MustOpen();
  ASSERT_TRUE(store);
  EXPECT_THAT(store->All(), ElementsAre(FullRecord("two", 2)));
}

TEST_F(StateStoreTest, ReopenSeesTheSameRecords) {
  std::vector<AdoptionRecord> want;
  {
    auto store = MustOpen();
    ASSERT_TRUE(store);
    for (int i = 0; i < 20; ++i) {
      AdoptionRecord r = FullRecord("sb" + std::to_string(100 + i), i);
      ASSERT_TRUE(store->Put(r).ok());
      want.push_back(r);
    }
    ASSERT_TRUE(store->Remove("sb105").ok());
    want.erase(want.begin() + 5);
    EXPECT_EQ(store->All(), want);
  }
  auto store = MustOpen();
  ASSERT_TRUE(store);
  EXPECT_EQ(store->All(), want);
  EXPECT_THAT(store->load_problems(), IsEmpty());
}

TEST_F(StateStoreTest, SecondOpenOfTheSameDirectoryIsRefused) {
  auto store = MustOpen();
  ASSERT_TRUE(store);
  absl::StatusOr<std::unique_ptr<StateStore>> second = StateStore::Open(dir());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition) << second.status();
  store.reset();
  EXPECT_TRUE(MustOpen());
}

TEST_F(StateStoreTest, TruncatedAndFlippedRecordsAreMovedAsideAndReported) {
  {
    auto store = MustOpen();
    ASSERT_TRUE(store);
    for (const char* id : {"good1", "trunc", "flip", "hdrflip", "empty", "good2"}) {
      ASSERT_TRUE(store->Put(FullRecord(id)).ok());
    }
  }
  std::string trunc = ReadFile("trunc.rec");
  WriteFile("trunc.rec", trunc.substr(0, trunc.size() / 2));
  std::string flip = ReadFile("flip.rec");
  flip[flip.size() - 40] ^= 0x01;
  WriteFile("flip.rec", flip);
  std::string hdr = ReadFile("hdrflip.rec");
  hdr[5] ^= 0x10;  // the format version
  WriteFile("hdrflip.rec", hdr);
  WriteFile("empty.rec", "");

  auto store = MustOpen();
  ASSERT_TRUE(store);
  EXPECT_THAT(store->All(), ElementsAre(FullRecord("good1"), FullRecord("good2")));
  const std::vector<StateLoadProblem>& problems = store->load_problems();
  ASSERT_THAT(problems, SizeIs(4));
  std::map<std::string, StateLoadProblem> by_id;
  for (const StateLoadProblem& p : problems) by_id[p.sandbox_id] = p;
  EXPECT_THAT(by_id["trunc"].reason, HasSubstr("length mismatch"));
  EXPECT_THAT(by_id["flip"].reason, HasSubstr("checksum"));
  EXPECT_THAT(by_id["hdrflip"].reason, HasSubstr("checksum"));
  EXPECT_THAT(by_id["empty"].reason, HasSubstr("truncated"));
  for (const char* id : {"trunc", "flip", "hdrflip", "empty"}) {
    EXPECT_EQ(by_id[id].file, std::string(id) + ".rec");
    EXPECT_EQ(by_id[id].moved_to, std::string(id) + ".rec.corrupt");
  }
  EXPECT_THAT(Files(), ElementsAre("empty.rec.corrupt", "flip.rec.corrupt", "good1.rec",
                                   "good2.rec", "hdrflip.rec.corrupt", "trunc.rec.corrupt"));
  // The evidence is kept byte for byte.
  EXPECT_EQ(ReadFile("flip.rec.corrupt"), flip);

  // Reported once: the next Open leaves .corrupt files alone.
  store.reset();
  store = MustOpen();
  ASSERT_TRUE(store);
  EXPECT_THAT(store->load_problems(), IsEmpty());
  EXPECT_THAT(store->All(), SizeIs(2));

  // A second corruption of the same id does not overwrite the first copy.
  ASSERT_TRUE(store->Put(FullRecord("flip")).ok());
  store.reset();
  WriteFile("flip.rec", "garbage that is long enough to have a header");
  store = MustOpen();
  ASSERT_TRUE(store);
  ASSERT_THAT(store->load_problems(), SizeIs(1));
  EXPECT_EQ(store->load_problems()[0].moved_to, "flip.rec.corrupt.1");
  EXPECT_THAT(store->load_problems()[0].reason, HasSubstr("bad magic"));
  EXPECT_EQ(ReadFile("flip.rec.corrupt"), flip);
}

// Every prefix of a record file and every single-bit flip in it is detected.
TEST_F(StateStoreTest, EveryTruncationAndEveryBitFlipIsDetected) {
  AdoptionRecord r;
  r.sandbox_id = "x";
  r.pool = "p";
  r.run_request = "req";
  r.phase = AdoptionRecord::Phase::kDone;
  {
    auto store = MustOpen();
    ASSERT_TRUE(store);
    ASSERT_TRUE(store->Put(r).ok());
  }
  const std::string good = ReadFile("x.rec");
  ASSERT_GT(good.size(), 16u);
  auto expect_rejected = [&](const std::string& data, const std::string& what) {
    WriteFile("x.rec", data);
    auto store = MustOpen();
    ASSERT_TRUE(store);
    EXPECT_THAT(store->All(), IsEmpty()) << what;
    EXPECT_THAT(store->load_problems(), SizeIs(1)) << what;
    EXPECT_THAT(Files(), ElementsAre("x.rec.corrupt")) << what;
    store.reset();
    fs::remove(fs::path(dir()) / "x.rec.corrupt");
  };
  for (size_t len = 0; len < good.size(); ++len) {
    expect_rejected(good.substr(0, len), "truncated to " + std::to_string(len));
  }
  for (size_t i = 0; i < good.size(); ++i) {
    for (int bit = 0; bit < 8; bit += 3) {
      std::string bad = good;
      bad[i] ^= static_cast<char>(1 << bit);
      expect_rejected(bad, "bit " + std::to_string(bit) + " of byte " + std::to_string(i));
    }
  }
  std::string longer = good + "x";
  expect_rejected(longer, "one byte appended");
}

// An intact record of a newer format stops Open rather than being dropped.
TEST_F(StateStoreTest, NewerFormatVersionFailsOpenAndKeepsTheFile) {
  {
    auto store = MustOpen();
    ASSERT_TRUE(store);
    ASSERT_TRUE(store->Put(FullRecord("future")).ok());
  }
  std::string data = ReadFile("future.rec");
  data[4] = static_cast<char>(kStateFormatVersion + 1);
  uint32_t crc =
      Crc32c(std::string_view(data).substr(16), Crc32c(std::string_view(data).substr(4, 8)));
  for (int i = 0; i < 4; ++i) data[12 + i] = static_cast<char>((crc >> (8 * i)) & 0xff);
  WriteFile("future.rec", data);

  absl::StatusOr<std::unique_ptr<StateStore>> store = StateStore::Open(dir());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition) << store.status();
  EXPECT_THAT(store.status().message(), HasSubstr("newer"));
  EXPECT_THAT(Files(), ElementsAre("future.rec"));
}

TEST_F(StateStoreTest, StaleTmpFilesAreRemovedAtOpen) {
  {
    auto store = MustOpen();
    ASSERT_TRUE(store);
    ASSERT_TRUE(store->Put(FullRecord("keep")).ok());
  }
  WriteFile("keep.3.tmp", "half a record");
  WriteFile("other.tmp", "");
  WriteFile("keep.tmp", ReadFile("keep.rec"));
  auto store = MustOpen();
  ASSERT_TRUE(store);
  EXPECT_THAT(Files(), ElementsAre("keep.rec"));
  EXPECT_THAT(store->All(), ElementsAre(FullRecord("keep")));
  EXPECT_THAT(store->load_problems(), IsEmpty());
}

TEST_F(StateStoreTest, ForeignFilesAreReportedAndLeftAlone) {
  ASSERT_TRUE(MustOpen());
  WriteFile("README", "hello");
  WriteFile("bad.id.rec", "x");
  auto store = MustOpen();
  ASSERT_TRUE(store);
  EXPECT_THAT(store->load_problems(), SizeIs(2));
  EXPECT_THAT(Files(), ElementsAre("README", "bad.id.rec"));
}

TEST_F(StateStoreTest, BadSandboxIdsAreRejected) {
  auto store = MustOpen();
  ASSERT_TRUE(store);
  // Something a traversal would reach, to prove nothing is written there.
  const std::string outside = (fs::path(tmp_.path()) / "victim.rec").string();
  for (const std::string& id :
       {std::string(""), std::string("../victim"), std::string(".."), std::string("a/b"),
        std::string("x.y"), std::string(200, 'a'), std::string("a\0b", 3), dir() + "/abs"}) {
    AdoptionRecord r = FullRecord("ok");
    r.sandbox_id = id;
    EXPECT_EQ(store->Put(r).code(), absl::StatusCode::kInvalidArgument) << id;
    EXPECT_EQ(store->Remove(id).code(), absl::StatusCode::kInvalidArgument) << id;
    EXPECT_EQ(store->Get(id), std::nullopt) << id;
  }
  EXPECT_THAT(Files(), IsEmpty());
  EXPECT_FALSE(fs::exists(outside));
  EXPECT_THAT(store->All(), IsEmpty());
}

TEST_F(StateStoreTest, ConcurrentPutsFromEightThreadsAllLand) {
  auto store = MustOpen();
  ASSERT_TRUE(store);
  constexpr int kThreads = 8;
  constexpr int kPerThread = 25;
  std::vector<std::thread> threads;
  std::vector<int> failures(kThreads, 0);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        std::string id = "t" + std::to_string(t) + "r" + std::to_string(i);
        if (!store->Put(FullRecord(id, t * 100 + i)).ok()) ++failures[t];
        // Every thread also races on one shared id.
        if (!store->Put(FullRecord("shared", t * 100 + i)).ok()) ++failures[t];
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_THAT(failures, testing::Each(0));
  std::vector<AdoptionRecord> all = store->All();
  EXPECT_THAT(all, SizeIs(kThreads * kPerThread + 1));
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kPerThread; ++i) {
      std::string id = "t" + std::to_string(t) + "r" + std::to_string(i);
      EXPECT_EQ(store->Get(id), FullRecord(id, t * 100 + i));
    }
  }
  std::optional<AdoptionRecord> shared = store->Get("shared");
  ASSERT_TRUE(shared);
  EXPECT_THAT(Files(), SizeIs(kThreads * kPerThread + 1));  // no .tmp left behind

  // Memory and disk agree, including on which of the racing Puts won.
  store.reset();
  store = MustOpen();
  ASSERT_TRUE(store);
  EXPECT_EQ(store->All(), all);
  EXPECT_EQ(store->Get("shared"), shared);
}

// ---- kill -9 in the middle of Puts and Removes -------------------------------

// The crash test's operation number `step` on ids sb0..sb6: every 5th step
// removes, the others write a record whose content is derived from `step`,
// of sizes from 0 to ~190 KiB (multi-page writes, so a torn write is possible).
struct CrashOp {
  std::string id;
  std::optional<AdoptionRecord> put;  // nullopt: Remove
};

CrashOp OpAt(uint64_t step) {
  CrashOp op;
  op.id = "sb" + std::to_string(step % 7);
  if (step % 5 == 4) return op;
  AdoptionRecord r;
  r.sandbox_id = op.id;
  r.entry_id = "e" + std::to_string(step);
  r.pool = "p";
  r.adopted_at_ns = static_cast<int64_t>(step);
  r.run_request = Binary(static_cast<int>(step), (step * 7919) % 190000);
  r.phase = static_cast<AdoptionRecord::Phase>(step % 3);
  for (uint64_t c = 0; c < step % 3; ++c) {
    r.containers.push_back({.container_id = "c" + std::to_string(step),
                            .template_name = "t",
                            .create_request = Binary(static_cast<int>(step + c), 1000),
                            .created_at_ns = static_cast<int64_t>(step)});
  }
  op.put = r;
  return op;
}

using Model = std::map<std::string, AdoptionRecord>;

void Apply(Model& m, const CrashOp& op) {
  if (op.put) {
    m[op.id] = *op.put;
  } else {
    m.erase(op.id);
  }
}

// Child: open the store and run ops from `start` on, writing each finished
// step number to `ack_fd`, until killed.
[[noreturn]] void CrashChild(const std::string& dir, uint64_t start, int ack_fd) {
  absl::StatusOr<std::unique_ptr<StateStore>> store = StateStore::Open(dir);
  if (!store.ok()) _exit(3);
  for (uint64_t step = start;; ++step) {
    CrashOp op = OpAt(step);
    absl::Status st = op.put ? (*store)->Put(*op.put) : (*store)->Remove(op.id);
    if (!st.ok()) _exit(4);
    if (write(ack_fd, &step, sizeof step) != sizeof step) _exit(5);
  }
}

TEST_F(StateStoreTest, KillNineDuringPutsLeavesOnlyCompleteRecords) {
  std::mt19937 rng(std::random_device{}());
  Model base;  // what is on disk before each child runs
  uint64_t start = 0;
  int landed_in_flight = 0;
  constexpr int kIterations = 25;
  for (int iter = 0; iter < kIterations; ++iter) {
    int fds[2];
    ASSERT_EQ(pipe2(fds, O_CLOEXEC), 0);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      close(fds[0]);
      CrashChild(dir(), start, fds[1]);
    }
    close(fds[1]);

    // Kill after a random number of acknowledged operations plus a random
    // 0..20 ms (one operation is two fsyncs, ~8 ms here), so the kill lands
    // anywhere inside an operation: in a write, an fsync, between the rename
    // and the directory fsync, or between operations.
    const uint64_t min_acks = std::uniform_int_distribution<uint64_t>(1, 20)(rng);
    const auto extra = std::chrono::microseconds(std::uniform_int_distribution<int>(0, 20000)(rng));
    uint64_t acked = 0;  // operations the child reported finished
    auto read_acks = [&](int timeout_ms) {
      pollfd p{.fd = fds[0], .events = POLLIN, .revents = 0};
      if (poll(&p, 1, timeout_ms) <= 0) return false;
      uint64_t step;
      ssize_t n = read(fds[0], &step, sizeof step);
      if (n != sizeof step) return false;  // EOF: the child died
      EXPECT_EQ(step, start + acked);
      ++acked;
      return true;
    };
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (acked < min_acks && std::chrono::steady_clock::now() < give_up) {
      if (!read_acks(1000)) break;
    }
    ASSERT_GE(acked, min_acks) << "child made no progress";
    const auto kill_at = std::chrono::steady_clock::now() + extra;
    for (auto now = std::chrono::steady_clock::now(); now < kill_at;
         now = std::chrono::steady_clock::now()) {
      auto left = std::chrono::duration_cast<std::chrono::nanoseconds>(kill_at - now).count();
      timespec ts{.tv_sec = left / 1'000'000'000, .tv_nsec = left % 1'000'000'000};
      pollfd p{.fd = fds[0], .events = POLLIN, .revents = 0};
      if (ppoll(&p, 1, &ts, nullptr) > 0) read_acks(0);
    }
    ASSERT_EQ(kill(pid, SIGKILL), 0);
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
        << "child exited by itself, status " << status;
    while (read_acks(0)) {
    }
    close(fds[0]);

    // The files now hold the effect of exactly `acked` operations, or of one
    // more (the one in flight may have committed before its ack was sent).
    Model before = base;
    for (uint64_t s = start; s < start + acked; ++s) Apply(before, OpAt(s));
    Model after = before;
    Apply(after, OpAt(start + acked));

    auto store = MustOpen();
    ASSERT_TRUE(store);
    EXPECT_THAT(store->load_problems(), IsEmpty()) << "iteration " << iter;
    for (const std::string& name : Files()) {
      EXPECT_TRUE(name.ends_with(".rec")) << name << " after iteration " << iter;
    }
    Model loaded;
    for (AdoptionRecord& r : store->All()) loaded[r.sandbox_id] = std::move(r);
    bool is_before = loaded == before;
    bool is_after = loaded == after;
    ASSERT_TRUE(is_before || is_after)
        << "iteration " << iter << ": state is neither the " << acked
        << " acknowledged operations nor those plus the one in flight";
    if (is_after && !is_before) ++landed_in_flight;
    base = std::move(loaded);
    start += acked + 1;
  }
  std::printf("[ crash    ] %d kills, %llu operations; the in-flight operation had landed in %d\n",
              kIterations, static_cast<unsigned long long>(start), landed_in_flight);
}

// ---- cost -------------------------------------------------------------------

TEST_F(StateStoreTest, MeasurePutLatency) {
  auto store = MustOpen();
  ASSERT_TRUE(store);
  AdoptionRecord r = FullRecord("lat");
  r.run_request = Binary(3, 4096);  // a typical RunPodSandboxRequest is a few KiB
  constexpr int kPuts = 200;
  std::vector<double> us;
  for (int i = 0; i < kPuts; ++i) {
    r.sandbox_id = "lat" + std::to_string(i % 20);
    auto t0 = std::chrono::steady_clock::now();
    ASSERT_TRUE(store->Put(r).ok());
    us.push_back(
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(us.begin(), us.end());
  double sum = 0;
  for (double v : us) sum += v;
  std::printf(
      "[ put      ] one Put of a %zu-byte request, %d samples: p50 %.0f us, p90 %.0f us, p99 "
      "%.0f us, max %.0f us, mean %.0f us\n",
      r.run_request.size(), kPuts, us[kPuts / 2], us[kPuts * 9 / 10], us[kPuts * 99 / 100],
      us.back(), sum / kPuts);

  // Throughput with 8 writers: temp-file fsyncs run in parallel.
  constexpr int kThreads = 8;
  constexpr int kEach = 25;
  auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      AdoptionRecord mine = r;
      for (int i = 0; i < kEach; ++i) {
        mine.sandbox_id = "par" + std::to_string(t) + "x" + std::to_string(i);
        EXPECT_TRUE(store->Put(mine).ok());
      }
    });
  }
  for (std::thread& t : threads) t.join();
  double total_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  std::printf("[ put      ] %d threads x %d Puts: %.1f ms, %.0f Puts/s\n", kThreads, kEach,
              total_ms, kThreads * kEach / (total_ms / 1000));
}

}  // namespace
}  // namespace warmpool
