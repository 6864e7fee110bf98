#pragma once

// The matcher: which pool may serve a pod, and whether a frozen entry of it
// (or a pre-started container of that entry) can be handed over.
//
// Fail-closed. A request is served only when every field either equals what
// the pool's entries were created with -- the very requests templates.h
// builds, SandboxRequest() and ContainerRequest(), so "what the pool made"
// and "what a pod must ask for" cannot drift apart -- or is on the explicit
// list of fields warmpool fixes up at hand-off. A miss is never an error: the
// caller forwards the request unchanged (cold path) and logs/counts `reason`
// and `reason_code`.
//
// RunPodSandbox (MatchSandbox):
//   fixable:    config.metadata, config.hostname, config.log_directory,
//               config.dns_config, config.labels, config.annotations,
//               config.linux.cgroup_parent, config.linux.resources,
//               config.linux.overhead; with network = "late" also
//               config.port_mappings (host ports go to the CNI ADD at
//               hand-off, daemon/late_network.h).
//   must equal: runtime_handler, config.linux.security_context (every field:
//               namespace_options, selinux_options, run_as_user/group,
//               readonly_rootfs, supplemental_groups(+policy), privileged,
//               seccomp, apparmor, seccomp_profile_path),
//               config.linux.sysctls, config.port_mappings, config.windows
//               (must be absent). Anything else the proto declares (and any
//               present-vs-absent difference of config / config.linux) too.
//
// CreateContainer (MatchContainer):
//   fixable:    metadata, labels, annotations, mounts, log_path,
//               linux.resources, image.user_specified_image.
//   must equal: image.image (the template's ref OR the id it resolved to),
//               command, args, working_dir, envs (see below),
//               linux.security_context (every field), stdin, stdin_once, tty,
//               devices, CDI_devices, stop_signal (containerd records it at
//               create time and uses it at StopContainer; warmpool cannot
//               change it afterwards), windows (must be absent), the rest of
//               image (annotations empty, runtime_handler "" or the pool's,
//               image_ref "" or one of the two accepted images).
//
// In both: a field the proto does not declare (a protobuf unknown field,
// anywhere in the request, recursively, fixable parts included) or an enum
// value it does not declare is a miss, reason_code "unknown_field": a newer
// kubelet asking for something warmpool cannot know it fixes up.
//
// Semantics (each a decision; all are "equal in effect for containerd"):
//   - Presence matters. An absent SecurityProfile is NOT a present one with
//     profile_type RuntimeDefault (enum value 0): containerd applies its
//     `unset_seccomp_profile` (by default unconfined) to an absent seccomp
//     and runtime/default to a present RuntimeDefault. Likewise an absent
//     run_as_user is not run_as_user {0}.
//     What kubelet sends: for the SANDBOX, seccomp is always present
//     RuntimeDefault (kubelet forces it, kubernetes issue #84623), whatever
//     the pod says; for CONTAINERS it is the pod's seccompProfile, or, when
//     the pod sets none, present Unconfined (RuntimeDefault with kubelet's
//     --seccomp-default). A pool therefore says seccomp = "runtime/default"
//     to serve sandboxes; the miss reason names the pool setting to use.
//   - A structured seccomp / apparmor profile, when present, makes the
//     deprecated string (seccomp_profile_path / apparmor_profile) irrelevant:
//     containerd ignores the string then. Kubelet sends both for AppArmor.
//   - namespace_options.userns_options {mode: NODE, no id mappings} equals an
//     absent userns_options: both are the host user namespace. Kubelet sends
//     the former whenever the UserNamespacesSupport gate is on.
//   - supplemental_groups compare as sets (the kernel keeps them sorted).
//   - port mappings with host_port <= 0 are ignored: kubelet lists every
//     declared containerPort, but containerd drops mappings without a host
//     port before CNI sees them, so they have no effect. Any mapping with a
//     host port is a miss (pool entries have none).
//   - dns_config is fixable: warmpool writes resolv.conf from kubelet's
//     dns_config at hand-off, so the pool's `dns` is not compared.
//   - envs compare as a set of key=value (order irrelevant; for a key given
//     twice the last value wins, as in containerd). A key the pod sets that
//     the template does not set is ignored when `ignored_env(key)` is true;
//     a key the template sets is always compared, ignore predicate or not.
//
// Order: pool selection, namespace, unknown fields, then (sandbox)
// runtime_handler and the rest in proto declaration order, or (container)
// image, envs and the rest in proto declaration order. `reason` names the
// FIRST mismatching field by its CRI path (as in RunPodSandboxRequest /
// CreateContainerRequest) and both values, shortened when long.

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "cri_runtime_v1.pb.h"
#include "daemon/config.h"

