// Observability against a real containerd: a warmpoold with a sandbox pool
// serves one pod warm (hit) and one cold (miss); its /metrics scrape is
// parsed by the strict parser (test/prom_text.h) and by Prometheus' Python
// client parser, and must count exactly that; `warmpoolctl explain` says why
// for both pods; `warmpoolctl drain` and `fill` change the pool (and a pod
// started while drained is a miss that says so); once warmpoold is stopped,
// warmpoolctl says it is not running.

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "test/integration/kubelet_driver.h"
#include "test/integration/pool_fixture.h"
#include "test/integration/test_bed.h"
#include "test/integration/warmpoold_process.h"
#include "test/prom_text.h"
#include "warmpool_admin.grpc.pb.h"

namespace warmpool::testing {
namespace {

using namespace std::chrono_literals;
using promtext::LabelMap;

struct ProgramRun {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// Runs argv[0] with `args`, stdout and stderr into files under `dir`.
ProgramRun RunProgram(const std::filesystem::path& dir, std::vector<std::string> args) {
  const std::string out = dir / "run.out", err = dir / "run.err";
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    const int o = open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    const int e = open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (o < 0 || e < 0 || dup2(o, 1) < 0 || dup2(e, 2) < 0) _exit(126);
    execvp(argv[0], argv.data());
    _exit(127);
  }
  ProgramRun run;
  int status = 0;
  if (pid < 0 || waitpid(pid, &status, 0) != pid) return run;
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  run.out = ReadAll(out);
  run.err = ReadAll(err);
  return run;
}

// GET http://127.0.0.1:port/metrics; the body, or "" on any failure.
std::string Scrape(int port, std::string* headers = nullptr) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval tv{30, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return "";
  }
  const std::string req = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
  (void)!send(fd, req.data(), req.size(), MSG_NOSIGNAL);
  std::string resp;
  char buf[16384];
  for (ssize_t n; (n = recv(fd, buf, sizeof(buf), 0)) > 0;) resp.append(buf, n);
  close(fd);
  const size_t end = resp.find("\r\n\r\n");
  if (!resp.starts_with("HTTP/1.1 200 OK\r\n") || end == std::string::npos) return "";
  if (headers) *headers = resp.substr(0, end);
  return resp.substr(end + 4);
}

class ObservabilityTest : public PoolBedTest {
 protected:
  ObservabilityTest() : PoolBedTest("wpm") {}

  void SetUp() override {
    PoolBedTest::SetUp();
    // A pool name of this run only: warmpoolds on one bed remove entries of
    // pools they do not know, and count those they do.
    pool_ = "obs-" + token_;
  }

  void StartDaemon() {
    PoolBedTest::StartDaemon("[[pool]]\nname = \"" + pool_ +
                                 "\"\nsize = 1\nnetwork = \"early\"\ndefault = true\n"
                                 "[pool.sandbox]\ndns = { servers = [\"127.0.0.1\"] }\n",
                             "metrics = \"127.0.0.1:0\"");  // a free port, named in the log
    if (HasFatalFailure()) return;
    std::smatch m;
    const std::string log = daemon_->LogTail(size_t{1} << 24);
    static const std::regex kLine("serving metrics on http://127\\.0\\.0\\.1:([0-9]+)/metrics");
    ASSERT_TRUE(std::regex_search(log, m, kLine)) << log;
    port_ = std::stoi(m[1]);
  }


  ProgramRun Ctl(std::vector<std::string> args) {
    args.insert(args.begin(), {WARMPOOLCTL_PATH, "--admin", daemon_->admin_path().string()});
    return RunProgram(dir_, args);
  }

  // A scrape parsed by the strict parser (the test fails if it does not parse).
  promtext::Parsed ScrapeParsed() {
    const std::string text = Scrape(port_);
    promtext::Parsed p = promtext::Parse(text);
    EXPECT_FALSE(text.empty()) << "no answer from the metrics endpoint";
    EXPECT_EQ(p.error, "") << text;
    return p;
  }

