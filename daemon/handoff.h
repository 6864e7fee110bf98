#pragma once

// The hand-off: kubelet's RunPodSandbox served by a frozen pool entry.
//
// On a hit (the matcher says an entry of the pod's pool can serve the
// request exactly as asked, see daemon/matcher.h), on a worker thread:
//   1. claim the oldest frozen entry (it leaves the pool for good; the pool
//      refills) and record the claim durably (phase "claimed");
//   2. move every process of the entry into kubelet's cgroup_parent, one
//      cgroup per container as containerd's cgroupfs driver lays them out
//      (<cgroup_parent>/<container id>), charges moved with them on v1, and
//      thaw; remove the entry's old cgroups (phase "moved");
//   3. set kubelet's hostname in the sandbox's UTS namespace and rewrite the
//      hostname and resolv.conf files containerd keeps for the sandbox (the
//      ones it bind-mounts into the pod's containers) from kubelet's config;
//   4. record the hand-off (phase "done", kubelet's full request, the time)
//      and only then answer kubelet with the entry's sandbox id.
// Any failure rolls back (the entry is destroyed, nothing it had stays) and
// the request goes upstream unchanged: a pod is never broken by warmpool.
// A miss forwards at once, on the calling thread, and logs one line with the
// first mismatching field.
//
// Reads show an adopted sandbox as kubelet made it (daemon/read_filter.h);
// RemovePodSandbox of an adopted sandbox passes through, then its record and
// moved cgroups go.
//
// Recovery (Recover, before the pools start): a record in phase "done" is
// an adopted pod again (dropped if containerd no longer has its sandbox); a
// record stopped earlier is a hand-off kubelet never got an answer for: its
// sandbox is removed, its cgroups too, then the record.
//
// Cgroup drivers: a cgroup_parent that is a systemd slice moves each
// container into its `cri-containerd-<id>.scope` in that slice through
// systemd (daemon/systemd_cgroups.h), given set_container_cgroups with a
// systemd connection; a cgroupfs path moves it by cgroupfs.
//
// Not yet: adopting an app pool's pre-started containers (CreateContainer /
// StartContainer), so app pools are not handed out (a miss naming why).

#include <absl/status/status.h>

#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "cri/rewrite.h"
#include "daemon/cgroups.h"
#include "daemon/decisions.h"
#include "daemon/late_network.h"
#include "daemon/pool_manager.h"
#include "daemon/pool_objects.h"
#include "daemon/runtime_client.h"
#include "daemon/state_store.h"
#include "daemon/systemd_cgroups.h"

namespace warmpool {

class Handoff final : public cri::RewritePolicy {
 public:
  // All pointers must outlive the object. `containerd_root` is containerd's
  // root directory (the CRI plugin keeps sandbox files under it); "" = ask
  // containerd.
  Handoff(PoolManager* pools, PoolObjects* objects, StateStore* store, Cgroups* cgroups,
          RuntimeClient* runtime, std::string containerd_root);
  ~Handoff() override;

  // Where containers are placed (cgroupfs or systemd); before Recover. The
  // default knows cgroupfs only. `placement` must outlive the object.
  void set_container_cgroups(ContainerCgroups* placement) { placement_ = placement; }
  // network = "late" pools (daemon/late_network.h): binds the pod's network
  // at hand-off and releases it at StopPodSandbox / RemovePodSandbox and in
  // recovery. Without it (null), late pools' sandboxes are handed out with
  // the placeholder network: set before the first call.
  void SetLateNetwork(LateNetwork* network) { late_ = network; }

  // Before the pools start: see the file comment.
  absl::Status Recover();

  // RunPodSandbox, StopPodSandbox and RemovePodSandbox; null for every
  // other method.
  std::unique_ptr<cri::CallRewriter> ForMethod(const std::string& method) override;

  // Hits and misses since start, by reason code ("hit" for hits).
  std::map<std::string, uint64_t> Counts();
  // Every decision on a RunPodSandbox (warmpoolctl explain, metrics).
  const DecisionLog& decisions() const { return decisions_; }

 private:
  class RunRewriter;
  class RemoveRewriter;
  class StopRewriter;

  void Decide(const grpc::ByteBuffer& request, cri::CallRewriter::DecideCallback done);
  // The hand-off itself, on a worker: the answer, or an error to roll back.
  absl::StatusOr<std::string> Adopt(const v1::RunPodSandboxRequest& req,
                                    const PoolManager::Claimed& claimed, bool late_network);
  // Late network: CNI DEL of an adopted sandbox's pod network, recorded as
  // released; OK when there is none or it is already released.
  absl::Status ReleaseNetwork(const std::string& sandbox_id);
  // StopPodSandbox / RemovePodSandbox of an adopted sandbox: its late network
  // is released on a worker, then the call is forwarded (an error answers
  // kubelet instead, which retries).
  void ReleaseThenForward(const std::string& sandbox_id, cri::CallRewriter::DecideCallback done);
  // Where the CRI plugin keeps sandbox files: from the config, else asked
  // of containerd once.
  absl::StatusOr<std::string> CriRoot();
  void RollBack(const PoolManager::Claimed& claimed, const std::string& cgroup_parent,
                const std::vector<std::string>& moved);
  void Forget(const std::string& sandbox_id);
  void Count(const std::string& reason_code);
  void Post(std::function<void()> work);
  void WorkLoop();

  PoolManager* pools_;
  PoolObjects* objects_;
  StateStore* store_;
  Cgroups* cgroups_;
  RuntimeClient* runtime_;
  const std::string containerd_root_;
  std::unique_ptr<ContainerCgroups> own_placement_;
  ContainerCgroups* placement_;
  LateNetwork* late_ = nullptr;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> work_;  // guarded by mu_
  bool stopping_ = false;                   // guarded by mu_
  std::map<std::string, uint64_t> counts_;  // guarded by mu_
  std::string cri_root_;                    // guarded by mu_
  std::mutex release_mu_;                   // serialises ReleaseNetwork
  std::vector<std::thread> workers_;
  DecisionLog decisions_;  // thread-safe on its own
};

}  // namespace warmpool
