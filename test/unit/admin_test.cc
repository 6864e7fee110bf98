// The admin API and warmpoolctl: an AdminServer on a temporary socket with a
// fake backend, called through the generated stub and through the warmpoolctl
// binary; the output formats against golden text.

#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>

#include "daemon/admin_server.h"
#include "daemon/ctl_format.h"
#include "warmpool_admin.grpc.pb.h"

namespace warmpool {
namespace {

using namespace std::chrono_literals;
using std::chrono::system_clock;

// 2024-05-01T12:00:00Z: the `now` of the golden tables.
const system_clock::time_point kGoldenNow = system_clock::time_point(1714564800s);

const std::string kSandbox1 = "4c1f0a9e2b7d55aa0e3d6c8b9f1e2d3c4b5a69784c1f0a9e2b7d55aa0e3d6c8b";
const std::string kContainer1 = "c0ffee00112233445566778899aabbccddeeff00112233445566778899aabbcc";

std::vector<PoolStatus> FixturePools() {
  PoolStatus py;
  py.name = "py-api";
  py.target = 3;
  py.warming = 1;
  py.frozen = 2;
  py.adopted = 1;
  py.hits = 7;
  py.memory_bytes = 12897485;  // 12.3MiB
  PoolStatus any;
  any.name = "any";
  any.target = 4;
  any.creating = 1;
  any.failures = 3;
  any.backoff = 4000ms;
  any.last_error =
      "RunPodSandbox: rpc error: code = Unknown desc = failed to setup network for sandbox";
  PoolStatus old;
  old.name = "old";
  old.frozen = 1;
  old.memory_bytes = 1536;
  old.draining = true;
  return {py, any, old};
}

// Given out of order: the server sorts by pool, then creation time.
std::vector<EntryInfo> FixtureEntries(system_clock::time_point now) {
  EntryInfo e1;
  e1.id = "py-api-7f3a";
  e1.pool = "py-api";
  e1.state = EntryState::kFrozen;
  e1.sandbox_id = kSandbox1;
  e1.container_ids = {kContainer1};
  e1.pod_ip = "10.88.0.12";
  e1.created_at = now - 200s + 500ms;
  e1.state_since = now - 150s;
  e1.memory_bytes = 12897485;
  EntryInfo e2;
  e2.id = "py-api-91bc";
  e2.pool = "py-api";
  e2.state = EntryState::kWarming;
  e2.sandbox_id = "9d2e";
  e2.pod_ip = "10.88.0.13";
  e2.created_at = now - 90s;
  e2.state_since = now - 80s;
  EntryInfo e3;
  e3.id = "any-0001";
  e3.pool = "any";
  e3.state = EntryState::kCreating;
  e3.created_at = now - 2h - 10min;
  e3.state_since = e3.created_at;
  EntryInfo e4;
  e4.id = "any-0000";
  e4.pool = "any";
  e4.state = EntryState::kDestroying;
  e4.sandbox_id = "77aa";
  e4.created_at = now - 72h;
  e4.last_error = "readiness: http :8080/healthz:\nconnection refused";
  return {e1, e2, e3, e4};
}

class FakeBackend : public AdminBackend {
 public:
  explicit FakeBackend(system_clock::time_point now) : entries_(FixtureEntries(now)) {}
  absl::StatusOr<PoolStatus> Drain(const std::string& pool) override {
    std::lock_guard lock(mu_);
    for (PoolStatus& p : pools_) {
      if (p.name == pool) {
        p.drained = true;
        return p;
      }
    }
    return absl::NotFoundError("no pool named '" + pool + "'");
  }
  absl::StatusOr<PoolStatus> Fill(const std::string& pool) override {
    std::lock_guard lock(mu_);
    for (PoolStatus& p : pools_) {
      if (p.name == pool && p.draining) {
        return absl::FailedPreconditionError("pool '" + pool + "' was removed from the config");
      }
      if (p.name == pool) {
        p.drained = false;
        return p;
      }
    }
    return absl::NotFoundError("no pool named '" + pool + "'");
  }
  std::vector<PoolStatus> Pools() override {
    std::lock_guard lock(mu_);
    return pools_;
  }
  std::vector<EntryInfo> Entries() override {
    std::lock_guard lock(mu_);
    return entries_;
  }

