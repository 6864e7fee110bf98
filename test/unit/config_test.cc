#include "daemon/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace warmpool {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Pair;
using ::testing::SizeIs;

// The error text of parsing `text` as "t.toml", or "OK".
std::string Errors(std::string_view text) {
  absl::StatusOr<Config> config = ParseConfig(text, "t.toml");
  if (config.ok()) return "OK";
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(config.status().message());
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

Config MustParse(std::string_view text) {
  absl::StatusOr<Config> config = ParseConfig(text, "t.toml");
  EXPECT_TRUE(config.ok()) << config.status();
  return config.ok() ? *config : Config{};
}

// packaging/warmpool.toml, found from this file's location in the source tree.
std::filesystem::path PackagingConfigPath() {
#ifdef WARMPOOL_SOURCE_DIR
  return std::filesystem::path(WARMPOOL_SOURCE_DIR) / "packaging" / "warmpool.toml";
#else
  return std::filesystem::path(__FILE__).parent_path().parent_path().parent_path() / "packaging" /
         "warmpool.toml";
#endif
}

// A temporary directory removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "config_test.XXXXXX").string();
    path_ = mkdtemp(pattern.data());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// ---------------------------------------------------------------------------
// Defaults and the documented default file.

TEST(ConfigTest, EmptyConfigGivesDefaults) {
  Config config = MustParse("");
  EXPECT_EQ(config.source, "t.toml");
  EXPECT_EQ(config.daemon, DaemonConfig{});
  EXPECT_EQ(config.daemon.listen, "/run/warmpool/warmpool.sock");
  EXPECT_EQ(config.daemon.upstream, "/run/containerd/containerd.sock");
  EXPECT_EQ(config.daemon.state_dir, "/var/lib/warmpool");
  EXPECT_EQ(config.daemon.admin, "/run/warmpool/admin.sock");
  EXPECT_EQ(config.daemon.log_level, "info");
  EXPECT_EQ(config.daemon.memory_budget_bytes, uint64_t{4} * 1024 * 1024 * 1024);
  EXPECT_EQ(config.daemon.max_concurrent_creates, 2);
  EXPECT_EQ(config.daemon.refill_delay, std::chrono::milliseconds(500));
  EXPECT_FALSE(config.daemon.passthrough);
  EXPECT_EQ(config.daemon.metrics_address, "");
  EXPECT_EQ(config.daemon.pool_cgroup_parent, "/warmpool");
  EXPECT_THAT(config.pools, IsEmpty());
}

TEST(ConfigTest, DefaultConfigParsesToTheBuiltInDefaults) {
  absl::StatusOr<Config> config = ParseConfig(DefaultConfigText(), "default.toml");
  ASSERT_TRUE(config.ok()) << config.status();
  Config expected;
  expected.source = "default.toml";
  EXPECT_EQ(*config, expected);
}

TEST(ConfigTest, DefaultConfigTextIsThePackagingFile) {
  std::filesystem::path path = PackagingConfigPath();
  std::ifstream in(path, std::ios::binary);
  ASSERT_TRUE(in.good()) << "cannot read " << path;
  std::stringstream content;
  content << in.rdbuf();
  EXPECT_EQ(content.str(), DefaultConfigText())
      << "packaging/warmpool.toml and DefaultConfigText() in daemon/config.cc differ";
}

// The example of DESIGN.md, "The config node admins write".
constexpr std::string_view kDesignExample = R"toml([daemon]
listen    = "/run/warmpool/warmpool.sock"      # kubelet's --container-runtime-endpoint
upstream  = "/run/containerd/containerd.sock"  # the real CRI runtime
state_dir = "/var/lib/warmpool"
admin     = "/run/warmpool/admin.sock"         # warmpoolctl
log_level = "info"
memory_budget = "4GiB"                         # all frozen entries together
max_concurrent_creates = 2

[[pool]]
name    = "py-api"              # pods opt in with annotation warmpool.io/pool: py-api
size    = 3                     # frozen entries to keep ready
network = "late"                # or "early" (see the network issue)
namespaces = ["default"]        # optional: only pods of these namespaces

[[pool]]
name    = "any"                 # a sandbox pool (no containers)
size    = 4
default = true                  # also serves pods that name no pool

[pool.sandbox]                  # must equal what the pod asks for, or no hand-off
runtime_handler = ""

[[pool.container]]              # none: a sandbox pool (platform latency only)
name    = "app"
image   = "registry.example/py-api:1.4"
command = ["/app/server"]
args    = []
env     = { MODEL = "small" }
ready   = { http = { port = 8080, path = "/healthz" }, timeout = "60s" }
# or ready = { tcp = 8080 } / { exec = ["/bin/check"] } / { none = true }
)toml";

