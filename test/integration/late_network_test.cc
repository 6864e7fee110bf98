// Late network binding against a real containerd and the real CNI plugins
// (bridge + host-local + portmap from containernetworking-plugins): pool
// entries are made through the bed's "warmpool-late" runtime handler (the
// placeholder network), and warmpoold runs the node's conflist at hand-off
// with the real pod's identity.
//
// The node's conflist here is the bed's bridge network with wp-cni-recorder
// (test/integration/cni_recorder.c) chained after it: it records every CNI
// call (arguments, config) and can kill warmpoold in the middle of an ADD.

#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "daemon/cni.h"
#include "daemon/late_network.h"
#include "daemon/readiness.h"
#include "daemon/runtime_client.h"
#include "test/integration/cri_compare.h"
#include "test/integration/kubelet_driver.h"
#include "test/integration/pool_fixture.h"
#include "test/integration/test_bed.h"
#include "test/integration/warmpoold_process.h"
#include "warmpool_admin.grpc.pb.h"

namespace warmpool::testing {
namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;
namespace fs = std::filesystem;

// One line of the recorder's log.
struct CniCall {
  std::string command, container_id, ifname, netns, args;
  json config;
};

std::map<std::string, std::string> ParseCniArgs(const std::string& args) {
  std::map<std::string, std::string> out;
  std::stringstream ss(args);
  for (std::string kv; std::getline(ss, kv, ';');) {
    auto eq = kv.find('=');
    if (eq != std::string::npos) out[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  return out;
}

class LateNetworkTest : public PoolBedTest {
 protected:
  LateNetworkTest() : PoolBedTest("wpl") {}

  void SetUp() override {
    PoolBedTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    late_handler_ = Getenv("WP_TEST_LATE_RUNTIME_HANDLER");
    if (late_handler_.empty()) GTEST_SKIP() << "the test bed has no late runtime handler";
    ipam_dir_ = fs::path(Getenv("WP_TEST_DIR")) / "cni" / "ipam" / Getenv("WP_TEST_CNI_NETWORK");

    // The node's network: the bed's conflist + the recorder.
    fs::create_directories(dir_ / "net.d");
    fs::create_directories(dir_ / "bin");
    fs::create_directories(dir_ / "calls");
    auto bed = LoadCniConfList(Getenv("WP_TEST_CNI_CONF_DIR"));
    ASSERT_TRUE(bed.ok()) << bed.status();
    json list = json::parse(*bed);
    list["plugins"].push_back({{"type", "wp-cni-recorder"},
                               {"logDir", (dir_ / "calls").string()},
                               {"capabilities", {{"portMappings", true}, {"dns", true}}}});
    std::ofstream(dir_ / "net.d" / "10-node.conflist") << list.dump(2);
    fs::create_symlink(CNI_RECORDER_PATH, dir_ / "bin" / "wp-cni-recorder");
  }

  std::string DaemonNetworkConfig() const {
    return "late_runtime_handler = \"" + late_handler_ + "\"\ncni_conf_dir = \"" +
           (dir_ / "net.d").string() + "\"\ncni_bin_dir = \"" + (dir_ / "bin").string() + ":" +
           Getenv("WP_TEST_CNI_BIN_DIR") + "\"\n";
  }

  // A late sandbox pool "late" (pods name it with the annotation); `more`:
  // more [daemon] lines.
  void StartDaemon(int size = 1, const std::string& more = "") {
    PoolBedTest::StartDaemon("[[pool]]\nname = \"late\"\nsize = " + std::to_string(size) +
                                 "\nnetwork = \"late\"\n[pool.sandbox]\n"
                                 "dns = { servers = [\"127.0.0.1\"] }\n",
                             DaemonNetworkConfig() + more);
  }

  PodSpec Pod(const std::string& name, bool warm) {
    PodSpec spec;
    spec.name = name + "-" + token_;
    spec.labels["warmpool.test/run"] = token_;
    if (warm) spec.annotations["warmpool.io/pool"] = "late";
    spec.containers[0].env = {{"INIT_SECONDS", "0"}};
    return spec;
  }

  std::vector<CniCall> Calls() {
    std::vector<CniCall> out;
    std::ifstream in(dir_ / "calls" / "calls.log");
    for (std::string line; std::getline(in, line);) {
      CniCall c;
      std::stringstream ss(line);
      std::getline(ss, c.command, '|');
      std::getline(ss, c.container_id, '|');
      std::getline(ss, c.ifname, '|');
      std::getline(ss, c.netns, '|');
      std::getline(ss, c.args, '|');
      std::string rest;
      std::getline(ss, rest);
      c.config = json::parse(rest, nullptr, false);
      out.push_back(std::move(c));
    }
    return out;
  }
  int CallCount(const std::string& command, const std::string& container_id) {
    int n = 0;
    for (const auto& c : Calls()) n += c.command == command && c.container_id == container_id;
    return n;
  }

  // host-local's store: one file per allocated IP, holding the container id.
  std::map<std::string, std::string> Allocated() {
    std::map<std::string, std::string> out;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(ipam_dir_, ec)) {
      const std::string name = e.path().filename().string();
      if (name == "lock" || name.rfind("last_reserved_ip", 0) == 0) continue;
      std::string owner = ReadAll(e.path());
      out[name] = owner.substr(0, owner.find_first_of("\r\n"));
    }
    return out;
  }

  std::string late_handler_;
  fs::path ipam_dir_;
};

TEST_F(LateNetworkTest, HandOffBindsThePodsOwnNetwork) {
  StartDaemon();
  ASSERT_TRUE(WaitFor([&] { return Frozen().size() == 1; }, 60s)) << daemon_->LogTail();
  const auto entry = Frozen().front();
  // The entry has only the placeholder: a link-local IP, nothing from host-local.
  EXPECT_EQ(entry.pod_ip().rfind("169.254.", 0), 0u) << entry.pod_ip();
  for (const auto& [ip, owner] : Allocated()) EXPECT_NE(owner, entry.sandbox_id()) << ip;

  // A cold pod for comparison (it names no pool).
  PodRun cold;
  ASSERT_RPC_OK(driver_->StartPod(Pod("cold", false), &cold));
  EXPECT_NE(cold.sandbox_id, entry.sandbox_id());

  PodSpec spec = Pod("warm", true);
  cri::PortMapping port;
  port.set_protocol(cri::TCP);
  port.set_container_port(8080);
  port.set_host_port(40000 + static_cast<int>(std::hash<std::string>()(token_) % 20000));
  port.set_host_ip("127.0.0.1");
  spec.port_mappings.push_back(port);
  PodRun warm;
  ASSERT_RPC_OK(driver_->StartPod(spec, &warm));
  ASSERT_EQ(warm.sandbox_id, entry.sandbox_id()) << "the pod did not get the frozen entry\n"
                                                  << daemon_->LogTail();

  // The pod IP is the bed network's, reported in every read.
  const std::string subnet = env_.pod_cidr.substr(0, env_.pod_cidr.rfind('.') + 1);
  ASSERT_EQ(warm.pod_ip.rfind(subnet, 0), 0u) << warm.pod_ip;
  EXPECT_EQ(Allocated()[warm.pod_ip], warm.sandbox_id);
  auto root = WaitForHttp(warm.pod_ip, 8080, "/", 30s);
  ASSERT_TRUE(root.has_value()) << "the app does not answer on its pod IP";
  EXPECT_EQ(root->body, "hostname=" + spec.name + "\n");

  // hostPort: through portmap, on a host loopback address.
  auto via_port = WaitForHttp("127.0.0.1", port.host_port(), "/", 30s);
  ASSERT_TRUE(via_port.has_value()) << "hostPort " << port.host_port() << " does not answer";
  EXPECT_EQ(via_port->body, root->body);

  // The CNI call had the real pod's identity, the capability args, and the
  // chained result.
  std::vector<CniCall> adds;
  for (const auto& c : Calls()) {
    if (c.command == "ADD" && c.container_id == warm.sandbox_id) adds.push_back(c);
  }
  ASSERT_EQ(adds.size(), 1u);
  auto args = ParseCniArgs(adds[0].args);
  EXPECT_EQ(args["K8S_POD_NAME"], spec.name);
  EXPECT_EQ(args["K8S_POD_NAMESPACE"], "default");
  EXPECT_EQ(args["K8S_POD_UID"], warm.sandbox_config.metadata().uid());
  EXPECT_EQ(args["K8S_POD_INFRA_CONTAINER_ID"], warm.sandbox_id);
  EXPECT_EQ(args["IgnoreUnknown"], "1");
  EXPECT_EQ(adds[0].ifname, "eth0");
  EXPECT_FALSE(adds[0].netns.empty());
  const json& config = adds[0].config;
  ASSERT_TRUE(config.is_object());
  EXPECT_EQ(config["runtimeConfig"]["portMappings"][0]["hostPort"], port.host_port());
  EXPECT_EQ(config["runtimeConfig"]["portMappings"][0]["containerPort"], 8080);
  EXPECT_EQ(config["runtimeConfig"]["portMappings"][0]["protocol"], "tcp");
  EXPECT_EQ(config["runtimeConfig"]["dns"]["servers"][0], "127.0.0.1");
  EXPECT_NE(config["prevResult"].dump().find(warm.pod_ip), std::string::npos)
      << "bridge's result was not chained: " << config.dump();

  // The kubelet view equals a cold pod's, but for what differs between any
  // two pods.
  cri::PodSandboxStatusResponse warm_status, cold_status;
  ASSERT_RPC_OK(driver_->PodSandboxStatus(warm.sandbox_id, false, &warm_status));
  ASSERT_RPC_OK(driver_->PodSandboxStatus(cold.sandbox_id, false, &cold_status));
  EXPECT_EQ(warm_status.status().network().ip(), warm.pod_ip);
  EXPECT_EQ(warm_status.status().runtime_handler(), "");
  Substitutions subs = {
      {warm.sandbox_id, "<id>"},
      {cold.sandbox_id, "<id>"},
      {warm.sandbox_config.metadata().uid(), "<uid>"},
      {cold.sandbox_config.metadata().uid(), "<uid>"},
      {spec.name, "<name>"},
      {cold.spec.name, "<name>"},
      {warm.pod_ip, "<ip>"},
      {cold.pod_ip, "<ip>"},
  };
  warm_status.mutable_status()->mutable_annotations()->erase("warmpool.io/pool");
  ASSERT_TRUE(Normalise(&warm_status, subs));
  ASSERT_TRUE(Normalise(&cold_status, subs));
  EXPECT_EQ(Diff(cold_status, warm_status), "");

  // Stop (twice) and Remove: one DEL of the pod network, the IP freed; the
  // cold pod's IP stays allocated.
  cri::StopPodSandboxResponse stop;
  for (int i = 0; i < 2; ++i) {
    for (const std::string& id : warm.container_ids) {
      cri::StopContainerResponse sc;
      ASSERT_RPC_OK(driver_->StopContainer(id, 0, &sc));
    }
    ASSERT_RPC_OK(driver_->StopPodSandbox(warm.sandbox_id, &stop));
    EXPECT_EQ(Allocated().count(warm.pod_ip), 0u) << "the IP is still allocated after Stop";
  }
  EXPECT_EQ(CallCount("DEL", warm.sandbox_id), 1);
  cri::PodSandboxStatusResponse stopped;
  ASSERT_RPC_OK(driver_->PodSandboxStatus(warm.sandbox_id, false, &stopped));
  EXPECT_EQ(stopped.status().network().ip(), "") << "a stopped sandbox reports no IP";
  ASSERT_RPC_OK(driver_->StopAndRemovePod(warm));
  EXPECT_EQ(CallCount("DEL", warm.sandbox_id), 1);
  EXPECT_EQ(Allocated()[cold.pod_ip], cold.sandbox_id);
  EXPECT_FALSE(fs::exists(daemon_->state_dir() / "adopted" / (warm.sandbox_id + ".rec")));
  ASSERT_RPC_OK(driver_->StopAndRemovePod(cold));
}

// warmpoold killed by SIGKILL in the middle of the pod network's ADD (after
// bridge allocated the IP, before warmpoold recorded the result): the
// restarted warmpoold runs the DEL it recorded beforehand, once, and the IP
// is free.
TEST_F(LateNetworkTest, KillDuringAddFreesTheIpExactlyOnce) {
  // A budget below one entry's memory: the pool makes its first entry but
  // no refill after the claim, so the kill cannot land in a refill's
  // RunPodSandbox (containerd 1.6 leaks the shim of one cancelled half way,
  // containerd#7733).
  StartDaemon(1, "memory_budget = \"64Ki\"\n");
  ASSERT_TRUE(WaitFor([&] { return Frozen().size() == 1; }, 60s)) << daemon_->LogTail();
  const std::string entry_sandbox = Frozen().front().sandbox_id();
  std::ofstream(dir_ / "calls" / "kill-parent") << "1";

  cri::RunPodSandboxResponse resp;
  const cri::PodSandboxConfig config = driver_->MakeSandboxConfig(Pod("killed", true));
  grpc::Status s = driver_->RunPodSandbox(config, "", &resp);
  EXPECT_FALSE(s.ok()) << "warmpoold should have died during the hand-off";
  ASSERT_FALSE(fs::exists(dir_ / "calls" / "kill-parent")) << "the ADD never ran";
  ASSERT_EQ(CallCount("ADD", entry_sandbox), 1);
  std::string ip;
  for (const auto& [a, owner] : Allocated()) {
    if (owner == entry_sandbox) ip = a;
  }
  ASSERT_FALSE(ip.empty()) << "bridge did not allocate an IP before the kill";

  daemon_->Kill();  // reap it
  ASSERT_EQ(daemon_->Start(), "");
  // Recovery runs once containerd answers, after the socket serves.
  EXPECT_TRUE(WaitFor([&] { return Allocated().count(ip) == 0; }, 30s))
      << "recovery did not free " << ip << "\n"
      << daemon_->LogTail();
  EXPECT_TRUE(WaitFor(
      [&] { return !fs::exists(daemon_->state_dir() / "adopted" / (entry_sandbox + ".rec")); },
      30s));
  EXPECT_EQ(CallCount("DEL", entry_sandbox), 1);
  // The half-bound entry is gone; kubelet's retry gets a working pod.
  ASSERT_TRUE(WaitFor([&] { return Frozen().size() == 1; }, 60s)) << daemon_->LogTail();
  EXPECT_NE(Frozen().front().sandbox_id(), entry_sandbox);
  PodRun retry;
  ASSERT_RPC_OK(driver_->StartPod(Pod("killed", true), &retry));
  ASSERT_TRUE(WaitForHttp(retry.pod_ip, 8080, "/", 30s).has_value());
  ASSERT_RPC_OK(driver_->StopAndRemovePod(retry));
  EXPECT_EQ(CallCount("DEL", entry_sandbox), 1);
}

// An app that bound 0.0.0.0 while its sandbox had only the placeholder
// network keeps serving, on the new address, once the pod network is bound;
// its readiness is checked from inside the netns. Straight against
// containerd and warmpoold's own LateNetwork (no warmpoold process).
TEST_F(LateNetworkTest, ServerBoundDuringInitServesOnTheBoundNetwork) {
  KubeletDriver::Options d;
  d.endpoint = env_.containerd_sock;
  d.work_dir = dir_ / "pods";
  d.cgroup_parent = env_.cgroup_parent;
  d.app_image = env_.app_image;
  KubeletDriver direct(d);
  PodSpec spec = Pod("init", false);
  spec.runtime_handler = late_handler_;
  PodRun run;
  ASSERT_RPC_OK(direct.StartPod(spec, &run));
  ASSERT_EQ(run.pod_ip.rfind("169.254.", 0), 0u) << "not the placeholder: " << run.pod_ip;

  GrpcRuntimeClient runtime(ConnectCri(env_.containerd_sock));
  auto netns = SandboxNetnsPath(&runtime, run.sandbox_id);
  ASSERT_TRUE(netns.ok()) << netns.status();
  ReadyCheck check;
  check.kind = ReadyCheck::Kind::kHttp;
  check.port = 8080;
  check.path = "/";
  ASSERT_TRUE(WaitFor(
      [&] { return ProbeOnce(check, "127.0.0.1", "", &runtime, 1s, *netns).ok(); }, 30s))
      << "the app does not answer on the sandbox's loopback";

  LateNetwork late(&runtime);
  DaemonConfig daemon;
  daemon.cni_conf_dir = (dir_ / "net.d").string();
  daemon.cni_bin_dir = (dir_ / "bin").string() + ":" + Getenv("WP_TEST_CNI_BIN_DIR");
  late.Configure(daemon);
  v1::RunPodSandboxRequest req;
  *req.mutable_config() = run.sandbox_config;
  auto net = late.Prepare(req, run.sandbox_id);
  ASSERT_TRUE(net.ok()) << net.status();
  absl::Status bound = late.Bind(run.sandbox_id, &*net);
  ASSERT_TRUE(bound.ok()) << bound;
  const auto ips = LateNetwork::PodIps(*net);
  ASSERT_EQ(ips.size(), 1u);
  auto answer = WaitForHttp(ips[0], 8080, "/", 30s);
  EXPECT_TRUE(answer.has_value()) << "the app bound during init does not answer on " << ips[0];

  EXPECT_TRUE(late.Release(run.sandbox_id, *net).ok());
  EXPECT_EQ(Allocated().count(ips[0]), 0u);
  ASSERT_RPC_OK(direct.StopAndRemovePod(run));
  EXPECT_EQ(direct.Cleanup(), "");
}

}  // namespace
}  // namespace warmpool::testing
