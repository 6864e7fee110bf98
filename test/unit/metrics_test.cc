// Metrics without containerd: the text format writer, the decision log, the
// rendering of every metric family (parsed back by the strict parser in
// test/prom_text.h), and the HTTP server over a real loopback socket.

#include "daemon/metrics.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <thread>

#include "daemon/decisions.h"
#include "daemon/metrics_http.h"
#include "daemon/prometheus.h"
#include "daemon/state_store.h"
#include "test/prom_text.h"

namespace warmpool {
namespace {

using namespace std::chrono_literals;
using testing::promtext::Parse;

// ---- the format ---------------------------------------------------------

TEST(PromText, ValuesAndEscapes) {
  EXPECT_EQ(prom::FormatValue(0), "0");
  EXPECT_EQ(prom::FormatValue(3), "3");
  EXPECT_EQ(prom::FormatValue(0.1), "0.1");
  EXPECT_EQ(prom::FormatValue(0.0025), "0.0025");
  EXPECT_EQ(prom::FormatValue(1e21), "1e+21");
  EXPECT_EQ(prom::FormatValue(INFINITY), "+Inf");
  EXPECT_EQ(prom::FormatValue(-INFINITY), "-Inf");
  EXPECT_EQ(prom::FormatValue(NAN), "NaN");
  EXPECT_EQ(prom::EscapeLabelValue("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");

  prom::TextWriter w;
  w.Family("x_total", "counter", "Help with \\ and\nnewline.");
  w.Sample("x_total", {{"pod", "ns/\"odd\"\nname\\"}}, 2);
  EXPECT_EQ(w.text(),
            "# HELP x_total Help with \\\\ and\\nnewline.\n"
            "# TYPE x_total counter\n"
            "x_total{pod=\"ns/\\\"odd\\\"\\nname\\\\\"} 2\n");
  auto parsed = Parse(w.text());
  ASSERT_EQ(parsed.error, "");
  EXPECT_EQ(parsed.Value("x_total", {{"pod", "ns/\"odd\"\nname\\"}}), 2);
}

TEST(PromText, HistogramIsCumulative) {
  const std::vector<double> bounds = {0.1, 1};
  prom::Histogram h(&bounds);
  for (double v : {0.05, 0.1, 0.5, 3.0}) h.Observe(v);
  prom::TextWriter w;
  w.Family("d_seconds", "histogram", "D.");
  w.HistogramSamples("d_seconds", {{"pool", "a"}}, h);
  EXPECT_EQ(w.text(),
            "# HELP d_seconds D.\n"
            "# TYPE d_seconds histogram\n"
            "d_seconds_bucket{pool=\"a\",le=\"0.1\"} 2\n"
            "d_seconds_bucket{pool=\"a\",le=\"1\"} 3\n"
            "d_seconds_bucket{pool=\"a\",le=\"+Inf\"} 4\n"
            "d_seconds_sum{pool=\"a\"} 3.65\n"
            "d_seconds_count{pool=\"a\"} 4\n");
  EXPECT_EQ(Parse(w.text()).error, "");
}

TEST(PromText, StrictParserRejectsBadText) {
  // The parser the integration test relies on must be able to fail.
  EXPECT_NE(Parse("a 1").error, "");                      // no newline
  EXPECT_NE(Parse("a{b=\"c} 1\n").error, "");             // unterminated
  EXPECT_NE(Parse("a{b=\"\\x\"} 1\n").error, "");         // bad escape
  EXPECT_NE(Parse("1a 1\n").error, "");                   // bad name
  EXPECT_NE(Parse("a one\n").error, "");                  // bad value
  EXPECT_NE(Parse("a 1\nb 1\na 2\n").error, "");          // reopened
  EXPECT_NE(Parse("a 1\na 2\n").error, "");               // series twice
  EXPECT_NE(Parse("a 1\n# TYPE a counter\n").error, "");  // TYPE late
  EXPECT_NE(Parse("# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\n"
                  "h_sum 1\nh_count 1\n")
                .error,
            "");  // not cumulative
  EXPECT_NE(Parse("# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n").error,
            "");  // no +Inf
  EXPECT_EQ(Parse("# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 1\n"
                  "h_sum 1\nh_count 1\n")
                .error,
            "");
}

// ---- the decision log ------------------------------------------------------

runtime::v1::PodSandboxConfig Pod(const std::string& ns, const std::string& name,
                                  const std::string& uid, uint32_t attempt = 0) {
  runtime::v1::PodSandboxConfig c;
  c.mutable_metadata()->set_namespace_(ns);
  c.mutable_metadata()->set_name(name);
  c.mutable_metadata()->set_uid(uid);
  c.mutable_metadata()->set_attempt(attempt);
  return c;
}

TEST(DecisionLog, FindsByNameUidAndBareNameNewestFirst) {
  DecisionLog log;
  log.Record(Pod("default", "web", "u1"), false, "any", "pool_empty", "no frozen entry left");
  log.Record(Pod("team", "web", "u2"), false, "", "no_pool", "no pool: ...");
  log.Record(Pod("default", "web", "u1", 1), true, "any", "hit", "", "e1", "sb1", 12ms);

  auto found = log.Find("default/web");
  ASSERT_EQ(found.size(), 2u);
  EXPECT_TRUE(found[0].hit);
  EXPECT_EQ(found[0].attempt, 1u);
  EXPECT_EQ(found[0].entry_id, "e1");
  EXPECT_EQ(found[0].handoff, 12ms);
  EXPECT_EQ(found[0].reason, "served by pool any: frozen entry e1 handed over in 12.0 ms");
  EXPECT_FALSE(found[1].hit);
  EXPECT_EQ(found[1].reason_code, "pool_empty");
  EXPECT_EQ(log.Find("web").size(), 2u);  // bare name: namespace default
  ASSERT_EQ(log.Find("u2").size(), 1u);
  EXPECT_EQ(log.Find("u2")[0].pod_namespace, "team");
  EXPECT_TRUE(log.Find("default/nope").empty());

  const DecisionLog::Counters c = log.Snapshot();
  EXPECT_EQ(c.hits.at("any"), 1u);
  EXPECT_EQ(c.misses.at({"any", "pool_empty"}), 1u);
  EXPECT_EQ(c.misses.at({"", "no_pool"}), 1u);
  EXPECT_EQ(c.handoff_seconds.at("any").count, 1u);
}

TEST(DecisionLog, BoundedButCountersAreNot) {
  DecisionLog log(nullptr, 3);
  for (int i = 0; i < 5; ++i) {
    log.Record(Pod("default", "p" + std::to_string(i), "u" + std::to_string(i)), false, "",
               "no_pool", "none");
  }
  EXPECT_TRUE(log.Find("default/p0").empty());
  EXPECT_TRUE(log.Find("default/p1").empty());
  EXPECT_EQ(log.Find("default/p2").size(), 1u);
  EXPECT_EQ(log.Find("default/p4").size(), 1u);
  EXPECT_EQ(log.Snapshot().misses.at({"", "no_pool"}), 5u);
  EXPECT_EQ(log.capacity(), 3u);
}

TEST(DecisionLog, HitsFromDurableRecordsAfterARestart) {
  char tmpl[] = "/tmp/decisions_test.XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  {
    auto store = StateStore::Open(dir + "/adopted");
    ASSERT_TRUE(store.ok()) << store.status();
    runtime::v1::RunPodSandboxRequest req;
    *req.mutable_config() = Pod("default", "old", "u-old");
    AdoptionRecord r;
    r.sandbox_id = "sb-old";
    r.entry_id = "e-old";
    r.pool = "any";
    r.run_request = req.SerializeAsString();
    r.adopted_at_ns = 1714564800'000000000;
    r.phase = AdoptionRecord::Phase::kDone;
    ASSERT_TRUE((*store)->Put(r).ok());
    AdoptionRecord half = r;  // a hand-off cut short is not a hit
    half.sandbox_id = "sb-half";
    half.phase = AdoptionRecord::Phase::kClaimed;
    ASSERT_TRUE((*store)->Put(half).ok());

    DecisionLog log(store->get());
    auto found = log.Find("u-old");
    ASSERT_EQ(found.size(), 1u);
    EXPECT_TRUE(found[0].hit);
    EXPECT_EQ(found[0].source, "record");
    EXPECT_EQ(found[0].sandbox_id, "sb-old");
    EXPECT_EQ(found[0].pool, "any");
    // Once the log has the same hand-off, it is not listed twice.
    log.Record(Pod("default", "old", "u-old"), true, "any", "hit", "", "e-old", "sb-old", 1ms);
    found = log.Find("default/old");
    ASSERT_EQ(found.size(), 1u);
    EXPECT_EQ(found[0].source, "log");
  }
  std::filesystem::remove_all(dir);
}

// ---- rendering ---------------------------------------------------------------

class FakePools : public AdminBackend {
 public:
  std::vector<PoolStatus> Pools() override {
    PoolStatus a;
    a.name = "any";
    a.target = 2;
    a.frozen = 1;
    a.warming = 1;
    a.adopted = 3;
    a.failures = 4;
    a.memory_bytes = 1 << 20;
    a.backoff = 1500ms;
    PoolStatus b;
    b.name = "py\"api";  // not a valid pool name, but the format must cope
    b.drained = true;
    return {a, b};
  }
  std::vector<EntryInfo> Entries() override {
    EntryInfo e;
    e.pool = "any";
    e.state = EntryState::kDestroying;
    return {e};
  }
};

TEST(RenderMetrics, EveryFamilyParsesWithItsLabels) {
  FakePools pools;
  DecisionLog decisions;
  decisions.Record(Pod("default", "a", "u"), true, "any", "hit", "", "e", "s", 30ms);
  decisions.Record(Pod("default", "b", "v"), false, "any", "security_context", "x");
  cri::RpcMetrics rpc;
  rpc.Record("/runtime.v1.RuntimeService/RunPodSandbox", grpc::StatusCode::OK, 80ms);
  rpc.Record("/runtime.v1.RuntimeService/RunPodSandbox", grpc::StatusCode::UNAVAILABLE, 1ms);
  prom::LabeledHistograms create(EntryCreateBuckets());
  create.Observe("any", 2.5);

  const std::string text = RenderMetrics({&pools, &decisions, &rpc, &create, "1.2.3", true});
  auto p = Parse(text);
  ASSERT_EQ(p.error, "") << text;

  EXPECT_EQ(p.Value("warmpool_build_info", {{"version", "1.2.3"}}), 1);
  EXPECT_EQ(p.Value("warmpool_node_slow_cgroup_moves", {}), 1);
  EXPECT_EQ(p.Value("warmpool_pool_target_entries", {{"pool", "any"}}), 2);
  EXPECT_EQ(p.Value("warmpool_pool_entries", {{"pool", "any"}, {"state", "frozen"}}), 1);
  EXPECT_EQ(p.Value("warmpool_pool_entries", {{"pool", "any"}, {"state", "warming"}}), 1);
  EXPECT_EQ(p.Value("warmpool_pool_entries", {{"pool", "any"}, {"state", "creating"}}), 0);
  EXPECT_EQ(p.Value("warmpool_pool_entries", {{"pool", "any"}, {"state", "adopted"}}), 3);
  EXPECT_EQ(p.Value("warmpool_pool_entries", {{"pool", "any"}, {"state", "destroying"}}), 1);
  EXPECT_EQ(p.Value("warmpool_pool_drained", {{"pool", "py\"api"}}), 1);
  EXPECT_EQ(p.Value("warmpool_pool_drained", {{"pool", "any"}}), 0);
  EXPECT_EQ(p.Value("warmpool_pool_frozen_memory_bytes", {{"pool", "any"}}), 1048576);
  EXPECT_EQ(p.Value("warmpool_pool_entry_failures_total", {{"pool", "any"}}), 4);
  EXPECT_EQ(p.Value("warmpool_pool_backoff_seconds", {{"pool", "any"}}), 1.5);
  EXPECT_EQ(p.Value("warmpool_pool_entry_create_duration_seconds_count", {{"pool", "any"}}), 1);
  EXPECT_EQ(p.Value("warmpool_pool_entry_create_duration_seconds_bucket",
                    {{"pool", "any"}, {"le", "2.5"}}),
            1);
  EXPECT_EQ(p.Value("warmpool_handoff_hits_total", {{"pool", "any"}}), 1);
  EXPECT_EQ(p.Value("warmpool_handoff_hits_total", {{"pool", "py\"api"}}), 0);  // 0, not absent
  EXPECT_EQ(
      p.Value("warmpool_handoff_misses_total", {{"pool", "any"}, {"reason", "security_context"}}),
      1);
  EXPECT_EQ(p.Value("warmpool_handoff_duration_seconds_count", {{"pool", "any"}}), 1);
  EXPECT_DOUBLE_EQ(p.Value("warmpool_handoff_duration_seconds_sum", {{"pool", "any"}}), 0.03);
  const testing::promtext::LabelMap run = {{"service", "runtime.v1.RuntimeService"},
                                           {"method", "RunPodSandbox"}};
  auto with = [](testing::promtext::LabelMap m, const std::string& k, const std::string& v) {
    m[k] = v;
    return m;
  };
  EXPECT_EQ(p.Value("warmpool_cri_requests_total", with(run, "code", "OK")), 1);
  EXPECT_EQ(p.Value("warmpool_cri_requests_total", with(run, "code", "UNAVAILABLE")), 1);
  EXPECT_EQ(p.Value("warmpool_cri_request_duration_seconds_count", run), 2);
  EXPECT_EQ(p.Value("warmpool_cri_request_duration_seconds_bucket", with(run, "le", "0.1")), 2);
  EXPECT_EQ(p.Value("warmpool_cri_request_duration_seconds_bucket", with(run, "le", "0.001")), 1);
  EXPECT_GT(p.Value("process_resident_memory_bytes"), 0);
  EXPECT_GT(p.Value("process_start_time_seconds"), 1.7e9);
  EXPECT_GT(p.Value("process_open_fds"), 2);

  // Conventions: counters end in _total, every family has HELP and a TYPE,
  // warmpool's own start with warmpool_.
  for (const auto& [name, f] : p.families) {
    EXPECT_FALSE(f.help.empty()) << name;
    EXPECT_NE(f.type, "untyped") << name;
    if (f.type == "counter") {
      EXPECT_TRUE(name.ends_with("_total")) << name;
    }
    EXPECT_TRUE(name.starts_with("warmpool_") || name.starts_with("process_")) << name;
  }
}

// ---- the HTTP server -------------------------------------------------------

// Sends `request` to 127.0.0.1:port and returns everything the server sent
// before it closed the connection.
std::string Exchange(int port, const std::string& request) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return "connect failed";
  }
  timeval tv{30, 0};  // above the server's 5 s I/O timeout
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  (void)!send(fd, request.data(), request.size(), MSG_NOSIGNAL);
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = recv(fd, buf, sizeof(buf), 0)) > 0;) out.append(buf, n);
  close(fd);
  return out;
}