TEST(ConfigTest, DesignExampleAsWrittenIsRejectedForItsDefaultAppPool) {
  // In DESIGN.md's example the [pool.sandbox] and [[pool.container]] that
  // follow the "any" pool belong to it (TOML attaches them to the last
  // [[pool]]), which makes the default pool an app pool.
  EXPECT_EQ(Errors(kDesignExample),
            "t.toml:19:11: pool[1].default: a default pool must be a sandbox pool (no "
            "[[pool.container]]): it also serves pods that name no pool, and such a pod cannot be "
            "handed pre-started containers of an app it did not ask for");
}

TEST(ConfigTest, DesignExampleWithContainersUnderTheAppPoolParses) {
  // The same keys, with the app's sandbox and container under "py-api".
  constexpr std::string_view kExample = R"toml([daemon]
listen    = "/run/warmpool/warmpool.sock"
upstream  = "/run/containerd/containerd.sock"
state_dir = "/var/lib/warmpool"
admin     = "/run/warmpool/admin.sock"
log_level = "info"
memory_budget = "4GiB"
max_concurrent_creates = 2

[[pool]]
name    = "py-api"
size    = 3
network = "late"
namespaces = ["default"]

[pool.sandbox]
runtime_handler = ""

[[pool.container]]
name    = "app"
image   = "registry.example/py-api:1.4"
command = ["/app/server"]
args    = []
env     = { MODEL = "small" }
ready   = { http = { port = 8080, path = "/healthz" }, timeout = "60s" }

[[pool]]
name    = "any"
size    = 4
default = true
)toml";
  Config config = MustParse(kExample);
  EXPECT_EQ(config.daemon, DaemonConfig{});
  ASSERT_THAT(config.pools, SizeIs(2));

  const PoolConfig& app = config.pools[0];
  EXPECT_EQ(app.name, "py-api");
  EXPECT_EQ(app.size, 3);
  EXPECT_EQ(app.network, NetworkTiming::kLate);
  EXPECT_THAT(app.namespaces, ElementsAre("default"));
  EXPECT_FALSE(app.is_default);
  EXPECT_EQ(app.source_line, 10);
  EXPECT_EQ(app.sandbox, SandboxTemplate{});
  ASSERT_THAT(app.containers, SizeIs(1));
  const ContainerTemplate& c = app.containers[0];
  EXPECT_EQ(c.name, "app");
  EXPECT_EQ(c.image, "registry.example/py-api:1.4");
  EXPECT_THAT(c.command, ElementsAre("/app/server"));
  EXPECT_THAT(c.args, IsEmpty());
  EXPECT_THAT(c.env, ElementsAre(Pair("MODEL", "small")));
  EXPECT_EQ(c.working_dir, "");
  EXPECT_EQ(c.resources, ContainerResources{});
  EXPECT_EQ(c.ready.kind, ReadyCheck::Kind::kHttp);
  EXPECT_EQ(c.ready.port, 8080);
  EXPECT_EQ(c.ready.path, "/healthz");
  EXPECT_EQ(c.ready.timeout, std::chrono::seconds(60));
  EXPECT_EQ(c.source_line, 19);
  EXPECT_FALSE(app.is_sandbox_pool());

  const PoolConfig& any = config.pools[1];
  EXPECT_EQ(any.name, "any");
  EXPECT_EQ(any.size, 4);
  EXPECT_TRUE(any.is_default);
  EXPECT_TRUE(any.is_sandbox_pool());
  EXPECT_THAT(any.namespaces, IsEmpty());
}

