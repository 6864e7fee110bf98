#include "daemon/templates.h"

#include <functional>

#include "daemon/pool_objects.h"

namespace warmpool {

namespace v1 = ::runtime::v1;

namespace {

v1::NamespaceMode ToCri(NamespaceMode mode) {
  switch (mode) {
    case NamespaceMode::kPod:
      return v1::POD;
    case NamespaceMode::kContainer:
      return v1::CONTAINER;
    case NamespaceMode::kNode:
      return v1::NODE;
  }
  return v1::POD;
}

// An unset profile leaves the field absent: an empty message would mean
// RuntimeDefault (enum value 0) to the runtime.
void SetProfile(const SecurityProfile& from, const std::function<v1::SecurityProfile*()>& field) {
  if (from.type == SecurityProfile::Type::kUnset) return;
  v1::SecurityProfile* to = field();
  switch (from.type) {
    case SecurityProfile::Type::kUnset:
      return;
    case SecurityProfile::Type::kRuntimeDefault:
      to->set_profile_type(v1::SecurityProfile::RuntimeDefault);
      return;
    case SecurityProfile::Type::kUnconfined:
      to->set_profile_type(v1::SecurityProfile::Unconfined);
      return;
    case SecurityProfile::Type::kLocalhost:
      to->set_profile_type(v1::SecurityProfile::Localhost);
      to->set_localhost_ref(from.localhost_ref);
      return;
  }
}

// The fields the sandbox and container security contexts share (same
// names, two message types), from the pool's sandbox template.
template <typename SecurityContext>
void FillSharedSecurity(const SandboxTemplate& t, SecurityContext* sc) {
  sc->mutable_namespace_options()->set_network(ToCri(t.namespaces.network));
  sc->mutable_namespace_options()->set_pid(ToCri(t.namespaces.pid));
  sc->mutable_namespace_options()->set_ipc(ToCri(t.namespaces.ipc));
  sc->set_privileged(t.privileged);
  if (t.run_as_user) sc->mutable_run_as_user()->set_value(*t.run_as_user);
  if (t.run_as_group) sc->mutable_run_as_group()->set_value(*t.run_as_group);
  sc->set_readonly_rootfs(t.readonly_rootfs);
  for (int64_t g : t.supplemental_groups) sc->add_supplemental_groups(g);
}

}  // namespace

// The sandbox an entry of `pool` gets: what a pod matching the template asks
// for, under warmpool's own identity and cgroup parent.
v1::RunPodSandboxRequest SandboxRequest(const PoolConfig& pool, const std::string& entry_id,
                                        const std::string& template_hash,
                                        const std::string& cgroup_parent,
                                        const std::string& log_dir) {
  v1::RunPodSandboxRequest req;
  req.set_runtime_handler(pool.sandbox.runtime_handler);
  v1::PodSandboxConfig* c = req.mutable_config();
  c->mutable_metadata()->set_name("wp-" + pool.name + "-" + entry_id);
  c->mutable_metadata()->set_uid("warmpool-" + entry_id);
  c->mutable_metadata()->set_namespace_("warmpool");
  c->mutable_metadata()->set_attempt(0);
  c->set_hostname("wp-" + entry_id);
  c->set_log_directory(log_dir);
  for (const auto& s : pool.sandbox.dns.servers) c->mutable_dns_config()->add_servers(s);
  for (const auto& s : pool.sandbox.dns.searches) c->mutable_dns_config()->add_searches(s);
  for (const auto& s : pool.sandbox.dns.options) c->mutable_dns_config()->add_options(s);
  auto& labels = *c->mutable_labels();
  labels[kLabelManaged] = "true";
  labels[kLabelPool] = pool.name;
  labels[kLabelEntry] = entry_id;
  labels[kLabelTemplate] = template_hash;
  v1::LinuxPodSandboxConfig* linux = c->mutable_linux();
  linux->set_cgroup_parent(cgroup_parent);
  for (const auto& [k, v] : pool.sandbox.sysctls) (*linux->mutable_sysctls())[k] = v;
  v1::LinuxSandboxSecurityContext* sc = linux->mutable_security_context();
  FillSharedSecurity(pool.sandbox, sc);
  // kubelet always asks RuntimeDefault seccomp for the sandbox (whatever the
  // pod says), so an unset template means that here.
  SecurityProfile seccomp = pool.sandbox.seccomp;
  if (seccomp.type == SecurityProfile::Type::kUnset) {
    seccomp.type = SecurityProfile::Type::kRuntimeDefault;
  }
  SetProfile(seccomp, [sc] { return sc->mutable_seccomp(); });
  SetProfile(pool.sandbox.apparmor, [sc] { return sc->mutable_apparmor(); });
  return req;
}

v1::CreateContainerRequest ContainerRequest(const PoolConfig& pool, const ContainerTemplate& t,
                                            const std::string& entry_id,
                                            const std::string& sandbox_id,
                                            const std::string& image_ref,
                                            const v1::PodSandboxConfig& sandbox_config) {
  v1::CreateContainerRequest req;
  req.set_pod_sandbox_id(sandbox_id);
  *req.mutable_sandbox_config() = sandbox_config;
  v1::ContainerConfig* c = req.mutable_config();
  c->mutable_metadata()->set_name(t.name);
  c->mutable_metadata()->set_attempt(0);
  c->mutable_image()->set_image(image_ref);
  for (const auto& a : t.command) c->add_command(a);
  for (const auto& a : t.args) c->add_args(a);
  c->set_working_dir(t.working_dir);
  for (const auto& [k, v] : t.env) {
    auto* kv = c->add_envs();
    kv->set_key(k);
    kv->set_value(v);
  }
  auto& labels = *c->mutable_labels();
  labels[kLabelManaged] = "true";
  labels[kLabelPool] = pool.name;
  labels[kLabelEntry] = entry_id;
  labels[kLabelContainer] = t.name;
  c->set_log_path(t.name + ".log");
  v1::LinuxContainerConfig* linux = c->mutable_linux();
  v1::LinuxContainerResources* r = linux->mutable_resources();
  r->set_cpu_shares(t.resources.cpu_shares);
  r->set_cpu_quota(t.resources.cpu_quota);
  r->set_cpu_period(t.resources.cpu_period);
  r->set_memory_limit_in_bytes(t.resources.memory_limit_bytes);
  v1::LinuxContainerSecurityContext* sc = linux->mutable_security_context();
  FillSharedSecurity(pool.sandbox, sc);
  // What kubelet sends for a container: its own seccomp profile, Unconfined
  // when the pod sets none (kubelet without --seccomp-default), and its
  // masked / read-only /proc and /sys paths unless privileged.
  SecurityProfile seccomp = t.seccomp;
  if (seccomp.type == SecurityProfile::Type::kUnset) seccomp.type = SecurityProfile::Type::kUnconfined;
  SetProfile(seccomp, [sc] { return sc->mutable_seccomp(); });
  SetProfile(t.apparmor, [sc] { return sc->mutable_apparmor(); });
  if (!pool.sandbox.privileged) {
    for (const auto& p : t.masked_paths.value_or(KubeletDefaultMaskedPaths())) {
      sc->add_masked_paths(p);
    }
    for (const auto& p : t.readonly_paths.value_or(KubeletDefaultReadonlyPaths())) {
      sc->add_readonly_paths(p);
    }
  }
  return req;
}

}  // namespace warmpool