namespace warmpool {

// The pod annotation naming the pool that should serve it.
inline constexpr const char* kPoolAnnotation = "warmpool.io/pool";

struct MatchResult {
  const PoolConfig* pool = nullptr;  // the pool selected (null: no pool applies)
  bool hit = false;                  // true: an entry of `pool` may serve this request
  // On a miss, e.g.
  //   config.linux.security_context.privileged: pod asks true, pool has false
  //   no pool: the pod names none and no pool is default
  //   pool "x" does not serve namespace "y"
  //   unknown field 99 in config.linux (a newer kubelet?)
  std::string reason;
  // On a miss, a short stable label for metrics, one of:
  //   no_pool, unknown_pool, namespace, unknown_field, runtime_handler,
//   bandwidth (bandwidth annotations on a network = "early" pool),
  //   namespace_options, security_context, sysctls, port_mappings, windows,
  //   image, env, command, args, working_dir, stdin, tty, devices,
  //   stop_signal, template (any other difference from the template).
  std::string reason_code;
};

// Selects the pool for a RunPodSandbox request and checks whether one of its
// frozen entries may serve it. The pool: the one named by the pod annotation
// warmpool.io/pool (naming a pool that does not exist: miss "unknown_pool");
// for a pod naming none, the pool with is_default (none: miss "no_pool").
// A pool whose `namespaces` list is non-empty serves only pods of those
// namespaces (miss "namespace"). `pool` is set on every result but these two
// first misses; whether the pool has a frozen entry left is not checked here.
MatchResult MatchSandbox(const ::runtime::v1::RunPodSandboxRequest& req,
                         const std::vector<PoolConfig>& pools);

// Whether kubelet's CreateContainer config may adopt the pre-started
// container made from template `t` of `pool`. `resolved_image_id` is the
// image id ("sha256:...") `t.image` resolved to when the entry was made
// ("" if unknown); kubelet sends that id, or a ref, in config.image.image.
// `ignored_env` (may be empty: ignore nothing) says which env keys the pod may
// set that the template does not; pass IsServiceLinkEnv for kubelet's.
MatchResult MatchContainer(const ::runtime::v1::ContainerConfig& config, const PoolConfig& pool,
                           const ContainerTemplate& t, const std::string& resolved_image_id,
                           const std::function<bool(const std::string&)>& ignored_env);

// The default ignore predicate: true for the names of the variables kubelet
// adds for services (enableServiceLinks, and always for the `kubernetes`
// service), with SVC the service name upper-cased, '-' -> '_':
//   SVC_SERVICE_HOST, SVC_SERVICE_PORT, SVC_SERVICE_PORT_<PORTNAME>,
//   SVC_PORT, SVC_PORT_<n>_<TCP|UDP|SCTP>, and that followed by
//   _PROTO, _PORT or _ADDR.
// Names only: a pod's own variable that happens to look like one (APP_PORT)
// is ignored too when the template does not set it -- give the template every
// variable the app reads.
bool IsServiceLinkEnv(std::string_view key);

}  // namespace warmpool