int PortOf(const std::string& bound) { return std::stoi(bound.substr(bound.rfind(':') + 1)); }

TEST(MetricsHttp, ServesMetricsOnlyAtMetrics) {
  auto server = MetricsHttpServer::Start("127.0.0.1:0", [] { return std::string("up 1\n"); });
  ASSERT_TRUE(server.ok()) << server.status();
  const int port = PortOf((*server)->bound_address());
  ASSERT_GT(port, 0);
  EXPECT_TRUE((*server)->bound_address().starts_with("127.0.0.1:"));

  EXPECT_EQ(Exchange(port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
            "Content-Length: 5\r\nConnection: close\r\n\r\nup 1\n");
  EXPECT_EQ(Exchange(port, "HEAD /metrics HTTP/1.0\r\n\r\n"),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
            "Content-Length: 5\r\nConnection: close\r\n\r\n");
  EXPECT_TRUE(Exchange(port, "GET /metrics?x=1 HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 200 OK"));
  EXPECT_TRUE(Exchange(port, "GET / HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404 Not Found"));
  const std::string post = Exchange(port, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
  EXPECT_TRUE(post.starts_with("HTTP/1.1 405 Method Not Allowed")) << post;
  EXPECT_NE(post.find("Allow: GET, HEAD\r\n"), std::string::npos);
  EXPECT_TRUE(Exchange(port, "hello\r\n\r\n").starts_with("HTTP/1.1 400 Bad Request"));

  // A client that connects and says nothing does not stop the next scrape
  // for longer than the server's I/O timeout.
  const int idle = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(connect(idle, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  EXPECT_TRUE(Exchange(port, "GET /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 200 OK"));
  close(idle);

  (*server)->Stop();
  EXPECT_EQ(Exchange(port, "GET /metrics HTTP/1.1\r\n\r\n"), "connect failed");
}

TEST(MetricsHttp, PortInUseIsAnErrorThatSaysSo) {
  auto first = MetricsHttpServer::Start("127.0.0.1:0", [] { return std::string(); });
  ASSERT_TRUE(first.ok());
  auto second = MetricsHttpServer::Start((*first)->bound_address(), [] { return std::string(); });
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_NE(second.status().message().find("another process has the port"), std::string::npos)
      << second.status();
  auto v6 = MetricsHttpServer::Start("[::1]:0", [] { return std::string(); });
  if (v6.ok()) {
    EXPECT_TRUE((*v6)->bound_address().starts_with("[::1]:"));
  }
  auto localhost = MetricsHttpServer::Start("localhost:0", [] { return std::string(); });
  ASSERT_TRUE(localhost.ok()) << localhost.status();
  EXPECT_TRUE((*localhost)->bound_address().starts_with("127.0.0.1:"));
}

}  // namespace
}  // namespace warmpool