  std::string pool_;
  int port_ = 0;
};

TEST_F(ObservabilityTest, ScrapeExplainDrainFill) {
  StartDaemon();
  ASSERT_TRUE(WaitFor([&] { return FrozenSandboxes().size() == 1; }, 60s)) << daemon_->LogTail();
  const std::string entry_sandbox = *FrozenSandboxes().begin();

  // One hit (the default pool serves it), one miss (it names no such pool).
  PodRun warm;
  ASSERT_RPC_OK(driver_->StartPod(Pod("warm"), &warm));
  ASSERT_EQ(warm.sandbox_id, entry_sandbox) << daemon_->LogTail();
  PodSpec cold_spec = Pod("cold");
  cold_spec.annotations["warmpool.io/pool"] = "nope";
  PodRun cold;
  ASSERT_RPC_OK(driver_->StartPod(cold_spec, &cold));
  ASSERT_NE(cold.sandbox_id, entry_sandbox);
  ASSERT_TRUE(WaitFor([&] { return FrozenSandboxes().size() == 1; }, 60s)) << "no refill\n"
                                                                  << daemon_->LogTail();

  // ---- the scrape --------------------------------------------------------
  // The refill's duration is recorded just after the entry shows frozen.
  ASSERT_TRUE(WaitFor(
      [&] {
        return promtext::Parse(Scrape(port_))
                   .Value("warmpool_pool_entry_create_duration_seconds_count", {{"pool", pool_}}) ==
               2;
      },
      30s));
  std::string headers;
  const std::string text = Scrape(port_, &headers);
  ASSERT_FALSE(text.empty()) << "no answer on 127.0.0.1:" << port_;
  EXPECT_NE(headers.find("Content-Type: text/plain; version=0.0.4"), std::string::npos) << headers;
  const promtext::Parsed p = promtext::Parse(text);
  ASSERT_EQ(p.error, "") << text;

  EXPECT_EQ(p.Value("warmpool_handoff_hits_total", {{"pool", pool_}}), 1) << text;
  EXPECT_EQ(p.Value("warmpool_handoff_misses_total", {{"pool", ""}, {"reason", "unknown_pool"}}), 1)
      << text;
  EXPECT_EQ(p.Value("warmpool_handoff_duration_seconds_count", {{"pool", pool_}}), 1);
  const double handoff = p.Value("warmpool_handoff_duration_seconds_sum", {{"pool", pool_}});
  EXPECT_GT(handoff, 0);
  EXPECT_LT(handoff, 30);
  EXPECT_EQ(p.Value("warmpool_pool_target_entries", {{"pool", pool_}}), 1);
  EXPECT_EQ(p.Value("warmpool_pool_entries", {{"pool", pool_}, {"state", "frozen"}}), 1);
  EXPECT_EQ(p.Value("warmpool_pool_entries", {{"pool", pool_}, {"state", "adopted"}}), 1);
  EXPECT_GT(p.Value("warmpool_pool_frozen_memory_bytes", {{"pool", pool_}}), 0);
  // Failures are rare but real on a loaded machine (a cgroup that would not
  // freeze in time, ...); the counter must equal the failures the log tells.
  {
    const std::string log = daemon_->LogTail(size_t{1} << 24);
    const std::regex failed("pool " + pool_ + ": entry [0-9a-f]+ failed: ");
    const auto logged = std::distance(std::sregex_iterator(log.begin(), log.end(), failed),
                                      std::sregex_iterator());
    EXPECT_EQ(p.Value("warmpool_pool_entry_failures_total", {{"pool", pool_}}), logged) << log;
  }
  EXPECT_EQ(p.Value("warmpool_pool_drained", {{"pool", pool_}}), 0);
  // Two entries made so far (the first, and the refill after the hit).
  EXPECT_EQ(p.Value("warmpool_pool_entry_create_duration_seconds_count", {{"pool", pool_}}), 2);
  EXPECT_GT(p.Value("warmpool_pool_entry_create_duration_seconds_sum", {{"pool", pool_}}), 0);
  const LabelMap run_ok = {
      {"service", "runtime.v1.RuntimeService"}, {"method", "RunPodSandbox"}, {"code", "OK"}};
  EXPECT_EQ(p.Value("warmpool_cri_requests_total", run_ok), 2);
  EXPECT_EQ(p.Value("warmpool_cri_request_duration_seconds_count",
                    {{"service", "runtime.v1.RuntimeService"}, {"method", "RunPodSandbox"}}),
            2);
  EXPECT_GE(p.Value("warmpool_cri_requests_total", {{"service", "runtime.v1.RuntimeService"},
                                                    {"method", "StartContainer"},
                                                    {"code", "OK"}}),
            2);
  EXPECT_GT(p.Value("process_resident_memory_bytes"), 0);

  // Prometheus' own parser (Debian's python3-prometheus-client) reads it too.
  const std::filesystem::path scraped = dir_ / "scrape.txt";
  std::ofstream(scraped) << text;
  const ProgramRun py =
      RunProgram(dir_, {"/usr/bin/python3", "-c",  // Debian's python, where the package is
                        "import sys\n"
                        "from prometheus_client.parser import text_string_to_metric_families\n"
                        "for f in text_string_to_metric_families(open(sys.argv[1]).read()):\n"
                        "    print(f.name, f.type, len(f.samples))\n",
                        scraped.string()});
  ASSERT_EQ(py.exit_code, 0) << py.err << "\n(scripts/deps.sh installs python3-prometheus-client)";
  // The Python client names counter families without _total.
  EXPECT_NE(py.out.find("warmpool_handoff_hits counter 1\n"), std::string::npos) << py.out;
  EXPECT_NE(py.out.find("warmpool_handoff_duration_seconds histogram"), std::string::npos)
      << py.out;
  EXPECT_NE(py.out.find("warmpool_pool_entries gauge 5\n"), std::string::npos) << py.out;

  // ---- explain -----------------------------------------------------------
  const std::string warm_name = "default/" + warm.spec.name;
  ProgramRun r = Ctl({"explain", warm_name});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("RESULT:   hit: served by pool " + pool_ + "\n"), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("sandbox " + entry_sandbox.substr(0, 13)), std::string::npos) << r.out;
  r = Ctl({"explain", warm.sandbox_config.metadata().uid(), "-o", "json"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("\"hit\": true"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"sandbox_id\": \"" + entry_sandbox + "\""), std::string::npos) << r.out;

  r = Ctl({"explain", "default/" + cold.spec.name});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("RESULT:   miss: started cold by containerd\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("[unknown_pool]"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("nope"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("HINT:"), std::string::npos) << r.out;
  r = Ctl({"explain", "default/never-" + token_});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.out.find("no decision known"), std::string::npos) << r.out;

  // ---- drain and fill ----------------------------------------------------
  r = Ctl({"drain", pool_, "--wait", "--timeout", "60"});
  EXPECT_EQ(r.exit_code, 0) << r.err << daemon_->LogTail();
  EXPECT_EQ(r.out, "pool " + pool_ +
                       " drained: no entries left; it serves no pod and does not refill until: "
                       "warmpoolctl fill " +
                       pool_ + "\n");
  EXPECT_TRUE(FrozenSandboxes().empty());
  r = Ctl({"pools", "-o", "json"});
  EXPECT_NE(r.out.find("\"drained\": true"), std::string::npos) << r.out;
  promtext::Parsed drained = ScrapeParsed();
  EXPECT_EQ(drained.Value("warmpool_pool_drained", {{"pool", pool_}}), 1);
  EXPECT_EQ(drained.Value("warmpool_pool_entries", {{"pool", pool_}, {"state", "frozen"}}), 0);

  // A pod of the pool while it is drained: cold, and explain says why.
  PodRun while_drained;
  ASSERT_RPC_OK(driver_->StartPod(Pod("drained"), &while_drained));
  r = Ctl({"explain", "default/" + while_drained.spec.name});
  EXPECT_NE(r.out.find("pool " + pool_ + " is drained (warmpoolctl drain)"), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("[pool_empty]"), std::string::npos) << r.out;
  // Still drained a moment later: nothing refills.
  EXPECT_TRUE(FrozenSandboxes().empty());

  r = Ctl({"fill", pool_, "--wait", "--timeout", "60"});
  EXPECT_EQ(r.exit_code, 0) << r.err << daemon_->LogTail();
  EXPECT_EQ(r.out, "pool " + pool_ + " filling: 1 of 1 frozen, 0 being made\n");
  EXPECT_EQ(FrozenSandboxes().size(), 1u);
  promtext::Parsed filled = ScrapeParsed();
  EXPECT_EQ(filled.Value("warmpool_pool_drained", {{"pool", pool_}}), 0);
  EXPECT_EQ(
      filled.Value("warmpool_handoff_misses_total", {{"pool", pool_}, {"reason", "pool_empty"}}),
      1);

  // ---- not running -------------------------------------------------------
  ASSERT_RPC_OK(driver_->StopAndRemovePod(warm));
  ASSERT_RPC_OK(driver_->StopAndRemovePod(cold));
  ASSERT_RPC_OK(driver_->StopAndRemovePod(while_drained));
  const std::string admin = daemon_->admin_path().string();
  StopDaemon();
  r = RunProgram(dir_, {WARMPOOLCTL_PATH, "--admin", admin, "pools"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "warmpoolctl: cannot reach warmpoold at " + admin +
                       ": no such socket (is warmpoold running? see systemctl status warmpool)\n");
  EXPECT_EQ(Scrape(port_), "") << "metrics still served after warmpoold stopped";
}

}  // namespace
}  // namespace warmpool::testing
