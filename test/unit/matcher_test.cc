#include "daemon/matcher.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

namespace warmpool {
namespace {

namespace v1 = ::runtime::v1;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr char kImageRef[] = "registry.example/web:1.0";
constexpr char kImageId[] =
    "sha256:4b0f2c1e9d8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c";

// The pool the requests below match: seccomp runtime/default because kubelet
// always asks RuntimeDefault for the sandbox (and the pods below set
// seccompProfile RuntimeDefault, so their containers ask it too).
PoolConfig WebPool() {
  PoolConfig pool;
  pool.name = "web";
  pool.size = 2;
  // Early: entries have their network already (late: see LateNetwork* below).
  pool.network = NetworkTiming::kEarly;
  pool.sandbox.seccomp.type = SecurityProfile::Type::kRuntimeDefault;
  pool.sandbox.dns.servers = {"10.0.0.53"};  // not what the pod asks: dns is fixable
  ContainerTemplate app;
  app.name = "app";
  app.image = kImageRef;
  app.command = {"/app"};
  app.args = {"--port=8080"};
  app.env = {{"MODE", "prod"}, {"PORT", "8080"}};
  app.working_dir = "/srv";
  app.seccomp.type = SecurityProfile::Type::kRuntimeDefault;  // the pod's seccompProfile
  pool.containers.push_back(app);
  return pool;
}

PoolConfig DefaultSandboxPool() {
  PoolConfig pool;
  pool.name = "any";
  pool.size = 4;
  pool.is_default = true;
  pool.sandbox.seccomp.type = SecurityProfile::Type::kRuntimeDefault;
  return pool;
}

void SetNamespaces(v1::NamespaceOption* ns) {
  ns->set_network(v1::POD);
  ns->set_pid(v1::CONTAINER);
  ns->set_ipc(v1::POD);
  ns->mutable_userns_options()->set_mode(v1::NODE);  // UserNamespacesSupport on
}

// RunPodSandbox as kubelet sends it for an ordinary pod of the "web" pool.
v1::RunPodSandboxRequest KubeletSandbox() {
  v1::RunPodSandboxRequest req;
  v1::PodSandboxConfig* c = req.mutable_config();
  c->mutable_metadata()->set_name("web-7d9f8-x2kq");
  c->mutable_metadata()->set_uid("3f2a0c8e-1111-4222-8333-944455556666");
  c->mutable_metadata()->set_namespace_("default");
  c->mutable_metadata()->set_attempt(0);
  c->set_hostname("web-7d9f8-x2kq");
  c->set_log_directory("/var/log/pods/default_web-7d9f8-x2kq_3f2a0c8e-1111-4222-8333-944455556666");
  c->mutable_dns_config()->add_servers("10.96.0.10");
  c->mutable_dns_config()->add_searches("default.svc.cluster.local");
  c->mutable_dns_config()->add_searches("svc.cluster.local");
  c->mutable_dns_config()->add_options("ndots:5");
  // kubelet lists every declared containerPort; no host port: no effect.
  v1::PortMapping* port = c->add_port_mappings();
  port->set_protocol(v1::TCP);
  port->set_container_port(8080);
  (*c->mutable_labels())["io.kubernetes.pod.name"] = "web-7d9f8-x2kq";
  (*c->mutable_labels())["io.kubernetes.pod.namespace"] = "default";
  (*c->mutable_labels())["io.kubernetes.pod.uid"] = "3f2a0c8e-1111-4222-8333-944455556666";
  (*c->mutable_labels())["app"] = "web";
  (*c->mutable_annotations())["kubernetes.io/config.source"] = "api";
  (*c->mutable_annotations())["kubernetes.io/config.seen"] = "2024-05-01T10:00:00Z";
  (*c->mutable_annotations())[kPoolAnnotation] = "web";
  v1::LinuxPodSandboxConfig* linux = c->mutable_linux();
  linux->set_cgroup_parent("/kubepods/burstable/pod3f2a0c8e-1111-4222-8333-944455556666");
  linux->mutable_resources()->set_cpu_period(100000);
  linux->mutable_resources()->set_cpu_quota(50000);
  linux->mutable_resources()->set_cpu_shares(512);
  linux->mutable_resources()->set_memory_limit_in_bytes(256 << 20);
  v1::LinuxSandboxSecurityContext* sc = linux->mutable_security_context();
  SetNamespaces(sc->mutable_namespace_options());
  sc->set_privileged(false);
  sc->mutable_seccomp()->set_profile_type(v1::SecurityProfile::RuntimeDefault);
  return req;
}

// CreateContainer's config as kubelet sends it for container "app".
v1::ContainerConfig KubeletContainer() {
  v1::ContainerConfig c;
  c.mutable_metadata()->set_name("app");
  c.mutable_metadata()->set_attempt(0);
  c.mutable_image()->set_image(kImageId);
  c.mutable_image()->set_user_specified_image(kImageRef);
  c.add_command("/app");
  c.add_args("--port=8080");
  c.set_working_dir("/srv");
  auto env = [&c](const std::string& k, const std::string& v) {
    v1::KeyValue* kv = c.add_envs();
    kv->set_key(k);
    kv->set_value(v);
  };
  env("PORT", "8080");
  env("KUBERNETES_SERVICE_HOST", "10.96.0.1");
  env("KUBERNETES_SERVICE_PORT", "443");
  env("KUBERNETES_SERVICE_PORT_HTTPS", "443");
  env("KUBERNETES_PORT", "tcp://10.96.0.1:443");
  env("KUBERNETES_PORT_443_TCP", "tcp://10.96.0.1:443");
  env("KUBERNETES_PORT_443_TCP_PROTO", "tcp");
  env("KUBERNETES_PORT_443_TCP_PORT", "443");
  env("KUBERNETES_PORT_443_TCP_ADDR", "10.96.0.1");
  env("MODE", "prod");
  v1::Mount* m = c.add_mounts();
  m->set_container_path("/etc/hosts");
  m->set_host_path("/var/lib/kubelet/pods/3f2a/etc-hosts");
  m = c.add_mounts();
  m->set_container_path("/var/run/secrets/kubernetes.io/serviceaccount");
  m->set_host_path("/var/lib/kubelet/pods/3f2a/volumes/kubernetes.io~projected/kube-api-access");
  m->set_readonly(true);
  (*c.mutable_labels())["io.kubernetes.container.name"] = "app";
  (*c.mutable_labels())["io.kubernetes.pod.name"] = "web-7d9f8-x2kq";
  (*c.mutable_annotations())["io.kubernetes.container.hash"] = "9a8b7c6d";
  c.set_log_path("app/0.log");
  v1::LinuxContainerConfig* linux = c.mutable_linux();
  linux->mutable_resources()->set_cpu_shares(512);
  linux->mutable_resources()->set_memory_limit_in_bytes(128 << 20);
  linux->mutable_resources()->set_oom_score_adj(999);
  v1::LinuxContainerSecurityContext* sc = linux->mutable_security_context();
  SetNamespaces(sc->mutable_namespace_options());
  sc->mutable_seccomp()->set_profile_type(v1::SecurityProfile::RuntimeDefault);
  for (const auto& p : KubeletDefaultMaskedPaths()) sc->add_masked_paths(p);
  for (const auto& p : KubeletDefaultReadonlyPaths()) sc->add_readonly_paths(p);
  return c;
}

MatchResult Sandbox(const v1::RunPodSandboxRequest& req) {
  static const std::vector<PoolConfig> pools = {WebPool(), DefaultSandboxPool()};
  return MatchSandbox(req, pools);
}

MatchResult Container(const v1::ContainerConfig& c) {
  static const PoolConfig pool = WebPool();
  return MatchContainer(c, pool, pool.containers[0], kImageId, IsServiceLinkEnv);
}

// An unknown field (number 99, varint 1) appended to `m`'s unknown field set.
void AddUnknownField(google::protobuf::Message* m) {
  m->GetReflection()->MutableUnknownFields(m)->AddVarint(99, 1);
}

// ---------------------------------------------------------------- sandbox

TEST(MatchSandbox, KubeletRequestForMatchingPoolHits) {
  MatchResult r = Sandbox(KubeletSandbox());
  EXPECT_TRUE(r.hit) << r.reason;
  ASSERT_NE(r.pool, nullptr);
  EXPECT_EQ(r.pool->name, "web");
  EXPECT_EQ(r.reason, "");
  EXPECT_EQ(r.reason_code, "");
}

TEST(MatchSandbox, DefaultPoolServesPodNamingNoPool) {
  v1::RunPodSandboxRequest req = KubeletSandbox();
  req.mutable_config()->mutable_annotations()->erase(kPoolAnnotation);
  MatchResult r = Sandbox(req);
  EXPECT_TRUE(r.hit) << r.reason;
  ASSERT_NE(r.pool, nullptr);
  EXPECT_EQ(r.pool->name, "any");
}

TEST(MatchSandbox, NoDefaultPoolAndNoneNamedIsNoPool) {
  v1::RunPodSandboxRequest req = KubeletSandbox();
  req.mutable_config()->mutable_annotations()->erase(kPoolAnnotation);
  MatchResult r = MatchSandbox(req, {WebPool()});
  EXPECT_FALSE(r.hit);
  EXPECT_EQ(r.pool, nullptr);
  EXPECT_EQ(r.reason_code, "no_pool");
  EXPECT_EQ(r.reason, "no pool: the pod names none and no pool is default");
  EXPECT_EQ(MatchSandbox(req, {}).reason_code, "no_pool");
}

TEST(MatchSandbox, UnknownPoolMisses) {
  v1::RunPodSandboxRequest req = KubeletSandbox();
  (*req.mutable_config()->mutable_annotations())[kPoolAnnotation] = "nope";
  MatchResult r = Sandbox(req);
  EXPECT_FALSE(r.hit);
  EXPECT_EQ(r.pool, nullptr);  // not the default pool either: the pod asked for "nope"
  EXPECT_EQ(r.reason_code, "unknown_pool");
  EXPECT_THAT(r.reason, HasSubstr("\"nope\""));
}

TEST(MatchSandbox, NamespaceNotServedMisses) {
  PoolConfig pool = WebPool();
  pool.namespaces = {"shop", "staging"};
  v1::RunPodSandboxRequest req = KubeletSandbox();
  MatchResult r = MatchSandbox(req, {pool});
  EXPECT_FALSE(r.hit);
  ASSERT_NE(r.pool, nullptr);
  EXPECT_EQ(r.reason_code, "namespace");
  EXPECT_EQ(r.reason, "pool \"web\" does not serve namespace \"default\"");

  req.mutable_config()->mutable_metadata()->set_namespace_("staging");
  EXPECT_TRUE(MatchSandbox(req, {pool}).hit);
}

struct SandboxCase {
  const char* name;
  std::function<void(v1::RunPodSandboxRequest*)> change;
  const char* code;
  const char* reason;  // the reason starts with this
};

v1::LinuxSandboxSecurityContext* Sc(v1::RunPodSandboxRequest* r) {
  return r->mutable_config()->mutable_linux()->mutable_security_context();
}

TEST(MatchSandbox, EachNonFixableFieldChangedMisses) {
  const std::vector<SandboxCase> cases = {
      {"runtime handler", [](auto* r) { r->set_runtime_handler("kata"); }, "runtime_handler",
       "runtime_handler: pod asks \"kata\", pool has \"\""},
      {"privileged", [](auto* r) { Sc(r)->set_privileged(true); }, "security_context",
       "config.linux.security_context.privileged: pod asks true, pool has false"},
      {"hostNetwork", [](auto* r) { Sc(r)->mutable_namespace_options()->set_network(v1::NODE); },
       "namespace_options",
       "config.linux.security_context.namespace_options.network: pod asks NODE, pool has POD"},
      {"shareProcessNamespace",
       [](auto* r) { Sc(r)->mutable_namespace_options()->set_pid(v1::POD); }, "namespace_options",
       "config.linux.security_context.namespace_options.pid: pod asks POD, pool has CONTAINER"},
      {"hostIPC", [](auto* r) { Sc(r)->mutable_namespace_options()->set_ipc(v1::NODE); },
       "namespace_options",
       "config.linux.security_context.namespace_options.ipc: pod asks NODE, pool has POD"},
      {"hostUsers false",
       [](auto* r) {
         v1::UserNamespace* u = Sc(r)->mutable_namespace_options()->mutable_userns_options();
         u->set_mode(v1::POD);
         v1::IDMapping* m = u->add_uids();
         m->set_host_id(65536);
         m->set_length(65536);
       },
       "namespace_options", "config.linux.security_context.namespace_options.userns_options: "},
      {"run_as_user", [](auto* r) { Sc(r)->mutable_run_as_user()->set_value(1000); },
       "security_context",
       "config.linux.security_context.run_as_user: pod asks {value: 1000}, pool has absent"},
      {"run_as_group", [](auto* r) { Sc(r)->mutable_run_as_group()->set_value(3000); },
       "security_context",
       "config.linux.security_context.run_as_group: pod asks {value: 3000}, pool has absent"},
      {"readonly_rootfs", [](auto* r) { Sc(r)->set_readonly_rootfs(true); }, "security_context",
       "config.linux.security_context.readonly_rootfs: pod asks true, pool has false"},
      {"supplemental_groups (fsGroup)", [](auto* r) { Sc(r)->add_supplemental_groups(2000); },
       "security_context",
       "config.linux.security_context.supplemental_groups[0]: pod asks 2000, pool has none"},
      {"supplemental_groups_policy",
       [](auto* r) { Sc(r)->set_supplemental_groups_policy(v1::Strict); }, "security_context",
       "config.linux.security_context.supplemental_groups_policy: pod asks Strict, pool has Merge"},
      {"seccomp type",
       [](auto* r) { Sc(r)->mutable_seccomp()->set_profile_type(v1::SecurityProfile::Unconfined); },
       "security_context",
       "config.linux.security_context.seccomp.profile_type: pod asks Unconfined, pool has "
       "RuntimeDefault; set [pool.sandbox] seccomp = \"unconfined\" to serve such pods"},
      {"seccomp localhost ref",
       [](auto* r) {
         Sc(r)->mutable_seccomp()->set_profile_type(v1::SecurityProfile::Localhost);
         Sc(r)->mutable_seccomp()->set_localhost_ref("profiles/audit.json");
       },
       "security_context",
       "config.linux.security_context.seccomp.profile_type: pod asks Localhost, pool has "
       "RuntimeDefault; set [pool.sandbox] seccomp = \"localhost/profiles/audit.json\""},
      {"seccomp absent", [](auto* r) { Sc(r)->clear_seccomp(); }, "security_context",
       "config.linux.security_context.seccomp: pod asks absent, pool has {profile_type: "
       "RuntimeDefault}; set [pool.sandbox] seccomp = \"\" to serve such pods"},
      {"seccomp_profile_path only",
       [](auto* r) {
         Sc(r)->clear_seccomp();
         Sc(r)->set_seccomp_profile_path("runtime/default");
       },
       "security_context", "config.linux.security_context.seccomp: pod asks absent"},
      {"apparmor",
       [](auto* r) {
         Sc(r)->mutable_apparmor()->set_profile_type(v1::SecurityProfile::RuntimeDefault);
       },
       "security_context",
       "config.linux.security_context.apparmor: pod asks {profile_type: RuntimeDefault}, pool has "
       "absent; set [pool.sandbox] "
       "apparmor = \"runtime/default\" to serve such pods"},
      {"selinux", [](auto* r) { Sc(r)->mutable_selinux_options()->set_level("s0:c123,c456"); },
       "security_context",
       "config.linux.security_context.selinux_options: pod asks {level: \"s0:c123,c456\"}, pool "
       "has absent"},
      {"sysctls",
       [](auto* r) {
         (*r->mutable_config()->mutable_linux()->mutable_sysctls())["net.core.somaxconn"] = "1024";
       },
       "sysctls", "config.linux.sysctls[\"net.core.somaxconn\"]: pod asks \"1024\", pool has none"},
      {"host port",
       [](auto* r) {
         v1::PortMapping* p = r->mutable_config()->add_port_mappings();
         p->set_container_port(9090);
         p->set_host_port(19090);
       },
       "port_mappings",
       "config.port_mappings[0]: pod asks {protocol: TCP container_port: 9090 host_port: 19090}, "
       "pool has none "
       "(pool entries have no host ports; network = \"late\" serves them)"},
      {"bandwidth annotation on an early pool",
       [](auto* r) {
         (*r->mutable_config()->mutable_annotations())["kubernetes.io/ingress-bandwidth"] = "10M";
       },
       "bandwidth",
       "config.annotations[kubernetes.io/ingress-bandwidth]: pod asks \"10M\", pool has network = "
       "\"early\""},
      {"windows config",
       [](auto* r) { r->mutable_config()->mutable_windows()->mutable_security_context(); },
       "windows", "config.windows: pod asks {security_context {}}, pool has absent"},
      {"no linux config", [](auto* r) { r->mutable_config()->clear_linux(); }, "template",
       "config.linux: pod asks absent, pool has {"},
      {"unknown field in security context", [](auto* r) { AddUnknownField(Sc(r)); },
       "unknown_field", "unknown field 99 in config.linux.security_context (a newer kubelet?)"},
      {"unknown field in a fixable part",
       [](auto* r) { AddUnknownField(r->mutable_config()->mutable_metadata()); }, "unknown_field",
       "unknown field 99 in config.metadata"},
      {"unknown field at the top", [](auto* r) { AddUnknownField(r); }, "unknown_field",
       "unknown field 99 in the request"},
      {"undeclared enum value",
       [](auto* r) {
         Sc(r)->mutable_namespace_options()->set_network(static_cast<v1::NamespaceMode>(7));
       },
       "unknown_field",
       "unknown value 7 of enum config.linux.security_context.namespace_options.network"},
  };
  for (const SandboxCase& c : cases) {
    SCOPED_TRACE(c.name);
    v1::RunPodSandboxRequest req = KubeletSandbox();
    c.change(&req);
    MatchResult r = Sandbox(req);
    EXPECT_FALSE(r.hit);
    ASSERT_NE(r.pool, nullptr);
    EXPECT_EQ(r.pool->name, "web");
    EXPECT_EQ(r.reason_code, c.code);
    EXPECT_THAT(r.reason, StartsWith(c.reason));
  }
}

TEST(MatchSandbox, EachFixableFieldChangedStillHits) {
  const std::vector<std::pair<const char*, std::function<void(v1::RunPodSandboxRequest*)>>> cases =
      {
          {"metadata",
           [](auto* r) {
             auto* m = r->mutable_config()->mutable_metadata();
             m->set_name("other");
             m->set_uid("u-2");
             m->set_attempt(3);
           }},
          {"no metadata", [](auto* r) { r->mutable_config()->clear_metadata(); }},
          {"hostname", [](auto* r) { r->mutable_config()->set_hostname("elsewhere"); }},
          {"log_directory", [](auto* r) { r->mutable_config()->set_log_directory("/tmp/x"); }},
          {"dns_config",
           [](auto* r) { r->mutable_config()->mutable_dns_config()->add_servers("1.1.1.1"); }},
          {"no dns_config", [](auto* r) { r->mutable_config()->clear_dns_config(); }},
          {"labels", [](auto* r) { (*r->mutable_config()->mutable_labels())["tier"] = "front"; }},
          {"annotations",
           [](auto* r) { (*r->mutable_config()->mutable_annotations())["a/b"] = "c"; }},
          {"cgroup_parent",
           [](auto* r) {
             r->mutable_config()->mutable_linux()->set_cgroup_parent("kubepods-pod1.slice");
           }},
          {"resources",
           [](auto* r) {
             r->mutable_config()->mutable_linux()->mutable_resources()->set_cpu_quota(200000);
           }},
          {"overhead",
           [](auto* r) {
             r->mutable_config()->mutable_linux()->mutable_overhead()->set_memory_limit_in_bytes(
                 1 << 20);
           }},
          {"port mappings without host port",
           [](auto* r) {
             v1::PortMapping* p = r->mutable_config()->add_port_mappings();
             p->set_protocol(v1::UDP);
             p->set_container_port(53);
           }},
          {"no userns_options (gate off)",
           [](auto* r) { Sc(r)->mutable_namespace_options()->clear_userns_options(); }},
          {"seccomp_profile_path beside seccomp",
           [](auto* r) { Sc(r)->set_seccomp_profile_path("unconfined"); }},
      };
  for (const auto& [name, change] : cases) {
    SCOPED_TRACE(name);
    v1::RunPodSandboxRequest req = KubeletSandbox();
    change(&req);
    MatchResult r = Sandbox(req);
    EXPECT_TRUE(r.hit) << r.reason;
    ASSERT_NE(r.pool, nullptr);
    EXPECT_EQ(r.pool->name, "web");
  }
}

TEST(MatchSandbox, LateNetworkServesHostPortsAndBandwidth) {
  PoolConfig pool = WebPool();
  pool.network = NetworkTiming::kLate;
  v1::RunPodSandboxRequest req = KubeletSandbox();
  v1::PortMapping* p = req.mutable_config()->add_port_mappings();
  p->set_container_port(9090);
  p->set_host_port(19090);
  p->set_host_ip("127.0.0.1");
  (*req.mutable_config()->mutable_annotations())["kubernetes.io/egress-bandwidth"] = "1M";
  MatchResult r = MatchSandbox(req, {pool});
  EXPECT_TRUE(r.hit) << r.reason;
  // The rest is still compared.
  Sc(&req)->set_privileged(true);
  r = MatchSandbox(req, {pool});
  EXPECT_FALSE(r.hit);
  EXPECT_EQ(r.reason_code, "security_context");
  // A late pool in the node's network namespace has no CNI to run.
  pool.sandbox.namespaces.network = NamespaceMode::kNode;
  const v1::PortMapping host_port = *p;
  req = KubeletSandbox();
  Sc(&req)->mutable_namespace_options()->set_network(v1::NODE);
  *req.mutable_config()->add_port_mappings() = host_port;
  r = MatchSandbox(req, {pool});
  EXPECT_FALSE(r.hit);
  EXPECT_EQ(r.reason_code, "port_mappings");
}

TEST(MatchSandbox, PoolTemplateFieldsAreCompared) {
  PoolConfig pool = WebPool();
  pool.sandbox.run_as_user = 1000;
  pool.sandbox.run_as_group = 3000;
  pool.sandbox.supplemental_groups = {2000, 10};
  pool.sandbox.sysctls = {{"net.ipv4.ip_unprivileged_port_start", "0"}};
  pool.sandbox.readonly_rootfs = true;
  pool.sandbox.runtime_handler = "runc-fast";
  v1::RunPodSandboxRequest req = KubeletSandbox();
  req.set_runtime_handler("runc-fast");
  Sc(&req)->mutable_run_as_user()->set_value(1000);
  Sc(&req)->mutable_run_as_group()->set_value(3000);
  Sc(&req)->add_supplemental_groups(10);  // a set: order does not matter
  Sc(&req)->add_supplemental_groups(2000);
  Sc(&req)->add_supplemental_groups(10);
  Sc(&req)->set_readonly_rootfs(true);
  (*req.mutable_config()
        ->mutable_linux()
        ->mutable_sysctls())["net.ipv4.ip_unprivileged_port_start"] = "0";
  MatchResult r = MatchSandbox(req, {pool});
  EXPECT_TRUE(r.hit) << r.reason;

  Sc(&req)->mutable_run_as_user()->set_value(1001);
  r = MatchSandbox(req, {pool});
  EXPECT_FALSE(r.hit);
  EXPECT_EQ(r.reason,
            "config.linux.security_context.run_as_user.value: pod asks 1001, pool has 1000");
}

TEST(MatchSandbox, PoolWithoutSeccompServesKubeletSandboxes) {
  // An unset sandbox seccomp means what kubelet always asks for sandboxes:
  // RuntimeDefault (templates.cc).
  PoolConfig pool = WebPool();
  pool.sandbox.seccomp = {};
  MatchResult r = MatchSandbox(KubeletSandbox(), {pool});
  EXPECT_TRUE(r.hit) << r.reason;
}

TEST(MatchSandbox, UnconfinedPoolDoesNotServeKubeletSandboxes) {
  PoolConfig pool = WebPool();
  pool.sandbox.seccomp.type = SecurityProfile::Type::kUnconfined;
  MatchResult r = MatchSandbox(KubeletSandbox(), {pool});
  EXPECT_FALSE(r.hit);
  EXPECT_EQ(r.reason_code, "security_context");
  EXPECT_NE(r.reason.find("config.linux.security_context.seccomp"), std::string::npos) << r.reason;
}

TEST(MatchSandbox, LongValuesAreShortened) {
  v1::RunPodSandboxRequest req = KubeletSandbox();
  req.set_runtime_handler(std::string(500, 'h'));
  MatchResult r = Sandbox(req);
  EXPECT_FALSE(r.hit);
  EXPECT_LT(r.reason.size(), 250u);
  EXPECT_THAT(r.reason, HasSubstr("..."));
}

// -------------------------------------------------------------- container

TEST(MatchContainer, KubeletRequestHitsByResolvedIdAndByRef) {
  MatchResult r = Container(KubeletContainer());
  EXPECT_TRUE(r.hit) << r.reason;
  ASSERT_NE(r.pool, nullptr);
  EXPECT_EQ(r.pool->name, "web");

  v1::ContainerConfig c = KubeletContainer();
  c.mutable_image()->set_image(kImageRef);
  r = Container(c);
  EXPECT_TRUE(r.hit) << r.reason;
}

TEST(MatchContainer, OtherImageMisses) {
  v1::ContainerConfig c = KubeletContainer();
  c.mutable_image()->set_image(
      "sha256:0000000000000000000000000000000000000000000000000000000000000000");
  MatchResult r = Container(c);
  EXPECT_FALSE(r.hit);
  EXPECT_EQ(r.reason_code, "image");
  EXPECT_THAT(r.reason, StartsWith("config.image.image: pod asks \"sha256:0000"));
  EXPECT_THAT(r.reason, HasSubstr("pool has \"registry.example/web:1.0\" (\"sha256:4b0f"));

  c.mutable_image()->set_image("registry.example/web:1.1");
  EXPECT_EQ(Container(c).reason_code, "image");

  // Without a resolved id only the ref is accepted.
  static const PoolConfig pool = WebPool();
  c = KubeletContainer();
  EXPECT_EQ(MatchContainer(c, pool, pool.containers[0], "", IsServiceLinkEnv).reason_code, "image");
}

TEST(MatchContainer, EnvOrderIrrelevantServiceLinksIgnored) {
  v1::ContainerConfig c = KubeletContainer();
  std::reverse(c.mutable_envs()->begin(), c.mutable_envs()->end());
  EXPECT_TRUE(Container(c).hit);

  v1::KeyValue* kv = c.add_envs();
  kv->set_key("PAYMENTS_API_SERVICE_HOST");
  kv->set_value("10.96.3.4");
  EXPECT_TRUE(Container(c).hit);

  // Without the ignore predicate, service links are extra variables.
  static const PoolConfig pool = WebPool();
  MatchResult r = MatchContainer(KubeletContainer(), pool, pool.containers[0], kImageId, nullptr);
  EXPECT_FALSE(r.hit);
  EXPECT_EQ(r.reason_code, "env");
  EXPECT_EQ(r.reason,
            "config.envs[\"KUBERNETES_PORT\"]: pod asks \"tcp://10.96.0.1:443\", pool has none");
}

TEST(MatchContainer, EnvDifferencesMiss) {
  v1::ContainerConfig c = KubeletContainer();
  v1::KeyValue* kv = c.add_envs();
  kv->set_key("DEBUG");
  kv->set_value("1");
  MatchResult r = Container(c);
  EXPECT_FALSE(r.hit);
  EXPECT_EQ(r.reason_code, "env");
  EXPECT_EQ(r.reason, "config.envs[\"DEBUG\"]: pod asks \"1\", pool has none");

  c = KubeletContainer();
  for (auto& e : *c.mutable_envs()) {
    if (e.key() == "MODE") e.set_value("dev");
  }
  r = Container(c);
  EXPECT_EQ(r.reason, "config.envs[\"MODE\"]: pod asks \"dev\", pool has \"prod\"");

  c = KubeletContainer();
  c.mutable_envs()->erase(c.mutable_envs()->begin());  // PORT
  r = Container(c);
  EXPECT_EQ(r.reason, "config.envs[\"PORT\"]: pod asks none, pool has \"8080\"");

  // A key the template sets is compared even when it looks like a service link.
  PoolConfig pool = WebPool();
  pool.containers[0].env["APP_PORT"] = "9000";
  c = KubeletContainer();
  kv = c.add_envs();
  kv->set_key("APP_PORT");
  kv->set_value("9001");
  r = MatchContainer(c, pool, pool.containers[0], kImageId, IsServiceLinkEnv);
  EXPECT_EQ(r.reason, "config.envs[\"APP_PORT\"]: pod asks \"9001\", pool has \"9000\"");
  kv->set_value("9000");
  EXPECT_TRUE(MatchContainer(c, pool, pool.containers[0], kImageId, IsServiceLinkEnv).hit);
}

v1::LinuxContainerSecurityContext* Csc(v1::ContainerConfig* c) {
  return c->mutable_linux()->mutable_security_context();
}

TEST(MatchContainer, EachNonFixableFieldChangedMisses) {
  struct Case {
    const char* name;
    std::function<void(v1::ContainerConfig*)> change;
    const char* code;
    const char* reason;
  };
  const std::vector<Case> cases = {
      {"tty", [](auto* c) { c->set_tty(true); }, "tty",
       "config.tty: pod asks true, pool has false"},
      {"stdin", [](auto* c) { c->set_stdin(true); }, "stdin",
       "config.stdin: pod asks true, pool has false"},
      {"stdin_once", [](auto* c) { c->set_stdin_once(true); }, "stdin",
       "config.stdin_once: pod asks true, pool has false"},
      {"command", [](auto* c) { c->set_command(0, "/bin/sh"); }, "command",
       "config.command[0]: pod asks \"/bin/sh\", pool has \"/app\""},
      {"args", [](auto* c) { c->add_args("--verbose"); }, "args",
       "config.args[1]: pod asks \"--verbose\", pool has none"},
      {"working_dir", [](auto* c) { c->set_working_dir("/"); }, "working_dir",
       "config.working_dir: pod asks \"/\", pool has \"/srv\""},
      {"device",
       [](auto* c) {
         v1::Device* d = c->add_devices();
         d->set_host_path("/dev/fuse");
         d->set_container_path("/dev/fuse");
       },
       "devices", "config.devices[0]: pod asks {"},
      {"CDI device", [](auto* c) { c->add_cdi_devices()->set_name("nvidia.com/gpu=0"); }, "devices",
       "config.CDI_devices[0]: pod asks {name: \"nvidia.com/gpu=0\"}, pool has none"},
      {"stop_signal", [](auto* c) { c->set_stop_signal(v1::SIGNAL_SIGHUP); }, "stop_signal",
       "config.stop_signal: pod asks SIGNAL_SIGHUP, pool has SIGNAL_RUNTIME_DEFAULT"},
      {"windows", [](auto* c) { c->mutable_windows(); }, "windows",
       "config.windows: pod asks {}, pool has absent"},
      {"privileged", [](auto* c) { Csc(c)->set_privileged(true); }, "security_context",
       "config.linux.security_context.privileged: pod asks true, pool has false"},
      {"capabilities",
       [](auto* c) { Csc(c)->mutable_capabilities()->add_add_capabilities("NET_ADMIN"); },
       "security_context", "config.linux.security_context.capabilities: pod asks {"},
      {"pid namespace", [](auto* c) { Csc(c)->mutable_namespace_options()->set_pid(v1::POD); },
       "namespace_options",
       "config.linux.security_context.namespace_options.pid: pod asks POD, pool has CONTAINER"},
      {"run_as_user", [](auto* c) { Csc(c)->mutable_run_as_user()->set_value(0); },
       "security_context",
       "config.linux.security_context.run_as_user: pod asks {value: 0}, pool has absent"},
      {"no_new_privs", [](auto* c) { Csc(c)->set_no_new_privs(true); }, "security_context",
       "config.linux.security_context.no_new_privs: pod asks true, pool has false"},
      {"seccomp unconfined (kubelet's default for containers)",
       [](auto* c) {
         Csc(c)->mutable_seccomp()->set_profile_type(v1::SecurityProfile::Unconfined);
       },
       "security_context",
       "config.linux.security_context.seccomp.profile_type: pod asks Unconfined, pool has "
       "RuntimeDefault; set [pool.sandbox] seccomp = \"unconfined\" to serve such pods"},
      {"apparmor (with the deprecated string)",
       [](auto* c) {
         Csc(c)->mutable_apparmor()->set_profile_type(v1::SecurityProfile::Localhost);
         Csc(c)->mutable_apparmor()->set_localhost_ref("k8s-web");
         Csc(c)->set_apparmor_profile("localhost/k8s-web");
       },
       "security_context",
       "config.linux.security_context.apparmor: pod asks {profile_type: Localhost localhost_ref: "
       "\"k8s-web\"}, pool has absent; set [pool.sandbox] apparmor = \"localhost/k8s-web\""},
      {"deprecated apparmor string alone",
       [](auto* c) { Csc(c)->set_apparmor_profile("unconfined"); }, "security_context",
       "config.linux.security_context.apparmor_profile: pod asks \"unconfined\", pool has \"\""},
      {"image annotations",
       [](auto* c) { (*c->mutable_image()->mutable_annotations())["os.version"] = "10"; }, "image",
       "config.image.annotations[\"os.version\"]: pod asks \"10\", pool has none"},
      {"image runtime handler", [](auto* c) { c->mutable_image()->set_runtime_handler("kata"); },
       "image", "config.image.runtime_handler: pod asks \"kata\", pool has \"\""},
      {"unknown field in security context", [](auto* c) { AddUnknownField(Csc(c)); },
       "unknown_field", "unknown field 99 in config.linux.security_context (a newer kubelet?)"},
      {"unknown field in a mount", [](auto* c) { AddUnknownField(c->mutable_mounts(0)); },
       "unknown_field", "unknown field 99 in config.mounts[0]"},
      {"undeclared mount propagation",
       [](auto* c) { c->mutable_mounts(0)->set_propagation(static_cast<v1::MountPropagation>(9)); },
       "unknown_field", "unknown value 9 of enum config.mounts[0].propagation"},
  };
  for (const Case& k : cases) {
    SCOPED_TRACE(k.name);
    v1::ContainerConfig c = KubeletContainer();
    k.change(&c);
    MatchResult r = Container(c);
    EXPECT_FALSE(r.hit);
    ASSERT_NE(r.pool, nullptr);
    EXPECT_EQ(r.reason_code, k.code);
    EXPECT_THAT(r.reason, StartsWith(k.reason));
  }
}

TEST(MatchContainer, EachFixableFieldChangedStillHits) {
  const std::vector<std::pair<const char*, std::function<void(v1::ContainerConfig*)>>> cases = {
      {"metadata", [](auto* c) { c->mutable_metadata()->set_attempt(2); }},
      {"labels", [](auto* c) { (*c->mutable_labels())["x"] = "y"; }},
      {"annotations", [](auto* c) { c->clear_annotations(); }},
      {"mounts",
       [](auto* c) {
         v1::Mount* m = c->add_mounts();
         m->set_container_path("/dev/termination-log");
         m->set_host_path("/var/lib/kubelet/pods/3f2a/containers/app/1234");
       }},
      {"no mounts", [](auto* c) { c->clear_mounts(); }},
      {"log_path", [](auto* c) { c->set_log_path("app/7.log"); }},
      {"resources", [](auto* c) { c->mutable_linux()->mutable_resources()->set_cpu_quota(1); }},
      {"user_specified_image",
       [](auto* c) { c->mutable_image()->set_user_specified_image("web:1.0"); }},
      {"deprecated seccomp path beside the profile",
       [](auto* c) { Csc(c)->set_seccomp_profile_path("runtime/default"); }},
      {"userns absent",
       [](auto* c) { Csc(c)->mutable_namespace_options()->clear_userns_options(); }},
      {"duplicate env key, last wins",
       [](auto* c) {
         v1::KeyValue* kv = c->mutable_envs()->Add();
         *kv = c->envs(0);  // PORT=8080 again
       }},
  };
  for (const auto& [name, change] : cases) {
    SCOPED_TRACE(name);
    v1::ContainerConfig c = KubeletContainer();
    change(&c);
    MatchResult r = Container(c);
    EXPECT_TRUE(r.hit) << r.reason;
  }
}

TEST(MatchContainer, StructuredAppArmorWinsOverDeprecatedString) {
  PoolConfig pool = WebPool();
  pool.containers[0].apparmor.type = SecurityProfile::Type::kRuntimeDefault;
  v1::ContainerConfig c = KubeletContainer();
  Csc(&c)->mutable_apparmor()->set_profile_type(v1::SecurityProfile::RuntimeDefault);
  Csc(&c)->set_apparmor_profile("runtime/default");  // what kubelet sends beside it
  MatchResult r = MatchContainer(c, pool, pool.containers[0], kImageId, IsServiceLinkEnv);
  EXPECT_TRUE(r.hit) << r.reason;
}

// Templates send kubelet's default masked/readonly paths (KubeletContainer
// carries them and hits); a template configured with other paths -- an
// older kubelet's list -- misses a kubelet that sends the current ones.
TEST(MatchContainer, MaskedPathsOtherThanKubeletsMiss) {
  PoolConfig pool = WebPool();
  pool.containers[0].masked_paths = std::vector<std::string>{"/proc/kcore"};
  v1::ContainerConfig c = KubeletContainer();
  MatchResult r = MatchContainer(c, pool, pool.containers[0], kImageId, IsServiceLinkEnv);
  EXPECT_FALSE(r.hit);
  EXPECT_EQ(r.reason_code, "security_context");
  EXPECT_THAT(r.reason, StartsWith("config.linux.security_context.masked_paths[0]"));
}

TEST(IsServiceLinkEnv, KubeletServiceVariables) {
  for (const char* k :
       {"KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT", "KUBERNETES_SERVICE_PORT_HTTPS",
        "KUBERNETES_PORT", "KUBERNETES_PORT_443_TCP", "KUBERNETES_PORT_443_TCP_PROTO",
        "KUBERNETES_PORT_443_TCP_PORT", "KUBERNETES_PORT_443_TCP_ADDR", "MY_DB_SERVICE_HOST",
        "MY_DB_PORT_5432_TCP", "DNS_PORT_53_UDP_ADDR", "SIP_PORT_5060_SCTP",
        "REDIS_SERVICE_PORT_CLIENT_API", "A_PORT"}) {
    EXPECT_TRUE(IsServiceLinkEnv(k)) << k;
  }
  for (const char* k :
       {"PORT", "_PORT", "MODE", "HOME", "PATH", "SERVICE_HOST", "my_svc_SERVICE_HOST", "X_PORT_80",
        "X_PORT_80_TCP_HOST", "X_PORT_TCP", "X_SERVICE_PORT_", "X_PORT_80_HTTP", "1X_PORT"}) {
    EXPECT_FALSE(IsServiceLinkEnv(k)) << k;
  }
}

}  // namespace
}  // namespace warmpool
