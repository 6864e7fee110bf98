// warmpoold's CNI runtime (daemon/cni.h) against plugins that are small
// shell scripts written by the test: what each plugin is given (environment,
// derived config, prevResult chaining, runtimeConfig by capability), the
// order of ADD and DEL, errors, and the config choice of a conf dir. Also the
// capability args LateNetwork builds from kubelet's request.

#include "daemon/cni.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "daemon/late_network.h"

namespace warmpool {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::string ReadAll(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class CniTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/wpcni-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    fs::create_directories(dir_ / "bin");
    fs::create_directories(dir_ / "log");
    paths_.bin_dirs = {(dir_ / "empty").string(), (dir_ / "bin").string()};
  }
  void TearDown() override { fs::remove_all(dir_); }

  // A plugin that logs "<name> <command>" plus its env and stdin, then
  // prints `add_output` on ADD (with ${N} = its name), or fails with `fail`.
  void Plugin(const std::string& name, const std::string& add_output, const std::string& fail = "") {
    const fs::path path = dir_ / "bin" / name;
    std::ofstream out(path);
    out << "#!/bin/sh\n"
        << "log=" << (dir_ / "log").string() << "\n"
        << "echo \"" << name << " $CNI_COMMAND\" >> $log/order\n"
        << "env | grep -E '^(CNI_|PATH=)' | sort > $log/" << name << ".$CNI_COMMAND.env\n"
        << "cat > $log/" << name << ".$CNI_COMMAND.json\n";
    if (!fail.empty()) {
      out << "echo '" << fail << "'; exit 1\n";
    } else {
      out << "[ \"$CNI_COMMAND\" = ADD ] && echo '" << add_output << "'\nexit 0\n";
    }
    out.close();
    chmod(path.c_str(), 0755);
  }
  json Logged(const std::string& name, const std::string& command) {
    return json::parse(ReadAll(dir_ / "log" / (name + "." + command + ".json")), nullptr, false);
  }
  std::string Env(const std::string& name, const std::string& command) {
    return ReadAll(dir_ / "log" / (name + "." + command + ".env"));
  }

  CniInvocation Inv() {
    CniInvocation inv;
    inv.container_id = "c0ffee";
    inv.netns = "/var/run/netns/x";
    inv.args = "IgnoreUnknown=1;K8S_POD_NAME=web";
    inv.capability_args = R"({"portMappings":[{"hostPort":80}],"dns":{"servers":["1.2.3.4"]}})";
    return inv;
  }

  fs::path dir_;
  CniPaths paths_;
};

const char* kList = R"({"cniVersion":"1.0.0","name":"net","plugins":[
  {"type":"first","x":1},
  {"type":"second","capabilities":{"portMappings":true,"bandwidth":true}},
  {"type":"third","capabilities":{"dns":true,"portMappings":false}}]})";

TEST_F(CniTest, AddChainsResultsAndPassesDeclaredCapabilities) {
  Plugin("first", R"({"cniVersion":"1.0.0","ips":[{"address":"10.0.0.5/24","interface":0}],"interfaces":[{"name":"eth0"}],"by":"first"})");
  Plugin("second", R"({"cniVersion":"1.0.0","ips":[{"address":"10.0.0.5/24","interface":0}],"interfaces":[{"name":"eth0"}],"by":"second"})");
  Plugin("third", R"({"cniVersion":"1.0.0","ips":[{"address":"10.0.0.5/24","interface":0},{"address":"fd00::5/64","interface":0},{"address":"10.9.9.9/32","interface":1}],"interfaces":[{"name":"eth0"},{"name":"veth1"}],"by":"third"})");
  auto result = CniAdd(kList, Inv(), paths_);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(json::parse(*result)["by"], "third");
  EXPECT_EQ(ReadAll(dir_ / "log" / "order"), "first ADD\nsecond ADD\nthird ADD\n");

  json first = Logged("first", "ADD");
  EXPECT_EQ(first["name"], "net");
  EXPECT_EQ(first["cniVersion"], "1.0.0");
  EXPECT_EQ(first["x"], 1);
  EXPECT_FALSE(first.contains("prevResult"));
  EXPECT_FALSE(first.contains("runtimeConfig"));
  json second = Logged("second", "ADD");
  EXPECT_EQ(second["prevResult"]["by"], "first");
  EXPECT_EQ(second["runtimeConfig"], json::parse(R"({"portMappings":[{"hostPort":80}]})"));
  json third = Logged("third", "ADD");
  EXPECT_EQ(third["prevResult"]["by"], "second");
  EXPECT_EQ(third["runtimeConfig"], json::parse(R"({"dns":{"servers":["1.2.3.4"]}})"));

  const std::string env = Env("second", "ADD");
  EXPECT_NE(env.find("CNI_COMMAND=ADD\n"), std::string::npos) << env;
  EXPECT_NE(env.find("CNI_CONTAINERID=c0ffee\n"), std::string::npos);
  EXPECT_NE(env.find("CNI_NETNS=/var/run/netns/x\n"), std::string::npos);
  EXPECT_NE(env.find("CNI_IFNAME=eth0\n"), std::string::npos);
  EXPECT_NE(env.find("CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAME=web\n"), std::string::npos);
  EXPECT_NE(env.find("CNI_PATH=" + paths_.bin_dirs[0] + ":" + paths_.bin_dirs[1] + "\n"),
            std::string::npos);
  EXPECT_NE(env.find("PATH="), std::string::npos);

  // eth0's addresses, IPv4 first; veth1's are not the pod's.
  EXPECT_EQ(CniResultIps(*result, "eth0"), (std::vector<std::string>{"10.0.0.5", "fd00::5"}));
}