 private:
  std::mutex mu_;
  std::vector<PoolStatus> pools_ = FixturePools();
  std::vector<EntryInfo> entries_;
};

admin::v1::ListPoolsResponse GoldenPools() {
  admin::v1::ListPoolsResponse r;
  for (const PoolStatus& p : FixturePools()) *r.add_pools() = ToProto(p);
  return r;
}

// In the server's order.
admin::v1::ListEntriesResponse GoldenEntries(system_clock::time_point now) {
  std::vector<EntryInfo> e = FixtureEntries(now);
  admin::v1::ListEntriesResponse r;
  for (int i : {3, 2, 0, 1}) *r.add_entries() = ToProto(e[i]);
  return r;
}

const char kPoolsTable[] =
    "NAME             TARGET   FROZEN   WARMING   CREATING   ADOPTED   FAILURES   MEMORY    "
    "BACKOFF   LAST-ERROR\n"
    "py-api           3        2        1         0          1         0          12.3MiB   -"
    "         -\n"
    "any              4        0        0         1          0         3          0B        4s"
    "        RunPodSandbox: rpc error: code = Unknown desc = failed to...\n"
    "old (draining)   0        1        0         0          0         0          1.5KiB    -"
    "         -\n";

const char kEntriesTable[] =
    "ID            POOL     STATE        AGE   SANDBOX         IP           MEMORY    ERROR\n"
    "any-0000      any      destroying   3d    77aa            -            -         "
    "readiness: http :8080/healthz: connection refused\n"
    "any-0001      any      creating     2h    -               -            -         -\n"
    "py-api-7f3a   py-api   frozen       3m    4c1f0a9e2b7d5   10.88.0.12   12.3MiB   -\n"
    "py-api-91bc   py-api   warming      1m    9d2e            10.88.0.13   -         -\n";

const char kPoolsJson[] = R"({
  "pools": [
    {
      "name": "py-api",
      "target": 3,
      "frozen": 2,
      "warming": 1,
      "creating": 0,
      "adopted": 1,
      "hits": 7,
      "failures": 0,
      "memory_bytes": 12897485,
      "backoff_ms": 0,
      "draining": false,
      "last_error": "",
      "drained": false
    },
    {
      "name": "any",
      "target": 4,
      "frozen": 0,
      "warming": 0,
      "creating": 1,
      "adopted": 0,
      "hits": 0,
      "failures": 3,
      "memory_bytes": 0,
      "backoff_ms": 4000,
      "draining": false,
      "last_error": "RunPodSandbox: rpc error: code = Unknown desc = failed to setup network for sandbox",
      "drained": false
    },
    {
      "name": "old",
      "target": 0,
      "frozen": 1,
      "warming": 0,
      "creating": 0,
      "adopted": 0,
      "hits": 0,
      "failures": 0,
      "memory_bytes": 1536,
      "backoff_ms": 0,
      "draining": true,
      "last_error": "",
      "drained": false
    }
  ]
}
)";

// ---- formats ---------------------------------------------------------------

