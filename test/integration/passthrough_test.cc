// warmpoold as a transparent CRI proxy, against a real containerd: kubelet's
// call sequence gives the same answers straight to containerd and through
// warmpoold (apart from ids, names, IPs, directories and times), errors keep
// their code and message, streams, deadlines and cancellation pass through.
//
// Needs the harness's environment (test/harness/containerd.sh writes DIR/env;
// source it before ctest). Without WP_TEST_CONTAINERD_SOCK the tests skip, or
// fail when WP_TEST_REQUIRE_CONTAINERD=1 (CI).

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <memory>
#include <mutex>
#include <regex>
#include <set>
#include <thread>

#include "test/integration/cri_compare.h"
#include "test/integration/kubelet_driver.h"
#include "test/integration/test_bed.h"
#include "test/integration/warmpoold_process.h"

namespace warmpool::testing {
namespace {

using namespace std::chrono_literals;

constexpr int kAppPort = 8080;
constexpr auto kHttpTimeout = 30s;

// Test bed: the harness's containerd, a private temporary directory, and the
// drivers a test made (cleaned up in TearDown even when the test failed).
class CriTestBed : public ::testing::Test {
 protected:
  void SetUp() override {
    WP_REQUIRE_TEST_BED(env_);
    ASSERT_FALSE(env_.app_image.empty()) << "WP_TEST_APP_IMAGE is not set";
    ASSERT_FALSE(env_.cgroup_parent.empty()) << "WP_TEST_CGROUP_PARENT is not set";
    // Short: unix socket paths inside it must fit in 108 bytes.
    char tmpl[] = "/tmp/wpit-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    token_ = KubeletDriver::UniqueToken();
  }

  void TearDown() override {
    // Drivers first (pods gone), then the proxy (its clean exit is checked).
    for (auto& d : drivers_) EXPECT_EQ(d->Cleanup(), "") << "cleanup left pods behind";
    drivers_.clear();
    for (auto& p : proxies_) {
      if (p->running()) {
        EXPECT_EQ(p->Stop(), "") << "warmpoold did not shut down cleanly";
      }
    }
    proxies_.clear();
    if (!dir_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);
    }
  }

  // A driver on `endpoint` whose files live in dir_/name; cleanup always goes
  // straight to containerd.
  KubeletDriver& NewDriver(const std::string& endpoint, const std::string& name) {
    KubeletDriver::Options o;
    o.endpoint = endpoint;
    o.work_dir = dir_ / name;
    o.cgroup_parent = env_.cgroup_parent;
    o.app_image = env_.app_image;
    o.cleanup_endpoint = env_.containerd_sock;
    drivers_.push_back(std::make_unique<KubeletDriver>(o));
    return *drivers_.back();
  }

  KubeletDriver& Direct() {
    if (!direct_) direct_ = &NewDriver(env_.containerd_sock, "direct");
    return *direct_;
  }

  // Starts a warmpoold in front of `upstream` (default: the test containerd).
  // Returns nullptr and records a failure when it does not come up.
  WarmpooldProcess* StartProxy(const std::string& name, std::string upstream = "") {
    WarmpooldProcess::Options o;
    o.upstream = upstream.empty() ? env_.containerd_sock : upstream;
    o.dir = dir_ / name;
    proxies_.push_back(std::make_unique<WarmpooldProcess>(o));
    std::string err = proxies_.back()->Start();
    if (!err.empty()) {
      ADD_FAILURE() << "warmpoold did not start: " << err;
      return nullptr;
    }
    return proxies_.back().get();
  }

  // The pod every test runs: testapp serving at once, with a marker env.
  PodSpec AppPod(const std::string& side) {
    PodSpec spec;
    spec.name = "pt-" + token_ + "-" + side;
    spec.labels["app"] = "testapp";
    spec.labels["warmpool.test/run"] = token_;
    spec.annotations["warmpool.test/case"] =
        ::testing::UnitTest::GetInstance()->current_test_info()->name();
    cri::PortMapping pm;
    pm.set_protocol(cri::TCP);
    pm.set_container_port(kAppPort);
    spec.port_mappings.push_back(pm);
    spec.containers[0].env = {{"INIT_SECONDS", "0"}, {"MARKER", token_ + "-" + side}};
    spec.containers[0].memory_limit_bytes = 64 << 20;
    return spec;
  }

  // What differs between the same pod run twice.
  static Substitutions RunSubstitutions(const KubeletDriver& driver, const PodRun& run) {
    Substitutions subs = {
        {driver.options().work_dir.string(), "<WORK>"},
        {run.sandbox_id, "<SANDBOX_ID>"},
        {run.sandbox_config.metadata().uid(), "<UID>"},
        {run.spec.name, "<POD>"},
        {run.pod_ip, "<POD_IP>"},
        {run.spec.containers[0].env[1].second, "<MARKER>"},
    };
    for (size_t i = 0; i < run.container_ids.size(); ++i) {
      subs.push_back({run.container_ids[i], "<CONTAINER_ID_" + std::to_string(i) + ">"});
    }
    return subs;
  }

  TestBedEnv env_;
  std::filesystem::path dir_;
  std::string token_;
  std::vector<std::unique_ptr<KubeletDriver>> drivers_;
  std::vector<std::unique_ptr<WarmpooldProcess>> proxies_;
  KubeletDriver* direct_ = nullptr;
};

// The same, plus one warmpoold in front of the test containerd.
class PassthroughTest : public CriTestBed {
 protected:
  void SetUp() override {
    CriTestBed::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    if (WarmpooldProcess::DefaultBinary().empty()) {
      if (TestBedEnv::Required()) FAIL() << "no warmpoold binary (WARMPOOLD_PATH unset)";
      GTEST_SKIP() << "no warmpoold binary: build target warmpoold or set WP_TEST_WARMPOOLD";
    }
    proxy_ = StartProxy("proxy");
    ASSERT_NE(proxy_, nullptr);
  }