TEST_F(CniTest, DelRunsInReverseWithTheAddResultAndDoesNotStopAtAnError) {
  Plugin("first", "{}");
  Plugin("second", "", R"({"code":11,"msg":"iptables busy","details":"try again"})");
  Plugin("third", "{}");
  absl::Status s = CniDel(kList, Inv(), R"({"cniVersion":"1.0.0","by":"add"})", paths_);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(std::string(s.message()).find("iptables busy: try again (code 11)"), std::string::npos)
      << s;
  EXPECT_EQ(ReadAll(dir_ / "log" / "order"), "third DEL\nsecond DEL\nfirst DEL\n");
  EXPECT_EQ(Logged("first", "DEL")["prevResult"]["by"], "add");
  EXPECT_EQ(Logged("third", "DEL")["prevResult"]["by"], "add");
  // Without a result (the ADD never finished): no prevResult at all.
  fs::remove(dir_ / "log" / "order");
  Plugin("second", "{}");
  EXPECT_TRUE(CniDel(kList, Inv(), "", paths_).ok());
  EXPECT_FALSE(Logged("first", "DEL").contains("prevResult"));
}

TEST_F(CniTest, AddStopsAtTheFirstFailure) {
  Plugin("first", "{}");
  Plugin("second", "", R"({"code":7,"msg":"bad env"})");
  Plugin("third", "{}");
  auto result = CniAdd(kList, Inv(), paths_);
  ASSERT_FALSE(result.ok());
  EXPECT_NE(std::string(result.status().message()).find("CNI ADD second: bad env"),
            std::string::npos)
      << result.status();
  EXPECT_EQ(ReadAll(dir_ / "log" / "order"), "first ADD\nsecond ADD\n");
  // A plugin that is not there, or a type that would be a path.
  EXPECT_EQ(CniAdd(R"({"name":"n","plugins":[{"type":"missing"}]})", Inv(), paths_).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(CniAdd(R"({"name":"n","plugins":[{"type":"../bin/first"}]})", Inv(), paths_)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(CniAdd("not json", Inv(), paths_).ok());
}

TEST_F(CniTest, ConfDirChoiceFollowsLibcni) {
  const fs::path conf = dir_ / "net.d";
  EXPECT_EQ(LoadCniConfList(conf.string()).status().code(), absl::StatusCode::kNotFound);
  fs::create_directories(conf);
  EXPECT_EQ(LoadCniConfList(conf.string()).status().code(), absl::StatusCode::kNotFound);
  std::ofstream(conf / "README") << "not a config";
  std::ofstream(conf / "05-broken.conflist") << "{";
  std::ofstream(conf / "20-single.conf") << R"({"cniVersion":"0.4.0","name":"one","type":"bridge"})";
  auto single = LoadCniConfList(conf.string());
  ASSERT_TRUE(single.ok()) << single.status();
  json list = json::parse(*single);
  EXPECT_EQ(list["name"], "one");
  EXPECT_EQ(list["cniVersion"], "0.4.0");
  ASSERT_EQ(list["plugins"].size(), 1u);
  EXPECT_EQ(list["plugins"][0]["type"], "bridge");
  std::ofstream(conf / "10-list.conflist") << R"({"cniVersion":"1.0.0","name":"two","plugins":[{"type":"a"},{"type":"b"}]})";
  auto first = LoadCniConfList(conf.string());
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(json::parse(*first)["name"], "two");
}

TEST(LateNetworkArgsTest, AsContainerdBuildsThem) {
  v1::RunPodSandboxRequest req;
  auto* c = req.mutable_config();
  c->mutable_metadata()->set_name("web-1");
  c->mutable_metadata()->set_namespace_("shop");
  c->mutable_metadata()->set_uid("u-1");
  EXPECT_EQ(LateNetwork::CniArgs(req, "sb1"),
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-1;"
            "K8S_POD_INFRA_CONTAINER_ID=sb1;K8S_POD_UID=u-1");

  auto* kept = c->add_port_mappings();
  kept->set_protocol(v1::UDP);
  kept->set_container_port(53);
  kept->set_host_port(5353);
  kept->set_host_ip("127.0.0.1");
  c->add_port_mappings()->set_container_port(8080);  // no host port: dropped
  (*c->mutable_annotations())["kubernetes.io/ingress-bandwidth"] = "10M";
  c->mutable_dns_config()->add_servers("10.96.0.10");
  c->mutable_dns_config()->add_searches("svc.cluster.local");
  auto caps = LateNetwork::CapabilityArgs(*c);
  ASSERT_TRUE(caps.ok()) << caps.status();
  json j = json::parse(*caps);
  EXPECT_EQ(j["portMappings"], json::parse(R"([{"hostPort":5353,"containerPort":53,"protocol":"udp","hostIP":"127.0.0.1"}])"));
  EXPECT_EQ(j["bandwidth"], json::parse(R"({"ingressRate":10000000,"ingressBurst":4294967295})"));
  EXPECT_EQ(j["dns"], json::parse(R"({"servers":["10.96.0.10"],"searches":["svc.cluster.local"],"options":[]})"));
  EXPECT_EQ(j["io.kubernetes.cri.pod-annotations"]["kubernetes.io/ingress-bandwidth"], "10M");

  (*c->mutable_annotations())["kubernetes.io/egress-bandwidth"] = "10";  // under 1k
  EXPECT_FALSE(LateNetwork::CapabilityArgs(*c).ok());
}

}  // namespace
}  // namespace warmpool