TEST(ConfigTest, EveryKeyParses) {
  Config config = MustParse(R"toml([daemon]
listen = "/tmp/w/warmpool.sock"
upstream = "/tmp/c/containerd.sock"
state_dir = "/tmp/w/state"
admin = "/tmp/w/admin.sock"
log_level = "debug"
memory_budget = 1048576
max_concurrent_creates = 4
refill_delay = "250ms"
passthrough = true
metrics = "127.0.0.1:9464"
pool_cgroup_parent = "warmpool.slice"

[[pool]]
name = "ml"
size = 0
network = "early"
namespaces = ["team-a", "team-b"]
default = false

[pool.sandbox]
runtime_handler = "runc"
namespaces = { network = "node", pid = "pod", ipc = "node" }
privileged = true
run_as_user = 1000
run_as_group = 2000
readonly_rootfs = true
supplemental_groups = [10, 20]
seccomp = "localhost/profiles/app.json"
apparmor = "runtime/default"
sysctls = { "net.core.somaxconn" = "1024" }
dns = { servers = ["10.96.0.10", "fd00::a"], searches = ["svc.cluster.local"], options = ["ndots:5"] }

[[pool.container]]
name = "model"
image = "registry.example/model:2"
working_dir = "/srv"
resources = { cpu_shares = 512, cpu_quota = 50000, cpu_period = 100000, memory_limit = "512Mi" }
ready = { tcp = 9000, timeout = "1m30s" }

[[pool.container]]
name = "sidecar"
image = "registry.example/sidecar:1"
ready = { exec = ["/bin/check", "--quick"] }

[[pool.container]]
name = "idle"
image = "registry.example/idle:1"
ready = { none = true }
)toml");
  const DaemonConfig& d = config.daemon;
  EXPECT_EQ(d.listen, "/tmp/w/warmpool.sock");
  EXPECT_EQ(d.upstream, "/tmp/c/containerd.sock");
  EXPECT_EQ(d.state_dir, "/tmp/w/state");
  EXPECT_EQ(d.admin, "/tmp/w/admin.sock");
  EXPECT_EQ(d.log_level, "debug");
  EXPECT_EQ(d.memory_budget_bytes, 1048576u);
  EXPECT_EQ(d.max_concurrent_creates, 4);
  EXPECT_EQ(d.refill_delay, std::chrono::milliseconds(250));
  EXPECT_TRUE(d.passthrough);
  EXPECT_EQ(d.metrics_address, "127.0.0.1:9464");
  EXPECT_EQ(d.pool_cgroup_parent, "warmpool.slice");

  ASSERT_THAT(config.pools, SizeIs(1));
  const PoolConfig& pool = config.pools[0];
  EXPECT_EQ(pool.size, 0);
  EXPECT_EQ(pool.network, NetworkTiming::kEarly);
  EXPECT_THAT(pool.namespaces, ElementsAre("team-a", "team-b"));
  const SandboxTemplate& s = pool.sandbox;
  EXPECT_EQ(s.runtime_handler, "runc");
  EXPECT_EQ(s.namespaces.network, NamespaceMode::kNode);
  EXPECT_EQ(s.namespaces.pid, NamespaceMode::kPod);
  EXPECT_EQ(s.namespaces.ipc, NamespaceMode::kNode);
  EXPECT_TRUE(s.privileged);
  EXPECT_EQ(s.run_as_user, 1000);
  EXPECT_EQ(s.run_as_group, 2000);
  EXPECT_TRUE(s.readonly_rootfs);
  EXPECT_THAT(s.supplemental_groups, ElementsAre(10, 20));
  EXPECT_EQ(s.seccomp.type, SecurityProfile::Type::kLocalhost);
  EXPECT_EQ(s.seccomp.localhost_ref, "profiles/app.json");
  EXPECT_EQ(s.apparmor.type, SecurityProfile::Type::kRuntimeDefault);
  EXPECT_THAT(s.sysctls, ElementsAre(Pair("net.core.somaxconn", "1024")));
  EXPECT_THAT(s.dns.servers, ElementsAre("10.96.0.10", "fd00::a"));
  EXPECT_THAT(s.dns.searches, ElementsAre("svc.cluster.local"));
  EXPECT_THAT(s.dns.options, ElementsAre("ndots:5"));

  ASSERT_THAT(pool.containers, SizeIs(3));
  const ContainerTemplate& model = pool.containers[0];
  EXPECT_EQ(model.working_dir, "/srv");
  EXPECT_EQ(model.resources.cpu_shares, 512);
  EXPECT_EQ(model.resources.cpu_quota, 50000);
  EXPECT_EQ(model.resources.cpu_period, 100000);
  EXPECT_EQ(model.resources.memory_limit_bytes, 512 * 1024 * 1024);
  EXPECT_EQ(model.ready.kind, ReadyCheck::Kind::kTcp);
  EXPECT_EQ(model.ready.port, 9000);
  EXPECT_EQ(model.ready.timeout, std::chrono::seconds(90));
  EXPECT_EQ(pool.containers[1].ready.kind, ReadyCheck::Kind::kExec);
  EXPECT_THAT(pool.containers[1].ready.exec, ElementsAre("/bin/check", "--quick"));
  EXPECT_EQ(pool.containers[1].ready.timeout, std::chrono::seconds(60));
  EXPECT_EQ(pool.containers[2].ready.kind, ReadyCheck::Kind::kNone);
}

TEST(ConfigTest, SandboxDefaultsAreWhatKubeletSendsForAnOrdinaryPod) {
  SandboxTemplate sandbox;
  EXPECT_EQ(sandbox.namespaces.network, NamespaceMode::kPod);
  EXPECT_EQ(sandbox.namespaces.pid, NamespaceMode::kContainer);
  EXPECT_EQ(sandbox.namespaces.ipc, NamespaceMode::kPod);
  EXPECT_FALSE(sandbox.privileged);
  EXPECT_FALSE(sandbox.run_as_user.has_value());
  EXPECT_EQ(sandbox.seccomp.type, SecurityProfile::Type::kUnset);
}

// ---------------------------------------------------------------------------
// Each kind of error, with its exact position and key.