  KubeletDriver& Proxied() {
    if (!proxied_) proxied_ = &NewDriver(proxy_->socket_path().string(), "proxy");
    return *proxied_;
  }

  WarmpooldProcess* proxy_ = nullptr;
  KubeletDriver* proxied_ = nullptr;
};

// Compares the answer each side gave (after normalising) and reports which.
template <typename M>
std::string CompareNormalised(const M& direct, const Substitutions& direct_subs, const M& proxied,
                              const Substitutions& proxied_subs) {
  M a = direct, b = proxied;
  if (!Normalise(&a, direct_subs) || !Normalise(&b, proxied_subs)) {
    return "substitutions made an answer unparsable: " + direct.ShortDebugString() + " / " +
           proxied.ShortDebugString();
  }
  return Diff(a, b);
}

std::string SameStatus(const grpc::Status& direct, const grpc::Status& proxied) {
  if (direct.error_code() == proxied.error_code() &&
      direct.error_message() == proxied.error_message()) {
    return "";
  }
  return "direct: " + StatusString(direct) + "\nthrough warmpoold: " + StatusString(proxied);
}

std::string Replace(std::string s, const Substitutions& subs) {
  for (const auto& [from, to] : subs) {
    for (size_t p = s.find(from); !from.empty() && p != std::string::npos; p = s.find(from, p)) {
      s.replace(p, from.size(), to);
    }
  }
  return s;
}

// Hides 64-hex ids the runtime makes up per call (exec ids in messages).
std::string MaskIds(const std::string& s) {
  static const std::regex kId("[0-9a-f]{64}");
  return std::regex_replace(s, kId, "<ID>");
}

std::set<std::string> Keys(const google::protobuf::Map<std::string, std::string>& m) {
  std::set<std::string> keys;
  for (const auto& [k, v] : m) keys.insert(k);
  return keys;
}

// Checks that the app of `run` answers on its pod IP like the pod it is.
void ExpectAppServes(const PodRun& run) {
  ASSERT_FALSE(run.pod_ip.empty()) << "pod has no IP";
  auto health = WaitForHttp(run.pod_ip, kAppPort, "/healthz", kHttpTimeout);
  ASSERT_TRUE(health) << "app on " << run.pod_ip << " did not answer /healthz";
  EXPECT_EQ(health->body, "ok");
  auto root = HttpGet(run.pod_ip, kAppPort, "/", Clock::now() + 5s);
  ASSERT_TRUE(root);
  EXPECT_EQ(root->body, "hostname=" + run.spec.name + "\n");
  auto marker = HttpGet(run.pod_ip, kAppPort, "/env?name=MARKER", Clock::now() + 5s);
  ASSERT_TRUE(marker);
  EXPECT_EQ(marker->body, run.spec.containers[0].env[1].second);
  auto resolv = HttpGet(run.pod_ip, kAppPort, "/file?path=/etc/resolv.conf", Clock::now() + 5s);
  ASSERT_TRUE(resolv);
  EXPECT_NE(resolv->body.find("nameserver 127.0.0.1"), std::string::npos) << resolv->body;
  auto hosts = HttpGet(run.pod_ip, kAppPort, "/file?path=/etc/hosts", Clock::now() + 5s);
  ASSERT_TRUE(hosts);
  EXPECT_NE(hosts->body.find("Kubernetes-managed hosts file"), std::string::npos) << hosts->body;
}

// ---------------------------------------------------------------------------
// Straight to containerd: the driver and the test bed themselves work.

using DirectTest = CriTestBed;

TEST_F(DirectTest, KubeletSequenceStartsAServingPod) {
  KubeletDriver& d = Direct();
  PodRun run;
  ASSERT_RPC_OK(d.StartPod(AppPod("direct"), &run));
  EXPECT_EQ(run.sandbox_status.status().state(), cri::SANDBOX_READY);
  EXPECT_EQ(run.container_status[0].status().state(), cri::CONTAINER_RUNNING);
  EXPECT_EQ(run.container_status[0].status().log_path(),
            run.sandbox_config.log_directory() + "/app/0.log");
  ASSERT_NO_FATAL_FAILURE(ExpectAppServes(run));

  cri::ExecSyncResponse exec;
  ASSERT_RPC_OK(d.ExecSync(run.container_ids[0], {"/testapp", "--probe", std::to_string(kAppPort)},
                           10, &exec));
  EXPECT_EQ(exec.exit_code(), 0) << exec.stderr();

  cri::ContainerStatsResponse stats;
  ASSERT_RPC_OK(d.ContainerStats(run.container_ids[0], &stats));
  EXPECT_EQ(stats.stats().attributes().id(), run.container_ids[0]);
  EXPECT_TRUE(stats.stats().has_memory());

  // The app logged the requests into the CRI log file.
  const auto log = std::filesystem::path(run.sandbox_config.log_directory()) / "app" / "0.log";
  EXPECT_TRUE(WaitFor([&] { return std::filesystem::file_size(log) > 0; }, 10s)) << log;

  ASSERT_RPC_OK(d.StopAndRemovePod(run));
  cri::PodSandboxStatusResponse gone;
  EXPECT_EQ(d.PodSandboxStatus(run.sandbox_id, false, &gone).error_code(),
            grpc::StatusCode::NOT_FOUND);
  cri::ContainerStatusResponse gone_container;
  EXPECT_EQ(d.ContainerStatus(run.container_ids[0], false, &gone_container).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

// ---------------------------------------------------------------------------
// Direct vs through warmpoold.

TEST_F(PassthroughTest, KubeletSequenceGivesTheSameAnswers) {
  KubeletDriver& d = Direct();
  KubeletDriver& p = Proxied();
  PodRun rd, rp;
  ASSERT_RPC_OK(d.StartPod(AppPod("direct"), &rd));
  ASSERT_RPC_OK(p.StartPod(AppPod("proxy"), &rp));
  const Substitutions sd = RunSubstitutions(d, rd), sp = RunSubstitutions(p, rp);

  EXPECT_EQ(CompareNormalised(rd.run_sandbox, sd, rp.run_sandbox, sp), "");
  EXPECT_EQ(CompareNormalised(rd.sandbox_status, sd, rp.sandbox_status, sp), "");
  ASSERT_EQ(rd.image_status.size(), rp.image_status.size());
  for (size_t i = 0; i < rd.image_status.size(); ++i) {
    EXPECT_EQ(CompareNormalised(rd.image_status[i], sd, rp.image_status[i], sp), "");
  }
  EXPECT_EQ(rd.pulls.size(), rp.pulls.size());
  EXPECT_EQ(CompareNormalised(rd.create_container[0], sd, rp.create_container[0], sp), "");
  EXPECT_EQ(CompareNormalised(rd.start_container[0], sd, rp.start_container[0], sp), "");
  EXPECT_EQ(CompareNormalised(rd.container_status[0], sd, rp.container_status[0], sp), "");

  // Both apps serve on their pod IPs.
  ASSERT_NO_FATAL_FAILURE(ExpectAppServes(rd));
  ASSERT_NO_FATAL_FAILURE(ExpectAppServes(rp));

  // Reads once both are up and serving.
  {
    cri::PodSandboxStatusResponse a, b;
    ASSERT_RPC_OK(d.PodSandboxStatus(rd.sandbox_id, false, &a));
    ASSERT_RPC_OK(p.PodSandboxStatus(rp.sandbox_id, false, &b));
    EXPECT_EQ(CompareNormalised(a, sd, b, sp), "");
    // Verbose info holds pids and times: the same keys, not the same values.
    ASSERT_RPC_OK(d.PodSandboxStatus(rd.sandbox_id, true, &a));
    ASSERT_RPC_OK(p.PodSandboxStatus(rp.sandbox_id, true, &b));
    EXPECT_EQ(Keys(a.info()), Keys(b.info()));
    EXPECT_FALSE(b.info().empty());
    a.clear_info();
    b.clear_info();
    EXPECT_EQ(CompareNormalised(a, sd, b, sp), "");
  }
  {
    cri::ContainerStatusResponse a, b;
    ASSERT_RPC_OK(d.ContainerStatus(rd.container_ids[0], false, &a));
    ASSERT_RPC_OK(p.ContainerStatus(rp.container_ids[0], false, &b));
    EXPECT_EQ(a.status().state(), cri::CONTAINER_RUNNING);
    EXPECT_EQ(CompareNormalised(a, sd, b, sp), "");
    ASSERT_RPC_OK(d.ContainerStatus(rd.container_ids[0], true, &a));
    ASSERT_RPC_OK(p.ContainerStatus(rp.container_ids[0], true, &b));
    EXPECT_EQ(Keys(a.info()), Keys(b.info()));
  }
  {
    cri::ExecSyncResponse a, b;
    const std::vector<std::string> probe = {"/testapp", "--probe", std::to_string(kAppPort)};
    ASSERT_RPC_OK(d.ExecSync(rd.container_ids[0], probe, 10, &a));
    ASSERT_RPC_OK(p.ExecSync(rp.container_ids[0], probe, 10, &b));
    EXPECT_EQ(a.exit_code(), 0);
    EXPECT_EQ(CompareNormalised(a, sd, b, sp), "");
    // A command that is not in the image: the same failure both ways.
    grpc::Status ea = d.ExecSync(rd.container_ids[0], {"/no-such-binary"}, 10, &a);
    grpc::Status eb = p.ExecSync(rp.container_ids[0], {"/no-such-binary"}, 10, &b);
    EXPECT_EQ(ea.error_code(), eb.error_code());
    EXPECT_EQ(MaskIds(Replace(ea.error_message(), sd)), MaskIds(Replace(eb.error_message(), sp)));
    if (ea.ok()) {
      EXPECT_EQ(CompareNormalised(a, sd, b, sp), "");
    }
  }
  {
    cri::ContainerStatsResponse a, b;
    ASSERT_RPC_OK(d.ContainerStats(rd.container_ids[0], &a));
    ASSERT_RPC_OK(p.ContainerStats(rp.container_ids[0], &b));
    EXPECT_EQ(b.stats().attributes().id(), rp.container_ids[0]);
    ClearNumbers(&a);
    ClearNumbers(&b);
    EXPECT_EQ(CompareNormalised(a, sd, b, sp), "");
  }

  // List filters: each side lists its own pod; the answers match.
  auto compare_sandbox_lists = [&](const char* what, cri::PodSandboxFilter fd,
                                   cri::PodSandboxFilter fp, size_t want) {
    cri::ListPodSandboxResponse a, b;
    ASSERT_RPC_OK(d.ListPodSandbox(&fd, &a));
    ASSERT_RPC_OK(p.ListPodSandbox(&fp, &b));
    EXPECT_EQ(static_cast<size_t>(a.items_size()), want) << what;
    EXPECT_EQ(CompareNormalised(a, sd, b, sp), "") << what;
  };
  auto compare_container_lists = [&](const char* what, cri::ContainerFilter fd,
                                     cri::ContainerFilter fp, size_t want) {
    cri::ListContainersResponse a, b;
    ASSERT_RPC_OK(d.ListContainers(&fd, &a));
    ASSERT_RPC_OK(p.ListContainers(&fp, &b));
    EXPECT_EQ(static_cast<size_t>(a.containers_size()), want) << what;
    EXPECT_EQ(CompareNormalised(a, sd, b, sp), "") << what;
  };
  // Selects one pod by labels: the test run's and the pod's uid.
  auto by_labels = [&](const PodRun& run) {
    cri::PodSandboxFilter f;
    (*f.mutable_label_selector())["warmpool.test/run"] = token_;
    (*f.mutable_label_selector())["io.kubernetes.pod.uid"] = run.sandbox_config.metadata().uid();
    return f;
  };
  {
    cri::PodSandboxFilter fd, fp;
    fd.set_id(rd.sandbox_id);
    fp.set_id(rp.sandbox_id);
    compare_sandbox_lists("sandbox by id", fd, fp, 1);
    fd.set_id(rd.sandbox_id.substr(0, 12));  // containerd accepts a unique id prefix
    fp.set_id(rp.sandbox_id.substr(0, 12));
    compare_sandbox_lists("sandbox by id prefix", fd, fp, 1);
    compare_sandbox_lists("sandbox by labels", by_labels(rd), by_labels(rp), 1);
    fd = by_labels(rd);
    fp = by_labels(rp);
    fd.mutable_state()->set_state(cri::SANDBOX_READY);
    fp.mutable_state()->set_state(cri::SANDBOX_READY);
    compare_sandbox_lists("ready sandbox by labels", fd, fp, 1);
    fd.mutable_state()->set_state(cri::SANDBOX_NOTREADY);
    fp.mutable_state()->set_state(cri::SANDBOX_NOTREADY);
    compare_sandbox_lists("not-ready sandbox by labels", fd, fp, 0);
    fd = by_labels(rd);
    fp = by_labels(rp);
    fd.set_id(rd.sandbox_id);
    fp.set_id(rp.sandbox_id);
    compare_sandbox_lists("sandbox by id and labels", fd, fp, 1);
  }
  {
    cri::ContainerFilter fd, fp;
    fd.set_id(rd.container_ids[0]);
    fp.set_id(rp.container_ids[0]);
    compare_container_lists("container by id", fd, fp, 1);
    fd = {};
    fp = {};
    fd.set_pod_sandbox_id(rd.sandbox_id);
    fp.set_pod_sandbox_id(rp.sandbox_id);
    compare_container_lists("containers by sandbox", fd, fp, 1);
    fd.mutable_state()->set_state(cri::CONTAINER_RUNNING);
    fp.mutable_state()->set_state(cri::CONTAINER_RUNNING);
    compare_container_lists("running containers by sandbox", fd, fp, 1);
    fd = {};
    fp = {};
    (*fd.mutable_label_selector())["io.kubernetes.pod.uid"] = rd.sandbox_config.metadata().uid();
    (*fp.mutable_label_selector())["io.kubernetes.pod.uid"] = rp.sandbox_config.metadata().uid();
    (*fd.mutable_label_selector())["io.kubernetes.container.name"] = "app";
    (*fp.mutable_label_selector())["io.kubernetes.container.name"] = "app";
    compare_container_lists("containers by labels", fd, fp, 1);
    fd.mutable_state()->set_state(cri::CONTAINER_EXITED);
    fp.mutable_state()->set_state(cri::CONTAINER_EXITED);
    compare_container_lists("exited containers by labels", fd, fp, 0);
  }
  {
    // Both pods through both endpoints: the very same objects.
    cri::PodSandboxFilter f;
    (*f.mutable_label_selector())["warmpool.test/run"] = token_;
    cri::ListPodSandboxResponse a, b;
    ASSERT_RPC_OK(d.ListPodSandbox(&f, &a));
    ASSERT_RPC_OK(p.ListPodSandbox(&f, &b));
    EXPECT_EQ(a.items_size(), 2);
    EXPECT_EQ(DiffIgnoringOrder(a, b), "");
    cri::ListContainersResponse ca, cb;
    ASSERT_RPC_OK(d.ListContainers(nullptr, &ca));
    ASSERT_RPC_OK(p.ListContainers(nullptr, &cb));
    std::set<std::string> ids_a, ids_b;
    for (const auto& c : ca.containers()) ids_a.insert(c.id());
    for (const auto& c : cb.containers()) ids_b.insert(c.id());
    EXPECT_TRUE(ids_a.count(rp.container_ids[0]) && ids_b.count(rd.container_ids[0]));
  }

  // kubelet's teardown, step by step: stop, read, remove, read.
  {
    cri::StopPodSandboxResponse a, b;
    ASSERT_RPC_OK(d.StopPodSandbox(rd.sandbox_id, &a));
    ASSERT_RPC_OK(p.StopPodSandbox(rp.sandbox_id, &b));
    EXPECT_EQ(CompareNormalised(a, sd, b, sp), "");
  }
  {
    cri::PodSandboxStatusResponse a, b;
    ASSERT_RPC_OK(d.PodSandboxStatus(rd.sandbox_id, false, &a));
    ASSERT_RPC_OK(p.PodSandboxStatus(rp.sandbox_id, false, &b));
    EXPECT_EQ(a.status().state(), cri::SANDBOX_NOTREADY);
    EXPECT_EQ(CompareNormalised(a, sd, b, sp), "");
    cri::ContainerStatusResponse ca, cb;
    ASSERT_RPC_OK(d.ContainerStatus(rd.container_ids[0], false, &ca));
    ASSERT_RPC_OK(p.ContainerStatus(rp.container_ids[0], false, &cb));
    EXPECT_EQ(ca.status().state(), cri::CONTAINER_EXITED);
    EXPECT_EQ(CompareNormalised(ca, sd, cb, sp), "");

    cri::PodSandboxFilter fd = by_labels(rd), fp = by_labels(rp);
    fd.mutable_state()->set_state(cri::SANDBOX_NOTREADY);
    fp.mutable_state()->set_state(cri::SANDBOX_NOTREADY);
    compare_sandbox_lists("not-ready sandbox after stop", fd, fp, 1);
    cri::ContainerFilter cfd, cfp;
    cfd.set_pod_sandbox_id(rd.sandbox_id);
    cfp.set_pod_sandbox_id(rp.sandbox_id);
    cfd.mutable_state()->set_state(cri::CONTAINER_EXITED);
    cfp.mutable_state()->set_state(cri::CONTAINER_EXITED);
    compare_container_lists("exited containers after stop", cfd, cfp, 1);
  }
  {
    cri::RemovePodSandboxResponse a, b;
    ASSERT_RPC_OK(d.RemovePodSandbox(rd.sandbox_id, &a));
    ASSERT_RPC_OK(p.RemovePodSandbox(rp.sandbox_id, &b));
    EXPECT_EQ(CompareNormalised(a, sd, b, sp), "");
    cri::PodSandboxStatusResponse sa, sb;
    grpc::Status ea = d.PodSandboxStatus(rd.sandbox_id, false, &sa);
    grpc::Status eb = p.PodSandboxStatus(rp.sandbox_id, false, &sb);
    EXPECT_EQ(ea.error_code(), grpc::StatusCode::NOT_FOUND);
    EXPECT_EQ(
        SameStatus(ea, grpc::Status(eb.error_code(),
                                    Replace(eb.error_message(), {{rp.sandbox_id, rd.sandbox_id}}))),
        "");
    compare_sandbox_lists("sandbox by labels after remove", by_labels(rd), by_labels(rp), 0);
  }
}

// Errors keep their code and message (and CRI's idempotency) through warmpoold.
TEST_F(PassthroughTest, ErrorsAreTheSameAsContainerds) {
  KubeletDriver& d = Direct();
  KubeletDriver& p = Proxied();
  const std::string unknown(64, 'e');  // a well-formed id nobody has

  {
    cri::PodSandboxStatusResponse a, b;
    grpc::Status ea = d.PodSandboxStatus(unknown, false, &a);
    EXPECT_EQ(ea.error_code(), grpc::StatusCode::NOT_FOUND) << StatusString(ea);
    EXPECT_EQ(SameStatus(ea, p.PodSandboxStatus(unknown, false, &b)), "") << "PodSandboxStatus";
  }
  {
    cri::ContainerStatusResponse a, b;
    grpc::Status ea = d.ContainerStatus(unknown, false, &a);
    EXPECT_EQ(ea.error_code(), grpc::StatusCode::NOT_FOUND) << StatusString(ea);
    EXPECT_EQ(SameStatus(ea, p.ContainerStatus(unknown, false, &b)), "") << "ContainerStatus";
  }
  {
    // CRI says stopping and removing what does not exist succeeds;
    // containerd 1.6 answers NOT_FOUND to StopPodSandbox. Whatever containerd
    // does, warmpoold must do the same (kubelet copes with both).
    cri::StopPodSandboxResponse a, b;
    grpc::Status ea = d.StopPodSandbox(unknown, &a);
    RecordProperty("containerd_StopPodSandbox_unknown", StatusString(ea));
    EXPECT_EQ(SameStatus(ea, p.StopPodSandbox(unknown, &b)), "") << "StopPodSandbox";
  }
  {
    cri::RemovePodSandboxResponse a, b;
    grpc::Status ea = d.RemovePodSandbox(unknown, &a);
    RecordProperty("containerd_RemovePodSandbox_unknown", StatusString(ea));
    EXPECT_EQ(SameStatus(ea, p.RemovePodSandbox(unknown, &b)), "") << "RemovePodSandbox";
  }
  {
    cri::StopContainerResponse a, b;
    EXPECT_EQ(SameStatus(d.StopContainer(unknown, 1, &a), p.StopContainer(unknown, 1, &b)), "")
        << "StopContainer";
    cri::RemoveContainerResponse ra, rb;
    EXPECT_EQ(SameStatus(d.RemoveContainer(unknown, &ra), p.RemoveContainer(unknown, &rb)), "")
        << "RemoveContainer";
    cri::ContainerStatsResponse sa, sb;
    EXPECT_EQ(SameStatus(d.ContainerStats(unknown, &sa), p.ContainerStats(unknown, &sb)), "")
        << "ContainerStats";
    cri::ExecSyncResponse xa, xb;
    EXPECT_EQ(SameStatus(d.ExecSync(unknown, {"/testapp"}, 1, &xa),
                         p.ExecSync(unknown, {"/testapp"}, 1, &xb)),
              "")
        << "ExecSync";
    cri::StartContainerResponse ta, tb;
    EXPECT_EQ(SameStatus(d.StartContainer(unknown, &ta), p.StartContainer(unknown, &tb)), "")
        << "StartContainer";
  }
  {
    // A missing image: ImageStatus answers OK with no image.
    cri::ImageStatusResponse a, b;
    grpc::Status ea = d.ImageStatus("localhost/warmpool/does-not-exist:1", &a);
    grpc::Status eb = p.ImageStatus("localhost/warmpool/does-not-exist:1", &b);
    EXPECT_EQ(SameStatus(ea, eb), "") << "ImageStatus";
    EXPECT_FALSE(a.has_image());
    EXPECT_EQ(Diff(a, b), "");
  }
  {
    // Pull from a registry that refuses connections, on loopback.
    cri::PullImageResponse a, b;
    cri::PodSandboxConfig none;
    grpc::Status ea = d.PullImage("127.0.0.1:1/nope:1", none, &a);
    grpc::Status eb = p.PullImage("127.0.0.1:1/nope:1", none, &b);
    EXPECT_FALSE(ea.ok());
    EXPECT_EQ(SameStatus(ea, eb), "") << "PullImage";
  }
  {
    // CreateContainer with an image containerd does not have, in a real sandbox.
    PodRun rd, rp;
    PodSpec sd = AppPod("direct"), sp = AppPod("proxy");
    sd.containers.clear();
    sp.containers.clear();
    ASSERT_RPC_OK(d.StartPod(sd, &rd));
    ASSERT_RPC_OK(p.StartPod(sp, &rp));
    PodSpec::Container bad;
    bad.image = "localhost/warmpool/does-not-exist:1";
    rd.spec.containers = {bad};
    rp.spec.containers = {bad};
    cri::ContainerConfig cd = d.MakeContainerConfig(rd, 0, bad.image);
    cri::ContainerConfig cp = p.MakeContainerConfig(rp, 0, bad.image);
    cri::CreateContainerResponse a, b;
    grpc::Status ea = d.CreateContainer(rd.sandbox_id, cd, rd.sandbox_config, &a);
    grpc::Status eb = p.CreateContainer(rp.sandbox_id, cp, rp.sandbox_config, &b);
    EXPECT_FALSE(ea.ok());
    const Substitutions subs_d = {{rd.sandbox_id, "<SANDBOX_ID>"}};
    const Substitutions subs_p = {{rp.sandbox_id, "<SANDBOX_ID>"}};
    EXPECT_EQ(SameStatus(grpc::Status(ea.error_code(), Replace(ea.error_message(), subs_d)),
                         grpc::Status(eb.error_code(), Replace(eb.error_message(), subs_p))),
              "")
        << "CreateContainer with a missing image";
    // CreateContainer in a sandbox that does not exist.
    ea = d.CreateContainer(unknown, cd, rd.sandbox_config, &a);
    eb = p.CreateContainer(unknown, cd, rd.sandbox_config, &b);
    EXPECT_FALSE(ea.ok());
    EXPECT_EQ(SameStatus(ea, eb), "") << "CreateContainer in an unknown sandbox";
  }
}

// GetContainerEvents through warmpoold delivers a pod's container lifecycle,
// or, if containerd does not implement it, fails exactly as containerd does.
TEST_F(PassthroughTest, ContainerEventsStreamThrough) {
  KubeletDriver& d = Direct();
  KubeletDriver& p = Proxied();

  // What containerd itself says about the stream.
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 2s);
    auto reader = d.runtime().GetContainerEvents(&ctx, cri::GetEventsRequest());
    cri::ContainerEventResponse ev;
    while (reader->Read(&ev)) {
    }
    grpc::Status direct_status = reader->Finish();
    if (direct_status.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED) {
      // Not a live stream upstream (containerd 1.6 answers UNIMPLEMENTED):
      // warmpoold must say the same.
      grpc::ClientContext pctx;
      pctx.set_deadline(std::chrono::system_clock::now() + 2s);
      auto preader = p.runtime().GetContainerEvents(&pctx, cri::GetEventsRequest());
      while (preader->Read(&ev)) {
      }
      EXPECT_EQ(SameStatus(direct_status, preader->Finish()), "");
      GTEST_SKIP() << "containerd does not stream container events: " << StatusString(direct_status)
                   << " (same through warmpoold)";
    }
  }

  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 120s);
  auto reader = p.runtime().GetContainerEvents(&ctx, cri::GetEventsRequest());
  std::mutex mu;
  std::vector<cri::ContainerEventResponse> events;
  std::thread pump([&] {
    cri::ContainerEventResponse ev;
    while (reader->Read(&ev)) {
      std::lock_guard<std::mutex> lock(mu);
      events.push_back(ev);
    }
  });
  auto seen = [&](const std::string& id, cri::ContainerEventType type) {
    std::lock_guard<std::mutex> lock(mu);
    for (const auto& e : events) {
      if (e.container_id() == id && e.container_event_type() == type) return true;
    }
    return false;
  };

