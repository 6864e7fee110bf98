#pragma once

// What a pool entry is made of, as CRI requests: the sandbox and container
// requests warmpool sends upstream for a pool's template. The matcher
// compares kubelet's requests against these same requests, so "what the
// pool made" and "what a pod must ask for" cannot drift apart.

#include <string>

#include "cri_runtime_v1.pb.h"
#include "daemon/config.h"

namespace warmpool {

// The RunPodSandbox request of entry `entry_id` of `pool`: the template's
// security context, namespaces, sysctls, DNS and runtime handler, under
// warmpool's identity (metadata, hostname, labels) in `cgroup_parent`.
::runtime::v1::RunPodSandboxRequest SandboxRequest(const PoolConfig& pool,
                                                   const std::string& entry_id,
                                                   const std::string& template_hash,
                                                   const std::string& cgroup_parent,
                                                   const std::string& log_dir);

// The CreateContainer request of container template `t` in that sandbox.
::runtime::v1::CreateContainerRequest ContainerRequest(
    const PoolConfig& pool, const ContainerTemplate& t, const std::string& entry_id,
    const std::string& sandbox_id, const std::string& image_ref,
    const ::runtime::v1::PodSandboxConfig& sandbox_config);

}  // namespace warmpool