TEST(CtlFormat, Units) {
  EXPECT_EQ(ctl::HumanBytes(0), "0B");
  EXPECT_EQ(ctl::HumanBytes(1023), "1023B");
  EXPECT_EQ(ctl::HumanBytes(1024), "1KiB");
  EXPECT_EQ(ctl::HumanBytes(12897485), "12.3MiB");
  EXPECT_EQ(ctl::HumanBytes(1048575), "1MiB");  // 1023.999KiB rounds up a unit
  EXPECT_EQ(ctl::HumanBytes(4ull << 30), "4GiB");
  EXPECT_EQ(ctl::HumanAge(-3s), "0s");
  EXPECT_EQ(ctl::HumanAge(5s), "5s");
  EXPECT_EQ(ctl::HumanAge(3min + 59s), "3m");
  EXPECT_EQ(ctl::HumanAge(2h + 59min), "2h");
  EXPECT_EQ(ctl::HumanAge(47h), "47h");
  EXPECT_EQ(ctl::HumanAge(50h), "2d");
  EXPECT_EQ(ctl::HumanMillis(0), "-");
  EXPECT_EQ(ctl::HumanMillis(500), "500ms");
  EXPECT_EQ(ctl::HumanMillis(1500), "1.5s");
  EXPECT_EQ(ctl::HumanMillis(4000), "4s");
  EXPECT_EQ(ctl::HumanMillis(150000), "2m30s");
  EXPECT_EQ(ctl::HumanMillis(2 * 3600 * 1000 + 60000), "2h1m");
  EXPECT_EQ(ctl::ShortId(kSandbox1), "4c1f0a9e2b7d5");
  EXPECT_EQ(ctl::ShortId("abc"), "abc");
  EXPECT_EQ(ctl::Rfc3339(0), "");
  EXPECT_EQ(ctl::Rfc3339(1714564800'000000000), "2024-05-01T12:00:00Z");
  EXPECT_EQ(ctl::Rfc3339(1714564800'500000000), "2024-05-01T12:00:00.5Z");
  EXPECT_EQ(ctl::Rfc3339(1714564800'000000001), "2024-05-01T12:00:00.000000001Z");
}

TEST(CtlFormat, PoolsTable) { EXPECT_EQ(ctl::FormatPoolsTable(GoldenPools()), kPoolsTable); }

TEST(CtlFormat, EntriesTable) {
  EXPECT_EQ(ctl::FormatEntriesTable(GoldenEntries(kGoldenNow), kGoldenNow), kEntriesTable);
}

TEST(CtlFormat, EmptyTables) {
  EXPECT_EQ(ctl::FormatPoolsTable({}), "no pools configured\n");
  EXPECT_EQ(ctl::FormatEntriesTable({}, kGoldenNow), "no entries\n");
  EXPECT_EQ(ctl::FormatPoolsJson({}), "{\n  \"pools\": []\n}\n");
  EXPECT_EQ(ctl::FormatEntriesJson({}), "{\n  \"entries\": []\n}\n");
}

TEST(CtlFormat, PoolsJson) { EXPECT_EQ(ctl::FormatPoolsJson(GoldenPools()), kPoolsJson); }

TEST(CtlFormat, EntriesJson) {
  admin::v1::ListEntriesResponse r;
  *r.add_entries() = GoldenEntries(kGoldenNow).entries(2);  // py-api-7f3a
  admin::v1::Entry unset;
  unset.set_id("x");
  unset.set_pool("p");
  *r.add_entries() = unset;
  EXPECT_EQ(ctl::FormatEntriesJson(r), R"({
  "entries": [
    {
      "id": "py-api-7f3a",
      "pool": "py-api",
      "state": "frozen",
      "sandbox_id": "4c1f0a9e2b7d55aa0e3d6c8b9f1e2d3c4b5a69784c1f0a9e2b7d55aa0e3d6c8b",
      "container_ids": [
        "c0ffee00112233445566778899aabbccddeeff00112233445566778899aabbcc"
      ],
      "pod_ip": "10.88.0.12",
      "created_at": "2024-05-01T11:56:40.5Z",
      "state_since": "2024-05-01T11:57:30Z",
      "memory_bytes": 12897485,
      "last_error": ""
    },
    {
      "id": "x",
      "pool": "p",
      "state": "unknown",
      "sandbox_id": "",
      "container_ids": [],
      "pod_ip": "",
      "created_at": null,
      "state_since": null,
      "memory_bytes": 0,
      "last_error": ""
    }
  ]
}
)");
}

TEST(CtlFormat, Errors) {
  const std::string sock = "/run/warmpool/admin.sock";
  EXPECT_EQ(ctl::DescribeConnectError(sock, ENOENT),
            "warmpoolctl: cannot reach warmpoold at /run/warmpool/admin.sock: no such socket (is "
            "warmpoold running? see systemctl status warmpool)");
  EXPECT_EQ(ctl::DescribeConnectError(sock, EACCES),
            "warmpoolctl: cannot reach warmpoold at /run/warmpool/admin.sock: permission denied "
            "(the admin socket is root only: run warmpoolctl as root)");
  EXPECT_EQ(ctl::DescribeConnectError(sock, ECONNREFUSED),
            "warmpoolctl: cannot reach warmpoold at /run/warmpool/admin.sock: connection refused, "
            "nothing listens on the socket (is warmpoold running? see systemctl status warmpool)");
  EXPECT_EQ(ctl::DescribeRpcError(sock, grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "x"), 5s),
            "warmpoolctl: warmpoold at /run/warmpool/admin.sock did not answer within 5s (see "
            "journalctl -u warmpool)");
  EXPECT_EQ(ctl::DescribeRpcError(sock, grpc::Status(grpc::StatusCode::NOT_FOUND, "no pool"), 5s),
            "warmpoolctl: no pool");
}

// ---- explain ---------------------------------------------------------------

Decision MissDecision() {
  Decision d;
  d.pod_namespace = "default";
  d.pod_name = "web-1";
  d.pod_uid = "uid-web-1";
  d.pool = "any";
  d.reason_code = "security_context";
  d.reason = "config.linux.security_context.privileged: pod asks true, pool has false";
  d.at = kGoldenNow - 200s;
  return d;
}

Decision HitDecision() {
  Decision d;
  d.pod_namespace = "default";
  d.pod_name = "web-1";
  d.pod_uid = "uid-web-1";
  d.attempt = 1;
  d.hit = true;
  d.pool = "any";
  d.reason_code = "hit";
  d.reason = "served by pool any: frozen entry 71e7e116b564 handed over in 37.5 ms";
  d.entry_id = "71e7e116b564";
  d.sandbox_id = kSandbox1;
  d.handoff = 37492us;
  d.at = kGoldenNow - 90s;
  return d;
}

admin::v1::ExplainResponse GoldenExplain(std::vector<Decision> decisions) {
  admin::v1::ExplainResponse r;
  for (const Decision& d : decisions) *r.add_decisions() = ToProto(d);
  r.set_log_since_unix_nanos(1714564800'000000000 - 3600'000000000);
  r.set_log_capacity(4096);
  return r;
}

TEST(CtlFormat, ExplainHitWithAnEarlierMiss) {
  EXPECT_EQ(ctl::FormatExplainTable("default/web-1", GoldenExplain({HitDecision(), MissDecision()}),
                                    kGoldenNow),
            "POD:      default/web-1 (uid uid-web-1), attempt 1\n"
            "RESULT:   hit: served by pool any\n"
            "ENTRY:    71e7e116b564, sandbox 4c1f0a9e2b7d5, handed over in 37.5 ms\n"
            "WHEN:     2024-05-01T11:58:30Z (1m ago)\n"
            "\n"
            "earlier decisions about default/web-1:\n"
            "WHEN                   ATTEMPT   RESULT   POOL   REASON\n"
            "2024-05-01T11:56:40Z   0         miss     any    security_context: "
            "config.linux.security_context.privilege...\n");
}

TEST(CtlFormat, ExplainMissWithHint) {
  EXPECT_EQ(ctl::FormatExplainTable("uid-web-1", GoldenExplain({MissDecision()}), kGoldenNow),
            "POD:      default/web-1 (uid uid-web-1), attempt 0\n"
            "RESULT:   miss: started cold by containerd\n"
            "POOL:     any\n"
            "REASON:   config.linux.security_context.privileged: pod asks true, pool has false "
            "[security_context]\n"
            "HINT:     the pod asks for something the pool's entries were not made with; make the "
            "pool's [pool.sandbox] equal the pod's spec (or the pod's spec equal the pool)\n"
            "WHEN:     2024-05-01T11:56:40Z (3m ago)\n");
}

TEST(CtlFormat, ExplainNothingKnown) {
  EXPECT_EQ(ctl::FormatExplainTable("default/nope", GoldenExplain({}), kGoldenNow),
            "no decision known for pod default/nope: warmpoold saw no RunPodSandbox for it since "
            "it started at 2024-05-01T11:00:00Z (1h ago) (it remembers the last 4096 decisions, "
            "and hits for as long as their pod exists); check the name (namespace/name or uid) "
            "and that kubelet talks to warmpoold\n");
  EXPECT_EQ(ctl::FormatExplainJson("default/nope", GoldenExplain({})), R"({
  "pod": "default/nope",
  "found": false,
  "decisions": [],
  "log_since": "2024-05-01T11:00:00Z",
  "log_capacity": 4096
}
)");
}

TEST(CtlFormat, ExplainJson) {
  EXPECT_EQ(ctl::FormatExplainJson("default/web-1", GoldenExplain({HitDecision()})), R"({
  "pod": "default/web-1",
  "found": true,
  "decisions": [
    {
      "namespace": "default",
      "name": "web-1",
      "uid": "uid-web-1",
      "attempt": 1,
      "hit": true,
      "pool": "any",
      "reason_code": "hit",
      "reason": "served by pool any: frozen entry 71e7e116b564 handed over in 37.5 ms",
      "decided_at": "2024-05-01T11:58:30Z",
      "entry_id": "71e7e116b564",
      "sandbox_id": "4c1f0a9e2b7d55aa0e3d6c8b9f1e2d3c4b5a69784c1f0a9e2b7d55aa0e3d6c8b",
      "handoff_ms": 37.492,
      "source": "log"
    }
  ],
  "log_since": "2024-05-01T11:00:00Z",
  "log_capacity": 4096
}
)");
}

TEST(CtlFormat, ReasonHints) {
  for (const char* code : {"no_pool",
                           "unknown_pool",
                           "namespace",
                           "unknown_field",
                           "runtime_handler",
                           "namespace_options",
                           "security_context",
                           "sysctls",
                           "port_mappings",
                           "windows",
                           "image",
                           "env",
                           "command",
                           "args",
                           "working_dir",
                           "stdin",
                           "tty",
                           "devices",
                           "stop_signal",
                           "template",
                           "app_pool",
                           "pool_empty",
                           "handoff_failed",
                           "passthrough"}) {
    EXPECT_NE(ctl::ReasonHint(code), "") << code;
  }
  EXPECT_EQ(ctl::ReasonHint("hit"), "");
}

// ---- the server ----------------------------------------------------------

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/admin_test.XXXXXX";
    if (mkdtemp(tmpl) == nullptr) std::abort();
    path_ = tmpl;
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

class AdminServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    socket_ = dir_.path() + "/run/admin.sock";  // parent created by Start
    decisions_.Record(MissDecision());
    decisions_.Record(HitDecision());
    auto server = AdminServer::Start(socket_, &backend_, &decisions_);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    stub_ = admin::v1::Admin::NewStub(
        grpc::CreateChannel("unix:" + socket_, grpc::InsecureChannelCredentials()));
  }

  std::unique_ptr<grpc::ClientContext> Context() {
    auto context = std::make_unique<grpc::ClientContext>();
    context->set_deadline(system_clock::now() + 5s);
    return context;
  }

  TempDir dir_;
  system_clock::time_point now_ = system_clock::now();
  FakeBackend backend_{now_};
  DecisionLog decisions_;
  std::string socket_;
  std::unique_ptr<AdminServer> server_;
  std::unique_ptr<admin::v1::Admin::Stub> stub_;
};