  PodRun run;
  grpc::Status started = p.StartPod(AppPod("events"), &run);
  if (started.ok()) {
    const std::string id = run.container_ids[0];
    EXPECT_TRUE(WaitFor([&] { return seen(id, cri::CONTAINER_CREATED_EVENT); }, 10s));
    EXPECT_TRUE(WaitFor([&] { return seen(id, cri::CONTAINER_STARTED_EVENT); }, 10s));
    EXPECT_TRUE(p.StopAndRemovePod(run).ok());
    EXPECT_TRUE(WaitFor([&] { return seen(id, cri::CONTAINER_STOPPED_EVENT); }, 10s));
    EXPECT_TRUE(WaitFor([&] { return seen(id, cri::CONTAINER_DELETED_EVENT); }, 10s));
    std::lock_guard<std::mutex> lock(mu);
    for (const auto& e : events) {
      if (e.container_id() == id && e.container_event_type() == cri::CONTAINER_STARTED_EVENT) {
        EXPECT_EQ(e.pod_sandbox_status().metadata().name(), run.spec.name);
      }
    }
  }
  ctx.TryCancel();
  pump.join();
  grpc::Status finished = reader->Finish();
  EXPECT_EQ(finished.error_code(), grpc::StatusCode::CANCELLED) << StatusString(finished);
  ASSERT_RPC_OK(started);
}