TEST(ConfigErrorTest, SyntaxError) {
  EXPECT_EQ(Errors("[daemon]\nlisten = \"/run/x.sock\nlog_level = \"info\"\n"),
            "t.toml:2:22: syntax error: Error while parsing string: unescaped control characters "
            "other than TAB (U+0009) are explicitly prohibited");
}

TEST(ConfigErrorTest, DuplicateKeyIsASyntaxError) {
  EXPECT_EQ(Errors("[daemon]\nlog_level = \"info\"\nlog_level = \"debug\"\n"),
            "t.toml:3:13: syntax error: Error while parsing key-value pair: cannot redefine "
            "existing string 'log_level'");
}

TEST(ConfigErrorTest, UnknownKeyWithSuggestion) {
  EXPECT_EQ(Errors("[daemon]\nlog_levle = \"info\"\n"),
            "t.toml:2:1: daemon.log_levle: unknown key; did you mean log_level?");
}

TEST(ConfigErrorTest, UnknownKeyWithoutSuggestion) {
  EXPECT_EQ(Errors("[daemon]\nfrobnicate = 1\n"), "t.toml:2:1: daemon.frobnicate: unknown key");
}

TEST(ConfigErrorTest, UnknownTopLevelTable) {
  EXPECT_EQ(Errors("[deamon]\nlisten = \"/x\"\n"),
            "t.toml:1:2: deamon: unknown key; did you mean daemon?");
}

TEST(ConfigErrorTest, UnknownKeyDeepInAnInlineTable) {
  EXPECT_EQ(
      Errors(R"toml([[pool]]
name = "p"
size = 1
[[pool.container]]
name = "app"
image = "i"
ready = { http = { prot = 8080 } }
)toml"),
      "t.toml:7:18: pool[0].container[0].ready.http.port: missing; the HTTP port to GET, 1..65535\n"
      "t.toml:7:20: pool[0].container[0].ready.http.prot: unknown key; did you mean port?");
}

TEST(ConfigErrorTest, WrongType) {
  EXPECT_EQ(Errors("[daemon]\nmax_concurrent_creates = \"2\"\n"),
            "t.toml:2:26: daemon.max_concurrent_creates: expected an integer, got a string");
  EXPECT_EQ(Errors("[daemon]\nlisten = 5\n"),
            "t.toml:2:10: daemon.listen: expected a string, got an integer");
  EXPECT_EQ(Errors("[daemon]\npassthrough = \"yes\"\n"),
            "t.toml:2:15: daemon.passthrough: expected a boolean (true or false), got a string");
  EXPECT_EQ(Errors("daemon = 3\n"), "t.toml:1:10: daemon: expected a table, got an integer");
  EXPECT_EQ(Errors("[[pool]]\nname = \"p\"\nsize = 1.5\n"),
            "t.toml:3:8: pool[0].size: expected an integer, got a floating-point number");
  EXPECT_EQ(Errors("[[pool]]\nname = \"p\"\nsize = 1\nnamespaces = [\"a\", 2]\n"),
            "t.toml:4:20: pool[0].namespaces[1]: expected a string, got an integer");
}

TEST(ConfigErrorTest, PoolWrittenAsATable) {
  EXPECT_EQ(Errors("[pool]\nname = \"p\"\nsize = 1\n"),
            "t.toml:1:1: pool: expected an array of tables (write [[pool]]), got a table");
}

TEST(ConfigErrorTest, BadLogLevel) {
  EXPECT_EQ(Errors("[daemon]\nlog_level = \"verbose\"\n"),
            "t.toml:2:13: daemon.log_level: must be one of \"trace\", \"debug\", \"info\", "
            "\"warn\", \"error\", \"critical\", \"off\"; got \"verbose\"");
}

TEST(ConfigErrorTest, BadSize) {
  EXPECT_EQ(Errors("[[pool]]\nname = \"p\"\nsize = -1\n"),
            "t.toml:3:8: pool[0].size: must be between 0 and 1024, got -1");
}

TEST(ConfigErrorTest, BadMaxConcurrentCreates) {
  EXPECT_EQ(Errors("[daemon]\nmax_concurrent_creates = 0\n"),
            "t.toml:2:26: daemon.max_concurrent_creates: must be between 1 and 64, got 0");
}

TEST(ConfigErrorTest, MissingRequiredPoolKeys) {
  EXPECT_EQ(Errors("[[pool]]\nnetwork = \"early\"\n"),
            "t.toml:1:1: pool[0].name: missing; pods opt in with the annotation "
            "warmpool.io/pool: NAME\n"
            "t.toml:1:1: pool[0].size: missing; the number of frozen entries to keep ready, "
            "0..1024");
}

TEST(ConfigErrorTest, BadPoolName) {
  EXPECT_EQ(Errors("[[pool]]\nname = \"Py_API\"\nsize = 1\n"),
            "t.toml:2:8: pool[0].name: must be 1 to 63 characters of a-z, 0-9 and '-', starting "
            "and ending with a letter or digit; got \"Py_API\"");
}