TEST_F(AdminServerTest, ListPoolsRoundTrips) {
  admin::v1::ListPoolsResponse response;
  ASSERT_TRUE(stub_->ListPools(Context().get(), {}, &response).ok());
  ASSERT_EQ(response.pools_size(), 3);
  const admin::v1::PoolStatus& any = response.pools(1);
  EXPECT_EQ(any.name(), "any");
  EXPECT_EQ(any.target(), 4);
  EXPECT_EQ(any.creating(), 1);
  EXPECT_EQ(any.failures(), 3u);
  EXPECT_EQ(any.backoff_ms(), 4000);
  EXPECT_EQ(any.last_error(), FixturePools()[1].last_error);
  const admin::v1::PoolStatus& py = response.pools(0);
  EXPECT_EQ(py.name(), "py-api");
  EXPECT_EQ(py.warming(), 1);
  EXPECT_EQ(py.frozen(), 2);
  EXPECT_EQ(py.adopted(), 1);
  EXPECT_EQ(py.hits(), 7u);
  EXPECT_EQ(py.memory_bytes(), 12897485u);
  EXPECT_FALSE(py.draining());
  EXPECT_TRUE(response.pools(2).draining());
}

TEST_F(AdminServerTest, ListEntriesRoundTripsSorted) {
  admin::v1::ListEntriesResponse response;
  ASSERT_TRUE(stub_->ListEntries(Context().get(), {}, &response).ok());
  ASSERT_EQ(response.entries_size(), 4);
  EXPECT_EQ(response.entries(0).id(), "any-0000");
  EXPECT_EQ(response.entries(1).id(), "any-0001");
  EXPECT_EQ(response.entries(2).id(), "py-api-7f3a");
  EXPECT_EQ(response.entries(3).id(), "py-api-91bc");
  const admin::v1::Entry& e = response.entries(2);
  const EntryInfo want = FixtureEntries(now_)[0];
  EXPECT_EQ(e.pool(), "py-api");
  EXPECT_EQ(e.state(), admin::v1::ENTRY_STATE_FROZEN);
  EXPECT_EQ(e.sandbox_id(), kSandbox1);
  ASSERT_EQ(e.container_ids_size(), 1);
  EXPECT_EQ(e.container_ids(0), kContainer1);
  EXPECT_EQ(e.pod_ip(), "10.88.0.12");
  EXPECT_EQ(e.created_at_unix_nanos(),
            std::chrono::nanoseconds(want.created_at.time_since_epoch()).count());
  EXPECT_EQ(e.state_since_unix_nanos(),
            std::chrono::nanoseconds(want.state_since.time_since_epoch()).count());
  EXPECT_EQ(e.memory_bytes(), 12897485u);
  EXPECT_EQ(response.entries(0).state(), admin::v1::ENTRY_STATE_DESTROYING);
  EXPECT_EQ(response.entries(0).last_error(), "readiness: http :8080/healthz:\nconnection refused");
  EXPECT_EQ(response.entries(1).state(), admin::v1::ENTRY_STATE_CREATING);
  EXPECT_EQ(response.entries(3).state(), admin::v1::ENTRY_STATE_WARMING);
}