// warmpoold in front of something other than the test containerd.
using WarmpooldUpstreamTest = CriTestBed;

// An upstream that implements only GetContainerEvents: sends the events it
// was given, then holds the stream open until the caller goes away.
class FakeEventsUpstream final : public cri::RuntimeService::Service {
 public:
  explicit FakeEventsUpstream(std::vector<cri::ContainerEventResponse> events)
      : events_(std::move(events)) {}

  grpc::Status GetContainerEvents(
      grpc::ServerContext* ctx, const cri::GetEventsRequest*,
      grpc::ServerWriter<cri::ContainerEventResponse>* writer) override {
    for (const auto& e : events_) writer->Write(e);
    while (!ctx->IsCancelled()) std::this_thread::sleep_for(5ms);
    cancelled_ = true;
    return grpc::Status::CANCELLED;
  }
  bool cancelled() const { return cancelled_; }

 private:
  std::vector<cri::ContainerEventResponse> events_;
  std::atomic<bool> cancelled_{false};
};

// The streaming path of the real binary, independent of containerd's
// version (1.6 does not implement GetContainerEvents): every event arrives
// as sent, and the caller's cancellation reaches the upstream.
TEST_F(WarmpooldUpstreamTest, ContainerEventsStreamFromFakeUpstream) {
  if (WarmpooldProcess::DefaultBinary().empty()) {
    if (TestBedEnv::Required()) FAIL() << "no warmpoold binary (WARMPOOLD_PATH unset)";
    GTEST_SKIP() << "no warmpoold binary: build target warmpoold or set WP_TEST_WARMPOOLD";
  }
  std::vector<cri::ContainerEventResponse> sent;
  for (auto type : {cri::CONTAINER_CREATED_EVENT, cri::CONTAINER_STARTED_EVENT,
                    cri::CONTAINER_STOPPED_EVENT, cri::CONTAINER_DELETED_EVENT}) {
    cri::ContainerEventResponse e;
    e.set_container_id("c-" + token_);
    e.set_container_event_type(type);
    e.set_created_at(1700000000000000000 + type);
    e.mutable_pod_sandbox_status()->mutable_metadata()->set_name("pod-" + token_);
    e.add_containers_statuses()->set_id("c-" + token_);
    sent.push_back(e);
  }
  FakeEventsUpstream fake(sent);
  const std::string upstream = (dir_ / "fake.sock").string();
  grpc::ServerBuilder builder;
  builder.AddListeningPort("unix:" + upstream, grpc::InsecureServerCredentials());
  builder.RegisterService(&fake);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);

  WarmpooldProcess::Options o;
  o.upstream = upstream;
  o.dir = dir_ / "proxy";
  o.wait_for_upstream = false;  // the fake has no Version
  proxies_.push_back(std::make_unique<WarmpooldProcess>(o));
  ASSERT_EQ(proxies_.back()->Start(), "");

  auto stub = cri::RuntimeService::NewStub(ConnectCri(proxies_.back()->socket_path().string()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 30s);
  auto reader = stub->GetContainerEvents(&ctx, cri::GetEventsRequest());
  for (size_t i = 0; i < sent.size(); ++i) {
    cri::ContainerEventResponse got;
    ASSERT_TRUE(reader->Read(&got))
        << "stream ended after " << i << " events: " << StatusString(reader->Finish());
    EXPECT_EQ(Diff(sent[i], got), "") << "event " << i;
  }
  ctx.TryCancel();
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_TRUE(WaitFor([&] { return fake.cancelled(); }, 10s))
      << "the caller's cancellation did not reach the upstream stream";
  // Stop the proxy before the fake: a clean exit is checked in TearDown.
  EXPECT_EQ(proxies_.back()->Stop(), "");
  server->Shutdown(std::chrono::system_clock::now() + 5s);
}