TEST(ConfigErrorTest, TwoDefaultPools) {
  EXPECT_EQ(Errors(R"toml([[pool]]
name = "a"
size = 1
default = true

[[pool]]
name = "b"
size = 1
default = true
)toml"),
            "t.toml:9:11: pool[1].default: only one pool may be the default; pool \"a\" (line 1) "
            "already is");
}

TEST(ConfigErrorTest, DefaultPoolWithContainers) {
  std::string errors = Errors(R"toml([[pool]]
name = "app"
size = 1
default = true
[[pool.container]]
name = "c"
image = "i"
ready = { none = true }
)toml");
  EXPECT_THAT(errors, testing::StartsWith("t.toml:4:11: pool[0].default: a default pool must be a "
                                          "sandbox pool (no [[pool.container]])"));
  EXPECT_THAT(errors, HasSubstr("cannot be handed pre-started containers of an app it did not "
                                "ask for"));
  EXPECT_THAT(Lines(errors), SizeIs(1));
}

TEST(ConfigErrorTest, DuplicatePoolNames) {
  EXPECT_EQ(Errors(R"toml([[pool]]
name = "a"
size = 1
[[pool]]
name = "a"
size = 2
)toml"),
            "t.toml:5:8: pool[1].name: duplicate pool name \"a\"; first used at line 1");
}

TEST(ConfigErrorTest, DuplicateContainerNames) {
  EXPECT_EQ(Errors(R"toml([[pool]]
name = "p"
size = 1
[[pool.container]]
name = "app"
image = "i"
ready = { none = true }
[[pool.container]]
name = "app"
image = "j"
ready = { none = true }
)toml"),
            "t.toml:9:8: pool[0].container[1].name: duplicate container name \"app\"; first used "
            "at line 4");
}

TEST(ConfigErrorTest, ReadyWithTwoKinds) {
  EXPECT_EQ(Errors(R"toml([[pool]]
name = "p"
size = 1
[[pool.container]]
name = "app"
image = "i"
ready = { http = { port = 80 }, tcp = 80 }
)toml"),
            "t.toml:7:9: pool[0].container[0].ready: needs exactly one kind of check, got http "
            "and tcp");
}

TEST(ConfigErrorTest, ReadyMissingOrEmpty) {
  EXPECT_EQ(Errors("[[pool]]\nname = \"p\"\nsize = 1\n[[pool.container]]\nname = \"app\"\n"
                   "image = \"i\"\n"),
            "t.toml:4:1: pool[0].container[0].ready: missing; say when the app's init is done: "
            "ready = { http = { port = PORT, path = \"/\" } }, { tcp = PORT }, "
            "{ exec = [\"cmd\"] } or { none = true }");
  EXPECT_EQ(Errors("[[pool]]\nname = \"p\"\nsize = 1\n[[pool.container]]\nname = \"app\"\n"
                   "image = \"i\"\nready = { timeout = \"5s\" }\n"),
            "t.toml:7:9: pool[0].container[0].ready: needs exactly one kind: { http = { port = "
            "PORT, path = \"/\" } }, { tcp = PORT }, { exec = [\"cmd\", ...] } or "
            "{ none = true }");
}

TEST(ConfigErrorTest, ReadyHttpPortOutOfRangeNamesTheFullKey) {
  EXPECT_EQ(Errors(R"toml([[pool]]
name = "sandbox-only"
size = 1
[[pool]]
name = "p"
size = 1
[[pool.container]]
name = "app"
image = "i"
ready = { http = { port = 70000, path = "healthz" } }
)toml"),
            "t.toml:10:27: pool[1].container[0].ready.http.port: must be between 1 and 65535, "
            "got 70000\n"
            "t.toml:10:41: pool[1].container[0].ready.http.path: must start with '/', got "
            "\"healthz\"");
}

TEST(ConfigErrorTest, BadDuration) {
  EXPECT_EQ(Errors(R"toml([[pool]]
name = "p"
size = 1
[[pool.container]]
name = "app"
image = "i"
ready = { tcp = 80, timeout = "60" }
)toml"),
            "t.toml:7:31: pool[0].container[0].ready.timeout: invalid duration \"60\": missing "
            "unit after 60; expected integers with units ms, s, m or h (e.g. \"60s\", \"500ms\", "
            "\"1m30s\")");
}

TEST(ConfigErrorTest, BadByteSize) {
  EXPECT_EQ(Errors("[daemon]\nmemory_budget = \"4Gb\"\n"),
            "t.toml:2:17: daemon.memory_budget: invalid byte size \"4Gb\": unknown unit \"Gb\"; "
            "expected an integer with an optional unit: B, K, KB, Ki, KiB, M, MB, Mi, MiB, G, GB, "
            "Gi, GiB, T, TB, Ti, TiB (e.g. \"4GiB\", \"512Mi\")");
  EXPECT_EQ(Errors("[daemon]\nmemory_budget = true\n"),
            "t.toml:2:17: daemon.memory_budget: expected a byte size (a string such as \"4GiB\", "
            "or an integer), got a boolean");
}