TEST_F(AdminServerTest, ListEntriesOfOnePool) {
  admin::v1::ListEntriesRequest request;
  request.set_pool("py-api");
  admin::v1::ListEntriesResponse response;
  ASSERT_TRUE(stub_->ListEntries(Context().get(), request, &response).ok());
  ASSERT_EQ(response.entries_size(), 2);
  EXPECT_EQ(response.entries(0).id(), "py-api-7f3a");
  EXPECT_EQ(response.entries(1).id(), "py-api-91bc");

  request.set_pool("old");  // a pool without entries: empty, not an error
  ASSERT_TRUE(stub_->ListEntries(Context().get(), request, &response).ok());
  EXPECT_EQ(response.entries_size(), 0);

  request.set_pool("nope");
  grpc::Status status = stub_->ListEntries(Context().get(), request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(status.error_message(), "no pool named 'nope'");
}

TEST_F(AdminServerTest, SocketIsRootOnlyAndRemovedOnShutdown) {
  struct stat st {};
  ASSERT_EQ(lstat(socket_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  server_->Shutdown();
  EXPECT_FALSE(std::filesystem::exists(std::filesystem::symlink_status(socket_)));
  server_->Shutdown();  // idempotent
}

TEST_F(AdminServerTest, RefusesALiveSocketReplacesAStaleOne) {
  FakeBackend other(now_);
  auto second = AdminServer::Start(socket_, &other);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kAlreadyExists) << second.status();
  // The live server still answers.
  admin::v1::ListPoolsResponse response;
  EXPECT_TRUE(stub_->ListPools(Context().get(), {}, &response).ok());
  server_.reset();

  // A socket file nobody listens on (a crashed warmpoold) is replaced.
  const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, socket_.c_str(), sizeof(addr.sun_path) - 1);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  close(fd);
  ASSERT_TRUE(std::filesystem::exists(std::filesystem::symlink_status(socket_)));
  auto third = AdminServer::Start(socket_, &other);
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_TRUE(stub_->ListPools(Context().get(), {}, &response).ok());
}

// ---- warmpoolctl, the binary -----------------------------------------------

struct CtlRun {
  int exit_code = -1;
  std::string out;
  std::string err;
};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Runs warmpoolctl with `args`; as user `uid` when not -1.
CtlRun RunCtl(const TempDir& dir, std::vector<std::string> args, uid_t uid = -1) {
  const std::string out = dir.path() + "/stdout", err = dir.path() + "/stderr";
  args.insert(args.begin(), WARMPOOLCTL_PATH);
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    const int out_fd = open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    const int err_fd = open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (out_fd < 0 || err_fd < 0 || dup2(out_fd, 1) < 0 || dup2(err_fd, 2) < 0) _exit(126);
    if (uid != static_cast<uid_t>(-1) && (setgid(uid) != 0 || setuid(uid) != 0)) _exit(126);
    execv(argv[0], argv.data());
    _exit(127);
  }
  CtlRun run;
  int status = 0;
  if (pid < 0 || waitpid(pid, &status, 0) != pid) return run;
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  run.out = ReadFile(out);
  run.err = ReadFile(err);
  return run;
}