// A TCP listener on an ephemeral loopback port that accepts and never
// answers: a registry that hangs. Counts connections and their closing.
class HangingServer {
 public:
  HangingServer() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    ::listen(fd_, 16);
    socklen_t len = sizeof(addr);
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { Loop(); });
  }
  ~HangingServer() {
    stop_ = true;
    thread_.join();
    for (const auto& p : conns_) ::close(p.fd);
    ::close(fd_);
  }
  int port() const { return port_; }
  int accepted() const { return accepted_; }
  int closed() const { return closed_; }

 private:
  void Loop() {
    while (!stop_) {
      std::vector<pollfd> fds{{fd_, POLLIN, 0}};
      for (const auto& c : conns_) fds.push_back(c);
      if (::poll(fds.data(), fds.size(), 20) <= 0) continue;
      if (fds[0].revents & POLLIN) {
        int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (c >= 0) {
          conns_.push_back({c, POLLIN, 0});
          ++accepted_;
        }
      }
      for (size_t i = 1; i < fds.size(); ++i) {
        if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        char buf[4096];
        if (::recv(fds[i].fd, buf, sizeof(buf), 0) <= 0) {
          ::close(fds[i].fd);
          ++closed_;
          for (auto it = conns_.begin(); it != conns_.end(); ++it) {
            if (it->fd == fds[i].fd) {
              conns_.erase(it);
              break;
            }
          }
        }
      }
    }
  }

  int fd_ = -1;
  int port_ = 0;
  std::vector<pollfd> conns_;  // loop thread only
  std::atomic<int> accepted_{0}, closed_{0};
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// The caller's deadline reaches containerd: when it passes, containerd gives
// up the pull (closes its registry connection), through warmpoold as direct.
// Meanwhile other calls through warmpoold are not held up.
TEST_F(PassthroughTest, DeadlineAndCancellationReachContainerd) {
  KubeletDriver& d = Direct();
  KubeletDriver& p = Proxied();

  {
    // A deadline that has already passed fails with DEADLINE_EXCEEDED
    // through warmpoold, which keeps serving. (Not "now + 1us": on a loaded
    // machine gRPC's deadline timer can lose that race to a fast answer.)
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() - 1s);
    cri::VersionRequest req;
    cri::VersionResponse resp;
    grpc::Status s = p.runtime().Version(&ctx, req, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << StatusString(s);
    cri::VersionResponse ok;
    ASSERT_RPC_OK(p.Version(&ok));
    EXPECT_FALSE(ok.runtime_name().empty());
  }

  for (KubeletDriver* driver : {&d, &p}) {
    const bool proxied = driver == &p;
    HangingServer registry;
    const std::string image =
        "127.0.0.1:" + std::to_string(registry.port()) + "/hang-" + token_ + ":1";
    std::atomic<bool> pull_done{false};
    grpc::Status pull_status;
    Clock::time_point pull_start = Clock::now(), pull_end;
    std::thread pull([&] {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + 3s);
      cri::PullImageRequest req;
      req.mutable_image()->set_image(image);
      cri::PullImageResponse resp;
      pull_status = driver->images().PullImage(&ctx, req, &resp);
      pull_end = Clock::now();
      pull_done = true;
    });
    // containerd reached the registry...
    EXPECT_TRUE(WaitFor([&] { return registry.accepted() > 0 || pull_done; }, 10s));
    if (proxied) {
      // ...and while that pull hangs, other calls go through at once.
      auto t0 = Clock::now();
      cri::VersionResponse v;
      EXPECT_TRUE(p.Version(&v).ok());
      cri::ListPodSandboxResponse l;
      EXPECT_TRUE(p.ListPodSandbox(nullptr, &l).ok());
      EXPECT_LT(Clock::now() - t0, 1s) << "a hanging call held up others";
    }
    pull.join();
    EXPECT_EQ(pull_status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED)
        << (proxied ? "through warmpoold: " : "direct: ") << StatusString(pull_status);
    EXPECT_LT(pull_end - pull_start, 6s);
    // ...and gave up once the deadline passed: every connection closed.
    EXPECT_TRUE(WaitFor(
        [&] { return registry.accepted() > 0 && registry.closed() == registry.accepted(); }, 10s))
        << (proxied ? "through warmpoold" : "direct") << ": containerd kept "
        << registry.accepted() - registry.closed() << " of " << registry.accepted()
        << " registry connections open after the caller's deadline";
  }
}