TEST(ConfigErrorTest, RefillDelayIsBounded) {
  EXPECT_EQ(MustParse("[daemon]\nrefill_delay = \"0s\"\n").daemon.refill_delay,
            std::chrono::milliseconds(0));
  EXPECT_EQ(Errors("[daemon]\nrefill_delay = \"2m\"\n"),
            "t.toml:2:16: daemon.refill_delay: must be between \"0s\" and \"1m\"");
  EXPECT_THAT(Errors("[daemon]\nrefill_delay = 5\n"), HasSubstr("daemon.refill_delay"));
}

TEST(ConfigErrorTest, MetricsMustBeLoopback) {
  EXPECT_EQ(Errors("[daemon]\nmetrics = \"0.0.0.0:9464\"\n"),
            "t.toml:2:11: daemon.metrics: must be a loopback address (127.0.0.1, [::1] or "
            "localhost), got \"0.0.0.0:9464\"; metrics carry pool and pod names: to serve them "
            "beyond this node, set daemon.metrics_allow_non_loopback = true");
  EXPECT_THAT(Errors("[daemon]\nmetrics = \"10.1.2.3:9464\"\n"),
              HasSubstr("daemon.metrics_allow_non_loopback = true"));
  EXPECT_THAT(Errors("[daemon]\nmetrics = \"[::]:9464\"\n"),
              HasSubstr("daemon.metrics_allow_non_loopback = true"));
  EXPECT_THAT(Errors("[daemon]\nmetrics = \"127.0.0.1\"\n"), HasSubstr("missing :PORT"));
  EXPECT_THAT(Errors("[daemon]\nmetrics = \"127.0.0.1:65536\"\n"),
              HasSubstr("port must be 0..65535 (0: any free port), got \"65536\""));
  EXPECT_THAT(Errors("[daemon]\nmetrics = \"127.0.0.1:x\"\n"), HasSubstr("port must be"));
  EXPECT_THAT(Errors("[daemon]\nmetrics = \"metrics.example:9464\"\n"),
              HasSubstr("host must be an IP address or localhost, got \"metrics.example\""));
  EXPECT_THAT(Errors("[daemon]\nmetrics = \"::1:9464\"\n"), HasSubstr("[::1]:PORT"));
  EXPECT_THAT(Errors("[daemon]\nmetrics_allow_non_loopback = \"yes\"\n"),
              HasSubstr("daemon.metrics_allow_non_loopback"));
  EXPECT_EQ(MustParse("[daemon]\nmetrics = \"[::1]:9464\"\n").daemon.metrics_address, "[::1]:9464");
  EXPECT_EQ(MustParse("[daemon]\nmetrics = \"localhost:9464\"\n").daemon.metrics_address,
            "localhost:9464");
  EXPECT_EQ(MustParse("[daemon]\nmetrics = \"127.0.0.1:0\"\n").daemon.metrics_address,
            "127.0.0.1:0");
  const Config remote =
      MustParse("[daemon]\nmetrics = \"0.0.0.0:9464\"\nmetrics_allow_non_loopback = true\n");
  EXPECT_EQ(remote.daemon.metrics_address, "0.0.0.0:9464");
  EXPECT_TRUE(remote.daemon.metrics_allow_non_loopback);
}

TEST(ConfigTest, LateNetworkKeys) {
  Config c = MustParse(
      "[daemon]\nlate_runtime_handler = \"wp-late\"\ncni_conf_dir = \"/etc/cni/net.d\"\n"
      "cni_bin_dir = \"/opt/cni/bin:/usr/lib/cni\"\n");
  EXPECT_EQ(c.daemon.late_runtime_handler, "wp-late");
  EXPECT_EQ(c.daemon.cni_conf_dir, "/etc/cni/net.d");
  EXPECT_EQ(c.daemon.cni_bin_dir, "/opt/cni/bin:/usr/lib/cni");
  EXPECT_EQ(Errors("[daemon]\ncni_conf_dir = \"net.d\"\n"),
            "t.toml:2:16: daemon.cni_conf_dir: must be an absolute path, got \"net.d\"");
  EXPECT_THAT(Errors("[daemon]\ncni_bin_dir = \"/opt/cni/bin:bin\"\n"),
              HasSubstr("daemon.cni_bin_dir: must be an absolute path (or several"));
  EXPECT_THAT(Errors("[daemon]\nlate_runtime_handler = \"\"\n"),
              HasSubstr("daemon.late_runtime_handler: must name"));
  // A late pool stands in for the default handler only.
  EXPECT_THAT(Errors("[[pool]]\nname = \"k\"\nsize = 1\n[pool.sandbox]\n"
                     "runtime_handler = \"kata\"\n"),
              HasSubstr("pool[0].sandbox: network = \"late\" makes entries through "
                        "daemon.late_runtime_handler"));
  EXPECT_EQ(MustParse("[[pool]]\nname = \"k\"\nsize = 1\nnetwork = \"early\"\n"
                      "[pool.sandbox]\nruntime_handler = \"kata\"\n")
                .pools[0]
                .network,
            NetworkTiming::kEarly);
}