TEST_F(AdminServerTest, CtlPrintsTablesAndJson) {
  CtlRun run = RunCtl(dir_, {"--admin", socket_, "pools"});
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(run.out, kPoolsTable);
  EXPECT_EQ(run.err, "");

  run = RunCtl(dir_, {"--admin", "unix://" + socket_, "pools", "-o", "json"});
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(run.out, kPoolsJson);

  // The fixture's ages are minutes and more, so "now" may move a little.
  run = RunCtl(dir_, {"--admin", socket_, "entries"});
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(run.out, kEntriesTable);

  run = RunCtl(dir_, {"--admin", socket_, "entries", "-o", "json"});
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(run.out, ctl::FormatEntriesJson(GoldenEntries(now_)));

  run = RunCtl(dir_, {"--admin", socket_, "entries", "--pool", "any", "--output", "table"});
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(run.out,
            "ID         POOL   STATE        AGE   SANDBOX   IP   MEMORY   ERROR\n"
            "any-0000   any    destroying   3d    77aa      -    -        "
            "readiness: http :8080/healthz: connection refused\n"
            "any-0001   any    creating     2h    -         -    -        -\n");
}

TEST_F(AdminServerTest, CtlErrors) {
  CtlRun run = RunCtl(dir_, {"--admin", socket_, "entries", "--pool", "nope"});
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_EQ(run.out, "");
  EXPECT_EQ(run.err, "warmpoolctl: no pool named 'nope'\n");

  run = RunCtl(dir_, {"--admin", socket_, "pools", "-o", "yaml"});
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_EQ(run.out, "");
  EXPECT_NE(run.err.find("yaml"), std::string::npos) << run.err;

  run = RunCtl(dir_, {"--admin", socket_});
  EXPECT_EQ(run.exit_code, 2);

  run = RunCtl(dir_, {"--help"});
  EXPECT_EQ(run.exit_code, 0);
  EXPECT_NE(run.out.find("entries"), std::string::npos) << run.out;

  // A socket whose daemon died without removing it.
  const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const std::string stale = dir_.path() + "/stale.sock";
  std::strncpy(addr.sun_path, stale.c_str(), sizeof(addr.sun_path) - 1);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  close(fd);
  run = RunCtl(dir_, {"--admin", stale, "pools"});
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_EQ(run.err, ctl::DescribeConnectError(stale, ECONNREFUSED) + "\n");

  run = RunCtl(dir_, {"--admin", dir_.path(), "pools"});
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_EQ(run.err, "warmpoolctl: cannot reach warmpoold at " + dir_.path() +
                         ": not a socket (see --admin and [daemon] admin in /etc/warmpool.toml)\n");
}