// Upstream unavailable: warmpoold answers UNAVAILABLE, keeps running, and
// reconnects by itself once the upstream socket appears.
TEST_F(WarmpooldUpstreamTest, UpstreamDownGivesUnavailableThenReconnects) {
  if (WarmpooldProcess::DefaultBinary().empty()) {
    if (TestBedEnv::Required()) FAIL() << "no warmpoold binary (WARMPOOLD_PATH unset)";
    GTEST_SKIP() << "no warmpoold binary: build target warmpoold or set WP_TEST_WARMPOOLD";
  }
  const auto upstream = dir_ / "upstream.sock";  // not there yet
  WarmpooldProcess::Options o;
  o.upstream = upstream.string();
  o.dir = dir_ / "proxy";
  o.wait_for_upstream = false;
  proxies_.push_back(std::make_unique<WarmpooldProcess>(o));
  WarmpooldProcess& proxy = *proxies_.back();
  ASSERT_EQ(proxy.Start(), "");

  KubeletDriver& p = NewDriver(proxy.socket_path().string(), "proxy");
  cri::VersionResponse v;
  grpc::Status down = p.Version(&v);
  EXPECT_EQ(down.error_code(), grpc::StatusCode::UNAVAILABLE) << StatusString(down);
  cri::ListPodSandboxResponse l;
  down = p.ListPodSandbox(nullptr, &l);
  EXPECT_EQ(down.error_code(), grpc::StatusCode::UNAVAILABLE) << StatusString(down);
  EXPECT_TRUE(proxy.running());

  // The upstream "comes back": its socket path now leads to containerd.
  std::filesystem::create_symlink(env_.containerd_sock, upstream);
  grpc::Status last;
  EXPECT_TRUE(WaitFor(
      [&] {
        last = p.Version(&v);
        return last.ok();
      },
      30s, 100ms))
      << "warmpoold did not reconnect to its upstream: " << StatusString(last);
  EXPECT_FALSE(v.runtime_name().empty());
}

// kill -9 leaves a stale socket; a new warmpoold starts anyway and serves the
// pods that exist in containerd.
TEST_F(PassthroughTest, RestartAfterKillServesExistingPods) {
  KubeletDriver& p = Proxied();
  PodRun run;
  ASSERT_RPC_OK(p.StartPod(AppPod("restart"), &run));
  proxy_->Kill();
  EXPECT_TRUE(std::filesystem::exists(proxy_->socket_path()));
  cri::PodSandboxStatusResponse status;
  EXPECT_EQ(p.PodSandboxStatus(run.sandbox_id, false, &status).error_code(),
            grpc::StatusCode::UNAVAILABLE);

  ASSERT_EQ(proxy_->Start(), "");
  // The same client channel reconnects to the new daemon.
  EXPECT_TRUE(
      WaitFor([&] { return p.PodSandboxStatus(run.sandbox_id, false, &status).ok(); }, 20s));
  EXPECT_EQ(status.status().metadata().name(), run.spec.name);
  ASSERT_NO_FATAL_FAILURE(ExpectAppServes(run));
  ASSERT_RPC_OK(p.StopAndRemovePod(run));
}

}  // namespace
}  // namespace warmpool::testing