TEST(ConfigErrorTest, ListenEqualsUpstream) {
  EXPECT_EQ(Errors("[daemon]\nlisten = \"/run/c.sock\"\nupstream = \"/run/c.sock\"\n"),
            "t.toml:3:12: daemon.upstream: must differ from listen: warmpoold would forward every "
            "call to itself");
}

TEST(ConfigErrorTest, SandboxValues) {
  EXPECT_EQ(Errors(R"toml([[pool]]
name = "p"
size = 1
[pool.sandbox]
namespaces = { network = "container" }
run_as_group = 5
seccomp = "default"
dns = { servers = ["dns.example"] }
)toml"),
            "t.toml:5:26: pool[0].sandbox.namespaces.network: must be one of \"pod\", \"node\"; "
            "got \"container\"\n"
            "t.toml:6:16: pool[0].sandbox.run_as_group: needs run_as_user: the CRI accepts a "
            "group only with a user\n"
            "t.toml:7:11: pool[0].sandbox.seccomp: must be \"\", \"runtime/default\", "
            "\"unconfined\" or \"localhost/<profile>\"; got \"default\"\n"
            "t.toml:8:20: pool[0].sandbox.dns.servers[0]: must be an IPv4 or IPv6 address, got "
            "\"dns.example\"");
}

TEST(ConfigErrorTest, AllErrorsAreReportedAtOnceInFileOrder) {
  std::string errors = Errors(R"toml([daemon]
log_level = "loud"
max_concurrent_creates = "many"
listne = "/x"

[[pool]]
name = "a"
size = -3
network = "soon"

[[pool]]
name = "a"
size = 1
default = true
[[pool.container]]
name = "c"
ready = { tcp = 0, exec = [] }
)toml");
  EXPECT_THAT(
      Lines(errors),
      ElementsAre(
          "t.toml:2:13: daemon.log_level: must be one of \"trace\", \"debug\", \"info\", "
          "\"warn\", \"error\", \"critical\", \"off\"; got \"loud\"",
          "t.toml:3:26: daemon.max_concurrent_creates: expected an integer, got a string",
          "t.toml:4:1: daemon.listne: unknown key; did you mean listen?",
          "t.toml:8:8: pool[0].size: must be between 0 and 1024, got -3",
          "t.toml:9:11: pool[0].network: must be one of \"late\", \"early\"; got \"soon\"",
          "t.toml:12:8: pool[1].name: duplicate pool name \"a\"; first used at line 6",
          "t.toml:14:11: pool[1].default: a default pool must be a sandbox pool (no "
          "[[pool.container]]): it also serves pods that name no pool, and such a pod cannot be "
          "handed pre-started containers of an app it did not ask for",
          "t.toml:15:1: pool[1].container[0].image: missing; the image to pre-start, e.g. "
          "\"registry/app:1.0\"",
          "t.toml:17:9: pool[1].container[0].ready: needs exactly one kind of check, got tcp and "
          "exec",
          "t.toml:17:17: pool[1].container[0].ready.tcp: must be between 1 and 65535, got 0",
          "t.toml:17:27: pool[1].container[0].ready.exec: must name a command: [\"/bin/check\", "
          "\"arg\", ...]"));
}

// ---------------------------------------------------------------------------
// Files.

TEST(LoadConfigTest, MissingFileNamesThePath) {
  TempDir dir;
  std::string path = (dir.path() / "absent.toml").string();
  absl::StatusOr<Config> config = LoadConfig(path);
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(config.status().message(),
            "cannot open config file " + path + ": No such file or directory");
}

TEST(LoadConfigTest, ReadsAFileAndNamesItInErrors) {
  TempDir dir;
  std::string path = (dir.path() / "warmpool.toml").string();
  {
    std::ofstream out(path);
    out << "[daemon]\nlog_level = \"debug\"\n";
  }
  absl::StatusOr<Config> config = LoadConfig(path);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->source, path);
  EXPECT_EQ(config->daemon.log_level, "debug");

  {
    std::ofstream out(path);
    out << "[daemon]\nlog_level = 1\n";
  }
  config = LoadConfig(path);
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().message(),
            path + ":2:13: daemon.log_level: expected a string, got an integer");
}

TEST(LoadConfigTest, LoadsThePackagingFile) {
  absl::StatusOr<Config> config = LoadConfig(PackagingConfigPath().string());
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->daemon, DaemonConfig{});
  EXPECT_THAT(config->pools, IsEmpty());
}