TEST(Ctl, NoDaemon) {
  TempDir dir;
  const std::string missing = dir.path() + "/admin.sock";
  CtlRun run = RunCtl(dir, {"--admin", missing, "pools"});
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_EQ(run.out, "");
  EXPECT_EQ(run.err, "warmpoolctl: cannot reach warmpoold at " + missing +
                         ": no such socket (is warmpoold running? see systemctl status "
                         "warmpool)\n");
}

TEST_F(AdminServerTest, CtlAsNonRootIsDenied) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to run warmpoolctl as another user";
  // Directories open to all, so only the socket's own mode stops the user.
  ASSERT_EQ(chmod(dir_.path().c_str(), 0755), 0);
  ASSERT_EQ(chmod((dir_.path() + "/run").c_str(), 0755), 0);
  CtlRun run = RunCtl(dir_, {"--admin", socket_, "pools"}, 65534);
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_EQ(run.err, "warmpoolctl: cannot reach warmpoold at " + socket_ +
                         ": permission denied (the admin socket is root only: run warmpoolctl "
                         "as root)\n");
}

TEST_F(AdminServerTest, ExplainRoundTripsAndCtlPrintsIt) {
  admin::v1::ExplainRequest request;
  request.set_pod("uid-web-1");
  admin::v1::ExplainResponse response;
  ASSERT_TRUE(stub_->Explain(Context().get(), request, &response).ok());
  ASSERT_EQ(response.decisions_size(), 2);
  EXPECT_TRUE(response.decisions(0).hit());  // newest first
  EXPECT_EQ(response.decisions(0).handoff_micros(), 37492);
  EXPECT_EQ(response.decisions(1).reason_code(), "security_context");
  EXPECT_EQ(response.log_capacity(), 4096u);
  EXPECT_GT(response.log_since_unix_nanos(), 0);

  request.set_pod("");
  EXPECT_EQ(stub_->Explain(Context().get(), request, &response).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);

  CtlRun run = RunCtl(dir_, {"--admin", socket_, "explain", "default/web-1"});
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_TRUE(
      run.out.starts_with("POD:      default/web-1 (uid uid-web-1), attempt 1\n"
                          "RESULT:   hit: served by pool any\n"))
      << run.out;
  EXPECT_NE(run.out.find("earlier decisions about default/web-1:"), std::string::npos);

  run = RunCtl(dir_, {"--admin", socket_, "explain", "web-1", "-o", "json"});
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_NE(run.out.find("\"found\": true"), std::string::npos) << run.out;

  run = RunCtl(dir_, {"--admin", socket_, "explain", "default/nope"});
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_TRUE(run.out.starts_with("no decision known for pod default/nope:")) << run.out;
  run = RunCtl(dir_, {"--admin", socket_, "explain", "default/nope", "-o", "json"});
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_NE(run.out.find("\"found\": false"), std::string::npos) << run.out;

  run = RunCtl(dir_, {"--admin", socket_, "explain"});
  EXPECT_EQ(run.exit_code, 2);
}