// ---------------------------------------------------------------------------
// Byte sizes and durations.

TEST(ParseByteSizeTest, Units) {
  EXPECT_EQ(*ParseByteSize("0"), 0u);
  EXPECT_EQ(*ParseByteSize("1000"), 1000u);
  EXPECT_EQ(*ParseByteSize("12B"), 12u);
  EXPECT_EQ(*ParseByteSize("4GiB"), uint64_t{4} << 30);
  EXPECT_EQ(*ParseByteSize("4Gi"), uint64_t{4} << 30);
  EXPECT_EQ(*ParseByteSize("512MiB"), uint64_t{512} << 20);
  EXPECT_EQ(*ParseByteSize("100M"), 100'000'000u);
  EXPECT_EQ(*ParseByteSize("100MB"), 100'000'000u);
  EXPECT_EQ(*ParseByteSize("64KiB"), 65536u);
  EXPECT_EQ(*ParseByteSize("2k"), 2000u);
  EXPECT_EQ(*ParseByteSize("1TiB"), uint64_t{1} << 40);
}

TEST(ParseByteSizeTest, Rejects) {
  for (std::string_view bad : {"", "GiB", "-1", "1.5GiB", "4 GiB", "4gib", "4Gb", "10m", " 4"}) {
    EXPECT_FALSE(ParseByteSize(bad).ok()) << bad;
  }
  EXPECT_THAT(std::string(ParseByteSize("99999999999999999999").status().message()),
              HasSubstr("too large"));
  EXPECT_THAT(std::string(ParseByteSize("17179869184GiB").status().message()),
              HasSubstr("too large"));
}

TEST(ParseDurationTest, Units) {
  using std::chrono::milliseconds;
  EXPECT_EQ(*ParseDuration("60s"), milliseconds(60'000));
  EXPECT_EQ(*ParseDuration("500ms"), milliseconds(500));
  EXPECT_EQ(*ParseDuration("2m"), milliseconds(120'000));
  EXPECT_EQ(*ParseDuration("1h"), milliseconds(3'600'000));
  EXPECT_EQ(*ParseDuration("1m30s"), milliseconds(90'000));
  EXPECT_EQ(*ParseDuration("0s"), milliseconds(0));
}

TEST(ParseDurationTest, Rejects) {
  for (std::string_view bad : {"", "60", "s", "1d", "1.5s", "-1s", "1 s", "1S", "1m30"}) {
    EXPECT_FALSE(ParseDuration(bad).ok()) << bad;
  }
  EXPECT_THAT(std::string(ParseDuration("1d").status().message()), HasSubstr("unknown unit \"d\""));
  EXPECT_THAT(std::string(ParseDuration("9999999999999999999h").status().message()),
              HasSubstr("too large"));
}

}  // namespace
}  // namespace warmpool

namespace warmpool {
namespace {

TEST(ConfigTest, ContainerSecurityKeys) {
  Config c = MustParse(R"toml([[pool]]
name = "p"
size = 1
[[pool.container]]
name = "app"
image = "i"
ready = { none = true }
seccomp = "runtime/default"
apparmor = "localhost/k8s-app"
masked_paths = ["/proc/kcore"]
readonly_paths = []
)toml");
  ASSERT_EQ(c.pools.size(), 1u);
  const ContainerTemplate& t = c.pools[0].containers.at(0);
  EXPECT_EQ(t.seccomp.type, SecurityProfile::Type::kRuntimeDefault);
  EXPECT_EQ(t.apparmor.type, SecurityProfile::Type::kLocalhost);
  EXPECT_EQ(t.apparmor.localhost_ref, "k8s-app");
  EXPECT_EQ(t.masked_paths, std::optional<std::vector<std::string>>({"/proc/kcore"}));
  EXPECT_EQ(t.readonly_paths, std::optional<std::vector<std::string>>(std::vector<std::string>{}));
  // Unset: kubelet's defaults.
  Config d = MustParse("[[pool]]\nname = \"p\"\nsize = 1\n[[pool.container]]\nname = \"app\"\n"
                       "image = \"i\"\nready = { none = true }\n");
  EXPECT_FALSE(d.pools[0].containers[0].masked_paths.has_value());
  EXPECT_EQ(d.pools[0].containers[0].seccomp.type, SecurityProfile::Type::kUnset);
}

TEST(ConfigErrorTest, MaskedPathMustBeAbsolute) {
  EXPECT_THAT(Errors(R"toml([[pool]]
name = "p"
size = 1
[[pool.container]]
name = "app"
image = "i"
ready = { none = true }
masked_paths = ["proc/kcore"]
)toml"),
              HasSubstr("pool[0].container[0].masked_paths: must list absolute paths, got "
                        "\"proc/kcore\""));
}

}  // namespace
}  // namespace warmpool