TEST_F(AdminServerTest, CtlDrainsAndFills) {
  CtlRun run = RunCtl(dir_, {"--admin", socket_, "drain", "py-api"});
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(run.out,
            "pool py-api drained: 3 entries being removed; it serves no pod and does not refill "
            "until: warmpoolctl fill py-api\n");
  run = RunCtl(dir_, {"--admin", socket_, "pools"});
  EXPECT_NE(run.out.find("py-api (drained)"), std::string::npos) << run.out;
  run = RunCtl(dir_, {"--admin", socket_, "pools", "-o", "json"});
  EXPECT_NE(run.out.find("\"drained\": true"), std::string::npos) << run.out;

  run = RunCtl(dir_, {"--admin", socket_, "fill", "py-api", "-o", "json"});
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_TRUE(run.out.starts_with("{\n  \"name\": \"py-api\",\n")) << run.out;
  EXPECT_NE(run.out.find("\"drained\": false"), std::string::npos) << run.out;
  run = RunCtl(dir_, {"--admin", socket_, "fill", "py-api"});
  EXPECT_EQ(run.out, "pool py-api filling: 2 of 3 frozen, 1 being made\n");

  run = RunCtl(dir_, {"--admin", socket_, "drain", "nope"});
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_EQ(run.err, "warmpoolctl: no pool named 'nope'\n");
  run = RunCtl(dir_, {"--admin", socket_, "fill", "old"});
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_EQ(run.err, "warmpoolctl: pool 'old' was removed from the config\n");
  // --wait gives up with what it saw (the fake never changes its counts).
  run = RunCtl(dir_, {"--admin", socket_, "drain", "py-api", "--wait", "--timeout", "1"});
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_EQ(run.err,
            "warmpoolctl: pool py-api not empty after 1s: 2 frozen, 1 warming, 0 creating\n");
  run = RunCtl(dir_, {"--admin", socket_, "drain"});
  EXPECT_EQ(run.exit_code, 2);
}

TEST(Ctl, NoDaemonForEveryCommand) {
  TempDir dir;
  const std::string missing = dir.path() + "/admin.sock";
  for (std::vector<std::string> args : {std::vector<std::string>{"explain", "default/x"},
                                        {"drain", "any"},
                                        {"fill", "any"},
                                        {"entries"}}) {
    args.insert(args.begin(), {"--admin", missing});
    CtlRun run = RunCtl(dir, args);
    EXPECT_EQ(run.exit_code, 1) << args[2];
    EXPECT_EQ(run.out, "");
    EXPECT_EQ(run.err, "warmpoolctl: cannot reach warmpoold at " + missing +
                           ": no such socket (is warmpoold running? see systemctl status "
                           "warmpool)\n");
  }
}

}  // namespace
}  // namespace warmpool
